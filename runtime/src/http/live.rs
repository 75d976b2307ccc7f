//! `GET /api/live`: server-sent events of what is happening now — events arriving
//! (`events.>`) and actions published (`actions.>`) — filtered by rule, channel and profile.
//! Bounded: at most `live_max_streams` views per instance, `live_buffer_items` items buffered
//! per view; a view that falls behind skips items and gets a `lagged` item saying how many.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{ApiError, AppState};
use crate::stats::label_key;

#[derive(Deserialize, Default, Clone)]
pub struct LiveFilter {
    /// Actions of this rule (or `plugin:<name>`), events that trigger it.
    rule: Option<String>,
    /// Actions on this channel (events are not shown).
    channel: Option<String>,
    /// Events and actions about this profile.
    profile: Option<String>,
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// What one live item shows.
fn item(state: &AppState, filter: &LiveFilter, subject: &str, payload: &[u8]) -> Option<Value> {
    let body: Value = serde_json::from_slice(payload).ok()?;
    let profile = body.get("subject").and_then(Value::as_str).unwrap_or("");
    if non_empty(&filter.profile).is_some_and(|p| p != profile) {
        return None;
    }
    let event_type = body.get("type").and_then(Value::as_str).unwrap_or("");
    if subject.starts_with("actions.") {
        let channel = subject.strip_prefix("actions.").unwrap_or("");
        let rule = body.get("rule").and_then(Value::as_str).unwrap_or("");
        if non_empty(&filter.channel).is_some_and(|c| c != channel)
            || non_empty(&filter.rule).is_some_and(|r| r != label_key(rule))
        {
            return None;
        }
        return Some(json!({
            "kind": "action", "channel": channel, "rule": rule, "profile": profile,
            "type": event_type, "id": body.get("id"), "time": body.get("time"),
            "cause": body.get("causationid"), "data": body.get("data"),
        }));
    }
    if non_empty(&filter.channel).is_some() {
        return None;
    }
    if let Some(rule) = non_empty(&filter.rule) {
        let rules = state.rules.load();
        if !rules.matching(event_type).iter().any(|c| c.rule.id == rule) {
            return None;
        }
    }
    Some(json!({
        "kind": "event", "type": event_type, "profile": profile, "id": body.get("id"),
        "source": body.get("source"), "time": body.get("time"), "data": body.get("data"),
    }))
}

pub async fn live(
    State(state): State<Arc<AppState>>,
    Query(filter): Query<LiveFilter>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit = state.live_views.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            format!(
                "{} live views are open on this instance (live_max_streams)",
                state.settings.live_max_streams
            ),
        )
    })?;
    let client = state.js.client();
    let unavailable = |e: async_nats::SubscribeError| ApiError::unavailable(e.to_string());
    let events = client.subscribe("events.>").await.map_err(unavailable)?;
    let actions = client.subscribe("actions.>").await.map_err(unavailable)?;
    let (tx, rx) = mpsc::channel::<Value>(state.settings.live_buffer_items.max(1));
    let reader_state = state.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut merged = futures::stream::select(events, actions);
        let mut skipped = 0u64;
        loop {
            let message = tokio::select! {
                _ = tx.closed() => break,
                message = merged.next() => match message {
                    Some(message) => message,
                    None => break,
                },
            };
            let Some(value) = item(&reader_state, &filter, &message.subject, &message.payload)
            else {
                continue;
            };
            if skipped > 0
                && tx
                    .try_send(json!({"kind": "lagged", "skipped": skipped}))
                    .is_ok()
            {
                skipped = 0;
            }
            match tx.try_send(value) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => skipped += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
    });
    let stream = tokio_stream_from(rx).map(|value| {
        let kind = value["kind"].as_str().unwrap_or("item").to_owned();
        Ok(Event::default().event(kind).data(value.to_string()))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn tokio_stream_from(mut rx: mpsc::Receiver<Value>) -> impl Stream<Item = Value> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
