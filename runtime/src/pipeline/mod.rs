//! The consuming side: pull events from `NUDGE_EVENTS`, hand each to the lane of its profile,
//! and let lanes evaluate, publish and ack.
//!
//! Ordering: one lane per profile hash, each lane strictly sequential, so events of one profile
//! are decided and acked in stream order while different profiles run concurrently
//! (`max_ack_pending` bounds the events in flight; `lane_queue` the batches a lane may queue).
//! Scaling out across instances keeps this shape: a lane is the unit a partition owner would
//! own.

mod decision;
pub mod dlq;
mod process;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::MessagesError;
use async_nats::jetstream::consumer::{Consumer, pull};
use async_nats::jetstream::{AckKind, Context, Message};
use futures::StreamExt;
use nudge_rules::CloudEvent;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use decision::Decisions;
pub use process::{Processor, decode};

use crate::config::Settings;
use crate::{telemetry, topology};

type Work = (Message, Result<CloudEvent, String>);

/// On shutdown, fetched events keep arriving until the open pull request is used up; stop handing
/// them back once none came for this long.
const HAND_BACK_IDLE: Duration = Duration::from_millis(100);
/// And in any case after this long: what is left is redelivered after `ack_wait_ms`.
const HAND_BACK_MAX: Duration = Duration::from_secs(2);
/// A handed-back event is redelivered after this delay, not at once: at once it would come
/// straight back into this closing subscription, be handed back again, and use up
/// `max_deliver` within the hand-back window (ending in the DLQ instead of another instance).
const HAND_BACK_REDELIVERY: Duration = Duration::from_secs(3);

/// Consumes until `shutdown`, then stops fetching, lets the lanes finish what they hold (acking
/// it) within `shutdown_grace_ms`, and returns. Anything not finished is redelivered later.
/// A broken message stream (the broker restarted, the consumer vanished) is reopened, with the
/// consumer re-created if needed; the lanes keep their work meanwhile.
pub async fn run(
    processor: Arc<Processor>,
    js: Context,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let lanes = Lanes::spawn(&processor, &settings);
    let mut lag = None;
    let fetch_batch = settings.fetch_batch.max(1);
    while !shutdown.is_cancelled() {
        let opened = async {
            let consumer = topology::ensure_consumer(&js, &settings).await?;
            let messages = consumer
                .stream()
                .max_messages_per_batch(fetch_batch)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await?;
            anyhow::Ok((consumer, messages))
        }
        .await;
        let (consumer, messages) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot consume events yet; retrying"
                );
                sleep_unless_cancelled(Duration::from_secs(1), &shutdown).await;
                continue;
            }
        };
        if let Some(previous) = lag.replace(tokio::spawn(report_lag(consumer, shutdown.clone()))) {
            previous.abort();
        }
        tracing::info!(lanes = lanes.senders.len(), "consuming events.>");
        // Everything already delivered is taken at once and split by lane.
        let mut chunks = messages.ready_chunks(fetch_batch);
        loop {
            let chunk = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    hand_back(&mut chunks).await;
                    break;
                }
                chunk = chunks.next() => chunk,
            };
            let Some(chunk) = chunk else {
                tracing::warn!("the JetStream message stream ended; reopening it");
                break;
            };
            if !lanes.dispatch(chunk, settings.max_event_bytes).await? {
                sleep_unless_cancelled(Duration::from_millis(200), &shutdown).await;
            }
        }
    }
    if let Some(lag) = lag {
        lag.abort();
    }
    lanes
        .finish(Duration::from_millis(settings.shutdown_grace_ms))
        .await;
    Ok(())
}

async fn sleep_unless_cancelled(duration: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(duration) => {}
    }
}

/// The per-profile lanes: one task each, fed batches over a bounded channel.
struct Lanes {
    senders: Vec<mpsc::Sender<Vec<Work>>>,
    workers: JoinSet<()>,
}

impl Lanes {
    fn spawn(processor: &Arc<Processor>, settings: &Settings) -> Lanes {
        let lane_queue = settings.lane_queue.max(1);
        let mut senders = Vec::with_capacity(settings.lanes.max(1));
        let mut workers = JoinSet::new();
        for _ in 0..settings.lanes.max(1) {
            // A lane receives batches: one wake-up per lane per fetched chunk, not per event.
            let (sender, mut receiver) = mpsc::channel::<Vec<Work>>(lane_queue);
            senders.push(sender);
            let processor = processor.clone();
            let mut cache = processor.profile_cache();
            workers.spawn(async move {
                // Send every queued event's actions, then confirm them in order: the lane stays
                // sequential per profile without waiting a round trip per event.
                let mut batches = Vec::with_capacity(lane_queue);
                let mut in_flight = Vec::new();
                while receiver.recv_many(&mut batches, lane_queue).await > 0 {
                    for (message, decoded) in batches.drain(..).flatten() {
                        in_flight.push(processor.start(message, decoded, &mut cache).await);
                    }
                    for sent in in_flight.drain(..) {
                        processor.finish(sent, &mut cache).await;
                    }
                }
            });
        }
        Lanes { senders, workers }
    }

    /// Decodes a fetched chunk and hands each event to its profile's lane. Returns false when
    /// the chunk carried a pull error (the caller backs off briefly).
    async fn dispatch(
        &self,
        chunk: Vec<Result<Message, MessagesError>>,
        max_event_bytes: usize,
    ) -> anyhow::Result<bool> {
        let lanes = self.senders.len();
        let mut by_lane: Vec<Vec<Work>> = std::iter::repeat_with(Vec::new).take(lanes).collect();
        let mut clean = true;
        for item in chunk {
            match item {
                Err(error) => {
                    tracing::warn!(%error, "pulling events failed; retrying");
                    clean = false;
                }
                Ok(message) => {
                    let decoded = decode(&message.payload, max_event_bytes);
                    let key = match &decoded {
                        Ok(event) => event.subject.as_str(),
                        Err(_) => message.subject.as_str(),
                    };
                    by_lane[lane_of(key, lanes)].push((message, decoded));
                }
            }
        }
        for (lane, work) in by_lane.into_iter().enumerate() {
            if !work.is_empty() && self.senders[lane].send(work).await.is_err() {
                anyhow::bail!("lane {lane} stopped");
            }
        }
        Ok(clean)
    }

    /// Lets every lane finish what it holds, within `grace`.
    async fn finish(self, grace: Duration) {
        let Lanes {
            senders,
            mut workers,
        } = self;
        drop(senders);
        let drained = tokio::time::timeout(grace, async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                ?grace,
                "in-flight events not finished in time; JetStream will redeliver them"
            );
        }
    }
}

/// Events already delivered to this process but not handed to a lane go straight back, so
/// another instance (or the next start) gets them now rather than after `ack_wait_ms`.
async fn hand_back<S>(chunks: &mut S)
where
    S: futures::Stream<Item = Vec<Result<Message, MessagesError>>> + Unpin,
{
    let mut handed_back = 0;
    let hand_back_until = tokio::time::Instant::now() + HAND_BACK_MAX;
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(
        hand_back_until,
        tokio::time::timeout(HAND_BACK_IDLE, chunks.next()),
    )
    .await
    {
        if chunk.iter().any(Result::is_err) {
            break;
        }
        for message in chunk.into_iter().flatten() {
            if message
                .ack_with(AckKind::Nak(Some(HAND_BACK_REDELIVERY)))
                .await
                .is_ok()
            {
                handed_back += 1;
            }
        }
    }
    if handed_back > 0 {
        tracing::info!(handed_back, "returned undispatched events to the stream");
    }
}

/// FNV-1a: stable across processes and versions, so every instance maps a profile alike.
pub fn lane_of(profile_key: &str, lanes: usize) -> usize {
    let hash = profile_key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % lanes as u64) as usize
}

async fn report_lag(mut consumer: Consumer<pull::Config>, shutdown: CancellationToken) {
    loop {
        if let Ok(info) = consumer.info().await {
            telemetry::consumer_lag(info.num_pending, info.num_ack_pending);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lane_of;

    #[test]
    fn lanes_are_stable_and_spread() {
        assert_eq!(lane_of("user-42", 64), lane_of("user-42", 64));
        let used: std::collections::HashSet<usize> = (0..1_000)
            .map(|i| lane_of(&format!("user-{i}"), 16))
            .collect();
        assert_eq!(used.len(), 16);
    }
}
