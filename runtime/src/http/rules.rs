//! `/api/rules`: read, write (each write a new immutable version, see [`super::review`]),
//! enable/disable, delete, list versions, restore, compile-check and dry-run a rule or a draft
//! against an event.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use nudge_rules::decide::dry_run;
use nudge_rules::schema::{ReadCheck, data_reads};
use nudge_rules::{CloudEvent, CompiledRule, Decider, Profile, Rule, RuleSpec};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{Body, parse_json, to_json};
use super::review::change_rule;
use super::{ApiError, AppState};
use crate::access::{Principal, Role, audit};

const MAX_VERSIONS_LISTED: u64 = 1_000;

pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<Rule>>, ApiError> {
    Ok(Json(state.store.list().await?))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Rule>, ApiError> {
    Ok(Json(state.store.get(&id).await?))
}

/// Metadata a client may send back unchanged after a GET; `version`, when present, is the
/// version the edit was based on (optimistic concurrency: 409 if someone saved in between).
fn split_metadata(id: &str, body: &mut Value) -> Result<Option<u64>, ApiError> {
    let Value::Object(fields) = body else {
        return Err(ApiError::bad_request("body", "a rule is a JSON object"));
    };
    if let Some(body_id) = fields.remove("id")
        && body_id.as_str() != Some(id)
    {
        return Err(ApiError::bad_request(
            "id",
            format!("does not match the id in the path ({id})"),
        ));
    }
    fields.remove("updated_by");
    fields.remove("updated_at");
    fields.remove("deleted");
    match fields.remove("version") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("version", "must be a whole number")),
    }
}

pub async fn put(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(who): Extension<Principal>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut value: Value = parse_json(&body)?;
    let expected_version = split_metadata(&id, &mut value)?;
    let spec: RuleSpec = parse_json(value.to_string().as_bytes())?;
    change_rule(&state, &who, &id, spec, expected_version, "rule.put").await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    enabled: bool,
    /// The version the switch was flipped on (409 if another landed since).
    #[serde(default)]
    version: Option<u64>,
}

/// `PATCH /api/rules/{id}` `{"enabled": bool}`: the on/off switch, as a new version (every
/// instance follows the rules bucket, so it acts within a second everywhere).
pub async fn patch(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(who): Extension<Principal>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let PatchBody { enabled, version } = parse_json(&body)?;
    let rule = state.store.get(&id).await?;
    let mut spec = rule.spec;
    spec.enabled = enabled;
    let base = version.or(Some(rule.version));
    change_rule(&state, &who, &id, spec, base, "rule.enable").await
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    if state.settings.review_required && !who.role.allows(Role::Developer) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            Some("role"),
            "in four-eyes mode (review_required) deleting a rule needs a developer or admin",
        ));
    }
    let before = state.store.get(&id).await?;
    let rule = state.store.delete(&id, &who.name).await?;
    crate::rulesync::wait_live(&state.rules, &id, None).await;
    audit::record(
        &state.js,
        &who,
        "rule.delete",
        &id,
        to_json(&before)?,
        Value::Null,
    )
    .await;
    Ok(Json(
        json!({ "id": rule.id, "deleted": true, "version": rule.version }),
    ))
}

#[derive(Deserialize)]
pub struct VersionsQuery {
    pub limit: Option<u64>,
}

impl VersionsQuery {
    /// The versions to list: `limit`, else `default`, at most `max`.
    pub fn limit_or(&self, default: u64, max: u64) -> u64 {
        self.limit.unwrap_or(default).clamp(1, max)
    }
}

pub async fn versions(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<VersionsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit_or(100, MAX_VERSIONS_LISTED);
    let heads = state.store.versions(&id, limit).await?;
    Ok(Json(to_json(heads)?))
}

pub async fn version(
    State(state): State<Arc<AppState>>,
    Path((id, version)): Path<(String, u64)>,
) -> Result<Json<Value>, ApiError> {
    let head = state.store.version(&id, version).await?;
    Ok(Json(to_json(head)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    version: u64,
}

pub async fn restore(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(who): Extension<Principal>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let RestoreBody { version } = parse_json(&body)?;
    let old = state.store.version(&id, version).await?;
    change_rule(&state, &who, &id, old.record.spec, None, "rule.restore").await
}

/// Compiles a draft without saving and checks the `event.data` fields it reads against the
/// schemas of its triggering types: 200 `{"ok": true, "warnings", "fields"}`, or 422 with the
/// field, line and column (in strict mode, for the first warning too).
pub async fn check(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let mut value: Value = parse_json(&body)?;
    split_metadata(&id, &mut value)?;
    let spec: RuleSpec = parse_json(value.to_string().as_bytes())?;
    let rules = state.rules.load();
    let compiled = CompiledRule::compile(rules.sandbox(), Rule::unsaved(&id, spec, "draft"))?;
    let reads = read_check(&state, &compiled)?;
    Ok(Json(
        json!({ "ok": true, "warnings": reads.warnings, "fields": reads.fields }),
    ))
}

/// The rule's `event.data` reads checked against the schemas of its triggering types; with
/// `strict_schemas`, an enabled rule with a warning is refused (422 at the first one).
pub(super) fn read_check(state: &AppState, compiled: &CompiledRule) -> Result<ReadCheck, ApiError> {
    let reads = data_reads(compiled.ast());
    let check = state
        .schemas
        .load()
        .check_reads(&reads, compiled.patterns());
    match check.warnings.first() {
        Some(first) if state.settings.strict_schemas && compiled.rule.spec.enabled => {
            let mut error = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("script"),
                format!(
                    "line {}, column {}: {} (strict_schemas)",
                    first.line, first.column, first.message
                ),
            );
            error.line = Some(first.line);
            error.column = Some(first.column);
            Err(error.with("warnings", json!(check.warnings)))
        }
        _ => Ok(check),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    event: Value,
    #[serde(default)]
    profile: Option<Profile>,
    /// An unsaved draft to test instead of the stored rule.
    #[serde(default)]
    rule: Option<RuleSpec>,
}

/// Dry run: the actions the rule would fire for the event (as the CloudEvents that would be
/// published), its failures and `print` output. Publishes nothing.
pub async fn test(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let raw: Value = parse_json(&body)?;
    let body_is_the_event = raw.get("specversion").is_some();
    let body: TestBody = if body_is_the_event {
        TestBody {
            event: raw,
            profile: None,
            rule: None,
        }
    } else {
        parse_json(&body)?
    };
    let prefix = if body_is_the_event { "" } else { "event." };
    let event = CloudEvent::from_value(body.event).map_err(|e| ApiError::event(prefix, e))?;
    let profile = body.profile.unwrap_or_else(|| Profile::new(&event.subject));
    let rules = state.rules.load();
    let rule = match body.rule {
        Some(spec) => Rule::unsaved(&id, spec, "draft"),
        None => state.store.get(&id).await?,
    };
    let compiled = Arc::new(CompiledRule::compile(rules.sandbox(), rule)?);
    let triggered = compiled.triggers_on(&event.event_type);
    let now_ms = state.clock.now_ms();
    let (policy, limits) = (state.policy.clone(), state.settings.state_limits());
    // The rule may call plugins, which must not run on an async worker.
    let (sandbox, rule) = (rules.sandbox().clone(), compiled.clone());
    let decision = tokio::task::spawn_blocking(move || {
        let decider = Decider {
            sandbox: &sandbox,
            policy: &policy,
            limits: &limits,
        };
        dry_run(&decider, &rule, &event, profile, now_ms)
    })
    .await
    .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let actions: Vec<Value> = decision
        .publish
        .iter()
        .filter_map(|m| serde_json::from_str(&m.body).ok())
        .collect();
    Ok(Json(json!({
        "rule": format!("{}@v{}", compiled.rule.id, compiled.rule.version),
        "triggered": triggered,
        "actions": actions,
        "failures": decision.failures,
        "logs": decision.logs,
        "trace": decision.trace,
    })))
}
