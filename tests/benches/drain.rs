//! End-to-end drain benchmark. Against one nats-server, in one run:
//! 1. a bare async-nats loop (pull, publish one message per input with a Nats-Msg-Id, wait for
//!    the publish ack, ack the input; no logic) drains N pre-filled events;
//! 2. the release `nudge` binary drains the same N events through 10 rules.
//!
//! Each round it prints events/s of both, their ratio, CPU-seconds per million events and nudge's
//! peak RSS; then the medians over `DRAIN_ROUNDS` rounds (default 3).
//! Run: `cargo build --release --bins && cargo bench -p nudge-tests --bench drain`
//! (`DRAIN_EVENTS` sets N, default 100000). `DRAIN_PLUGIN=1` also stores the `tiny` plugin
//! (`plugins/fixtures/tiny`, built by `scripts/build-plugins`) on every event type, so each event
//! runs the 10 rules and one WebAssembly plugin call.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use nudge_tests::workload::{prefill, realistic_event};
use nudge_tests::*;
use serde_json::{Value, json};

const RULES: [(&str, &str, &str); 10] = [
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
fn cpu_seconds(pid: &str) -> f64 {
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

fn peak_rss_mib(pid: &str) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// A memory figure of `/proc/<pid>/status`, in MiB.
fn status_mib(pid: &str, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The baseline: pull + publish + ack with the same in-flight bound nudge uses, and no logic.
async fn bare_loop(js: &jetstream::Context, round: u64, count: u64) -> (Duration, f64) {
    let input = js
        .create_stream(stream::Config {
            name: format!("BARE_IN_{round}"),
            subjects: vec![format!("bare{round}.in.>")],
            ..Default::default()
        })
        .await
        .expect("bare input stream");
    js.create_stream(stream::Config {
        name: format!("BARE_OUT_{round}"),
        subjects: vec![format!("bare{round}.out.>")],
        duplicate_window: Duration::from_secs(7_200),
        ..Default::default()
    })
    .await
    .expect("bare output stream");
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

/// Stores the 10 rules (and with `DRAIN_PLUGIN`, the tiny plugin) through a short-lived instance.
async fn store_rules(nats: &NatsServer) {
    let setup = Nudge::start(nats, &[]).await;
    for (id, trigger, script) in RULES {
        setup
            .put_rule(
                id,
                json!({"name": id, "triggers": [trigger], "script": script}),
            )
            .await;
    }
    if std::env::var("DRAIN_PLUGIN").is_ok() {
        setup
            .put_plugin("tiny", plugin_wasm("tiny"), json!({ "triggers": [">"] }))
            .await;
    }
    assert!(setup.stop().await);
}

async fn nudge_drain(nats: &NatsServer, round: u64, count: u64) -> (Duration, f64, f64, u64) {
    let js = nats.jetstream().await;
    let actions_before = stream_len(&js, "NUDGE_ACTIONS").await;
    prefill(&js, "", round * count, count).await;
    let nudge = Nudge::start(nats, &[]).await;
    let pid = nudge.pid().to_string();
    let cpu_before = cpu_seconds(&pid);
    let started = Instant::now();
    wait_drained(&js, Duration::from_secs(1_800)).await;
    let elapsed = started.elapsed();
    let cpu = cpu_seconds(&pid) - cpu_before;
    let rss = peak_rss_mib(&pid);
    if std::env::var("DRAIN_SHOW_MEMORY").is_ok() {
        eprintln!(
            "nudge after the drain: rss {:.0} MiB (anonymous {:.0}, file {:.0}), peak {rss:.0}",
            status_mib(&pid, "VmRSS:"),
            status_mib(&pid, "RssAnon:"),
            status_mib(&pid, "RssFile:"),
        );
    }
    let actions = stream_len(&js, "NUDGE_ACTIONS").await - actions_before;
    if std::env::var("DRAIN_SHOW_METRICS").is_ok() {
        let metrics = nudge.metrics().await;
        metrics
            .lines()
            .filter(|l| l.starts_with("nudge_") && !l.contains("_bucket"))
            .for_each(|l| eprintln!("{l}"));
    }
    assert!(nudge.stop().await);
    (elapsed, cpu, rss, actions)
}

fn main() {
    let count: u64 = std::env::var("DRAIN_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rounds: u64 = std::env::var("DRAIN_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let nats = NatsServer::start();
        let js = nats.jetstream().await;
        let average_event_bytes = (0..1_000)
            .map(|n| realistic_event(n).1.len())
            .sum::<usize>()
            / 1_000;
        store_rules(&nats).await;
        let rate = |t: Duration| count as f64 / t.as_secs_f64();
        let per_million = |cpu: f64| (cpu * 10_000_000.0 / count as f64).round() / 10.0;
        // Alternate the two so drift on the machine hits both alike; report every round and the
        // median of each.
        let mut bare_rates = Vec::new();
        let mut nudge_rates = Vec::new();
        for round in 0..rounds {
            let (bare_time, bare_cpu) = bare_loop(&js, round, count).await;
            let (nudge_time, nudge_cpu, nudge_rss, actions) =
                nudge_drain(&nats, round, count).await;
            bare_rates.push(rate(bare_time));
            nudge_rates.push(rate(nudge_time));
            println!(
                "{}",
                json!({
                    "round": round,
                    "bare_loop_events_per_s": rate(bare_time).round(),
                    "nudge_events_per_s": rate(nudge_time).round(),
                    "ratio": (rate(nudge_time) / rate(bare_time) * 100.0).round() / 100.0,
                    "bare_loop_cpu_s_per_million_events": per_million(bare_cpu),
                    "nudge_cpu_s_per_million_events": per_million(nudge_cpu),
                    "nudge_peak_rss_mib": nudge_rss.round(),
                    "actions_published": actions,
                })
            );
        }
        let median = |rates: &mut Vec<f64>| {
            rates.sort_by(f64::total_cmp);
            rates[rates.len() / 2]
        };
        let (bare, nudge) = (median(&mut bare_rates), median(&mut nudge_rates));
        let summary: Value = json!({
            "events_per_round": count,
            "rounds": rounds,
            "average_event_bytes": average_event_bytes,
            "rules": RULES.len(),
            "plugin_on_every_event": std::env::var("DRAIN_PLUGIN").is_ok(),
            "median_bare_loop_events_per_s": bare.round(),
            "median_nudge_events_per_s": nudge.round(),
            "median_ratio": (nudge / bare * 100.0).round() / 100.0,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("summary")
        );
    });
}
