//! Who is calling and may they: a bearer token (the bootstrap `NUDGE_ADMIN_TOKEN` or an API
//! token) or a browser session cookie, then the route's role from [`super::routes`], then — for
//! a session changing state — the CSRF token in `X-CSRF-Token`. No valid credential answers
//! 401, a role that does not reach the route's or a missing CSRF token 403. Ingest takes a
//! Segment write key (HTTP Basic user name, or `writeKey` in the body) or a bearer token of
//! role developer or above.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tower_sessions::Session;

use super::routes;
use super::{ApiError, AppState};
use crate::access::sessions::SessionAuth;
use crate::access::{Principal, Role, Via};

pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session is written back (extending its idle timeout) and its user re-read at most this
/// often (or every half idle timeout, if that is shorter).
const SESSION_TOUCH_MS: i64 = 60_000;

fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, Some("Authorization"), message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        "Bearer".parse().expect("static header"),
    );
    response
}

fn forbidden(field: &str, message: String) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, Some(field), message).into_response()
}

/// Compares digests so the time taken does not tell how much of a secret matched.
fn same_secret(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn basic_user(headers: &HeaderMap) -> Option<String> {
    let encoded = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(
        text.split_once(':')
            .map_or(text.as_str(), |(user, _)| user)
            .to_owned(),
    )
}

/// The principal a bearer token stands for; `Err` is the 401 to answer.
async fn from_bearer(state: &AppState, token: &str) -> Result<Principal, Response> {
    if let Some(expected) = &state.settings.admin_token
        && same_secret(token, expected)
    {
        return Ok(Principal {
            name: "admin".into(),
            role: Role::Admin,
            via: Via::Bootstrap,
        });
    }
    match state.access.tokens.authenticate(token).await {
        Ok(Some(api)) => Ok(Principal {
            name: format!("token:{}", api.name),
            role: api.role,
            via: Via::Token(api.id),
        }),
        Ok(None) => Err(unauthorized(
            "the bearer token is not valid (unknown, mistyped or revoked)",
        )),
        Err(error) => Err(ApiError::unavailable(error.to_string()).into_response()),
    }
}

/// The signed-in session's user, if the session is still within its timeouts.
async fn from_session(
    state: &AppState,
    session: &Session,
) -> Result<Option<SessionAuth>, ApiError> {
    let auth: Option<SessionAuth> = session
        .get(SessionAuth::KEY)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let Some(mut auth) = auth else {
        return Ok(None);
    };
    let now_ms = state.clock.now_ms();
    let idle_ms = state.settings.session_idle_timeout_s as i64 * 1_000;
    let max_ms = state.settings.session_max_age_s as i64 * 1_000;
    if now_ms - auth.seen_ms > idle_ms || now_ms - auth.created_ms > max_ms {
        session.flush().await.ok();
        return Ok(None);
    }
    if now_ms - auth.seen_ms > SESSION_TOUCH_MS.min(idle_ms / 2) {
        // Once a minute the account is read again: a removed user is signed out, a changed
        // role applies.
        let user = state
            .access
            .users
            .get(&auth.username)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        let Some(user) = user else {
            session.flush().await.ok();
            return Ok(None);
        };
        auth.role = user.role;
        auth.seen_ms = now_ms;
        session
            .insert(SessionAuth::KEY, &auth)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
    }
    Ok(Some(auth))
}

/// Whether the request carries the session's CSRF token (compared in constant time).
pub fn sends_csrf(headers: &HeaderMap, auth: &SessionAuth) -> bool {
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    same_secret(sent, &auth.csrf)
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Authenticates and authorizes every `/api` request against its route's policy.
pub async fn authorize(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let Some(policy) = routes::policy(request.method().as_str(), &path) else {
        tracing::error!(method = %request.method(), path, "route without an access policy");
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "this route has no access policy",
        )
        .into_response();
    };
    let Some(required) = policy.role else {
        return next.run(request).await;
    };
    let principal = if let Some(token) = bearer(request.headers()) {
        match from_bearer(&state, token).await {
            Ok(principal) => principal,
            Err(response) => return response,
        }
    } else {
        let Some(session) = request.extensions().get::<Session>().cloned() else {
            return unauthorized("send `Authorization: Bearer <token>` or sign in at /login");
        };
        let auth = match from_session(&state, &session).await {
            Ok(Some(auth)) => auth,
            Ok(None) => {
                return unauthorized(
                    "send `Authorization: Bearer <token>` or sign in at /login (no session, or it expired)",
                );
            }
            Err(error) => return error.into_response(),
        };
        if changes_state(request.method()) && !sends_csrf(request.headers(), &auth) {
            return forbidden(
                "X-CSRF-Token",
                "a browser session must send its CSRF token (GET /api/session) in X-CSRF-Token to change anything".into(),
            );
        }
        Principal {
            name: auth.username,
            role: auth.role,
            via: Via::Session,
        }
    };
    if !principal.role.allows(required) {
        return forbidden(
            "role",
            format!(
                "{} {} needs role `{}` or above; `{}` has `{}`",
                policy.method,
                policy.path,
                required.as_str(),
                principal.name,
                principal.role.as_str()
            ),
        );
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// Bearer tokens of this role or above may ingest events.
const INGEST_ROLE: Role = Role::Developer;

pub async fn require_ingest(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = bearer(request.headers()) {
        return match from_bearer(&state, token).await {
            Ok(p) if p.role.allows(INGEST_ROLE) => next.run(request).await,
            Ok(p) => forbidden(
                "role",
                format!(
                    "ingest needs a write key or a token of role `{}` or above; this token has `{}`",
                    INGEST_ROLE.as_str(),
                    p.role.as_str()
                ),
            ),
            Err(response) => response,
        };
    }
    if let Some(user) = basic_user(request.headers()) {
        return match write_key_refusal(&state, &user) {
            None => next.run(request).await,
            Some(refusal) => refusal,
        };
    }
    if request.headers().contains_key(header::AUTHORIZATION) {
        return unauthorized("send the write key as the HTTP Basic user name, or a bearer token");
    }
    // Segment clients that cannot set headers put the write key in the JSON body.
    let (parts, body) = request.into_parts();
    let bytes = match to_bytes(body, state.settings.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("body"),
                format!(
                    "the body exceeds {} bytes (max_body_bytes)",
                    state.settings.max_body_bytes
                ),
            )
            .into_response();
        }
    };
    let body_key = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.get("writeKey")
                .and_then(|k| k.as_str())
                .map(str::to_owned)
        });
    match body_key.map(|key| write_key_refusal(&state, &key)) {
        Some(None) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Some(Some(refusal)) => refusal,
        None => unauthorized("send the write key as the HTTP Basic user name, or a bearer token"),
    }
}

/// Accepts a write key (the `write_key` setting's or a named one) and spends one request of its
/// rate limit (`None`); or the refusal, naming the key.
fn write_key_refusal(state: &AppState, presented: &str) -> Option<Response> {
    use crate::access::write_keys::Refusal;
    let now_ms = state.clock.now_ms();
    match state.access.write_keys.authenticate(presented, now_ms) {
        Ok(()) => None,
        Err(Refusal::Unknown) => Some(unauthorized("the write key is not valid")),
        Err(Refusal::Revoked { name }) => {
            Some(unauthorized(&format!("the write key `{name}` is revoked")))
        }
        Err(Refusal::Rotated { name }) => Some(unauthorized(&format!(
            "this secret of the write key `{name}` was rotated and its grace period is over: \
             use the new one"
        ))),
        Err(Refusal::RateLimited {
            name,
            retry_after_ms,
        }) => {
            crate::telemetry::ingest_rate_limited(&name);
            let retry_after_s = retry_after_ms.div_ceil(1_000).max(1);
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                Some("write_key"),
                format!(
                    "the write key `{name}` is over its rate limit (rate_per_s and burst of the \
                     key; write_key_rate_per_s for the write_key setting's): retry in \
                     {retry_after_ms} ms"
                ),
            )
            .into_response();
            if let Ok(value) = header::HeaderValue::from_str(&retry_after_s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            Some(response)
        }
    }
}
