//! One event, start to end: evaluate the rules, publish every action with its deterministic
//! `Nats-Msg-Id`, wait for JetStream's acks, then ack the event; or nak it for a retry, or move
//! it to the DLQ with the reason.

use std::sync::Arc;
use std::time::Instant;

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::{AckKind, Context, Message};
use nudge_rules::{Action, CloudEvent, Profile};

use crate::config::Settings;
use crate::rulesync::LiveRules;
use crate::rulestore::now_rfc3339;
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

pub struct Processor {
    js: Context,
    rules: LiveRules,
    settings: Arc<Settings>,
}

impl Processor {
    pub fn new(js: Context, rules: LiveRules, settings: Arc<Settings>) -> Self {
        Processor { js, rules, settings }
    }

    pub async fn handle(&self, message: Message, decoded: Result<CloudEvent, String>) {
        let started = Instant::now();
        metrics::counter!(telemetry::EVENTS_IN).increment(1);
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        let outcome = match decoded {
            Err(reason) => self.dead_letter(&message, "invalid_event", &reason).await,
            Ok(event) => match self.process(&event).await {
                Ok(()) => {
                    if let Err(error) = message.ack().await {
                        tracing::warn!(event = %event.id, %error, "ack failed; the event will be redelivered and its actions deduplicated");
                    }
                    "acked"
                }
                Err(error) if delivered >= self.settings.max_deliver => {
                    let reason = format!("publishing actions failed on delivery {delivered}: {error:#}");
                    self.dead_letter(&message, "publish_failed", &reason).await
                }
                Err(error) => {
                    tracing::warn!(event = %event.id, delivered, error = format!("{error:#}"), "publishing actions failed; retrying");
                    self.nak(&message, delivered).await
                }
            },
        };
        telemetry::processed(outcome, started.elapsed().as_secs_f64());
    }

    async fn process(&self, event: &CloudEvent) -> anyhow::Result<()> {
        let rules = self.rules.load();
        let evaluated_at = Instant::now();
        let evaluation = rules.evaluate(event, &Profile::new(&event.subject));
        if !evaluation.matched.is_empty() {
            metrics::histogram!(telemetry::RULE_EVAL_SECONDS)
                .record(evaluated_at.elapsed().as_secs_f64());
        }
        for failure in &evaluation.failures {
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
        publish_actions(&self.js, event, &evaluation.actions).await
    }

    async fn nak(&self, message: &Message, delivered: i64) -> &'static str {
        let delay = self.settings.nak_delay(delivered);
        if let Err(error) = message.ack_with(AckKind::Nak(Some(delay))).await {
            tracing::warn!(%error, "nak failed; JetStream redelivers after ack_wait");
        }
        metrics::counter!(telemetry::NAKS).increment(1);
        "nak"
    }

    /// Publishes the original payload to `dlq.<subject>` with the reason in headers, then acks
    /// the original so it stops blocking. If the DLQ itself is unreachable, nak: nothing is lost.
    async fn dead_letter(&self, message: &Message, kind: &'static str, reason: &str) -> &'static str {
        let info = message.info().ok();
        let (stream, sequence, delivered) = info
            .as_ref()
            .map_or(("", 0, 1), |i| (i.stream, i.stream_sequence, i.delivered));
        let mut headers = HeaderMap::new();
        headers.insert("Nudge-Dlq-Kind", kind);
        headers.insert("Nudge-Dlq-Reason", header_safe(reason).as_str());
        headers.insert("Nudge-Original-Subject", message.subject.as_str());
        headers.insert("Nudge-Original-Stream", stream);
        headers.insert("Nudge-Original-Sequence", sequence.to_string().as_str());
        headers.insert("Nudge-Delivery-Count", delivered.to_string().as_str());
        let publish = Publish::build()
            .payload(message.payload.clone())
            .headers(headers)
            .message_id(format!("dlq.{stream}.{sequence}"));
        let subject = format!("dlq.{}", message.subject);
        let stored = match self.js.send_publish(subject, publish).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => {
                tracing::warn!(subject = %message.subject, sequence, kind, reason, "event moved to the DLQ");
                telemetry::dead_lettered(kind);
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

/// NATS header values are single lines; keep them short too.
fn header_safe(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1_000)
        .collect();
    line.truncate(line.trim_end().len());
    line
}

/// Publishes the actions of one event and waits until JetStream stored every one of them.
/// Publishes are pipelined; only then are the acks awaited.
pub async fn publish_actions(js: &Context, event: &CloudEvent, actions: &[Action]) -> anyhow::Result<()> {
    if actions.is_empty() {
        return Ok(());
    }
    let time = now_rfc3339();
    let mut pending = Vec::with_capacity(actions.len());
    for action in actions {
        let body = serde_json::to_vec(&action.to_cloudevent(event, &time))?;
        let publish = Publish::build()
            .payload(body.into())
            .message_id(action.id(event))
            .header("Content-Type", "application/cloudevents+json");
        pending.push((action.channel, js.send_publish(action.nats_subject(), publish).await?));
    }
    for (channel, ack) in pending {
        if ack.await?.duplicate {
            metrics::counter!(telemetry::ACTIONS_DEDUPLICATED).increment(1);
        } else {
            metrics::counter!(telemetry::ACTIONS_OUT, "channel" => channel.as_str()).increment(1);
        }
    }
    Ok(())
}
