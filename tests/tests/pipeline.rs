//! The event pipeline through a real nats-server and the real `nudge` process.

use std::time::Duration;

use nudge_tests::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn push_rule(triggers: &[&str], script: &str) -> serde_json::Value {
    json!({ "name": "test rule", "triggers": triggers, "script": script })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_fires_and_the_action_arrives_as_a_cloudevent() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    let stored = nudge
        .put_rule(
            "cart-push",
            push_rule(
                &["cart.*"],
                r#"push(#{ title: `Cart at ${event.data.total}`, body: "Come back" })"#,
            ),
        )
        .await;
    assert_eq!(stored["version"], 1);

    publish(
        &js,
        &event("evt-1", "cart.updated", "user-42", json!({"total": 80})),
    )
    .await;
    wait_for_len(&js, "NUDGE_ACTIONS", 1, WAIT, &nudge.logs()).await;

    let messages = read_stream(&js, "NUDGE_ACTIONS", 10).await;
    assert_eq!(messages.len(), 1);
    let action = json_payload(&messages[0]);
    assert_eq!(messages[0].subject.as_str(), "actions.push");
    assert_eq!(action["specversion"], "1.0");
    assert_eq!(action["type"], "nudge.action.push");
    assert_eq!(action["subject"], "user-42");
    assert_eq!(action["causationid"], "evt-1");
    assert_eq!(action["rule"], "cart-push@v1");
    assert_eq!(
        action["data"],
        json!({"title": "Cart at 80", "body": "Come back"})
    );
    let msg_id = messages[0]
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.to_string());
    assert_eq!(
        msg_id.as_deref(),
        action["id"].as_str(),
        "Nats-Msg-Id is the action id"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_event_twice_stores_one_action() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    nudge
        .put_rule(
            "once",
            push_rule(
                &["order.placed"],
                r#"push(#{ title: "thanks" }); webhook("crm", #{})"#,
            ),
        )
        .await;

    let duplicate = event("evt-dup", "order.placed", "user-7", json!({}));
    publish(&js, &duplicate).await;
    publish(&js, &duplicate).await;
    wait_drained(&js, WAIT).await;

    assert_eq!(
        stream_len(&js, "NUDGE_EVENTS").await,
        2,
        "both copies reached the stream"
    );
    assert_eq!(
        stream_len(&js, "NUDGE_ACTIONS").await,
        2,
        "one push and one webhook, not four"
    );
    // The profile recognised the second copy; its actions, if republished while the first
    // copy's were still in flight, were dropped by JetStream's duplicate window.
    let (_, trace) = nudge.api_get("/api/profiles/user-7/trace").await;
    assert_eq!(
        trace["decisions"][0]["skipped"], "already decided (a duplicate of an earlier event)",
        "{trace:#}"
    );
    assert_eq!(
        trace["decisions"][1]["fired"].as_array().map(Vec::len),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages_land_in_the_dlq_with_their_reason() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    nudge.put_rule("r", push_rule(&[">"], r#"push(#{})"#)).await;

    js.publish("events.cart.updated", "not json at all".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let no_subject = json!({"specversion":"1.0","id":"x","source":"s","type":"cart.updated"});
    js.publish("events.cart.updated", no_subject.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    publish(&js, &event("fine", "cart.updated", "user-1", json!({}))).await;
    wait_drained(&js, WAIT).await;

    let dead = read_stream(&js, "NUDGE_DLQ", 10).await;
    assert_eq!(dead.len(), 2);
    let reason = |i: usize| {
        dead[i]
            .headers
            .as_ref()
            .unwrap()
            .get("Nudge-Dlq-Reason")
            .unwrap()
            .to_string()
    };
    assert_eq!(dead[0].subject.as_str(), "dlq.events.cart.updated");
    assert_eq!(
        &dead[0].payload[..],
        b"not json at all",
        "the original payload is kept"
    );
    assert!(reason(0).contains("not valid JSON"), "{}", reason(0));
    assert!(reason(1).contains("subject: is required"), "{}", reason(1));
    assert_eq!(
        dead[1]
            .headers
            .as_ref()
            .unwrap()
            .get("Nudge-Original-Sequence")
            .unwrap()
            .as_str(),
        "2"
    );
    assert_eq!(
        stream_len(&js, "NUDGE_ACTIONS").await,
        1,
        "poison events do not block the good one"
    );
    assert!(
        nudge
            .metrics()
            .await
            .contains("nudge_dlq_total{reason=\"invalid_event\"} 2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_looping_rule_fails_alone_and_the_failure_is_visible() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    nudge.put_rule("looper", json!({"name": "loops", "triggers": ["cart.updated"], "priority": 10, "script": "loop {}"})).await;
    nudge
        .put_rule(
            "fine",
            push_rule(&["cart.updated"], r#"push(#{ title: "still fires" })"#),
        )
        .await;

    publish(&js, &event("evt-loop", "cart.updated", "user-3", json!({}))).await;
    wait_drained(&js, WAIT).await;

    let actions = read_stream(&js, "NUDGE_ACTIONS", 10).await;
    assert_eq!(actions.len(), 1);
    assert_eq!(json_payload(&actions[0])["rule"], "fine@v1");
    let metrics = nudge.metrics().await;
    assert!(
        metrics.contains(
            r#"nudge_rule_errors_total{rule="looper",reason="limit",limit="rule_max_operations"} 1"#
        ),
        "{metrics}"
    );
    let logs = nudge.logs();
    assert!(
        logs.contains("rule failed on event")
            && logs.contains("evt-loop")
            && logs.contains("rule_max_operations"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_change_is_picked_up_live_by_every_instance() {
    let nats = NatsServer::start();
    let editor = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    editor
        .put_rule(
            "live",
            push_rule(&["page.viewed"], r#"push(#{ title: "one" })"#),
        )
        .await;
    // A second instance shares the consumer and must see the edit made through the first.
    let _other = Nudge::start(&nats, &[]).await;

    publish(&js, &event("before", "page.viewed", "user-1", json!({}))).await;
    wait_for_len(&js, "NUDGE_ACTIONS", 1, WAIT, "first version").await;
    let changed = editor
        .put_rule(
            "live",
            push_rule(&["page.viewed"], r#"push(#{ title: "two" })"#),
        )
        .await;
    assert_eq!(changed["version"], 2);

    // Propagation is a KV watch away; give it a moment, then every new event sees version 2.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..20 {
        publish(
            &js,
            &event(
                &format!("after-{i}"),
                "page.viewed",
                &format!("user-{i}"),
                json!({}),
            ),
        )
        .await;
    }
    wait_drained(&js, WAIT).await;
    let actions = read_stream(&js, "NUDGE_ACTIONS", 100).await;
    assert_eq!(actions.len(), 21);
    for action in &actions[1..] {
        let action = json_payload(action);
        assert_eq!(action["data"]["title"], "two", "{action}");
        assert_eq!(action["rule"], "live@v2");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_checkpoints_and_releases_every_partition() {
    let nats = NatsServer::start();
    // A long lease: a partition the first instance did not release would keep the second one
    // waiting past the drain's deadline.
    let long_lease = [("NUDGE_PARTITION_LEASE_MS", "120000")];
    let nudge = Nudge::start(&nats, &long_lease).await;
    let js = nats.jetstream().await;
    nudge.put_rule("r", push_rule(&[">"], r#"push(#{})"#)).await;
    for i in 0..500 {
        publish(
            &js,
            &event(
                &format!("e{i}"),
                "cart.updated",
                &format!("u{}", i % 20),
                json!({}),
            ),
        )
        .await;
    }
    assert!(nudge.stop().await, "nudge exits 0 on SIGTERM");
    // What the first one did not finish, the next one resumes at once.
    let _next = Nudge::start(&nats, &long_lease).await;
    wait_drained(&js, WAIT).await;
    assert_eq!(
        stream_len(&js, "NUDGE_ACTIONS").await,
        500,
        "every event once, none lost or doubled"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_jetstream_refuses_sends_its_event_to_the_dlq_after_max_deliver() {
    let nats = NatsServer::start();
    let quick = [
        ("NUDGE_MAX_DELIVER", "2"),
        ("NUDGE_RETRY_BACKOFF_MS", "[50]"),
    ];
    let nudge = Nudge::start(&nats, &quick).await;
    let js = nats.jetstream().await;
    // 80 strings of 16 KiB: a push over NATS's 1 MiB max_payload, refused on every attempt.
    let oversized = r#"
        let big = "0123456789abcdef";
        for i in 0..10 { big += big; }
        let payload = #{};
        for i in 0..80 { payload["k" + i] = big; }
        push(payload);"#;
    nudge
        .put_rule("huge", push_rule(&["cart.updated"], oversized))
        .await;
    publish(&js, &event("huge-1", "cart.updated", "user-1", json!({}))).await;
    publish(&js, &event("fine-1", "order.placed", "user-1", json!({}))).await;
    wait_for_len(&js, "NUDGE_DLQ", 1, WAIT, &nudge.logs()).await;
    wait_drained(&js, WAIT).await;

    let dead = read_stream(&js, "NUDGE_DLQ", 10).await;
    assert_eq!(dead.len(), 1);
    let headers = dead[0].headers.as_ref().unwrap();
    assert_eq!(
        headers.get("Nudge-Dlq-Kind").unwrap().as_str(),
        "publish_failed"
    );
    let reason = headers.get("Nudge-Dlq-Reason").unwrap().as_str();
    assert!(reason.contains("failed 2 times"), "{reason}");
    assert!(reason.contains("payload"), "{reason}");
    assert_eq!(
        json_payload(&dead[0])["id"],
        "huge-1",
        "the original event is kept"
    );
    assert!(
        nudge
            .metrics()
            .await
            .contains("nudge_action_publish_retries_total 1"),
        "the retry is counted"
    );
}

/// A checkpoint stores the decisions of all the profiles its partition changed together, each
/// profile's entry naming the one before: the trace API walks that chain back, newest first,
/// across checkpoints and across a restart of the instance.
#[tokio::test(flavor = "multi_thread")]
async fn the_trace_walks_back_across_checkpoints_and_restarts() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let settings = [("NUDGE_CHECKPOINT_INTERVAL_MS", "50")];
    let mut nudge = Nudge::start(&nats, &settings).await;
    nudge
        .put_rule(
            "view",
            push_rule(&["product.viewed"], r#"push(#{ title: "hi" })"#),
        )
        .await;
    let trace_ids = |trace: &serde_json::Value| -> Vec<String> {
        let decisions = trace["decisions"].as_array();
        let decisions = decisions.unwrap_or_else(|| panic!("no decisions list: {trace:#}"));
        decisions
            .iter()
            .map(|d| d["event_id"].to_string())
            .collect()
    };
    for n in 0..6 {
        if n == 3 {
            assert!(nudge.stop().await, "stops cleanly");
            nudge = Nudge::start(&nats, &settings).await;
        }
        publish(
            &js,
            &event(&format!("t{n}"), "product.viewed", "walker", json!({})),
        )
        .await;
        // Each event in a checkpoint of its own: its entry lands in a message of its own.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (_, trace) = nudge.api_get("/api/profiles/walker/trace").await;
            if trace_ids(&trace).len() == n + 1 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "decision {n} never reached the trace: {trace:#}\n{}",
                nudge.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (_, trace) = nudge.api_get("/api/profiles/walker/trace").await;
    let expected: Vec<String> = (0..6).rev().map(|n| format!("\"t{n}\"")).collect();
    assert_eq!(trace_ids(&trace), expected, "{trace:#}");
    let (_, newest) = nudge.api_get("/api/profiles/walker/trace?limit=2").await;
    assert_eq!(trace_ids(&newest), expected[..2], "{newest:#}");
    // Stored per partition, not per profile: the stream's subjects stay as few as partitions.
    for message in read_stream(&js, "NUDGE_TRACE", 100).await {
        let partition = message.subject.as_str().strip_prefix("trace.");
        assert!(
            partition.is_some_and(|p| p.parse::<u32>().is_ok()),
            "{}",
            message.subject
        );
    }
}
