//! Per-rule, per-plugin and per-delivery-target (webhook endpoint, SMTP relay) figures for the
//! UI (`GET /api/stats`): matched, fired, errors, last fired, plugin calls and latency, delivery
//! attempts, latency and breakers. Counted in each process (one global, fed by the pipeline, the
//! plugin host and the delivery worker), written every `stats_flush_ms` to `NUDGE_STATS` under
//! the instance's id, and summed over every instance's entry when asked — so every instance
//! answers the same figures.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Distinct rules and plugins tracked; past it new names are not counted.
pub const STATS_MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    pub matched: u64,
    pub fired: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fired_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_ms: Option<i64>,
    pub calls: u64,
    pub call_seconds_total: f64,
    pub call_seconds_max: f64,
    /// Calls per latency bucket ([`CALL_BUCKETS_MS`], then slower): counts add up across
    /// instances, so a percentile can be read from their sum.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub call_buckets: Vec<u64>,
    pub fuel_total: u64,
    /// A plugin quarantined after repeated limit failures: until when (wall clock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined_until_ms: Option<i64>,
    /// A webhook endpoint whose breaker holds its deliveries (on any instance).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub breaker_open: bool,
}

/// Upper bounds of the call latency buckets, in milliseconds.
pub const CALL_BUCKETS_MS: [u64; 15] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000,
];

/// Characters of an error message kept as `last_error`.
const LAST_ERROR_MAX_CHARS: usize = 500;

impl Counts {
    fn fire(&mut self, now_ms: i64) {
        self.fired += 1;
        self.last_fired_ms = Some(now_ms);
    }

    fn fail(&mut self, message: &str, now_ms: i64) {
        self.errors += 1;
        self.last_error = Some(message.chars().take(LAST_ERROR_MAX_CHARS).collect());
        self.last_error_ms = Some(now_ms);
    }

    fn call(&mut self, seconds: f64) {
        self.calls += 1;
        self.call_seconds_total += seconds;
        self.call_seconds_max = self.call_seconds_max.max(seconds);
        let ms = seconds * 1_000.0;
        let bucket = CALL_BUCKETS_MS
            .iter()
            .position(|bound| ms <= *bound as f64)
            .unwrap_or(CALL_BUCKETS_MS.len());
        self.call_buckets.resize(CALL_BUCKETS_MS.len() + 1, 0);
        self.call_buckets[bucket] += 1;
    }

    /// The 99th percentile of the calls' latency, as the upper bound of its bucket (the
    /// slowest call's time when it falls past the last bound); `None` before any call.
    pub fn call_p99_ms(&self) -> Option<f64> {
        let counted: u64 = self.call_buckets.iter().sum();
        if counted == 0 {
            return None;
        }
        let rank = counted - counted / 100;
        let mut seen = 0;
        for (bucket, count) in self.call_buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let slowest_ms = self.call_seconds_max * 1_000.0;
                return Some(
                    CALL_BUCKETS_MS
                        .get(bucket)
                        .map_or(slowest_ms, |b| *b as f64),
                );
            }
        }
        None
    }

    /// Adds another instance's figures: sums, maxima, and the later of the "last" ones.
    pub fn merge(&mut self, other: &Counts) {
        self.matched += other.matched;
        self.fired += other.fired;
        self.errors += other.errors;
        self.last_fired_ms = self.last_fired_ms.max(other.last_fired_ms);
        if other.last_error_ms > self.last_error_ms {
            self.last_error_ms = other.last_error_ms;
            self.last_error = other.last_error.clone();
        }
        self.calls += other.calls;
        self.call_seconds_total += other.call_seconds_total;
        self.call_seconds_max = self.call_seconds_max.max(other.call_seconds_max);
        if self.call_buckets.len() < other.call_buckets.len() {
            self.call_buckets.resize(other.call_buckets.len(), 0);
        }
        for (mine, theirs) in self.call_buckets.iter_mut().zip(&other.call_buckets) {
            *mine += theirs;
        }
        self.fuel_total += other.fuel_total;
        self.quarantined_until_ms = self.quarantined_until_ms.max(other.quarantined_until_ms);
        self.breaker_open |= other.breaker_open;
    }
}

#[derive(Default)]
pub struct Stats {
    entries: Mutex<HashMap<String, Counts>>,
}

/// The id part of a trace label: `welcome@v3` → `welcome`, `plugin:offer@v2` → `plugin:offer`.
pub fn label_key(label: &str) -> &str {
    label.rsplit_once("@v").map_or(label, |(key, _)| key)
}

/// Applies `change` to the counts of `key`, creating them while there is room.
fn with(entries: &mut HashMap<String, Counts>, key: &str, change: impl FnOnce(&mut Counts)) {
    if let Some(counts) = entries.get_mut(key) {
        change(counts);
    } else if entries.len() < STATS_MAX_ENTRIES {
        change(entries.entry(key.to_owned()).or_default());
    }
}

impl Stats {
    /// One decision's figures under one lock: the labels matched and fired, and the failures
    /// as (label, message).
    pub fn decision<'a>(
        &self,
        matched: impl IntoIterator<Item = &'a str>,
        fired: impl IntoIterator<Item = &'a str>,
        failed: impl IntoIterator<Item = (&'a str, String)>,
        now_ms: i64,
    ) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        for label in matched {
            with(&mut entries, label_key(label), |c| c.matched += 1);
        }
        for label in fired {
            with(&mut entries, label_key(label), |c| c.fire(now_ms));
        }
        for (label, message) in failed {
            with(&mut entries, label_key(label), |c| c.fail(&message, now_ms));
        }
    }

    pub fn failed(&self, label: &str, message: &str, now_ms: i64) {
        self.decision([], [], [(label, message.to_owned())], now_ms);
    }

    /// A plugin call; `key` is `plugin:<name>`, prepared once per loaded plugin.
    pub fn plugin_call(&self, key: &str, seconds: f64, fuel: Option<u64>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        with(&mut entries, key, |c| {
            c.call(seconds);
            c.fuel_total += fuel.unwrap_or(0);
        });
    }

    /// A plugin (`plugin:<name>`) quarantined until `until_ms`, or (`None`) out of it.
    pub fn quarantine(&self, key: &str, until_ms: Option<i64>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        with(&mut entries, key, |c| c.quarantined_until_ms = until_ms);
    }

    /// A delivery attempt to an endpoint (`webhook:<name>`): `calls` are attempts, `fired` the
    /// delivered ones, `errors` the rest (with the last error), and the breaker's state after it.
    pub fn delivery(
        &self,
        key: &str,
        seconds: f64,
        error: Option<&str>,
        breaker_open: bool,
        now_ms: i64,
    ) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        with(&mut entries, key, |c| {
            c.call(seconds);
            c.breaker_open = breaker_open;
            match error {
                None => c.fire(now_ms),
                Some(message) => c.fail(message, now_ms),
            }
        });
    }

    pub fn snapshot(&self) -> HashMap<String, Counts> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

pub fn global() -> &'static Stats {
    static STATS: OnceLock<Stats> = OnceLock::new();
    STATS.get_or_init(Stats::default)
}

/// Writes this instance's figures to `NUDGE_STATS` every `every`, and once more at `shutdown`.
pub async fn share(
    bucket: kv::Store,
    instance: String,
    every: Duration,
    shutdown: CancellationToken,
) {
    share_with(bucket, instance, every, shutdown, || {
        serde_json::to_vec(&global().snapshot())
    })
    .await;
}

/// Writes `snapshot()` under this instance's id every `every`, and once more at `shutdown`
/// (the stats, the schema violations report).
pub async fn share_with(
    bucket: kv::Store,
    instance: String,
    every: Duration,
    shutdown: CancellationToken,
    snapshot: impl Fn() -> serde_json::Result<Vec<u8>>,
) {
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(every) => false,
        };
        match snapshot() {
            Ok(bytes) => {
                if let Err(error) = bucket.put(&instance, bytes.into()).await {
                    tracing::debug!(%error, bucket = %bucket.name, "could not share this instance's figures");
                }
            }
            Err(error) => {
                tracing::error!(%error, bucket = %bucket.name, "this instance's figures cannot be serialized")
            }
        }
        if stopping {
            return;
        }
    }
}

/// The stored entries of every instance but `instance` (whose current figures the caller has).
pub async fn others<T: DeserializeOwned>(
    bucket: &kv::Store,
    instance: &str,
) -> anyhow::Result<Vec<T>> {
    let mut entries = Vec::new();
    let mut keys = bucket.keys().await?;
    while let Some(key) = keys.next().await {
        let key = key?;
        if key == instance {
            continue;
        }
        let Some(bytes) = bucket.get(&key).await? else {
            continue;
        };
        entries.push(serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "the figures of instance {key} in {} are unreadable: {e}",
                bucket.name
            )
        })?);
    }
    Ok(entries)
}

/// Every instance's figures summed: the stored entries of the others and this instance's own,
/// current ones (`instance` is its id).
pub async fn cluster_wide(
    bucket: &kv::Store,
    instance: &str,
) -> anyhow::Result<HashMap<String, Counts>> {
    let mut total = global().snapshot();
    for theirs in others::<HashMap<String, Counts>>(bucket, instance).await? {
        for (name, counts) in theirs {
            total.entry(name).or_default().merge(&counts);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_rule_and_plugin_across_versions() {
        let stats = Stats::default();
        stats.decision(["welcome@v1"], ["welcome@v2"], [], 5);
        stats.failed("plugin:offer@v1", "trap", 7);
        stats.plugin_call("plugin:offer", 0.002, Some(10));
        let snap = stats.snapshot();
        assert_eq!(snap["welcome"].matched, 1);
        assert_eq!(snap["welcome"].fired, 1);
        assert_eq!(snap["welcome"].last_fired_ms, Some(5));
        assert_eq!(snap["plugin:offer"].errors, 1);
        assert_eq!(snap["plugin:offer"].calls, 1);
        stats.delivery(
            "webhook:crm",
            0.1,
            Some("the endpoint answered 503"),
            true,
            8,
        );
        stats.delivery("webhook:crm", 0.3, None, false, 9);
        let crm = &stats.snapshot()["webhook:crm"];
        assert_eq!((crm.calls, crm.fired, crm.errors), (2, 1, 1));
        assert_eq!(crm.call_seconds_max, 0.3);
        assert!(!crm.breaker_open, "closed again after the delivery");
    }

    #[test]
    fn instances_add_up() {
        let mut a = Counts {
            fired: 2,
            last_fired_ms: Some(10),
            last_error: Some("old".into()),
            last_error_ms: Some(1),
            call_seconds_max: 0.5,
            ..Counts::default()
        };
        let b = Counts {
            fired: 3,
            last_fired_ms: Some(5),
            last_error: Some("new".into()),
            last_error_ms: Some(9),
            call_seconds_max: 0.2,
            ..Counts::default()
        };
        a.merge(&b);
        assert_eq!(a.fired, 5);
        assert_eq!(a.last_fired_ms, Some(10));
        assert_eq!(a.last_error.as_deref(), Some("new"));
        assert_eq!(a.call_seconds_max, 0.5);
    }

    #[test]
    fn the_p99_comes_from_every_instance_calls() {
        let mut a = Counts::default();
        for _ in 0..98 {
            a.call(0.003);
        }
        assert_eq!(a.call_p99_ms(), Some(5.0));
        let mut b = Counts::default();
        b.call(0.150);
        b.call(0.150);
        a.merge(&b);
        // 100 calls: the 99th slowest is one of b's.
        assert_eq!(a.call_p99_ms(), Some(200.0));
        let mut slow = Counts::default();
        slow.call(90.0);
        assert_eq!(
            slow.call_p99_ms(),
            Some(90_000.0),
            "past the last bound: the slowest"
        );
        assert_eq!(Counts::default().call_p99_ms(), None);
    }
}
