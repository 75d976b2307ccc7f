//! `/api/webhooks`: the endpoints `webhook(name, …)` actions go to. Developers change and test
//! them, viewers read them; every change is audited (with secrets as fingerprints, never their
//! text).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::error::{Body, parse_json};
use super::{ApiError, AppState};
use crate::access::{Principal, audit};
use crate::delivery::endpoints::{EndpointSpec, WebhookError};
use crate::delivery::request;

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::Invalid { field, message } => ApiError::bad_request(&field, message),
            WebhookError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, Some("name"), error.to_string())
            }
            WebhookError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, Some("name"), message)
            }
            WebhookError::Nats(message) => ApiError::unavailable(message),
        }
    }
}

pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let endpoints = state.webhooks.list().await?;
    let webhooks: Vec<Value> = endpoints.iter().map(|e| e.public()).collect();
    Ok(Json(json!({ "webhooks": webhooks })))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.webhooks.get(&name).await?.public()))
}

/// Creates (201, answering the `secret` once) or changes (200) an endpoint.
pub async fn put(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let spec: EndpointSpec = parse_json(&body)?;
    let now_ms = state.clock.now_ms();
    let put = state
        .webhooks
        .put(&name, spec, &principal.name, &state.settings, now_ms)
        .await?;
    let after = put.after.public();
    let (action, before) = match &put.before {
        Some(before) => ("webhook.update", before.public()),
        None => ("webhook.create", Value::Null),
    };
    audit::record(&state.js, &principal, action, &name, before, after.clone()).await;
    let mut answer = after;
    match put.secret {
        Some(secret) => {
            answer["secret"] = Value::String(secret);
            Ok((StatusCode::CREATED, Json(answer)))
        }
        None => Ok((StatusCode::OK, Json(answer))),
    }
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let before = state.webhooks.delete(&name).await?;
    audit::record(
        &state.js,
        &principal,
        "webhook.delete",
        &name,
        before.public(),
        Value::Null,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// A new secret, answered once; the previous ones sign on for `webhook_secret_overlap_s`.
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let overlap_ms = i64::try_from(
        state
            .settings
            .webhook_secret_overlap_s
            .saturating_mul(1_000),
    )
    .unwrap_or(i64::MAX);
    let (before, after, secret) = state
        .webhooks
        .rotate(&name, &principal.name, state.clock.now_ms(), overlap_ms)
        .await?;
    let after = after.public();
    audit::record(
        &state.js,
        &principal,
        "webhook.rotate",
        &name,
        before.public(),
        after.clone(),
    )
    .await;
    let mut answer = after;
    answer["secret"] = Value::String(secret);
    Ok(Json(answer))
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    /// What the test action carries as its payload; default `{"test": true}`.
    #[serde(default)]
    payload: Option<Value>,
}

/// Sends one signed test request now, as a delivery would (a `nudge.action.webhook` CloudEvent
/// with a fresh `test_…` id, disabled endpoints included), and answers what came back. It
/// changes nothing: a 410 here does not switch the endpoint off.
pub async fn test(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let test: TestRequest = if body.is_empty() {
        TestRequest::default()
    } else {
        parse_json(&body)?
    };
    let endpoint = state.webhooks.get(&name).await?;
    let now_ms = state.clock.now_ms();
    let id = format!("test_{}", uuid::Uuid::new_v4().simple());
    let event = json!({
        "specversion": "1.0",
        "id": id,
        "source": "nudge",
        "type": nudge_rules::Channel::Webhook.event_type(),
        "subject": "test-profile",
        "time": nudge_rules::calendar::rfc3339(now_ms),
        "datacontenttype": "application/json",
        "rule": "test",
        "data": {"webhook": name, "payload": test.payload.unwrap_or_else(|| json!({"test": true}))},
    });
    let body = serde_json::to_vec(&event).map_err(|e| ApiError::internal(e.to_string()))?;
    let answer = request::send(&state.http_client, &endpoint, &id, body.into(), now_ms).await;
    Ok(Json(json!({
        "webhook_id": id,
        "outcome": answer.outcome.as_str(),
        "status": answer.status,
        "latency_ms": answer.latency_ms,
        "error": answer.error,
        "retry_after": answer.retry_after,
    })))
}
