//! One event, start to end: decide it against its profile (see `decision`), publish every
//! action with its deterministic `Nats-Msg-Id`, wait for JetStream's acks, then ack the event;
//! or nak it for a retry, or move it to the DLQ with the reason.

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::{AckKind, Context, Message};
use metrics::{Counter, Histogram};
use nudge_rules::state::Outgoing;
use nudge_rules::{Channel, CloudEvent};

use super::decision::{Decisions, Failure};
use super::dlq::{self, DeadLetter};
use crate::config::Settings;
use crate::profiles::ProfileCache;
use crate::telemetry;

/// Decodes a NATS payload as a CloudEvent; the error is the DLQ reason.
pub fn decode(payload: &[u8], max_event_bytes: usize) -> Result<CloudEvent, String> {
    if payload.len() > max_event_bytes {
        return Err(format!(
            "event is {} bytes; the limit is {max_event_bytes} (max_event_bytes)",
            payload.len()
        ));
    }
    CloudEvent::from_slice(payload).map_err(|e| format!("invalid CloudEvent: {e}"))
}

/// Metric handles resolved once, not per event.
struct Meters {
    events_in: Counter,
    acked: Counter,
    processing_seconds: Histogram,
    actions_out: [Counter; 4],
    deduplicated: Counter,
}

impl Meters {
    fn new() -> Self {
        Meters {
            events_in: metrics::counter!(telemetry::EVENTS_IN),
            acked: metrics::counter!(telemetry::EVENTS_PROCESSED, "outcome" => "acked"),
            processing_seconds: metrics::histogram!(telemetry::PROCESSING_SECONDS),
            actions_out: Channel::ALL
                .map(|c| metrics::counter!(telemetry::ACTIONS_OUT, "channel" => c.as_str())),
            deduplicated: metrics::counter!(telemetry::ACTIONS_DEDUPLICATED),
        }
    }
}

/// An event whose actions were sent and whose fate (ack, nak, DLQ) waits for JetStream.
pub struct InFlight {
    message: Message,
    started: Instant,
    delivered: i64,
    stage: Stage,
}

enum Stage {
    Invalid(&'static str, String),
    Sent {
        event_id: String,
        acks: Vec<(Channel, PublishAckFuture)>,
        /// `(profile, event identity)` when the event's actions sit in the profile's outbox.
        outbox_of: Option<(String, String)>,
    },
    SendFailed {
        event_id: String,
        error: anyhow::Error,
    },
}

pub struct Processor {
    js: Context,
    decisions: Decisions,
    settings: Arc<Settings>,
    meters: Meters,
}

impl Processor {
    pub fn new(js: Context, decisions: Decisions, settings: Arc<Settings>) -> Self {
        Processor {
            js,
            decisions,
            settings,
            meters: Meters::new(),
        }
    }

    /// A lane's profile cache, sized by `profile_cache_entries`.
    pub fn profile_cache(&self) -> ProfileCache {
        ProfileCache::new(self.settings.profile_cache_entries)
    }

    /// Evaluates the event and sends its actions without waiting for JetStream, so a lane can
    /// send the actions of the next events while these acks travel.
    pub async fn start(
        &self,
        message: Message,
        decoded: Result<CloudEvent, String>,
        cache: &mut ProfileCache,
    ) -> InFlight {
        let started = Instant::now();
        self.meters.events_in.increment(1);
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        let stage = match decoded {
            Err(reason) => Stage::Invalid("invalid_event", reason),
            Ok(event) => match self.decisions.decide(&event, cache).await {
                Err(Failure::Poison(kind, reason)) => Stage::Invalid(kind, reason),
                Err(Failure::Transient(error)) => Stage::SendFailed {
                    event_id: event.id,
                    error,
                },
                Ok(decision) => match send(&self.js, &decision.publish).await {
                    Ok(acks) => Stage::Sent {
                        outbox_of: (!decision.duplicate && !decision.publish.is_empty())
                            .then(|| (event.subject.clone(), event.identity_digest())),
                        event_id: event.id,
                        acks,
                    },
                    Err(error) => Stage::SendFailed {
                        event_id: event.id,
                        error,
                    },
                },
            },
        };
        InFlight {
            message,
            started,
            delivered,
            stage,
        }
    }

    /// Waits for the acks of every action, then acks the event (and lets the profile's cached
    /// state forget the outbox); or naks it, or moves it to the
    /// DLQ once it has used up `max_deliver`.
    pub async fn finish(&self, in_flight: InFlight, cache: &mut ProfileCache) {
        let InFlight {
            message,
            started,
            delivered,
            stage,
        } = in_flight;
        let (event_id, result) = match stage {
            Stage::Invalid(kind, reason) => {
                let outcome = self.dead_letter(&message, kind, &reason).await;
                telemetry::processed(outcome, started.elapsed().as_secs_f64());
                return;
            }
            Stage::SendFailed { event_id, error } => (event_id, Err(error)),
            Stage::Sent {
                event_id,
                acks,
                outbox_of,
            } => {
                let confirmed = self.confirm(acks).await;
                // Stored actions need no republishing: the next write of the profile drops them.
                if let (Ok(()), Some((profile, identity))) = (&confirmed, outbox_of) {
                    cache.settled(&profile, &identity);
                }
                (event_id, confirmed)
            }
        };
        let outcome = match result {
            Ok(()) => {
                if let Err(error) = message.ack().await {
                    tracing::warn!(event = %event_id, %error, "ack failed; the event will be redelivered and its actions deduplicated");
                }
                self.meters.acked.increment(1);
                self.meters
                    .processing_seconds
                    .record(started.elapsed().as_secs_f64());
                return;
            }
            Err(error) if delivered >= self.settings.max_deliver => {
                let reason =
                    format!("publishing actions failed on delivery {delivered}: {error:#}");
                self.dead_letter(&message, "publish_failed", &reason).await
            }
            Err(error) => {
                tracing::warn!(event = %event_id, delivered, error = format!("{error:#}"), "publishing actions failed; retrying");
                self.nak(&message, delivered).await
            }
        };
        telemetry::processed(outcome, started.elapsed().as_secs_f64());
    }

    async fn confirm(&self, acks: Vec<(Channel, PublishAckFuture)>) -> anyhow::Result<()> {
        for (channel, ack) in acks {
            if ack.await?.duplicate {
                self.meters.deduplicated.increment(1);
            } else {
                self.meters.actions_out[channel as usize].increment(1);
            }
        }
        Ok(())
    }

    async fn nak(&self, message: &Message, delivered: i64) -> &'static str {
        let delay = self.settings.nak_delay(delivered);
        if let Err(error) = message.ack_with(AckKind::Nak(Some(delay))).await {
            tracing::warn!(%error, "nak failed; JetStream redelivers after ack_wait");
        }
        metrics::counter!(telemetry::NAKS).increment(1);
        "nak"
    }

    /// Copies the event to the DLQ, then acks the original so it stops blocking. If the DLQ
    /// itself is unreachable, nak: nothing is lost.
    async fn dead_letter(
        &self,
        message: &Message,
        kind: &'static str,
        reason: &str,
    ) -> &'static str {
        let info = message.info().ok();
        let (stream, sequence, delivered) = info
            .as_ref()
            .map_or(("", 0, 1), |i| (i.stream, i.stream_sequence, i.delivered));
        let letter = DeadLetter {
            subject: message.subject.as_str(),
            payload: message.payload.clone(),
            stream,
            sequence,
            delivered,
            kind,
            reason,
        };
        match dlq::store(&self.js, letter).await {
            Ok(()) => {
                if let Err(error) = message.ack().await {
                    tracing::warn!(%error, "ack after DLQ failed; the DLQ copy is deduplicated on redelivery");
                }
                "dlq"
            }
            Err(error) => {
                tracing::error!(%error, sequence, "could not write to the DLQ; retrying the event later");
                self.nak(message, delivered).await
            }
        }
    }
}

/// Sends an event's decided messages with their deterministic `Nats-Msg-Id`s; the returned
/// futures resolve when JetStream stored each one.
pub async fn send(
    js: &Context,
    messages: &[Outgoing],
) -> anyhow::Result<Vec<(Channel, PublishAckFuture)>> {
    let mut pending = Vec::with_capacity(messages.len());
    for message in messages {
        let channel = message
            .subject
            .strip_prefix("actions.")
            .and_then(Channel::parse)
            .unwrap_or(Channel::Webhook);
        let publish = Publish::build()
            .payload(message.body.clone().into_bytes().into())
            .message_id(&message.id)
            .header("Content-Type", "application/cloudevents+json");
        pending.push((
            channel,
            js.send_publish(message.subject.clone(), publish).await?,
        ));
    }
    Ok(pending)
}
