//! Scaling out, end to end, with real processes: per-profile order across three instances while
//! they are SIGKILLed, restarted and joined; a paused owner fenced off; a cluster node restarted
//! under load. Each event of a profile carries its number; the rule checks it follows the last
//! one the profile saw and fires a `webhook("order-violation", …)` if not.

use std::collections::HashMap;
use std::time::Duration;

use nudge_tests::cluster::NatsCluster;
use nudge_tests::*;
use serde_json::{Value, json};

const ORDER_RULE: &str = r#"
let last = profile.attributes.last ?? 0;
if event.data.n != last + 1 {
    webhook("order-violation", #{ n: event.data.n, last: last });
}
set_attribute("last", event.data.n);
push(#{ n: event.data.n });
"#;

/// Short leases and checkpoints, so failovers happen within the test.
const FAST: [(&str, &str); 2] = [
    ("NUDGE_PARTITION_LEASE_MS", "2000"),
    ("NUDGE_CHECKPOINT_INTERVAL_MS", "200"),
];

const DRAIN: Duration = Duration::from_secs(120);

async fn put_order_rule(nudge: &Nudge) {
    nudge
        .put_rule(
            "order",
            json!({"name": "order", "triggers": ["step.taken"], "script": ORDER_RULE}),
        )
        .await;
}

/// Publishes event number `n` of every profile in `profiles`, in that order, each with its id as
/// `Nats-Msg-Id`; what a broker hiccup refused is sent again before the next round starts, so
/// each profile's events stay in order in the stream.
async fn publish_round(js: &async_nats::jetstream::Context, profiles: u32, n: u32) {
    for chunk in (0..profiles).collect::<Vec<_>>().chunks(500) {
        let mut pending: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|p| {
                let id = format!("p{p}-{n}");
                let e = event(&id, "step.taken", &format!("user-{p}"), json!({ "n": n }));
                (id, serde_json::to_vec(&e).unwrap())
            })
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !pending.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the broker never took the events"
            );
            let mut acks = Vec::with_capacity(pending.len());
            for (id, body) in &pending {
                let message = async_nats::jetstream::message::PublishMessage::build()
                    .payload(body.clone().into())
                    .message_id(id);
                acks.push(js.send_publish("events.step.taken", message).await);
            }
            let mut stored = Vec::with_capacity(acks.len());
            for ack in acks {
                stored.push(match ack {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                });
            }
            let mut again = Vec::new();
            for (ok, event) in stored.into_iter().zip(pending) {
                if !ok {
                    again.push(event);
                }
            }
            pending = again;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Every action in `NUDGE_ACTIONS` by channel, and the pushes by causing event.
async fn actions(js: &async_nats::jetstream::Context) -> (Vec<Value>, HashMap<String, usize>) {
    let mut violations = Vec::new();
    let mut pushes: HashMap<String, usize> = HashMap::new();
    for message in read_all(js, "NUDGE_ACTIONS").await {
        let action = json_payload(&message);
        match action["type"].as_str() {
            Some("nudge.action.webhook") => violations.push(action["data"].clone()),
            Some("nudge.action.push") => {
                *pushes
                    .entry(action["causationid"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
            other => panic!("unexpected action type {other:?}"),
        }
    }
    (violations, pushes)
}

/// Every profile's events were decided once each, in order: no violation, one push per event.
async fn assert_in_order_and_once(js: &async_nats::jetstream::Context, profiles: u32, rounds: u32) {
    let (violations, pushes) = actions(js).await;
    assert!(
        violations.is_empty(),
        "{} events were decided out of order, e.g. {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    let expected = (profiles * rounds) as usize;
    let missing: Vec<String> = (0..profiles)
        .flat_map(|p| (1..=rounds).map(move |n| format!("p{p}-{n}")))
        .filter(|id| !pushes.contains_key(id))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "events without their action: {missing:?}…"
    );
    assert_eq!(pushes.len(), expected, "one push per event");
    assert!(
        pushes.values().all(|count| *count == 1),
        "an event's action stored twice"
    );
    assert_eq!(
        stream_len(js, "NUDGE_DLQ").await,
        0,
        "nothing dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn order_holds_across_instances_killed_restarted_and_joining() {
    const PROFILES: u32 = 2_000;
    const ROUNDS: u32 = 8;
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let a = Nudge::start(&nats, &FAST).await;
    let b = Nudge::start(&nats, &FAST).await;
    put_order_rule(&a).await;
    // B must run the rule before the first event.
    tokio::time::sleep(Duration::from_millis(300)).await;

    publish_round(&js, PROFILES, 1).await;
    publish_round(&js, PROFILES, 2).await;
    a.kill().await;
    publish_round(&js, PROFILES, 3).await;
    let a = Nudge::start(&nats, &FAST).await;
    publish_round(&js, PROFILES, 4).await;
    let c = Nudge::start(&nats, &FAST).await;
    publish_round(&js, PROFILES, 5).await;
    publish_round(&js, PROFILES, 6).await;
    b.kill().await;
    publish_round(&js, PROFILES, 7).await;
    let b = Nudge::start(&nats, &FAST).await;
    publish_round(&js, PROFILES, 8).await;

    wait_drained(&js, DRAIN).await;
    assert_in_order_and_once(&js, PROFILES, ROUNDS).await;

    // The three share the partitions.
    let (_, cluster) = c.api_get("/api/cluster").await;
    let instances = cluster["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 3, "{cluster:#}");
    for instance in instances {
        assert!(
            !instance["partitions"].as_array().unwrap().is_empty(),
            "every instance owns partitions: {cluster:#}"
        );
    }
    for nudge in [a, b, c] {
        assert!(nudge.stop().await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_owner_is_fenced_off_and_loses_no_update() {
    const PROFILES: u32 = 400;
    const ROUNDS: u32 = 6;
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let a = Nudge::start(&nats, &FAST).await;
    put_order_rule(&a).await;
    let b = Nudge::start(&nats, &FAST).await;
    // Wait until both own partitions.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, cluster) = b.api_get("/api/cluster").await;
        let owning = cluster["instances"].as_array().map_or(0, |i| {
            i.iter().filter(|i| i["partitions"] != json!([])).count()
        });
        if owning == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{cluster:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    publish_round(&js, PROFILES, 1).await;
    publish_round(&js, PROFILES, 2).await;
    // A freezes with events in hand; B takes its partitions once A's leases run out.
    a.pause();
    publish_round(&js, PROFILES, 3).await;
    publish_round(&js, PROFILES, 4).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    publish_round(&js, PROFILES, 5).await;
    // A wakes up believing it owns its partitions.
    a.resume();
    publish_round(&js, PROFILES, 6).await;
    wait_drained(&js, DRAIN).await;

    assert_in_order_and_once(&js, PROFILES, ROUNDS).await;
    // No update lost: every profile counted every event and saw the last one.
    for p in (0..PROFILES).step_by(37) {
        let (status, profile) = b.api_get(&format!("/api/profiles/user-{p}")).await;
        assert_eq!(status, 200);
        assert_eq!(profile["counters"]["step.taken"], ROUNDS, "{profile:#}");
        assert_eq!(profile["attributes"]["last"], ROUNDS, "{profile:#}");
    }
    // A noticed (within a few of its ticks) that its partitions had moved.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = a.metrics().await;
        let stopped = metrics
            .lines()
            .any(|l| l.starts_with("nudge_partitions_stopped_total") && !l.ends_with(" 0"));
        if stopped {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "A never noticed it lost its partitions:\n{}",
            a.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for nudge in [a, b] {
        assert!(nudge.stop().await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_node_restarted_under_load_loses_nothing() {
    const PROFILES: u32 = 500;
    const ROUNDS: u32 = 6;
    let mut cluster = NatsCluster::start(3).await;
    let replicated = [
        ("NUDGE_REPLICAS", "3"),
        ("NUDGE_PARTITION_LEASE_MS", "4000"),
        ("NUDGE_CHECKPOINT_INTERVAL_MS", "200"),
    ];
    let a = Nudge::serve(&cluster.url, &replicated).await;
    let b = Nudge::serve(&cluster.url, &replicated).await;
    put_order_rule(&a).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let js = cluster.jetstream().await;
    let (_, info) = a.api_get("/api/cluster").await;
    assert_eq!(info["partitions"], 16, "{info:#}");

    publish_round(&js, PROFILES, 1).await;
    publish_round(&js, PROFILES, 2).await;
    cluster.kill(0);
    publish_round(&js, PROFILES, 3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.restart(0);
    publish_round(&js, PROFILES, 4).await;
    cluster.kill(2);
    publish_round(&js, PROFILES, 5).await;
    cluster.restart(2);
    publish_round(&js, PROFILES, 6).await;

    wait_drained_or(&js, DRAIN, || {
        format!(
            "--- a\n{}\n--- b\n{}\n{}",
            a.logs(),
            b.logs(),
            cluster.logs()
        )
    })
    .await;
    assert_in_order_and_once(&js, PROFILES, ROUNDS).await;
    let mut events = js.get_stream("NUDGE_EVENTS").await.unwrap();
    assert_eq!(
        events.info().await.unwrap().config.num_replicas,
        3,
        "streams are replicated"
    );
    for nudge in [a, b] {
        assert!(nudge.stop().await, "{}", cluster.logs());
    }
}
