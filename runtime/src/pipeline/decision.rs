//! Deciding one live event: load the profile's state (from the lane's cache or KV), run the
//! core's decision on the system clock, store its timers, write the state back by
//! compare-and-set (deciding again on a conflict), then drop cancelled timers and record the
//! trace. Only after this does the processor publish the decision's actions.
//!
//! Order matters for exactly-once: timers are stored before the state that lists them (a timer
//! whose state write lost is dropped by the profile when it fires); the actions are in the
//! state's outbox before they are published, so a redelivered event republishes exactly them.

use std::sync::Arc;
use std::time::Instant;

use async_nats::Client;
use nudge_rules::decide::{Decider, PluginOutcome as CoreOutcome};
use nudge_rules::policy::Reason;
use nudge_rules::{CloudEvent, Decision, Policy, Profile, ProfileState, StateLimits};

use crate::clock::SharedClock;
use crate::plugin::Plugins;
use crate::profiles::{self, ProfileCache, ProfileStore, WriteError};
use crate::rulesync::LiveRules;
use crate::telemetry;
use crate::timers::TimerStore;

/// Why an event could not be decided.
pub enum Failure {
    /// Worth retrying (NATS unavailable, too many concurrent writers).
    Transient(anyhow::Error),
    /// Retrying cannot help: the event goes to the DLQ with this kind and reason.
    Poison(&'static str, String),
}

pub struct Decisions {
    pub rules: LiveRules,
    pub plugins: Plugins,
    pub profiles: ProfileStore,
    pub timers: TimerStore,
    pub client: Client,
    pub clock: SharedClock,
    pub policy: Arc<Policy>,
    pub limits: StateLimits,
    pub cas_retries: u32,
}

impl Decisions {
    pub async fn decide(
        &self,
        event: &CloudEvent,
        cache: &mut ProfileCache,
    ) -> Result<Decision, Failure> {
        let id = event.subject.as_str();
        for _ in 0..=self.cas_retries {
            let (mut state, revision) = match cache.take(id) {
                Some(cached) => cached,
                None => self
                    .profiles
                    .load(id)
                    .await
                    .map_err(Failure::Transient)?
                    .unwrap_or_else(|| (ProfileState::new(id, self.clock.now_ms()), 0)),
            };
            let decision = self.decide_now(&mut state, event);
            if decision.duplicate {
                cache.put(id, (state, revision));
                self.record(event, &decision).await;
                return Ok(decision);
            }
            for scheduled in &decision.schedule {
                self.timers
                    .schedule(scheduled)
                    .await
                    .map_err(Failure::Transient)?;
            }
            match self.profiles.save(id, &state, revision).await {
                Ok(written) => {
                    cache.put(id, (state, written));
                    for cancelled in &decision.unschedule {
                        self.timers.unschedule(cancelled).await;
                    }
                    self.record(event, &decision).await;
                    return Ok(decision);
                }
                Err(WriteError::Conflict) => {
                    metrics::counter!(telemetry::PROFILE_CONFLICTS).increment(1);
                }
                Err(too_large @ WriteError::TooLarge(..)) => {
                    return Err(Failure::Poison("profile_too_large", too_large.to_string()));
                }
                Err(WriteError::Other(error)) => return Err(Failure::Transient(error)),
            }
        }
        Err(Failure::Transient(anyhow::anyhow!(
            "profile {id}: lost {} compare-and-set races in a row (profile_cas_retries)",
            self.cas_retries
        )))
    }

    /// The core's decision with the live rules and plugins, at the clock's now.
    fn decide_now(&self, state: &mut ProfileState, event: &CloudEvent) -> Decision {
        let rules = self.rules.load();
        let decider = Decider {
            sandbox: rules.sandbox(),
            policy: &self.policy,
            limits: &self.limits,
        };
        let matching = rules.matching(&event.event_type);
        let started = Instant::now();
        let mut plugins = |event: &CloudEvent, profile: &Profile| self.run_plugins(event, profile);
        let decision = decider.decide(state, event, self.clock.now_ms(), &matching, &mut plugins);
        if !matching.is_empty() {
            metrics::histogram!(telemetry::RULE_EVAL_SECONDS)
                .record(started.elapsed().as_secs_f64());
        }
        decision
    }

    fn run_plugins(&self, event: &CloudEvent, profile: &Profile) -> CoreOutcome {
        let outcome = self.plugins.handle_event(event, profile);
        CoreOutcome {
            matched: outcome.matched,
            actions: outcome.actions,
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

    /// Logs and counts what the decision suppressed, and publishes its trace (no ack awaited:
    /// the trace is for people; losing one never blocks an event).
    async fn record(&self, event: &CloudEvent, decision: &Decision) {
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
        let subject = format!("trace.{}", profiles::key(&event.subject));
        match serde_json::to_vec(&decision.trace) {
            Ok(body) => {
                if let Err(error) = self.client.publish(subject, body.into()).await {
                    tracing::debug!(%error, "could not publish a decision trace");
                }
            }
            Err(error) => tracing::debug!(%error, "could not serialize a decision trace"),
        }
    }
}
