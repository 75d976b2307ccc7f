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

impl Stats {
    fn with(&self, key: &str, change: impl FnOnce(&mut Counts)) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if let Some(counts) = entries.get_mut(key) {
            change(counts);
        } else if entries.len() < STATS_MAX_ENTRIES {
            change(entries.entry(key.to_owned()).or_default());
        }
    }

    pub fn matched(&self, label: &str) {
        self.with(label_key(label), |c| c.matched += 1);
    }

    pub fn fired(&self, label: &str, now_ms: i64) {
        self.with(label_key(label), |c| {
            c.fired += 1;
            c.last_fired_ms = Some(now_ms);
        });
    }

    pub fn failed(&self, label: &str, message: &str) {
        self.with(label_key(label), |c| {
            c.errors += 1;
            c.last_error = Some(message.chars().take(500).collect());
        });
    }

    pub fn plugin_call(&self, plugin: &str, seconds: f64, fuel: Option<u64>) {
        self.with(&format!("plugin:{plugin}"), |c| {
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
        stats.matched("welcome@v1");
        stats.fired("welcome@v2", 5);
        stats.failed("plugin:offer@v1", "trap");
        stats.plugin_call("offer", 0.002, Some(10));
        let snap = stats.snapshot();
        assert_eq!(snap["welcome"].matched, 1);
        assert_eq!(snap["welcome"].fired, 1);
        assert_eq!(snap["welcome"].last_fired_ms, Some(5));
        assert_eq!(snap["plugin:offer"].errors, 1);
        assert_eq!(snap["plugin:offer"].calls, 1);
    }
}
