//! Every instance's running [`SchemaSet`]: a watch of `NUDGE_SCHEMAS` that compiles each new
//! version once and swaps in a new set, which the pipeline's decision threads and the HTTP
//! ingest validate with. A type seen for the first time also gets its previous versions
//! (`schema_versions_loaded` in all), for events whose `dataschema` names one.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;
use async_nats::jetstream::kv::{self, Operation};
use nudge_rules::schema::{CompiledSchema, EventSchema, SchemaSet};
use tokio_util::sync::CancellationToken;

use super::store::{Head, SchemaStore};
use crate::versioned;

pub type LiveSchemas = Arc<ArcSwap<SchemaSet>>;

/// Runs until `shutdown`; `loaded` turns true once every stored schema has been applied.
pub async fn sync_schemas(
    store: SchemaStore,
    live: LiveSchemas,
    versions_loaded: usize,
    loaded: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let heads = store.heads().clone();
    versioned::follow(&heads, "schema", &loaded, &shutdown, |entry| {
        apply(&store, &live, versions_loaded, entry)
    })
    .await;
}

async fn apply(store: &SchemaStore, live: &LiveSchemas, versions_loaded: usize, entry: kv::Entry) {
    let head = match entry.operation {
        Operation::Delete | Operation::Purge => None,
        Operation::Put => match serde_json::from_slice::<Head>(&entry.value) {
            Ok(head) => Some(head),
            Err(error) => {
                tracing::error!(schema = %entry.key, %error, "stored schema is unreadable; keeping the running version");
                return;
            }
        },
    };
    let Some(head) = head.filter(|h| !h.deleted) else {
        let mut next = SchemaSet::clone(&live.load());
        next.remove(&entry.key);
        live.store(Arc::new(next));
        tracing::info!(event_type = %entry.key, "schema removed");
        return;
    };
    let schema = head.record;
    let first_seen = live.load().latest(&schema.event_type).is_none();
    let mut versions = vec![schema.clone()];
    if first_seen && versions_loaded > 1 {
        match store
            .versions(&schema.event_type, versions_loaded as u64)
            .await
        {
            Ok(older) => versions.extend(
                older
                    .into_iter()
                    .filter(|h| !h.deleted && h.record.version < schema.version)
                    .map(|h| h.record),
            ),
            Err(error) => {
                tracing::warn!(event_type = %schema.event_type, %error, "could not load the earlier versions of a schema")
            }
        }
    }
    let compiled: Vec<(EventSchema, Arc<CompiledSchema>)> = versions
        .into_iter()
        .filter_map(|version| match CompiledSchema::compile(&version.spec.schema) {
            Ok(compiled) => Some((version, Arc::new(compiled))),
            Err(error) => {
                tracing::error!(event_type = %version.event_type, version = version.version, %error, "stored schema does not compile");
                None
            }
        })
        .collect();
    let mut next = SchemaSet::clone(&live.load());
    // The newest goes in last, so its mode is the type's.
    for (version, compiled) in compiled.iter().rev() {
        next.insert(version, compiled.clone());
    }
    tracing::info!(event_type = %schema.event_type, version = schema.version, "schema loaded");
    live.store(Arc::new(next));
}

/// Waits (at most [`versioned::LIVE_WAIT`]) until this instance validates with `version` of
/// `event_type`'s schema — or, with `None`, with none — so an event sent right after a change is
/// judged by it here.
pub async fn wait_live(live: &LiveSchemas, event_type: &str, version: Option<u64>) {
    versioned::wait_live("schema", event_type, version, || {
        live.load().version(event_type)
    })
    .await;
}
