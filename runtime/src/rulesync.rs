//! Hot reload: every instance watches `NUDGE_RULES` and swaps in a new immutable `RuleSet` on each
//! change. Events in flight finish with the set they started with.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt;
use nudge_rules::{CompiledRule, RuleSet};
use tokio_util::sync::CancellationToken;

use crate::rulestore::Head;
use crate::telemetry;

pub type LiveRules = Arc<ArcSwap<RuleSet>>;

/// Runs until `shutdown`; `loaded` turns true once every stored rule has been applied.
pub async fn sync_rules(
    heads: kv::Store,
    live: LiveRules,
    loaded: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        if let Err(error) = watch_once(&heads, &live, &loaded, &shutdown).await {
            tracing::warn!(%error, "rule watch interrupted; resuming");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

async fn watch_once(
    heads: &kv::Store,
    live: &LiveRules,
    loaded: &AtomicBool,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut watch = heads.watch_with_history(">").await?;
    if heads.status().await?.values() == 0 {
        loaded.store(true, Ordering::Release);
    }
    loop {
        let entry = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            entry = watch.next() => entry,
        };
        let Some(entry) = entry else {
            anyhow::bail!("watch ended");
        };
        let entry = entry?;
        apply(live, &entry);
        if entry.delta == 0 {
            loaded.store(true, Ordering::Release);
        }
    }
}

fn apply(live: &LiveRules, entry: &kv::Entry) {
    let current = live.load();
    let next = match entry.operation {
        Operation::Delete | Operation::Purge => current.without_rule(&entry.key),
        Operation::Put => match serde_json::from_slice::<Head>(&entry.value) {
            Err(error) => {
                tracing::error!(rule = %entry.key, %error, "stored rule is unreadable; keeping the running version");
                return;
            }
            Ok(head) if head.deleted => current.without_rule(&head.rule.id),
            Ok(head) => {
                let newer = current
                    .get(&head.rule.id)
                    .is_none_or(|running| running.rule.version < head.rule.version);
                if !newer {
                    return;
                }
                let (id, version) = (head.rule.id.clone(), head.rule.version);
                match CompiledRule::compile(current.sandbox(), head.rule) {
                    Ok(compiled) => {
                        tracing::info!(rule = %id, version, "rule loaded");
                        current.with_rule(Arc::new(compiled))
                    }
                    Err(error) => {
                        tracing::error!(rule = %id, version, %error, "stored rule does not compile; keeping the running version");
                        return;
                    }
                }
            }
        },
    };
    metrics::gauge!(telemetry::RULES_LOADED).set(next.len() as f64);
    live.store(Arc::new(next));
}
