//! Signed ingest: with `ingest_signing_secret` set, every `/v1` request must carry a Standard
//! Webhooks signature (`webhook-id`, `webhook-timestamp`, `webhook-signature` over
//! `id.timestamp.body`, the scheme nudge signs its own webhooks with), be no older or newer than
//! `ingest_signature_tolerance_s`, and use its id once: the id is recorded in
//! `NUDGE_INGEST_IDS` with compare-and-set, so a replay is refused by every instance.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};
use crate::delivery::signature::SigningKey;

fn refused(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, Some(field), message)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| {
            refused(
                name,
                "signed ingest: send webhook-id, webhook-timestamp and webhook-signature",
            )
        })
}

/// The layer on `/v1` (after the write key or token is checked).
pub async fn verify(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(key) = &state.ingest_signing_key else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let checked = async {
        let id = header(&parts.headers, "webhook-id")?;
        let timestamp = header(&parts.headers, "webhook-timestamp")?;
        let signature = header(&parts.headers, "webhook-signature")?;
        let timestamp_s: i64 = timestamp
            .parse()
            .map_err(|_| refused("webhook-timestamp", "must be Unix seconds"))?;
        let tolerance_s = state.settings.ingest_signature_tolerance_s;
        let now_s = state.clock.now_ms() / 1_000;
        if now_s.abs_diff(timestamp_s) > tolerance_s {
            return Err(refused(
                "webhook-timestamp",
                format!(
                    "{timestamp_s} is more than {tolerance_s} s from now ({now_s}): stale or \
                     from a wrong clock (ingest_signature_tolerance_s)"
                ),
            ));
        }
        let bytes = to_bytes(body, state.settings.max_body_bytes)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some("body"),
                    format!(
                        "the body exceeds {} bytes (max_body_bytes)",
                        state.settings.max_body_bytes
                    ),
                )
            })?;
        if !key.verifies(signature, id, timestamp_s, &bytes) {
            return Err(refused(
                "webhook-signature",
                "does not sign this id, timestamp and body with the ingest secret",
            ));
        }
        // Only a verified request spends its id, so nobody without the secret can burn one.
        let digest = hex::encode(Sha256::digest(id.as_bytes()));
        match state
            .ingest_ids
            .create(&digest, timestamp.to_owned().into())
            .await
        {
            Ok(_) => Ok(bytes),
            Err(error)
                if error.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists =>
            {
                Err(refused(
                    "webhook-id",
                    format!("`{id}` was used already: a replayed request"),
                ))
            }
            Err(error) => Err(ApiError::unavailable(format!(
                "recording the signed request's id: {error}"
            ))),
        }
    }
    .await;
    match checked {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(error) => error.into_response(),
    }
}

/// The ingest key of the settings, checked at start-up (`nudge config check` too).
pub fn signing_key(secret: Option<&str>) -> anyhow::Result<Option<SigningKey>> {
    secret
        .map(|secret| {
            SigningKey::parse(secret).map_err(|e| anyhow::anyhow!("ingest_signing_secret: {e}"))
        })
        .transpose()
}
