//! `/unsubscribe/{token}`: the link every e-mail carries. `GET` shows a page with one button
//! (link scanners follow GETs, so a GET alone opts nobody out); `POST` — that button, or a mail
//! client's one-click unsubscribe (RFC 8058) — publishes a `profile.identified` event setting
//! the profile's consent for the channel to false, which the pipeline applies in order with the
//! profile's other events. No sign-in: the signed token is the permission.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use nudge_rules::CloudEvent;
use nudge_rules::state::IDENTIFY_TYPE;
use serde_json::json;

use super::AppState;
use crate::delivery::unsubscribe::OptOut;

/// The `source` of the events an unsubscribe link publishes.
pub const SOURCE: &str = "nudge/unsubscribe";

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;\
         padding:0 1rem;color:#222}}button{{font-size:1rem;padding:.6rem 1.2rem}}</style>\
         </head><body><h1>{title}</h1>{body}</body></html>"
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn not_valid() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "This link is not valid",
        "<p>The unsubscribe link (its token) is incomplete or was not made by this service. \
         Copy the whole link from the e-mail and try again.</p>",
    )
}

/// `GET`: asks for confirmation.
pub async fn confirm(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    let Some(OptOut { channel, .. }) = state.unsubscribe.check(&token) else {
        return not_valid();
    };
    page(
        StatusCode::OK,
        "Unsubscribe",
        &format!(
            "<p>Stop receiving {channel} messages from us?</p>\
             <form method=\"post\"><button type=\"submit\">Unsubscribe</button></form>",
            channel = channel.as_str()
        ),
    )
}

/// `POST`: opts the profile out of the channel.
pub async fn opt_out(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    let Some(OptOut {
        channel,
        profile_id,
    }) = state.unsubscribe.check(&token)
    else {
        return not_valid();
    };
    let event = CloudEvent::from_value(json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": SOURCE,
        "type": IDENTIFY_TYPE,
        "subject": profile_id,
        "time": crate::versioned::now_rfc3339(),
        "datacontenttype": "application/json",
        "data": { "consent": { channel.as_str(): false } },
    }));
    let published = match event {
        Ok(event) => super::ingest::publish_events(&state, &[event], |_, _| "token".into()).await,
        Err(error) => Err(super::ApiError::bad_request("token", error.message)),
    };
    match published {
        Ok(_) => {
            metrics::counter!(crate::telemetry::UNSUBSCRIBES, "channel" => channel.as_str())
                .increment(1);
            tracing::info!(profile = %profile_id, channel = channel.as_str(), "unsubscribed");
            page(
                StatusCode::OK,
                "You are unsubscribed",
                &format!(
                    "<p>You will receive no more {} messages from us.</p>",
                    channel.as_str()
                ),
            )
        }
        Err(error) => {
            tracing::warn!(message = %error.message, "an unsubscribe could not be recorded");
            page(
                error.status,
                "Please try again",
                "<p>We could not record your choice just now. Please try again in a minute.</p>",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use nudge_rules::decide::TIMER_SOURCE;
    use nudge_rules::schema::OWN_SOURCE_PREFIX;

    #[test]
    fn nudge_own_events_are_not_held_to_producers_schemas() {
        for source in [super::SOURCE, TIMER_SOURCE] {
            assert!(source.starts_with(OWN_SOURCE_PREFIX), "{source}");
        }
    }
}
