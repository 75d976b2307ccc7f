//! The HTTP surface: the web UI (`/`), sign-in (`/login`, `/logout`), management API (`/api`,
//! every route guarded by the policy in [`routes`]), ingest (`/v1`), health and metrics, all on
//! one `axum` router built by [`app`] so tests can drive it without a socket.

mod access;
mod auth;
mod backtest;
mod catalog;
mod dlq;
mod email_templates;
pub mod error;
mod ingest;
mod live;
mod openapi;
mod ops;
mod plugins;
mod profiles;
mod results;
mod review;
pub mod routes;
mod rules;
mod schemas;
pub mod segment;
pub mod signed;
pub mod tls;
mod ui;
mod unsubscribe;
mod webhooks;
mod write_keys;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use async_nats::jetstream::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler as _;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

pub use error::ApiError;
use segment::Call;

use nudge_rules::Policy;

use crate::access::Access;
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
    pub access: Access,
    /// Rule changes waiting for review (`NUDGE_DRAFTS`).
    pub drafts: async_nats::jetstream::kv::Store,
    /// Sample events pinned to rules (`NUDGE_SAMPLES`).
    pub samples: async_nats::jetstream::kv::Store,
    /// One permit per open live view (`live_max_streams`).
    pub live_views: Arc<Semaphore>,
    /// This instance's membership and view of the cluster.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// Every instance's rule and plugin figures (`NUDGE_STATS`).
    pub stats: async_nats::jetstream::kv::Store,
    /// Webhook endpoints (`NUDGE_WEBHOOKS`).
    pub webhooks: crate::delivery::endpoints::EndpointStore,
    /// The HTTP client webhook requests share.
    pub http_client: reqwest::Client,
    /// E-mail templates (`NUDGE_EMAIL_TEMPLATES`).
    pub templates: crate::delivery::templates::TemplateStore,
    /// Makes and checks the unsubscribe links in e-mails.
    pub unsubscribe: crate::delivery::unsubscribe::Unsubscribe,
    /// Event schemas (`NUDGE_SCHEMAS`).
    pub schema_store: crate::schemas::store::SchemaStore,
    /// The schemas ingest validates with, as every instance runs them.
    pub schemas: crate::schemas::LiveSchemas,
    /// Every instance's schema violations report (`NUDGE_VIOLATIONS`).
    pub violations: async_nats::jetstream::kv::Store,
    /// With `ingest_signing_secret`: the key ingest requests must be signed with, and the ids
    /// already used (`NUDGE_INGEST_IDS`).
    pub ingest_signing_key: Option<crate::delivery::signature::SigningKey>,
    pub ingest_ids: async_nats::jetstream::kv::Store,
}

pub fn app(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/session", get(access::session))
        .route("/api/rules", get(rules::list))
        .route(
            "/api/rules/{id}",
            get(rules::get)
                .put(rules::put)
                .patch(rules::patch)
                .delete(rules::delete),
        )
        .route("/api/rules/{id}/versions", get(rules::versions))
        .route("/api/rules/{id}/results", get(results::results))
        .route("/api/results", get(results::summary))
        .route("/api/plugins/{name}/results", get(results::plugin_results))
        .route("/api/rules/{id}/versions/{version}", get(rules::version))
        .route("/api/rules/{id}/restore", post(rules::restore))
        .route("/api/rules/{id}/check", post(rules::check))
        .route("/api/rules/{id}/test", post(rules::test))
        .route("/api/rules/{id}/backtest", post(backtest::backtest))
        .route(
            "/api/rules/{id}/samples",
            get(catalog::samples).put(catalog::put_samples),
        )
        .route(
            "/api/rules/{id}/draft",
            get(review::get_draft).delete(review::reject),
        )
        .route("/api/rules/{id}/draft/approve", post(review::approve))
        .route("/api/drafts", get(review::list_drafts))
        .route("/api/stats", get(catalog::stats))
        .route("/api/cluster", get(ops::cluster))
        .route("/api/templates", get(catalog::templates))
        .route("/api/events/recent", get(catalog::recent_events))
        .route("/api/live", get(live::live))
        .route("/api/profiles/{id}", get(profiles::get))
        .route("/api/profiles/{id}/trace", get(profiles::trace))
        .route("/api/profiles/{id}/deliveries", get(profiles::deliveries))
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
        .route("/api/dlq", get(dlq::list))
        .route("/api/dlq/redrive", post(dlq::redrive_all))
        .route("/api/dlq/{sequence}/redrive", post(dlq::redrive))
        .route(
            "/api/users",
            get(access::list_users).post(access::create_user),
        )
        .route(
            "/api/users/{username}",
            axum::routing::delete(access::delete_user),
        )
        .route(
            "/api/tokens",
            get(access::list_tokens).post(access::create_token),
        )
        .route(
            "/api/tokens/{id}",
            axum::routing::delete(access::revoke_token),
        )
        .route(
            "/api/write-keys",
            get(write_keys::list).post(write_keys::create),
        )
        .route(
            "/api/write-keys/{name}",
            axum::routing::patch(write_keys::update).delete(write_keys::revoke),
        )
        .route(
            "/api/write-keys/{name}/rotate",
            axum::routing::post(write_keys::rotate),
        )
        .route("/api/audit", get(access::audit_log))
        .route("/api/webhooks", get(webhooks::list))
        .route(
            "/api/webhooks/{name}",
            get(webhooks::get)
                .put(webhooks::put)
                .delete(webhooks::delete),
        )
        .route("/api/webhooks/{name}/rotate", post(webhooks::rotate))
        .route("/api/webhooks/{name}/test", post(webhooks::test))
        .route("/api/email-templates", get(email_templates::list))
        .route(
            "/api/email-templates/{name}",
            get(email_templates::get)
                .put(email_templates::put)
                .delete(email_templates::delete),
        )
        .route(
            "/api/email-templates/{name}/versions",
            get(email_templates::versions),
        )
        .route(
            "/api/email-templates/{name}/preview",
            post(email_templates::preview),
        )
        .route("/api/schemas", get(schemas::list))
        .route(
            "/api/schemas/{type}",
            get(schemas::get).put(schemas::put).delete(schemas::delete),
        )
        .route("/api/schemas/{type}/versions", get(schemas::versions))
        .route(
            "/api/schemas/{type}/versions/{version}",
            get(schemas::version),
        )
        .route("/api/schemas/{type}/infer", post(schemas::infer_draft))
        .route("/api/schema-violations", get(schemas::violations))
        .route_layer(from_fn_with_state(state.clone(), auth::authorize));
    let ingest = Router::new()
        .route("/v1/events", post(ingest::events))
        .route("/v1/track", ingest::segment_call(Call::Track))
        .route("/v1/identify", ingest::segment_call(Call::Identify))
        .route("/v1/page", ingest::segment_call(Call::Page))
        .route("/v1/screen", ingest::segment_call(Call::Screen))
        .route("/v1/batch", post(ingest::batch))
        // Layers run outside-in: the credential first, then the signature.
        .route_layer(from_fn_with_state(state.clone(), signed::verify))
        .route_layer(from_fn_with_state(state.clone(), auth::require_ingest));
    let sessions = SessionManagerLayer::new(state.access.sessions.clone())
        .with_name("nudge_session")
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(state.settings.session_cookie_secure)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(
            i64::try_from(state.settings.session_idle_timeout_s).unwrap_or(i64::MAX),
        )));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/login", get(ui::index).post(access::login))
        .route("/logout", post(access::logout))
        .route(
            "/unsubscribe/{token}",
            get(unsubscribe::confirm).post(unsubscribe::opt_out),
        )
        .merge(api)
        .merge(ingest)
        .fallback(ui::page_or_not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(sessions)
        // gzip for the UI bundle and large JSON; server-sent events are never buffered by it.
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn openapi() -> Result<axum::Json<serde_json::Value>, ApiError> {
    Ok(axum::Json(error::to_json(openapi::openapi())?))
}
