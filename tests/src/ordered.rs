//! The ordered workload of the scale-out and chaos suites: every profile's events carry their
//! number, a rule checks each follows the last one the profile saw (and fires
//! `webhook("order-violation", …)` if not), and each event's push action proves it was decided.

use std::collections::HashMap;
use std::future::IntoFuture as _;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::{Value, json};

use crate::{Nudge, event, json_payload, read_all_stored};

pub const ORDER_RULE: &str = r#"
let last = profile.attributes.last ?? 0;
if event.data.n != last + 1 {
    webhook("order-violation", #{ n: event.data.n, last: last });
}
set_attribute("last", event.data.n);
push(#{ n: event.data.n });
"#;

/// The type of the ordered events (`events.step.taken`).
pub const STEP_TYPE: &str = "step.taken";

/// How many events are sent before their acks are awaited.
const CHUNK: usize = 500;

/// How long handing one publish to the client may take before it counts as refused.
pub const SEND_LIMIT: Duration = Duration::from_secs(10);

pub async fn put_order_rule(nudge: &Nudge) {
    nudge
        .put_rule(
            "order",
            json!({"name": "order", "triggers": [STEP_TYPE], "script": ORDER_RULE}),
        )
        .await;
}

/// The id of event number `n` of profile `p` (also its `Nats-Msg-Id`).
pub fn step_id(p: u32, n: u32) -> String {
    format!("p{p}-{n}")
}

/// Publishes event number `n` of every profile in `0..profiles`, in that order, each with its id
/// as `Nats-Msg-Id`; what a broker hiccup refused is sent again (JetStream drops the copy of one
/// it had stored) before the round ends, so each profile's events stay in order in the stream.
/// With `rate_per_s`, sending is paced to about that many events a second.
pub async fn publish_round(
    js: &jetstream::Context,
    profiles: u32,
    n: u32,
    rate_per_s: Option<u32>,
    give_up_after: Duration,
) {
    for chunk in (0..profiles).collect::<Vec<_>>().chunks(CHUNK) {
        let paced_until = rate_per_s
            .map(|rate| Instant::now() + Duration::from_secs_f64(chunk.len() as f64 / rate as f64));
        let mut pending: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|p| {
                let id = step_id(*p, n);
                let e = event(&id, STEP_TYPE, &format!("user-{p}"), json!({ "n": n }));
                (id, serde_json::to_vec(&e).expect("JSON"))
            })
            .collect();
        let deadline = Instant::now() + give_up_after;
        while !pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "the broker never took the events"
            );
            let mut acks = Vec::with_capacity(pending.len());
            for (id, body) in &pending {
                let message = jetstream::message::PublishMessage::build()
                    .payload(body.clone().into())
                    .message_id(id);
                // A publish the client cannot take (it is reconnecting) ends this attempt: the
                // rest are sent again with it, rather than each waiting out the limit in turn.
                let sent = tokio::time::timeout(
                    SEND_LIMIT,
                    js.send_publish(format!("events.{STEP_TYPE}"), message),
                )
                .await;
                match sent {
                    Ok(Ok(ack)) => acks.push(ack.into_future()),
                    _ => break,
                }
            }
            // Awaited together: each ack has its own timeout, and answers lost with a broker
            // node must not be waited out one after another.
            let stored = futures::future::join_all(acks).await;
            let again: Vec<(String, Vec<u8>)> = pending
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !matches!(stored.get(*i), Some(Ok(_))))
                .map(|(_, event)| event)
                .collect();
            pending = again;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if let Some(until) = paced_until {
            tokio::time::sleep_until(until.into()).await;
        }
    }
}

/// What the ordered rule left in `NUDGE_ACTIONS`.
#[derive(Default)]
pub struct OrderedActions {
    /// The data of every `order-violation` webhook.
    pub violations: Vec<Value>,
    /// How many pushes each causing event has.
    pub pushes: HashMap<String, usize>,
    /// When JetStream stored each causing event's first push (ns since the epoch).
    pub stored_ns: HashMap<String, i128>,
    /// Actions of any other type, by type.
    pub others: HashMap<String, usize>,
}

/// Reads every action in `NUDGE_ACTIONS`.
pub async fn ordered_actions(js: &jetstream::Context) -> OrderedActions {
    let mut out = OrderedActions::default();
    for (message, stored_ns) in read_all_stored(js, "NUDGE_ACTIONS").await {
        let action = json_payload(&message);
        match action["type"].as_str() {
            Some("nudge.action.webhook") if action["data"]["n"].is_number() => {
                out.violations.push(action["data"].clone())
            }
            Some("nudge.action.push") if action["data"]["n"].is_number() => {
                let cause = action["causationid"]
                    .as_str()
                    .expect("causationid")
                    .to_owned();
                out.stored_ns.entry(cause.clone()).or_insert(stored_ns);
                *out.pushes.entry(cause).or_default() += 1;
            }
            other => *out.others.entry(format!("{other:?}")).or_default() += 1,
        }
    }
    out
}

/// Every profile's events were decided once each, in order: no violation, one push per event.
pub async fn assert_in_order_and_once(js: &jetstream::Context, profiles: u32, rounds: u32) {
    let actions = ordered_actions(js).await;
    let verdict = actions.verdict(profiles, rounds);
    assert!(verdict.is_empty(), "{}", verdict.join("\n"));
    assert!(
        actions.others.is_empty(),
        "unexpected actions: {:?}",
        actions.others
    );
}

impl OrderedActions {
    /// What is wrong, if anything, for `profiles` × `rounds` events: each a sentence.
    pub fn verdict(&self, profiles: u32, rounds: u32) -> Vec<String> {
        let mut wrong = Vec::new();
        if !self.violations.is_empty() {
            wrong.push(format!(
                "{} events were decided out of order, e.g. {:?}",
                self.violations.len(),
                &self.violations[..self.violations.len().min(5)]
            ));
        }
        let missing: Vec<String> = (0..profiles)
            .flat_map(|p| (1..=rounds).map(move |n| step_id(p, n)))
            .filter(|id| !self.pushes.contains_key(id))
            .collect();
        if !missing.is_empty() {
            wrong.push(format!(
                "{} events lost (no action), e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            ));
        }
        let expected = (profiles * rounds) as usize;
        if self.pushes.len() != expected {
            wrong.push(format!(
                "{} events have actions, {expected} were sent",
                self.pushes.len()
            ));
        }
        let twice = self.pushes.values().filter(|count| **count > 1).count();
        if twice > 0 {
            wrong.push(format!(
                "{twice} events have their action stored more than once"
            ));
        }
        wrong
    }
}
