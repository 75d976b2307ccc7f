//! `/api/email-templates`: the templates `email(#{ to, template, … })` actions are rendered
//! from. Marketers write them (audited), viewers read them; every write is a new version, and a
//! preview renders unsaved text against sample variables or a real profile, so the editor can
//! show the e-mail as it will look.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::{Body, parse_json, to_json};
use super::rules::VersionsQuery;
use super::{ApiError, AppState};
use crate::access::{Principal, audit};
use crate::delivery::templates::{self, StoreError, TemplateError, TemplateSpec};

/// Versions one `GET …/versions` lists at most.
const MAX_VERSIONS_LISTED: u64 = 100;

impl From<TemplateError> for ApiError {
    fn from(error: TemplateError) -> Self {
        match error {
            TemplateError::Invalid { field, message } => ApiError::bad_request(&field, message),
            TemplateError::Syntax {
                field,
                line,
                message,
            } => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: format!("{field}, line {line}: {message}"),
                field: Some(field),
                line: Some(line),
                column: None,
                more: Map::new(),
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, Some("name"), error.to_string())
            }
            StoreError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, Some("version"), error.to_string())
            }
            StoreError::Invalid(template) => template.into(),
            StoreError::Nats(_) => ApiError::unavailable(error.to_string()),
        }
    }
}

pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let templates = state.templates.list().await?;
    Ok(Json(json!({ "templates": to_json(templates)? })))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(to_json(state.templates.get(&name).await?)?))
}

/// What `PUT` takes: the template, and the version it was edited from (409 when another
/// version landed since).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    subject: String,
    #[serde(default)]
    html: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    version: Option<u64>,
}

/// Creates (201) or changes (200) a template, as a new version.
pub async fn put(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let PutBody {
        subject,
        html,
        text,
        version,
    } = parse_json(&body)?;
    let spec = TemplateSpec {
        subject,
        html,
        text,
    };
    let before = match state.templates.get(&name).await {
        Ok(template) => Some(template),
        Err(StoreError::NotFound { .. }) => None,
        Err(error) => return Err(error.into()),
    };
    let template = state.templates.put(&name, spec, &who.name, version).await?;
    let after = to_json(&template)?;
    let (action, status) = match &before {
        Some(_) => ("email_template.update", StatusCode::OK),
        None => ("email_template.create", StatusCode::CREATED),
    };
    audit::record(
        &state.js,
        &who,
        action,
        &name,
        to_json(before)?,
        after.clone(),
    )
    .await;
    Ok((status, Json(after)))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let before = state.templates.get(&name).await?;
    let deleted = state.templates.delete(&name, &who.name).await?;
    audit::record(
        &state.js,
        &who,
        "email_template.delete",
        &name,
        to_json(before)?,
        Value::Null,
    )
    .await;
    Ok(Json(
        json!({ "name": name, "deleted": true, "version": deleted.version }),
    ))
}

pub async fn versions(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<VersionsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit_or(MAX_VERSIONS_LISTED, MAX_VERSIONS_LISTED);
    Ok(Json(to_json(
        state.templates.versions(&name, limit).await?,
    )?))
}

/// What a preview renders: the template as edited (else the stored one) with `variables` and
/// the profile `profile_id` (else a sample profile).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewBody {
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    html: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    variables: Map<String, Value>,
    #[serde(default)]
    profile_id: Option<String>,
}

/// `POST /api/email-templates/{name}/preview`: the e-mail as it would be sent, or the first
/// error with its part (`subject`, `html`, `text`) and line.
pub async fn preview(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let body: PreviewBody = parse_json(&body)?;
    let spec = match (body.subject, body.html, body.text) {
        (Some(subject), html, text) => TemplateSpec {
            subject,
            html: html.unwrap_or_default(),
            text: text.unwrap_or_default(),
        },
        (None, None, None) => state.templates.get(&name).await?.spec,
        _ => {
            return Err(ApiError::bad_request(
                "subject",
                "a preview of edited text needs the subject too",
            ));
        }
    };
    spec.validate(state.templates.limits())?;
    let profile = match &body.profile_id {
        Some(id) => state
            .profiles
            .load(id)
            .await
            .map_err(|e| ApiError::unavailable(format!("{e:#}")))?
            .map(|stored| stored.state.profile)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    Some("profile_id"),
                    format!("no event about profile `{id}` has been seen"),
                )
            })?,
        None => sample_profile(),
    };
    let mut action = body.variables;
    let to = action
        .get("to")
        .cloned()
        .or_else(|| profile.attributes.get("email").cloned())
        .unwrap_or_else(|| json!("someone@example.com"));
    action.insert("to".into(), to);
    action.insert("template".into(), json!(name));
    let unsubscribe_url = state
        .unsubscribe
        .url(nudge_rules::Channel::Email, &profile.id);
    let variables = templates::variables(action, &profile, &unsubscribe_url);
    let rendered = spec.render(&variables, state.templates.limits().render_fuel)?;
    let mut answer = to_json(rendered)?;
    answer["unsubscribe_url"] = json!(unsubscribe_url);
    Ok(Json(answer))
}

/// The profile a preview shows when it names none.
fn sample_profile() -> nudge_rules::Profile {
    let mut profile = nudge_rules::Profile::new("preview-profile");
    profile
        .attributes
        .insert("name".into(), json!("Ada Lovelace"));
    profile
        .attributes
        .insert("email".into(), json!("ada@example.com"));
    profile
}
