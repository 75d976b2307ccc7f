//! Did a rule (or a plugin) work? Its conversion goal and holdout group, pure: which profiles a rule holds
//! out (a deterministic function of the profile and the rule), what counts as a conversion,
//! and — in [`touch`] — how conversions are attributed from the profile's state; [`uplift`]
//! compares the treated group with the control group.
//!
//! A rule with `holdout = 10` decides, traces and counts the actions of one profile in ten as
//! usual, but does not publish them: those profiles are the control group, measured exactly
//! like the treated ones, so the difference of their conversion rates is what the rule caused.

pub mod report;
pub mod results;
pub mod touch;
pub mod uplift;

pub use touch::Outcome;

use std::collections::BTreeMap;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::action::{Action, Origin};
use crate::duration::parse_duration;
use crate::policy::{Reason, Suppressed, Verdict};
use crate::rule::RuleError;
use crate::state::{DAY_MS, ProfileState, field_hash};
use crate::trigger::Pattern;

/// The largest holdout a rule may declare, in percent: past half, the "control" is the
/// treatment's majority and the rule mostly does nothing.
pub const MAX_HOLDOUT_PERCENT: f64 = 50.0;
/// Holdout membership is decided in steps of 0.01 %.
pub const HOLDOUT_BUCKETS: u64 = 10_000;
/// The longest goal window: a profile's state remembers an exposure at most this long.
pub const MAX_GOAL_WITHIN_MS: i64 = 90 * DAY_MS;
/// Fields a goal's filter may name.
pub const MAX_GOAL_FILTER_FIELDS: usize = 8;

/// A rule's conversion goal as written: `goal = { event = "order.placed", within = "3d",
/// value = "data.total" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoalSpec {
    /// The event type (pattern) that counts as converting: `order.placed`, `order.*`.
    pub event: String,
    /// How long after the action a goal event still counts (`"3d"`).
    pub within: String,
    /// Top-level data fields the goal event must carry with exactly these (scalar) values,
    /// e.g. `{ currency = "EUR" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, Value>,
    /// Where a conversion's value is read, `data.<path>` (e.g. `data.total` for revenue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A goal, checked and prepared: what an exposure carries in the profile's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub event: CompactString,
    pub within_ms: i64,
    /// [`field_hash`]es of the filter's `field = value` pairs.
    pub filter: Vec<u32>,
    /// The value's path inside `data`, dotted (`total`, `order.total`).
    pub value: Option<CompactString>,
}

/// A rule's experiment, compiled with the rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// Share of profiles held out, in hundredths of a percent (0: none).
    pub holdout_bp: u32,
    pub goal: Option<Goal>,
}

/// Which group of a rule's experiment a profile is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// Gets the rule's actions.
    Treatment,
    /// Held out: decided and counted, never published.
    Control,
}

impl Arm {
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Treatment => "treatment",
            Arm::Control => "control",
        }
    }
}

impl Experiment {
    /// The experiment a rule declares, if any; errors name the field.
    pub fn compile(
        goal: Option<&GoalSpec>,
        holdout_percent: Option<f64>,
    ) -> Result<Option<Experiment>, RuleError> {
        let holdout_bp = match holdout_percent {
            Some(percent) => holdout_basis_points(percent)
                .map_err(|message| RuleError::invalid("holdout", message))?,
            None => 0,
        };
        let goal = goal.map(Goal::compile).transpose()?;
        if holdout_bp == 0 && goal.is_none() {
            return Ok(None);
        }
        Ok(Some(Experiment { holdout_bp, goal }))
    }

    /// The group `profile_id` is in for rule `rule_id`.
    pub fn arm(&self, rule_id: &str, profile_id: &str) -> Arm {
        if holdout_bucket(rule_id, profile_id) < u64::from(self.holdout_bp) {
            Arm::Control
        } else {
            Arm::Treatment
        }
    }
}

impl Goal {
    fn compile(spec: &GoalSpec) -> Result<Goal, RuleError> {
        Pattern::parse(&spec.event).map_err(|m| RuleError::invalid("goal.event", m))?;
        let within =
            parse_duration(&spec.within).map_err(|m| RuleError::invalid("goal.within", m))?;
        let within_ms = i64::try_from(within.as_millis()).unwrap_or(i64::MAX);
        if within_ms > MAX_GOAL_WITHIN_MS {
            return Err(RuleError::invalid(
                "goal.within",
                format!("must be at most {}d", MAX_GOAL_WITHIN_MS / DAY_MS),
            ));
        }
        if spec.filter.len() > MAX_GOAL_FILTER_FIELDS {
            return Err(RuleError::invalid(
                "goal.filter",
                format!("may name at most {MAX_GOAL_FILTER_FIELDS} fields"),
            ));
        }
        let filter = spec
            .filter
            .iter()
            .map(|(field, value)| {
                field_hash(field, value).ok_or_else(|| {
                    RuleError::invalid(
                        format!("goal.filter.{field}"),
                        "must be a string, number or boolean",
                    )
                })
            })
            .collect::<Result<Vec<u32>, RuleError>>()?;
        let value = match &spec.value {
            None => None,
            Some(path) => Some(value_path(path).map_err(|m| RuleError::invalid("goal.value", m))?),
        };
        Ok(Goal {
            event: spec.event.as_str().into(),
            within_ms,
            filter,
            value,
        })
    }
}

/// Splits the verdict on one event by each experimenting rule's (or plugin's) group for this
/// profile: a held-out profile's actions leave `fired` and `held` for `suppressed` with reason
/// `holdout` (after policy, so the control group is the profiles the rule would have reached,
/// and their caps and cooldowns count the same); every one that acted, or would have, leaves a
/// touch. `experimenting`: the rules and plugins the event ran that declare a goal or holdout.
/// Returns what happened to each.
pub fn split_verdict<'a>(
    verdict: &mut Verdict,
    experimenting: impl IntoIterator<Item = (&'a Origin, &'a Experiment)>,
    state: &mut ProfileState,
    now_ms: i64,
    max_touches: usize,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for (origin, experiment) in experimenting {
        let id = origin.key();
        outcomes.push(Outcome::Triggered {
            rule: id.to_owned(),
            version: origin.version,
        });
        let ours =
            |action: &Action| action.origin.kind == origin.kind && action.origin.id == origin.id;
        let actions = verdict.fired.iter().filter(|a| ours(a)).count()
            + verdict.held.iter().filter(|(a, _)| ours(a)).count();
        if actions == 0 {
            continue;
        }
        let arm = experiment.arm(id, &state.profile.id);
        if arm == Arm::Control {
            let detail = format!(
                "the profile is in {}'s {}% holdout (control group): decided, not sent",
                origin.label(),
                f64::from(experiment.holdout_bp) / 100.0
            );
            let held_out = |action: Action| Suppressed {
                action,
                reason: Reason::Holdout,
                detail: detail.clone(),
            };
            let (out, kept) = std::mem::take(&mut verdict.fired)
                .into_iter()
                .partition(ours);
            verdict.fired = kept;
            verdict.suppressed.extend(Vec::into_iter(out).map(held_out));
            let (out, kept) = std::mem::take(&mut verdict.held)
                .into_iter()
                .partition(|(a, _)| ours(a));
            verdict.held = kept;
            verdict
                .suppressed
                .extend(Vec::into_iter(out).map(|(action, _)| held_out(action)));
        }
        let actions = u32::try_from(actions).unwrap_or(u32::MAX);
        outcomes.push(touch::expose(
            &mut state.touches,
            (id, origin.version),
            experiment,
            arm,
            actions,
            now_ms,
            max_touches,
        ));
    }
    outcomes
}

/// `data.total` → `total`: a goal's value is read from the event's data.
fn value_path(path: &str) -> Result<CompactString, String> {
    let inner = path.strip_prefix("data.").ok_or_else(|| {
        format!("`{path}` must be a field of the event's data, e.g. \"data.total\"")
    })?;
    if inner.split('.').any(str::is_empty) {
        return Err(format!("`{path}` has an empty field name"));
    }
    Ok(inner.into())
}

/// `10` → 1000, `2.5` → 250: a percentage as hundredths of a percent.
pub fn holdout_basis_points(percent: f64) -> Result<u32, String> {
    if !(0.0..=MAX_HOLDOUT_PERCENT).contains(&percent) {
        return Err(format!(
            "must be a percentage from 0 to {MAX_HOLDOUT_PERCENT}, e.g. 10"
        ));
    }
    let basis_points = (percent * 100.0).round();
    if (basis_points - percent * 100.0).abs() > 1e-6 {
        return Err("may have at most two decimals, e.g. 2.5".into());
    }
    Ok(basis_points as u32)
}

/// Where a profile falls in rule `rule_id`'s holdout draw, 0 to 9 999 (a plugin's: `rule_id` is
/// `plugin:<name>`, its [`Origin::key`]): the first eight bytes of SHA-256 over `holdout`, the
/// rule id and the profile id (each followed by a zero byte) as a
/// big-endian number, modulo 10 000. The profile is held out when this is below the holdout in
/// hundredths of a percent. It depends on nothing else — not the version, the instance, the
/// partition or the time — so a profile stays in its group across events, restarts, failovers
/// and edits of the rule, and raising the holdout only adds profiles to the control group.
pub fn holdout_bucket(rule_id: &str, profile_id: &str) -> u64 {
    let mut hasher = Sha256::new();
    for part in ["holdout", rule_id, profile_id] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % HOLDOUT_BUCKETS
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn goal(value: Value) -> Result<Option<Experiment>, RuleError> {
        let spec: GoalSpec = serde_json::from_value(value).unwrap();
        Experiment::compile(Some(&spec), None)
    }

    #[test]
    fn holdout_percentages_become_basis_points() {
        assert_eq!(holdout_basis_points(10.0), Ok(1_000));
        assert_eq!(holdout_basis_points(2.5), Ok(250));
        assert_eq!(holdout_basis_points(0.0), Ok(0));
        assert!(holdout_basis_points(50.5).is_err());
        assert!(holdout_basis_points(-1.0).is_err());
        assert!(holdout_basis_points(f64::NAN).is_err());
        assert!(
            holdout_basis_points(1.234)
                .unwrap_err()
                .contains("two decimals")
        );
        let err = Experiment::compile(None, Some(80.0)).unwrap_err();
        assert!(matches!(err, RuleError::Invalid { field, .. } if field == "holdout"));
        assert_eq!(Experiment::compile(None, Some(0.0)), Ok(None));
    }

    #[test]
    fn goals_are_checked_field_by_field() {
        let ok = goal(
            json!({"event": "order.*", "within": "3d", "value": "data.total",
                             "filter": {"currency": "EUR"}}),
        )
        .unwrap()
        .unwrap();
        let compiled = ok.goal.unwrap();
        assert_eq!(compiled.within_ms, 3 * DAY_MS);
        assert_eq!(compiled.value.as_deref(), Some("total"));
        assert_eq!(
            compiled.filter,
            vec![field_hash("currency", &json!("EUR")).unwrap()]
        );
        let field = |v: Value| match goal(v).unwrap_err() {
            RuleError::Invalid { field, .. } => field,
            other => panic!("{other}"),
        };
        assert_eq!(
            field(json!({"event": "order..x", "within": "3d"})),
            "goal.event"
        );
        assert_eq!(
            field(json!({"event": "order.placed", "within": "3"})),
            "goal.within"
        );
        assert_eq!(
            field(json!({"event": "order.placed", "within": "13w"})),
            "goal.within"
        );
        assert_eq!(
            field(json!({"event": "o", "within": "1d", "value": "total"})),
            "goal.value"
        );
        assert_eq!(
            field(json!({"event": "o", "within": "1d", "filter": {"tags": ["a"]}})),
            "goal.filter.tags"
        );
        assert!(
            serde_json::from_value::<GoalSpec>(json!({"event": "o", "within": "1d",
            "windw": "2d"}))
            .is_err()
        );
    }

    #[test]
    fn membership_is_stable_and_close_to_the_percentage() {
        let experiment = Experiment::compile(None, Some(10.0)).unwrap().unwrap();
        let held = (0..20_000)
            .filter(|i| experiment.arm("cart", &format!("user-{i}")) == Arm::Control)
            .count();
        // 10 % of 20 000 is 2 000; three standard deviations are ±127.
        assert!((1_873..=2_127).contains(&held), "{held}");
        // The same inputs always give the same group; another rule draws independently.
        assert_eq!(
            holdout_bucket("cart", "user-1"),
            holdout_bucket("cart", "user-1")
        );
        let differs = (0..100)
            .filter(|i| {
                let p = format!("user-{i}");
                holdout_bucket("cart", &p) != holdout_bucket("welcome", &p)
            })
            .count();
        assert!(differs > 95);
    }

    #[test]
    fn the_documented_draw_is_pinned() {
        // Computed outside nudge (Python's hashlib) from the documented definition: a change of
        // the function would move profiles between the groups of running experiments.
        assert_eq!(holdout_bucket("cart", "user-1"), 4_038);
        assert_eq!(holdout_bucket("cart", "user-2"), 893);
        assert_eq!(holdout_bucket("cart", "alice"), 9_293);
    }
}
