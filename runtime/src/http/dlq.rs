//! `/api/dlq`: dead letters with their reason and payload, and re-driving them after a fix: the
//! event is published again on its original subject (an undelivered action on
//! `actions.<channel>`, for another round of attempts), then removed from `NUDGE_DLQ`.

use std::sync::Arc;

use async_nats::jetstream::message::PublishMessage;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::access::{Principal, audit};
use crate::delivery::log::{self as delivery_log, Attempt, DeliveryLog};
use crate::pipeline::dlq::KINDS;
use crate::tail::{Stored, tail};
use crate::topology::DLQ_STREAM;

/// Dead letters one `GET /api/dlq` lists at most.
const DLQ_PAGE_MAX: usize = 500;

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(error.to_string())
}

fn letter(m: &Stored) -> Value {
    let payload = match serde_json::from_slice::<Value>(&m.payload) {
        Ok(json) => json,
        Err(_) => Value::String(String::from_utf8_lossy(&m.payload).into_owned()),
    };
    json!({
        "sequence": m.sequence,
        "subject": m.header("Nudge-Original-Subject").unwrap_or(m.subject.trim_start_matches("dlq.")),
        "kind": m.header("Nudge-Dlq-Kind"),
        "reason": m.header("Nudge-Dlq-Reason"),
        "deliveries": m.header("Nudge-Delivery-Count").and_then(|d| d.parse::<u64>().ok()),
        "original_sequence": m.header("Nudge-Original-Sequence").and_then(|d| d.parse::<u64>().ok()),
        "stored_at": nudge_rules::calendar::rfc3339(m.stored_ms),
        "payload": payload,
    })
}

/// Which letters: of one kind (`schema_violation`), of one event type's subject.
#[derive(Deserialize)]
pub struct Filter {
    kind: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    before: Option<u64>,
    // Not a flattened `Filter`: flattening turns the numbers above into strings serde_urlencoded
    // cannot read back.
    kind: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

/// The newest `limit` letters matching `filter` (before `before`); with a kind, among the last
/// `dlq_redrive_max` letters.
async fn letters(
    state: &AppState,
    filter: &Filter,
    limit: usize,
    before: Option<u64>,
) -> Result<Vec<Stored>, ApiError> {
    let subject = match filter.event_type.as_deref() {
        None => None,
        Some(event_type) => {
            nudge_rules::event::validate_event_type(event_type)
                .map_err(|message| ApiError::bad_request("type", message))?;
            Some(format!("dlq.events.{event_type}"))
        }
    };
    if let Some(kind) = filter.kind.as_deref()
        && !KINDS.contains(&kind)
    {
        return Err(ApiError::bad_request(
            "kind",
            format!("\"{kind}\" is not one of {}", KINDS.join(", ")),
        ));
    }
    let Some(kind) = filter.kind.as_deref() else {
        return tail(&state.js, DLQ_STREAM, subject, limit as u64, limit, before)
            .await
            .map_err(unavailable);
    };
    let scan = state.settings.dlq_redrive_max;
    let mut stored = tail(&state.js, DLQ_STREAM, subject, scan as u64, scan, before)
        .await
        .map_err(unavailable)?;
    stored.retain(|m| m.header("Nudge-Dlq-Kind") == Some(kind));
    stored.truncate(limit);
    Ok(stored)
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, DLQ_PAGE_MAX);
    let filter = Filter {
        kind: query.kind,
        event_type: query.event_type,
    };
    let stored = letters(&state, &filter, limit, query.before).await?;
    let total = state
        .js
        .get_stream(DLQ_STREAM)
        .await
        .map_err(unavailable)?
        .info()
        .await
        .map_err(unavailable)?
        .state
        .messages;
    Ok(Json(json!({
        "total": total,
        "letters": stored.iter().map(letter).collect::<Vec<_>>(),
    })))
}

/// Publishes one dead letter again and deletes it from the DLQ. The publish carries a
/// `Nats-Msg-Id` of its own, so re-driving the same letter twice publishes it once.
async fn redrive_one(state: &AppState, sequence: u64) -> Result<Value, ApiError> {
    let stream = state.js.get_stream(DLQ_STREAM).await.map_err(unavailable)?;
    let message = stream.get_raw_message(sequence).await.map_err(|e| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            Some("sequence"),
            format!("no dead letter at sequence {sequence}: {e}"),
        )
    })?;
    let original = message
        .headers
        .get("Nudge-Original-Subject")
        .map(|v| v.as_str().to_owned())
        .unwrap_or_else(|| message.subject.trim_start_matches("dlq.").to_owned());
    let target = if original.starts_with("events.") {
        original.clone()
    } else if let Some(channel) = original
        .strip_prefix("delivery.")
        .and_then(nudge_rules::Channel::parse)
    {
        restart_delivery(state, channel, &message.payload).await?
    } else {
        return Err(ApiError::bad_request(
            "sequence",
            format!(
                "dead letter {sequence} came from `{original}`, neither an event nor a delivery"
            ),
        ));
    };
    let publish = PublishMessage::build()
        .payload(Bytes::from(message.payload.to_vec()))
        .message_id(format!("redrive.{}.{sequence}", DLQ_STREAM));
    state
        .js
        .send_publish(target, publish)
        .await
        .map_err(unavailable)?
        .await
        .map_err(unavailable)?;
    stream.delete_message(sequence).await.map_err(unavailable)?;
    Ok(json!({ "sequence": sequence, "subject": original }))
}

/// A delivery letter is re-driven by publishing its action again on `actions.<channel>` (the
/// same CloudEvent: other consumers of that subject see its id again) after logging a fresh
/// start, so it gets all its attempts anew. Answers the subject to publish on.
async fn restart_delivery(
    state: &AppState,
    channel: nudge_rules::Channel,
    payload: &[u8],
) -> Result<String, ApiError> {
    #[derive(Deserialize)]
    struct ActionIds {
        id: String,
        subject: String,
    }
    let action: ActionIds = serde_json::from_slice(payload).map_err(|e| {
        ApiError::bad_request("sequence", format!("the dead letter is not an action: {e}"))
    })?;
    let log = DeliveryLog::open(&state.js).await.map_err(unavailable)?;
    let restart = Attempt {
        action_id: action.id.clone(),
        channel: channel.as_str().into(),
        endpoint: String::new(),
        attempt: 0,
        at: nudge_rules::calendar::rfc3339(state.clock.now_ms()),
        outcome: "redriven".into(),
        status: None,
        latency_ms: 0,
        error: None,
    };
    log.append(
        delivery_log::subject(channel, &action.subject, &action.id),
        &restart,
    )
    .await
    .map_err(unavailable)?;
    Ok(channel.subject().to_owned())
}

pub async fn redrive(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(sequence): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let done = redrive_one(&state, sequence).await?;
    audit::record(
        &state.js,
        &who,
        "dlq.redrive",
        &sequence.to_string(),
        Value::Null,
        done.clone(),
    )
    .await;
    Ok(Json(done))
}

/// Re-drives every dead letter matching the filter (oldest first, up to `dlq_redrive_max`).
pub async fn redrive_all(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let stored = letters(&state, &filter, state.settings.dlq_redrive_max, None).await?;
    let (mut redriven, mut failed) = (0usize, Vec::new());
    for m in stored.iter().rev() {
        match redrive_one(&state, m.sequence).await {
            Ok(_) => redriven += 1,
            Err(error) => failed.push(json!({ "sequence": m.sequence, "error": error.message })),
        }
    }
    let summary = json!({ "redriven": redriven, "failed": failed });
    audit::record(
        &state.js,
        &who,
        "dlq.redrive_all",
        "*",
        Value::Null,
        summary.clone(),
    )
    .await;
    Ok(Json(summary))
}
