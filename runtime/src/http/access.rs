//! Signing in and out (`/login`, `/logout`), `GET /api/session`, and the admin's users, API
//! tokens and audit log.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use tower_sessions::Session;

use super::error::{Body, parse_json, to_json};
use super::{ApiError, AppState};
use crate::access::sessions::SessionAuth;
use crate::access::users::AccessError;
use crate::access::{Principal, Role, audit, random_secret};

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> Self {
        match &error {
            AccessError::Invalid { field, message } => {
                ApiError::bad_request(field, message.clone())
            }
            AccessError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, Some("username"), m),
            AccessError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, Some("id"), m),
            AccessError::Nats(m) => ApiError::unavailable(m.clone()),
        }
    }
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// Only same-site paths: `/rules`, never `//evil.example` or `https://…`.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// `POST /login` from the sign-in form (redirects) or as JSON (answers the session).
pub async fn login(
    State(state): State<Arc<AppState>>,
    session: Session,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let form = is_form(&headers);
    let credentials: Result<Credentials, ApiError> = if form {
        serde_urlencoded::from_bytes(&body)
            .map_err(|e| ApiError::bad_request("body", e.to_string()))
    } else {
        parse_json(&body)
    };
    let credentials = match credentials {
        Ok(c) => c,
        Err(error) if form => {
            tracing::debug!(message = %error.message, "unreadable sign-in form");
            return Redirect::to("/login?error=missing").into_response();
        }
        Err(error) => return error.into_response(),
    };
    if !state
        .access
        .login_throttle
        .allow(&credentials.username, state.clock.now_ms())
    {
        tracing::warn!(username = %credentials.username, "sign-in attempts throttled");
        if form {
            return Redirect::to("/login?error=throttled").into_response();
        }
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            Some("username"),
            format!(
                "more than {} sign-in attempts for this user in a minute (login_attempts_per_minute): wait and retry",
                state.settings.login_attempts_per_minute
            ),
        )
        .into_response();
    }
    let user = match state
        .access
        .users
        .verify(&credentials.username, &credentials.password)
        .await
    {
        Ok(user) => user,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let Some(user) = user else {
        tracing::info!(username = %credentials.username, "sign-in refused");
        if form {
            return Redirect::to("/login?error=invalid").into_response();
        }
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            Some("password"),
            "unknown user name or wrong password",
        )
        .into_response();
    };
    let now_ms = state.clock.now_ms();
    let auth = SessionAuth {
        username: user.username.clone(),
        role: user.role,
        csrf: random_secret(),
        created_ms: now_ms,
        seen_ms: now_ms,
    };
    // A fresh id at sign-in, so a session id planted before cannot be ridden afterwards.
    let stored = async {
        session.cycle_id().await?;
        session.insert(SessionAuth::KEY, &auth).await
    }
    .await;
    if let Err(error) = stored {
        return ApiError::unavailable(error.to_string()).into_response();
    }
    let principal = Principal {
        name: user.username.clone(),
        role: user.role,
        via: crate::access::Via::Session,
    };
    audit::record(
        &state.js,
        &principal,
        "session.login",
        &user.username,
        Value::Null,
        Value::Null,
    )
    .await;
    if form {
        return Redirect::to(safe_next(credentials.next.as_deref())).into_response();
    }
    Json(session_view(&state, &auth)).into_response()
}

fn session_view(state: &AppState, auth: &SessionAuth) -> Value {
    let mut view = json!({
        "username": auth.username,
        "role": auth.role,
        "csrf": auth.csrf,
        "via": "session",
    });
    add_deployment_facts(state, &mut view);
    view
}

/// What the UI needs to know of this deployment besides who is signed in: whether rule changes
/// need review, the action channels (the core's table, so no page keeps its own list) and the
/// kinds of dead letters.
fn add_deployment_facts(state: &AppState, view: &mut Value) {
    view["review_required"] = json!(state.settings.review_required);
    view["channels"] = json!(nudge_rules::Channel::ALL.map(nudge_rules::Channel::as_str));
    view["dead_letter_kinds"] = json!(crate::pipeline::dlq::KINDS);
}

/// `POST /logout`: ends the session (needs its CSRF token, like every state change).
pub async fn logout(
    State(state): State<Arc<AppState>>,
    session: Session,
    headers: HeaderMap,
) -> Response {
    let auth: Option<SessionAuth> = session.get(SessionAuth::KEY).await.ok().flatten();
    let Some(auth) = auth else {
        return StatusCode::NO_CONTENT.into_response();
    };
    if !super::auth::sends_csrf(&headers, &auth) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            Some("X-CSRF-Token"),
            "signing out needs the session's CSRF token in X-CSRF-Token",
        )
        .into_response();
    }
    if let Err(error) = session.flush().await {
        return ApiError::unavailable(error.to_string()).into_response();
    }
    let principal = Principal {
        name: auth.username.clone(),
        role: auth.role,
        via: crate::access::Via::Session,
    };
    audit::record(
        &state.js,
        &principal,
        "session.logout",
        &auth.username,
        Value::Null,
        Value::Null,
    )
    .await;
    StatusCode::NO_CONTENT.into_response()
}

pub async fn session(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    session: Session,
) -> Json<Value> {
    if principal.via == crate::access::Via::Session
        && let Ok(Some(auth)) = session.get::<SessionAuth>(SessionAuth::KEY).await
    {
        return Json(session_view(&state, &auth));
    }
    let mut view = json!({
        "username": principal.name,
        "role": principal.role,
        "via": crate::access::audit::via_label(&principal),
    });
    add_deployment_facts(&state, &mut view);
    Json(view)
}

fn parse_role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text)
        .ok_or_else(|| ApiError::bad_request("role", "one of viewer, marketer, developer, admin"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
    role: String,
}

pub async fn create_user(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new: NewUser = parse_json(&body)?;
    let role = parse_role(&new.role)?;
    let user = state
        .access
        .users
        .create(&new.username, &new.password, role, &principal.name)
        .await?;
    let after = to_json(user.public())?;
    audit::record(
        &state.js,
        &principal,
        "user.create",
        &user.username,
        Value::Null,
        after.clone(),
    )
    .await;
    Ok((StatusCode::CREATED, Json(after)))
}

pub async fn delete_user(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(username): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if username == principal.name {
        return Err(ApiError::bad_request(
            "username",
            "you cannot remove your own account (another admin can)",
        ));
    }
    let removed = state.access.users.delete(&username).await?;
    let before = to_json(&removed)?;
    audit::record(
        &state.js,
        &principal,
        "user.delete",
        &username,
        before,
        Value::Null,
    )
    .await;
    Ok(Json(json!({ "username": username, "deleted": true })))
}

pub async fn list_users(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let users = state.access.users.list().await?;
    Ok(Json(json!({ "users": users })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: String,
}

pub async fn create_token(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new: NewToken = parse_json(&body)?;
    let role = parse_role(&new.role)?;
    let (record, secret) = state
        .access
        .tokens
        .create(&new.name, role, &principal.name)
        .await?;
    let after = to_json(&record)?;
    audit::record(
        &state.js,
        &principal,
        "token.create",
        &record.id,
        Value::Null,
        after.clone(),
    )
    .await;
    let mut answer = after;
    answer["token"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(answer)))
}

pub async fn list_tokens(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let tokens = state.access.tokens.list().await?;
    Ok(Json(json!({ "tokens": tokens })))
}

pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (before, after) = state.access.tokens.revoke(&id, &principal.name).await?;
    let (before, after) = (to_json(before)?, to_json(after)?);
    audit::record(
        &state.js,
        &principal,
        "token.revoke",
        &id,
        before,
        after.clone(),
    )
    .await;
    Ok(Json(after))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<usize>,
    before: Option<u64>,
}

pub async fn audit_log(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let entries = audit::list(&state.js, query.limit.unwrap_or(100), query.before)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(json!({ "entries": entries })))
}
