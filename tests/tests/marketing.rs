//! Marketing semantics end to end, on a real nats-server with real seconds: the abandoned-cart
//! timer (fires once, never after the order, once after a SIGKILL between scheduling and due),
//! caps held across two instances, consent with its trace, profiles read over the API, and a
//! backtest (API and `nudge replay`) whose counts match a fixture counted by hand.

use std::time::{Duration, Instant};

use nudge_rules::simulate::Scenario;
use nudge_tests::*;
use serde_json::{Value, json};

const ABANDONED_CART: &str = r#"
if event.type == "cart.updated" {
    after("DELAY", "abandoned-cart", #{ unless: ["order.placed"], data: #{ total: event.data.total } });
} else {
    push(#{ title: `Your cart of ${event.data.total} is waiting`, cart_event: event.data.cause.id });
}"#;

async fn pushes_for(js: &async_nats::jetstream::Context, subject: &str) -> Vec<Value> {
    read_stream(js, "NUDGE_ACTIONS", 1_000)
        .await
        .iter()
        .map(json_payload)
        .filter(|a| a["subject"] == subject && a["type"] == "nudge.action.push")
        .collect()
}

/// Waits until `subject` has `count` pushes (panics after `timeout`), then answers them.
async fn wait_pushes(
    js: &async_nats::jetstream::Context,
    subject: &str,
    count: usize,
    timeout: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let pushes = pushes_for(js, subject).await;
        if pushes.len() >= count {
            return pushes;
        }
        assert!(
            Instant::now() < deadline,
            "{subject}: {} of {count} pushes",
            pushes.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A nats-server and nudge with the abandoned-cart rule, its timer set to `delay`.
async fn with_abandoned_cart(delay: &str) -> (NatsServer, async_nats::jetstream::Context, Nudge) {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let nudge = Nudge::start(&nats, &[]).await;
    nudge
        .put_rule(
            "abandoned-cart",
            json!({"name": "Abandoned cart", "triggers": ["cart.updated", "timer.abandoned-cart"],
                   "script": ABANDONED_CART.replace("DELAY", delay)}),
        )
        .await;
    (nats, js, nudge)
}

#[tokio::test(flavor = "multi_thread")]
async fn abandoned_cart_fires_once_and_never_after_the_order() {
    let (_nats, js, nudge) = with_abandoned_cart("2s").await;
    let started = Instant::now();
    publish(
        &js,
        &event("c1", "cart.updated", "shopper", json!({"total": 42})),
    )
    .await;
    publish(
        &js,
        &event("c2", "cart.updated", "buyer", json!({"total": 10})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    publish(&js, &event("o2", "order.placed", "buyer", json!({}))).await;

    let pushes = wait_pushes(&js, "shopper", 1, Duration::from_secs(10)).await;
    let fired_after = started.elapsed();
    assert!(
        fired_after >= Duration::from_secs(2),
        "fired early: {fired_after:?}"
    );
    assert_eq!(pushes[0]["data"]["title"], "Your cart of 42 is waiting");
    assert_eq!(pushes[0]["data"]["cart_event"], "c1");
    assert_eq!(pushes[0]["rule"], "abandoned-cart@v1");
    // Well past the buyer's due time: still exactly one push for the shopper, none for the buyer.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pushes_for(&js, "shopper").await.len(), 1);
    assert!(pushes_for(&js, "buyer").await.is_empty());

    let (status, trace) = nudge.api_get("/api/profiles/buyer/trace").await;
    assert_eq!(status, 200, "{trace}");
    let cancelled = trace["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["timers_cancelled"] == json!(["abandoned-cart"]));
    assert!(cancelled, "the order cancelled the timer: {trace:#}");
    let (status, profile) = nudge.api_get("/api/profiles/shopper").await;
    assert_eq!(status, 200);
    assert_eq!(profile["counters"]["cart.updated"], 1);
    assert_eq!(profile["counters"]["timer.abandoned-cart"], 1);
    assert!(profile["timers"].as_array().unwrap().is_empty());
    assert_eq!(nudge.api_get("/api/profiles/nobody").await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timer_survives_sigkill_between_scheduling_and_due() {
    let (nats, js, nudge) = with_abandoned_cart("3s").await;
    publish(
        &js,
        &event("c1", "cart.updated", "shopper", json!({"total": 7})),
    )
    .await;
    // Scheduled: the profile lists the timer.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, profile) = nudge.api_get("/api/profiles/shopper").await;
        if profile["timers"].as_array().is_some_and(|t| t.len() == 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timer never scheduled: {profile}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nudge.kill().await;
    // Down across the due time.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(pushes_for(&js, "shopper").await.is_empty());
    let nudge = Nudge::start(&nats, &[]).await;
    let pushes = wait_pushes(&js, "shopper", 1, Duration::from_secs(10)).await;
    assert_eq!(pushes[0]["data"]["title"], "Your cart of 7 is waiting");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pushes_for(&js, "shopper").await.len(),
        1,
        "{}",
        nudge.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn caps_hold_across_two_instances() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let caps = [("NUDGE_CAPS", "{push={per_day=3}}"), ("NUDGE_LANES", "4")];
    let first = Nudge::start(&nats, &caps).await;
    let second = Nudge::start(&nats, &caps).await;
    first
        .put_rule(
            "every-view",
            json!({"name": "n", "triggers": ["product.viewed"],
                   "script": "push(#{ title: `view ${event.id}` })"}),
        )
        .await;
    // Both instances must have the rule before events flow.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..40 {
        publish(
            &js,
            &event(&format!("v{n}"), "product.viewed", "fan", json!({})),
        )
        .await;
    }
    wait_drained(&js, Duration::from_secs(30)).await;
    assert_eq!(pushes_for(&js, "fan").await.len(), 3);
    let (_, profile) = second.api_get("/api/profiles/fan").await;
    assert_eq!(
        profile["counters"]["product.viewed"], 40,
        "no update lost: {profile}"
    );
    let (_, trace) = first.api_get("/api/profiles/fan/trace?limit=100").await;
    let capped = trace["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["suppressed"][0]["reason"] == "cap")
        .count();
    assert_eq!(capped, 37, "{trace:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn consent_suppresses_and_the_trace_says_why() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let nudge = Nudge::start(&nats, &[]).await;
    nudge
        .put_rule(
            "thanks",
            json!({"name": "n", "triggers": ["order.placed"],
                   "script": "push(#{ title: `Thanks, ${profile.attributes.first_name}` })"}),
        )
        .await;
    let identify = reqwest::Client::new()
        .post(nudge.url("/v1/identify"))
        .basic_auth(WRITE_KEY, Some(""))
        .json(&json!({"userId": "quiet-one", "messageId": "i1",
            "traits": {"first_name": "Ada", "consent": {"push": false}, "timezone": "Europe/Berlin"}}))
        .send()
        .await
        .unwrap();
    assert!(identify.status().is_success());
    publish(&js, &event("o1", "order.placed", "quiet-one", json!({}))).await;
    wait_drained(&js, Duration::from_secs(10)).await;
    assert!(pushes_for(&js, "quiet-one").await.is_empty());
    let (_, profile) = nudge.api_get("/api/profiles/quiet-one").await;
    assert_eq!(profile["attributes"]["first_name"], "Ada");
    assert_eq!(profile["consent"]["push"], false);
    assert_eq!(profile["timezone"], "Europe/Berlin");
    let (_, trace) = nudge.api_get("/api/profiles/quiet-one/trace").await;
    let latest = &trace["decisions"][0];
    assert_eq!(latest["event_id"], "o1", "most recent first: {trace:#}");
    assert_eq!(latest["matched"], json!(["thanks@v1"]));
    assert_eq!(latest["suppressed"][0]["reason"], "consent");
    assert_eq!(latest["suppressed"][0]["channel"], "push");
    assert_eq!(latest["suppressed"][0]["data"]["title"], "Thanks, Ada");
}

#[tokio::test(flavor = "multi_thread")]
async fn backtest_counts_match_the_hand_counted_fixture() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let nudge = Nudge::start(&nats, &[]).await;
    let fixture_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rules/templates/fixtures/abandoned-cart.backtest.json"
    );
    let scenario: Scenario =
        serde_json::from_str(&std::fs::read_to_string(fixture_path).unwrap()).unwrap();
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rules/templates/abandoned-cart.toml"
    ))
    .unwrap();
    let spec: Value = toml::from_str::<toml::Value>(&template)
        .map(|t| serde_json::to_value(t).unwrap())
        .unwrap();
    // Saved but disabled: the live pipeline must not act on the replayed history.
    let mut disabled = spec.clone();
    disabled["enabled"] = json!(false);
    nudge.put_rule("abandoned-cart", disabled).await;
    let from = nudge_rules::calendar::rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 1_000,
    );
    for (_, e) in scenario.cloudevents().unwrap() {
        publish(&js, &serde_json::to_value(&e).unwrap()).await;
    }
    // A stored event that is not a CloudEvent is counted, not fatal.
    js.publish("events.junk", "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let (status, report) = nudge
        .api(
            reqwest::Method::POST,
            "/api/rules/abandoned-cart/backtest",
            Some(json!({"from": from, "rule": spec})),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    for (field, expected) in scenario.expect.as_object().unwrap() {
        assert_eq!(&report[field], expected, "{field}: {report:#}");
    }
    assert_eq!(report["events_invalid"], 1);
    assert_eq!(report["rule"], "abandoned-cart@v0");
    assert_eq!(report["sample"].as_array().unwrap().len(), 2);
    assert_eq!(report["sample_suppressed"][0]["reason"], "cooldown");
    // Nothing was published by the backtest, and the disabled rule did nothing live.
    assert_eq!(stream_len(&js, "NUDGE_ACTIONS").await, 0);

    // The saved version (disabled, same script) through `nudge replay` on the command line.
    let output = tokio::process::Command::new(nudge_binary())
        .args(["replay", "abandoned-cart", "--from", &from])
        .env("NUDGE_NATS_URL", &nats.url)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let replayed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(replayed["actions"], json!({"push": 2}));
    assert_eq!(replayed["suppressed"], json!({"cooldown": 1}));
    assert_eq!(replayed["rule"], "abandoned-cart@v1");
    assert!(String::from_utf8_lossy(&output.stderr).contains("events/s"));

    let (status, error) = nudge
        .api(
            reqwest::Method::POST,
            "/api/rules/abandoned-cart/backtest",
            Some(json!({"from": "yesterday"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["field"], "from", "{error}");
}
