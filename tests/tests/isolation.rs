//! A misbehaving plugin slows its own partition, never the API, ingest or other partitions: a
//! burst of events whose plugin loops to its deadline or hoards memory, sent to profiles of one
//! partition while plain events of other partitions and API requests flow. The plain events'
//! latency (publish to stored action) and the API's answers are measured quiet and during the
//! burst; the burst may cost them a small factor, not seconds. The figures are printed for
//! BENCHMARKS.md.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use nudge_rules::partition::partition_of;
use nudge_tests::*;
use serde_json::json;

const PARTITIONS: u32 = 16;
const HOSTILE_EVENTS: usize = 256;
const PLAIN_EVENTS: usize = 120;
const API_CALLS: usize = 60;

/// Profile keys of partition `partition` (or, with `not`, of any other).
fn profiles(partition: u32, not: bool, count: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("user-{i}"))
        .filter(|key| (partition_of(key, PARTITIONS) == partition) != not)
        .take(count)
        .collect()
}

fn percentile(mut samples: Vec<Duration>, p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[index]
}

/// Sends plain events one at a time, `gap` apart, and answers each one's time from publish to
/// its action being stored.
async fn plain_latencies(
    js: &async_nats::jetstream::Context,
    arrivals: &Arc<Mutex<HashMap<String, Instant>>>,
    keys: &[String],
    tag: &str,
    gap: Duration,
) -> Vec<Duration> {
    let mut sent = Vec::new();
    for (i, key) in keys.iter().cycle().take(PLAIN_EVENTS).enumerate() {
        let id = format!("{tag}-{i}");
        let started = Instant::now();
        publish(js, &event(&id, "plain.seen", key, json!({}))).await;
        sent.push((id, started));
        tokio::time::sleep(gap).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = arrivals.lock().unwrap().clone();
        if sent.iter().all(|(id, _)| seen.contains_key(id)) {
            return sent
                .iter()
                .map(|(id, started)| seen[id].duration_since(*started))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "plain events without their action"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Times `API_CALLS` requests to the API and to ingest, `gap` apart.
async fn api_latencies(nudge: &Nudge, gap: Duration) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let mut samples = Vec::new();
    for i in 0..API_CALLS {
        let started = Instant::now();
        let status = if i % 2 == 0 {
            client
                .get(nudge.url("/api/rules"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .status()
        } else {
            client
                .post(nudge.url("/v1/events"))
                .basic_auth(WRITE_KEY, Some(""))
                .json(&event(
                    &format!("ingest-{i}"),
                    "api.seen",
                    "api-user",
                    json!({}),
                ))
                .send()
                .await
                .unwrap()
                .status()
        };
        assert!(status.is_success(), "{status}");
        samples.push(started.elapsed());
        tokio::time::sleep(gap).await;
    }
    samples
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_plugin_burst_slows_neither_the_api_nor_other_partitions() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let nudge = Nudge::start(&nats, &[]).await;
    nudge
        .put_plugin(
            "hostile",
            plugin_wasm("hostile"),
            json!({ "triggers": ["hostile.*"] }),
        )
        .await;
    nudge
        .put_rule(
            "plain",
            json!({"name": "plain", "triggers": ["plain.*"], "script": "push(#{ ok: true })"}),
        )
        .await;
    // Every stored action's arrival, by the event that caused it.
    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let client = async_nats::connect(&nats.url).await.unwrap();
    let mut actions = client.subscribe("actions.>").await.unwrap();
    {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while let Some(message) = actions.next().await {
                let action: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
                if let Some(cause) = action["causationid"].as_str() {
                    arrivals
                        .lock()
                        .unwrap()
                        .insert(cause.to_owned(), Instant::now());
                }
            }
        });
    }
    // Wait until the plugin runs here.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nudge.metrics().await.contains("nudge_plugins_loaded 1") {
        assert!(Instant::now() < deadline, "the plugin never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let hostile_partition = 3;
    let plain = profiles(hostile_partition, true, 40);
    let hostile = profiles(hostile_partition, false, 16);
    let gap = Duration::from_millis(10);
    let quiet_plain = plain_latencies(&js, &arrivals, &plain, "quiet", gap).await;
    let quiet_api = api_latencies(&nudge, gap).await;

    // The burst: a loop to the deadline or a memory hoard per event, all on one partition.
    let burst = async {
        for i in 0..HOSTILE_EVENTS {
            let kind = if i % 2 == 0 { "loop" } else { "memory" };
            let key = &hostile[i % hostile.len()];
            publish(
                &js,
                &event(
                    &format!("bad-{i}"),
                    &format!("hostile.{kind}"),
                    key,
                    json!({}),
                ),
            )
            .await;
        }
    };
    let (_, busy_plain, busy_api) = tokio::join!(
        burst,
        plain_latencies(&js, &arrivals, &plain, "busy", gap),
        api_latencies(&nudge, gap)
    );
    wait_drained(&js, Duration::from_secs(120)).await;

    let figures = json!({
        "plain_event_ms": {
            "quiet": {"p50": percentile(quiet_plain.clone(), 0.5).as_secs_f64() * 1e3,
                      "p99": percentile(quiet_plain.clone(), 0.99).as_secs_f64() * 1e3},
            "burst": {"p50": percentile(busy_plain.clone(), 0.5).as_secs_f64() * 1e3,
                      "p99": percentile(busy_plain.clone(), 0.99).as_secs_f64() * 1e3},
        },
        "api_ms": {
            "quiet": {"p50": percentile(quiet_api.clone(), 0.5).as_secs_f64() * 1e3,
                      "p99": percentile(quiet_api.clone(), 0.99).as_secs_f64() * 1e3},
            "burst": {"p50": percentile(busy_api.clone(), 0.5).as_secs_f64() * 1e3,
                      "p99": percentile(busy_api.clone(), 0.99).as_secs_f64() * 1e3},
        },
    });
    eprintln!("isolation figures: {figures}");

    // A small factor, not the seconds a stalled event loop costs: ten times the quiet p99, with
    // a floor for this shared two-core machine's jitter.
    let bound = |quiet: &[Duration]| {
        (percentile(quiet.to_vec(), 0.99) * 10).max(Duration::from_millis(250))
    };
    let plain_p99 = percentile(busy_plain, 0.99);
    assert!(
        plain_p99 <= bound(&quiet_plain),
        "plain events slowed by the burst: {figures}\n{}",
        nudge.logs()
    );
    let api_p99 = percentile(busy_api, 0.99);
    assert!(
        api_p99 <= bound(&quiet_api),
        "the API slowed by the burst: {figures}"
    );

    // The plugin failed alone (no action, no dead letter) and was quarantined.
    let hostile_acted = arrivals
        .lock()
        .unwrap()
        .keys()
        .any(|cause| cause.starts_with("bad-"));
    assert!(!hostile_acted, "a hostile event made an action");
    assert_eq!(stream_len(&js, "NUDGE_DLQ").await, 0);
    let metrics = nudge.metrics().await;
    assert!(
        metrics.contains("nudge_plugin_quarantined{plugin=\"hostile\"} 1"),
        "the plugin was quarantined:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("hostile"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(nudge.logs().contains("plugin quarantined"));
}
