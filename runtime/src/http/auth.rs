//! Who may call what: the admin bearer token for `/api`, a Segment-style write key (HTTP Basic
//! user name, or `writeKey` in the body as some Segment libraries send it) or the admin token for
//! ingest. A missing or wrong credential answers 401.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};

/// The caller, as recorded in `updated_by`.
#[derive(Clone, Debug)]
pub struct Actor(pub String);

fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, Some("Authorization"), message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        "Bearer".parse().expect("static header"),
    );
    response
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

fn is_admin(state: &AppState, headers: &HeaderMap) -> bool {
    match (&state.settings.admin_token, bearer(headers)) {
        (Some(expected), Some(given)) => same_secret(given, expected),
        _ => false,
    }
}

pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    if state.settings.admin_token.is_none() {
        return unauthorized("no admin token is configured (set NUDGE_ADMIN_TOKEN)");
    }
    if bearer(request.headers()).is_none() {
        return unauthorized("send `Authorization: Bearer <token>`");
    }
    if !is_admin(&state, request.headers()) {
        return unauthorized("the bearer token is not valid");
    }
    request.extensions_mut().insert(Actor("admin".into()));
    next.run(request).await
}

pub async fn require_ingest(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if is_admin(&state, request.headers()) {
        return next.run(request).await;
    }
    let Some(expected) = &state.settings.write_key else {
        return unauthorized(
            "send the admin bearer token (no write key is configured: set NUDGE_WRITE_KEY)",
        );
    };
    if let Some(user) = basic_user(request.headers()) {
        if same_secret(&user, expected) {
            return next.run(request).await;
        }
        return unauthorized("the write key is not valid");
    }
    if request.headers().contains_key(header::AUTHORIZATION) {
        return unauthorized("the bearer token is not valid");
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
    match body_key {
        Some(key) if same_secret(&key, expected) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Some(_) => unauthorized("the write key is not valid"),
        None => unauthorized("send the write key as the HTTP Basic user name, or a bearer token"),
    }
}
