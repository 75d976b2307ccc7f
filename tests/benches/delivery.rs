//! Webhook delivery, measured from outside: `nudge serve` (release build) delivering to a local
//! receiver that answers 204 at once.
//! 1. Throughput: `DELIVERY_ACTIONS` (20,000) webhook actions published on `actions.webhook`
//!    as fast as JetStream takes them; the time from the first publish to the last arrival,
//!    and nudge's CPU over it, per delivery.
//! 2. Added latency: `DELIVERY_RATE` (500) actions/s offered evenly for `DELIVERY_SECONDS` (10);
//!    from just before an action's publish to its arrival at the receiver (HDR histogram).
//! 3. E-mail throughput: `DELIVERY_EMAILS` (5,000) email actions on `actions.email`, each
//!    rendered from a template (subject, HTML and text) and sent over SMTP to a local server
//!    (`nudge_tests::smtp`, accepting at once); e-mails/s and nudge's CPU per e-mail.
//!
//! Run: `cargo build --release --bins && cargo bench -p nudge-tests --bench delivery`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use hdrhistogram::Histogram;
use nudge_tests::bench::{cpu_seconds, env_number};
use nudge_tests::receiver::Receiver;
use nudge_tests::smtp::SmtpServer;
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

fn email(id: &str, n: u64) -> bytes::Bytes {
    let user = format!("user-{}", n % 10_000);
    serde_json::to_vec(&json!({
        "specversion": "1.0", "id": id, "source": "nudge", "type": "nudge.action.email",
        "subject": user, "time": "2026-12-03T00:00:00Z",
        "datacontenttype": "application/json", "causationid": format!("e-{n}"),
        "causationsource": "bench", "rule": "bench@v1",
        "data": {"to": format!("{user}@example.com"), "template": "bench", "total": n,
            "profile": {"id": user, "attributes": {"name": "Ada"}, "consent": {}, "timezone": "UTC"}},
    }))
    .expect("an e-mail action")
    .into()
}

/// Publishes `count` actions made by `make`, a thousand acknowledgements in flight at most.
async fn publish_all(
    js: &jetstream::Context,
    subject: &'static str,
    count: u64,
    make: impl Fn(&str, u64) -> bytes::Bytes,
) {
    let mut acks = Vec::with_capacity(1_000);
    for n in 0..count {
        let id = format!("{subject}-{n}");
        let message = PublishMessage::build()
            .payload(make(&id, n))
            .message_id(&id);
        acks.push(js.send_publish(subject, message).await.expect("publish"));
        if acks.len() == 1_000 {
            for ack in acks.drain(..) {
                ack.await.expect("stored");
            }
        }
    }
    for ack in acks {
        ack.await.expect("stored");
    }
}

fn main() {
    let actions = env_number("DELIVERY_ACTIONS", 20_000);
    let emails = env_number("DELIVERY_EMAILS", 5_000);
    let rate = env_number("DELIVERY_RATE", 500);
    let seconds = env_number("DELIVERY_SECONDS", 10);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let nats = NatsServer::start();
        let smtp = SmtpServer::start().await;
        let smtp_url = smtp.url();
        let nudge = Nudge::start(
            &nats,
            &[
                ("NUDGE_SMTP_URL", &smtp_url),
                ("NUDGE_SMTP_STARTTLS", "never"),
                ("NUDGE_EMAIL_FROM", "Shop <shop@example.com>"),
            ],
        )
        .await;
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
        publish_all(&js, "actions.webhook", actions, action).await;
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
        let mut histogram = Histogram::<u64>::new(3).expect("histogram");
        {
            let sent = sent.lock().unwrap();
            for request in receiver.received() {
                let id = request.header("webhook-id");
                if let Some(at) = sent.get(id) {
                    let micros = request.at.saturating_duration_since(*at).as_micros() as u64;
                    histogram.record(micros.max(1)).expect("record");
                }
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

        // 3. E-mail throughput.
        let (status, body) = nudge
            .api(
                Method::PUT,
                "/api/email-templates/bench",
                Some(json!({
                    "subject": "Still {{ total }} € in your cart, {{ profile.attributes.name }}",
                    "html": "<p>Hi {{ profile.attributes.name }},</p><p>your cart holds {{ total }} €.</p>\
                             <p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>",
                    "text": "Hi {{ profile.attributes.name }}, your cart holds {{ total }} €.\n\
                             Unsubscribe: {{ unsubscribe_url }}",
                })),
            )
            .await;
        assert!(status.is_success(), "{body}");
        let cpu_before = cpu_seconds(&pid);
        let started = Instant::now();
        publish_all(&js, "actions.email", emails, email).await;
        while smtp.count() < emails as usize {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "{} of {emails} e-mails sent after 10 minutes",
                smtp.count()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(&pid) - cpu_before;
        println!(
            "e-mail throughput: {emails} e-mails in {elapsed:.2} s = {:.0} e-mails/s; nudge {:.1} CPU-µs per e-mail",
            emails as f64 / elapsed,
            cpu * 1e6 / emails as f64
        );
    });
}
