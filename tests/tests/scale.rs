//! Scaling out, end to end, with real processes: per-profile order across three instances while
//! they are SIGKILLed, restarted and joined; a paused owner fenced off; a cluster node restarted
//! under load. Each event of a profile carries its number; the rule checks it follows the last
//! one the profile saw and fires a `webhook("order-violation", …)` if not.

use std::time::Duration;

use nudge_tests::cluster::NatsCluster;
use nudge_tests::ordered::{self, assert_in_order_and_once, put_order_rule};
use nudge_tests::*;
use serde_json::json;

/// Short leases and checkpoints, so failovers happen within the test.
const FAST: [(&str, &str); 2] = [
    ("NUDGE_PARTITION_LEASE_MS", "2000"),
    ("NUDGE_CHECKPOINT_INTERVAL_MS", "200"),
];

const DRAIN: Duration = Duration::from_secs(120);

/// One round of ordered events, as fast as the broker takes them.
async fn publish_round(js: &async_nats::jetstream::Context, profiles: u32, n: u32) {
    ordered::publish_round(js, profiles, n, None, Duration::from_secs(60)).await;
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
