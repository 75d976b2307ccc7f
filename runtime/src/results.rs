//! Rule results in NATS (what `nudge_rules::experiment` counts): each partition's counts per
//! rule, stored as `results.<partition>.<rule>` (a plugin's, `plugin:<name>`, as
//! `results.<partition>.plugin.<name>`: KV keys hold no `:`) in `NUDGE_PROFILES` beside the profiles whose
//! decisions they count — the pipeline writes them in the same atomic batches as those
//! profiles, so each outcome is counted once — and summed over every partition when asked, so
//! every instance answers the same. (Profile keys are base64url and never hold a `.`, so these
//! keys cannot meet one.)

use std::collections::HashMap;

use anyhow::Context as _;
use nudge_rules::action::{Origin, OriginKind};
use nudge_rules::experiment::results::Results;

use crate::profiles::ProfileStore;

/// The key of partition `partition`'s counts for `rule` (a rule id, or `plugin:<name>`).
pub fn record_key(partition: u32, rule: &str) -> String {
    format!("results.{partition}.{}", key_tail(rule))
}

/// How a results key is written after the partition in a KV key (which holds no `:`).
fn key_tail(rule: &str) -> String {
    match Origin::split_key(rule) {
        (OriginKind::Plugin, name) => format!("plugin.{name}"),
        (OriginKind::Rule, id) => id.to_owned(),
    }
}

/// The results key a [`key_tail`] was written from.
fn rule_of_tail(tail: &str) -> String {
    match tail.strip_prefix("plugin.") {
        Some(name) => Origin::plugin_key(name),
        None => tail.to_owned(),
    }
}

/// The stored form: MessagePack with field names, like the profiles.
pub fn encode(results: &Results) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(results)
}

pub fn decode(bytes: &[u8]) -> anyhow::Result<Results> {
    Ok(rmp_serde::from_slice(bytes)?)
}

/// The results of `rule` (a rule id, or `plugin:<name>`), summed over every partition's record.
pub async fn of(profiles: &ProfileStore, rule: &str) -> anyhow::Result<Results> {
    sum(profiles, &format!("results.*.{}", key_tail(rule))).await
}

/// Every rule's results (not plugins'), summed over every partition's records.
pub async fn of_all(profiles: &ProfileStore) -> anyhow::Result<Results> {
    sum(profiles, "results.*.*").await
}

async fn sum(profiles: &ProfileStore, pattern: &str) -> anyhow::Result<Results> {
    let mut sum = Results::default();
    for (key, bytes) in profiles.scan(pattern).await? {
        sum.merge(&decode(&bytes).with_context(|| format!("{key}: unreadable"))?);
    }
    Ok(sum)
}

/// Partition `partition`'s records, per rule: what its new owner counts on from.
pub async fn of_partition(
    profiles: &ProfileStore,
    partition: u32,
) -> anyhow::Result<HashMap<String, Results>> {
    let prefix = format!("results.{partition}.");
    let mut records = HashMap::new();
    for (key, bytes) in profiles.scan(&format!("{prefix}>")).await? {
        let rule = rule_of_tail(key.strip_prefix(&prefix).unwrap_or(&key));
        let results = decode(&bytes).with_context(|| format!("{key}: unreadable"))?;
        records.insert(rule, results);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_results_keys_are_kv_keys_apart_from_the_rules() {
        assert_eq!(record_key(3, "cart"), "results.3.cart");
        assert_eq!(record_key(3, "plugin:pricing"), "results.3.plugin.pricing");
        // A rule named `plugin` has one token fewer than any plugin's key.
        assert_eq!(record_key(3, "plugin"), "results.3.plugin");
        for rule in ["cart", "plugin:pricing", "plugin"] {
            assert_eq!(rule_of_tail(&key_tail(rule)), rule);
        }
    }
}
