//! Deciding live events against their profiles' state in memory, on a decision thread: the
//! core's decision on the system clock with the live rules and plugins, the profile size bound,
//! and everything a person sees about it (logs, metrics, per-rule stats, the trace).

use std::sync::Arc;
use std::time::Instant;

use nudge_rules::decide::{Decider, PluginOutcome as CoreOutcome, Scheduled};
use nudge_rules::policy::Reason;
use nudge_rules::schema::Verdict;
use nudge_rules::state::Outgoing;
use nudge_rules::{CloudEvent, Decision, Policy, Profile, ProfileState, StateLimits};

use super::memory::{EVENT_GROWTH_BOUND_BYTES, Held, ProfileMemory};
use super::outbox::Cause;
use super::reader::Delivered;
use super::{Shared, decode};
use crate::clock::SharedClock;
use crate::plugin::Plugins;
use crate::profiles::{self, ProfileStore};
use crate::rulesync::LiveRules;
use crate::schemas::{self, LiveSchemas};
use crate::telemetry;

/// What the live service decides with.
pub struct Decisions {
    pub rules: LiveRules,
    pub plugins: Plugins,
    pub profiles: ProfileStore,
    pub clock: SharedClock,
    pub policy: Arc<Policy>,
    pub limits: StateLimits,
    /// `nudge_rule_eval_seconds`, resolved once.
    pub rule_eval_seconds: metrics::Histogram,
    /// The event schemas events are validated with before they are decided.
    pub schemas: LiveSchemas,
}

/// What one decided event asks the partition to do.
pub struct Decided {
    /// Actions to publish now.
    pub publish: Vec<Outgoing>,
    /// Timer events and held actions to store (before the state that lists them is written).
    pub schedule: Vec<Scheduled>,
    /// Timers to drop.
    pub unschedule: Vec<String>,
    /// The decision trace, serialized.
    pub trace: Vec<u8>,
    /// What it did to experimenting rules, and when (for the partition's results).
    pub outcomes: Vec<nudge_rules::experiment::Outcome>,
    pub at_ms: i64,
}

/// Why an event is not decided but dead-lettered.
pub struct Poison {
    pub kind: &'static str,
    pub reason: String,
}

impl Decisions {
    /// Decides `event` (stream sequence `seq`) against `held`; `verdict` is what its schema
    /// says of it. `Ok(None)`: the state already holds this event (it was restored from a
    /// checkpoint written after it).
    pub fn decide(
        &self,
        held: &mut Held,
        event: &CloudEvent,
        seq: u64,
        event_bytes: usize,
        verdict: Option<Verdict>,
    ) -> Result<Option<Decided>, Poison> {
        if seq <= held.state.seq {
            tracing::debug!(seq, profile = %event.subject, state_seq = held.state.seq, "skipped: the state already holds this event");
            return Ok(None);
        }
        if let Some(verdict) = &verdict {
            schemas::flag(event, verdict, self.clock.now_ms());
            if verdict.block {
                return Err(Poison {
                    kind: "schema_violation",
                    reason: schemas::reason(verdict),
                });
            }
        }
        let max_bytes = self.profiles.max_bytes();
        let attribute_bound_bytes = self.limits.max_attribute_bytes * ATTRIBUTE_GROWTH_FACTOR;
        let attribute_growth = self.limits.max_attributes * attribute_bound_bytes;
        let growth_bound = EVENT_GROWTH_BOUND_BYTES + event_bytes;
        // Only a state that might outgrow profile_max_bytes with this event is copied first, so
        // it can be put back if it does.
        let before = (held.size_bound_bytes + growth_bound + attribute_growth > max_bytes)
            .then(|| held.state.clone());
        let at_ms = self.clock.now_ms();
        let mut decision = self.decide_now(&mut held.state, event, at_ms);
        if let Some(verdict) = verdict {
            decision.trace.schema_violations = verdict.violations;
        }
        held.size_bound_bytes += growth_bound
            + decision.attributes_set.min(self.limits.max_attributes) * attribute_bound_bytes;
        if held.size_bound_bytes > max_bytes {
            let exact = stored_bytes(&held.state, event)?;
            held.size_bound_bytes = exact;
            if exact > max_bytes {
                if let Some(before) = before {
                    held.size_bound_bytes = stored_bytes(&before, event)?;
                    held.state = before;
                }
                return Err(Poison {
                    kind: "profile_too_large",
                    reason: format!(
                        "deciding it would grow profile {} to {exact} bytes; the limit is \
                         {max_bytes} (profile_max_bytes)",
                        event.subject
                    ),
                });
            }
        }
        held.state.seq = seq;
        self.record(event, &decision);
        let trace = serde_json::to_vec(&decision.trace).map_err(|e| Poison {
            kind: "invalid_event",
            reason: format!("its decision trace cannot be serialized: {e}"),
        })?;
        Ok(Some(Decided {
            publish: decision.publish,
            schedule: decision.schedule,
            unschedule: decision.unschedule,
            trace,
            outcomes: decision.outcomes,
            at_ms,
        }))
    }

    /// The core's decision with the live rules and plugins, at `now_ms`.
    fn decide_now(&self, state: &mut ProfileState, event: &CloudEvent, now_ms: i64) -> Decision {
        let rules = self.rules.load();
        let decider = Decider {
            sandbox: rules.sandbox(),
            policy: &self.policy,
            limits: &self.limits,
        };
        let matching = rules.matching(&event.event_type);
        let started = (!matching.is_empty()).then(Instant::now);
        let mut plugins = |event: &CloudEvent, profile: &Profile| self.run_plugins(event, profile);
        let decision = if matching.is_empty() {
            decider.decide(state, event, now_ms, &matching, &mut plugins)
        } else {
            // Rules may call plugins: a failing call is logged with this event.
            crate::plugin::dispatch::for_event(event, || {
                decider.decide(state, event, now_ms, &matching, &mut plugins)
            })
        };
        if let Some(started) = started {
            self.rule_eval_seconds
                .record(started.elapsed().as_secs_f64());
        }
        decision
    }

    fn run_plugins(&self, event: &CloudEvent, profile: &Profile) -> CoreOutcome {
        let outcome = self.plugins.handle_event(event, profile);
        CoreOutcome {
            matched: outcome.matched,
            actions: outcome.actions,
            experiments: outcome.experiments,
            failures: outcome
                .failures
                .into_iter()
                .map(|fault| {
                    let reason = if fault.failure.setting.is_some() {
                        Reason::Limit
                    } else {
                        Reason::Error
                    };
                    let label = format!("plugin:{}@v{}", fault.plugin, fault.version);
                    (label, reason, fault.failure.message)
                })
                .collect(),
        }
    }

    /// Logs and counts what the decision suppressed and which rules failed.
    fn record(&self, event: &CloudEvent, decision: &Decision) {
        for failure in &decision.failures {
            tracing::warn!(
                rule = %failure.rule,
                version = failure.version,
                event = %event.id,
                source = %event.source,
                reason = failure.reason(),
                limit = failure.limit().unwrap_or(""),
                line = failure.failure.line,
                message = %failure.failure.message,
                "rule failed on event"
            );
            telemetry::rule_failed(&failure.rule, failure.reason(), failure.limit());
        }
        let failed = decision.failures.iter().map(|failure| {
            let message = match failure.limit() {
                Some(limit) => format!("{} (limit {limit})", failure.failure.message),
                None => failure.failure.message.clone(),
            };
            (failure.rule.as_str(), message)
        });
        crate::stats::global().decision(
            decision.trace.matched.iter().map(String::as_str),
            decision.trace.fired.iter().map(|item| item.rule.as_str()),
            failed,
            self.clock.now_ms(),
        );
        for item in &decision.trace.suppressed {
            if let (Some(reason), Some(channel)) = (item.reason, item.channel) {
                telemetry::suppressed(reason, channel);
            }
        }
        if !decision.trace.held.is_empty() {
            metrics::counter!(telemetry::ACTIONS_HELD).increment(decision.trace.held.len() as u64);
        }
    }
}

/// What one event came to, back from its decision thread.
pub enum Outcome {
    Decided(Arc<Cause>, String, Decided),
    /// Already in the state (restored from a checkpoint written after it): nothing to do.
    Skipped,
    /// To the DLQ, with the payload in hand.
    Poison(Arc<Cause>, bytes::Bytes, Poison),
}

/// How much a profile's stored form (MessagePack) can outgrow an attribute's JSON size
/// (`max_attribute_bytes`): a float is 9 bytes where JSON can write it in 4 (`0.5,`).
const ATTRIBUTE_GROWTH_FACTOR: usize = 3;

/// The stored size of `state`, which deciding `event` led to.
fn stored_bytes(state: &ProfileState, event: &CloudEvent) -> Result<usize, Poison> {
    profiles::encode(state)
        .map(|bytes| bytes.len())
        .map_err(|e| Poison {
            kind: "invalid_event",
            reason: format!(
                "the state of profile {} it leads to cannot be stored: {e}",
                event.subject
            ),
        })
}

/// Decides a batch on a decision thread: each event against its profile in `memory`, which
/// goes back to the partition with the outcomes.
pub fn decide_all(
    shared: &Shared,
    mut memory: ProfileMemory,
    events: Vec<Delivered>,
) -> (ProfileMemory, Vec<Outcome>) {
    let max_event_bytes = shared.settings.max_event_bytes;
    let schemas = shared.decisions.schemas.load();
    let outcomes = events
        .into_iter()
        .map(|delivered| {
            let event_bytes = delivered.payload.len();
            let decoded = decode(&delivered.payload, max_event_bytes);
            let cause = Arc::new(Cause {
                seq: delivered.seq,
                event_id: decoded
                    .as_ref()
                    .map_or_else(|_| String::new(), |e| e.id.clone()),
                subject: delivered.subject,
                received: delivered.received,
            });
            let payload = delivered.payload;
            let event: CloudEvent = match decoded {
                Ok(event) => event,
                Err(reason) => {
                    return Outcome::Poison(
                        cause,
                        payload,
                        Poison {
                            kind: "invalid_event",
                            reason,
                        },
                    );
                }
            };
            let held = match delivered.key.as_deref() {
                Some(key) if key == event.subject => memory.get_mut(key),
                _ => None,
            };
            let Some(held) = held else {
                return Outcome::Poison(
                    cause,
                    payload,
                    Poison {
                        kind: "invalid_event",
                        reason: "subject: given more than once".into(),
                    },
                );
            };
            let verdict = schemas.check(&event);
            match shared
                .decisions
                .decide(held, &event, delivered.seq, event_bytes, verdict)
            {
                Ok(Some(decided)) => Outcome::Decided(cause, event.subject, decided),
                Ok(None) => Outcome::Skipped,
                Err(poison) => Outcome::Poison(cause, payload, poison),
            }
        })
        .collect();
    (memory, outcomes)
}
