//! The webhook delivery worker, in every instance: one durable consumer (`nudge-webhooks`) on
//! `actions.webhook` that all instances share, so JetStream spreads the deliveries and hands an
//! unacknowledged one to another instance when one dies mid-delivery (its receiver sees the
//! same `webhook-id` again). Each action is POSTed to its endpoint, signed, and acknowledged
//! only once it is delivered, refused for good or dead-lettered; a retry is a negative
//! acknowledgement with the schedule's delay, so waiting costs no slot.
//!
//! Limits: `webhook_in_flight_max` deliveries per instance (the consumer's pending acks too), of
//! which `webhook_endpoint_in_flight_max` per endpoint, with as many waiting for them — past that
//! a delivery is handed back for a second, so a slow endpoint never holds the slots of the
//! others — and a breaker per endpoint
//! (`webhook_breaker_failures`, `webhook_breaker_cool_down_ms`), while which is open deliveries
//! wait without an attempt counted; an endpoint's `rate_per_s` spaces its deliveries the same
//! way (per instance).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{AckKind, Context, Message};
use futures::StreamExt as _;
use metrics::{counter, gauge, histogram};
use nudge_rules::Channel;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::breaker::{Breaker, BreakerLimits, Permit};
use super::endpoints::{Endpoint, EndpointStore, WebhookError};
use super::log::{self, Attempt, DeliveryLog};
use super::outcome::Outcome;
use super::request;
use super::schedule::RetrySchedule;
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::pipeline::dlq::{self, DeadLetter};
use crate::telemetry;
use crate::topology::ACTIONS_STREAM;

const CONSUMER: &str = "nudge-webhooks";
/// How long a delivery handed back for a busy endpoint or a NATS hiccup waits.
const BUSY_DELAY: Duration = Duration::from_secs(1);
/// How long a read endpoint serves deliveries before it is read again.
const ENDPOINT_FRESH: Duration = Duration::from_secs(1);

/// What the worker reads of an action.
#[derive(Deserialize)]
struct ActionRef {
    id: String,
    subject: String,
    data: ActionData,
}

#[derive(Deserialize)]
struct ActionData {
    webhook: String,
}

struct Worker {
    js: Context,
    endpoints: EndpointStore,
    client: reqwest::Client,
    log: DeliveryLog,
    clock: SharedClock,
    schedule: RetrySchedule,
    breaker_limits: BreakerLimits,
    endpoint_in_flight_max: usize,
    /// Per endpoint: its breaker and its in-flight slots.
    endpoints_state: Mutex<HashMap<String, EndpointState>>,
    endpoint_cache: Mutex<HashMap<String, (Arc<Endpoint>, Instant)>>,
}

struct EndpointState {
    breaker: Breaker,
    in_flight: Arc<Semaphore>,
    /// Deliveries waiting here for one of its slots (at most `endpoint_in_flight_max`).
    waiting: usize,
    /// With a `rate_per_s`: the earliest time the next delivery may go out.
    next_send_ms: i64,
}

/// Runs until `shutdown`; deliveries in flight then finish (each within its endpoint's timeout).
pub async fn run(
    js: Context,
    settings: Arc<Settings>,
    endpoints: EndpointStore,
    client: reqwest::Client,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // NATS may be settling (a cluster electing leaders): keep trying rather than deliver nothing.
    let (consumer, log) = loop {
        match open(&js, &settings).await {
            Ok(opened) => break opened,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "webhook deliveries: cannot start yet; retrying"
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
        endpoints,
        client,
        log,
        clock,
        schedule: RetrySchedule {
            max_attempts: settings.webhook_max_attempts.max(1),
            base_ms: settings.webhook_retry_base_ms,
            max_ms: settings.webhook_retry_max_ms,
        },
        breaker_limits: BreakerLimits {
            failures_to_open: settings.webhook_breaker_failures.max(1),
            cool_down_ms: settings.webhook_breaker_cool_down_ms,
        },
        endpoint_in_flight_max: settings.webhook_endpoint_in_flight_max.max(1),
        endpoints_state: Mutex::new(HashMap::new()),
        endpoint_cache: Mutex::new(HashMap::new()),
    });
    let in_flight_max = settings.webhook_in_flight_max.max(1);
    let in_flight = Arc::new(Semaphore::new(in_flight_max));
    while !shutdown.is_cancelled() {
        let mut messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, "webhook deliveries: cannot read; retrying");
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
                    tracing::warn!(%error, "webhook deliveries: reading failed; going on");
                }
                None => break,
            }
        }
    }
    // Let the deliveries in flight finish before the process goes.
    let all = u32::try_from(in_flight_max).unwrap_or(u32::MAX);
    let grace = Duration::from_millis(settings.webhook_timeout_max_ms.saturating_add(1_000));
    if tokio::time::timeout(grace, in_flight.acquire_many(all))
        .await
        .is_err()
    {
        // Unacknowledged, they come again to another instance after the ack wait.
        tracing::warn!(
            in_flight = in_flight_max - in_flight.available_permits(),
            "webhook deliveries still in flight at exit"
        );
    }
    Ok(())
}

/// The shared consumer (created by the first instance) and the delivery log.
async fn open(js: &Context, settings: &Settings) -> anyhow::Result<(PullConsumer, DeliveryLog)> {
    let stream = js.get_stream(ACTIONS_STREAM).await?;
    // Longer than any request may take, so only a dead instance's deliveries come back.
    let ack_wait_ms = settings.webhook_timeout_max_ms.saturating_mul(2).max(1_000);
    let consumer = stream
        .get_or_create_consumer(
            CONSUMER,
            pull::Config {
                durable_name: Some(CONSUMER.into()),
                description: Some("nudge: webhook deliveries".into()),
                filter_subject: Channel::Webhook.subject().into(),
                // Deliver what is published from now on, not the history of an older stream.
                deliver_policy: DeliverPolicy::New,
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_millis(ack_wait_ms),
                max_deliver: -1,
                max_ack_pending: i64::try_from(settings.webhook_in_flight_max).unwrap_or(i64::MAX),
                ..Default::default()
            },
        )
        .await?;
    Ok((consumer, DeliveryLog::open(js).await?))
}

/// Where one delivery ended up.
enum Settled {
    Ack,
    /// Handed back, to come again after the delay.
    Later(Duration),
    DeadLetter {
        kind: &'static str,
        reason: String,
    },
}

impl Worker {
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
                    subject: "delivery.webhook",
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
            tracing::warn!(%error, "acknowledging a webhook delivery failed");
        }
    }

    async fn attempt(&self, message: &Message) -> Settled {
        let action: ActionRef = match serde_json::from_slice(&message.payload) {
            Ok(action) => action,
            Err(error) => {
                return Settled::DeadLetter {
                    kind: "invalid_action",
                    reason: format!("not a webhook action: {error}"),
                };
            }
        };
        let name = action.data.webhook;
        let endpoint = match self.endpoint(&name).await {
            Ok(endpoint) => endpoint,
            Err(WebhookError::NotFound(_) | WebhookError::Invalid { .. }) => {
                return Settled::DeadLetter {
                    kind: "no_endpoint",
                    reason: format!("no webhook endpoint `{name}` (add it, then re-drive)"),
                };
            }
            Err(error) => {
                tracing::warn!(%error, webhook = %name, "reading the endpoint failed; retrying");
                return Settled::Later(BUSY_DELAY);
            }
        };
        if !endpoint.enabled {
            let why = endpoint
                .disabled_reason
                .as_deref()
                .unwrap_or("switched off");
            return Settled::DeadLetter {
                kind: "endpoint_disabled",
                reason: format!("webhook `{name}` is disabled ({why})"),
            };
        }
        let Some(slot) = self.slot(&name).await else {
            return Settled::Later(BUSY_DELAY);
        };
        let now_ms = self.clock.now_ms();
        let slot = match self.admit(&name, slot, endpoint.rate_per_s, now_ms) {
            Ok(slot) => slot,
            Err(retry_at_ms) => {
                let wait_ms = u64::try_from(retry_at_ms.saturating_sub(now_ms)).unwrap_or(0);
                return Settled::Later(Duration::from_millis(wait_ms.max(1)));
            }
        };
        let subject = log::subject(Channel::Webhook, &action.subject, &action.id);
        // A first delivery has no attempt before it (a re-driven action is a new message whose
        // log restarts at 0), so only redeliveries read the log.
        let first_delivery = match message.info() {
            Ok(info) => {
                gauge!(telemetry::DELIVERIES_PENDING, "channel" => "webhook")
                    .set(info.pending as f64);
                info.delivered == 1
            }
            Err(_) => false,
        };
        let made = match self.attempts_made(&subject, first_delivery).await {
            Ok(made) => made,
            Err(error) => {
                tracing::warn!(%error, "reading the delivery log failed; retrying");
                self.with_state(&name, |state| state.breaker.abandon(now_ms));
                return Settled::Later(BUSY_DELAY);
            }
        };
        let answer = request::send(
            &self.client,
            &endpoint,
            &action.id,
            message.payload.clone(),
            now_ms,
        )
        .await;
        drop(slot);
        let after_ms = self.clock.now_ms();
        let breaker_open = self.record(&name, answer.outcome, after_ms);
        crate::stats::global().delivery(
            &format!("webhook:{name}"),
            answer.latency_ms as f64 / 1_000.0,
            answer.error.as_deref(),
            breaker_open,
            after_ms,
        );
        let attempt = made + 1;
        let entry = Attempt {
            action_id: action.id.clone(),
            channel: Channel::Webhook.as_str().into(),
            endpoint: name.clone(),
            attempt,
            at: nudge_rules::calendar::rfc3339(now_ms),
            outcome: answer.outcome.as_str().into(),
            status: answer.status,
            latency_ms: answer.latency_ms,
            error: answer.error.clone(),
        };
        if let Err(error) = self.log.append(subject, &entry).await {
            tracing::warn!(%error, action = %action.id, "logging a delivery attempt failed");
        }
        counter!(telemetry::DELIVERIES, "channel" => "webhook", "outcome" => answer.outcome.as_str())
            .increment(1);
        histogram!(telemetry::DELIVERY_SECONDS, "channel" => "webhook")
            .record(answer.latency_ms as f64 / 1_000.0);
        let error = answer.error.unwrap_or_default();
        match answer.outcome {
            Outcome::Delivered => Settled::Ack,
            Outcome::Refused => Settled::DeadLetter {
                kind: "delivery_refused",
                reason: format!("webhook `{name}` refused it: {error}"),
            },
            Outcome::Gone => {
                let reason = format!("the endpoint answered 410 Gone at {}", entry.at);
                self.endpoint_cache.lock().expect("cache").remove(&name);
                if let Err(error) = self.endpoints.disable(&name, &reason, after_ms).await {
                    tracing::warn!(%error, webhook = %name, "could not switch the endpoint off");
                } else {
                    tracing::warn!(webhook = %name, "endpoint answered 410 Gone: switched off");
                }
                Settled::DeadLetter {
                    kind: "endpoint_gone",
                    reason: format!("webhook `{name}`: {reason}"),
                }
            }
            Outcome::Retry { after } => match self.schedule.next_delay(attempt, after, jitter()) {
                Some(delay) => Settled::Later(delay),
                None => Settled::DeadLetter {
                    kind: "delivery_failed",
                    reason: format!(
                        "webhook `{name}`: gave up after {attempt} attempts (webhook_max_attempts); the last: {error}"
                    ),
                },
            },
        }
    }

    /// The endpoint as stored, read at most once per [`ENDPOINT_FRESH`] (a change reaches
    /// deliveries within that time).
    async fn endpoint(&self, name: &str) -> Result<Arc<Endpoint>, WebhookError> {
        if let Some((endpoint, read)) = self.endpoint_cache.lock().expect("cache").get(name)
            && read.elapsed() < ENDPOINT_FRESH
        {
            return Ok(endpoint.clone());
        }
        let endpoint = Arc::new(self.endpoints.get(name).await?);
        self.endpoint_cache
            .lock()
            .expect("cache")
            .insert(name.to_owned(), (endpoint.clone(), Instant::now()));
        Ok(endpoint)
    }

    /// One of the endpoint's in-flight slots: at once, or after waiting in its short queue;
    /// `None` when that queue is full too (the delivery is handed back).
    async fn slot(&self, name: &str) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut states = self.endpoints_state.lock().expect("endpoint states");
            let state = self.state(&mut states, name);
            if let Ok(slot) = state.in_flight.clone().try_acquire_owned() {
                return Some(slot);
            }
            if state.waiting >= self.endpoint_in_flight_max {
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

    /// The endpoint's breaker, slots and pacing, made on first use.
    fn state<'a>(
        &self,
        states: &'a mut HashMap<String, EndpointState>,
        name: &str,
    ) -> &'a mut EndpointState {
        states
            .entry(name.to_owned())
            .or_insert_with(|| EndpointState {
                breaker: Breaker::new(self.breaker_limits),
                in_flight: Arc::new(Semaphore::new(self.endpoint_in_flight_max)),
                waiting: 0,
                next_send_ms: 0,
            })
    }

    /// `slot` back if the endpoint's rate and breaker let a delivery out now, else
    /// `Err(retry_at_ms)`.
    fn admit(
        &self,
        name: &str,
        slot: OwnedSemaphorePermit,
        rate_per_s: Option<u32>,
        now_ms: i64,
    ) -> Result<OwnedSemaphorePermit, i64> {
        let mut states = self.endpoints_state.lock().expect("endpoint states");
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

    /// Tells the endpoint's breaker how a delivery went: only answers worth retrying count as
    /// failures (a refusal means the endpoint is up). Answers whether it holds deliveries now.
    fn record(&self, name: &str, outcome: Outcome, now_ms: i64) -> bool {
        let failed = matches!(outcome, Outcome::Retry { .. });
        let mut open = false;
        self.with_state(name, |state| {
            state.breaker.record(failed, now_ms);
            open = state.breaker.state_name() != "closed";
            gauge!(telemetry::DELIVERY_BREAKER_OPEN, "endpoint" => name.to_owned())
                .set(f64::from(u8::from(open)));
        });
        open
    }

    fn with_state(&self, name: &str, change: impl FnOnce(&mut EndpointState)) {
        let mut states = self.endpoints_state.lock().expect("endpoint states");
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
