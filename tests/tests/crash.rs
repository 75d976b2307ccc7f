//! Crash safety: SIGKILL nudge three times while it drains 5,000 events; after the restarts
//! every event's action is stored exactly once.

use std::collections::HashSet;
use std::time::Duration;

use futures::future::join_all;
use nudge_tests::*;
use serde_json::json;

const EVENTS: u64 = 5_000;

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_three_times_while_draining_loses_and_duplicates_nothing() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    // First start creates the streams and stores the rule; then it is killed before any event.
    let nudge = Nudge::start(&nats, &[]).await;
    nudge
        .put_rule(
            "every-order",
            json!({"name": "r", "triggers": ["order.placed"],
            "script": "push(#{ title: `Order ${event.data.n}`, padding: event.data.padding })"}),
        )
        .await;
    nudge.kill().await;

    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(500) {
        let acks = join_all(chunk.iter().map(|n| {
            let js = js.clone();
            async move {
                let e = event(
                    &format!("order-{n}"),
                    "order.placed",
                    &format!("user-{}", n % 700),
                    json!({"n": n, "padding": "p".repeat(150)}),
                );
                js.publish(
                    "events.order.placed",
                    serde_json::to_vec(&e).unwrap().into(),
                )
                .await
                .unwrap()
                .await
            }
        }))
        .await;
        assert!(acks.iter().all(Result::is_ok));
    }
    assert_eq!(stream_len(&js, "NUDGE_EVENTS").await, EVENTS);

    let mut kills = 0;
    for threshold in [500, 1_800, 3_100] {
        let nudge = Nudge::start(&nats, &[]).await;
        loop {
            let stored = stream_len(&js, "NUDGE_ACTIONS").await;
            if stored >= threshold || stored >= EVENTS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        nudge.kill().await;
        kills += 1;
    }
    assert_eq!(kills, 3);
    let killed_at = stream_len(&js, "NUDGE_ACTIONS").await;
    assert!(
        killed_at < EVENTS,
        "the last SIGKILL landed mid-drain ({killed_at} actions stored)"
    );

    let nudge = Nudge::start(&nats, &[]).await;
    wait_for_len(
        &js,
        "NUDGE_ACTIONS",
        EVENTS,
        Duration::from_secs(120),
        &format!("draining after restarts; log:\n{}", nudge.logs()),
    )
    .await;
    wait_drained(&js, Duration::from_secs(60)).await;
    assert!(nudge.stop().await);

    assert_eq!(
        stream_len(&js, "NUDGE_ACTIONS").await,
        EVENTS,
        "exactly one action per event"
    );
    let actions = read_stream(&js, "NUDGE_ACTIONS", EVENTS as usize + 10).await;
    let causes: HashSet<String> = actions
        .iter()
        .map(|m| json_payload(m)["causationid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(causes.len() as u64, EVENTS, "every event has its action");
}

/// Publishes, retrying while the broker is away (a client sees errors until it reconnects).
async fn publish_until_stored(js: &async_nats::jetstream::Context, e: &serde_json::Value) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let subject = format!("events.{}", e["type"].as_str().unwrap());
        if let Ok(ack) = js
            .publish(subject, serde_json::to_vec(e).unwrap().into())
            .await
            && ack.await.is_ok()
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the broker never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nudge_rides_out_a_broker_crash_without_losing_or_doubling_actions() {
    let mut nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    nudge
        .put_rule(
            "r",
            json!({"name": "r", "triggers": [">"], "script": "push(#{ n: event.data.n })"}),
        )
        .await;
    for phase in ["before", "after"] {
        if phase == "after" {
            nats.crash_and_restart(Duration::from_millis(500));
        }
        for n in 0..300 {
            let e = event(
                &format!("{phase}-{n}"),
                "cart.updated",
                &format!("u{}", n % 30),
                json!({"n": n}),
            );
            publish_until_stored(&js, &e).await;
        }
    }
    wait_for_len(
        &js,
        "NUDGE_ACTIONS",
        600,
        Duration::from_secs(60),
        &nudge.logs(),
    )
    .await;
    wait_drained(&js, Duration::from_secs(60)).await;
    assert_eq!(
        stream_len(&js, "NUDGE_ACTIONS").await,
        600,
        "one action per event"
    );
    assert!(
        nudge.metrics().await.contains("nudge_events_in_total"),
        "nudge still serves"
    );
}
