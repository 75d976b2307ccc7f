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

/// Waits (at most [`versioned::LIVE_WAIT`]) until this instance's running set holds `version`
/// of rule `id` — or, with `None`, no longer holds the rule.
pub async fn wait_live(live: &LiveRules, id: &str, version: Option<u64>) {
    versioned::wait_live("rule", id, version, || {
        live.load().get(id).map(|r| r.rule.version)
    })
    .await;
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
