//! The dead-letter stream: a copy of every event nudge gave up on, on `dlq.<original subject>`
//! (and of every action it could not deliver, on `dlq.delivery.<channel>`), with the original
//! payload and the reason in headers.

use async_nats::HeaderMap;
use async_nats::jetstream::Context;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;

use crate::telemetry;

/// Every kind of dead letter: why nudge gave up on an event (the first five) or on delivering
/// an action. `store` holds every letter to this list (in debug builds, so every test does),
/// and the UI filters by it.
pub const KINDS: [&str; 13] = [
    "invalid_event",
    "schema_violation",
    "profile_too_large",
    "publish_failed",
    "invalid_action",
    "delivery_failed",
    "delivery_refused",
    "endpoint_gone",
    "endpoint_disabled",
    "no_endpoint",
    "no_relay",
    "no_template",
    "template_error",
];

/// One event to dead-letter.
pub struct DeadLetter<'a> {
    pub subject: &'a str,
    pub payload: Bytes,
    pub stream: &'a str,
    pub sequence: u64,
    pub delivered: i64,
    /// One of [`KINDS`].
    pub kind: &'static str,
    pub reason: &'a str,
}

/// Stores the copy and waits for JetStream's ack. Its `Nats-Msg-Id` is the original's stream and
/// sequence, so storing the same event twice (a retry, two instances) keeps one copy.
pub async fn store(js: &Context, letter: DeadLetter<'_>) -> Result<(), String> {
    debug_assert!(
        KINDS.contains(&letter.kind),
        "dead letter kind {} is missing from dlq::KINDS",
        letter.kind
    );
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
