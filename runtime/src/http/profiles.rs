//! `/api/profiles/{id}`: a profile's state as nudge holds it, `/trace`: its recent decisions,
//! and `/deliveries`: what became of its delivered actions — each most recent first.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use nudge_rules::calendar::rfc3339;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

use super::{ApiError, AppState};
use crate::delivery::log::Attempt;
use crate::profiles::Stored;
use crate::traces;

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(error.to_string())
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Some(Stored {
        state: profile,
        revision,
        ..
    }) = state.profiles.load(&id).await.map_err(unavailable)?
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Some("id"),
            format!("no event about profile `{id}` has been seen"),
        ));
    };
    let times = |map: &nudge_rules::state::StateMap<i64>| {
        map.iter()
            .map(|(k, ms)| (k.to_string(), Value::String(rfc3339(*ms))))
            .collect::<Map<String, Value>>()
    };
    let timers: Vec<Value> = profile
        .timers
        .iter()
        .map(|(name, t)| {
            json!({"name": name, "id": t.id, "due": rfc3339(t.due_ms), "unless": t.unless, "rule": t.rule})
        })
        .collect();
    let windows: Map<String, Value> = profile
        .windows
        .iter()
        .map(|(t, w)| (t.to_string(), json!(w.len())))
        .collect();
    Ok(Json(json!({
        "id": profile.profile.id,
        "attributes": profile.profile.attributes,
        "consent": profile.profile.consent,
        "timezone": profile.profile.timezone,
        "created_at": rfc3339(profile.created_ms),
        "updated_at": rfc3339(profile.updated_ms),
        "counters": profile.counters,
        "last_seen": times(&profile.last_seen_ms),
        "window_events": windows,
        "timers": timers,
        "caps": profile.caps,
        "last_fired": times(&profile.fired_ms),
        "revision": revision,
    })))
}

#[derive(Deserialize)]
pub struct TraceQuery {
    limit: Option<usize>,
}

pub async fn trace(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<TraceQuery>,
) -> Result<Json<Value>, ApiError> {
    let kept = usize::try_from(state.settings.trace_max_per_profile).unwrap_or(100);
    let limit = query.limit.unwrap_or(kept).clamp(1, kept.max(1));
    // The state points at the newest stored decisions; a profile never seen has none.
    let newest_seq = match state.profiles.load(&id).await.map_err(unavailable)? {
        Some(stored) => stored.state.trace_seq,
        None => 0,
    };
    let decisions = traces::read(&state.js, &id, newest_seq, limit)
        .await
        .map_err(unavailable)?;
    Ok(Json(json!({ "id": id, "decisions": decisions })))
}

/// Delivery attempts `GET /api/profiles/{id}/deliveries` reads at most.
const DELIVERY_ATTEMPTS_MAX: usize = 1_000;

/// The profile's delivered (or undeliverable) actions, newest first, each with its attempts
/// oldest first and where it stands: `delivered`, `retrying`, `failed` (attempts exhausted),
/// `refused`, `gone` or `redriven` (waiting for its fresh round).
pub async fn deliveries(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let attempts = crate::delivery::log::of_profile(&state.js, &id, DELIVERY_ATTEMPTS_MAX)
        .await
        .map_err(unavailable)?;
    // Grouped per action in the order their newest attempt came (the log answers newest first).
    let mut groups: Vec<Vec<&Attempt>> = Vec::new();
    let mut group_of: std::collections::HashMap<&str, usize> = Default::default();
    for attempt in &attempts {
        let index = *group_of
            .entry(attempt.action_id.as_str())
            .or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
        groups[index].push(attempt);
    }
    let max_attempts = |channel: &str| {
        nudge_rules::Channel::parse(channel)
            .and_then(|c| state.settings.delivery_limits(c))
            .map_or(u32::MAX, |limits| limits.max_attempts)
    };
    let deliveries: Vec<Value> = groups
        .into_iter()
        .filter_map(|mut group| {
            let newest = *group.first()?;
            let standing = match newest.outcome.as_str() {
                "retry" if newest.attempt >= max_attempts(&newest.channel) => "failed",
                "retry" => "retrying",
                other => other,
            };
            // A re-drive's marker names no endpoint; the attempts do.
            let endpoint = group
                .iter()
                .find(|a| !a.endpoint.is_empty())
                .map(|a| &a.endpoint);
            group.reverse();
            Some(json!({
                "action_id": newest.action_id,
                "channel": newest.channel,
                "endpoint": endpoint,
                "state": standing,
                "attempts": newest.attempt,
                "history": group,
            }))
        })
        .collect();
    Ok(Json(json!({ "id": id, "deliveries": deliveries })))
}
