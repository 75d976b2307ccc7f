//! The web UI: assets built from `web/` at compile time (see `build.rs`) and served from the
//! binary. Every path outside `/api`, `/v1` and the operational endpoints is a page of the
//! single-page app, so `/login`, `/rules/welcome` and a reload anywhere all get `index.html`.

use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Only our own scripts, styles and API; no framing by other sites.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .iter()
        .find(|(url, _, _)| *url == path)
        .map(|(_, mime, bytes)| (*mime, *bytes))
}

fn serve(mime: &'static str, bytes: &'static [u8]) -> Response {
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// The fallback of the whole router: UI assets and pages, else the JSON 404.
pub async fn page_or_not_found(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let is_api = path.starts_with("/api/") || path == "/api" || path.starts_with("/v1/");
    if method == Method::GET && !is_api {
        if let Some((mime, bytes)) = asset(path) {
            return serve(mime, bytes);
        }
        if !path.starts_with("/assets/")
            && let Some((mime, bytes)) = asset("/index.html")
        {
            return serve(mime, bytes);
        }
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        Some("path"),
        format!("no route for {path}"),
    )
    .into_response()
}

/// `GET /login`: the app's sign-in page (the route also takes the form's POST).
pub async fn index() -> Response {
    match asset("/index.html") {
        Some((mime, bytes)) => serve(mime, bytes),
        None => ApiError::unavailable("the UI was not built into this binary").into_response(),
    }
}
