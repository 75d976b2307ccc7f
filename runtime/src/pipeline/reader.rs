//! Reading `NUDGE_EVENTS`: one consumer per instance reads every event in order (no acks: what
//! an instance has done is recorded as each partition's committed position, not per message),
//! finds each event's partition from its `subject` without decoding the rest, and hands the
//! events of the partitions this instance owns to their workers, in stream order. Events of
//! other partitions are skipped here; their owners read them too.
//!
//! The reader starts at the lowest position a routed partition still needs. A partition routed
//! later that needs older events makes the reader go back to them; the partitions that already
//! have them skip them by sequence. Each partition's queue is bounded: a worker that falls behind
//! makes the reader wait (that is backpressure, not loss).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use bytes::Bytes;
use futures::StreamExt;
use nudge_rules::partition::{partition_of, profile_key_of};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::telemetry;
use crate::topology::EVENTS_STREAM;

/// How often the server says the reader's consumer is alive when there is nothing to read; two
/// missed in a row reopen it.
const READER_HEARTBEAT: Duration = Duration::from_secs(2);
/// An abandoned reader consumer (its instance died) is removed by the server after this long.
const READER_INACTIVE_THRESHOLD: Duration = Duration::from_secs(30);

/// An event as the reader hands it over.
pub struct Delivered {
    pub seq: u64,
    pub subject: async_nats::Subject,
    pub payload: Bytes,
    /// Its profile key, when its payload has a string `subject`.
    pub key: Option<String>,
    pub received: Instant,
}

/// The events of one partition from one read, and how far the read went: every event of the
/// partition up to `watermark` has now been handed over.
pub struct Batch {
    pub events: Vec<Delivered>,
    pub watermark: u64,
}

struct Route {
    sender: mpsc::Sender<Batch>,
    /// The next sequence this partition needs.
    next: u64,
    generation: u64,
}

/// Which partitions this instance reads for, and where each stands.
pub struct Router {
    partitions: u32,
    routes: Mutex<Vec<Option<Route>>>,
    changed: Notify,
    generation: AtomicU64,
    /// The stream's last sequence as the reader last saw it (for lag).
    pub tail: AtomicU64,
}

impl Router {
    pub fn new(partitions: u32) -> Router {
        Router {
            partitions,
            routes: Mutex::new((0..partitions).map(|_| None).collect()),
            changed: Notify::new(),
            generation: AtomicU64::new(0),
            tail: AtomicU64::new(0),
        }
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Vec<Option<Route>>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Routes `partition`'s events after `resume_after` to `sender`.
    pub fn attach(&self, partition: u32, resume_after: u64, sender: mpsc::Sender<Batch>) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(slot) = self.routes().get_mut(partition as usize) {
            *slot = Some(Route {
                sender,
                next: resume_after + 1,
                generation,
            });
        }
        self.changed.notify_one();
    }

    /// Stops routing `partition` (its worker's queue closes once drained).
    pub fn detach(&self, partition: u32) {
        if let Some(slot) = self.routes().get_mut(partition as usize) {
            *slot = None;
        }
        self.changed.notify_one();
    }

    /// The lowest sequence a routed partition needs; `None` when nothing is routed.
    fn start(&self) -> Option<u64> {
        self.routes().iter().flatten().map(|r| r.next).min()
    }
}

/// Reads until `shutdown`, reopening the consumer after errors and going back when a partition
/// needs older events.
pub async fn run(js: Context, router: Arc<Router>, read_batch: usize, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let Some(start) = router.start() else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = router.changed.notified() => continue,
            }
        };
        let opened = async {
            let stream = js.get_stream(EVENTS_STREAM).await?;
            // An ephemeral, unacknowledged consumer in memory, the way an ordered consumer is
            // made — but read with a short heartbeat, so losing the server that holds it (a
            // cluster node restarting) is noticed in seconds, and reopened from where this
            // reader stood.
            let consumer = stream
                .create_consumer(pull::Config {
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: start,
                    },
                    ack_policy: AckPolicy::None,
                    memory_storage: true,
                    num_replicas: 1,
                    inactive_threshold: READER_INACTIVE_THRESHOLD,
                    ..Default::default()
                })
                .await?;
            let messages = consumer
                .stream()
                .max_messages_per_batch(read_batch.max(1))
                .heartbeat(READER_HEARTBEAT)
                .expires(READER_HEARTBEAT * 4)
                .messages()
                .await?;
            anyhow::Ok(messages)
        }
        .await;
        let messages = match opened {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot read events yet; retrying"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        tracing::info!(from = start, "reading {EVENTS_STREAM}");
        let mut chunks = messages.ready_chunks(read_batch.max(1));
        // The last sequence handed over (or skipped) since this consumer opened, and the
        // consumer's own count: a gap in it means a message was lost on the way (the client
        // dropped it as a slow consumer), and the reader reopens after the last one it has.
        let mut read_to = start.saturating_sub(1);
        let mut delivered = 0;
        loop {
            let chunk = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = router.changed.notified() => {
                    // A partition routed or unrouted: go back if one needs older events.
                    if needs_rewind(&router, read_to) { break } else { continue }
                }
                chunk = chunks.next() => chunk,
            };
            let Some(chunk) = chunk else {
                tracing::warn!("the event stream ended; reopening it");
                break;
            };
            let mut deliveries = Vec::with_capacity(chunk.len());
            let mut failed = false;
            for message in chunk {
                match message {
                    Ok(message) => match message.info() {
                        Ok(info) if info.consumer_sequence != delivered + 1 => {
                            tracing::warn!(
                                after = read_to,
                                "an event went missing between the server and this reader; reopening"
                            );
                            failed = true;
                            break;
                        }
                        Ok(info) => {
                            delivered = info.consumer_sequence;
                            router
                                .tail
                                .store(info.stream_sequence + info.pending, Ordering::Release);
                            let seq = info.stream_sequence;
                            let message = message.split().0;
                            deliveries.push(Delivered {
                                seq,
                                key: profile_key_of(&message.payload).map(|k| k.into_owned()),
                                subject: message.subject,
                                payload: message.payload,
                                received: Instant::now(),
                            });
                        }
                        Err(error) => {
                            tracing::warn!(%error, "an event without stream metadata; reopening");
                            failed = true;
                        }
                    },
                    Err(error) => {
                        tracing::warn!(%error, "reading events failed; reopening");
                        failed = true;
                    }
                }
            }
            let read_before = read_to;
            if let Some(last) = deliveries.last() {
                read_to = last.seq;
            }
            telemetry::reader_lag(router.tail.load(Ordering::Acquire).saturating_sub(read_to));
            dispatch(&router, read_before, deliveries).await;
            if failed || needs_rewind(&router, read_to) {
                break;
            }
        }
    }
}

/// Whether a routed partition needs an event the reader already passed (it was routed after
/// that read).
fn needs_rewind(router: &Router, read_to: u64) -> bool {
    router.routes().iter().flatten().any(|r| r.next <= read_to)
}

/// Hands each routed partition its events of this read and its watermark. `read_before` is where
/// the reader stood before it: a partition that still needs something at or before it (routed
/// since) gets nothing now — the reader goes back for it.
async fn dispatch(router: &Router, read_before: u64, deliveries: Vec<Delivered>) {
    let Some(watermark) = deliveries.last().map(|d| d.seq) else {
        return;
    };
    let partitions = router.partitions;
    let snapshot: Vec<Option<(mpsc::Sender<Batch>, u64, u64)>> = router
        .routes()
        .iter()
        .map(|r| {
            r.as_ref()
                .filter(|r| r.next > read_before)
                .map(|r| (r.sender.clone(), r.next, r.generation))
        })
        .collect();
    let mut batches: Vec<Vec<Delivered>> = snapshot.iter().map(|_| Vec::new()).collect();
    let mut skipped = 0_u64;
    for delivered in deliveries {
        let partition = match &delivered.key {
            Some(key) => partition_of(key, partitions),
            None => partition_of(delivered.subject.as_str(), partitions),
        } as usize;
        match &snapshot[partition] {
            Some((_, next, _)) if delivered.seq >= *next => batches[partition].push(delivered),
            _ => skipped += 1,
        }
    }
    metrics::counter!(telemetry::EVENTS_SKIPPED).increment(skipped);
    for (partition, events) in batches.into_iter().enumerate() {
        let Some((sender, next, generation)) = &snapshot[partition] else {
            continue;
        };
        if watermark < *next {
            continue;
        }
        // A watermark alone is handed over too, waiting for room like events: the read that
        // would carry a later one may never come (the end of the stream), and a partition
        // that never learns how far it has been handed everything never commits that far.
        let handed_over = sender.send(Batch { events, watermark }).await.is_ok();
        if handed_over {
            let mut routes = router.routes();
            if let Some(Some(route)) = routes.get_mut(partition)
                && route.generation == *generation
            {
                route.next = route.next.max(watermark + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PARTITIONS: u32 = 4;

    fn event(seq: u64, profile: u32) -> Delivered {
        Delivered {
            seq,
            subject: "events.x".into(),
            payload: Bytes::new(),
            key: Some(format!("user-{profile}")),
            received: Instant::now(),
        }
    }

    /// What a worker makes of its queue: the events it decides, in order.
    fn decided(queue: &mut mpsc::Receiver<Batch>, resume_after: u64) -> Vec<u64> {
        let mut decided = resume_after;
        let mut seen = Vec::new();
        while let Ok(batch) = queue.try_recv() {
            for event in batch.events {
                if event.seq > decided {
                    decided = event.seq;
                    seen.push(event.seq);
                }
            }
            decided = decided.max(batch.watermark);
        }
        seen
    }

    /// A partition routed after `after_reads` reads, between a read and its dispatch
    /// (`mid_read`) or after the dispatch, resuming after `resume_after`.
    #[derive(Debug, Clone)]
    struct Routing {
        partition: u32,
        resume_after: u64,
        after_reads: usize,
        mid_read: bool,
    }

    struct Simulation {
        router: Router,
        plan: Vec<Routing>,
        queues: Vec<Option<(mpsc::Receiver<Batch>, u64)>>,
        reads: usize,
    }

    impl Simulation {
        /// Routes what is due at this point of the reader's loop (`force`: everything left).
        fn route_due(&mut self, mid_read: bool, force: bool) {
            let reads = self.reads;
            let (due, later): (Vec<Routing>, Vec<Routing>) = self
                .plan
                .drain(..)
                .partition(|r| force || (r.after_reads <= reads && r.mid_read == mid_read));
            self.plan = later;
            for routing in due {
                let (sender, queue) = mpsc::channel(10_000);
                self.router
                    .attach(routing.partition, routing.resume_after, sender);
                self.queues[routing.partition as usize] = Some((queue, routing.resume_after));
            }
        }
    }

    proptest! {
        /// However partitions are routed between reads (or between a read and its dispatch),
        /// each gets every one of its events after its resume point exactly once, in order, and
        /// no watermark passes an event it did not get.
        #[test]
        fn every_routed_partition_gets_each_of_its_events_once_in_order(
            profiles in proptest::collection::vec(0_u32..40, 1..120),
            routings in proptest::collection::vec(
                (0..PARTITIONS, 0_u64..130, 0_usize..20, any::<bool>()), 1..6),
            chunk in 1_usize..16,
        ) {
            let stream: Vec<(u64, u32)> =
                profiles.iter().enumerate().map(|(i, p)| (i as u64 + 1, *p)).collect();
            let last = stream.len() as u64;
            let mut plan: Vec<Routing> = Vec::new();
            for (partition, resume_after, after_reads, mid_read) in routings {
                if plan.iter().all(|r| r.partition != partition) {
                    plan.push(Routing { partition, resume_after: resume_after.min(last), after_reads, mid_read });
                }
            }
            let mut sim = Simulation {
                router: Router::new(PARTITIONS),
                plan,
                queues: (0..PARTITIONS).map(|_| None).collect(),
                reads: 0,
            };
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                // The reader's loop over an in-memory stream: open at the lowest position a
                // route needs, read in chunks, go back when a route needs what was passed.
                sim.route_due(false, false);
                let mut opens = 0;
                loop {
                    let Some(start) = sim.router.start() else {
                        if sim.plan.is_empty() { break; }
                        sim.route_due(false, true);
                        continue;
                    };
                    opens += 1;
                    prop_assert!(opens < 200, "the reader keeps going back");
                    let mut read_to = start - 1;
                    let mut rewind = false;
                    let from = (start as usize - 1).min(stream.len());
                    for piece in stream[from..].chunks(chunk) {
                        sim.reads += 1;
                        sim.route_due(true, false);
                        let read_before = read_to;
                        read_to = piece.last().map_or(read_to, |e| e.0);
                        let deliveries = piece.iter().map(|(seq, p)| event(*seq, *p)).collect();
                        dispatch(&sim.router, read_before, deliveries).await;
                        sim.route_due(false, false);
                        if needs_rewind(&sim.router, read_to) {
                            rewind = true;
                            break;
                        }
                    }
                    if rewind {
                        continue;
                    }
                    // At the end of the stream, waiting for more: what is routed now is served
                    // by going back.
                    if sim.plan.is_empty() && !needs_rewind(&sim.router, read_to.max(last)) {
                        break;
                    }
                    sim.route_due(false, true);
                    if !needs_rewind(&sim.router, read_to.max(last)) {
                        break;
                    }
                }
                for (p, routed) in sim.queues.iter_mut().enumerate() {
                    let Some((queue, resume)) = routed else { continue };
                    let expected: Vec<u64> = stream
                        .iter()
                        .filter(|(seq, profile)| {
                            *seq > *resume
                                && partition_of(&format!("user-{profile}"), PARTITIONS) == p as u32
                        })
                        .map(|(seq, _)| *seq)
                        .collect();
                    prop_assert_eq!(decided(queue, *resume), expected, "partition {}", p);
                }
                Ok(())
            })?;
        }
    }
}
