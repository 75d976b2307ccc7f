//! `nudge serve`: wires NATS, the rule store, hot reload, the pipeline and the HTTP server, and
//! runs them until `shutdown`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_nats::jetstream::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use nudge_rules::schema::SchemaSet;
use nudge_rules::{Channel, RuleSet, Sandbox};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::cluster::Cluster;
use crate::config::Settings;
use crate::delivery::email::{Emails, RelayPlan};
use crate::delivery::templates::TemplateStore;
use crate::delivery::transport::DeliveryLimits;
use crate::delivery::unsubscribe::Unsubscribe;
use crate::delivery::webhook::Webhooks;
use crate::delivery::worker;
use crate::http::{AppState, app};
use crate::pipeline::{self, Decisions, Shared};
use crate::plugin::store::PluginStore;
use crate::plugin::sync::sync_plugins;
use crate::plugin::{LivePlugins, PluginHost, PluginSet, Plugins, dir as plugin_dir};
use crate::profiles::ProfileStore;
use crate::rulestore::RuleStore;
use crate::rulesync::{LiveRules, sync_rules};
use crate::schemas::store::SchemaStore;
use crate::schemas::sync::{LiveSchemas, sync_schemas};
use crate::timers::{self, TimerStore};
use crate::versioned::VersionedStore;
use crate::{clock, topology};

/// What the service has set up before it starts consuming; `nudge up` uses it to seed rules.
pub struct Started {
    pub js: Context,
    pub access: Access,
    pub store: RuleStore,
    pub plugins: PluginStore,
}

/// Runs until `shutdown` is cancelled, then drains in-flight events and returns.
/// `on_started` runs once the HTTP server listens and the topology exists.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    metrics: Option<PrometheusHandle>,
    shutdown: CancellationToken,
    on_started: impl AsyncFnOnce(&Started) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let url = settings
        .nats_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no NATS URL: set NUDGE_NATS_URL or use `nudge up`"))?;
    settings.check()?;
    let (client, js) = topology::connect(&url, &settings).await?;
    topology::wait_for_jetstream(&js).await?;
    topology::ensure_streams(&js, &settings).await?;
    let heads = topology::ensure_bucket(&js, topology::RULES_BUCKET, &settings).await?;
    let versions = topology::ensure_bucket(&js, topology::RULE_VERSIONS_BUCKET, &settings).await?;
    let plugin_heads = topology::ensure_bucket(&js, topology::PLUGINS_BUCKET, &settings).await?;
    let plugin_versions =
        topology::ensure_bucket(&js, topology::PLUGIN_VERSIONS_BUCKET, &settings).await?;
    let plugin_code =
        topology::ensure_object_store(&js, topology::PLUGIN_CODE_STORE, &settings).await?;
    let pipeline_js = topology::pipeline_context(client.clone());
    let profiles = ProfileStore::new(
        topology::ensure_bucket(&js, topology::PROFILES_BUCKET, &settings).await?,
        pipeline_js.clone(),
        settings.profile_max_bytes,
    );
    let timers = TimerStore::new(
        topology::ensure_bucket(&js, topology::TIMERS_BUCKET, &settings).await?,
        pipeline_js.clone(),
    );
    let policy = Arc::new(settings.policy()?);
    let clock = clock::system();
    let listen = listener.local_addr()?.to_string();
    let cluster = Cluster::join(&js, &settings, listen, clock.clone(), &shutdown).await?;

    let host = Arc::new(PluginHost::new(settings.plugin_limits(), false)?);
    let live_plugins: LivePlugins = Arc::new(ArcSwap::from_pointee(PluginSet::default()));
    let plugins = Plugins::new(host.clone(), live_plugins.clone());
    let plugin_store = PluginStore::new(
        VersionedStore::new(plugin_heads, plugin_versions),
        plugin_code,
        host,
        settings.plugin_max_wasm_bytes,
    );
    let sandbox = Arc::new(Sandbox::with_plugins(
        settings.rule_limits(),
        Some(Arc::new(plugins.clone())),
    ));
    let live: LiveRules = Arc::new(ArcSwap::from_pointee(RuleSet::new(sandbox.clone())));
    let store = RuleStore::new(VersionedStore::new(heads.clone(), versions), sandbox);
    let schema_store = SchemaStore::new(
        VersionedStore::new(
            topology::ensure_bucket(&js, topology::SCHEMAS_BUCKET, &settings).await?,
            topology::ensure_bucket(&js, topology::SCHEMA_VERSIONS_BUCKET, &settings).await?,
        ),
        settings.schema_limits(),
    );
    let schemas: LiveSchemas = Arc::new(ArcSwap::from_pointee(SchemaSet::new(
        settings.unplanned_events,
        settings.schema_versions_loaded,
    )));
    let schemas_loaded = Arc::new(AtomicBool::new(false));
    let rules_loaded = Arc::new(AtomicBool::new(false));
    let plugins_loaded = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));

    let stats = tokio::spawn(crate::stats::share(
        topology::ensure_bucket(&js, topology::STATS_BUCKET, &settings).await?,
        cluster.id.clone(),
        Duration::from_millis(settings.stats_flush_ms),
        shutdown.clone(),
    ));
    let violations = topology::ensure_bucket(&js, topology::VIOLATIONS_BUCKET, &settings).await?;
    let report = tokio::spawn(crate::stats::share_with(
        violations.clone(),
        cluster.id.clone(),
        Duration::from_millis(settings.stats_flush_ms),
        shutdown.clone(),
        || serde_json::to_vec(&crate::schemas::report::global().snapshot()),
    ));
    let schema_watcher = tokio::spawn(sync_schemas(
        schema_store.clone(),
        schemas.clone(),
        settings.schema_versions_loaded,
        schemas_loaded.clone(),
        shutdown.clone(),
    ));
    let watcher = tokio::spawn(sync_rules(
        heads,
        live.clone(),
        rules_loaded.clone(),
        shutdown.clone(),
    ));
    let plugin_watcher = tokio::spawn(sync_plugins(
        plugin_store.clone(),
        live_plugins,
        plugins_loaded.clone(),
        shutdown.clone(),
    ));
    let scheduler = tokio::spawn(timers::run(
        timers.clone(),
        js.clone(),
        clock.clone(),
        shutdown.clone(),
    ));
    let access = Access::open(&js, &settings).await?;
    let webhooks = crate::delivery::endpoints::EndpointStore::new(
        topology::ensure_bucket(&js, topology::WEBHOOKS_BUCKET, &settings).await?,
    );
    let http_client = crate::delivery::request::client()?;
    let templates = TemplateStore::new(
        VersionedStore::new(
            topology::ensure_bucket(&js, topology::EMAIL_TEMPLATES_BUCKET, &settings).await?,
            topology::ensure_bucket(&js, topology::EMAIL_TEMPLATE_VERSIONS_BUCKET, &settings)
                .await?,
        ),
        settings.template_limits(),
    );
    let unsubscribe = Unsubscribe::open(
        &topology::ensure_bucket(&js, topology::SECRETS_BUCKET, &settings).await?,
        &settings.public_url(listener.local_addr()?),
    )
    .await?;
    let relay = RelayPlan::from_settings(&settings)?.map(RelayPlan::connect);
    let deliveries = [
        tokio::spawn(worker::run(
            js.clone(),
            Webhooks::new(webhooks.clone(), http_client.clone()),
            delivery_limits(&settings, Channel::Webhook),
            clock.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(worker::run(
            js.clone(),
            Emails::new(relay, templates.clone(), unsubscribe.clone()),
            delivery_limits(&settings, Channel::Email),
            clock.clone(),
            shutdown.clone(),
        )),
    ];
    let state = Arc::new(AppState {
        js: js.clone(),
        store: store.clone(),
        rules: live.clone(),
        plugins: plugin_store.clone(),
        profiles: profiles.clone(),
        policy: policy.clone(),
        clock: clock.clone(),
        settings: settings.clone(),
        metrics,
        ready: ready.clone(),
        access: access.clone(),
        drafts: topology::ensure_bucket(&js, topology::DRAFTS_BUCKET, &settings).await?,
        samples: topology::ensure_bucket(&js, topology::SAMPLES_BUCKET, &settings).await?,
        webhooks,
        http_client,
        templates,
        unsubscribe,
        live_views: Arc::new(tokio::sync::Semaphore::new(settings.live_max_streams)),
        cluster: cluster.clone(),
        stats: topology::ensure_bucket(&js, topology::STATS_BUCKET, &settings).await?,
        schema_store,
        schemas: schemas.clone(),
        violations,
        ingest_signing_key: crate::http::signed::signing_key(
            settings.ingest_signing_secret.as_deref(),
        )?,
        ingest_ids: topology::ensure_bucket(&js, topology::INGEST_IDS_BUCKET, &settings).await?,
    });
    let tls = crate::http::tls::Tls::from_settings(&settings).await?;
    let http = tokio::spawn(crate::http::tls::serve(
        listener,
        app(state),
        tls,
        shutdown.clone(),
        Duration::from_millis(settings.shutdown_grace_ms),
    ));

    if let Some(dir) = &settings.plugins_dir {
        plugin_dir::store_changed(&plugin_store, dir).await?;
    }
    on_started(&Started {
        js: js.clone(),
        access,
        store,
        plugins: plugin_store,
    })
    .await?;

    // Consume only once every stored rule, plugin and schema is loaded, so no event meets a
    // partial set.
    while ![&rules_loaded, &plugins_loaded, &schemas_loaded]
        .iter()
        .all(|loaded| loaded.load(Ordering::Acquire))
    {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    ready.store(true, Ordering::Release);
    let decisions = Decisions {
        rules: live,
        plugins,
        profiles,
        clock,
        policy,
        limits: settings.state_limits(),
        rule_eval_seconds: metrics::histogram!(crate::telemetry::RULE_EVAL_SECONDS),
        schemas,
    };
    let partitions = cluster.partitions;
    let shared = Arc::new(Shared::new(
        pipeline_js,
        client.clone(),
        decisions,
        timers,
        settings.clone(),
        partitions,
    ));
    let consumed = pipeline::run(shared, cluster, shutdown.clone()).await;
    ready.store(false, Ordering::Release);
    // Publishes are buffered by the client; the last traces must reach the server before exit.
    match tokio::time::timeout(Duration::from_secs(5), client.flush()).await {
        Ok(Ok(())) => {}
        _ => tracing::warn!("could not flush the last messages to NATS"),
    }
    shutdown.cancel();
    watcher.await.ok();
    plugin_watcher.await.ok();
    stats.await.ok();
    report.await.ok();
    schema_watcher.await.ok();
    scheduler.await.ok();
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(error = format!("{error:#}"), "deliveries stopped"),
            Err(error) => tracing::error!(%error, "deliveries panicked"),
        }
    }
    http.await??;
    consumed
}

/// The limits of a channel nudge delivers.
fn delivery_limits(settings: &Settings, channel: Channel) -> DeliveryLimits {
    settings
        .delivery_limits(channel)
        .expect("a channel nudge delivers has delivery limits")
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down: finishing in-flight events");
        token.cancel();
    });
}
