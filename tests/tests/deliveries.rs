//! Webhook delivery end to end: a rule's `webhook(…)` action reaches a local receiver signed,
//! with the action's id as `webhook-id`; answers worth retrying are retried on the schedule and
//! then delivered or dead-lettered; refusals are dead-lettered at once; 410 switches the
//! endpoint off; an action for an unknown endpoint is dead-lettered, and a re-drive after the fix
//! delivers it.

use std::time::Duration;

use nudge::delivery::signature::SigningKey;
use nudge_tests::receiver::{Received, Receiver};
use nudge_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Requests the receiver got for the action that `event_id` caused.
fn for_event(receiver: &Receiver, event_id: &str) -> Vec<Received> {
    receiver
        .received()
        .into_iter()
        .filter(|r| {
            serde_json::from_slice::<Value>(&r.body).is_ok_and(|e| e["causationid"] == event_id)
        })
        .collect()
}

/// Stores a rule that sends a webhook action for every `order.placed`, with `script`.
async fn order_rule(nudge: &Nudge, script: &str) {
    nudge
        .put_rule(
            "crm-sync",
            json!({"name": "crm sync", "triggers": ["order.placed"], "script": script}),
        )
        .await;
}

/// Creates the endpoint `name` with `spec`; answers its record (with the secret).
async fn create_endpoint(nudge: &Nudge, name: &str, spec: Value) -> Value {
    let (status, created) = nudge
        .api(Method::PUT, &format!("/api/webhooks/{name}"), Some(spec))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_actions_are_delivered_retried_refused_and_redriven() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(
        &nats,
        &[
            ("NUDGE_WEBHOOK_RETRY_BASE_MS", "200"),
            ("NUDGE_WEBHOOK_RETRY_MAX_MS", "400"),
            ("NUDGE_WEBHOOK_MAX_ATTEMPTS", "4"),
            ("NUDGE_WEBHOOK_BREAKER_FAILURES", "100"),
        ],
    )
    .await;
    let js = nats.jetstream().await;
    let receiver = Receiver::start().await;
    let created = create_endpoint(&nudge, "crm", json!({"url": receiver.url})).await;
    let key = SigningKey::parse(created["secret"].as_str().unwrap()).unwrap();
    order_rule(
        &nudge,
        r#"webhook(event.data.to, #{ total: event.data.total })"#,
    )
    .await;
    let order =
        |id: &str, to: &str| event(id, "order.placed", "user-1", json!({"total": 42, "to": to}));

    // Delivered once, signed, with the action's id.
    publish(&js, &order("o-1", "crm")).await;
    let delivered = until("o-1 delivered", async || for_event(&receiver, "o-1").pop()).await;
    let action: Value = serde_json::from_slice(&delivered.body).unwrap();
    assert_eq!(action["type"], "nudge.action.webhook");
    assert_eq!(action["data"]["payload"]["total"], 42);
    let id = delivered.header("webhook-id");
    assert_eq!(id, action["id"].as_str().unwrap());
    let timestamp_s: i64 = delivered.header("webhook-timestamp").parse().unwrap();
    assert!(key.verifies(
        delivered.header("webhook-signature"),
        id,
        timestamp_s,
        &delivered.body
    ));

    // A 503 is retried; once the endpoint recovers the action is delivered, and only then.
    receiver.answer(503, None);
    publish(&js, &order("o-2", "crm")).await;
    until("two attempts at o-2", async || {
        (for_event(&receiver, "o-2").len() >= 2).then_some(())
    })
    .await;
    receiver.answer(204, None);
    let attempts = until("o-2 delivered", async || {
        let seen = for_event(&receiver, "o-2");
        (seen.len() >= 3).then_some(seen)
    })
    .await;
    let ids: std::collections::BTreeSet<_> = attempts
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "every attempt carries the same webhook-id");

    // A refusal is dead-lettered at once; endless 503s after the last attempt.
    receiver.answer(422, None);
    publish(&js, &order("o-3", "crm")).await;
    let refused = nudge.dead_letter_of("o-3").await;
    assert_eq!(refused["subject"], "delivery.webhook", "{refused}");
    assert_eq!(refused["kind"], "delivery_refused", "{refused}");
    assert!(
        refused["reason"].as_str().unwrap().contains("422"),
        "{refused}"
    );
    assert_eq!(for_event(&receiver, "o-3").len(), 1, "not retried");

    receiver.answer(503, None);
    publish(&js, &order("o-4", "crm")).await;
    let exhausted = nudge.dead_letter_of("o-4").await;
    assert_eq!(exhausted["kind"], "delivery_failed", "{exhausted}");
    assert!(
        exhausted["reason"]
            .as_str()
            .unwrap()
            .contains("after 4 attempts"),
        "{exhausted}"
    );
    assert_eq!(for_event(&receiver, "o-4").len(), 4);

    // 410 Gone switches the endpoint off.
    receiver.answer(410, None);
    publish(&js, &order("o-5", "crm")).await;
    let gone = nudge.dead_letter_of("o-5").await;
    assert_eq!(gone["kind"], "endpoint_gone", "{gone}");
    let (_, endpoint) = nudge.api_get("/api/webhooks/crm").await;
    assert_eq!(endpoint["enabled"], false, "{endpoint}");
    assert!(
        endpoint["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410"),
        "{endpoint}"
    );

    // An unknown endpoint: dead-lettered, saying what to do.
    publish(&js, &order("o-6", "erp")).await;
    let unknown = nudge.dead_letter_of("o-6").await;
    assert_eq!(unknown["kind"], "no_endpoint", "{unknown}");
    assert!(
        unknown["reason"].as_str().unwrap().contains("`erp`"),
        "{unknown}"
    );

    // Fixed: the endpoint on again and answering; re-driving the exhausted delivery delivers it,
    // with its own id again, after a fresh round of attempts.
    receiver.answer(204, None);
    let (status, _) = nudge
        .api(
            Method::PUT,
            "/api/webhooks/crm",
            Some(json!({"url": receiver.url, "enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let sequence = exhausted["sequence"].as_u64().unwrap();
    let (status, answer) = nudge
        .api(Method::POST, &format!("/api/dlq/{sequence}/redrive"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let redriven = until("o-4 delivered after the re-drive", async || {
        let seen = for_event(&receiver, "o-4");
        (seen.len() == 5).then_some(seen)
    })
    .await;
    assert_eq!(
        redriven[4].header("webhook-id"),
        redriven[0].header("webhook-id")
    );

    // The profile's page: each action with where it stands and its attempts.
    let (status, log) = nudge.api_get("/api/profiles/user-1/deliveries").await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let standing = |event_id: &str| {
        let action_id = for_event(&receiver, event_id)[0]
            .header("webhook-id")
            .to_owned();
        log["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["action_id"] == action_id.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no delivery of {event_id} in {log}"))
    };
    let retried = standing("o-2");
    assert_eq!(retried["state"], "delivered", "{retried}");
    assert_eq!(retried["endpoint"], "crm");
    assert_eq!(retried["history"][0]["outcome"], "retry");
    assert_eq!(retried["history"][0]["status"], 503);
    assert_eq!(standing("o-3")["state"], "refused");
    let redriven = standing("o-4");
    assert_eq!(redriven["state"], "delivered", "{redriven}");
    assert_eq!(redriven["attempts"], 1, "a fresh round after the re-drive");
    let outcomes: Vec<&str> = redriven["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["retry", "retry", "retry", "retry", "redriven", "delivered"]
    );
    assert_eq!(standing("o-5")["state"], "gone");

    // The endpoint's figures, as the Webhooks page shows them.
    let (_, stats) = nudge.api_get("/api/stats").await;
    let crm = &stats["webhooks"]["crm"];
    assert!(crm["fired"].as_u64().unwrap() >= 3, "{stats}");
    assert!(
        crm["errors"].as_u64().unwrap() >= 6,
        "503s, 422, 410: {stats}"
    );
    assert!(crm["last_error"].is_string(), "{stats}");

    let metrics = nudge.metrics().await;
    for line in [
        r#"nudge_deliveries_total{channel="webhook",outcome="delivered"}"#,
        r#"nudge_deliveries_total{channel="webhook",outcome="retry"}"#,
        r#"nudge_deliveries_total{channel="webhook",outcome="refused"}"#,
        r#"nudge_deliveries_total{channel="webhook",outcome="gone"}"#,
        r#"nudge_dlq_total{reason="delivery_failed"}"#,
        r#"nudge_deliveries_pending{channel="webhook"}"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

/// An instance SIGKILLed while its request is in flight: another instance delivers the action
/// after the ack wait, with the same `webhook-id`, and nothing is dead-lettered.
#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_cut_short_by_sigkill_is_delivered_by_another_instance() {
    let nats = NatsServer::start();
    let settings = [("NUDGE_WEBHOOK_TIMEOUT_MAX_MS", "1000")];
    let first = Nudge::start(&nats, &settings).await;
    let js = nats.jetstream().await;
    let receiver = Receiver::start().await;
    create_endpoint(
        &first,
        "crm",
        json!({"url": receiver.url, "timeout_ms": 1000}),
    )
    .await;
    order_rule(&first, r#"webhook("crm", #{ total: 1 })"#).await;
    receiver.stall(Duration::from_millis(900));
    publish(&js, &event("k-1", "order.placed", "user-1", json!({}))).await;
    until("the first attempt in flight", async || {
        (!for_event(&receiver, "k-1").is_empty()).then_some(())
    })
    .await;
    first.kill().await;
    receiver.stall(Duration::ZERO);
    let second = Nudge::start(&nats, &settings).await;
    let seen = until("k-1 delivered by the second instance", async || {
        let seen = for_event(&receiver, "k-1");
        (seen.len() >= 2).then_some(seen)
    })
    .await;
    assert!(
        seen.iter()
            .all(|r| r.header("webhook-id") == seen[0].header("webhook-id")),
        "the same webhook-id every time"
    );
    let (_, dlq) = second.api_get("/api/dlq").await;
    assert_eq!(dlq["total"], 0, "{dlq}");
    // Counted once in the results; a count redone for the same action (a crash between the
    // delivery and its ack) is still one.
    let counted = until("the delivery counted", async || {
        let counted = nudge::delivered::of(&js, "crm-sync").await.unwrap();
        (!counted.is_empty()).then_some(counted)
    })
    .await;
    let (&day, &n) = counted[&1].iter().next().unwrap();
    assert_eq!(n, 1, "{counted:?}");
    let action_id = seen[0].header("webhook-id");
    let subject = format!("delivered.rule.crm-sync.1.{day}");
    nudge::delivered::record(&js, subject, action_id)
        .await
        .unwrap();
    let again = nudge::delivered::of(&js, "crm-sync").await.unwrap();
    assert_eq!(again, counted);
}

/// One endpoint down, another up: the breaker of the first opens (and stops the attempts), the
/// second's deliveries arrive meanwhile; once the first recovers, a probe closes its breaker.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_endpoint_opens_its_breaker_and_holds_up_no_other() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(
        &nats,
        &[
            ("NUDGE_WEBHOOK_BREAKER_FAILURES", "3"),
            ("NUDGE_WEBHOOK_BREAKER_COOL_DOWN_MS", "1000"),
            ("NUDGE_WEBHOOK_RETRY_BASE_MS", "100"),
            ("NUDGE_WEBHOOK_RETRY_MAX_MS", "200"),
            ("NUDGE_WEBHOOK_MAX_ATTEMPTS", "1000"),
        ],
    )
    .await;
    let js = nats.jetstream().await;
    let (down, up) = (Receiver::start().await, Receiver::start().await);
    down.answer(503, None);
    for (name, receiver) in [("down", &down), ("up", &up)] {
        create_endpoint(&nudge, name, json!({"url": receiver.url})).await;
    }
    order_rule(&nudge, r#"webhook(event.data.to, #{})"#).await;
    for n in 0..20 {
        let to = if n % 2 == 0 { "down" } else { "up" };
        let data = json!({ "to": to });
        publish(
            &js,
            &event(
                &format!("b-{n}"),
                "order.placed",
                &format!("user-{n}"),
                data,
            ),
        )
        .await;
    }
    // All of them while the other endpoint still fails: none waited behind its retries.
    until("every delivery to the live endpoint", async || {
        (up.received().len() == 10).then_some(())
    })
    .await;
    until("the dead endpoint's breaker open", async || {
        nudge
            .metrics()
            .await
            .contains(r#"nudge_delivery_breaker_open{channel="webhook",endpoint="down"} 1"#)
            .then_some(())
    })
    .await;
    // While open, attempts stop: within half a cool-down the dead endpoint hears nothing new.
    let heard = down.received().len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        down.received().len() <= heard + 1,
        "an open breaker sends at most a probe: {heard} then {}",
        down.received().len()
    );

    down.answer(204, None);
    until(
        "the dead endpoint's deliveries once it recovers",
        async || {
            let delivered = down
                .received()
                .iter()
                .map(|r| r.header("webhook-id").to_owned())
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            let metrics = nudge.metrics().await;
            (delivered == 10
                && metrics.contains(
                    r#"nudge_delivery_breaker_open{channel="webhook",endpoint="down"} 0"#,
                ))
            .then_some(())
        },
    )
    .await;
    let (_, dlq) = nudge.api_get("/api/dlq").await;
    assert_eq!(dlq["total"], 0, "{dlq}");
}

/// `rate_per_s` spaces an endpoint's deliveries: ten at 5 per second take nearly two seconds,
/// however fast they were decided.
#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_rate_spaces_its_deliveries() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    let receiver = Receiver::start().await;
    create_endpoint(&nudge, "crm", json!({"url": receiver.url, "rate_per_s": 5})).await;
    order_rule(&nudge, r#"webhook("crm", #{})"#).await;
    for n in 0..10 {
        let id = format!("r-{n}");
        publish(
            &js,
            &event(&id, "order.placed", &format!("user-{n}"), json!({})),
        )
        .await;
    }
    let received = until("ten deliveries", async || {
        let received = receiver.received();
        (received.len() == 10).then_some(received)
    })
    .await;
    let spread = received[9].at - received[0].at;
    assert!(
        spread >= Duration::from_millis(1_700),
        "ten deliveries at 5/s arrived within {spread:?}"
    );
}
