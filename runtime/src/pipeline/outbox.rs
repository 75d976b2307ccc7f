//! A partition's actions between publish and checkpoint: each is sent as soon as its event is
//! decided, with its deterministic `Nats-Msg-Id`, while the lease is valid, and confirmed —
//! JetStream's ack awaited, failures retried — before the checkpoint that covers its event.

use std::collections::VecDeque;
use std::sync::Arc;

use async_nats::jetstream::Context;
use std::future::{Future, IntoFuture};
use std::pin::Pin;

use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use futures::FutureExt as _;
use metrics::Counter;
use nudge_rules::Channel;
use nudge_rules::state::Outgoing;

use super::dlq::{self, DeadLetter};
use crate::cluster::lease::Lease;
use crate::config::Settings;
use crate::telemetry;
use crate::topology::EVENTS_STREAM;

/// The event an action came from, for logs and for its dead letter. Not its payload: holding
/// it until the checkpoint would keep the client's read buffers alive (a dead letter reads the
/// event back from the stream instead).
pub struct Cause {
    pub seq: u64,
    pub event_id: String,
    pub subject: async_nats::Subject,
    /// When the reader took it.
    pub received: std::time::Instant,
}

/// JetStream's answer to one publish, awaitable piece by piece.
type Ack = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

struct Sent {
    cause: Arc<Cause>,
    channel: Channel,
    message: Outgoing,
    /// `Err`: not sent or refused, saying why; sent again when confirming.
    ack: Result<Ack, String>,
    attempts: u32,
    /// When it was last sent.
    sent_at: std::time::Instant,
}

/// Why confirming stopped the partition.
#[derive(Debug)]
pub enum Halt {
    /// Another instance owns the partition.
    Lost,
    /// The lease ran out before the actions could be confirmed.
    Lapsed,
}

pub struct Outbox {
    js: Context,
    sent: VecDeque<Sent>,
    actions_out: [Counter; Channel::COUNT],
    deduplicated: Counter,
}

impl Outbox {
    pub fn new(js: Context) -> Outbox {
        Outbox {
            js,
            sent: VecDeque::new(),
            actions_out: Channel::ALL
                .map(|c| metrics::counter!(telemetry::ACTIONS_OUT, "channel" => c.as_str())),
            deduplicated: metrics::counter!(telemetry::ACTIONS_DEDUPLICATED),
        }
    }

    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// Hands every sent action over to a checkpoint; actions sent from now on stay here.
    pub fn take(&mut self) -> Outbox {
        Outbox {
            js: self.js.clone(),
            sent: std::mem::take(&mut self.sent),
            actions_out: self.actions_out.clone(),
            deduplicated: self.deduplicated.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Counts and forgets the oldest actions JetStream already stored, without waiting, so
    /// confirmed actions do not sit in memory until the checkpoint.
    pub fn settle(&mut self) {
        while let Some(front) = self.sent.front_mut() {
            let Ok(ack) = &mut front.ack else { return };
            match ack.as_mut().now_or_never() {
                None => return,
                Some(Err(error)) => {
                    // Left for `confirm`, which retries.
                    front.ack = Err(error.to_string());
                    return;
                }
                Some(Ok(ack)) => {
                    if ack.duplicate {
                        self.deduplicated.increment(1);
                    } else {
                        self.actions_out[front.channel.index()].increment(1);
                    }
                    self.sent.pop_front();
                }
            }
        }
    }

    /// Sends `messages` (actions of `cause`) without waiting for JetStream.
    pub async fn send(
        &mut self,
        cause: Arc<Cause>,
        messages: Vec<Outgoing>,
        lease: &Lease,
    ) -> Result<(), Halt> {
        for message in messages {
            let channel = channel_of(&message.subject);
            let ack = publish(&self.js, &message, lease).await?;
            self.sent.push_back(Sent {
                cause: cause.clone(),
                channel,
                message,
                ack,
                attempts: 1,
                sent_at: std::time::Instant::now(),
            });
        }
        Ok(())
    }

    /// Waits until JetStream stored every sent action, sending again what failed (with the
    /// `retry_backoff_ms` delays). An action that fails `max_deliver` times dead-letters its
    /// event (kind `publish_failed`) instead.
    pub async fn confirm(&mut self, lease: &Lease, settings: &Settings) -> Result<(), Halt> {
        // An ack's timeout runs from its first poll: poll them all now, so acks lost together
        // (a broker restart) time out together instead of one after another.
        for sent in &mut self.sent {
            if let Ok(ack) = &mut sent.ack
                && let Some(result) = ack.as_mut().now_or_never()
            {
                sent.ack = Ok(Box::pin(std::future::ready(result)));
            }
        }
        while let Some(mut sent) = self.sent.pop_front() {
            let outcome = match std::mem::replace(&mut sent.ack, Err(String::new())) {
                Ok(ack) => ack.await.map_err(|e| e.to_string()),
                Err(refused) => Err(refused),
            };
            match outcome {
                Ok(ack) if ack.duplicate => self.deduplicated.increment(1),
                Ok(_) => self.actions_out[sent.channel.index()].increment(1),
                Err(error) if i64::from(sent.attempts) >= settings.max_deliver => {
                    let reason = format!(
                        "publishing its action {} failed {} times: {error}",
                        sent.message.id, sent.attempts
                    );
                    dead_letter(
                        &self.js,
                        &sent.cause,
                        None,
                        "publish_failed",
                        &reason,
                        lease,
                        settings,
                    )
                    .await?;
                    // The event's other actions go with it.
                    self.sent.retain(|s| !Arc::ptr_eq(&s.cause, &sent.cause));
                }
                Err(error) => {
                    tracing::warn!(
                        event = %sent.cause.event_id,
                        action = %sent.message.id,
                        attempt = sent.attempts,
                        %error,
                        "publishing an action failed; retrying"
                    );
                    metrics::counter!(telemetry::PUBLISH_RETRIES).increment(1);
                    // From its last send: actions that failed together wait out one back-off.
                    pause(settings, sent.sent_at, sent.attempts, lease).await?;
                    sent.attempts += 1;
                    sent.ack = publish(&self.js, &sent.message, lease).await?;
                    sent.sent_at = std::time::Instant::now();
                    self.sent.push_front(sent);
                }
            }
        }
        Ok(())
    }
}

/// The channel an action's subject (`actions.<channel>`) names. Every subject was built from a
/// [`Channel`], so anything else is a bug, reported as such rather than guessed.
fn channel_of(subject: &str) -> Channel {
    let parsed = subject.strip_prefix("actions.").and_then(Channel::parse);
    debug_assert!(
        parsed.is_some(),
        "action subject {subject} names no channel"
    );
    parsed.unwrap_or_else(|| {
        tracing::error!(
            subject,
            "an action subject names no channel; counted as webhook"
        );
        Channel::Webhook
    })
}

/// Sends one action if the lease is still valid; `Ok(Err(why))`: the client refused it (it is
/// sent again when confirming).
async fn publish(
    js: &Context,
    message: &Outgoing,
    lease: &Lease,
) -> Result<Result<Ack, String>, Halt> {
    // Checked per publish, so the window in which a paused former owner could still send is
    // the send call itself.
    if !lease.is_valid() {
        return Err(if lease.lost().is_cancelled() {
            Halt::Lost
        } else {
            Halt::Lapsed
        });
    }
    let publish = PublishMessage::build()
        .payload(message.body.clone().into_bytes().into())
        .message_id(&message.id)
        .header("Content-Type", "application/cloudevents+json");
    Ok(js
        .send_publish(message.subject.clone(), publish)
        .await
        .map(|ack| -> Ack { Box::pin(ack.into_future()) })
        .map_err(|e| e.to_string()))
}

/// Waits until attempt `attempts + 1` of what was last sent at `sent_at` is due, unless the
/// lease runs out first.
async fn pause(
    settings: &Settings,
    sent_at: std::time::Instant,
    attempts: u32,
    lease: &Lease,
) -> Result<(), Halt> {
    tokio::time::sleep_until((sent_at + settings.retry_delay(attempts)).into()).await;
    if lease.is_valid() {
        Ok(())
    } else {
        Err(Halt::Lapsed)
    }
}

/// Copies `cause` (its `payload`, or else the event as the stream holds it) to the DLQ with
/// `kind`, retrying until it is stored or the lease runs out.
#[allow(clippy::too_many_arguments)]
pub async fn dead_letter(
    js: &Context,
    cause: &Cause,
    payload: Option<Bytes>,
    kind: &'static str,
    reason: &str,
    lease: &Lease,
    settings: &Settings,
) -> Result<(), Halt> {
    let mut attempts = 1;
    loop {
        let payload = match &payload {
            Some(payload) => Ok(payload.clone()),
            None => stored_payload(js, cause.seq).await,
        };
        let stored = match payload {
            Ok(payload) => {
                let letter = DeadLetter {
                    subject: cause.subject.as_str(),
                    payload,
                    stream: EVENTS_STREAM,
                    sequence: cause.seq,
                    delivered: i64::from(attempts),
                    kind,
                    reason,
                };
                dlq::store(js, letter).await
            }
            Err(error) => Err(error),
        };
        match stored {
            Ok(()) => return Ok(()),
            Err(error) => {
                tracing::error!(%error, sequence = cause.seq, "could not write to the DLQ; retrying");
                pause(settings, std::time::Instant::now(), attempts, lease).await?;
                attempts += 1;
            }
        }
    }
}

/// The payload of event `seq` as `NUDGE_EVENTS` holds it.
async fn stored_payload(js: &Context, seq: u64) -> Result<Bytes, String> {
    let stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let message = stream
        .get_raw_message(seq)
        .await
        .map_err(|e| format!("reading event {seq} back for the DLQ: {e}"))?;
    Ok(message.payload)
}
