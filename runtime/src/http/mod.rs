//! The HTTP surface: management API (`/api`), ingest (`/v1`), health and metrics, all on one
//! `axum` router built by [`app`] so tests can drive it without a socket.

mod auth;
mod backtest;
mod error;
mod ingest;
mod ops;
mod plugins;
mod profiles;
mod rules;
pub mod segment;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use async_nats::jetstream::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler as _;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;

pub use error::ApiError;
use segment::Call;

use nudge_rules::Policy;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::plugin::store::PluginStore;
use crate::profiles::ProfileStore;
use crate::rulestore::RuleStore;
use crate::rulesync::LiveRules;

pub struct AppState {
    pub js: Context,
    pub store: RuleStore,
    pub rules: LiveRules,
    pub plugins: PluginStore,
    pub profiles: ProfileStore,
    pub policy: Arc<Policy>,
    pub clock: SharedClock,
    pub settings: Arc<Settings>,
    pub metrics: Option<PrometheusHandle>,
    /// True once every stored rule is loaded and the consumer runs.
    pub ready: Arc<AtomicBool>,
}

pub fn app(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/api/rules", get(rules::list))
        .route(
            "/api/rules/{id}",
            get(rules::get).put(rules::put).delete(rules::delete),
        )
        .route("/api/rules/{id}/versions", get(rules::versions))
        .route("/api/rules/{id}/versions/{version}", get(rules::version))
        .route("/api/rules/{id}/restore", post(rules::restore))
        .route("/api/rules/{id}/test", post(rules::test))
        .route("/api/rules/{id}/backtest", post(backtest::backtest))
        .route("/api/profiles/{id}", get(profiles::get))
        .route("/api/profiles/{id}/trace", get(profiles::trace))
        .route("/api/plugins", get(plugins::list))
        .route(
            "/api/plugins/{name}",
            get(plugins::get)
                // Uploads are bounded by plugin_max_wasm_bytes in the handler instead.
                .put(plugins::put.layer(DefaultBodyLimit::disable()))
                .patch(plugins::patch)
                .delete(plugins::delete),
        )
        .route("/api/plugins/{name}/versions", get(plugins::versions))
        .route("/api/plugins/{name}/test", post(plugins::test))
        .route_layer(from_fn_with_state(state.clone(), auth::require_admin));
    let ingest = Router::new()
        .route("/v1/events", post(ingest::events))
        .route("/v1/track", ingest::segment_call(Call::Track))
        .route("/v1/identify", ingest::segment_call(Call::Identify))
        .route("/v1/page", ingest::segment_call(Call::Page))
        .route("/v1/screen", ingest::segment_call(Call::Screen))
        .route("/v1/batch", post(ingest::batch))
        .route_layer(from_fn_with_state(state.clone(), auth::require_ingest));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(api)
        .merge(ingest)
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
