//! What a chaos run sends: the ordered load, poison events, events that set off hostile rules and
//! plugins, and rule and plugin changes made between faults.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use reqwest::Method;
use serde_json::json;

use super::Plan;
use super::faults::now_ns;
use crate::ordered::SEND_LIMIT;
use crate::{Nudge, event, ordered, plugin_wasm};

/// How long a publish may go unacknowledged (retried) before the run gives up: longer than the
/// longest stop of the whole cluster.
const GIVE_UP_AFTER: Duration = Duration::from_secs(180);

/// How often a poison event is sent; every fourth tick also sends a hostile event.
const POISON_EVERY: Duration = Duration::from_millis(500);

/// The hostile plugin fixture's misbehaviours (`plugins/fixtures/hostile`), by event type suffix.
const HOSTILE_KINDS: [&str; 4] = ["loop", "memory", "recursion", "trap"];

/// What the ordered load sent.
#[derive(Clone, Debug)]
pub struct LoadOutcome {
    /// Complete rounds: every profile has events `1..=rounds`.
    pub rounds: u32,
    pub started_ns: i128,
    pub ended_ns: i128,
}

/// Sends rounds of ordered events, paced to the plan's rate, until `stop` (finishing the round
/// under way, so every profile ends with the same number of events).
pub async fn ordered_load(
    js: jetstream::Context,
    plan: Plan,
    stop: Arc<AtomicBool>,
) -> LoadOutcome {
    let started_ns = now_ns();
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) {
        ordered::publish_round(
            &js,
            plan.profiles,
            rounds + 1,
            Some(plan.rate_per_s),
            GIVE_UP_AFTER,
        )
        .await;
        rounds += 1;
    }
    LoadOutcome {
        rounds,
        started_ns,
        ended_ns: now_ns(),
    }
}

/// What the poison and hostile sender sent.
#[derive(Clone, Debug, Default)]
pub struct SideOutcome {
    /// Every poison payload JetStream stored, as sent.
    pub poison: Vec<Vec<u8>>,
    /// Events that set off the hostile rule and plugin.
    pub hostile_events: usize,
}

/// Sends a poison event every [`POISON_EVERY`] — alternately bytes that are not JSON and a
/// CloudEvent without its `subject` — and every fourth time an event the hostile plugin and rule
/// misbehave on, until `stop`.
pub async fn poison_and_hostile_events(
    js: jetstream::Context,
    stop: Arc<AtomicBool>,
) -> SideOutcome {
    let mut out = SideOutcome::default();
    let mut tick = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tick += 1;
        let id = format!("poison-{tick}");
        let payload = if tick.is_multiple_of(2) {
            format!("not a CloudEvent #{tick}").into_bytes()
        } else {
            let no_subject =
                json!({"specversion": "1.0", "id": id, "source": "chaos", "type": "chaos.poison"});
            serde_json::to_vec(&no_subject).expect("JSON")
        };
        publish_until_stored(&js, "events.chaos.poison", &id, &payload).await;
        out.poison.push(payload);
        if tick.is_multiple_of(4) {
            let kind = HOSTILE_KINDS[(tick / 4) % HOSTILE_KINDS.len()];
            let id = format!("hostile-{tick}");
            let hostile = event(
                &id,
                &format!("hostile.{kind}"),
                &format!("hostile-{}", tick % 10),
                json!({}),
            );
            let body = serde_json::to_vec(&hostile).expect("JSON");
            publish_until_stored(&js, &format!("events.hostile.{kind}"), &id, &body).await;
            out.hostile_events += 1;
        }
        tokio::time::sleep(POISON_EVERY).await;
    }
    out
}

/// Publishes `payload` with `id` as `Nats-Msg-Id` until JetStream acknowledges it (a copy it had
/// already stored is dropped by the id).
async fn publish_until_stored(js: &jetstream::Context, subject: &str, id: &str, payload: &[u8]) {
    let deadline = Instant::now() + GIVE_UP_AFTER;
    loop {
        let message = jetstream::message::PublishMessage::build()
            .payload(payload.to_vec().into())
            .message_id(id);
        let sent = tokio::time::timeout(SEND_LIMIT, js.send_publish(subject.to_owned(), message));
        if let Ok(Ok(ack)) = sent.await
            && ack.await.is_ok()
        {
            return;
        }
        assert!(Instant::now() < deadline, "the broker never took {id}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The hostile rule and plugin a run installs.
pub struct Hostile {
    wasm: Vec<u8>,
}

const LOOPING_RULE: &str = "loop {}";
const GROWING_RULE: &str = r#"let s = "x"; loop { s += s; }"#;

/// Installs a rule that never ends and the plugin fixture that misbehaves, both on `hostile.*`.
pub async fn install_hostile(nudge: &Nudge) -> Hostile {
    let hostile = Hostile {
        wasm: plugin_wasm("hostile"),
    };
    nudge.put_rule("looper", hostile_rule(LOOPING_RULE)).await;
    nudge
        .put_plugin(
            "hostile",
            hostile.wasm.clone(),
            json!({ "triggers": ["hostile.*"] }),
        )
        .await;
    hostile
}

fn hostile_rule(script: &str) -> serde_json::Value {
    json!({"name": "looper", "triggers": ["hostile.*"], "script": script})
}

/// The rule and plugin changes made between faults, and how they were answered.
#[derive(Debug, Default)]
pub struct RuleChanges {
    /// Changes stored.
    pub accepted: usize,
    /// Rules that do not compile, refused with a 422 naming the script's line.
    pub refused: usize,
    /// Answers that were neither: each a sentence.
    pub unexpected: Vec<String>,
    /// 5xx answers (JetStream still electing its leaders after a fault), each retried.
    pub retried: usize,
    made: usize,
}

/// A 5xx right after a fault is retried this often, a second apart: longer than JetStream takes
/// to elect new leaders.
const CHANGE_ATTEMPTS: usize = 30;

impl RuleChanges {
    /// Makes the next change in turn: a new version of the hostile rule, a rule that does not
    /// compile (which must be refused), or the hostile plugin uploaded again.
    pub async fn make_one(&mut self, nudge: &Nudge, hostile: &Hostile) {
        self.made += 1;
        let (what, expected_status) = match self.made % 3 {
            0 => ("the hostile plugin uploaded again", 200),
            1 => ("a new version of the hostile rule", 200),
            _ => ("a rule that does not compile", 422),
        };
        for attempt in 1..=CHANGE_ATTEMPTS {
            let (status, body) = match self.made % 3 {
                0 => {
                    let manifest = json!({ "triggers": ["hostile.*"] });
                    nudge
                        .upload_plugin("hostile", hostile.wasm.clone(), manifest)
                        .await
                }
                1 => {
                    let script = if self.made.is_multiple_of(2) {
                        LOOPING_RULE
                    } else {
                        GROWING_RULE
                    };
                    nudge
                        .api(Method::PUT, "/api/rules/looper", Some(hostile_rule(script)))
                        .await
                }
                _ => {
                    let broken = json!({"name": "broken", "triggers": ["step.taken"], "script": "push(#{ n: }"});
                    nudge
                        .api(Method::PUT, "/api/rules/broken", Some(broken))
                        .await
                }
            };
            let status = status.as_u16();
            if status >= 500 && attempt < CHANGE_ATTEMPTS {
                self.retried += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            match (status, expected_status) {
                (200..=299, 200) => self.accepted += 1,
                (422, 422)
                    if body["error"]["field"] == "script" && body["error"]["line"].is_number() =>
                {
                    self.refused += 1
                }
                _ => self
                    .unexpected
                    .push(format!("{what}: answered {status} {body}")),
            }
            return;
        }
    }
}
