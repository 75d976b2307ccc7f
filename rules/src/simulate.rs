//! A whole nudge in memory on a simulated clock: profiles in a map, timers and held actions in a
//! heap, nothing published. Backtests run stored events through it; tests and the templates'
//! fixtures run scenarios through it without waiting for real time to pass.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::decide::{Decider, PluginOutcome, Trace, TraceItem};
use crate::event::CloudEvent;
use crate::experiment::results::{Counts, Results};
use crate::ruleset::RuleSet;
use crate::state::{Outgoing, ProfileState};

/// What a backtest reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Events read from the stream (timer events the simulation fired not included).
    pub events_scanned: u64,
    /// Events (stored or timer) for which at least one rule matched.
    pub events_matched: u64,
    /// Timer events fired by the simulated clock.
    pub timers_fired: u64,
    /// Actions that would go out, per channel (held ones included once released).
    pub actions: BTreeMap<String, u64>,
    pub actions_total: u64,
    /// Held by quiet hours at decision time (and counted in `actions` when released).
    pub held: u64,
    /// Suppressed actions and failures, per reason (`cap`, `consent`, `error`, …).
    pub suppressed: BTreeMap<String, u64>,
    /// Distinct profiles with at least one matching event, and with at least one action.
    pub profiles_matched: u64,
    pub profiles_actioned: u64,
    /// The first actions that would fire, as CloudEvents.
    pub sample: Vec<Value>,
    /// The first suppressions, with their reasons.
    pub sample_suppressed: Vec<TraceItem>,
    /// Per rule with a goal or holdout: how often it ran and acted, and how many of those
    /// exposures the goal followed within its window in these events. Without a holdout this is
    /// a correlation, not the rule's effect.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub goals: BTreeMap<String, Counts>,
}

/// The simulation. `sample_size` bounds both samples.
pub struct Simulation<'a> {
    decider: Decider<'a>,
    rules: &'a RuleSet,
    profiles: HashMap<String, ProfileState>,
    due: BinaryHeap<Reverse<(i64, u64, Outgoing)>>,
    unscheduled: HashSet<String>,
    sequence: u64,
    now_ms: i64,
    sample_size: usize,
    matched: HashSet<String>,
    actioned: HashSet<String>,
    pub report: Report,
    /// What experimenting rules did, per version and day of the simulated clock.
    pub results: Results,
    /// Every decision's trace, when kept (tests); off for backtests.
    pub traces: Option<Vec<Trace>>,
}

impl<'a> Simulation<'a> {
    pub fn new(decider: Decider<'a>, rules: &'a RuleSet, sample_size: usize) -> Self {
        Simulation {
            decider,
            rules,
            profiles: HashMap::new(),
            due: BinaryHeap::new(),
            unscheduled: HashSet::new(),
            sequence: 0,
            now_ms: i64::MIN,
            sample_size,
            matched: HashSet::new(),
            actioned: HashSet::new(),
            report: Report::default(),
            results: Results::default(),
            traces: None,
        }
    }

    pub fn keep_traces(mut self) -> Self {
        self.traces = Some(Vec::new());
        self
    }

    pub fn profile(&self, id: &str) -> Option<&ProfileState> {
        self.profiles.get(id)
    }

    /// Advances the clock to `at_ms` (never backwards), firing whatever fell due, then decides
    /// `event` at that time.
    pub fn feed(&mut self, event: &CloudEvent, at_ms: i64) {
        self.advance(at_ms);
        self.report.events_scanned += 1;
        self.decide(event);
    }

    /// Fires every timer and held action due by `until_ms`.
    pub fn advance(&mut self, until_ms: i64) {
        while let Some(Reverse((due_ms, _, _))) = self.due.peek() {
            if *due_ms > until_ms {
                break;
            }
            let Some(Reverse((due_ms, _, message))) = self.due.pop() else {
                break;
            };
            self.now_ms = self.now_ms.max(due_ms);
            if self.unscheduled.remove(&message.id) {
                continue;
            }
            if message.subject.starts_with("actions.") {
                self.count_action(&message);
            } else if let Ok(timer) = CloudEvent::from_slice(message.body.as_bytes()) {
                self.report.timers_fired += 1;
                self.decide(&timer);
            }
        }
        self.now_ms = self.now_ms.max(until_ms);
    }

    fn decide(&mut self, event: &CloudEvent) {
        let now_ms = self.now_ms;
        if !self.profiles.contains_key(&event.subject) {
            let fresh = ProfileState::new(&event.subject, now_ms);
            self.profiles.insert(event.subject.clone(), fresh);
        }
        let Some(state) = self.profiles.get_mut(&event.subject) else {
            return;
        };
        let rules = self.rules.matching(&event.event_type);
        let decision = self
            .decider
            .decide(state, event, now_ms, &rules, &mut |_, _| {
                PluginOutcome::default()
            });
        self.results.record(&decision.outcomes, now_ms);
        if !decision.trace.matched.is_empty() {
            self.report.events_matched += 1;
            self.matched.insert(event.subject.clone());
        }
        for message in &decision.publish {
            self.count_action(message);
        }
        self.report.held += decision.trace.held.len() as u64;
        for item in &decision.trace.suppressed {
            let reason = item.reason.unwrap_or("error");
            *self.report.suppressed.entry(reason.to_owned()).or_insert(0) += 1;
            if self.report.sample_suppressed.len() < self.sample_size {
                self.report.sample_suppressed.push(item.clone());
            }
        }
        self.unscheduled.extend(decision.unschedule);
        for scheduled in decision.schedule {
            self.sequence += 1;
            self.due.push(Reverse((
                scheduled.due_ms,
                self.sequence,
                scheduled.message,
            )));
        }
        if let Some(traces) = &mut self.traces {
            traces.push(decision.trace);
        }
    }

    fn count_action(&mut self, message: &Outgoing) {
        let channel = message.subject.trim_start_matches("actions.").to_owned();
        *self.report.actions.entry(channel).or_insert(0) += 1;
        self.report.actions_total += 1;
        if self.report.sample.len() < self.sample_size
            && let Ok(action) = serde_json::from_str::<Value>(&message.body)
        {
            if let Some(subject) = action.get("subject").and_then(Value::as_str) {
                self.actioned.insert(subject.to_owned());
            }
            self.report.sample.push(action);
        } else if let Some(subject) = subject_of(&message.body) {
            self.actioned.insert(subject);
        }
    }

    /// The report so far, with the profile counts filled in.
    pub fn finish(mut self) -> (Report, Option<Vec<Trace>>) {
        self.report.profiles_matched = self.matched.len() as u64;
        self.report.profiles_actioned = self.actioned.len() as u64;
        for (rule, versions) in &self.results.rules {
            let counts = self.report.goals.entry(rule.clone()).or_default();
            for version in versions.values() {
                counts.add(&version.total);
            }
        }
        (self.report, self.traces)
    }
}

fn subject_of(body: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Subject {
        subject: String,
    }
    serde_json::from_str::<Subject>(body)
        .ok()
        .map(|s| s.subject)
}

/// A scenario file (`rules/templates/fixtures/*.json`): events at given times and what should
/// come of them. The templates' tests and the backtest's end-to-end test read these.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Scenario {
    pub template: String,
    #[serde(default)]
    pub description: String,
    pub events: Vec<ScenarioEvent>,
    /// RFC 3339: the simulated clock runs until then.
    pub until: String,
    /// A subset of the [`Report`]'s fields.
    pub expect: Value,
    /// Fields each listed push must have, in the order they went out for that subject.
    #[serde(default)]
    pub expect_pushes: Vec<serde_json::Map<String, Value>>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct ScenarioEvent {
    pub at: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub subject: String,
    #[serde(default)]
    pub data: Value,
}

impl Scenario {
    /// The scenario's events as CloudEvents (ids `<template>-<n>`), in time order.
    pub fn cloudevents(&self) -> Result<Vec<(i64, CloudEvent)>, String> {
        let mut events = self
            .events
            .iter()
            .enumerate()
            .map(|(n, e)| {
                let at_ms = crate::calendar::parse_rfc3339(&e.at)?;
                let event = CloudEvent::from_value(serde_json::json!({
                    "specversion": "1.0", "id": format!("{}-{n}", self.template),
                    "source": "fixture", "type": e.event_type, "subject": e.subject,
                    "time": e.at, "data": e.data,
                }))
                .map_err(|err| format!("events[{n}]: {err}"))?;
                Ok((at_ms, event))
            })
            .collect::<Result<Vec<_>, String>>()?;
        events.sort_by_key(|(at, _)| *at);
        Ok(events)
    }

    pub fn until_ms(&self) -> Result<i64, String> {
        crate::calendar::parse_rfc3339(&self.until)
    }
}
