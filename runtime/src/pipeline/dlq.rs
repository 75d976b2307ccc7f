//! The dead-letter stream: a copy of every event nudge gave up on, on `dlq.<original subject>`,
//! with the original payload and the reason in headers. Also catches events JetStream itself
//! stopped delivering (max deliveries reached without an ack, e.g. nudge crashed on each try).

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::Context;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::telemetry;
use crate::topology::EVENTS_STREAM;

/// One event to dead-letter.
pub struct DeadLetter<'a> {
    pub subject: &'a str,
    pub payload: Bytes,
    pub stream: &'a str,
    pub sequence: u64,
    pub delivered: i64,
    /// `invalid_event`, `publish_failed` or `max_deliveries`.
    pub kind: &'static str,
    pub reason: &'a str,
}

/// Stores the copy and waits for JetStream's ack. Its `Nats-Msg-Id` is the original's stream and
/// sequence, so storing the same event twice (a retry, two instances) keeps one copy.
pub async fn store(js: &Context, letter: DeadLetter<'_>) -> Result<(), String> {
    let mut headers = HeaderMap::new();
    headers.insert("Nudge-Dlq-Kind", letter.kind);
    headers.insert("Nudge-Dlq-Reason", header_safe(letter.reason).as_str());
    headers.insert("Nudge-Original-Subject", letter.subject);
    headers.insert("Nudge-Original-Stream", letter.stream);
    headers.insert(
        "Nudge-Original-Sequence",
        letter.sequence.to_string().as_str(),
    );
    headers.insert(
        "Nudge-Delivery-Count",
        letter.delivered.to_string().as_str(),
    );
    let publish = PublishMessage::build()
        .payload(letter.payload)
        .headers(headers)
        .message_id(format!("dlq.{}.{}", letter.stream, letter.sequence));
    let ack = js
        .send_publish(format!("dlq.{}", letter.subject), publish)
        .await
        .map_err(|e| e.to_string())?;
    ack.await.map_err(|e| e.to_string())?;
    tracing::warn!(
        subject = letter.subject,
        sequence = letter.sequence,
        kind = letter.kind,
        reason = letter.reason,
        "event moved to the DLQ"
    );
    telemetry::dead_lettered(letter.kind);
    Ok(())
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

#[derive(Deserialize)]
struct MaxDeliveriesAdvisory {
    stream_seq: u64,
    deliveries: i64,
}

/// Listens for JetStream's max-deliveries advisories on nudge's consumer and dead-letters those
/// events, so an event that never got acked is not silently skipped. Instances share the work
/// through a queue group; the DLQ's dedupe keeps one copy regardless.
pub async fn rescue_max_deliveries(
    js: Context,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
) {
    let subject = format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{EVENTS_STREAM}.{}",
        settings.consumer_name
    );
    while !shutdown.is_cancelled() {
        let mut advisories = match js
            .client()
            .queue_subscribe(subject.clone(), "nudge-dlq".into())
            .await
        {
            Ok(subscription) => subscription,
            Err(error) => {
                tracing::warn!(%error, "cannot watch max-delivery advisories; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let advisory = tokio::select! {
                _ = shutdown.cancelled() => return,
                advisory = advisories.next() => advisory,
            };
            let Some(advisory) = advisory else { break };
            match serde_json::from_slice::<MaxDeliveriesAdvisory>(&advisory.payload) {
                Ok(advisory) => rescue(&js, advisory).await,
                Err(error) => tracing::warn!(%error, "unreadable max-delivery advisory"),
            }
        }
    }
}

async fn rescue(js: &Context, advisory: MaxDeliveriesAdvisory) {
    let original = match js.get_stream(EVENTS_STREAM).await {
        Ok(stream) => stream
            .get_raw_message(advisory.stream_seq)
            .await
            .map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    let original = match original {
        Ok(original) => original,
        Err(error) => {
            tracing::error!(sequence = advisory.stream_seq, %error, "event reached max deliveries and could not be read for the DLQ");
            return;
        }
    };
    let reason = format!(
        "delivered {} times without an ack (nudge crashed or ran past ack_wait_ms each time); max_deliver reached",
        advisory.deliveries
    );
    let letter = DeadLetter {
        subject: original.subject.as_str(),
        payload: original.payload.clone(),
        stream: EVENTS_STREAM,
        sequence: advisory.stream_seq,
        delivered: advisory.deliveries,
        kind: "max_deliveries",
        reason: &reason,
    };
    if let Err(error) = store(js, letter).await {
        tracing::error!(sequence = advisory.stream_seq, %error, "could not write a max-deliveries event to the DLQ");
    }
}
