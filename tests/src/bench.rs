//! What the benchmarks share: the 10 rules of the drain benchmark, storing them (and the `tiny`
//! plugin), the bare async-nats loop nudge is measured against, and a process's CPU time and
//! memory from `/proc`.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::workload::prefill;
use crate::{NatsServer, Nudge, plugin_wasm};

/// A number from the environment variable `name`, else `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The drain benchmark's rules: each realistic event matches 2–3 of them (0.87 actions per
/// event).
pub const RULES: [(&str, &str, &str); 10] = [
    (
        "cart-push",
        "cart.updated",
        r#"if event.data.total > 50 { push(#{ title: "Your cart misses you", cart: event.data.cart_id }) }"#,
    ),
    (
        "cart-banner",
        "cart.*",
        r#"if event.data.total >= 100 { personalize("cart_banner", #{ headline: "Free shipping" }) }"#,
    ),
    (
        "viewed-price",
        "product.viewed",
        r#"if event.data.price > 100 { price(event.data.sku, #{ discount_pct: 5 }) }"#,
    ),
    (
        "order-thanks",
        "order.placed",
        r#"push(#{ title: "Thanks!", transactional: true })"#,
    ),
    (
        "welcome",
        "user.registered",
        r#"push(#{ title: `Welcome ${event.data.first_name ?? ""}` })"#,
    ),
    (
        "vip-orders",
        "order.>",
        r#"if event.data.total > 10000 { webhook("vip", #{ total: event.data.total }) }"#,
    ),
    (
        "any-view",
        "*.viewed",
        r#"if event.data.campaign == "none" { push(#{}) }"#,
    ),
    ("checkout", "checkout.*", r#"push(#{ title: "checkout" })"#),
    (
        "browse",
        "product.>",
        r#"let n = event.data.sku.len(); if n > 100 { push(#{}) }"#,
    ),
    (
        "everything",
        ">",
        r#"if event.subject == "nobody" { push(#{}) }"#,
    ),
];

/// CPU seconds (user + system) of a process, from /proc.
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|t| t.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

pub fn peak_rss_mib(pid: &str) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// A memory figure of `/proc/<pid>/status`, in MiB.
pub fn status_mib(pid: &str, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A baseline's streams: the input (`input_subject`) and an output with the dedupe window nudge's
/// actions stream has; answers the input.
pub async fn input_and_output(
    js: &jetstream::Context,
    input_name: &str,
    input_subject: &str,
    output_name: &str,
    output_subjects: Vec<String>,
) -> stream::Stream {
    let input = js
        .create_stream(stream::Config {
            name: input_name.to_owned(),
            subjects: vec![input_subject.to_owned()],
            ..Default::default()
        })
        .await
        .expect("input stream");
    js.create_stream(stream::Config {
        name: output_name.to_owned(),
        subjects: output_subjects,
        duplicate_window: Duration::from_secs(7_200),
        ..Default::default()
    })
    .await
    .expect("output stream");
    input
}

/// The baseline: pull + publish + ack with the same in-flight bound nudge uses, and no logic.
pub async fn bare_loop(js: &jetstream::Context, round: u64, count: u64) -> (Duration, f64) {
    let input = input_and_output(
        js,
        &format!("BARE_IN_{round}"),
        &format!("bare{round}.in.>"),
        &format!("BARE_OUT_{round}"),
        vec![format!("bare{round}.out.>")],
    )
    .await;
    prefill(js, &format!("bare{round}.in."), round * count, count).await;
    let consumer = input
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bare".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 4_096,
            ..Default::default()
        })
        .await
        .expect("bare consumer");
    let cpu_before = cpu_seconds("self");
    let started = Instant::now();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(256)
        .messages()
        .await
        .expect("pull");
    let mut in_flight = std::collections::VecDeque::new();
    let mut done = 0;
    while done < count {
        let message = messages.next().await.expect("message").expect("no error");
        let id = message.info().expect("info").stream_sequence.to_string();
        let publish = jetstream::message::PublishMessage::build()
            .payload(message.payload.clone())
            .message_id(id);
        let ack = js
            .send_publish(format!("bare{round}.out.{}", message.subject), publish)
            .await
            .expect("publish");
        in_flight.push_back((message, ack));
        while in_flight.len() >= 2_048
            || (done + in_flight.len() as u64 >= count && !in_flight.is_empty())
        {
            let (message, ack) = in_flight.pop_front().expect("in flight");
            ack.await.expect("publish ack");
            message.ack().await.expect("ack");
            done += 1;
        }
    }
    (started.elapsed(), cpu_seconds("self") - cpu_before)
}

/// Stores the 10 rules (and, with `tiny_plugin`, the tiny plugin on every event type) through a
/// short-lived instance.
pub async fn store_rules(nats: &NatsServer, tiny_plugin: bool) {
    let setup = Nudge::start(nats, &[]).await;
    let experiments = std::env::var("DRAIN_EXPERIMENTS").is_ok();
    for (id, trigger, script) in RULES {
        let mut rule = json!({"name": id, "triggers": [trigger], "script": script});
        if experiments {
            rule["goal"] = json!({"event": "order.placed", "within": "3d", "value": "data.total"});
            rule["holdout"] = json!(10);
        }
        setup.put_rule(id, rule).await;
    }
    if std::env::var("DRAIN_SCHEMAS").is_ok() {
        store_schemas(&setup).await;
    }
    if tiny_plugin {
        setup
            .put_plugin("tiny", plugin_wasm("tiny"), json!({ "triggers": [">"] }))
            .await;
    }
    assert!(setup.stop().await);
}

/// With `DRAIN_SCHEMAS=1`: a schema (mode `warn`) for every event type the workload sends,
/// drafted from a thousand of its events, so every drained event is validated.
async fn store_schemas(setup: &Nudge) {
    let mut by_type: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for n in 0..1_000 {
        let (_, bytes) = crate::workload::realistic_event(n);
        let event: Value = serde_json::from_slice(&bytes).expect("a workload event");
        let event_type = event["type"].as_str().expect("type").to_owned();
        by_type
            .entry(event_type)
            .or_default()
            .push(event["data"].clone());
    }
    for (event_type, samples) in by_type {
        let schema = nudge_rules::schema::infer::infer(&samples);
        let (status, body) = setup
            .api(
                reqwest::Method::PUT,
                &format!("/api/schemas/{event_type}"),
                Some(json!({"schema": schema, "mode": "warn", "compatibility": "none"})),
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
    }
}
