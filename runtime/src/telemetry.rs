//! Logs (`tracing`, `RUST_LOG`) and Prometheus metrics: the names of every metric live here so
//! dashboards have one place to look.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const EVENTS_IN: &str = "nudge_events_in_total";
pub const EVENTS_PROCESSED: &str = "nudge_events_processed_total";
pub const EVENTS_INGESTED: &str = "nudge_events_ingested_total";
pub const ACTIONS_OUT: &str = "nudge_actions_out_total";
pub const ACTIONS_DEDUPLICATED: &str = "nudge_actions_deduplicated_total";
pub const RULE_ERRORS: &str = "nudge_rule_errors_total";
pub const DLQ: &str = "nudge_dlq_total";
pub const PUBLISH_RETRIES: &str = "nudge_action_publish_retries_total";
pub const PROCESSING_SECONDS: &str = "nudge_event_processing_seconds";
pub const BATCH_SECONDS: &str = "nudge_decide_batch_seconds";
pub const RULE_EVAL_SECONDS: &str = "nudge_rule_eval_seconds";
pub const CONSUMER_PENDING: &str = "nudge_consumer_pending_events";
pub const EVENTS_SKIPPED: &str = "nudge_events_skipped_total";
pub const PARTITIONS_OWNED: &str = "nudge_partitions_owned";
pub const PARTITIONS_ACQUIRED: &str = "nudge_partitions_acquired_total";
pub const PARTITIONS_LOST: &str = "nudge_partitions_stopped_total";
pub const PARTITION_POSITION: &str = "nudge_partition_position";
pub const PARTITION_LAG: &str = "nudge_partition_lag_events";
pub const CHECKPOINT_SECONDS: &str = "nudge_checkpoint_seconds";
pub const CHECKPOINT_PROFILES: &str = "nudge_checkpoint_profiles_total";
pub const PLUGIN_QUARANTINED: &str = "nudge_plugin_quarantined";
pub const RULES_LOADED: &str = "nudge_rules_loaded";
pub const PLUGIN_CALLS: &str = "nudge_plugin_calls_total";
pub const PLUGIN_ERRORS: &str = "nudge_plugin_errors_total";
pub const PLUGIN_CALL_SECONDS: &str = "nudge_plugin_call_seconds";
pub const PLUGIN_FUEL: &str = "nudge_plugin_fuel_consumed";
pub const PLUGINS_LOADED: &str = "nudge_plugins_loaded";
pub const ACTIONS_SUPPRESSED: &str = "nudge_actions_suppressed_total";
pub const ACTIONS_HELD: &str = "nudge_actions_held_total";
pub const TIMERS_FIRED: &str = "nudge_timers_fired_total";
pub const TIMER_LATENESS_SECONDS: &str = "nudge_timer_lateness_seconds";
pub const TIMERS_PENDING: &str = "nudge_timers_pending";
pub const DELIVERIES: &str = "nudge_deliveries_total";
pub const DELIVERY_SECONDS: &str = "nudge_delivery_seconds";
pub const DELIVERY_BREAKER_OPEN: &str = "nudge_delivery_breaker_open";
pub const DELIVERIES_PENDING: &str = "nudge_deliveries_pending";
pub const UNSUBSCRIBES: &str = "nudge_unsubscribes_total";
pub const SCHEMA_VIOLATIONS: &str = "nudge_schema_violations_total";
pub const READY: &str = "nudge_ready";
pub const PARTITION_COUNT: &str = "nudge_partition_count";
pub const DLQ_EVENTS: &str = "nudge_dlq_events";
pub const INGEST_RATE_LIMITED: &str = "nudge_ingest_rate_limited_total";
pub const RESULTS_TRIMMED: &str = "nudge_results_trimmed_total";
pub const DELIVERED_UNCOUNTED: &str = "nudge_delivered_uncounted_total";

/// Every metric nudge exports under its own name (a closed set: the README's metrics table is
/// held equal to it, with the `process_*` metrics of [`PROCESS_METRICS`]).
pub const ALL: [&str; 44] = [
    EVENTS_IN,
    EVENTS_PROCESSED,
    EVENTS_INGESTED,
    ACTIONS_OUT,
    ACTIONS_DEDUPLICATED,
    RULE_ERRORS,
    DLQ,
    PUBLISH_RETRIES,
    PROCESSING_SECONDS,
    BATCH_SECONDS,
    RULE_EVAL_SECONDS,
    CONSUMER_PENDING,
    EVENTS_SKIPPED,
    PARTITIONS_OWNED,
    PARTITIONS_ACQUIRED,
    PARTITIONS_LOST,
    PARTITION_POSITION,
    PARTITION_LAG,
    CHECKPOINT_SECONDS,
    CHECKPOINT_PROFILES,
    PLUGIN_QUARANTINED,
    RULES_LOADED,
    PLUGIN_CALLS,
    PLUGIN_ERRORS,
    PLUGIN_CALL_SECONDS,
    PLUGIN_FUEL,
    PLUGINS_LOADED,
    ACTIONS_SUPPRESSED,
    ACTIONS_HELD,
    TIMERS_FIRED,
    TIMER_LATENESS_SECONDS,
    TIMERS_PENDING,
    DELIVERIES,
    DELIVERY_SECONDS,
    DELIVERY_BREAKER_OPEN,
    DELIVERIES_PENDING,
    UNSUBSCRIBES,
    SCHEMA_VIOLATIONS,
    READY,
    PARTITION_COUNT,
    DLQ_EVENTS,
    INGEST_RATE_LIMITED,
    RESULTS_TRIMMED,
    DELIVERED_UNCOUNTED,
];

/// The process metrics of `metrics-process` nudge exports (Linux), collected at each scrape.
pub const PROCESS_METRICS: [&str; 8] = [
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
];

/// The process collector, described once with the other metrics.
static PROCESS: std::sync::LazyLock<metrics_process::Collector> =
    std::sync::LazyLock::new(metrics_process::Collector::default);

/// What `/metrics` reads at each scrape rather than when it changes.
pub struct ScrapeFigures {
    pub ready: bool,
    pub partitions: usize,
    /// Messages in `NUDGE_DLQ`; `None` when the stream could not be read (the gauge keeps its
    /// last value, and the failure is logged).
    pub dlq_events: Option<u64>,
}

/// Sets the scrape-time gauges and the process metrics.
pub fn scraped(figures: ScrapeFigures) {
    PROCESS.collect();
    gauge!(READY).set(if figures.ready { 1.0 } else { 0.0 });
    gauge!(PARTITION_COUNT).set(figures.partitions as f64);
    if let Some(events) = figures.dlq_events {
        gauge!(DLQ_EVENTS).set(events as f64);
    }
}

pub fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init()
        .ok();
}

/// Installs the global recorder; the handle renders `/metrics`.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    let latency_buckets = [
        0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency_buckets)?
        .install_recorder()?;
    describe_counter!(
        EVENTS_IN,
        "Events of owned partitions taken for a decision (replays after a takeover included)."
    );
    describe_counter!(
        EVENTS_PROCESSED,
        "Events finished, by outcome: decided, skipped (already in the restored state) or dlq."
    );
    describe_counter!(
        EVENTS_SKIPPED,
        "Events read and left to other instances (their partitions are not owned here)."
    );
    describe_counter!(EVENTS_INGESTED, "Events accepted over HTTP, by endpoint.");
    describe_counter!(ACTIONS_OUT, "Actions published, by channel.");
    describe_counter!(
        ACTIONS_DEDUPLICATED,
        "Action publishes JetStream dropped as duplicates."
    );
    describe_counter!(
        RULE_ERRORS,
        "Rule failures, by rule and reason (error or the limit hit)."
    );
    describe_counter!(DLQ, "Events moved to the dead-letter stream, by reason.");
    describe_counter!(
        DELIVERIES,
        "Delivery attempts, by channel and outcome (delivered, retry, gone, refused)."
    );
    describe_histogram!(
        DELIVERY_SECONDS,
        "One delivery attempt, from request to answer (or timeout), by channel."
    );
    describe_gauge!(
        DELIVERIES_PENDING,
        "Actions waiting for their first delivery attempt (the delivery consumer's backlog), by channel."
    );
    describe_gauge!(
        DELIVERY_BREAKER_OPEN,
        "1 while a target's breaker holds its deliveries (open or half-open), by channel and endpoint (a webhook's name, the SMTP relay's host:port)."
    );
    describe_counter!(
        UNSUBSCRIBES,
        "Opt-outs through the unsubscribe links in e-mails, by channel."
    );
    describe_counter!(
        SCHEMA_VIOLATIONS,
        "Violations of event schemas, by kind and outcome (warned, blocked)."
    );
    describe_counter!(
        PUBLISH_RETRIES,
        "Action publishes sent again after a transient failure."
    );
    describe_histogram!(
        PROCESSING_SECONDS,
        "From the reader taking an event to its actions being sent, per event."
    );
    describe_histogram!(
        BATCH_SECONDS,
        "Deciding one batch of a partition's events, profiles loading included."
    );
    describe_histogram!(
        RULE_EVAL_SECONDS,
        "Evaluation of all rules an event triggered."
    );
    describe_gauge!(
        CONSUMER_PENDING,
        "Events in the stream after the last one this instance read (its reader's lag)."
    );
    describe_gauge!(PARTITIONS_OWNED, "Partitions this instance owns.");
    describe_counter!(
        PARTITIONS_ACQUIRED,
        "Partitions this instance took (at start, rebalancing, or over from a dead instance)."
    );
    describe_counter!(
        PARTITIONS_LOST,
        "Partitions that stopped here without a release (taken over, or the lease ran out)."
    );
    describe_gauge!(
        PARTITION_POSITION,
        "The stream sequence a partition's last checkpoint covers, by partition."
    );
    describe_gauge!(
        PARTITION_LAG,
        "Stream messages after a partition's committed position, by partition."
    );
    describe_histogram!(
        CHECKPOINT_SECONDS,
        "One checkpoint: actions confirmed, timers, profiles and position written."
    );
    describe_counter!(
        CHECKPOINT_PROFILES,
        "Profiles written by checkpoints, by partition."
    );
    describe_gauge!(
        PLUGIN_QUARANTINED,
        "1 while a plugin version is quarantined after repeated limit failures, by plugin."
    );
    describe_gauge!(RULES_LOADED, "Rules in the running rule set.");
    describe_counter!(
        PLUGIN_CALLS,
        "Plugin calls, by plugin and export (handle or call)."
    );
    describe_counter!(
        PLUGIN_ERRORS,
        "Plugin call failures, by plugin and reason (deadline, memory, stack, fuel, output, actions, trap, error, pool)."
    );
    describe_histogram!(
        PLUGIN_CALL_SECONDS,
        "Wall time of one plugin call, by plugin."
    );
    describe_histogram!(
        PLUGIN_FUEL,
        "Fuel one plugin call used, by plugin (when metered)."
    );
    describe_gauge!(PLUGINS_LOADED, "Plugins in the running plugin set.");
    describe_counter!(
        ACTIONS_SUPPRESSED,
        "Actions policy stopped, by reason (consent, cooldown, priority, cap) and channel."
    );
    describe_counter!(
        ACTIONS_HELD,
        "Actions held by quiet hours, to be released when they end."
    );
    describe_counter!(
        TIMERS_FIRED,
        "Due timers published, by kind (timer event or held-action release)."
    );
    describe_histogram!(
        TIMER_LATENESS_SECONDS,
        "How long after its due time a timer fired."
    );
    describe_gauge!(TIMERS_PENDING, "Timers this instance knows are waiting.");
    describe_gauge!(READY, "1 while this instance answers /readyz with 200.");
    describe_gauge!(
        PARTITION_COUNT,
        "Partitions of the events stream (the topology's count)."
    );
    describe_gauge!(DLQ_EVENTS, "Messages in the dead-letter stream NUDGE_DLQ.");
    describe_counter!(
        INGEST_RATE_LIMITED,
        "Ingest requests refused with 429 because their write key was over its rate, by key."
    );
    describe_counter!(
        RESULTS_TRIMMED,
        "Times a partition's results record for a rule outgrew profile_max_bytes and lost its oldest days."
    );
    describe_counter!(
        DELIVERED_UNCOUNTED,
        "Delivered actions not counted in the results: NUDGE_DELIVERED unreachable, or an action without its rule version or time."
    );
    PROCESS.describe();
    Ok(handle)
}

pub fn rule_failed(rule: &str, reason: &'static str, limit: Option<&'static str>) {
    counter!(RULE_ERRORS, "rule" => rule.to_owned(), "reason" => reason, "limit" => limit.unwrap_or("")).increment(1);
}

pub fn ingest_rate_limited(key: &str) {
    counter!(INGEST_RATE_LIMITED, "key" => key.to_owned()).increment(1);
}

pub fn dead_lettered(reason_kind: &'static str) {
    counter!(DLQ, "reason" => reason_kind).increment(1);
}

pub fn reader_lag(pending: u64) {
    gauge!(CONSUMER_PENDING).set(pending as f64);
}

pub fn partitions_owned(owned: usize) {
    gauge!(PARTITIONS_OWNED).set(owned as f64);
}

/// One partition's checkpoint: how long it took, what it wrote, where it stands.
pub fn checkpointed(partition: &str, seconds: f64, profiles: usize, position: u64, lag: u64) {
    histogram!(CHECKPOINT_SECONDS).record(seconds);
    counter!(CHECKPOINT_PROFILES, "partition" => partition.to_owned()).increment(profiles as u64);
    gauge!(PARTITION_POSITION, "partition" => partition.to_owned()).set(position as f64);
    gauge!(PARTITION_LAG, "partition" => partition.to_owned()).set(lag as f64);
}

/// Metric handles of one loaded plugin, resolved once per version rather than per call.
pub struct PluginMeters {
    /// `plugin:<name>`, the plugin's key in `stats`.
    stats_key: String,
    handle_calls: metrics::Counter,
    rule_calls: metrics::Counter,
    seconds: metrics::Histogram,
    fuel: metrics::Histogram,
}

impl PluginMeters {
    pub fn new(plugin: &str) -> PluginMeters {
        let name = plugin.to_owned();
        PluginMeters {
            stats_key: format!("plugin:{plugin}"),
            handle_calls: counter!(PLUGIN_CALLS, "plugin" => name.clone(), "export" => "handle"),
            rule_calls: counter!(PLUGIN_CALLS, "plugin" => name.clone(), "export" => "call"),
            seconds: histogram!(PLUGIN_CALL_SECONDS, "plugin" => name.clone()),
            fuel: histogram!(PLUGIN_FUEL, "plugin" => name),
        }
    }

    pub fn called(&self, from_rule: bool, seconds: f64, fuel: Option<u64>) {
        if from_rule {
            self.rule_calls.increment(1);
        } else {
            self.handle_calls.increment(1);
        }
        self.seconds.record(seconds);
        crate::stats::global().plugin_call(&self.stats_key, seconds, fuel);
        if let Some(fuel) = fuel {
            self.fuel.record(fuel as f64);
        }
    }
}

pub fn plugin_failed(plugin: &str, reason: &'static str, now_ms: i64) {
    counter!(PLUGIN_ERRORS, "plugin" => plugin.to_owned(), "reason" => reason).increment(1);
    crate::stats::global().failed(&format!("plugin:{plugin}"), reason, now_ms);
}

/// A plugin entered quarantine (for `cooldown`) or left it (`None`).
pub fn plugin_quarantined(plugin: &str, cooldown: Option<std::time::Duration>) {
    gauge!(PLUGIN_QUARANTINED, "plugin" => plugin.to_owned())
        .set(f64::from(u8::from(cooldown.is_some())));
    let until_ms = cooldown.map(|c| crate::clock::SystemClock.now_ms_plus(c));
    crate::stats::global().quarantine(&format!("plugin:{plugin}"), until_ms);
}

pub fn timer_fired(kind: &'static str, lateness_seconds: f64) {
    metrics::counter!(TIMERS_FIRED, "kind" => kind).increment(1);
    metrics::histogram!(TIMER_LATENESS_SECONDS).record(lateness_seconds.max(0.0));
}

pub fn timers_pending(pending: usize) {
    metrics::gauge!(TIMERS_PENDING).set(pending as f64);
}

pub fn suppressed(reason: &'static str, channel: &'static str) {
    metrics::counter!(ACTIONS_SUPPRESSED, "reason" => reason, "channel" => channel).increment(1);
}

#[cfg(test)]
mod tests {
    use super::{ALL, PROCESS_METRICS};

    /// The metric names of the README's metrics table, in its order.
    fn readme_metrics() -> Vec<String> {
        let readme = include_str!("../../README.md");
        let table = readme
            .split_once("\n## Metrics\n")
            .and_then(|(_, rest)| rest.split_once("\n## "))
            .map(|(table, _)| table)
            .expect("README has a Metrics section");
        // The first cell names one metric or several: `a{label}`, `b`.
        table
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|row| row.split_once(" | ").map(|(cell, _)| cell))
            .flat_map(|cell| cell.split(", `"))
            .map(|name| name.split(['`', '{']).next().expect("a name").to_owned())
            .collect()
    }

    #[test]
    fn the_readme_names_every_metric_and_no_other() {
        let mut documented = readme_metrics();
        documented.sort();
        let mut exported: Vec<String> = ALL
            .iter()
            .chain(PROCESS_METRICS.iter())
            .map(|name| (*name).to_owned())
            .collect();
        exported.sort();
        assert_eq!(documented, exported);
    }
}
