//! One event against one profile's state: the whole decision, pure. Recognise a redelivery,
//! honour or drop a timer event, cancel the timers the event's type cancels, update the profile,
//! run the rules (and, through a callback, the plugins), apply policy, and describe what to
//! publish: actions now, timer events and held actions later. The live pipeline and the
//! backtest both run exactly this; only where the state lives and the clock differ.

use std::sync::Arc;

use compact_str::CompactString;
use serde::Serialize;
use serde_json::Value;

use crate::action::{Action, Channel, Origin};
use crate::calendar::rfc3339;
use crate::event::{CloudEvent, digest};
use crate::experiment::touch::{Conversion, attribute};
use crate::experiment::{Experiment, Outcome, split_verdict};
use crate::policy::{Candidate, OriginPolicy, Policy, Reason, Verdict};
use crate::profile::Profile;
use crate::ruleset::{CompiledRule, RuleFailure, evaluate_rules};
use crate::sandbox::Sandbox;
use crate::state::{Applied, IDENTIFY_TYPE, Outgoing, PendingTimer, ProfileState, StateLimits};
use crate::trigger::Pattern;

/// Type prefix of the events timers fire: `timer.<name>`.
pub const TIMER_PREFIX: &str = "timer.";
/// `source` of the timer events nudge publishes.
pub const TIMER_SOURCE: &str = "nudge/timer";

/// What plugins made of the event, for the decision (the core does not run wasm itself).
#[derive(Default)]
pub struct PluginOutcome {
    pub matched: Vec<String>,
    pub actions: Vec<Action>,
    /// `(plugin label, reason, message)`; reason is `error` or `limit`.
    pub failures: Vec<(String, Reason, String)>,
    /// The matched plugins that declare a goal or holdout (in their manifest).
    pub experiments: Vec<(Arc<Origin>, Arc<Experiment>)>,
}

/// A message to publish at `due_ms`: a timer event or an action held by quiet hours.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scheduled {
    pub due_ms: i64,
    pub message: Outgoing,
}

/// One line of the decision trace about an action or a failure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceItem {
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

/// The decision trace of one event: what `GET /api/profiles/{id}/trace` lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Trace {
    pub event_id: String,
    pub event_source: String,
    pub event_type: String,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub matched: Vec<String>,
    pub fired: Vec<TraceItem>,
    pub held: Vec<TraceItem>,
    pub suppressed: Vec<TraceItem>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timers_scheduled: Vec<TraceItem>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timers_cancelled: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Conversions this event made: the rule (version) credited, with how long after its action.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub converted: Vec<TraceItem>,
    /// How the event breaks its type's schema (validated with `mode = "warn"`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schema_violations: Vec<crate::schema::Violation>,
}

/// Everything one event caused.
#[derive(Debug, Default)]
pub struct Decision {
    /// The event (its `source` + `id`) was applied before: it changes and publishes nothing.
    pub duplicate: bool,
    /// Actions to publish now.
    pub publish: Vec<Outgoing>,
    /// The actions behind `publish`, for metrics and backtests.
    pub fired: Vec<Action>,
    /// Timer events and held actions to publish later.
    pub schedule: Vec<Scheduled>,
    /// Ids of scheduled messages that no longer should go out (cancelled or replaced timers).
    pub unschedule: Vec<String>,
    pub failures: Vec<RuleFailure>,
    pub logs: Vec<String>,
    /// Attributes rules set or removed (`set_attribute`): how much the profile may have grown.
    pub attributes_set: usize,
    /// What the event did to experimenting rules: exposures and conversions, for the results.
    pub outcomes: Vec<Outcome>,
    pub trace: Trace,
}

/// The rules, policy and bounds an event is decided with.
pub struct Decider<'a> {
    pub sandbox: &'a Sandbox,
    pub policy: &'a Policy,
    pub limits: &'a StateLimits,
}

impl Decider<'_> {
    /// Decides `event` for the profile in `state`, which it updates. `rules` are the enabled
    /// rules the event's type triggers, in evaluation order.
    pub fn decide(
        &self,
        state: &mut ProfileState,
        event: &CloudEvent,
        now_ms: i64,
        rules: &[&Arc<CompiledRule>],
        plugins: &mut dyn FnMut(&CloudEvent, &Profile) -> PluginOutcome,
    ) -> Decision {
        let identity = event.identity();
        let mut decision = Decision {
            trace: Trace {
                event_id: event.id.clone(),
                event_source: event.source.clone(),
                event_type: event.event_type.clone(),
                at: rfc3339(now_ms),
                ..Trace::default()
            },
            ..Decision::default()
        };
        if state.applied(&identity).is_some() {
            decision.duplicate = true;
            decision.trace.skipped =
                Some("already decided (a duplicate of an earlier event)".into());
            return decision;
        }
        if let Some(name) = event.event_type.strip_prefix(TIMER_PREFIX) {
            let live = state.timers.get(name).is_some_and(|t| t.id == event.id);
            if !live {
                decision.trace.skipped = Some(format!(
                    "timer `{name}` was cancelled or replaced before it fired"
                ));
                state.remember_applied(Applied { event: identity }, self.limits);
                return decision;
            }
            state.timers.remove(name);
        }
        self.cancel_timers_of(state, event, &mut decision);
        if event.event_type == IDENTIFY_TYPE {
            decision.trace.notes = state.identify(&event.data, self.limits);
        }
        state.record(event, now_ms, self.limits);
        if let Some(conversion) = attribute(&mut state.touches, event, now_ms) {
            decision.trace.converted.push(conversion_item(&conversion));
            decision.outcomes.push(Outcome::Converted(conversion));
        }

        let mut candidates = Vec::new();
        if !rules.is_empty() {
            let owned = std::mem::take(state);
            let profile = owned.profile.clone();
            let (evaluation, returned) =
                crate::context::with_state(owned, now_ms, self.limits, || {
                    evaluate_rules(self.sandbox, rules, event, &profile)
                });
            *state = returned;
            decision.trace.matched = evaluation.matched;
            decision.logs = evaluation.logs;
            for failure in &evaluation.failures {
                decision.trace.suppressed.push(TraceItem {
                    rule: format!("{}@v{}", failure.rule, failure.version),
                    reason: Some(failure.reason()),
                    detail: Some(failure.failure.message.clone()),
                    ..TraceItem::empty()
                });
            }
            decision.failures = evaluation.failures;
            for (rule_id, effects) in evaluation.effects {
                self.apply_effects(state, event, now_ms, &rule_id, effects, &mut decision);
            }
            for action in evaluation.actions {
                let policy = rules
                    .iter()
                    .find(|r| r.rule.id == action.origin.id)
                    .map(|r| r.policy().clone())
                    .unwrap_or_default();
                candidates.push(Candidate { action, policy });
            }
        }
        state.seen(&event.event_type, now_ms);

        let from_plugins = plugins(event, &state.profile);
        decision.trace.matched.extend(from_plugins.matched);
        for (plugin, reason, message) in from_plugins.failures {
            decision.trace.suppressed.push(TraceItem {
                rule: plugin,
                reason: Some(reason.as_str()),
                detail: Some(message),
                ..TraceItem::empty()
            });
        }
        let plugin_policy = Arc::new(OriginPolicy::default());
        candidates.extend(from_plugins.actions.into_iter().map(|action| Candidate {
            action,
            policy: plugin_policy.clone(),
        }));

        let mut verdict = self.policy.apply(state, candidates, now_ms);
        let experimenting = rules
            .iter()
            .filter_map(|r| Some((r.origin().as_ref(), r.experiment()?.as_ref())))
            .chain(
                from_plugins
                    .experiments
                    .iter()
                    .map(|(origin, experiment)| (origin.as_ref(), experiment.as_ref())),
            );
        let exposures = split_verdict(
            &mut verdict,
            experimenting,
            state,
            now_ms,
            self.limits.max_touches,
        );
        decision.outcomes.extend(exposures);
        self.record_verdict(event, now_ms, verdict, &state.profile, &mut decision);
        state.remember_applied(Applied { event: identity }, self.limits);
        decision
    }

    fn cancel_timers_of(&self, state: &mut ProfileState, event: &CloudEvent, d: &mut Decision) {
        let cancelled: Vec<CompactString> = state
            .timers
            .iter()
            .filter(|(_, t)| {
                t.unless
                    .iter()
                    .any(|p| Pattern::parse(p).is_ok_and(|p| p.matches(&event.event_type)))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in cancelled {
            if let Some(timer) = state.timers.remove(name.as_str()) {
                d.unschedule.push(timer.id);
                d.trace.timers_cancelled.push(name.into());
            }
        }
    }

    fn apply_effects(
        &self,
        state: &mut ProfileState,
        event: &CloudEvent,
        now_ms: i64,
        rule_id: &str,
        effects: crate::context::Effects,
        d: &mut Decision,
    ) {
        for (name, value) in effects.attributes {
            d.attributes_set += 1;
            if let Err(note) = state.set_attribute(&name, value, self.limits) {
                d.trace.notes.push(format!("{rule_id}: {note}"));
            }
        }
        for name in effects.cancels {
            if let Some(timer) = state.timers.remove(name.as_str()) {
                d.unschedule.push(timer.id);
                d.trace.timers_cancelled.push(name);
            }
        }
        for timer in effects.timers {
            let due_ms = now_ms.saturating_add(timer.delay_ms);
            let id = digest(&[&event.source, &event.id, rule_id, "timer", &timer.name]);
            let message = timer_event(event, &timer.name, &id, due_ms, timer.data);
            let pending = PendingTimer {
                id: id.clone(),
                due_ms,
                unless: timer.unless,
                rule: rule_id.to_owned(),
            };
            if let Some(replaced) = state.timers.insert(timer.name.as_str().into(), pending) {
                d.unschedule.push(replaced.id);
            }
            d.trace.timers_scheduled.push(TraceItem {
                rule: rule_id.to_owned(),
                id: Some(id),
                detail: Some(timer.name),
                until: Some(rfc3339(due_ms)),
                ..TraceItem::empty()
            });
            d.schedule.push(Scheduled { due_ms, message });
        }
    }

    fn record_verdict(
        &self,
        event: &CloudEvent,
        now_ms: i64,
        verdict: Verdict,
        profile: &Profile,
        d: &mut Decision,
    ) {
        let time = rfc3339(now_ms);
        let item = |action: &Action, id: String| TraceItem {
            rule: action.origin.label().to_owned(),
            channel: Some(action.channel.as_str()),
            id: Some(id),
            data: action.data_json(),
            ..TraceItem::empty()
        };
        // An action whose payload cannot be serialized is not published: it is suppressed, and
        // the trace says why.
        let unpublishable = |action: &Action, error: String| TraceItem {
            reason: Some(Reason::Error.as_str()),
            detail: Some(format!("its payload cannot be serialized: {error}")),
            ..item(action, action.id(event))
        };
        for action in verdict.fired {
            let action = addressed(action, profile);
            match outgoing(&action, event, &time) {
                Ok(message) => {
                    d.trace.fired.push(item(&action, message.id.clone()));
                    d.publish.push(message);
                    d.fired.push(action);
                }
                Err(error) => d.trace.suppressed.push(unpublishable(&action, error)),
            }
        }
        for (action, release_ms) in verdict.held {
            let action = addressed(action, profile);
            match outgoing(&action, event, &time) {
                Ok(message) => {
                    d.trace.held.push(TraceItem {
                        reason: Some(Reason::QuietHours.as_str()),
                        until: Some(rfc3339(release_ms)),
                        ..item(&action, message.id.clone())
                    });
                    d.schedule.push(Scheduled {
                        due_ms: release_ms,
                        message,
                    });
                }
                Err(error) => d.trace.suppressed.push(unpublishable(&action, error)),
            }
        }
        for suppressed in verdict.suppressed {
            let id = suppressed.action.id(event);
            d.trace.suppressed.push(TraceItem {
                reason: Some(suppressed.reason.as_str()),
                detail: Some(suppressed.detail),
                ..item(&suppressed.action, id)
            });
        }
    }
}

/// An e-mail carries the profile it was decided for (`data.profile`: `id`, `attributes`,
/// `consent`, `timezone`), so its template renders with the profile as the rules saw it — not
/// as stored at the last checkpoint, which may predate the event — and a re-drive renders the
/// same e-mail again.
fn addressed(mut action: Action, profile: &Profile) -> Action {
    if action.channel == Channel::Email
        && let Some(mut data) = action.data.write_lock::<rhai::Map>()
    {
        data.insert("profile".into(), crate::sandbox::profile_value(profile));
    }
    action
}

/// The trace's line about a conversion: the rule version credited, its group, how long after
/// the action, and the value.
fn conversion_item(conversion: &Conversion) -> TraceItem {
    TraceItem {
        rule: format!("{}@v{}", conversion.rule, conversion.version),
        detail: Some(format!(
            "goal reached {} s after the action ({} group, last touch)",
            conversion.after_ms / 1_000,
            conversion.arm.as_str()
        )),
        data: conversion
            .value
            .map_or(Value::Null, |v| serde_json::json!({ "value": v })),
        ..TraceItem::empty()
    }
}

impl TraceItem {
    fn empty() -> TraceItem {
        TraceItem {
            rule: String::new(),
            channel: None,
            id: None,
            reason: None,
            detail: None,
            until: None,
            data: Value::Null,
        }
    }
}

/// An action as the message that publishes it; the error says why its payload cannot be
/// serialized.
pub fn outgoing(action: &Action, cause: &CloudEvent, time: &str) -> Result<Outgoing, String> {
    let id = action.id(cause);
    let body =
        serde_json::to_string(&action.envelope(cause, time, &id)).map_err(|e| e.to_string())?;
    Ok(Outgoing {
        subject: action.nats_subject().to_owned(),
        id,
        body,
    })
}

/// The cause a timer event carries: the triggering event, or (for a chain of timers) the cause
/// of the timer event that triggered.
#[derive(Serialize)]
#[serde(untagged)]
enum Cause<'a> {
    Event(&'a CloudEvent),
    Root(&'a Value),
}

#[derive(Serialize)]
struct TimerData<'a> {
    #[serde(flatten)]
    data: &'a serde_json::Map<String, Value>,
    cause: Cause<'a>,
}

#[derive(Serialize)]
struct TimerEvent<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'static str,
    #[serde(rename = "type")]
    event_type: String,
    subject: &'a str,
    time: String,
    datacontenttype: &'static str,
    data: TimerData<'a>,
}

/// The event a timer fires: type `timer.<name>`, the rule's `data` plus the original event
/// under `cause`. Serialized straight from borrowed parts: a backtest schedules many of these.
fn timer_event(cause: &CloudEvent, name: &str, id: &str, due_ms: i64, data: Value) -> Outgoing {
    let root = if cause.event_type.starts_with(TIMER_PREFIX) {
        Cause::Root(cause.data.get("cause").unwrap_or(&Value::Null))
    } else {
        Cause::Event(cause)
    };
    let mut data = match data {
        Value::Object(map) => map,
        _ => Default::default(),
    };
    data.remove("cause");
    let event = TimerEvent {
        specversion: "1.0",
        id,
        source: TIMER_SOURCE,
        event_type: format!("{TIMER_PREFIX}{name}"),
        subject: &cause.subject,
        time: rfc3339(due_ms),
        datacontenttype: "application/json",
        data: TimerData {
            data: &data,
            cause: root,
        },
    };
    Outgoing {
        subject: format!("events.{TIMER_PREFIX}{name}"),
        id: id.to_owned(),
        body: serde_json::to_string(&event).unwrap_or_default(),
    }
}

/// Decides `event` for one rule against a throwaway profile state holding `profile`: what
/// testing a rule shows (actions, suppressions, timers, trace), with nothing stored.
pub fn dry_run(
    decider: &Decider<'_>,
    rule: &Arc<CompiledRule>,
    event: &CloudEvent,
    profile: Profile,
    now_ms: i64,
) -> Decision {
    let mut state = ProfileState {
        profile,
        ..ProfileState::new(&event.subject, now_ms)
    };
    let rules: Vec<&Arc<CompiledRule>> = if rule.triggers_on(&event.event_type) {
        vec![rule]
    } else {
        Vec::new()
    };
    decider.decide(&mut state, event, now_ms, &rules, &mut |_, _| {
        PluginOutcome::default()
    })
}
