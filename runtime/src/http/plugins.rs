//! `/api/plugins`: upload (validated before it is stored), read, reconfigure, disable, delete,
//! list versions, and dry-run a plugin against an event or a rule-style input.

use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::{Extension, Json};
use bytes::Bytes;
use nudge_rules::{CloudEvent, Profile};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::{Body, parse_json, to_json};
use super::rules::VersionsQuery;
use super::{ApiError, AppState};
use crate::access::{Principal, audit};
use crate::plugin::dispatch::{to_actions, wit_event, wit_profile};
use crate::plugin::manifest::{Manifest, PluginRecord, parse_manifest};
use crate::plugin::set::LoadedPlugin;
use crate::plugin::store::PluginWrite;
use crate::rulestore::now_rfc3339;

const MAX_VERSIONS_LISTED: u64 = 1_000;
/// Room for the manifest and multipart framing beside the code.
const UPLOAD_OVERHEAD_BYTES: usize = 128 * 1024;

pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<PluginRecord>>, ApiError> {
    Ok(Json(state.plugins.list().await?))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<PluginRecord>, ApiError> {
    Ok(Json(state.plugins.get(&name).await?))
}

#[derive(Deserialize)]
pub struct WriteQuery {
    /// The version this write is based on: 409 if someone wrote in between.
    version: Option<u64>,
}

/// `PUT /api/plugins/{name}`: the body is the `.wasm` itself (`application/wasm`), or
/// `multipart/form-data` with a `wasm` file and an optional `manifest` part (JSON or TOML).
pub async fn put(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<WriteQuery>,
    Extension(who): Extension<Principal>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let limit = state.settings.plugin_max_wasm_bytes;
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let write = if is_multipart {
        read_multipart(request, limit).await?
    } else {
        let body = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| too_large(limit))?;
        PluginWrite {
            wasm: Some(body),
            manifest: None,
        }
    };
    if write.wasm.as_ref().is_some_and(Bytes::is_empty) {
        return Err(ApiError::bad_request(
            "wasm",
            "the body is empty: send the .wasm bytes",
        ));
    }
    let warnings = match &write.manifest {
        Some(manifest) => read_check(&state, manifest)?,
        None => Value::Array(Vec::new()),
    };
    let before = state.plugins.get(&name).await.ok();
    let record = state
        .plugins
        .put(&name, write, &who.name, query.version)
        .await?;
    audit::record(
        &state.js,
        &who,
        "plugin.put",
        &name,
        to_json(&before)?,
        to_json(&record)?,
    )
    .await;
    let status = if record.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut answer = to_json(&record)?;
    answer["warnings"] = warnings;
    Ok((status, Json(answer)))
}

/// The manifest's `reads` checked against the schemas of its triggering types: the warnings,
/// or (with `strict_schemas`, for an enabled plugin) 422 naming the first read at fault.
fn read_check(state: &AppState, manifest: &Manifest) -> Result<Value, ApiError> {
    let patterns = manifest.validate()?;
    let schemas = state.schemas.load();
    let mut warnings = Vec::new();
    for (i, read) in manifest.data_reads()?.iter().enumerate() {
        let found = schemas
            .check_reads(std::slice::from_ref(read), &patterns)
            .warnings;
        if let Some(first) = found.first()
            && state.settings.strict_schemas
            && manifest.enabled
        {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(&format!("reads[{i}]")),
                format!("{} (strict_schemas)", first.message),
            )
            .with("warnings", to_json(&found)?));
        }
        warnings.extend(found);
    }
    to_json(warnings)
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        Some("wasm"),
        format!("the upload exceeds {limit} bytes (plugin_max_wasm_bytes)"),
    )
}

async fn read_multipart(request: Request, limit: usize) -> Result<PluginWrite, ApiError> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, limit + UPLOAD_OVERHEAD_BYTES)
        .await
        .map_err(|_| too_large(limit))?;
    let request = Request::from_parts(parts, axum::body::Body::from(body));
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::bad_request("body", e.body_text()))?;
    let mut write = PluginWrite {
        wasm: None,
        manifest: None,
    };
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request("body", e.body_text()))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().unwrap_or_default().to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| ApiError::bad_request(&name, e.body_text()))?;
        match name.as_str() {
            "wasm" if bytes.len() > limit => return Err(too_large(limit)),
            "wasm" => write.wasm = Some(bytes),
            "manifest" => {
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| ApiError::bad_request("manifest", "is not UTF-8"))?;
                let is_toml = file_name.ends_with(".toml") || !text.trim_start().starts_with('{');
                write.manifest = Some(parse_manifest(text, is_toml)?);
            }
            other => {
                return Err(ApiError::bad_request(
                    other,
                    "unknown part: send `wasm` and optionally `manifest`",
                ));
            }
        }
    }
    Ok(write)
}

/// `PATCH /api/plugins/{name}`: changes manifest fields (`enabled`, `triggers`, `reads`,
/// `config`, `description`, `goal`, `holdout`) and keeps the code; a new version.
pub async fn patch(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<WriteQuery>,
    Extension(who): Extension<Principal>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let changes: Map<String, Value> = parse_json(&body)?;
    let current = state.plugins.get(&name).await?;
    let mut manifest = to_json(&current.manifest)?;
    for (field, value) in changes {
        manifest[field] = value;
    }
    let manifest: Manifest = parse_json(manifest.to_string().as_bytes())?;
    let warnings = read_check(&state, &manifest)?;
    let write = PluginWrite {
        wasm: None,
        manifest: Some(manifest),
    };
    let expected = query.version.or(Some(current.version));
    let record = state.plugins.put(&name, write, &who.name, expected).await?;
    audit::record(
        &state.js,
        &who,
        "plugin.patch",
        &name,
        to_json(&current)?,
        to_json(&record)?,
    )
    .await;
    let mut answer = to_json(&record)?;
    answer["warnings"] = warnings;
    Ok(Json(answer))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let before = state.plugins.get(&name).await?;
    let record = state.plugins.delete(&name, &who.name).await?;
    audit::record(
        &state.js,
        &who,
        "plugin.delete",
        &name,
        to_json(&before)?,
        Value::Null,
    )
    .await;
    Ok(Json(
        json!({ "name": record.name, "deleted": true, "version": record.version }),
    ))
}

pub async fn versions(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<VersionsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit_or(100, MAX_VERSIONS_LISTED);
    let heads = state.plugins.versions(&name, limit).await?;
    Ok(Json(to_json(heads)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    #[serde(default)]
    event: Option<Value>,
    #[serde(default)]
    profile: Option<Profile>,
    /// Run the `call` export with this input instead of `handle` with an event.
    #[serde(default)]
    input: Option<Value>,
}

/// Dry run of the stored plugin: `handle` on an event (the actions as the CloudEvents that would
/// be published) or `call` on an input; with the call's wall time, fuel and peak memory. Publishes
/// nothing.
pub async fn test(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let raw: Value = parse_json(&body)?;
    let body: TestBody = if raw.get("specversion").is_some() {
        TestBody {
            event: Some(raw),
            profile: None,
            input: None,
        }
    } else {
        parse_json(&body)?
    };
    let record = state.plugins.get(&name).await?;
    let wasm = state.plugins.code(&record.sha256).await?;
    let host = state.plugins.host().clone();
    let code = tokio::task::spawn_blocking(move || host.compile(&wasm))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .map_err(|reason| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, Some("wasm"), reason))?;
    let plugin = LoadedPlugin::new(record, code);
    let host = state.plugins.host().clone();
    let label = plugin.origin.label().to_owned();
    if let Some(input) = body.input {
        let (result, report) =
            tokio::task::spawn_blocking(move || host.call(&plugin.instances, &input.to_string()))
                .await
                .map_err(|e| ApiError::unavailable(e.to_string()))?;
        let (output, failure) = split(
            result.map(|json| serde_json::from_str::<Value>(&json).unwrap_or(Value::String(json))),
        );
        return Ok(Json(json!({
            "plugin": label, "output": output, "failure": failure, "report": report,
        })));
    }
    let Some(event) = body.event else {
        return Err(ApiError::bad_request(
            "event",
            "send an event (or an input for the call export)",
        ));
    };
    let event = CloudEvent::from_value(event).map_err(|e| ApiError::event("event.", e))?;
    let profile = body.profile.unwrap_or_else(|| Profile::new(&event.subject));
    let (result, report, event) = tokio::task::spawn_blocking(move || {
        let (result, report) = host.handle(
            &plugin.instances,
            &wit_event(&event),
            &wit_profile(&profile),
        );
        (
            result.and_then(|actions| to_actions(&plugin, actions)),
            report,
            event,
        )
    })
    .await
    .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let time = now_rfc3339();
    let (actions, failure) = split(result.map(|actions| {
        actions
            .iter()
            .map(|a| a.to_cloudevent(&event, &time))
            .collect::<Vec<_>>()
    }));
    Ok(Json(json!({
        "plugin": label,
        "actions": actions.unwrap_or_default(),
        "failure": failure,
        "report": report,
    })))
}

fn split<T>(
    result: Result<T, crate::plugin::PluginFailure>,
) -> (Option<T>, Option<crate::plugin::PluginFailure>) {
    match result {
        Ok(value) => (Some(value), None),
        Err(failure) => (None, Some(failure)),
    }
}
