//! Settings: defaults, then a TOML file, then `NUDGE_*` environment variables, then flags.
//! Every limit nudge enforces is one of these fields; README.md lists them.

use std::path::PathBuf;

use std::collections::BTreeMap;

use nudge_rules::calendar::QuietHours;
use nudge_rules::rule::CapLimits;
use nudge_rules::schema::Unplanned;
use nudge_rules::{Limits, StateLimits};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// NATS server URL. `nudge up` starts its own `nats-server` when this is unset.
    pub nats_url: Option<String>,
    /// Credentials for NATS, one way at most: a `.creds` file (a user JWT and its nkey seed), a
    /// user and password, a token, or an nkey seed.
    pub nats_creds_file: Option<PathBuf>,
    pub nats_user: Option<String>,
    pub nats_password: Option<String>,
    pub nats_token: Option<String>,
    pub nats_nkey_seed: Option<String>,
    /// TLS to NATS: the CA certificate to trust (PEM; else the system's roots), a client
    /// certificate and its key for servers that verify clients, and whether to require TLS for
    /// `nats://` URLs too (`tls://` URLs always require it).
    pub nats_tls_ca: Option<PathBuf>,
    pub nats_tls_cert: Option<PathBuf>,
    pub nats_tls_key: Option<PathBuf>,
    pub nats_tls_required: bool,
    /// HTTP address of the API, ingest and metrics.
    pub listen: String,
    /// HTTPS on `listen` (rustls): the certificate chain and its private key, PEM files, both
    /// or neither. SIGHUP reloads them, so a renewed certificate needs no restart.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Bearer token with admin rights over the management API (and ingest).
    pub admin_token: Option<String>,
    /// Segment-style write key accepted by ingest (HTTP Basic user name).
    pub write_key: Option<String>,
    /// Named write keys (`/api/write-keys`) at most, revoked ones included.
    pub write_keys_max: usize,
    /// A write key's rate limit when it is created without one: requests per second to one
    /// instance, and how many at once. The `write_key` setting's key has this limit too.
    pub write_key_rate_per_s: u32,
    pub write_key_burst: u32,
    /// How long a rotated write key's previous secret is still accepted, unless the rotation
    /// says otherwise.
    pub write_key_rotation_grace_s: u64,
    /// With it (a Standard Webhooks secret, `whsec_…`), every ingest request must be signed
    /// (`webhook-id`, `webhook-timestamp`, `webhook-signature`), fresh and not replayed.
    pub ingest_signing_secret: Option<String>,
    /// How far a signed request's timestamp may be from now; its id is remembered twice as long.
    pub ingest_signature_tolerance_s: u64,
    /// Where `nudge up` keeps its `nats-server` store.
    pub data_dir: PathBuf,
    /// The `nats-server` executable `nudge up` runs.
    pub nats_server_bin: String,

    /// Partitions of the profile key. Fixed when the deployment's topology is created (the first
    /// start); `nudge partitions set` changes it with every instance stopped.
    pub partitions: u32,
    /// Replicas of every stream and bucket nudge creates (1 on a single server, 3 on a
    /// three-node cluster).
    pub replicas: usize,
    /// This instance's name in the cluster; a random one (host name + suffix) when unset.
    pub instance_id: Option<String>,
    /// How long an owner's partition lease lasts without renewal: the time a dead instance's
    /// partitions wait before another instance takes them.
    pub partition_lease_ms: u64,
    /// How often an owned partition writes its changed profiles and commits its position.
    pub checkpoint_interval_ms: u64,
    /// Changed profiles in one partition that trigger a checkpoint before the interval is up.
    pub checkpoint_max_profiles: usize,
    /// Actions sent and not yet confirmed per partition before it checkpoints early.
    pub max_pending_actions: usize,
    /// Profiles one partition keeps in memory (changed ones stay until written).
    pub partition_max_profiles: usize,
    /// Batches of read events queued per partition before the reader waits.
    pub partition_queue_batches: usize,
    /// Events one partition decides in one go on a decision thread.
    pub decide_batch_events: usize,
    /// Threads that run rules and plugins; 0: one per core (one fewer on more than two).
    pub decision_threads: usize,
    /// Messages per pull request of the event reader.
    pub fetch_batch: usize,
    /// Attempts to publish an event's action before the event goes to the DLQ.
    pub max_deliver: i64,
    /// Delays between those attempts; the last one repeats.
    pub retry_backoff_ms: Vec<u64>,
    /// Largest accepted event; larger ones go to the DLQ (NATS) or get 413 (HTTP).
    pub max_event_bytes: usize,

    /// JetStream dedupe window of `NUDGE_ACTIONS`: a redelivered event never duplicates an
    /// action published within this window.
    pub actions_duplicate_window_s: u64,
    /// JetStream dedupe window of `NUDGE_EVENTS` for events ingested over HTTP.
    pub events_duplicate_window_s: u64,
    pub events_max_age_s: u64,
    pub events_max_bytes: i64,
    pub actions_max_age_s: u64,
    pub actions_max_bytes: i64,
    pub dlq_max_age_s: u64,
    pub dlq_max_bytes: i64,
    /// Versions kept per rule are unbounded; this caps the rules bucket as a whole.
    pub rules_max_bytes: i64,

    /// Largest HTTP request body.
    pub max_body_bytes: usize,
    /// Most events in one ingest batch.
    pub max_batch_events: usize,
    /// Time allowed to finish in-flight events on shutdown.
    pub shutdown_grace_ms: u64,

    pub rule_max_operations: u64,
    pub rule_max_call_depth: usize,
    pub rule_max_expr_depth: usize,
    pub rule_max_string_bytes: usize,
    pub rule_max_array_len: usize,
    pub rule_max_map_len: usize,
    pub rule_max_variables: usize,
    pub rule_max_functions: usize,
    pub rule_max_actions: usize,
    pub rule_deadline_ms: u64,
    pub rule_max_script_bytes: usize,

    /// Wall-clock bound on one plugin call (epoch interruption).
    pub plugin_deadline_ms: u64,
    /// Linear memory one plugin instance may grow to.
    pub plugin_max_memory_bytes: usize,
    /// Wasm stack one plugin call may use.
    pub plugin_max_stack_bytes: usize,
    /// Elements of any table of a plugin instance.
    pub plugin_max_table_elements: usize,
    /// Core and component instances one plugin call may create.
    pub plugin_max_instances: usize,
    /// Fuel (roughly, wasm instructions) per plugin call; 0 turns fuel metering off.
    pub plugin_fuel: u64,
    /// Bytes of actions (or call result) one plugin call may return.
    pub plugin_max_output_bytes: usize,
    /// Actions one plugin call may return.
    pub plugin_max_actions: usize,
    /// Log lines one plugin call may write; further lines are dropped.
    pub plugin_max_log_lines: usize,
    /// Largest plugin upload (`.wasm` bytes).
    pub plugin_max_wasm_bytes: usize,
    /// Plugin calls that may run at once in this process (the pooling allocator's slots).
    pub plugin_pool_instances: u32,
    /// Clean calls a plugin instance serves before it is replaced; 1 gives every call a fresh
    /// instance (no state can pass between events, at the cost of instantiation per call).
    pub plugin_instance_max_calls: u64,
    /// Idle instances kept per loaded plugin version, ready for the next call.
    pub plugin_idle_instances: usize,
    /// Where compiled plugins are cached across restarts; `<data_dir>/plugin-cache` when unset.
    pub plugin_cache_dir: Option<PathBuf>,
    /// A directory of `<name>.wasm` (and optional `<name>.toml` manifests) stored as plugins at
    /// start-up when they differ from the stored version.
    pub plugins_dir: Option<PathBuf>,
    /// Caps the plugin code object store as a whole.
    pub plugins_max_bytes: i64,

    /// Events remembered per event type and profile for `count()`.
    pub profile_window_max_events: usize,
    /// Longest window `count()` can use; older entries are dropped.
    pub profile_window_max_age_s: u64,
    /// Event types tracked per profile (counters, last seen, windows).
    pub profile_max_event_types: usize,
    pub profile_max_attributes: usize,
    /// Largest attribute value, as JSON.
    pub profile_max_attribute_bytes: usize,
    /// Timers pending per profile.
    pub profile_max_timers: usize,
    /// Recent events per profile remembered to recognise a duplicate (same `source` + `id`).
    pub profile_applied_events: usize,
    /// Rules with a goal or holdout whose latest action a profile remembers, to attribute
    /// conversions; the stalest is forgotten first.
    pub profile_max_touches: usize,
    /// Largest stored profile state; an event that would grow it further goes to the DLQ.
    pub profile_max_bytes: usize,
    /// Caps the profiles bucket as a whole.
    pub profiles_max_bytes: i64,

    /// Days of per-day rule results kept (totals are kept for good).
    pub results_retention_days: u32,
    /// Versions per rule whose results are kept; the least recently active go first.
    pub results_max_versions: usize,
    /// Profiles each group needs before the uplift is shown.
    pub results_min_profiles: u64,
    /// Caps `NUDGE_DELIVERED`, one small message per delivered action of a rule or plugin
    /// (about 120 bytes), kept `results_retention_days`: the results' delivered counts.
    pub delivered_max_bytes: i64,

    /// Global frequency caps per channel, per profile, e.g. `push = { per_day = 3 }`.
    pub caps: BTreeMap<String, CapLimits>,
    /// Global quiet hours in each profile's time zone, e.g. `{ start = "21:00", end = "08:00" }`.
    pub quiet_hours: Option<QuietHours>,
    /// Channels whose marketing actions wait out quiet hours.
    pub quiet_channels: Vec<String>,

    /// The most decisions `GET /api/profiles/{id}/trace` answers (and walks back for).
    pub trace_max_per_profile: i64,
    pub trace_max_age_s: u64,
    pub trace_max_bytes: i64,
    /// Caps the pending-timers bucket as a whole.
    pub timers_max_bytes: i64,
    /// Stored events one backtest may read.
    pub backtest_max_events: u64,
    /// Actions and suppressions a backtest report shows as samples.
    pub backtest_sample: usize,

    /// A browser session ends after this long without a request.
    pub session_idle_timeout_s: u64,
    /// A browser session ends this long after sign-in, however active.
    pub session_max_age_s: u64,
    /// Send the session cookie with `Secure` (browsers still send it to http://localhost).
    pub session_cookie_secure: bool,
    /// Sign-in attempts per user name per minute (per instance); past it 429.
    pub login_attempts_per_minute: u32,
    /// Four-eyes mode: a marketer's rule change is a draft until a developer or admin approves.
    pub review_required: bool,
    pub audit_max_age_s: u64,
    pub audit_max_bytes: i64,
    /// Live views (`GET /api/live`) open at once on this instance.
    pub live_max_streams: usize,
    /// Items buffered per live view; a slower browser skips items (and is told how many).
    pub live_buffer_items: usize,
    /// Sample events pinned per rule.
    pub samples_max_per_rule: usize,
    /// Dead letters one `POST /api/dlq/redrive` re-drives at most (and a `kind` filter looks
    /// through).
    pub dlq_redrive_max: usize,
    /// How often each instance writes its rule and plugin figures for `GET /api/stats` (and its
    /// schema violations for `GET /api/schema-violations`).
    pub stats_flush_ms: u64,
    /// How long an instance's figures count after it stopped writing them.
    pub stats_max_age_s: u64,
    /// Consecutive limit failures (deadline, memory, fuel, stack) after which a plugin version is
    /// quarantined: its calls fail at once, without running, for `plugin_quarantine_ms`.
    pub plugin_quarantine_after: u32,
    pub plugin_quarantine_ms: u64,
    /// Stored events `GET /api/events/recent` looks back through.
    pub recent_events_scan: u64,
    /// Webhook endpoints stored at most.
    pub webhooks_max: usize,
    /// A webhook request's timeout when its endpoint sets none.
    pub webhook_timeout_ms: u64,
    /// The longest timeout an endpoint may set.
    pub webhook_timeout_max_ms: u64,
    /// Extra headers one endpoint may set.
    pub webhook_headers_max: usize,
    /// After a rotation, the previous secret still signs this long (receivers switch over).
    pub webhook_secret_overlap_s: u64,
    /// Attempts per webhook action before it is dead-lettered.
    pub webhook_max_attempts: u32,
    /// The wait before the second attempt; it doubles per attempt (with jitter) up to
    /// `webhook_retry_max_ms`.
    pub webhook_retry_base_ms: u64,
    pub webhook_retry_max_ms: u64,
    /// Failures in a row after which an endpoint's breaker opens.
    pub webhook_breaker_failures: u32,
    /// How long an open breaker holds deliveries before one probe goes out.
    pub webhook_breaker_cool_down_ms: u64,
    /// Webhook deliveries in flight per instance (the delivery consumer's pending acks too).
    pub webhook_in_flight_max: usize,
    /// Deliveries in flight per endpoint and instance: a slow endpoint holds no more slots.
    pub webhook_endpoint_in_flight_max: usize,
    /// Retention of the delivery log (`NUDGE_DELIVERIES`).
    pub deliveries_max_age_s: u64,
    pub deliveries_max_bytes: i64,

    /// The SMTP relay e-mails go through, `smtp://host:port` (port 587 when left out), or
    /// `smtps://host:port` for TLS from the first byte (465). Unset: e-mail actions wait in the
    /// DLQ (`no_relay`) until one is set and they are re-driven.
    pub smtp_url: Option<String>,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    /// STARTTLS on `smtp://`: `required` (refuse a relay that does not offer it),
    /// `opportunistic` or `never` (a trusted relay on the same host).
    pub smtp_starttls: StartTls,
    /// One SMTP exchange (connect, greet, send) at most.
    pub smtp_timeout_ms: u64,
    /// The sender of every e-mail, `Name <address>` or an address; required with `smtp_url`.
    pub email_from: Option<String>,
    /// The address people and mail clients reach this service at, for the unsubscribe links
    /// in e-mails; `http://<listen>` when unset.
    pub public_url: Option<String>,
    /// E-mail templates stored at most, and the size of one (subject and both bodies).
    pub email_templates_max: usize,
    pub email_template_max_bytes: usize,
    /// Rendering steps one e-mail may take (loops, filters), so a template cannot run away.
    pub email_render_fuel: u64,
    /// Attempts per e-mail before it is dead-lettered; then as for webhooks.
    pub email_max_attempts: u32,
    pub email_retry_base_ms: u64,
    pub email_retry_max_ms: u64,
    pub email_breaker_failures: u32,
    pub email_breaker_cool_down_ms: u64,
    /// E-mails in flight per instance (connections to the relay at most).
    pub email_in_flight_max: usize,

    /// What an event of a type with no schema comes to: `allow`, `warn` (counted, shown in its
    /// trace) or `block` (dead-lettered; 400 over HTTP).
    pub unplanned_events: Unplanned,
    /// Refuse a rule (or plugin) that reads a field its triggering types' schemas do not have,
    /// or compares one with a literal of another type; otherwise those are warnings.
    pub strict_schemas: bool,
    /// Event types with a schema at most, and the size of one schema document.
    pub schemas_max: usize,
    pub schema_max_bytes: usize,
    /// Recent stored events of a type that a new schema version is checked against, and that
    /// a draft is inferred from.
    pub schema_recent_events: usize,
    /// Versions of each type's schema kept compiled, newest first (older versions a
    /// CloudEvent's `dataschema` names are reported as `unknown_schema_version`).
    pub schema_versions_loaded: usize,
}

/// STARTTLS on a `smtp://` relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTls {
    Required,
    Opportunistic,
    Never,
}

const DAY_S: u64 = 86_400;
/// The actions' dedupe window must be this many times the longest replay after a failover:
/// room for a slow restore, a backlog, a broker restart in between.
const REPLAY_WINDOW_FACTOR: u64 = 10;

const GIB: i64 = 1 << 30;

impl Default for Settings {
    fn default() -> Self {
        let limits = Limits::default();
        let state = StateLimits::default();
        Settings {
            nats_url: None,
            nats_creds_file: None,
            nats_user: None,
            nats_password: None,
            nats_token: None,
            nats_nkey_seed: None,
            nats_tls_ca: None,
            nats_tls_cert: None,
            nats_tls_key: None,
            nats_tls_required: false,
            tls_cert: None,
            tls_key: None,
            listen: "127.0.0.1:8080".into(),
            admin_token: None,
            write_key: None,
            ingest_signing_secret: None,
            write_keys_max: 1_000,
            write_key_rate_per_s: 1_000,
            write_key_burst: 2_000,
            write_key_rotation_grace_s: DAY_S,
            ingest_signature_tolerance_s: 300,
            data_dir: PathBuf::from("nudge-data"),
            nats_server_bin: "nats-server".into(),
            partitions: 16,
            replicas: 1,
            instance_id: None,
            partition_lease_ms: 5_000,
            checkpoint_interval_ms: 500,
            checkpoint_max_profiles: 4_096,
            max_pending_actions: 4_096,
            partition_max_profiles: 4_096,
            partition_queue_batches: 8,
            decide_batch_events: 512,
            decision_threads: 0,
            fetch_batch: 512,
            max_deliver: 5,
            retry_backoff_ms: vec![1_000, 5_000, 30_000, 120_000],
            max_event_bytes: 64 * 1024,
            actions_duplicate_window_s: 2 * 3_600,
            events_duplicate_window_s: 2 * 3_600,
            events_max_age_s: 14 * DAY_S,
            events_max_bytes: 4 * GIB,
            actions_max_age_s: 7 * DAY_S,
            actions_max_bytes: 4 * GIB,
            dlq_max_age_s: 30 * DAY_S,
            dlq_max_bytes: GIB,
            rules_max_bytes: 256 * 1024 * 1024,
            max_body_bytes: 1024 * 1024,
            max_batch_events: 500,
            shutdown_grace_ms: 10_000,
            rule_max_operations: limits.max_operations,
            rule_max_call_depth: limits.max_call_depth,
            rule_max_expr_depth: limits.max_expr_depth,
            rule_max_string_bytes: limits.max_string_bytes,
            rule_max_array_len: limits.max_array_len,
            rule_max_map_len: limits.max_map_len,
            rule_max_variables: limits.max_variables,
            rule_max_functions: limits.max_functions,
            rule_max_actions: limits.max_actions,
            rule_deadline_ms: limits.deadline_ms,
            rule_max_script_bytes: limits.max_script_bytes,
            plugin_deadline_ms: 50,
            plugin_max_memory_bytes: 64 * 1024 * 1024,
            plugin_max_stack_bytes: 512 * 1024,
            plugin_max_table_elements: 20_000,
            plugin_max_instances: 16,
            plugin_fuel: 0,
            plugin_max_output_bytes: 256 * 1024,
            plugin_max_actions: 16,
            plugin_max_log_lines: 32,
            plugin_max_wasm_bytes: 16 * 1024 * 1024,
            plugin_pool_instances: 128,
            plugin_instance_max_calls: 1_000,
            plugin_idle_instances: 2,
            plugin_cache_dir: None,
            plugins_dir: None,
            plugins_max_bytes: GIB,
            profile_window_max_events: state.window_max_events,
            profile_window_max_age_s: (state.window_max_age_ms / 1_000) as u64,
            profile_max_event_types: state.max_event_types,
            profile_max_attributes: state.max_attributes,
            profile_max_attribute_bytes: state.max_attribute_bytes,
            profile_max_timers: state.max_timers,
            profile_max_touches: state.max_touches,
            profile_applied_events: state.applied_events,
            profile_max_bytes: 1024 * 1024,
            profiles_max_bytes: 2 * GIB,
            results_retention_days: 90,
            results_max_versions: 20,
            results_min_profiles: 50,
            delivered_max_bytes: GIB / 4,
            caps: BTreeMap::new(),
            quiet_hours: None,
            quiet_channels: vec!["push".into()],
            trace_max_per_profile: 100,
            trace_max_age_s: 7 * DAY_S,
            trace_max_bytes: GIB / 2,
            timers_max_bytes: GIB / 2,
            backtest_max_events: 10_000_000,
            backtest_sample: 20,
            session_idle_timeout_s: 3_600,
            session_max_age_s: 12 * 3_600,
            session_cookie_secure: true,
            login_attempts_per_minute: 10,
            review_required: false,
            audit_max_age_s: 400 * DAY_S,
            audit_max_bytes: GIB / 4,
            live_max_streams: 32,
            live_buffer_items: 256,
            samples_max_per_rule: 20,
            dlq_redrive_max: 10_000,
            stats_flush_ms: 2_000,
            stats_max_age_s: 30 * DAY_S,
            plugin_quarantine_after: 5,
            plugin_quarantine_ms: 30_000,
            recent_events_scan: 10_000,
            webhooks_max: 1_000,
            webhook_timeout_ms: 5_000,
            webhook_timeout_max_ms: 30_000,
            webhook_headers_max: 20,
            webhook_secret_overlap_s: DAY_S,
            webhook_max_attempts: 8,
            webhook_retry_base_ms: 5_000,
            webhook_retry_max_ms: 3_600_000,
            webhook_breaker_failures: 5,
            webhook_breaker_cool_down_ms: 30_000,
            webhook_in_flight_max: 256,
            webhook_endpoint_in_flight_max: 16,
            deliveries_max_age_s: 7 * DAY_S,
            deliveries_max_bytes: GIB / 4,
            smtp_url: None,
            smtp_username: None,
            smtp_password: None,
            smtp_starttls: StartTls::Required,
            smtp_timeout_ms: 30_000,
            email_from: None,
            public_url: None,
            email_templates_max: 500,
            email_template_max_bytes: 256 * 1_024,
            email_render_fuel: 100_000,
            email_max_attempts: 8,
            email_retry_base_ms: 30_000,
            email_retry_max_ms: 3_600_000,
            email_breaker_failures: 5,
            email_breaker_cool_down_ms: 60_000,
            email_in_flight_max: 16,
            unplanned_events: Unplanned::Allow,
            strict_schemas: false,
            schemas_max: 1_000,
            schema_max_bytes: 64 * 1_024,
            schema_recent_events: 200,
            schema_versions_loaded: 10,
        }
    }
}

mod derived;
mod load;
mod render;

pub use load::SettingsFlags;
pub use render::SECRETS;

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests;
