//! Hot swap: every instance follows `NUDGE_PLUGINS`, fetches and compiles a changed plugin
//! *before* swapping it in, and replaces the whole set atomically. Events in flight finish with
//! the version they started with; no event ever sees a half-loaded plugin.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use async_nats::jetstream::kv::{self, Operation};
use tokio_util::sync::CancellationToken;

use super::set::{LivePlugins, LoadedPlugin};
use super::store::{Head, PluginStore};
use crate::{telemetry, versioned};

/// Runs until `shutdown`; `loaded` turns true once every stored plugin has been applied.
pub async fn sync_plugins(
    store: PluginStore,
    live: LivePlugins,
    loaded: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let heads = store.heads().clone();
    versioned::follow(&heads, "plugin", &loaded, &shutdown, |entry| {
        let (store, live) = (store.clone(), live.clone());
        async move { apply(&store, &live, &entry).await }
    })
    .await;
}

async fn apply(store: &PluginStore, live: &LivePlugins, entry: &kv::Entry) {
    let head = match entry.operation {
        Operation::Delete | Operation::Purge => None,
        Operation::Put => match serde_json::from_slice::<Head>(&entry.value) {
            Ok(head) => Some(head),
            Err(error) => {
                tracing::error!(plugin = %entry.key, %error, "stored plugin is unreadable; keeping the running version");
                return;
            }
        },
    };
    let Some(head) = head.filter(|h| !h.deleted) else {
        swap(live, |set| set.without_plugin(&entry.key));
        tracing::info!(plugin = %entry.key, "plugin unloaded");
        return;
    };
    let record = head.record;
    let running = live.load().get(&record.name).map(|p| p.record.version);
    if running.is_some_and(|v| v >= record.version) {
        return;
    }
    let (name, version) = (record.name.clone(), record.version);
    let code = match load(store, &record.sha256).await {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(plugin = %name, version, %error, "stored plugin cannot be loaded; keeping the running version");
            return;
        }
    };
    let loaded = Arc::new(LoadedPlugin::new(record, code));
    swap(live, |set| set.with_plugin(loaded.clone()));
    tracing::info!(plugin = %name, version, "plugin loaded");
}

async fn load(store: &PluginStore, sha256: &str) -> anyhow::Result<Arc<super::Compiled>> {
    let wasm = store.code(sha256).await?;
    let host = store.host().clone();
    // Compiling takes milliseconds to seconds of CPU: keep it off the async workers.
    let compiled = tokio::task::spawn_blocking(move || host.compile(&wasm)).await?;
    compiled.map_err(anyhow::Error::msg)
}

fn swap(live: &LivePlugins, change: impl Fn(&super::PluginSet) -> super::PluginSet) {
    live.rcu(|set| change(set));
    metrics::gauge!(telemetry::PLUGINS_LOADED).set(live.load().len() as f64);
}
