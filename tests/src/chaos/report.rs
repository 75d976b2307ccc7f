//! The verdict of a chaos run, computed afterwards from what JetStream stored (so nothing a
//! watcher missed while the cluster was down can hide a loss), and its Markdown report.
//!
//! An event's delay is the time from JetStream storing it to JetStream storing its action. Each
//! fault is measured twice: how long after what it took away was back every partition had
//! committed every event stored until then (catching up), and the longest delay among the events
//! stored from its start until then (how long the fault made the events that met it wait). The
//! next fault starts only after that, so no fault's figures hold another's.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;

use async_nats::jetstream;
use serde_json::Value;

use super::Plan;
use super::faults::{Fault, FaultRecord};
use super::traffic::{LoadOutcome, RuleChanges, SideOutcome};
use crate::ordered::{self, STEP_TYPE};
use crate::read_all_stored;

const NS_PER_MS: f64 = 1e6;

/// One fault and what it cost.
#[derive(Clone, Debug)]
pub struct Recovery {
    pub record: FaultRecord,
    /// From what the fault took away being back to the pipeline having caught up.
    pub catch_up_ms: f64,
    /// Ordered events stored from the fault's start until the pipeline caught up.
    pub events: usize,
    /// The longest delay among them (`None` when none was stored: the broker was down).
    pub longest_delay_ms: Option<f64>,
}

/// The recoveries of one kind of fault.
#[derive(Clone, Copy, Debug)]
pub struct KindFigures {
    pub times: usize,
    /// Catching up after the fault: p50 and max (ms).
    pub catch_up_ms: [f64; 2],
    /// The longest event delay of each fault: p50 and max (ms).
    pub longest_delay_ms: [f64; 2],
}

#[derive(Debug)]
pub struct Report {
    pub plan: Plan,
    pub duration_s: f64,
    pub load: LoadOutcome,
    pub actions: usize,
    pub poison_sent: usize,
    pub poison_dead_lettered: usize,
    pub hostile_events: usize,
    pub changes_accepted: usize,
    pub changes_refused: usize,
    pub changes_retried: usize,
    pub drain_ms: u128,
    /// Delays of the events stored before the first fault: p50, p99, max (ms).
    pub steady_delay_ms: [f64; 3],
    pub recoveries: Vec<Recovery>,
    /// What went wrong; empty when the run passed.
    pub failures: Vec<String>,
}

/// The `q` quantile (0–1) of sorted `values`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub async fn gather(
        js: &jetstream::Context,
        plan: &Plan,
        load: &LoadOutcome,
        side: &SideOutcome,
        changes: &RuleChanges,
        records: &[FaultRecord],
        panics: &[String],
        drain_ms: u128,
        started: Instant,
    ) -> Report {
        let mut failures = Vec::new();
        let actions = ordered::ordered_actions(js).await;
        failures.extend(actions.verdict(plan.profiles, load.rounds));
        if !actions.others.is_empty() {
            failures.push(format!("unexpected actions: {:?}", actions.others));
        }

        // When each ordered event was stored; none may be stored twice.
        let mut stored_ns: HashMap<String, i128> = HashMap::new();
        let mut stored_twice = 0;
        for (message, at_ns) in read_all_stored(js, "NUDGE_EVENTS").await {
            let Ok(event) = serde_json::from_slice::<Value>(&message.payload) else {
                continue;
            };
            if event["type"] == STEP_TYPE
                && let Some(id) = event["id"].as_str()
                && stored_ns.insert(id.to_owned(), at_ns).is_some()
            {
                stored_twice += 1;
            }
        }
        if stored_twice > 0 {
            failures.push(format!(
                "{stored_twice} events stored twice in NUDGE_EVENTS"
            ));
        }

        let (poison_dead_lettered, dlq_failures) = check_dead_letters(js, side).await;
        failures.extend(dlq_failures);
        for line in panics.iter().take(5) {
            failures.push(format!("an instance panicked: {line}"));
        }
        failures.extend(changes.unexpected.iter().cloned());

        let delays: Vec<(i128, f64)> = stored_ns
            .iter()
            .filter_map(|(id, event_ns)| {
                let action_ns = actions.stored_ns.get(id)?;
                Some((*event_ns, (action_ns - event_ns) as f64 / NS_PER_MS))
            })
            .collect();
        let first_fault_ns = records.first().map_or(i128::MAX, |r| r.started_ns);
        let steady = sorted(
            delays
                .iter()
                .filter(|(at, _)| *at < first_fault_ns)
                .map(|(_, d)| *d)
                .collect(),
        );
        let recoveries = records
            .iter()
            .map(|record| {
                let window: Vec<f64> = delays
                    .iter()
                    .filter(|(at, _)| (record.started_ns..=record.caught_up_ns).contains(at))
                    .map(|(_, d)| *d)
                    .collect();
                Recovery {
                    record: record.clone(),
                    catch_up_ms: (record.caught_up_ns - record.restored_ns) as f64 / NS_PER_MS,
                    events: window.len(),
                    longest_delay_ms: window.into_iter().reduce(f64::max),
                }
            })
            .collect();
        Report {
            plan: plan.clone(),
            duration_s: started.elapsed().as_secs_f64(),
            load: load.clone(),
            actions: actions.pushes.values().sum(),
            poison_sent: side.poison.len(),
            poison_dead_lettered,
            hostile_events: side.hostile_events,
            changes_accepted: changes.accepted,
            changes_refused: changes.refused,
            changes_retried: changes.retried,
            drain_ms,
            steady_delay_ms: [
                quantile(&steady, 0.5),
                quantile(&steady, 0.99),
                steady.last().copied().unwrap_or(f64::NAN),
            ],
            recoveries,
            failures,
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn events_sent(&self) -> u64 {
        u64::from(self.plan.profiles) * u64::from(self.load.rounds)
    }

    /// The recoveries of one kind of fault.
    pub fn recovery_of(&self, fault: Fault) -> KindFigures {
        let of_kind: Vec<&Recovery> = self
            .recoveries
            .iter()
            .filter(|r| r.record.fault == fault)
            .collect();
        let p50_max = |values: Vec<f64>| {
            let values = sorted(values);
            [
                quantile(&values, 0.5),
                values.last().copied().unwrap_or(f64::NAN),
            ]
        };
        KindFigures {
            times: of_kind.len(),
            catch_up_ms: p50_max(of_kind.iter().map(|r| r.catch_up_ms).collect()),
            longest_delay_ms: p50_max(of_kind.iter().filter_map(|r| r.longest_delay_ms).collect()),
        }
    }

    pub fn markdown(&self) -> String {
        let plan = &self.plan;
        let load_s = (self.load.ended_ns - self.load.started_ns) as f64 / 1e9;
        let mut out = String::new();
        let verdict = if self.passed() { "passed" } else { "FAILED" };
        let _ = writeln!(out, "# Chaos run ({}): {verdict}\n", plan.name);
        let _ = writeln!(
            out,
            "A 3-node JetStream cluster (streams and buckets with 3 replicas), {} nudge instances \
             (partition lease {} ms), {} profiles sending ordered events at a target of {}/s; \
             faults one after another, {:.0} s of load between them. {:.0} s in all.\n",
            plan.instances,
            plan.partition_lease_ms,
            plan.profiles,
            plan.rate_per_s,
            plan.fault_gap.as_secs_f64(),
            self.duration_s
        );
        let [p50, p99, max] = self.steady_delay_ms;
        let rows = [
            (
                "ordered events sent".to_owned(),
                format!(
                    "{} ({} rounds in {load_s:.0} s: {:.0}/s)",
                    self.events_sent(),
                    self.load.rounds,
                    self.events_sent() as f64 / load_s
                ),
            ),
            (
                "actions stored".to_owned(),
                format!("{} (one per event expected)", self.actions),
            ),
            (
                "poison events sent / dead-lettered with a reason".to_owned(),
                format!("{} / {}", self.poison_sent, self.poison_dead_lettered),
            ),
            (
                "events for the hostile rule and plugin".to_owned(),
                self.hostile_events.to_string(),
            ),
            (
                "rule and plugin changes stored / broken rules refused / 5xx answers retried"
                    .to_owned(),
                format!(
                    "{} / {} / {}",
                    self.changes_accepted, self.changes_refused, self.changes_retried
                ),
            ),
            (
                "delay before the first fault, p50 / p99 / max".to_owned(),
                format!("{p50:.0} / {p99:.0} / {max:.0} ms"),
            ),
            (
                "drain after the load stopped".to_owned(),
                format!("{} ms", self.drain_ms),
            ),
        ];
        let _ = writeln!(out, "| measure | value |\n|---|---|");
        for (what, value) in rows {
            let _ = writeln!(out, "| {what} | {value} |");
        }
        let _ = writeln!(
            out,
            "\n## Recoveries\n\n*Caught up*: from what the fault took away being back (the node \
             restarted, the instance ready or resumed, the cluster answering) until every partition \
             had committed every event stored until then. *Longest delay*: the longest time from \
             an event stored to its action stored, among the events stored from the fault's start \
             until the pipeline caught up.\n\n\
             | fault | times | caught up p50 | max | longest delay p50 | max |\n|---|---|---|---|---|---|"
        );
        for fault in Fault::ALL {
            let figures = self.recovery_of(fault);
            let [c50, cmax] = figures.catch_up_ms;
            let [d50, dmax] = figures.longest_delay_ms;
            let _ = writeln!(
                out,
                "| {} | {} | {c50:.0} ms | {cmax:.0} ms | {d50:.0} ms | {dmax:.0} ms |",
                fault.label(),
                figures.times
            );
        }
        let _ = writeln!(
            out,
            "\n## Every fault\n\n| # | fault | target | lasted | caught up after | events meanwhile | longest delay |\n|---|---|---|---|---|---|---|"
        );
        for (i, r) in self.recoveries.iter().enumerate() {
            let lasted_s = (r.record.restored_ns - r.record.started_ns) as f64 / 1e9;
            let delay = r
                .longest_delay_ms
                .map_or("—".to_owned(), |ms| format!("{ms:.0} ms"));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {lasted_s:.1} s | {:.0} ms | {} | {delay} |",
                i + 1,
                r.record.fault.label(),
                r.record.target,
                r.catch_up_ms,
                r.events
            );
        }
        if !self.passed() {
            let _ = writeln!(out, "\n## Failures\n");
            for failure in &self.failures {
                let _ = writeln!(out, "- {failure}");
            }
        }
        out
    }
}

/// Every poison event must be in `NUDGE_DLQ` with its reason, and nothing else may be: answers
/// how many were, and what is wrong.
async fn check_dead_letters(js: &jetstream::Context, side: &SideOutcome) -> (usize, Vec<String>) {
    // `None`: a letter without its reason header.
    let mut reasons: HashMap<Vec<u8>, Vec<Option<String>>> = HashMap::new();
    for (letter, _) in read_all_stored(js, "NUDGE_DLQ").await {
        let reason = letter
            .headers
            .as_ref()
            .and_then(|h| h.get("Nudge-Dlq-Reason"))
            .map(|r| r.to_string())
            .filter(|r| !r.is_empty());
        reasons
            .entry(letter.payload.to_vec())
            .or_default()
            .push(reason);
    }
    let mut failures = Vec::new();
    let mut dead_lettered = 0;
    for payload in &side.poison {
        match reasons.remove(payload).as_deref() {
            None => failures.push(format!(
                "poison event not in the DLQ: {}",
                String::from_utf8_lossy(payload)
            )),
            Some([Some(_)]) => dead_lettered += 1,
            Some(reasons) => failures.push(format!(
                "poison event dead-lettered {} times or without a reason ({reasons:?}): {}",
                reasons.len(),
                String::from_utf8_lossy(payload)
            )),
        }
    }
    if let Some((payload, reason)) = reasons.iter().next() {
        failures.push(format!(
            "{} dead letters that are not poison, e.g. {:?}: {}",
            reasons.len(),
            reason,
            String::from_utf8_lossy(&payload[..payload.len().min(200)])
        ));
    }
    (dead_lettered, failures)
}
