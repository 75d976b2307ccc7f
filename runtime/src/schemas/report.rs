//! The schema violations report (`GET /api/schema-violations`): per event type, the events
//! flagged (`warn`) and blocked, counts by kind, counts per hour, and the latest samples with
//! their violations. Counted in each process where the violation is found (a decision thread,
//! the HTTP ingest), written to `NUDGE_VIOLATIONS` under the instance's id with the stats, and
//! summed over every instance's entry when asked.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use nudge_rules::schema::Violation;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::stats::STATS_MAX_ENTRIES;
use crate::telemetry;

/// Hours of counts kept per type.
pub const HOURS_KEPT: usize = 48;
/// Latest samples kept per type.
pub const SAMPLES_KEPT: usize = 5;
/// A sample's `data` larger than this (as JSON) is kept as `null`: its violations still name
/// the paths.
pub const SAMPLE_DATA_MAX_BYTES: usize = 4_096;

const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TypeReport {
    pub warned: u64,
    pub blocked: u64,
    /// Violations by kind (`missing_required`, `wrong_type`, …).
    pub kinds: BTreeMap<String, u64>,
    /// Per hour (its start, ms since the epoch): violations by kind.
    pub hours: BTreeMap<i64, BTreeMap<String, u64>>,
    /// The newest first.
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub at_ms: i64,
    pub event_id: String,
    pub subject: String,
    pub blocked: bool,
    /// The event's data, or `null` when larger than [`SAMPLE_DATA_MAX_BYTES`].
    pub data: Value,
    pub violations: Vec<Violation>,
}

/// What one violating event is, for the report.
pub struct Flagged<'a> {
    pub event_type: &'a str,
    pub event_id: &'a str,
    pub subject: &'a str,
    pub data: &'a Value,
    pub violations: &'a [Violation],
    pub blocked: bool,
    pub at_ms: i64,
}

impl TypeReport {
    fn add(&mut self, flagged: &Flagged) {
        if flagged.blocked {
            self.blocked += 1;
        } else {
            self.warned += 1;
        }
        let hour = self
            .hours
            .entry(flagged.at_ms - flagged.at_ms.rem_euclid(HOUR_MS))
            .or_default();
        for violation in flagged.violations {
            *self.kinds.entry(violation.kind.clone()).or_default() += 1;
            *hour.entry(violation.kind.clone()).or_default() += 1;
        }
        let fits = serde_json::to_vec(flagged.data).is_ok_and(|b| b.len() <= SAMPLE_DATA_MAX_BYTES);
        self.samples.insert(
            0,
            Sample {
                at_ms: flagged.at_ms,
                event_id: flagged.event_id.to_owned(),
                subject: flagged.subject.to_owned(),
                blocked: flagged.blocked,
                data: if fits {
                    flagged.data.clone()
                } else {
                    Value::Null
                },
                violations: flagged.violations.to_vec(),
            },
        );
        self.trim();
    }

    fn trim(&mut self) {
        while self.hours.len() > HOURS_KEPT {
            self.hours.pop_first();
        }
        self.samples.truncate(SAMPLES_KEPT);
    }

    /// Adds another instance's report of the same type.
    pub fn merge(&mut self, other: &TypeReport) {
        self.warned += other.warned;
        self.blocked += other.blocked;
        add_counts(&mut self.kinds, &other.kinds);
        for (hour, kinds) in &other.hours {
            add_counts(self.hours.entry(*hour).or_default(), kinds);
        }
        self.samples.extend(other.samples.iter().cloned());
        self.samples
            .sort_by_key(|sample| std::cmp::Reverse(sample.at_ms));
        self.trim();
    }
}

fn add_counts(to: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (kind, count) in from {
        *to.entry(kind.clone()).or_default() += count;
    }
}

#[derive(Default)]
pub struct Report {
    types: Mutex<HashMap<String, TypeReport>>,
}

impl Report {
    /// Counts one event with violations (metrics too).
    pub fn flag(&self, flagged: &Flagged) {
        let outcome = if flagged.blocked { "blocked" } else { "warned" };
        for violation in flagged.violations {
            metrics::counter!(telemetry::SCHEMA_VIOLATIONS, "kind" => violation.kind.clone(), "outcome" => outcome)
                .increment(1);
        }
        let Ok(mut types) = self.types.lock() else {
            return;
        };
        if let Some(report) = types.get_mut(flagged.event_type) {
            report.add(flagged);
        } else if types.len() < STATS_MAX_ENTRIES {
            types
                .entry(flagged.event_type.to_owned())
                .or_default()
                .add(flagged);
        }
    }

    pub fn snapshot(&self) -> HashMap<String, TypeReport> {
        self.types.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

pub fn global() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(Report::default)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn violation(kind: &str) -> Violation {
        Violation {
            kind: kind.into(),
            instance_path: "/total".into(),
            schema_path: "/properties/total/type".into(),
            message: "\"12\" is not of type \"number\"".into(),
        }
    }

    #[test]
    fn counts_samples_and_hours_add_up_across_instances() {
        let (a, b) = (Report::default(), Report::default());
        let data = json!({"total": "12"});
        let violations = [violation("wrong_type"), violation("missing_required")];
        for (report, at_ms, blocked) in [
            (&a, 1_000, false),
            (&a, HOUR_MS + 5, true),
            (&b, 2_000, true),
        ] {
            report.flag(&Flagged {
                event_type: "cart.updated",
                event_id: &format!("e{at_ms}"),
                subject: "ada",
                data: &data,
                violations: &violations,
                blocked,
                at_ms,
            });
        }
        let mut total = a.snapshot().remove("cart.updated").unwrap();
        total.merge(&b.snapshot()["cart.updated"]);
        assert_eq!((total.warned, total.blocked), (1, 2));
        assert_eq!(total.kinds["wrong_type"], 3);
        assert_eq!(total.hours[&0]["wrong_type"], 2);
        assert_eq!(total.hours[&HOUR_MS]["missing_required"], 1);
        let order: Vec<i64> = total.samples.iter().map(|s| s.at_ms).collect();
        assert_eq!(order, [HOUR_MS + 5, 2_000, 1_000]);
        let big = json!({"blob": "x".repeat(SAMPLE_DATA_MAX_BYTES)});
        a.flag(&Flagged {
            event_type: "cart.updated",
            event_id: "big",
            subject: "ada",
            data: &big,
            violations: &violations,
            blocked: false,
            at_ms: 9,
        });
        let samples = &a.snapshot()["cart.updated"].samples;
        assert_eq!(samples[0].data, Value::Null, "too large to keep");
        assert_eq!(samples[0].violations.len(), 2);
    }
}
