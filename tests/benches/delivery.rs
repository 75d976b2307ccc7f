//! Webhook delivery, measured from outside: `nudge serve` (release build) delivering to a local
//! receiver that answers 204 at once.
//! 1. Throughput: `DELIVERY_ACTIONS` (20,000) webhook actions published on `actions.webhook`
//!    as fast as JetStream takes them; the time from the first publish to the last arrival,
//!    and nudge's CPU over it, per delivery.
//! 2. Added latency: `DELIVERY_RATE` (500) actions/s offered evenly for `DELIVERY_SECONDS` (10);
//!    from just before an action's publish to its arrival at the receiver (HDR histogram).
//!
//! Run: `cargo build --release --bins && cargo bench -p nudge-tests --bench delivery`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use hdrhistogram::Histogram;
use nudge_tests::bench::{cpu_seconds, env_number};
use nudge_tests::receiver::Receiver;
use nudge_tests::*;
use reqwest::Method;
use serde_json::json;

fn action(id: &str, n: u64) -> bytes::Bytes {
    serde_json::to_vec(&json!({
        "specversion": "1.0", "id": id, "source": "nudge", "type": "nudge.action.webhook",
        "subject": format!("user-{}", n % 10_000), "time": "2026-12-03T00:00:00Z",
        "datacontenttype": "application/json", "causationid": format!("e-{n}"),
        "causationsource": "bench", "rule": "bench@v1",
        "data": {"webhook": "bench", "payload": {"n": n, "title": "Your cart misses you"}},
    }))
    .expect("an action")
    .into()
}

async fn publish(
    js: &jetstream::Context,
    id: &str,
    n: u64,
) -> jetstream::context::PublishAckFuture {
    js.send_publish(
        "actions.webhook",
        PublishMessage::build()
            .payload(action(id, n))
            .message_id(id),
    )
    .await
    .expect("publish an action")
}

async fn until_received(receiver: &Receiver, count: usize) {
    let started = Instant::now();
    while receiver.count() < count {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{} of {count} delivered after 10 minutes",
            receiver.count()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn main() {
    let actions = env_number("DELIVERY_ACTIONS", 20_000);
    let rate = env_number("DELIVERY_RATE", 500);
    let seconds = env_number("DELIVERY_SECONDS", 10);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let nats = NatsServer::start();
        let nudge = Nudge::start(&nats, &[]).await;
        let pid = nudge.pid().to_string();
        let js = nats.jetstream().await;
        let receiver = Receiver::start().await;
        let (status, body) = nudge
            .api(
                Method::PUT,
                "/api/webhooks/bench",
                Some(json!({"url": receiver.url})),
            )
            .await;
        assert!(status.is_success(), "{body}");

        // 1. Throughput.
        let cpu_before = cpu_seconds(&pid);
        let started = Instant::now();
        let mut acks = Vec::with_capacity(1_000);
        for n in 0..actions {
            acks.push(publish(&js, &format!("thr-{n}"), n).await);
            if acks.len() == 1_000 {
                for ack in acks.drain(..) {
                    ack.await.expect("stored");
                }
            }
        }
        for ack in acks.drain(..) {
            ack.await.expect("stored");
        }
        until_received(&receiver, actions as usize).await;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(&pid) - cpu_before;
        println!(
            "delivery throughput: {actions} deliveries in {elapsed:.2} s = {:.0} deliveries/s; nudge {:.1} CPU-µs per delivery",
            actions as f64 / elapsed,
            cpu * 1e6 / actions as f64
        );

        // 2. Added latency at a steady rate.
        let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let total = rate * seconds;
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let start = Instant::now();
        let mut acks = Vec::new();
        for n in 0..total {
            let due = start + interval * n as u32;
            tokio::time::sleep_until(due.into()).await;
            let id = format!("lat-{n}");
            sent.lock().unwrap().insert(id.clone(), Instant::now());
            acks.push(publish(&js, &id, n).await);
        }
        for ack in acks {
            ack.await.expect("stored");
        }
        until_received(&receiver, (actions + total) as usize).await;
        let sent = sent.lock().unwrap();
        let mut histogram = Histogram::<u64>::new(3).expect("histogram");
        for request in receiver.received() {
            let id = request.header("webhook-id");
            if let Some(at) = sent.get(id) {
                let micros = request.at.saturating_duration_since(*at).as_micros() as u64;
                histogram.record(micros.max(1)).expect("record");
            }
        }
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1_000.0;
        println!(
            "delivery latency at {rate}/s for {seconds} s ({} deliveries): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            histogram.len(),
            ms(0.5),
            ms(0.9),
            ms(0.99),
            histogram.max() as f64 / 1_000.0
        );
    });
}
