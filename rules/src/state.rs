//! Per-profile state: what nudge remembers about one user between events — the profile rules
//! read (attributes, consent, time zone), counters and last-seen times per event type, sliding
//! windows, pending timers, policy counters and the recently applied events. Every part is
//! bounded by [`StateLimits`], so one busy profile cannot grow without end.

use std::collections::VecDeque;

use compact_str::CompactString;
use litemap::LiteMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{CloudEvent, EventDigest};
use crate::experiment::touch::Touch;
use crate::partition::Fnv1a32;
use crate::profile::Profile;
use crate::window::Window;

/// The event type Segment `identify` calls become; its data updates the profile.
pub const IDENTIFY_TYPE: &str = "profile.identified";

/// Bounds on one profile's state. Each field is a `NUDGE_PROFILE_*` setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateLimits {
    /// Events remembered per event type for `count()`; older ones fall out first.
    pub window_max_events: usize,
    /// Longest window `count()` can look back over; entries older than this are dropped.
    pub window_max_age_ms: i64,
    /// Event types tracked (counters, last seen, windows); the longest-unseen type goes first.
    pub max_event_types: usize,
    /// Attributes a profile may hold.
    pub max_attributes: usize,
    /// Size of one attribute value as JSON.
    pub max_attribute_bytes: usize,
    /// Timers pending per profile.
    pub max_timers: usize,
    /// Recently applied events remembered to recognise a duplicate (the same `source` + `id`
    /// published again).
    pub applied_events: usize,
    /// Rules with a goal or holdout whose latest exposure a profile remembers (for
    /// attribution); the stalest is forgotten first.
    pub max_touches: usize,
}

impl Default for StateLimits {
    fn default() -> Self {
        StateLimits {
            window_max_events: 100,
            window_max_age_ms: 35 * DAY_MS,
            max_event_types: 64,
            max_attributes: 128,
            max_attribute_bytes: 4_096,
            max_timers: 16,
            applied_events: 8,
            max_touches: 16,
        }
    }
}

pub const DAY_MS: i64 = 86_400_000;
/// Scalar top-level data fields remembered per window entry, for `count(.., #{ field: value })`.
const MAX_FILTER_FIELDS: usize = 16;

/// A timer a rule scheduled with `after(..)`. The profile state is the truth: a timer event
/// whose id is no longer listed here (cancelled or replaced) does nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingTimer {
    pub id: String,
    pub due_ms: i64,
    /// Event types (patterns) that cancel the timer when they arrive first.
    #[serde(default)]
    pub unless: Vec<String>,
    pub rule: String,
}

/// Actions counted towards a cap in the profile's current day and ISO week.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CapCount {
    pub day: CompactString,
    pub day_count: u32,
    pub week: CompactString,
    pub week_count: u32,
}

/// A message to publish with its JetStream dedupe id: an action, a timer event or a held action.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Outgoing {
    pub subject: String,
    pub id: String,
    pub body: String,
}

/// An event whose decision is in the state: seen again, it is a duplicate and changes nothing.
/// (States written before partitioned checkpoints also held an `outbox` here; it is ignored.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub event: EventDigest,
}

/// A profile's small maps (a few event types, rules, channels each), kept sorted in one vector:
/// an owner holds thousands of profiles in memory, and a B-tree spends a node of eleven slots
/// on a map of one entry. Ordered by key like a `BTreeMap`, so it reads and serializes alike.
/// Keys (event types, rule ids, channels) of up to 24 bytes live inline, not on the heap.
pub type StateMap<V> = LiteMap<CompactString, V>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileState {
    pub profile: Profile,
    #[serde(default)]
    pub created_ms: i64,
    #[serde(default)]
    pub updated_ms: i64,
    #[serde(default)]
    pub counters: StateMap<u64>,
    #[serde(default)]
    pub last_seen_ms: StateMap<i64>,
    /// Recent events per type, packed (see [`Window`]).
    #[serde(default)]
    pub windows: StateMap<Window>,
    #[serde(default)]
    pub timers: StateMap<PendingTimer>,
    /// Cap counters, keyed `<channel>` (all rules) or `<channel>/<rule>`.
    #[serde(default)]
    pub caps: StateMap<CapCount>,
    /// When each rule last fired for this profile (for `cooldown`).
    #[serde(default)]
    pub fired_ms: StateMap<i64>,
    /// Each experimenting rule's latest exposure of this profile, keyed by rule id.
    #[serde(default, skip_serializing_if = "LiteMap::is_empty")]
    pub touches: StateMap<Touch>,
    #[serde(default)]
    pub applied: VecDeque<Applied>,
    /// Stream sequence of the last event applied to this state (0: none, or decided outside a
    /// stream, as in a backtest). A partition restored from an older checkpoint skips the events
    /// this state already holds.
    #[serde(default)]
    pub seq: u64,
    /// Where the runtime stored the newest decisions about this profile (for nudge, a sequence
    /// in `NUDGE_TRACE`; 0: none yet).
    #[serde(default)]
    pub trace_seq: u64,
}

impl ProfileState {
    pub fn new(id: &str, now_ms: i64) -> ProfileState {
        ProfileState {
            profile: Profile::new(id),
            created_ms: now_ms,
            updated_ms: now_ms,
            ..ProfileState::default()
        }
    }

    pub fn applied(&self, event: &EventDigest) -> Option<&Applied> {
        self.applied.iter().find(|a| a.event == *event)
    }

    pub fn remember_applied(&mut self, applied: Applied, limits: &StateLimits) {
        self.applied.push_back(applied);
        while self.applied.len() > limits.applied_events.max(1) {
            self.applied.pop_front();
        }
    }

    /// Counts the event in its type's counter and window (before rules run, so `count()`
    /// includes it) and drops what fell out of the bounds.
    pub fn record(&mut self, event: &CloudEvent, now_ms: i64, limits: &StateLimits) {
        self.updated_ms = now_ms;
        match self.counters.get_mut(event.event_type.as_str()) {
            Some(count) => *count += 1,
            None => {
                self.counters.insert(event.event_type.as_str().into(), 1);
            }
        }
        let mut fields = [0_u32; MAX_FILTER_FIELDS];
        let mut kept = 0;
        if let Value::Object(map) = &event.data {
            for hash in map.iter().filter_map(|(k, v)| field_hash(k, v)) {
                fields[kept] = hash;
                kept += 1;
                if kept == MAX_FILTER_FIELDS {
                    break;
                }
            }
        }
        let window = match self.windows.get_mut(event.event_type.as_str()) {
            Some(window) => window,
            None => self
                .windows
                .entry(event.event_type.as_str().into())
                .or_default(),
        };
        window.push(now_ms, &fields[..kept]);
        let oldest_kept = now_ms - limits.window_max_age_ms;
        let max_events = limits.window_max_events.max(1);
        for (_, window) in self.windows.iter_mut() {
            window.trim(max_events, oldest_kept);
        }
        self.windows.retain(|_, w| !w.is_empty());
        self.forget_types_beyond(limits.max_event_types, &event.event_type);
    }

    /// After the rules ran: `last_seen()` during an event means the one before it.
    pub fn seen(&mut self, event_type: &str, now_ms: i64) {
        match self.last_seen_ms.get_mut(event_type) {
            Some(seen_ms) => *seen_ms = now_ms,
            None => {
                self.last_seen_ms.insert(event_type.into(), now_ms);
            }
        }
    }

    fn forget_types_beyond(&mut self, max_types: usize, keep: &str) {
        while self.counters.len() > max_types.max(1) {
            let stalest = self
                .counters
                .keys()
                .filter(|t| t.as_str() != keep)
                .min_by_key(|t| self.last_seen_ms.get(*t).copied().unwrap_or(i64::MIN))
                .cloned();
            let Some(stalest) = stalest else { break };
            self.counters.remove(&stalest);
            self.last_seen_ms.remove(&stalest);
            self.windows.remove(&stalest);
        }
    }

    /// Events of `event_type` at or after `now_ms - window_ms` whose data has every filter field.
    pub fn count(&self, event_type: &str, window_ms: i64, now_ms: i64, filter: &[u32]) -> i64 {
        self.windows
            .get(event_type)
            .map_or(0, |window| window.count(now_ms - window_ms, filter))
    }

    /// Applies a `profile.identified` event: `consent` and `timezone` fields update those, every
    /// other field becomes an attribute. Returns the fields refused, with why.
    pub fn identify(&mut self, data: &Value, limits: &StateLimits) -> Vec<String> {
        let Value::Object(traits) = data else {
            return Vec::new();
        };
        let mut refused = Vec::new();
        for (name, value) in traits {
            match (name.as_str(), value) {
                ("consent", Value::Object(consent)) => {
                    for (channel, given) in consent {
                        if let Value::Bool(_) = given {
                            self.profile.consent.insert(channel.clone(), given.clone());
                        } else {
                            refused.push(format!("consent.{channel}: must be true or false"));
                        }
                    }
                }
                ("timezone", Value::String(zone)) => match crate::calendar::zone(zone) {
                    Ok(_) => self.profile.timezone = zone.clone(),
                    Err(e) => refused.push(format!("timezone: {e}")),
                },
                _ => {
                    if let Err(e) = self.set_attribute(name, value.clone(), limits) {
                        refused.push(e);
                    }
                }
            }
        }
        refused
    }

    /// Sets (or with `null`, removes) one attribute within the bounds.
    pub fn set_attribute(
        &mut self,
        name: &str,
        value: Value,
        limits: &StateLimits,
    ) -> Result<(), String> {
        if value.is_null() {
            self.profile.attributes.remove(name);
            return Ok(());
        }
        check_attribute(&self.profile.attributes, name, &value, limits)?;
        self.profile.attributes.insert(name.to_owned(), value);
        Ok(())
    }
}

/// Whether `name = value` fits the attribute bounds of a profile holding `attributes`.
pub fn check_attribute(
    attributes: &serde_json::Map<String, Value>,
    name: &str,
    value: &Value,
    limits: &StateLimits,
) -> Result<(), String> {
    let bytes = serde_json::to_string(value).map_or(usize::MAX, |s| s.len());
    if bytes > limits.max_attribute_bytes {
        return Err(format!(
            "attribute `{name}` is {bytes} bytes as JSON; the limit is {} (profile_max_attribute_bytes)",
            limits.max_attribute_bytes
        ));
    }
    if !attributes.contains_key(name) && attributes.len() >= limits.max_attributes {
        return Err(format!(
            "a profile holds at most {} attributes (profile_max_attributes); `{name}` is one too many",
            limits.max_attributes
        ));
    }
    Ok(())
}

/// The hash a window entry keeps of `key = value` for a scalar value; `count()`'s filter hashes
/// its pairs the same way.
pub fn field_hash(key: &str, value: &Value) -> Option<u32> {
    use std::fmt::Write as _;
    // FNV-1a over `key=s:text`, `key=b:true`, `key=n:42`: fed piece by piece, no string built.
    let mut hash = Fnv1a32::default();
    hash.bytes(key.as_bytes()).bytes(b"=");
    match value {
        Value::String(s) => {
            hash.bytes(b"s:").bytes(s.as_bytes());
        }
        Value::Bool(b) => {
            hash.bytes(if *b { b"b:true" } else { b"b:false" });
        }
        Value::Number(n) => {
            hash.bytes(b"n:");
            let written = match n.as_i64() {
                Some(i) => write!(hash, "{i}"),
                None => write!(hash, "{}", n.as_f64()?),
            };
            written.ok()?;
        }
        _ => return None,
    }
    Some(hash.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(event_type: &str, data: Value) -> CloudEvent {
        CloudEvent::from_value(json!({"specversion":"1.0","id":"1","source":"t",
            "type": event_type, "subject":"u","data": data}))
        .unwrap()
    }

    #[test]
    fn windows_count_with_filters_and_stay_bounded() {
        let limits = StateLimits {
            window_max_events: 3,
            ..StateLimits::default()
        };
        let mut state = ProfileState::new("u", 0);
        for (minute, product) in [(0, "p1"), (10, "p2"), (20, "p1"), (30, "p1")] {
            let viewed = event("product.viewed", json!({"product_id": product}));
            state.record(&viewed, minute * 60_000, &limits);
        }
        let p1 = field_hash("product_id", &json!("p1")).unwrap();
        assert_eq!(
            state.count("product.viewed", 3_600_000, 30 * 60_000, &[]),
            3
        );
        assert_eq!(
            state.count("product.viewed", 3_600_000, 30 * 60_000, &[p1]),
            2
        );
        assert_eq!(
            state.count("product.viewed", 15 * 60_000, 30 * 60_000, &[p1]),
            2
        );
        assert_eq!(
            state.count("product.viewed", 5 * 60_000, 30 * 60_000, &[]),
            1
        );
        assert_eq!(state.count("order.placed", 3_600_000, 30 * 60_000, &[]), 0);
        assert_eq!(state.counters.get("product.viewed").copied().unwrap(), 4);
    }

    #[test]
    fn field_hashes_are_those_stored_windows_were_written_with() {
        // The hash of the canonical text, computed the way earlier versions did.
        let reference = |key: &str, canonical: String| {
            crate::partition::fnv1a32(format!("{key}={canonical}").as_bytes())
        };
        let cases = [
            (json!("p1"), "s:p1".to_owned()),
            (json!(true), "b:true".to_owned()),
            (json!(-42), "n:-42".to_owned()),
            (json!(2.5), format!("n:{}", 2.5_f64)),
        ];
        for (value, canonical) in cases {
            assert_eq!(
                field_hash("f", &value),
                Some(reference("f", canonical)),
                "{value}"
            );
        }
        assert_eq!(field_hash("f", &json!([1])), None);
    }

    #[test]
    fn windows_survive_their_packed_encoding() {
        let mut state = ProfileState::new("u", 0);
        for (i, product) in ["p1", "p2", "p1"].iter().enumerate() {
            let viewed = event("product.viewed", json!({"product_id": product, "n": i}));
            state.record(&viewed, i as i64 * 1_000 - 5, &StateLimits::default());
        }
        let json = serde_json::to_string(&state).unwrap();
        let back: ProfileState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
        assert!(json.len() < 600, "{json}");
    }

    #[test]
    fn old_entries_and_stale_types_are_forgotten() {
        let limits = StateLimits {
            max_event_types: 2,
            window_max_age_ms: DAY_MS,
            ..StateLimits::default()
        };
        let mut state = ProfileState::new("u", 0);
        for (i, t) in ["a.x", "b.x", "c.x"].iter().enumerate() {
            state.record(&event(t, json!({})), i as i64, &limits);
            state.seen(t, i as i64);
        }
        assert!(!state.counters.contains_key("a.x"));
        assert_eq!(state.counters.len(), 2);
        state.record(&event("c.x", json!({})), 2 * DAY_MS, &limits);
        assert_eq!(state.windows.get("c.x").unwrap().len(), 1);
        assert!(!state.windows.contains_key("b.x"));
    }

    #[test]
    fn identify_updates_consent_timezone_and_attributes() {
        let limits = StateLimits {
            max_attributes: 1,
            ..StateLimits::default()
        };
        let mut state = ProfileState::new("u", 0);
        let refused = state.identify(
            &json!({"consent": {"push": false}, "timezone": "Europe/Berlin",
                    "email": "a@b", "plan": "pro"}),
            &limits,
        );
        assert_eq!(state.profile.consent["push"], json!(false));
        assert_eq!(state.profile.timezone, "Europe/Berlin");
        assert_eq!(state.profile.attributes.len(), 1);
        assert!(refused[0].contains("profile_max_attributes"), "{refused:?}");
        let refused = state.identify(&json!({"timezone": "Mars/Base"}), &limits);
        assert!(refused[0].starts_with("timezone"), "{refused:?}");
    }
}
