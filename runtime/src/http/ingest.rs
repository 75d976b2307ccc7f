//! Ingest: CloudEvents (`/v1/events`) and the Segment Tracking API (`/v1/track` …). Every
//! request is validated whole before anything is published, and answered only after JetStream
//! acknowledged every event in it.

use std::sync::Arc;

use async_nats::jetstream::message::PublishMessage as Publish;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{MethodRouter, post};
use nudge_rules::CloudEvent;
use serde_json::{Value, json};

use super::error::Body;
use super::segment::{self, Call};
use super::{ApiError, AppState};
use crate::rulestore::now_rfc3339;
use crate::telemetry;

/// Bodies are parsed as JSON whatever their Content-Type claims (Segment libraries and curl
/// differ), but a binary-mode CloudEvent (`ce-specversion` header) is refused rather than
/// misread: nudge takes structured mode only.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    if headers.contains_key("ce-specversion") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("ce-specversion"),
            "binary-mode CloudEvents are not accepted; send structured mode (application/cloudevents+json)",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("body", format!("not valid JSON: {e}")))
}

/// Publishes validated events on `events.<type>` with `Nats-Msg-Id` = digest of source + id, so
/// a retried request is deduplicated by JetStream. Returns (stored, duplicates). `field(i, f)`
/// names field `f` of the CloudEvent made of the request's `i`th item (`""`: the item) as the
/// request writes it.
pub(super) async fn publish_events(
    state: &AppState,
    events: &[CloudEvent],
    field: impl Fn(usize, &str) -> String,
) -> Result<(usize, usize), ApiError> {
    let prefix = |i: usize| field(i, "");
    let mut payloads = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let payload = serde_json::to_vec(event)
            .map_err(|e| ApiError::bad_request(&prefix(i), e.to_string()))?;
        if payload.len() > state.settings.max_event_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some(&prefix(i)),
                format!(
                    "the event is {} bytes; the limit is {} (max_event_bytes)",
                    payload.len(),
                    state.settings.max_event_bytes
                ),
            ));
        }
        payloads.push(payload);
    }
    refuse_blocked(state, events, &field)?;
    let mut acks = Vec::with_capacity(events.len());
    for (event, payload) in events.iter().zip(payloads) {
        let publish = Publish::build()
            .payload(payload.into())
            .message_id(event.identity_digest())
            .header("Content-Type", "application/cloudevents+json");
        let ack = state
            .js
            .send_publish(event.nats_subject(), publish)
            .await
            .map_err(|e| ApiError::unavailable(format!("could not publish to NATS: {e}")))?;
        acks.push(ack);
    }
    let mut duplicates = 0;
    for ack in acks {
        let ack = ack.await.map_err(|e| {
            ApiError::unavailable(format!("JetStream did not store the event: {e}"))
        })?;
        duplicates += usize::from(ack.duplicate);
    }
    Ok((events.len() - duplicates, duplicates))
}

/// Refuses the request (400 naming the first field at fault) when an event breaks a schema
/// whose mode is `block` (or is of an unplanned type with `unplanned_events = block`); each
/// such event is counted in the violations report. Events that only warn are published, and
/// flagged where they are decided.
fn refuse_blocked(
    state: &AppState,
    events: &[CloudEvent],
    field: &impl Fn(usize, &str) -> String,
) -> Result<(), ApiError> {
    let schemas = state.schemas.load();
    let now_ms = state.clock.now_ms();
    let mut refusal = None;
    for (i, event) in events.iter().enumerate() {
        let Some(verdict) = schemas.check(event).filter(|v| v.block) else {
            continue;
        };
        crate::schemas::flag(event, &verdict, now_ms);
        let Some(first) = verdict.violations.first().filter(|_| refusal.is_none()) else {
            continue;
        };
        refusal = Some(ApiError::bad_request(
            &field(i, &first.field()),
            format!("the event {}", crate::schemas::reason(&verdict)),
        ));
    }
    refusal.map_or(Ok(()), Err)
}

fn check_batch_size(state: &AppState, count: usize, field: &str) -> Result<(), ApiError> {
    if count == 0 {
        return Err(ApiError::bad_request(field, "the batch is empty"));
    }
    if count > state.settings.max_batch_events {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some(field),
            format!(
                "{count} events; the limit is {} (max_batch_events)",
                state.settings.max_batch_events
            ),
        ));
    }
    Ok(())
}

/// `POST /v1/events`: one CloudEvent or a JSON array of them.
pub async fn events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (events, batched) = match parse_body(&headers, &body)? {
        Value::Array(items) => {
            check_batch_size(&state, items.len(), "body")?;
            let events = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    CloudEvent::from_value(item).map_err(|e| ApiError::event(&format!("[{i}]."), e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            (events, true)
        }
        single => (
            vec![CloudEvent::from_value(single).map_err(|e| ApiError::event("", e))?],
            false,
        ),
    };
    let field = |i: usize, field: &str| match (batched, field) {
        (true, "") => format!("[{i}]"),
        (true, field) => format!("[{i}].{field}"),
        (false, "") => "body".to_owned(),
        (false, field) => field.to_owned(),
    };
    let (accepted, duplicates) = publish_events(&state, &events, field).await?;
    metrics::counter!(telemetry::EVENTS_INGESTED, "endpoint" => "events")
        .increment(accepted as u64);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": accepted, "duplicates": duplicates })),
    ))
}

fn segment_events(
    calls: &[(Call, &Value)],
    prefix: impl Fn(usize) -> String,
) -> Result<Vec<CloudEvent>, ApiError> {
    let received_at = now_rfc3339();
    calls
        .iter()
        .enumerate()
        .map(|(i, (call, body))| {
            segment::to_cloudevent(*call, body, &received_at, || {
                uuid::Uuid::now_v7().to_string()
            })
            .map_err(|e| ApiError::event(&prefix(i), e))
        })
        .collect()
}

/// `POST /v1/track`, `/v1/identify`, `/v1/page`, `/v1/screen`: one Segment call each.
pub fn segment_call(call: Call) -> MethodRouter<Arc<AppState>> {
    post(
        move |State(state): State<Arc<AppState>>, headers: HeaderMap, Body(body): Body| async move {
            let value = parse_body(&headers, &body)?;
            let events = segment_events(&[(call, &value)], |_| String::new())?;
            publish_events(&state, &events, |_, field| match field {
                "" => "body".to_owned(),
                field => segment::field_of(call, field),
            })
            .await?;
            metrics::counter!(telemetry::EVENTS_INGESTED, "endpoint" => call.name()).increment(1);
            Ok::<_, ApiError>(Json(json!({ "success": true })))
        },
    )
}

/// `POST /v1/batch`: `{"batch": [{"type": "track", …}, …]}`.
pub async fn batch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let value = parse_body(&headers, &body)?;
    let Some(Value::Array(items)) = value.get("batch") else {
        return Err(ApiError::bad_request(
            "batch",
            "must be an array of Segment calls",
        ));
    };
    check_batch_size(&state, items.len(), "batch")?;
    let calls = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
            Call::from_batch_type(kind)
                .map(|call| (call, item))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        &format!("batch[{i}].type"),
                        format!("\"{kind}\" is not one of track, identify, page, screen"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let events = segment_events(&calls, |i| format!("batch[{i}]."))?;
    let field = |i: usize, field: &str| match field {
        "" => format!("batch[{i}]"),
        field => format!("batch[{i}].{}", segment::field_of(calls[i].0, field)),
    };
    let (accepted, _) = publish_events(&state, &events, field).await?;
    metrics::counter!(telemetry::EVENTS_INGESTED, "endpoint" => "batch").increment(accepted as u64);
    Ok(Json(json!({ "success": true })))
}
