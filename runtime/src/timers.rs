//! Durable timers: timer events (`after(..)`) and actions held by quiet hours wait in the KV
//! bucket `NUDGE_TIMERS`, one key per message id holding what to publish and when.
//!
//! Every instance follows the bucket into an in-memory index of `(due, id)` and, every
//! [`TICK`], publishes what fell due with its deterministic `Nats-Msg-Id`, then deletes the key.
//! Several instances firing the same timer publish the same message id, which JetStream
//! deduplicates; a crash between publishing and deleting republishes on restart, deduplicated the
//! same way. A timer that came due while nudge was down fires as soon as it is back. Whether a
//! fired timer event still counts is the profile's call (see `decide`): a cancelled or replaced
//! timer's event is dropped there.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::kv;
use async_nats::jetstream::message::PublishMessage;
use nudge_rules::decide::Scheduled;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::telemetry;

/// How often due timers are looked for: well inside the "within a second of due" promise.
const TICK: Duration = Duration::from_millis(100);
/// Messages published per tick at most, so a backlog after downtime drains in steps.
const MAX_FIRED_PER_TICK: usize = 1_000;

#[derive(Serialize, Deserialize)]
struct Entry {
    due_ms: i64,
    subject: String,
    body: String,
}

#[derive(Deserialize)]
struct Due {
    due_ms: i64,
}

#[derive(Clone)]
pub struct TimerStore {
    kv: kv::Store,
    js: Context,
}

impl TimerStore {
    pub fn new(kv: kv::Store, js: Context) -> Self {
        TimerStore { kv, js }
    }

    /// Stores timers (writing the same id again is harmless: same content), every write sent
    /// before any acknowledgement is awaited.
    pub async fn schedule_all(&self, scheduled: &[Scheduled]) -> anyhow::Result<()> {
        let mut acks = Vec::with_capacity(scheduled.len());
        for timer in scheduled {
            let entry = Entry {
                due_ms: timer.due_ms,
                subject: timer.message.subject.clone(),
                body: timer.message.body.clone(),
            };
            let subject = format!("{}{}", self.kv.prefix, timer.message.id);
            acks.push(
                self.js
                    .send_publish(
                        subject,
                        PublishMessage::build().payload(serde_json::to_vec(&entry)?.into()),
                    )
                    .await?,
            );
        }
        for ack in acks {
            ack.await?;
        }
        Ok(())
    }

    /// Drops a timer that should no longer fire. Best effort: if this fails, the timer's event
    /// still reaches the profile, which knows it was cancelled.
    pub async fn unschedule(&self, id: &str) {
        if let Err(error) = self.kv.purge(id).await {
            tracing::debug!(%error, id, "could not purge a cancelled timer");
        }
    }
}

#[derive(Default)]
struct Index {
    by_due: BTreeSet<(i64, String)>,
    due_of: HashMap<String, i64>,
}

impl Index {
    fn insert(&mut self, id: String, due_ms: i64) {
        if let Some(old) = self.due_of.insert(id.clone(), due_ms) {
            self.by_due.remove(&(old, id.clone()));
        }
        self.by_due.insert((due_ms, id));
    }

    fn remove(&mut self, id: &str) {
        if let Some(due) = self.due_of.remove(id) {
            self.by_due.remove(&(due, id.to_owned()));
        }
    }

    fn due(&self, now_ms: i64) -> Vec<(i64, String)> {
        self.by_due
            .iter()
            .take_while(|(due, _)| *due <= now_ms)
            .take(MAX_FIRED_PER_TICK)
            .cloned()
            .collect()
    }
}

/// Follows the timers bucket and fires what falls due, until `shutdown`.
pub async fn run(store: TimerStore, js: Context, clock: SharedClock, shutdown: CancellationToken) {
    let index = Arc::new(Mutex::new(Index::default()));
    let loaded = AtomicBool::new(false);
    let follower = {
        let index = index.clone();
        let kv = store.kv.clone();
        let shutdown = shutdown.clone();
        async move {
            crate::versioned::follow(&kv, "timers", &loaded, &shutdown, |entry| {
                let mut index = index.lock().unwrap_or_else(|e| e.into_inner());
                match entry.operation {
                    kv::Operation::Put => match serde_json::from_slice::<Due>(&entry.value) {
                        Ok(due) => index.insert(entry.key, due.due_ms),
                        Err(error) => tracing::warn!(%error, key = %entry.key, "unreadable timer"),
                    },
                    kv::Operation::Delete | kv::Operation::Purge => index.remove(&entry.key),
                }
                telemetry::timers_pending(index.due_of.len());
                std::future::ready(())
            })
            .await;
        }
    };
    let firer = async {
        while !shutdown.is_cancelled() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
            }
            let now_ms = clock.now_ms();
            let due = index.lock().unwrap_or_else(|e| e.into_inner()).due(now_ms);
            for (due_ms, id) in due {
                match fire(&store, &js, &id).await {
                    Ok(fired) => {
                        index.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                        if let Some(kind) = fired {
                            telemetry::timer_fired(kind, (now_ms - due_ms) as f64 / 1_000.0);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            id,
                            "firing a timer failed; retrying"
                        );
                        break;
                    }
                }
            }
        }
    };
    tokio::join!(follower, firer);
}

/// Publishes one due timer and deletes it. `Ok(None)`: it was already gone.
async fn fire(store: &TimerStore, js: &Context, id: &str) -> anyhow::Result<Option<&'static str>> {
    let Some(entry) = store.kv.get(id).await? else {
        return Ok(None);
    };
    let entry: Entry = serde_json::from_slice(&entry)?;
    let publish = PublishMessage::build()
        .payload(entry.body.into_bytes().into())
        .message_id(id)
        .header("Content-Type", "application/cloudevents+json");
    js.send_publish(entry.subject.clone(), publish)
        .await?
        .await?;
    store.unschedule(id).await;
    let kind = if entry.subject.starts_with("actions.") {
        "release"
    } else {
        "timer"
    };
    Ok(Some(kind))
}
