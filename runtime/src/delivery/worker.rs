//! The delivery worker, in every instance and for every channel nudge delivers itself (webhook,
//! email): one durable consumer per channel (`nudge-webhooks`, `nudge-emails`) on
//! `actions.<channel>` that all instances share, so JetStream spreads the deliveries and hands an
//! unacknowledged one to another instance when one dies mid-delivery (its receiver sees the
//! same id again). Each action goes to its target through the channel's [`Transport`] and is
//! acknowledged only once it is delivered, refused for good or dead-lettered; a retry is a
//! negative acknowledgement with the schedule's delay, so waiting costs no slot.
//!
//! Limits ([`DeliveryLimits`], from the channel's settings): deliveries in flight per instance
//! (the consumer's pending acks too), of which a share per target, with as many waiting for them
//! — past that a delivery is handed back for a second, so a slow target never holds the slots of
//! the others — and a breaker per target, while which is open deliveries wait without an
//! attempt counted; a target's `rate_per_s` spaces its deliveries the same way (per instance).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{AckKind, Context, Message};
use futures::StreamExt as _;
use metrics::{counter, gauge, histogram};
use nudge_rules::Channel;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::breaker::{Breaker, BreakerLimits, Permit};
use super::log::{self, Attempt, DeliveryLog};
use super::outcome::Outcome;
use super::schedule::RetrySchedule;
pub use super::transport::{DeliveryLimits, Settled, Target, Transport};
use crate::clock::SharedClock;
use crate::pipeline::dlq::{self, DeadLetter};
use crate::telemetry;
use crate::topology::ACTIONS_STREAM;

/// How long a delivery handed back for a busy target or a NATS hiccup waits.
pub const BUSY_DELAY: Duration = Duration::from_secs(1);

/// What the worker reads of an action; `data` is the transport's, `rule` and `time` say what
/// its delivery counts for in the results (an action without them is still delivered).
#[derive(Deserialize)]
struct ActionRef<D> {
    id: String,
    subject: String,
    #[serde(default)]
    rule: String,
    #[serde(default)]
    time: String,
    data: D,
}

struct Worker<T> {
    js: Context,
    transport: T,
    /// `delivery.<channel>`: where its dead letters go.
    dlq_subject: String,
    log: DeliveryLog,
    clock: SharedClock,
    schedule: RetrySchedule,
    breaker_limits: BreakerLimits,
    target_in_flight_max: usize,
    /// Per target: its breaker and its in-flight slots.
    targets: Mutex<HashMap<String, TargetState>>,
}

struct TargetState {
    breaker: Breaker,
    in_flight: Arc<Semaphore>,
    /// Deliveries waiting here for one of its slots (at most `target_in_flight_max`).
    waiting: usize,
    /// With a `rate_per_s`: the earliest time the next delivery may go out.
    next_send_ms: i64,
}

/// Delivers the channel's actions until `shutdown`; deliveries in flight then finish (each
/// within `attempt_max_ms`).
pub async fn run<T: Transport>(
    js: Context,
    transport: T,
    limits: DeliveryLimits,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let channel = transport.channel();
    // NATS may be settling (a cluster electing leaders): keep trying rather than deliver nothing.
    let (consumer, log) = loop {
        match open(&js, channel, &limits).await {
            Ok(opened) => break opened,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    channel = channel.as_str(),
                    "deliveries: cannot start yet; retrying"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(BUSY_DELAY) => {}
                }
            }
        }
    };
    let worker = Arc::new(Worker {
        js: js.clone(),
        transport,
        dlq_subject: format!("delivery.{}", channel.as_str()),
        log,
        clock,
        schedule: RetrySchedule {
            max_attempts: limits.max_attempts.max(1),
            base_ms: limits.retry_base_ms,
            max_ms: limits.retry_max_ms,
        },
        breaker_limits: BreakerLimits {
            failures_to_open: limits.breaker_failures.max(1),
            cool_down_ms: limits.breaker_cool_down_ms,
        },
        target_in_flight_max: limits.target_in_flight_max.max(1),
        targets: Mutex::new(HashMap::new()),
    });
    let in_flight_max = limits.in_flight_max.max(1);
    let in_flight = Arc::new(Semaphore::new(in_flight_max));
    while !shutdown.is_cancelled() {
        let mut messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, channel = channel.as_str(), "deliveries: cannot read; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(BUSY_DELAY) => continue,
                }
            }
        };
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = in_flight.clone().acquire_owned() => permit?,
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    tokio::spawn(worker.clone().deliver(message, permit));
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, channel = channel.as_str(), "deliveries: reading failed; going on");
                }
                None => break,
            }
        }
    }
    // Let the deliveries in flight finish before the process goes.
    let all = u32::try_from(in_flight_max).unwrap_or(u32::MAX);
    let grace = Duration::from_millis(limits.attempt_max_ms.saturating_add(1_000));
    if tokio::time::timeout(grace, in_flight.acquire_many(all))
        .await
        .is_err()
    {
        // Unacknowledged, they come again to another instance after the ack wait.
        tracing::warn!(
            in_flight = in_flight_max - in_flight.available_permits(),
            channel = channel.as_str(),
            "deliveries still in flight at exit"
        );
    }
    Ok(())
}

/// The channel's shared consumer (created by the first instance) and the delivery log.
async fn open(
    js: &Context,
    channel: Channel,
    limits: &DeliveryLimits,
) -> anyhow::Result<(PullConsumer, DeliveryLog)> {
    let stream = js.get_stream(ACTIONS_STREAM).await?;
    // Longer than any attempt may take, so only a dead instance's deliveries come back.
    let ack_wait_ms = limits.attempt_max_ms.saturating_mul(2).max(1_000);
    let name = consumer_name(channel);
    let consumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                description: Some(format!("nudge: {} deliveries", channel.as_str())),
                filter_subject: channel.subject().into(),
                // Deliver what is published from now on, not the history of an older stream.
                deliver_policy: DeliverPolicy::New,
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_millis(ack_wait_ms),
                max_deliver: -1,
                max_ack_pending: i64::try_from(limits.in_flight_max).unwrap_or(i64::MAX),
                ..Default::default()
            },
        )
        .await?;
    Ok((consumer, DeliveryLog::open(js).await?))
}

/// The durable consumer of a channel's deliveries: `nudge-webhooks`, `nudge-emails`.
pub fn consumer_name(channel: Channel) -> String {
    format!("nudge-{}s", channel.as_str())
}

impl<T: Transport> Worker<T> {
    async fn deliver(self: Arc<Self>, message: Message, _slot: OwnedSemaphorePermit) {
        let settled = self.attempt(&message).await;
        let result = match settled {
            Settled::Ack => message.ack().await,
            Settled::Later(delay) => message.ack_with(AckKind::Nak(Some(delay))).await,
            Settled::DeadLetter { kind, reason } => {
                let (sequence, delivered) = message
                    .info()
                    .map(|i| (i.stream_sequence, i.delivered))
                    .unwrap_or((0, 0));
                let letter = DeadLetter {
                    subject: &self.dlq_subject,
                    payload: message.payload.clone(),
                    stream: ACTIONS_STREAM,
                    sequence,
                    delivered,
                    kind,
                    reason: &reason,
                };
                match dlq::store(&self.js, letter).await {
                    Ok(()) => message.ack().await,
                    Err(error) => {
                        tracing::warn!(%error, "dead-lettering a delivery failed; it comes again");
                        message.ack_with(AckKind::Nak(Some(BUSY_DELAY))).await
                    }
                }
            }
        };
        if let Err(error) = result {
            // Unacknowledged, it comes again after the ack wait; the receiver dedupes by id.
            tracing::warn!(%error, "acknowledging a delivery failed");
        }
    }

    async fn attempt(&self, message: &Message) -> Settled {
        let channel = self.transport.channel();
        let action: ActionRef<T::Data> = match serde_json::from_slice(&message.payload) {
            Ok(action) => action,
            Err(error) => {
                return Settled::DeadLetter {
                    kind: "invalid_action",
                    reason: format!("not a {} action: {error}", channel.as_str()),
                };
            }
        };
        let target = match self.transport.prepare(action.data).await {
            Ok(target) => target,
            Err(settled) => return settled,
        };
        let key = target.key.as_str();
        let Some(slot) = self.slot(key).await else {
            return Settled::Later(BUSY_DELAY);
        };
        let now_ms = self.clock.now_ms();
        let slot = match self.admit(key, slot, target.rate_per_s, now_ms) {
            Ok(slot) => slot,
            Err(retry_at_ms) => {
                let wait_ms = u64::try_from(retry_at_ms.saturating_sub(now_ms)).unwrap_or(0);
                return Settled::Later(Duration::from_millis(wait_ms.max(1)));
            }
        };
        let subject = log::subject(channel, &action.subject, &action.id);
        // A first delivery has no attempt before it (a re-driven action is a new message whose
        // log restarts at 0), so only redeliveries read the log.
        let first_delivery = match message.info() {
            Ok(info) => {
                gauge!(telemetry::DELIVERIES_PENDING, "channel" => channel.as_str())
                    .set(info.pending as f64);
                info.delivered == 1
            }
            Err(_) => false,
        };
        let made = match self.attempts_made(&subject, first_delivery).await {
            Ok(made) => made,
            Err(error) => {
                tracing::warn!(%error, "reading the delivery log failed; retrying");
                self.with_state(key, |state| state.breaker.abandon(now_ms));
                return Settled::Later(BUSY_DELAY);
            }
        };
        let answer = self
            .transport
            .send(&target, &action.id, message.payload.clone(), now_ms)
            .await;
        drop(slot);
        let after_ms = self.clock.now_ms();
        let breaker_open = self.record(key, answer.outcome, after_ms);
        crate::stats::global().delivery(
            &format!("{}:{key}", channel.as_str()),
            answer.latency_ms as f64 / 1_000.0,
            answer.error.as_deref(),
            breaker_open,
            after_ms,
        );
        let attempt = made + 1;
        let entry = Attempt {
            action_id: action.id.clone(),
            channel: channel.as_str().into(),
            endpoint: key.to_owned(),
            attempt,
            at: nudge_rules::calendar::rfc3339(now_ms),
            outcome: answer.outcome.as_str().into(),
            status: answer.status,
            latency_ms: answer.latency_ms,
            error: answer.error.clone(),
        };
        // The attempt's log entry and, once delivered, its count in the results go out together.
        let count = async {
            if answer.outcome != Outcome::Delivered {
                return Ok(());
            }
            let subject = crate::delivered::subject(&action.rule, &action.time)
                .map_err(|reason| anyhow::anyhow!("not counted: {reason}"))?;
            crate::delivered::record(&self.js, subject, &action.id).await
        };
        let (logged, counted) = tokio::join!(self.log.append(subject, &entry), count);
        if let Err(error) = logged {
            tracing::warn!(%error, action = %action.id, "logging a delivery attempt failed");
        }
        if let Err(error) = counted {
            counter!(telemetry::DELIVERED_UNCOUNTED).increment(1);
            tracing::warn!(%error, action = %action.id, "counting a delivered action in the results failed");
        }
        counter!(telemetry::DELIVERIES, "channel" => channel.as_str(), "outcome" => answer.outcome.as_str())
            .increment(1);
        histogram!(telemetry::DELIVERY_SECONDS, "channel" => channel.as_str())
            .record(answer.latency_ms as f64 / 1_000.0);
        let error = answer.error.unwrap_or_default();
        match answer.outcome {
            Outcome::Delivered => Settled::Ack,
            Outcome::Refused => Settled::DeadLetter {
                kind: "delivery_refused",
                reason: format!("{} refused it: {error}", self.transport.describe(key)),
            },
            Outcome::Gone => Settled::DeadLetter {
                kind: "endpoint_gone",
                reason: self.transport.gone(key, &entry.at, after_ms).await,
            },
            Outcome::Retry { after } => match self.schedule.next_delay(attempt, after, jitter()) {
                Some(delay) => Settled::Later(delay),
                None => Settled::DeadLetter {
                    kind: "delivery_failed",
                    reason: format!(
                        "{}: gave up after {attempt} attempts ({}_max_attempts); the last: {error}",
                        self.transport.describe(key),
                        channel.as_str()
                    ),
                },
            },
        }
    }

    /// One of the target's in-flight slots: at once, or after waiting in its short queue;
    /// `None` when that queue is full too (the delivery is handed back).
    async fn slot(&self, name: &str) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut states = self.targets.lock().expect("target states");
            let state = self.state(&mut states, name);
            if let Ok(slot) = state.in_flight.clone().try_acquire_owned() {
                return Some(slot);
            }
            if state.waiting >= self.target_in_flight_max {
                return None;
            }
            state.waiting += 1;
            state.in_flight.clone()
        };
        let slot = semaphore.acquire_owned().await.ok();
        self.with_state(name, |state| state.waiting -= 1);
        slot
    }

    async fn attempts_made(&self, subject: &str, first_delivery: bool) -> anyhow::Result<u32> {
        if first_delivery {
            return Ok(0);
        }
        self.log.attempts_made(subject).await
    }

    /// The target's breaker, slots and pacing, made on first use.
    fn state<'a>(
        &self,
        states: &'a mut HashMap<String, TargetState>,
        name: &str,
    ) -> &'a mut TargetState {
        states
            .entry(name.to_owned())
            .or_insert_with(|| TargetState {
                breaker: Breaker::new(self.breaker_limits),
                in_flight: Arc::new(Semaphore::new(self.target_in_flight_max)),
                waiting: 0,
                next_send_ms: 0,
            })
    }

    /// `slot` back if the target's rate and breaker let a delivery out now, else
    /// `Err(retry_at_ms)`.
    fn admit(
        &self,
        name: &str,
        slot: OwnedSemaphorePermit,
        rate_per_s: Option<u32>,
        now_ms: i64,
    ) -> Result<OwnedSemaphorePermit, i64> {
        let mut states = self.targets.lock().expect("target states");
        let state = self.state(&mut states, name);
        if state.next_send_ms > now_ms {
            return Err(state.next_send_ms);
        }
        match state.breaker.permit(now_ms) {
            Permit::Send | Permit::Probe => {
                if let Some(rate) = rate_per_s.filter(|r| *r > 0) {
                    let spacing_ms = i64::from((1_000 / rate).max(1));
                    state.next_send_ms = state.next_send_ms.max(now_ms) + spacing_ms;
                }
                Ok(slot)
            }
            Permit::Wait { retry_at_ms } => Err(retry_at_ms),
        }
    }

    /// Tells the target's breaker how a delivery went: only answers worth retrying count as
    /// failures (a refusal means the target is up). Answers whether it holds deliveries now.
    fn record(&self, name: &str, outcome: Outcome, now_ms: i64) -> bool {
        let failed = matches!(outcome, Outcome::Retry { .. });
        let mut open = false;
        self.with_state(name, |state| {
            state.breaker.record(failed, now_ms);
            open = state.breaker.state_name() != "closed";
            gauge!(telemetry::DELIVERY_BREAKER_OPEN, "channel" => self.transport.channel().as_str(), "endpoint" => name.to_owned())
                .set(f64::from(u8::from(open)));
        });
        open
    }

    fn with_state(&self, name: &str, change: impl FnOnce(&mut TargetState)) {
        let mut states = self.targets.lock().expect("target states");
        if let Some(state) = states.get_mut(name) {
            change(state);
        }
    }
}

/// A number in `[0, 1)` for the retry schedule's jitter, from the operating system's random
/// source (by way of a version-4 UUID, which the crate already draws).
fn jitter() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u64_pair().0 >> 11;
    bits as f64 / (1u64 << 53) as f64
}
