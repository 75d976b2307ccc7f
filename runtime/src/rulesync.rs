//! Hot reload: every instance watches `NUDGE_RULES` and swaps in a new immutable `RuleSet` on each
//! change. Events in flight finish with the set they started with.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;
use async_nats::jetstream::kv::{self, Operation};
use nudge_rules::{CompiledRule, RuleSet};
use tokio_util::sync::CancellationToken;

use crate::rulestore::Head;
use crate::telemetry;
use crate::versioned;

pub type LiveRules = Arc<ArcSwap<RuleSet>>;

/// Runs until `shutdown`; `loaded` turns true once every stored rule has been applied.
pub async fn sync_rules(
    heads: kv::Store,
    live: LiveRules,
    loaded: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    versioned::follow(&heads, "rule", &loaded, &shutdown, |entry| {
        apply(&live, &entry);
        std::future::ready(())
    })
    .await;
}

/// How long a rule change's answer waits for this instance to run the change.
const LIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits (at most [`LIVE_WAIT`]) until this instance's running set holds `version` of rule `id`
/// — or, with `None`, no longer holds the rule — so the one who saved a rule can send an event
/// right after and see it decided by the new version here. Other instances follow their own
/// watch within milliseconds.
pub async fn wait_live(live: &LiveRules, id: &str, version: Option<u64>) {
    let deadline = tokio::time::Instant::now() + LIVE_WAIT;
    loop {
        let running = live.load().get(id).map(|r| r.rule.version);
        let arrived = match version {
            Some(version) => running.is_some_and(|v| v >= version),
            None => running.is_none(),
        };
        if arrived || tokio::time::Instant::now() >= deadline {
            if !arrived {
                tracing::warn!(
                    rule = id,
                    ?version,
                    "the rule change is stored but not yet running here"
                );
            }
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
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
            Ok(head) if head.deleted => current.without_rule(&head.record.id),
            Ok(head) => {
                let newer = current
                    .get(&head.record.id)
                    .is_none_or(|running| running.rule.version < head.record.version);
                if !newer {
                    return;
                }
                let (id, version) = (head.record.id.clone(), head.record.version);
                match CompiledRule::compile(current.sandbox(), head.record) {
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
