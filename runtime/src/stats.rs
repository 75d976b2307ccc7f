//! Per-rule and per-plugin figures for the UI (`GET /api/stats`): matched, fired, errors, last
//! fired, plugin calls and latency. Kept in this process like the Prometheus recorder (one
//! global, fed by the pipeline and the plugin host); each instance reports its own share.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;

/// Distinct rules and plugins tracked; past it new names are not counted.
pub const STATS_MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    pub matched: u64,
    pub fired: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fired_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub calls: u64,
    pub call_seconds_total: f64,
    pub call_seconds_max: f64,
    pub fuel_total: u64,
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
            with(&mut entries, label_key(label), |c| {
                c.fired += 1;
                c.last_fired_ms = Some(now_ms);
            });
        }
        for (label, message) in failed {
            with(&mut entries, label_key(label), |c| {
                c.errors += 1;
                c.last_error = Some(message.chars().take(500).collect());
            });
        }
    }

    pub fn failed(&self, label: &str, message: &str) {
        self.decision([], [], [(label, message.to_owned())], 0);
    }

    /// A plugin call; `key` is `plugin:<name>`, prepared once per loaded plugin.
    pub fn plugin_call(&self, key: &str, seconds: f64, fuel: Option<u64>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        with(&mut entries, key, |c| {
            c.calls += 1;
            c.call_seconds_total += seconds;
            c.call_seconds_max = c.call_seconds_max.max(seconds);
            c.fuel_total += fuel.unwrap_or(0);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_rule_and_plugin_across_versions() {
        let stats = Stats::default();
        stats.decision(["welcome@v1"], ["welcome@v2"], [], 5);
        stats.failed("plugin:offer@v1", "trap");
        stats.plugin_call("plugin:offer", 0.002, Some(10));
        let snap = stats.snapshot();
        assert_eq!(snap["welcome"].matched, 1);
        assert_eq!(snap["welcome"].fired, 1);
        assert_eq!(snap["welcome"].last_fired_ms, Some(5));
        assert_eq!(snap["plugin:offer"].errors, 1);
        assert_eq!(snap["plugin:offer"].calls, 1);
    }
}
