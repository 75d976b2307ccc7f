//! `/api/schemas`: the tracking plan. Developers register and change event schemas (audited,
//! every change a new version, checked for compatibility against the version before and the
//! type's recent stored events); everyone reads them; marketers draft one from recent events.
//! `/api/schema-violations`: the report of events that broke them.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use nudge_rules::calendar::rfc3339;
use nudge_rules::schema::infer::infer;
use nudge_rules::schema::{Compatibility, Mode, SchemaSpec};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{Body, parse_json, to_json};
use super::rules::VersionsQuery;
use super::{ApiError, AppState};
use crate::access::{Principal, audit};
use crate::schemas::store::{SchemaError, StoreError};

/// Versions one `GET …/versions` lists at most.
const MAX_VERSIONS_LISTED: u64 = 100;

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, Some("type"), error.to_string())
            }
            StoreError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, Some("version"), error.to_string())
            }
            StoreError::Invalid(SchemaError::Invalid { field, message }) => {
                ApiError::bad_request(&field, message)
            }
            StoreError::Invalid(error @ SchemaError::Incompatible { .. }) => {
                ApiError::new(StatusCode::CONFLICT, Some("schema"), error.to_string())
                    .with("reasons", json!(error.reasons()))
            }
            StoreError::Nats(_) => ApiError::unavailable(error.to_string()),
        }
    }
}

pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let schemas = state.schema_store.list().await?;
    Ok(Json(json!({
        "schemas": to_json(schemas)?,
        "unplanned_events": state.settings.unplanned_events,
        "strict_schemas": state.settings.strict_schemas,
    })))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(event_type): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(to_json(state.schema_store.get(&event_type).await?)?))
}

/// What `PUT` takes: the spec, and the version it was edited from (409 when another landed).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    schema: Value,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    compatibility: Compatibility,
    #[serde(default)]
    version: Option<u64>,
}

/// Registers (201) or changes (200) a type's schema, as a new version.
pub async fn put(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(event_type): Path<String>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let PutBody {
        schema,
        mode,
        compatibility,
        version,
    } = parse_json(&body)?;
    let spec = SchemaSpec {
        schema,
        mode,
        compatibility,
    };
    let before = match state.schema_store.get(&event_type).await {
        Ok(schema) => Some(schema),
        Err(StoreError::NotFound { .. }) => None,
        Err(error) => return Err(error.into()),
    };
    let recent = recent(&state, &event_type).await?;
    let (stored, check) = state
        .schema_store
        .put(&event_type, spec, &who.name, version, &recent)
        .await?;
    crate::schemas::sync::wait_live(&state.schemas, &event_type, Some(stored.version)).await;
    let after = to_json(&stored)?;
    let (action, status) = match &before {
        Some(_) => ("schema.update", StatusCode::OK),
        None => ("schema.create", StatusCode::CREATED),
    };
    audit::record(
        &state.js,
        &who,
        action,
        &event_type,
        to_json(before)?,
        after.clone(),
    )
    .await;
    let mut answer = after;
    answer["recent_events"] = to_json(check)?;
    Ok((status, Json(answer)))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(event_type): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let before = state.schema_store.get(&event_type).await?;
    let deleted = state.schema_store.delete(&event_type, &who.name).await?;
    crate::schemas::sync::wait_live(&state.schemas, &event_type, None).await;
    audit::record(
        &state.js,
        &who,
        "schema.delete",
        &event_type,
        to_json(before)?,
        Value::Null,
    )
    .await;
    Ok(Json(
        json!({ "type": event_type, "deleted": true, "version": deleted.version }),
    ))
}

pub async fn versions(
    State(state): State<Arc<AppState>>,
    Path(event_type): Path<String>,
    Query(query): Query<VersionsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit_or(MAX_VERSIONS_LISTED, MAX_VERSIONS_LISTED);
    let versions = state.schema_store.versions(&event_type, limit).await?;
    Ok(Json(json!({ "versions": to_json(versions)? })))
}

pub async fn version(
    State(state): State<Arc<AppState>>,
    Path((event_type, version)): Path<(String, u64)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(to_json(
        state.schema_store.version(&event_type, version).await?,
    )?))
}

/// A draft schema from the type's recent stored events; stores nothing.
pub async fn infer_draft(
    State(state): State<Arc<AppState>>,
    Path(event_type): Path<String>,
) -> Result<Json<Value>, ApiError> {
    nudge_rules::event::validate_event_type(&event_type)
        .map_err(|message| ApiError::bad_request("type", message))?;
    let recent = recent(&state, &event_type).await?;
    let draft = infer(recent.iter().map(|(_, data)| data));
    Ok(Json(json!({ "schema": draft, "events": recent.len() })))
}

/// The type's most recent stored events (`schema_recent_events`).
async fn recent(state: &AppState, event_type: &str) -> Result<Vec<(String, Value)>, ApiError> {
    crate::schemas::recent_data(
        &state.js,
        event_type,
        state.settings.recent_events_scan,
        state.settings.schema_recent_events,
    )
    .await
    .map_err(|e| ApiError::unavailable(format!("reading recent events: {e:#}")))
}

/// The violations report, every instance's summed, types with the most violating events first;
/// an hour's `count` is its violations (an event can have several).
pub async fn violations(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let report = crate::schemas::cluster_wide(&state.violations, &state.cluster.id)
        .await
        .map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
    let mut types: Vec<_> = report.into_iter().collect();
    types.sort_by(|(a_type, a), (b_type, b)| {
        (b.warned + b.blocked)
            .cmp(&(a.warned + a.blocked))
            .then_with(|| a_type.cmp(b_type))
    });
    let types: Vec<Value> = types
        .into_iter()
        .map(|(event_type, report)| {
            let hours: Vec<Value> = report
                .hours
                .iter()
                .map(|(at_ms, kinds)| {
                    let count: u64 = kinds.values().sum();
                    json!({ "at": rfc3339(*at_ms), "count": count, "kinds": kinds })
                })
                .collect();
            let samples: Vec<Value> = report
                .samples
                .iter()
                .map(|s| {
                    json!({
                        "at": rfc3339(s.at_ms),
                        "event_id": s.event_id,
                        "subject": s.subject,
                        "blocked": s.blocked,
                        "data": s.data,
                        "violations": s.violations,
                    })
                })
                .collect();
            json!({
                "type": event_type,
                "warned": report.warned,
                "blocked": report.blocked,
                "kinds": report.kinds,
                "hours": hours,
                "samples": samples,
            })
        })
        .collect();
    Ok(Json(json!({ "types": types })))
}
