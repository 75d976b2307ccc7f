//! What the rule editor starts from and tests with: templates, recent stored events, sample
//! events pinned to a rule, and the per-rule/plugin figures.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use nudge_rules::file::{TEMPLATES, parse_rule_file};
use nudge_rules::{CloudEvent, rule::validate_rule_id};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{Body, parse_json, to_json};
use super::{ApiError, AppState};
use crate::access::{Principal, audit};
use crate::tail::tail;
use crate::topology::EVENTS_STREAM;

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(error.to_string())
}

pub async fn templates() -> Json<Value> {
    let list: Vec<Value> = TEMPLATES
        .iter()
        .filter_map(|(file, text)| {
            let (id, spec) = parse_rule_file(file, text).ok()?;
            Some(json!({ "id": id, "rule": spec }))
        })
        .collect();
    Json(json!({ "templates": list }))
}

#[derive(Deserialize)]
pub struct RecentQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    limit: Option<usize>,
}

/// Recent events from `NUDGE_EVENTS`, newest first, optionally of one type.
pub async fn recent_events(
    State(state): State<Arc<AppState>>,
    Query(query): Query<RecentQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(20).clamp(1, 200);
    let filter = match query.event_type.as_deref() {
        None | Some("") => None,
        Some(t)
            if t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) =>
        {
            Some(format!("events.{t}"))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "type",
                "an event type: letters, digits, '.', '_' or '-'",
            ));
        }
    };
    let stored = tail(
        &state.js,
        EVENTS_STREAM,
        filter,
        state.settings.recent_events_scan,
        limit,
        None,
    )
    .await
    .map_err(unavailable)?;
    let events: Vec<Value> = stored
        .iter()
        .filter_map(|m| serde_json::from_slice(&m.payload).ok())
        .collect();
    Ok(Json(json!({ "events": events })))
}

fn checked_id(id: &str) -> Result<(), ApiError> {
    validate_rule_id(id).map_err(|e| ApiError::bad_request("id", e.to_string()))
}

pub async fn samples(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    checked_id(&id)?;
    let samples: Value = match state.samples.get(&id).await.map_err(unavailable)? {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| json!([])),
        None => json!([]),
    };
    Ok(Json(json!({ "samples": samples })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplesBody {
    samples: Vec<Sample>,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    name: String,
    event: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<Value>,
}

/// Replaces the rule's pinned samples; each must be a valid CloudEvent.
pub async fn put_samples(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(who): Extension<Principal>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    checked_id(&id)?;
    let SamplesBody { samples } = parse_json(&body)?;
    let max = state.settings.samples_max_per_rule;
    if samples.len() > max {
        return Err(ApiError::bad_request(
            "samples",
            format!("at most {max} samples per rule (samples_max_per_rule)"),
        ));
    }
    for (i, sample) in samples.iter().enumerate() {
        if sample.name.trim().is_empty() || sample.name.len() > 100 {
            return Err(ApiError::bad_request(
                &format!("samples[{i}].name"),
                "1 to 100 bytes",
            ));
        }
        CloudEvent::from_value(sample.event.clone())
            .map_err(|e| ApiError::event(&format!("samples[{i}].event."), e))?;
    }
    let before = samples_value(&state, &id).await;
    let body = serde_json::to_vec(&samples).map_err(unavailable)?;
    state
        .samples
        .put(&id, body.into())
        .await
        .map_err(unavailable)?;
    let after = to_json(&samples)?;
    audit::record(&state.js, &who, "rule.samples", &id, before, after.clone()).await;
    Ok(Json(json!({ "samples": after })))
}

async fn samples_value(state: &AppState, id: &str) -> Value {
    match state.samples.get(id).await {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

pub async fn stats(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let s = &state.settings;
    let mut rules = serde_json::Map::new();
    let mut plugins = serde_json::Map::new();
    let mut webhooks = serde_json::Map::new();
    let mut email = serde_json::Map::new();
    let counted = crate::stats::cluster_wide(&state.stats, &state.cluster.id)
        .await
        .map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
    for (key, counts) in counted {
        let mut value = serde_json::to_value(&counts)
            .map_err(|e| ApiError::internal(format!("stats of {key}: {e}")))?;
        if let Some(ms) = counts.last_fired_ms {
            value["last_fired"] = json!(nudge_rules::calendar::rfc3339(ms));
        }
        if let Some(map) = value.as_object_mut() {
            // The buckets are for adding up instances; the API answers what they give.
            map.remove("call_buckets");
            map.insert("call_p99_ms".into(), json!(counts.call_p99_ms()));
        }
        if let Some(name) = key.strip_prefix("plugin:") {
            plugins.insert(name.to_owned(), value);
        } else if let Some(name) = key.strip_prefix("webhook:") {
            webhooks.insert(name.to_owned(), value);
        } else if let Some(relay) = key.strip_prefix("email:") {
            email.insert(relay.to_owned(), value);
        } else {
            rules.insert(key, value);
        }
    }
    // The budget every plugin call runs under, beside what calls used.
    let budget = json!({
        "deadline_ms": s.plugin_deadline_ms,
        "max_memory_bytes": s.plugin_max_memory_bytes,
        "fuel": s.plugin_fuel,
        "max_output_bytes": s.plugin_max_output_bytes,
    });
    Ok(Json(
        json!({ "rules": rules, "plugins": plugins, "webhooks": webhooks, "email": email, "plugin_budget": budget }),
    ))
}
