//! Latency at a steady offered rate, publish to action, beside a bare live loop at the same rate
//! in the same run. First the bare drain loop of the drain benchmark measures this machine's
//! drain rate; then events are offered at half of it (or `LATENCY_RATE` events/s), evenly, for
//! `LATENCY_SECONDS` (default 20; the first 2 s are warm-up and not counted):
//! 1. to a bare live loop (durable pull consumer, publish one output per input with a
//!    `Nats-Msg-Id`, ack; no logic);
//! 2. to `nudge serve` running the drain benchmark's 10 rules with profile state and traces on.
//!
//! An event's latency is from just before its publish to the arrival of its first output (the
//! loop's copy, nudge's first action) at a core subscriber, recorded in an HDR histogram.
//! Run: `cargo build --release --bins && cargo bench -p nudge-tests --bench latency`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use hdrhistogram::Histogram;
use nudge_tests::bench::{bare_loop, env_number, input_and_output, store_rules};
use nudge_tests::workload::realistic_event;
use nudge_tests::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WARM_UP: Duration = Duration::from_secs(2);
/// Events of the drain that measures the bare rate.
const RATE_PROBE_EVENTS: u64 = 50_000;
/// Live events are numbered from here, clear of every prefilled event id.
const FIRST_LIVE: u64 = 10_000_000;

/// When each live event was published, and which already had an output.
struct Sent {
    at: Vec<Option<Instant>>,
    seen: Vec<bool>,
}

/// Publishes `rate` events/s evenly for `seconds` on `prefix` + their subject, recording when.
async fn offer(
    client: async_nats::Client,
    prefix: String,
    rate: u64,
    seconds: u64,
    sent: Arc<Mutex<Sent>>,
) -> u64 {
    let total = rate * seconds;
    let started = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut published = 0;
    while published < total {
        interval.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while published < due.min(total) {
            let (subject, payload) = realistic_event(FIRST_LIVE + published);
            sent.lock().expect("sent").at[published as usize] = Some(Instant::now());
            client
                .publish(format!("{prefix}{subject}"), payload.into())
                .await
                .expect("publish");
            published += 1;
        }
    }
    client.flush().await.expect("flush");
    published
}

/// Records the latency of each event's first output seen on `subject`, past the warm-up.
async fn measure(
    client: async_nats::Client,
    subject: &str,
    event_id: impl Fn(&Value) -> Option<String> + Send + 'static,
    sent: Arc<Mutex<Sent>>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<Histogram<u64>> {
    let mut outputs = client
        .subscribe(subject.to_owned())
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    tokio::spawn(async move {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("hdr");
        let start = Instant::now();
        loop {
            let message = tokio::select! {
                m = outputs.next() => m,
                () = cancel.cancelled() => None,
            };
            let Some(message) = message else { break };
            let arrived = Instant::now();
            let Ok(body) = serde_json::from_slice::<Value>(&message.payload) else {
                continue;
            };
            let Some(n) = event_id(&body)
                .and_then(|id| id.strip_prefix("evt-").and_then(|n| n.parse::<u64>().ok()))
                .and_then(|n| n.checked_sub(FIRST_LIVE))
            else {
                continue;
            };
            let mut sent = sent.lock().expect("sent");
            let index = n as usize;
            if index >= sent.seen.len() || sent.seen[index] {
                continue;
            }
            sent.seen[index] = true;
            if let Some(at) = sent.at[index]
                && at.duration_since(start) >= WARM_UP
            {
                let micros = arrived.duration_since(at).as_micros() as u64;
                histogram.record(micros.max(1)).expect("record");
            }
        }
        histogram
    })
}

/// A live loop: the bare drain loop's work, one event at a time as they arrive.
async fn live_loop(js: jetstream::Context, cancel: CancellationToken) {
    let input = input_and_output(
        &js,
        "LIVE_IN",
        "live.in.>",
        "LIVE_OUT",
        vec!["live.out.>".into()],
    )
    .await;
    let consumer = input
        .create_consumer(consumer::pull::Config {
            durable_name: Some("live".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 4_096,
            ..Default::default()
        })
        .await
        .expect("live consumer");
    let mut messages = consumer.messages().await.expect("pull");
    let mut in_flight = std::collections::VecDeque::new();
    loop {
        let message = tokio::select! {
            m = messages.next() => m,
            () = cancel.cancelled() => None,
        };
        let Some(Ok(message)) = message else { break };
        let id = message.info().expect("info").stream_sequence.to_string();
        let publish = jetstream::message::PublishMessage::build()
            .payload(message.payload.clone())
            .message_id(id);
        let subject = message.subject.trim_start_matches("live.in.").to_owned();
        let ack = js
            .send_publish(format!("live.out.{subject}"), publish)
            .await
            .expect("publish");
        in_flight.push_back((message, ack));
        while in_flight.len() > 256 {
            let (message, ack) = in_flight.pop_front().expect("in flight");
            ack.await.expect("publish ack");
            message.ack().await.expect("ack");
        }
    }
}

/// Offers `rate` events/s for `seconds` on `prefix` and measures outputs on `subject`.
async fn run_side(
    url: &str,
    prefix: &str,
    subject: &str,
    event_id: impl Fn(&Value) -> Option<String> + Send + 'static,
    rate: u64,
    seconds: u64,
) -> (Histogram<u64>, u64, u64) {
    let total = (rate * seconds) as usize;
    let sent = Arc::new(Mutex::new(Sent {
        at: vec![None; total],
        seen: vec![false; total],
    }));
    let cancel = CancellationToken::new();
    let watcher = async_nats::connect(url).await.expect("connect");
    let recorder = measure(watcher, subject, event_id, sent.clone(), cancel.clone()).await;
    let publisher = async_nats::connect(url).await.expect("connect");
    let published = offer(publisher, prefix.to_owned(), rate, seconds, sent.clone()).await;
    // Outputs still on their way.
    tokio::time::sleep(Duration::from_secs(3)).await;
    cancel.cancel();
    let histogram = recorder.await.expect("recorder");
    let answered = sent
        .lock()
        .expect("sent")
        .seen
        .iter()
        .filter(|s| **s)
        .count() as u64;
    (histogram, published, answered)
}

fn summary(histogram: &Histogram<u64>) -> Value {
    let ms = |q: f64| (histogram.value_at_quantile(q) as f64 / 10.0).round() / 100.0;
    json!({
        "samples": histogram.len(),
        "p50_ms": ms(0.5),
        "p90_ms": ms(0.9),
        "p99_ms": ms(0.99),
        "p99_9_ms": ms(0.999),
        "max_ms": (histogram.max() as f64 / 10.0).round() / 100.0,
    })
}

fn main() {
    let seconds = env_number("LATENCY_SECONDS", 20);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let nats = NatsServer::start();
        let js = nats.jetstream().await;
        store_rules(&nats, false).await;
        let (probe_time, _) = bare_loop(&js, 0, RATE_PROBE_EVENTS).await;
        let bare_rate = RATE_PROBE_EVENTS as f64 / probe_time.as_secs_f64();
        let rate = match env_number("LATENCY_RATE", 0) {
            0 => (bare_rate / 2.0) as u64,
            set => set,
        };

        let cancel = CancellationToken::new();
        let looping = tokio::spawn(live_loop(nats.jetstream().await, cancel.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let from_payload = |body: &Value| body["id"].as_str().map(str::to_owned);
        let (bare, bare_published, bare_answered) = run_side(
            &nats.url,
            "live.in.",
            "live.out.>",
            from_payload,
            rate,
            seconds,
        )
        .await;
        cancel.cancel();
        looping.await.expect("live loop");

        let nudge = Nudge::start(&nats, &[]).await;
        let from_action = |body: &Value| body["causationid"].as_str().map(str::to_owned);
        let (live, nudge_published, nudge_answered) =
            run_side(&nats.url, "", "actions.>", from_action, rate, seconds).await;
        assert!(nudge.stop().await);

        let result = json!({
            "bare_drain_events_per_s": bare_rate.round(),
            "offered_events_per_s": rate,
            "seconds": seconds,
            "bare_live_loop": summary(&bare),
            "bare_published": bare_published,
            "bare_answered": bare_answered,
            "nudge": summary(&live),
            "nudge_published": nudge_published,
            "nudge_events_with_an_action": nudge_answered,
            "p99_ratio": ((live.value_at_quantile(0.99) as f64
                / bare.value_at_quantile(0.99).max(1) as f64)
                * 100.0)
                .round()
                / 100.0,
        });
        println!("{}", serde_json::to_string_pretty(&result).expect("result"));
    });
}
