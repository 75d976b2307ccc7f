//! Failover time: two `nudge serve` instances share the partitions of a steady load (1,000
//! events/s over 2,000 profiles, one action per event); `FAILOVER_KILLS` times (default 10) one
//! of them is SIGKILLed, and the clock runs from the kill to the first action stored for an event
//! of one of its partitions published after the kill — decided, that is, by the instance that
//! took the partition over. A fresh instance then joins in the victim's place, and the next
//! kill waits until the partitions are shared again. Prints each failover and the p50 and max.
//! Run: `cargo build --release --bins && cargo bench -p nudge-tests --bench failover`
//! (`FAILOVER_LEASE_MS` sets `partition_lease_ms`, default the product's 5000).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use nudge_rules::partition::partition_of;
use nudge_tests::bench::env_number;
use nudge_tests::*;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const PROFILES: u64 = 2_000;
const EVENTS_PER_S: u64 = 1_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// An action as the watcher saw it stored.
struct Stored {
    at: Instant,
    profile: String,
    sent_ms: u64,
}

/// Publishes `EVENTS_PER_S` events/s, each carrying the time it was sent.
async fn load(client: async_nats::Client, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    let mut n = 0u64;
    while !cancel.is_cancelled() {
        interval.tick().await;
        for _ in 0..EVENTS_PER_S / 100 {
            let event = event(
                &format!("f-{n}"),
                "load.tick",
                &format!("user-{}", n % PROFILES),
                json!({ "sent_ms": now_ms() }),
            );
            let body = serde_json::to_vec(&event).expect("json");
            if client
                .publish("events.load.tick", body.into())
                .await
                .is_err()
            {
                return;
            }
            n += 1;
        }
    }
}

/// Follows `NUDGE_ACTIONS` from now on: only stored (deduplicated) actions count.
async fn watch(js: async_nats::jetstream::Context, seen: Arc<Mutex<Vec<Stored>>>) {
    let stream = js
        .get_stream("NUDGE_ACTIONS")
        .await
        .expect("actions stream");
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    while let Some(Ok(message)) = messages.next().await {
        let body = json_payload(&message);
        let profile = body["subject"]
            .as_str()
            .expect("an action names its profile")
            .to_owned();
        let sent_ms = body["data"]["sent_ms"]
            .as_u64()
            .expect("the echo rule copies sent_ms");
        seen.lock().expect("seen").push(Stored {
            at: Instant::now(),
            profile,
            sent_ms,
        });
    }
}

/// Partitions each instance owns, by instance id, as `nudge` sees the cluster.
async fn owners(nudge: &Nudge) -> Vec<(String, BTreeSet<u32>)> {
    let (_, cluster) = nudge.api_get("/api/cluster").await;
    let instances = cluster["instances"].as_array().expect("instances");
    instances
        .iter()
        .map(|i| {
            let partitions = i["partitions"]
                .as_array()
                .expect("partitions")
                .iter()
                .map(|p| p.as_u64().expect("a partition number") as u32)
                .collect();
            (i["id"].as_str().expect("id").to_owned(), partitions)
        })
        .collect()
}

/// Waits until two instances own `partitions` between them, split evenly.
async fn wait_shared(nudge: &Nudge, partitions: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let owned = owners(nudge).await;
        if owned.len() == 2 && owned.iter().all(|(_, p)| p.len() == partitions / 2) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "partitions never shared: {owned:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn main() {
    let kills = env_number("FAILOVER_KILLS", 10);
    let lease_ms = env_number("FAILOVER_LEASE_MS", 5_000).to_string();
    let env = [("NUDGE_PARTITION_LEASE_MS", lease_ms.as_str())];
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let nats = NatsServer::start();
        let js = nats.jetstream().await;
        let mut instances = vec![Nudge::start(&nats, &env).await];
        instances[0]
            .put_rule(
                "echo",
                json!({"name": "echo", "triggers": ["load.tick"],
                       "script": "push(#{ sent_ms: event.data.sent_ms })"}),
            )
            .await;
        instances.push(Nudge::start(&nats, &env).await);
        let (_, cluster) = instances[0].api_get("/api/cluster").await;
        let partitions = cluster["partitions"].as_u64().expect("partitions") as u32;

        let seen = Arc::new(Mutex::new(Vec::new()));
        let watcher = tokio::spawn(watch(js.clone(), seen.clone()));
        let cancel = CancellationToken::new();
        let loader = tokio::spawn(load(
            async_nats::connect(&nats.url).await.expect("connect"),
            cancel.clone(),
        ));

        let mut failovers_ms = Vec::new();
        for kill in 0..kills {
            wait_shared(&instances[0], partitions as usize).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let victim_index = (kill % 2) as usize;
            let survivor = &instances[1 - victim_index];
            let victim_id = {
                let (_, health) = instances[victim_index].api_get("/api/cluster").await;
                health["instance"].as_str().expect("instance id").to_owned()
            };
            let victim_partitions = owners(survivor)
                .await
                .into_iter()
                .find(|(id, _)| *id == victim_id)
                .map(|(_, p)| p)
                .expect("victim owns partitions");
            let killed_ms = now_ms();
            let killed_at = Instant::now();
            instances.remove(victim_index).kill().await;
            let deadline = Instant::now() + Duration::from_secs(120);
            let failover = loop {
                let found = seen
                    .lock()
                    .expect("seen")
                    .iter()
                    .filter(|s| s.at > killed_at && s.sent_ms > killed_ms)
                    .find(|s| victim_partitions.contains(&partition_of(&s.profile, partitions)))
                    .map(|s| s.at.duration_since(killed_at));
                if let Some(failover) = found {
                    break failover;
                }
                assert!(Instant::now() < deadline, "no failover within 120 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let ms = failover.as_millis() as u64;
            println!(
                "{}",
                json!({"kill": kill, "partitions_moved": victim_partitions.len(), "failover_ms": ms})
            );
            failovers_ms.push(ms);
            seen.lock().expect("seen").clear();
            instances.insert(victim_index, Nudge::start(&nats, &env).await);
        }
        cancel.cancel();
        loader.await.expect("load");
        watcher.abort();
        failovers_ms.sort_unstable();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "kills": kills,
                "partition_lease_ms": lease_ms,
                "events_per_s": EVENTS_PER_S,
                "p50_failover_ms": failovers_ms[failovers_ms.len() / 2],
                "max_failover_ms": failovers_ms.last(),
            }))
            .expect("summary")
        );
        for nudge in instances {
            nudge.stop().await;
        }
    });
}
