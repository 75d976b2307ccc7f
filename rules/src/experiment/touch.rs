//! Attribution from the profile's state. Each rule with an experiment leaves a [`Touch`] on the
//! profiles it acts on (or would have, for the control group); a later event matching the
//! touch's goal within its window converts it.
//!
//! The model is **last touch**: when the goal event matches several open touches, the rule
//! that touched the profile most recently gets the conversion, and only it. (The alternatives —
//! first touch, or crediting every open touch — over-credit early or overlapping rules; with a
//! holdout per rule, last touch keeps each rule's control group measured the same way as its
//! treatment.) A touch converts once: one conversion per exposure, however many goal events
//! follow. A profile counts once per rule version in `profiles`, and once more in
//! `converted` the first time it converts for that version: the rates compare profiles, the
//! unit the holdout draws.
//!
//! Touches live in the profile's state, which the pipeline checkpoints with the stream
//! position: a redelivered goal event is recognised as a duplicate before it gets here, and a
//! new owner after a failover replays from the state the checkpoint left — so each conversion
//! is counted exactly once.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Arm, Experiment};
use crate::event::CloudEvent;
use crate::state::{StateMap, field_hash};
use crate::trigger::pattern_matches;

/// A profile's latest exposure to one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Touch {
    pub version: u64,
    pub arm: Arm,
    pub at_ms: i64,
    /// The goal window's end; 0 once this exposure converted (or with no goal).
    pub until_ms: i64,
    /// The goal (of the version that acted) this exposure waits for.
    #[serde(default, skip_serializing_if = "CompactString::is_empty")]
    pub goal: CompactString,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<CompactString>,
    /// The profile converted for `version` already.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub converted: bool,
}

/// What one event did to a rule's experiment, for the results.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The event ran the rule.
    Triggered { rule: String, version: u64 },
    /// The rule acted on the profile (treatment) or would have (control).
    Exposed {
        rule: String,
        version: u64,
        arm: Arm,
        /// Actions of this decision (published, held by quiet hours, or held out).
        actions: u32,
        /// The profile's first exposure to this version: it joins the version's group.
        first: bool,
    },
    /// A goal event converted the rule's latest exposure.
    Converted(Conversion),
}

impl Outcome {
    /// The rule version it is about.
    pub fn rule_version(&self) -> (&str, u64) {
        match self {
            Outcome::Triggered { rule, version } | Outcome::Exposed { rule, version, .. } => {
                (rule, *version)
            }
            Outcome::Converted(c) => (&c.rule, c.version),
        }
    }
}

/// A conversion credited to a rule version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversion {
    pub rule: String,
    pub version: u64,
    pub arm: Arm,
    /// The profile's first conversion for this version.
    pub first: bool,
    /// The goal's value (`goal.value`), when it names one and the event carries a number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Since the exposure.
    pub after_ms: i64,
}

/// Records that rule `rule`@`version` acted on the profile (`arm` says whether it was held
/// out), replacing the rule's earlier touch; beyond `max_touches` the stalest touch is
/// forgotten.
pub fn expose(
    touches: &mut StateMap<Touch>,
    (rule, version): (&str, u64),
    experiment: &Experiment,
    arm: Arm,
    actions: u32,
    now_ms: i64,
    max_touches: usize,
) -> Outcome {
    let earlier = touches.get(rule);
    let first = earlier.is_none_or(|t| t.version != version);
    let converted = !first && earlier.is_some_and(|t| t.converted);
    let goal = experiment.goal.as_ref();
    let touch = Touch {
        version,
        arm,
        at_ms: now_ms,
        until_ms: goal.map_or(0, |g| now_ms.saturating_add(g.within_ms)),
        goal: goal.map(|g| g.event.clone()).unwrap_or_default(),
        filter: goal.map(|g| g.filter.clone()).unwrap_or_default(),
        value: goal.and_then(|g| g.value.clone()),
        converted,
    };
    touches.insert(rule.into(), touch);
    while touches.len() > max_touches.max(1) {
        let stalest = touches
            .iter()
            .filter(|(key, _)| key.as_str() != rule)
            .min_by_key(|(_, t)| t.at_ms)
            .map(|(key, _)| key.clone());
        let Some(stalest) = stalest else { break };
        touches.remove(&stalest);
    }
    Outcome::Exposed {
        rule: rule.to_owned(),
        version,
        arm,
        actions,
        first,
    }
}

/// The conversion `event` makes, if it is the goal of an open touch: the most recent such
/// touch converts and closes.
pub fn attribute(
    touches: &mut StateMap<Touch>,
    event: &CloudEvent,
    now_ms: i64,
) -> Option<Conversion> {
    if touches.is_empty() {
        return None;
    }
    let mut fields: Option<Vec<u32>> = None;
    let mut chosen: Option<(&CompactString, i64)> = None;
    for (rule, touch) in touches.iter() {
        if touch.until_ms < now_ms || touch.at_ms > now_ms || touch.goal.is_empty() {
            continue;
        }
        if chosen.is_some_and(|(_, at_ms)| at_ms >= touch.at_ms) {
            continue;
        }
        if !pattern_matches(&touch.goal, &event.event_type) {
            continue;
        }
        if !touch.filter.is_empty() {
            let fields = fields.get_or_insert_with(|| data_field_hashes(&event.data));
            if !touch.filter.iter().all(|f| fields.contains(f)) {
                continue;
            }
        }
        chosen = Some((rule, touch.at_ms));
    }
    let rule = chosen?.0.clone();
    let touch = touches.get_mut(rule.as_str())?;
    let first = !touch.converted;
    touch.converted = true;
    touch.until_ms = 0;
    let value = touch
        .value
        .as_deref()
        .and_then(|path| value_at(&event.data, path));
    Some(Conversion {
        rule: rule.into(),
        version: touch.version,
        arm: touch.arm,
        first,
        value,
        after_ms: now_ms - touch.at_ms,
    })
}

fn data_field_hashes(data: &Value) -> Vec<u32> {
    match data {
        Value::Object(map) => map.iter().filter_map(|(k, v)| field_hash(k, v)).collect(),
        _ => Vec::new(),
    }
}

/// The number at dotted `path` inside `data`.
fn value_at(data: &Value, path: &str) -> Option<f64> {
    path.split('.')
        .try_fold(data, |value, key| value.get(key))?
        .as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::GoalSpec;
    use serde_json::json;

    const HOUR_MS: i64 = 3_600_000;

    fn experiment(goal: Value) -> Experiment {
        let spec: GoalSpec = serde_json::from_value(goal).unwrap();
        Experiment::compile(Some(&spec), Some(10.0))
            .unwrap()
            .unwrap()
    }

    fn event(event_type: &str, data: Value) -> CloudEvent {
        CloudEvent::from_value(json!({"specversion":"1.0","id":"1","source":"t",
            "type": event_type, "subject":"u","data": data}))
        .unwrap()
    }

    fn converted(conversion: Option<Conversion>) -> (String, bool, Option<f64>) {
        let c = conversion.expect("a conversion");
        (format!("{}@v{}", c.rule, c.version), c.first, c.value)
    }

    #[test]
    fn a_goal_within_the_window_converts_once() {
        let cart = experiment(json!({"event": "order.*", "within": "1d", "value": "data.total"}));
        let mut touches = StateMap::new();
        let exposed = expose(&mut touches, ("cart", 3), &cart, Arm::Treatment, 1, 0, 16);
        assert!(matches!(exposed, Outcome::Exposed { first: true, .. }));
        assert!(attribute(&mut touches, &event("cart.viewed", json!({})), HOUR_MS).is_none());
        let order = event("order.placed", json!({"total": 42.5}));
        assert_eq!(
            converted(attribute(&mut touches, &order, 2 * HOUR_MS)),
            ("cart@v3".into(), true, Some(42.5))
        );
        // The same exposure does not convert twice.
        assert!(attribute(&mut touches, &order, 3 * HOUR_MS).is_none());
        // A new exposure of the same version converts again, but the profile is not new.
        let again = expose(
            &mut touches,
            ("cart", 3),
            &cart,
            Arm::Treatment,
            1,
            4 * HOUR_MS,
            16,
        );
        assert!(matches!(again, Outcome::Exposed { first: false, .. }));
        assert_eq!(
            converted(attribute(&mut touches, &order, 5 * HOUR_MS)),
            ("cart@v3".into(), false, Some(42.5))
        );
        // After the window, nothing converts; a new version starts a new count.
        expose(
            &mut touches,
            ("cart", 3),
            &cart,
            Arm::Treatment,
            1,
            6 * HOUR_MS,
            16,
        );
        assert!(attribute(&mut touches, &order, 31 * HOUR_MS).is_none());
        let v4 = expose(
            &mut touches,
            ("cart", 4),
            &cart,
            Arm::Treatment,
            1,
            32 * HOUR_MS,
            16,
        );
        assert!(matches!(v4, Outcome::Exposed { first: true, .. }));
        assert!(converted(attribute(&mut touches, &order, 33 * HOUR_MS)).1);
    }

    #[test]
    fn the_last_touch_gets_the_conversion_and_filters_must_hold() {
        let order = experiment(json!({"event": "order.placed", "within": "3d"}));
        let eur = experiment(json!({"event": "order.placed", "within": "3d",
                                    "filter": {"currency": "EUR"}}));
        let mut touches = StateMap::new();
        expose(&mut touches, ("welcome", 1), &order, Arm::Control, 1, 0, 16);
        expose(
            &mut touches,
            ("cart", 2),
            &order,
            Arm::Treatment,
            2,
            HOUR_MS,
            16,
        );
        expose(
            &mut touches,
            ("euro", 1),
            &eur,
            Arm::Treatment,
            1,
            2 * HOUR_MS,
            16,
        );
        let usd = event("order.placed", json!({"currency": "USD"}));
        assert_eq!(
            converted(attribute(&mut touches, &usd, 3 * HOUR_MS)).0,
            "cart@v2"
        );
        let euro = event("order.placed", json!({"currency": "EUR"}));
        assert_eq!(
            converted(attribute(&mut touches, &euro, 4 * HOUR_MS)).0,
            "euro@v1"
        );
        let welcome = attribute(&mut touches, &euro, 5 * HOUR_MS).unwrap();
        assert_eq!((welcome.arm, welcome.after_ms), (Arm::Control, 5 * HOUR_MS));
    }

    #[test]
    fn touches_stay_bounded_and_survive_serialization() {
        let goal = experiment(json!({"event": "order.placed", "within": "1d",
                                     "value": "data.order.total"}));
        let mut touches = StateMap::new();
        for (i, rule) in ["a", "b", "c"].iter().enumerate() {
            expose(
                &mut touches,
                (rule, 1),
                &goal,
                Arm::Treatment,
                1,
                i as i64,
                2,
            );
        }
        assert_eq!(
            touches.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        let json = serde_json::to_string(&touches).unwrap();
        let mut back: StateMap<Touch> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, touches);
        let order = event("order.placed", json!({"order": {"total": 7}}));
        assert_eq!(converted(attribute(&mut back, &order, 10)).2, Some(7.0));
    }
}
