//! The benchmarks' workload: a realistic mix of CloudEvents (carts, views, orders, sign-ups over
//! 10,000 profiles, about 400 bytes each) and a fast way to store many of them.

use async_nats::jetstream;
use futures::future::join_all;
use serde_json::json;

use crate::event;

/// Event `n` of the mix: its subject and JSON. `time_ms`, when given, becomes its `time`.
pub fn realistic_event_at(n: u64, time_ms: Option<i64>) -> (String, Vec<u8>) {
    let (event_type, data) = match n % 4 {
        0 => (
            "cart.updated",
            json!({"cart_id": format!("c-{n}"), "currency": "EUR", "total": (n % 150) as f64 + 0.5, "store": "berlin-mitte",
              "items": [{"sku": "sku-1", "qty": 1}, {"sku": "sku-2", "qty": 2}]}),
        ),
        1 => (
            "product.viewed",
            json!({"sku": format!("sku-{}", n % 977), "price": (n % 200) as f64, "category": "shoes", "campaign": "autumn",
              "referrer": "https://search.example/?q=running+shoes", "position": n % 48}),
        ),
        2 => (
            "order.placed",
            json!({"order_id": format!("o-{n}"), "total": (n % 300) as f64, "currency": "EUR", "items": 3,
              "payment": "card", "shipping": {"method": "standard", "country": "DE"}}),
        ),
        _ => (
            "user.registered",
            json!({"first_name": "Ada", "locale": "en", "signup_channel": "web", "referrer": "newsletter",
              "consent": {"push": true, "email": false}, "device": "ios-17"}),
        ),
    };
    let mut e = event(
        &format!("evt-{n:010}"),
        event_type,
        &format!("user-{}", n % 10_000),
        data,
    );
    if let Some(ms) = time_ms {
        e["time"] = json!(nudge_rules::calendar::rfc3339(ms));
    }
    e["data"]["context"] = json!({"ip": "203.0.113.7", "app": "shop-ios/5.2.1", "locale": "de-DE"});
    (
        format!("events.{event_type}"),
        serde_json::to_vec(&e).expect("json"),
    )
}

/// Event `n` of the mix with the harness's fixed time.
pub fn realistic_event(n: u64) -> (String, Vec<u8>) {
    realistic_event_at(n, None)
}

/// Stores events `first..first + count` (times from `time_of`, if given) under `prefix` +
/// their subject; answers their mean size in bytes.
pub async fn prefill_at(
    js: &jetstream::Context,
    prefix: &str,
    first: u64,
    count: u64,
    time_of: Option<&dyn Fn(u64) -> i64>,
) -> usize {
    let mut bytes = 0;
    for chunk in (first..first + count).collect::<Vec<_>>().chunks(1_000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for &n in chunk {
            let (subject, payload) = realistic_event_at(n, time_of.map(|f| f(n)));
            bytes += payload.len();
            acks.push(
                js.publish(format!("{prefix}{subject}"), payload.into())
                    .await
                    .expect("publish")
                    .into_future(),
            );
        }
        for ack in join_all(acks).await {
            ack.expect("prefill ack");
        }
    }
    bytes / count as usize
}

/// Stores events `first..first + count` with the harness's fixed time.
pub async fn prefill(js: &jetstream::Context, prefix: &str, first: u64, count: u64) -> usize {
    prefill_at(js, prefix, first, count, None).await
}
