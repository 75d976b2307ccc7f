//! Marketing policy between the rules and the world: consent, cooldown, priority arbitration,
//! frequency caps and quiet hours, applied to every action of every rule and plugin.
//!
//! Order of the checks, and why: consent first (the law; nothing bypasses it), then the rule's
//! cooldown, then — for marketing actions only — arbitration, caps and quiet hours. An action
//! whose payload says `transactional: true` skips the marketing checks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::action::{Action, Origin};
use crate::calendar::{QuietHours, day_and_week, zone_or_utc};
use crate::rule::CapLimits;
use crate::state::{CapCount, ProfileState};

/// The global policy; rules override caps and quiet hours for their own actions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Per channel, for all rules and plugins together, per profile.
    pub caps: BTreeMap<String, CapLimits>,
    /// Local hours in which marketing actions on `quiet_channels` wait.
    pub quiet_hours: Option<QuietHours>,
    pub quiet_channels: Vec<String>,
}

/// What a rule (or plugin) adds to the policy for its own actions.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    pub priority: i32,
    pub cooldown_ms: Option<i64>,
    pub caps: BTreeMap<String, CapLimits>,
    pub quiet_hours: Option<QuietHours>,
}

/// An action with the policy of whatever decided it.
pub struct Candidate {
    pub action: Action,
    pub policy: Arc<OriginPolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Consent,
    Cooldown,
    Priority,
    Cap,
    QuietHours,
    Error,
    Limit,
    /// The profile is in the rule's control group: decided and counted, not published.
    Holdout,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Consent => "consent",
            Reason::Cooldown => "cooldown",
            Reason::Priority => "priority",
            Reason::Cap => "cap",
            Reason::QuietHours => "quiet_hours",
            Reason::Error => "error",
            Reason::Limit => "limit",
            Reason::Holdout => "holdout",
        }
    }
}

/// An action policy did not let through now.
#[derive(Debug, Clone)]
pub struct Suppressed {
    pub action: Action,
    pub reason: Reason,
    pub detail: String,
}

/// The verdict on one event's actions.
#[derive(Debug, Default)]
pub struct Verdict {
    pub fired: Vec<Action>,
    /// Held by quiet hours, with when they are released (ms).
    pub held: Vec<(Action, i64)>,
    pub suppressed: Vec<Suppressed>,
}

fn transactional(action: &Action) -> bool {
    action
        .data
        .read_lock::<rhai::Map>()
        .and_then(|m| m.get("transactional").and_then(|v| v.as_bool().ok()))
        .unwrap_or(false)
}

/// What several actions compete for: the channel and its target (slot, product, webhook).
fn arbitration_key(action: &Action) -> String {
    let target = action.channel.target_key().and_then(|key| {
        let map = action.data.read_lock::<rhai::Map>()?;
        map.get(key).map(|v| v.to_string())
    });
    format!("{}/{}", action.channel.as_str(), target.unwrap_or_default())
}

impl Policy {
    /// Decides every candidate, highest priority first, updating the profile's cap counters and
    /// cooldowns for what goes out (held actions count: they will go out).
    pub fn apply(
        &self,
        state: &mut ProfileState,
        mut candidates: Vec<Candidate>,
        now_ms: i64,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        if candidates.is_empty() {
            return verdict;
        }
        candidates.sort_by_key(|c| std::cmp::Reverse(c.policy.priority));
        // The profile's calendar costs a time-zone conversion: only caps and quiet hours need it.
        let capped = !self.caps.is_empty() || candidates.iter().any(|c| !c.policy.caps.is_empty());
        let quiet = !self.quiet_channels.is_empty()
            && (self.quiet_hours.is_some()
                || candidates.iter().any(|c| c.policy.quiet_hours.is_some()));
        let tz = if capped || quiet {
            zone_or_utc(&state.profile.timezone)
        } else {
            jiff::tz::TimeZone::UTC
        };
        let (today, this_week) = if capped {
            day_and_week(now_ms, &tz)
        } else {
            (String::new(), String::new())
        };
        if capped {
            state.caps.retain(|_, c| c.week == this_week);
        }
        let mut claimed: HashMap<String, (Arc<Origin>, i32)> = HashMap::new();
        let mut fired_rules: Vec<String> = Vec::new();
        for Candidate { action, policy } in candidates {
            let suppress = |reason, detail: String| Suppressed {
                action: action.clone(),
                reason,
                detail,
            };
            let channel = action.channel.as_str();
            if state.profile.consent.get(channel) == Some(&serde_json::Value::Bool(false)) {
                verdict.suppressed.push(suppress(
                    Reason::Consent,
                    format!("the profile opted out of {channel}"),
                ));
                continue;
            }
            let rule = action.origin.id.clone();
            if let (Some(cooldown_ms), Some(last)) =
                (policy.cooldown_ms, state.fired_ms.get(rule.as_str()))
                && now_ms - last < cooldown_ms
                && !fired_rules.contains(&rule)
            {
                verdict.suppressed.push(suppress(
                    Reason::Cooldown,
                    format!(
                        "{} fired for this profile at {}; cooldown {} s",
                        action.origin.label(),
                        crate::calendar::rfc3339(*last),
                        cooldown_ms / 1_000
                    ),
                ));
                continue;
            }
            let mut release_at = None;
            if !transactional(&action) {
                let key = arbitration_key(&action);
                if let Some((winner, priority)) = claimed.get(&key)
                    && winner.id != action.origin.id
                {
                    verdict.suppressed.push(suppress(
                        Reason::Priority,
                        format!("{} (priority {priority}) won {key}", winner.label()),
                    ));
                    continue;
                }
                let own = policy.caps.get(channel);
                let own_key = own.map(|_| format!("{channel}/{rule}"));
                let limits = [
                    (channel, self.caps.get(channel)),
                    (own_key.as_deref().unwrap_or(channel), own),
                ];
                if let Some(detail) = limits.iter().find_map(|(key, limit)| {
                    exceeded(state.caps.get(*key), *limit, &today, &this_week, key)
                }) {
                    verdict.suppressed.push(suppress(Reason::Cap, detail));
                    continue;
                }
                for (key, limit) in &limits {
                    if limit.is_some() {
                        count(
                            state.caps.entry((*key).into()).or_default(),
                            &today,
                            &this_week,
                        );
                    }
                }
                claimed.insert(key, (action.origin.clone(), policy.priority));
                let quiet = policy.quiet_hours.as_ref().or(self.quiet_hours.as_ref());
                if self.quiet_channels.iter().any(|c| c == channel) {
                    release_at = quiet.and_then(|q| q.release_at(now_ms, &tz));
                }
            }
            if policy.cooldown_ms.is_some() && !fired_rules.contains(&rule) {
                fired_rules.push(rule.clone());
                state.fired_ms.insert(rule.as_str().into(), now_ms);
            }
            match release_at {
                Some(at) => verdict.held.push((action, at)),
                None => verdict.fired.push(action),
            }
        }
        verdict
    }
}

fn exceeded(
    count: Option<&CapCount>,
    limit: Option<&CapLimits>,
    today: &str,
    this_week: &str,
    key: &str,
) -> Option<String> {
    let limit = limit?;
    let (day, week) = count.map_or((0, 0), |c| {
        (
            if c.day == today { c.day_count } else { 0 },
            if c.week == this_week { c.week_count } else { 0 },
        )
    });
    if let Some(per_day) = limit.per_day
        && day >= per_day
    {
        return Some(format!("{key}: {per_day} per day reached ({today})"));
    }
    if let Some(per_week) = limit.per_week
        && week >= per_week
    {
        return Some(format!("{key}: {per_week} per week reached ({this_week})"));
    }
    None
}

fn count(counter: &mut CapCount, today: &str, this_week: &str) {
    if counter.day != today {
        counter.day = today.into();
        counter.day_count = 0;
    }
    if counter.week != this_week {
        counter.week = this_week.into();
        counter.week_count = 0;
    }
    counter.day_count += 1;
    counter.week_count += 1;
}
