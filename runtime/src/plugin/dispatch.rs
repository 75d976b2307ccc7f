//! Calling plugins for the pipeline and for rules: converts events, profiles and actions across
//! the WIT boundary, and logs and counts every call and failure.

use std::sync::Arc;
use std::time::Duration;

use nudge_rules::action::{Origin, shape_payload};
use nudge_rules::experiment::Experiment;
use nudge_rules::{Action, Channel, CloudEvent, PluginCallError, PluginCalls, Profile};
use serde::Serialize;

use super::breaker::Change;
use super::host::{
    CallReport, PluginFailure, PluginHost, WitAction, WitChannel, WitEvent, WitProfile,
};
use super::set::{LivePlugins, LoadedPlugin};
use crate::telemetry;

/// A plugin that failed on an event, for logs and the decision trace.
#[derive(Debug, Clone, Serialize)]
pub struct PluginFault {
    pub plugin: String,
    pub version: u64,
    #[serde(flatten)]
    pub failure: PluginFailure,
}

/// What the plugins subscribed to one event produced.
#[derive(Debug, Default)]
pub struct PluginOutcome {
    /// `plugin:<name>@v<version>` of every plugin that ran.
    pub matched: Vec<String>,
    pub actions: Vec<Action>,
    pub failures: Vec<PluginFault>,
    pub logs: Vec<String>,
    /// The plugins that ran and declare a goal or holdout.
    pub experiments: Vec<(Arc<Origin>, Arc<Experiment>)>,
}

/// The host plus the live plugin set: what the pipeline and the rule sandbox call.
#[derive(Clone)]
pub struct Plugins {
    pub host: Arc<PluginHost>,
    pub live: LivePlugins,
}

impl Plugins {
    pub fn new(host: Arc<PluginHost>, live: LivePlugins) -> Plugins {
        Plugins { host, live }
    }

    /// Runs every enabled plugin subscribed to `event`'s type. A failing plugin contributes a
    /// failure and no actions; the others run regardless.
    pub fn handle_event(&self, event: &CloudEvent, profile: &Profile) -> PluginOutcome {
        let set = self.live.load();
        let matching = set.matching(&event.event_type);
        let mut outcome = PluginOutcome::default();
        if matching.is_empty() {
            return outcome;
        }
        let (wit_event, wit_profile) = (wit_event(event), wit_profile(profile));
        for plugin in matching {
            outcome.matched.push(plugin.origin.label().to_owned());
            if let Some(experiment) = &plugin.experiment {
                outcome
                    .experiments
                    .push((plugin.origin.clone(), experiment.clone()));
            }
            let result = self.guarded(plugin, || {
                let (result, report) =
                    self.host
                        .handle(&plugin.instances, &wit_event, &wit_profile);
                observe(plugin, false, &report);
                outcome.logs.extend(log_lines(plugin, event, &report));
                result
            });
            match result.and_then(|actions| to_actions(plugin, actions)) {
                Ok(actions) => outcome.actions.extend(actions),
                Err(failure) => {
                    report_failure(plugin, Some((&event.id, &event.source)), &failure);
                    outcome.failures.push(PluginFault {
                        plugin: plugin.record.name.clone(),
                        version: plugin.record.version,
                        failure,
                    });
                }
            }
        }
        outcome
    }

    /// Runs `call` unless `plugin` is quarantined, and lets its outcome count towards the
    /// quarantine.
    fn guarded<T>(
        &self,
        plugin: &LoadedPlugin,
        call: impl FnOnce() -> Result<T, PluginFailure>,
    ) -> Result<T, PluginFailure> {
        let limits = self.host.limits();
        if let Err(left) = plugin.breaker.admit() {
            return Err(PluginFailure {
                reason: "quarantined",
                setting: Some("plugin_quarantine_ms"),
                message: format!(
                    "quarantined for {} ms more: {} calls in a row broke a limit \
                     (plugin_quarantine_after)",
                    left.as_millis(),
                    plugin.breaker.consecutive()
                ),
            });
        }
        let result = call();
        let hit_limit = matches!(&result, Err(failure) if failure.setting.is_some());
        let cooldown = Duration::from_millis(limits.quarantine_ms);
        match plugin
            .breaker
            .record(hit_limit, limits.quarantine_after, cooldown)
        {
            Change::None => {}
            Change::Opened(cooldown) => {
                tracing::warn!(
                    plugin = %plugin.record.name,
                    version = plugin.record.version,
                    after = limits.quarantine_after,
                    cooldown_ms = cooldown.as_millis() as u64,
                    "plugin quarantined: it keeps breaking its limits"
                );
                telemetry::plugin_quarantined(&plugin.record.name, Some(cooldown));
            }
            Change::Closed => {
                tracing::info!(plugin = %plugin.record.name, version = plugin.record.version, "plugin out of quarantine");
                telemetry::plugin_quarantined(&plugin.record.name, None);
            }
        }
        result
    }
}

impl PluginCalls for Plugins {
    fn call(
        &self,
        name: &str,
        input: serde_json::Value,
        rule_deadline: Option<std::time::Instant>,
    ) -> Result<serde_json::Value, PluginCallError> {
        let set = self.live.load();
        let Some(plugin) = set.get(name).filter(|p| p.record.manifest.enabled) else {
            return Err(PluginCallError {
                message: format!("no enabled plugin named {name}"),
                limit: None,
            });
        };
        let result = self.guarded(plugin, || {
            let (result, report) =
                self.host
                    .call_until(&plugin.instances, &input.to_string(), rule_deadline);
            observe(plugin, true, &report);
            result
        });
        let output = result.and_then(|json| {
            serde_json::from_str(&json).map_err(|e| PluginFailure {
                reason: "error",
                setting: None,
                message: format!("result is not JSON: {e}"),
            })
        });
        output.map_err(|failure| {
            CALLING_EVENT.with_borrow(|event| {
                let event = event
                    .as_ref()
                    .map(|(id, source)| (id.as_str(), source.as_str()));
                report_failure(plugin, event, &failure);
            });
            PluginCallError {
                message: failure.message,
                limit: failure.setting,
            }
        })
    }
}

pub fn wit_event(event: &CloudEvent) -> WitEvent {
    WitEvent {
        id: event.id.clone(),
        source: event.source.clone(),
        type_: event.event_type.clone(),
        subject: event.subject.clone(),
        time: event.time.clone(),
        data: event.data.to_string(),
    }
}

pub fn wit_profile(profile: &Profile) -> WitProfile {
    let object = |map: &serde_json::Map<String, serde_json::Value>| {
        if map.is_empty() {
            return "{}".to_owned();
        }
        serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned())
    };
    WitProfile {
        id: profile.id.clone(),
        timezone: profile.timezone.clone(),
        attributes: object(&profile.attributes),
        consent: object(&profile.consent),
    }
}

/// The guest's actions as nudge actions, shaped exactly as the rule language shapes them.
pub fn to_actions(
    plugin: &LoadedPlugin,
    actions: Vec<WitAction>,
) -> Result<Vec<Action>, PluginFailure> {
    actions
        .into_iter()
        .enumerate()
        .map(|(position, action)| {
            // Straight from JSON text to the script value type actions carry: no JSON tree.
            let payload = match serde_json::from_str::<rhai::Dynamic>(&action.payload) {
                Ok(value) if value.is_map() => value,
                _ => {
                    return Err(PluginFailure {
                        reason: "error",
                        setting: None,
                        message: format!("action {position}: payload is not a JSON object"),
                    });
                }
            };
            let channel = match action.channel {
                WitChannel::Push => Channel::Push,
                WitChannel::Personalize => Channel::Personalize,
                WitChannel::Price => Channel::Price,
                WitChannel::Webhook => Channel::Webhook,
                WitChannel::Email => Channel::Email,
            };
            let map = payload.cast::<rhai::Map>();
            let data = shape_payload(channel, action.target.map(Into::into), map);
            channel
                .check_payload(&data)
                .map_err(|message| PluginFailure {
                    reason: "error",
                    setting: None,
                    message: format!("action {position}: {message}"),
                })?;
            Ok(Action {
                channel,
                data: rhai::Dynamic::from_map(data),
                origin: plugin.origin.clone(),
                position: position as u32,
            })
        })
        .collect()
}

fn observe(plugin: &LoadedPlugin, from_rule: bool, report: &CallReport) {
    plugin.meters.called(
        from_rule,
        Duration::from_micros(report.wall_us).as_secs_f64(),
        report.fuel_consumed,
    );
}

fn log_lines<'a>(
    plugin: &'a LoadedPlugin,
    event: &'a CloudEvent,
    report: &'a CallReport,
) -> impl Iterator<Item = String> + 'a {
    report.logs.iter().map(move |(level, line)| {
        tracing::info!(plugin = %plugin.record.name, event = %event.id, level = %level, "{line}");
        format!("{}: {line}", plugin.origin.label())
    })
}

thread_local! {
    /// The event whose rules run on this thread, so a plugin failing inside a rule's
    /// `plugin(..)` call is logged with it.
    static CALLING_EVENT: std::cell::RefCell<Option<(String, String)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `decide` with `event` known as the event rules call plugins for.
pub fn for_event<T>(event: &CloudEvent, decide: impl FnOnce() -> T) -> T {
    CALLING_EVENT.with_borrow_mut(|calling| {
        *calling = Some((event.id.clone(), event.source.clone()));
    });
    let decided = decide();
    CALLING_EVENT.with_borrow_mut(|calling| *calling = None);
    decided
}

/// Logs and counts a failed call; `event` is `(id, source)` of the event it ran for.
fn report_failure(plugin: &LoadedPlugin, event: Option<(&str, &str)>, failure: &PluginFailure) {
    tracing::warn!(
        plugin = %plugin.record.name,
        version = plugin.record.version,
        event = event.map_or("", |e| e.0),
        source = event.map_or("", |e| e.1),
        reason = failure.reason,
        limit = failure.setting.unwrap_or(""),
        message = %failure.message,
        "plugin failed"
    );
    use crate::clock::Clock as _;
    telemetry::plugin_failed(
        &plugin.record.name,
        failure.reason,
        crate::clock::SystemClock.now_ms(),
    );
}

#[cfg(test)]
mod tests {
    use nudge_rules::Channel;

    /// The channels a document lists between `start` and the next `end`, by name.
    fn listed<'a>(text: &'a str, start: &str, end: &str) -> Vec<&'a str> {
        let from = text
            .find(start)
            .unwrap_or_else(|| panic!("`{start}` not found"))
            + start.len();
        let to = from + text[from..].find(end).expect("end of the list");
        text[from..to]
            .split(',')
            .map(|name| name.trim().trim_matches('`'))
            .collect()
    }

    #[test]
    fn the_wit_contract_and_the_readme_list_the_core_channels() {
        let core: Vec<&str> = Channel::ALL.map(Channel::as_str).to_vec();
        let wit = include_str!("../../../sdk/wit/plugin.wit");
        assert_eq!(
            listed(wit, "enum channel {", "}"),
            core,
            "sdk/wit/plugin.wit"
        );
        let readme = include_str!("../../../README.md");
        assert_eq!(
            listed(readme, "CloudEvent on `actions.<channel>` (", ")"),
            core,
            "README.md, \"Actions out\""
        );
    }
}
