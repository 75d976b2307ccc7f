//! Publishing rule changes, and four-eyes review: with `review_required`, a marketer's change
//! (save, restore, enable/disable) is kept in KV `NUDGE_DRAFTS` until a developer or admin
//! other than its author approves it; the audit log records the submission and the verdict.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use futures::StreamExt;
use nudge_rules::{CompiledRule, Rule, RuleSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::to_json;
use super::{ApiError, AppState};
use crate::access::{Principal, Role, audit};
use crate::rulestore::{StoreError, now_rfc3339};

/// Drafts `GET /api/drafts` lists at most.
const DRAFTS_MAX: usize = 1_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Draft {
    pub rule_id: String,
    pub rule: RuleSpec,
    /// The version the change was made on (approval answers 409 if another landed since).
    pub base_version: Option<u64>,
    /// `rule.put`, `rule.restore` or `rule.enable`.
    pub action: String,
    pub author: String,
    pub created_at: String,
}

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(error.to_string())
}

fn needs_review(state: &AppState, who: &Principal) -> bool {
    state.settings.review_required && !who.role.allows(Role::Developer)
}

async fn current(state: &AppState, id: &str) -> Result<Option<Rule>, ApiError> {
    match state.store.get(id).await {
        Ok(rule) => Ok(Some(rule)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Saves a change as a new version — or, for a marketer in four-eyes mode, as a draft (202).
pub async fn change_rule(
    state: &AppState,
    who: &Principal,
    id: &str,
    spec: RuleSpec,
    base_version: Option<u64>,
    action: &str,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let before = current(state, id).await?;
    // Reviewers see only drafts that compile; strict mode refuses reads the schemas lack.
    let rules = state.rules.load();
    let compiled =
        CompiledRule::compile(rules.sandbox(), Rule::unsaved(id, spec.clone(), &who.name))?;
    let warnings = json!(super::rules::read_check(state, &compiled)?.warnings);
    if needs_review(state, who) {
        let draft = Draft {
            rule_id: id.to_owned(),
            rule: spec,
            base_version: base_version.or(before.as_ref().map(|r| r.version)),
            action: action.to_owned(),
            author: who.name.clone(),
            created_at: now_rfc3339(),
        };
        let body = serde_json::to_vec(&draft).map_err(unavailable)?;
        state
            .drafts
            .put(id, body.into())
            .await
            .map_err(unavailable)?;
        audit::record(
            &state.js,
            who,
            "draft.submit",
            id,
            to_json(&before)?,
            to_json(&draft)?,
        )
        .await;
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "draft": draft, "review_required": true, "warnings": warnings })),
        ));
    }
    let rule = state.store.put(id, spec, &who.name, base_version).await?;
    crate::rulesync::wait_live(&state.rules, id, Some(rule.version)).await;
    audit::record(
        &state.js,
        who,
        action,
        id,
        to_json(&before)?,
        to_json(&rule)?,
    )
    .await;
    let status = if rule.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut answer = to_json(&rule)?;
    answer["warnings"] = warnings;
    Ok((status, Json(answer)))
}

async fn load_draft(state: &AppState, id: &str) -> Result<Option<Draft>, ApiError> {
    let Some(bytes) = state.drafts.get(id).await.map_err(unavailable)? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&bytes).ok())
}

fn no_draft(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        Some("id"),
        format!("rule `{id}` has no change waiting for review"),
    )
}

pub async fn get_draft(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Draft>, ApiError> {
    load_draft(&state, &id)
        .await?
        .map(Json)
        .ok_or_else(|| no_draft(&id))
}

pub async fn list_drafts(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let mut keys = state.drafts.keys().await.map_err(unavailable)?;
    let mut drafts = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(unavailable)?;
        if let Some(draft) = load_draft(&state, &key).await? {
            drafts.push(draft);
        }
        if drafts.len() >= DRAFTS_MAX {
            break;
        }
    }
    drafts.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    Ok(Json(json!({ "drafts": drafts })))
}

pub async fn approve(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Rule>, ApiError> {
    let draft = load_draft(&state, &id)
        .await?
        .ok_or_else(|| no_draft(&id))?;
    if draft.author == who.name {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            Some("author"),
            format!(
                "`{}` wrote this change; another user must approve it",
                who.name
            ),
        ));
    }
    let before = current(&state, &id).await?;
    // The schemas may have changed since the draft was checked: strict mode checks it again.
    let compiled = CompiledRule::compile(
        state.rules.load().sandbox(),
        Rule::unsaved(&id, draft.rule.clone(), &who.name),
    )?;
    super::rules::read_check(&state, &compiled)?;
    let updated_by = format!("{} (approved by {})", draft.author, who.name);
    let rule = state
        .store
        .put(&id, draft.rule.clone(), &updated_by, draft.base_version)
        .await?;
    state.drafts.purge(&id).await.map_err(unavailable)?;
    audit::record(
        &state.js,
        &who,
        "draft.approve",
        &id,
        to_json(&before)?,
        json!({ "draft": draft, "rule": rule }),
    )
    .await;
    Ok(Json(rule))
}

pub async fn reject(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let draft = load_draft(&state, &id)
        .await?
        .ok_or_else(|| no_draft(&id))?;
    state.drafts.purge(&id).await.map_err(unavailable)?;
    let action = if draft.author == who.name {
        "draft.withdraw"
    } else {
        "draft.reject"
    };
    audit::record(&state.js, &who, action, &id, to_json(&draft)?, Value::Null).await;
    Ok(StatusCode::NO_CONTENT)
}
