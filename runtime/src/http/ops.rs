//! Liveness, readiness, Prometheus metrics and the cluster's state.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;

use super::{ApiError, AppState};

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready once every stored rule is loaded and events are being consumed.
pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let ready = state.ready.load(Ordering::Acquire);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(serde_json::json!({ "ready": ready })))
}

/// How long a scrape waits for the dead-letter stream's size.
const DLQ_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    crate::telemetry::scraped(crate::telemetry::ScrapeFigures {
        ready: state.ready.load(Ordering::Acquire),
        partitions: state.cluster.partition_count(),
        dlq_events: dlq_events(&state).await,
    });
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([("content-type", "text/plain; version=0.0.4")], body)
}

/// Messages in `NUDGE_DLQ`, or `None` (logged) when the stream does not answer in time.
async fn dlq_events(state: &AppState) -> Option<u64> {
    let read = async {
        let mut stream = state.js.get_stream(crate::topology::DLQ_STREAM).await?;
        anyhow::Ok(stream.info().await?.state.messages)
    };
    match tokio::time::timeout(DLQ_READ_TIMEOUT, read).await {
        Ok(Ok(messages)) => Some(messages),
        Ok(Err(error)) => {
            tracing::warn!(%error, "reading NUDGE_DLQ for nudge_dlq_events");
            None
        }
        Err(_) => {
            tracing::warn!(
                "reading NUDGE_DLQ for nudge_dlq_events: no answer within {DLQ_READ_TIMEOUT:?}"
            );
            None
        }
    }
}

/// `GET /api/cluster`: partitions, owners, positions and lag, as this instance sees them.
pub async fn cluster(
    State(state): State<Arc<AppState>>,
) -> Result<Json<crate::cluster::ClusterStatus>, ApiError> {
    let mut events = state
        .js
        .get_stream(crate::topology::EVENTS_STREAM)
        .await
        .map_err(|e| ApiError::unavailable(format!("reading the events stream: {e}")))?;
    let last = events
        .info()
        .await
        .map_err(|e| ApiError::unavailable(format!("reading the events stream: {e}")))?
        .state
        .last_sequence;
    Ok(Json(state.cluster.status(last)))
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        Some("method"),
        format!("{method} is not allowed on {}", uri.path()),
    )
}
