//! The consuming side: pull events from `NUDGE_EVENTS`, hand each to the lane of its profile,
//! and let lanes evaluate, publish and ack.
//!
//! Ordering: one lane per profile hash, each lane strictly sequential, so events of one profile
//! are decided and acked in stream order while different profiles run concurrently
//! (`lanes` × `lane_queue` bounds the work in memory; `max_ack_pending` bounds it on the server).
//! Scaling out across instances keeps this shape: a lane is the unit a partition owner would
//! own.

mod process;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::{Consumer, pull};
use futures::StreamExt;
use nudge_rules::CloudEvent;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use process::{InFlight, Processor, decode, send_actions};

use crate::config::Settings;
use crate::telemetry;

type Work = (Message, Result<CloudEvent, String>);

/// Consumes until `shutdown`, then stops fetching, lets the lanes finish what they hold (acking
/// it) within `shutdown_grace_ms`, and returns. Anything not finished is redelivered later.
pub async fn run(
    processor: Arc<Processor>,
    consumer: Consumer<pull::Config>,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let lanes = settings.lanes.max(1);
    let mut senders = Vec::with_capacity(lanes);
    let mut workers = JoinSet::new();
    for _ in 0..lanes {
        let (sender, mut receiver) = mpsc::channel::<Work>(settings.lane_queue.max(1));
        senders.push(sender);
        let processor = processor.clone();
        let lane_batch = settings.lane_queue.max(1);
        workers.spawn(async move {
            // Take what is queued at once: send every event's actions, then confirm them in
            // order. The lane stays sequential per profile without waiting a round trip per event.
            let mut batch = Vec::with_capacity(lane_batch);
            let mut in_flight = Vec::with_capacity(lane_batch);
            while receiver.recv_many(&mut batch, lane_batch).await > 0 {
                for (message, decoded) in batch.drain(..) {
                    in_flight.push(processor.start(message, decoded).await);
                }
                for sent in in_flight.drain(..) {
                    processor.finish(sent).await;
                }
            }
        });
    }
    let lag = tokio::spawn(report_lag(consumer.clone(), shutdown.clone()));

    let mut messages = consumer
        .stream()
        .max_messages_per_batch(settings.fetch_batch.max(1))
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await?;
    tracing::info!(lanes, "consuming events.>");
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            next = messages.next() => next,
        };
        match next {
            None => anyhow::bail!("the JetStream message stream ended"),
            Some(Err(error)) => {
                tracing::warn!(%error, "pulling events failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some(Ok(message)) => {
                let decoded = decode(&message.payload, settings.max_event_bytes);
                let key = match &decoded {
                    Ok(event) => event.subject.as_str(),
                    Err(_) => message.subject.as_str(),
                };
                let lane = lane_of(key, lanes);
                if senders[lane].send((message, decoded)).await.is_err() {
                    anyhow::bail!("lane {lane} stopped");
                }
            }
        }
    }
    drop(messages);
    drop(senders);
    lag.abort();
    let grace = Duration::from_millis(settings.shutdown_grace_ms);
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
    Ok(())
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
