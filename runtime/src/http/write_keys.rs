//! `/api/write-keys`: named ingest write keys — create (the key answered once), list, change the
//! rate limit, rotate with a grace period, revoke — each audited (`write_key.*`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{Body, parse_json};
use super::{ApiError, AppState};
use crate::access::users::AccessError;
use crate::access::write_keys::WriteKey;
use crate::access::{Principal, audit};

/// Refusals about one key name its `name`.
fn refused(error: AccessError) -> ApiError {
    match error {
        AccessError::Conflict(message) => {
            ApiError::new(StatusCode::CONFLICT, Some("name"), message)
        }
        AccessError::NotFound(message) => {
            ApiError::new(StatusCode::NOT_FOUND, Some("name"), message)
        }
        other => other.into(),
    }
}

fn to_value(key: &WriteKey) -> Result<Value, ApiError> {
    serde_json::to_value(key).map_err(|error| {
        ApiError::internal(format!("serializing write key `{}`: {error}", key.name))
    })
}

/// Records `action` on `name` in the audit log (`before` absent for a creation); answers the
/// key as it is now.
async fn audited(
    state: &AppState,
    principal: &Principal,
    action: &str,
    name: &str,
    before: Option<&WriteKey>,
    after: &WriteKey,
) -> Result<Value, ApiError> {
    let before = match before {
        Some(key) => to_value(key)?,
        None => Value::Null,
    };
    let after = to_value(after)?;
    audit::record(&state.js, principal, action, name, before, after.clone()).await;
    Ok(after)
}

pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let keys = state.access.write_keys.list().await.map_err(refused)?;
    Ok(Json(json!({ "write_keys": keys })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    rate_per_s: Option<u32>,
    burst: Option<u32>,
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new: NewKey = parse_json(&body)?;
    let (key, secret) = state
        .access
        .write_keys
        .create(&new.name, new.rate_per_s, new.burst, &principal.name)
        .await
        .map_err(refused)?;
    let after = audited(
        &state,
        &principal,
        "write_key.create",
        &key.name,
        None,
        &key,
    )
    .await?;
    let mut answer = after;
    answer["key"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(answer)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateChange {
    rate_per_s: Option<u32>,
    burst: Option<u32>,
}

pub async fn update(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let change: RateChange = parse_json(&body)?;
    let (before, after) = state
        .access
        .write_keys
        .set_rate(&name, change.rate_per_s, change.burst)
        .await
        .map_err(refused)?;
    let after = audited(
        &state,
        &principal,
        "write_key.update",
        &name,
        Some(&before),
        &after,
    )
    .await?;
    Ok(Json(after))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotation {
    grace_s: Option<u64>,
}

pub async fn rotate(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let rotation: Rotation = if body.is_empty() {
        Rotation::default()
    } else {
        parse_json(&body)?
    };
    let now_ms = state.clock.now_ms();
    let (before, after, secret) = state
        .access
        .write_keys
        .rotate(&name, rotation.grace_s, now_ms, &principal.name)
        .await
        .map_err(refused)?;
    let after = audited(
        &state,
        &principal,
        "write_key.rotate",
        &name,
        Some(&before),
        &after,
    )
    .await?;
    let mut answer = after;
    answer["key"] = Value::String(secret);
    Ok(Json(answer))
}

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (before, after) = state
        .access
        .write_keys
        .revoke(&name, &principal.name)
        .await
        .map_err(refused)?;
    let after = audited(
        &state,
        &principal,
        "write_key.revoke",
        &name,
        Some(&before),
        &after,
    )
    .await?;
    Ok(Json(after))
}
