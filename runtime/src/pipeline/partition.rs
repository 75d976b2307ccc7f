//! One owned partition, start to end: take the events the reader hands over, in stream order;
//! bring their profiles into memory; decide them on a decision thread; publish their actions at
//! once; and every `checkpoint_interval_ms` (or sooner, when much is waiting) store the traces,
//! confirm the actions, store timers, write the changed profiles, and commit the stream
//! position — in that order, so a new owner resuming from the position finds every effect of
//! what came before it and decides the rest again (deterministic action ids make that publish
//! nothing new).

use std::collections::hash_map::Entry as Slot;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use nudge_rules::ProfileState;
use nudge_rules::decide::Scheduled;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::checkpoint::{self, Snapshot, Written};
use super::decision::{Outcome, decide_all};
use super::memory::ProfileMemory;
use super::outbox::{Halt, Outbox, dead_letter};
use super::reader::{Batch, Delivered};
use super::results::PartitionResults;
use crate::cluster::lease::{Lease, LeaseError};
use crate::profiles;
use crate::telemetry;
use crate::traces::{self, Entry};

/// Profiles loaded from KV at once for one batch.
const LOADS_IN_FLIGHT: usize = 64;

/// How a partition worker ended.
#[derive(Debug)]
pub enum Exit {
    /// Checkpointed and released (rebalance or shutdown).
    Released,
    /// Another instance took it over; nothing was written after that.
    Lost,
    /// The lease ran out (NATS unreachable, or this process was paused); nothing more written.
    Lapsed,
}

impl From<Halt> for Exit {
    fn from(halt: Halt) -> Exit {
        match halt {
            Halt::Lost => Exit::Lost,
            Halt::Lapsed => Exit::Lapsed,
        }
    }
}

/// Metric handles resolved once per partition, not per event.
struct Meters {
    decided: metrics::Counter,
    skipped: metrics::Counter,
    dead_lettered: metrics::Counter,
    events_in: metrics::Counter,
    processing: metrics::Histogram,
    batch: metrics::Histogram,
}

impl Meters {
    fn new() -> Meters {
        let outcome =
            |o: &'static str| metrics::counter!(telemetry::EVENTS_PROCESSED, "outcome" => o);
        Meters {
            decided: outcome("decided"),
            skipped: outcome("skipped"),
            dead_lettered: outcome("dlq"),
            events_in: metrics::counter!(telemetry::EVENTS_IN),
            processing: metrics::histogram!(telemetry::PROCESSING_SECONDS),
            batch: metrics::histogram!(telemetry::BATCH_SECONDS),
        }
    }
}

pub struct Partition {
    lease: Arc<Lease>,
    shared: Arc<Shared>,
    queue: mpsc::Receiver<Batch>,
    stop: CancellationToken,
    memory: Option<ProfileMemory>,
    outbox: Outbox,
    /// Serialized decision traces per profile, stored at the next checkpoint.
    traces: HashMap<String, Vec<Vec<u8>>>,
    /// Profiles changed since a checkpoint last wrote them.
    changed: HashSet<String>,
    schedule: Vec<Scheduled>,
    unschedule: Vec<String>,
    /// Every event of this partition up to this stream sequence is decided.
    decided: u64,
    /// The position the record holds.
    committed: u64,
    partition_label: String,
    meters: Meters,
    /// Checkpoints written, for the atomic batches' ids.
    checkpoints: u64,
    /// This partition's rule results: what KV holds and what waits for its profiles.
    results: PartitionResults,
}

impl Partition {
    pub fn new(
        lease: Arc<Lease>,
        shared: Arc<Shared>,
        queue: mpsc::Receiver<Batch>,
        stop: CancellationToken,
    ) -> Partition {
        let resume_after = lease.resume_after;
        let results = PartitionResults::new(
            lease.partition,
            shared.settings.results_limits(),
            shared.settings.profile_max_bytes,
            HashMap::new(),
        );
        Partition {
            partition_label: lease.partition.to_string(),
            memory: Some(ProfileMemory::new(shared.settings.partition_max_profiles)),
            outbox: Outbox::new(shared.js.clone()),
            lease,
            shared,
            queue,
            stop,
            traces: HashMap::new(),
            changed: HashSet::new(),
            schedule: Vec::new(),
            unschedule: Vec::new(),
            decided: resume_after,
            committed: resume_after,
            meters: Meters::new(),
            checkpoints: 0,
            results,
        }
    }

    /// Runs until released, lost or lapsed.
    pub async fn run(mut self) -> Exit {
        // The results its former owner stored: what this one counts on from.
        match crate::results::of_partition(&self.shared.profiles, self.lease.partition).await {
            Ok(stored) => self.results.restore(stored),
            Err(error) => {
                tracing::warn!(
                    partition = self.lease.partition,
                    error = format!("{error:#}"),
                    "reading the partition's results failed; it starts again"
                );
                return Exit::Lapsed;
            }
        }
        let interval = Duration::from_millis(self.shared.settings.checkpoint_interval_ms.max(1));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lost = self.lease.lost().clone();
        // The checkpoint being written, while this loop decides on.
        let mut flight: Option<Flight> = None;
        let exit = loop {
            let step = tokio::select! {
                biased;
                _ = lost.cancelled() => break Exit::Lost,
                _ = self.stop.cancelled() => break Exit::Released,
                landed = landing(&mut flight) => {
                    flight = None;
                    self.landed(landed)
                }
                _ = tick.tick() => match flight {
                    Some(_) => Ok(()),
                    None => self.start_checkpoint().await.map(|f| flight = f),
                },
                batch = self.queue.recv() => match batch {
                    Some(batch) => match self.take(batch).await {
                        Ok(true) => self.checkpoint_now(&mut flight).await,
                        Ok(false) => Ok(()),
                        Err(exit) => Err(exit),
                    },
                    None => break Exit::Released,
                },
            };
            if let Err(exit) = step {
                break exit;
            }
        };
        if !matches!(exit, Exit::Released) {
            if let Some(flight) = flight {
                flight.abort();
            }
            return exit;
        }
        // Stopping: what is in flight lands, then a last checkpoint covers the rest.
        let last = async {
            if let Some(flight) = flight.take() {
                self.landed(flight.await)?;
            }
            if let Some(flight) = self.start_checkpoint().await? {
                self.landed(flight.await)?;
            }
            Ok(())
        };
        if let Err(exit) = last.await {
            return exit;
        }
        match self.lease.release().await {
            Ok(()) => Exit::Released,
            Err(LeaseError::Lost(_)) => Exit::Lost,
            Err(LeaseError::Transient(error)) => {
                tracing::warn!(partition = self.lease.partition, %error, "could not release the partition; another instance takes it when the lease runs out");
                Exit::Released
            }
        }
    }

    /// Takes `batch` and whatever else is queued, up to `decide_batch_events`, and decides it.
    /// `Ok(true)`: so much waits for a checkpoint that one should start now.
    async fn take(&mut self, batch: Batch) -> Result<bool, Exit> {
        let limit = self.shared.settings.decide_batch_events.max(1);
        let mut events = batch.events;
        let mut watermark = batch.watermark;
        while events.len() < limit {
            let Ok(more) = self.queue.try_recv() else {
                break;
            };
            events.extend(more.events);
            watermark = watermark.max(more.watermark);
        }
        events.retain(|e| e.seq > self.decided);
        if !events.is_empty() {
            self.process(events).await?;
        }
        self.decided = self.decided.max(watermark);
        self.outbox.settle();
        Ok(
            self.outbox.len() >= self.shared.settings.max_pending_actions
                || self.changed.len() >= self.shared.settings.checkpoint_max_profiles,
        )
    }

    async fn process(&mut self, events: Vec<Delivered>) -> Result<(), Exit> {
        if !self.lease.is_valid() {
            return Err(Exit::Lapsed);
        }
        let started = Instant::now();
        let last = events.last().map_or(self.decided, |e| e.seq);
        self.meters.events_in.increment(events.len() as u64);
        self.load_profiles(&events).await?;
        let memory = self
            .memory
            .take()
            .unwrap_or_else(|| ProfileMemory::new(self.shared.settings.partition_max_profiles));
        let shared = self.shared.clone();
        let decided = self
            .shared
            .pool
            .run(move || decide_all(&shared, memory, events))
            .await;
        let Ok((memory, outcomes)) = decided else {
            tracing::error!(
                partition = self.lease.partition,
                "a decision thread failed; the partition restarts from its checkpoint"
            );
            return Err(Exit::Lapsed);
        };
        self.memory = Some(memory);
        for outcome in outcomes {
            match outcome {
                Outcome::Skipped => self.meters.skipped.increment(1),
                Outcome::Decided(cause, profile, decided) => {
                    let received = cause.received;
                    self.outbox
                        .send(cause, decided.publish, &self.lease)
                        .await?;
                    self.results.add(&profile, decided.at_ms, decided.outcomes);
                    // A profile's first trace since the last store marks it changed too.
                    match self.traces.entry(profile) {
                        Slot::Occupied(slot) => slot.into_mut().push(decided.trace),
                        Slot::Vacant(slot) => {
                            self.changed.insert(slot.key().clone());
                            slot.insert(vec![decided.trace]);
                        }
                    }
                    self.schedule.extend(decided.schedule);
                    self.unschedule.extend(decided.unschedule);
                    self.meters.decided.increment(1);
                    self.meters
                        .processing
                        .record(received.elapsed().as_secs_f64());
                }
                Outcome::Poison(cause, payload, poison) => {
                    dead_letter(
                        &self.shared.js,
                        &cause,
                        Some(payload),
                        poison.kind,
                        &poison.reason,
                        &self.lease,
                        &self.shared.settings,
                    )
                    .await?;
                    self.meters.dead_lettered.increment(1);
                }
            }
        }
        self.decided = self.decided.max(last);
        self.meters.batch.record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Brings the profiles of `events` into memory: stored ones from KV, unseen ones new.
    async fn load_profiles(&mut self, events: &[Delivered]) -> Result<(), Exit> {
        let memory = self
            .memory
            .as_mut()
            .expect("memory is home between batches");
        let mut missing: Vec<&str> = events
            .iter()
            .filter_map(|e| e.key.as_deref())
            .filter(|key| !memory.contains(key))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let store = &self.shared.profiles;
        let mut attempts = 1;
        loop {
            let mut loaded = Vec::with_capacity(missing.len());
            for keys in missing.chunks(LOADS_IN_FLIGHT) {
                let loads = keys.iter().map(|key| store.load(key));
                loaded.extend(keys.iter().copied().zip(join_all(loads).await));
            }
            let mut failed = None;
            let now_ms = self.shared.decisions.clock.now_ms();
            for (key, result) in loaded {
                match result {
                    Ok(Some(stored)) => memory.insert(key.to_owned(), stored.state, stored.bytes),
                    Ok(None) => memory.insert(key.to_owned(), ProfileState::new(key, now_ms), 0),
                    Err(error) => failed = Some(error),
                }
            }
            let Some(error) = failed else { return Ok(()) };
            tracing::warn!(
                partition = self.lease.partition,
                error = format!("{error:#}"),
                "loading profiles failed; retrying"
            );
            tokio::time::sleep(self.shared.settings.retry_delay(attempts)).await;
            if !self.lease.is_valid() {
                return Err(Exit::Lapsed);
            }
            attempts += 1;
            missing.retain(|key| !memory.contains(key));
        }
    }

    /// Starts a checkpoint at once: after the one in flight, if any, has landed.
    async fn checkpoint_now(&mut self, flight: &mut Option<Flight>) -> Result<(), Exit> {
        if let Some(previous) = flight.take() {
            self.landed(previous.await)?;
        }
        *flight = self.start_checkpoint().await?;
        Ok(())
    }

    /// Stores the traces, then takes what the next checkpoint writes — the position decided so
    /// far, the sent actions, the timers, the changed profiles (encoded now, on a decision
    /// thread, pointing at their newest traces) — and starts writing it; `None` when there is
    /// nothing to write.
    async fn start_checkpoint(&mut self) -> Result<Option<Flight>, Exit> {
        if self.decided == self.committed
            && self.changed.is_empty()
            && self.traces.is_empty()
            && self.outbox.is_empty()
            && self.schedule.is_empty()
            && self.unschedule.is_empty()
        {
            return Ok(None);
        }
        if !self.lease.is_valid() {
            return Err(Exit::Lapsed);
        }
        let started = Instant::now();
        let untraced = self.store_traces().await;
        let changed: Vec<String> = self.changed.drain().collect();
        let writes = self.encode_changed(changed).await?;
        let chunks = self
            .results
            .chunks(writes, self.shared.decisions.clock.now_ms());
        // Written now, and again once their traces are stored and pointed at.
        self.changed.extend(untraced);
        self.checkpoints += 1;
        let snapshot = Snapshot {
            position: self.decided,
            outbox: self.outbox.take(),
            schedule: std::mem::take(&mut self.schedule),
            unschedule: std::mem::take(&mut self.unschedule),
            chunks,
            batch_id: format!(
                "{}-{}-{}",
                self.lease.partition, self.lease.epoch, self.checkpoints
            ),
            started,
        };
        let flight = tokio::spawn(checkpoint::write(
            self.shared.clone(),
            self.lease.clone(),
            snapshot,
        ));
        Ok(Some(flight))
    }

    /// Takes in how a checkpoint ended.
    fn landed(
        &mut self,
        landed: Result<Result<Written, Exit>, tokio::task::JoinError>,
    ) -> Result<(), Exit> {
        let written = match landed {
            Ok(written) => written?,
            Err(error) => {
                tracing::error!(partition = self.lease.partition, %error, "a checkpoint failed; the partition restarts from its last one");
                return Err(Exit::Lapsed);
            }
        };
        match written {
            Written::Done {
                position,
                committed,
                profiles,
                started,
                chunks,
            } => {
                self.results.stored(chunks);
                if committed {
                    tracing::debug!(
                        partition = self.lease.partition,
                        position,
                        profiles,
                        "checkpoint"
                    );
                    self.committed = position;
                }
                if let Some(memory) = self.memory.as_mut() {
                    memory.evict(|id| self.changed.contains(id));
                }
                let lag = self.shared.tail().saturating_sub(self.committed);
                telemetry::checkpointed(
                    &self.partition_label,
                    started.elapsed().as_secs_f64(),
                    profiles,
                    self.committed,
                    lag,
                );
            }
            // Back in front of what came since, for the next checkpoint.
            Written::Retry {
                mut schedule,
                mut unschedule,
                changed,
                stored,
                not_stored,
            } => {
                self.results.stored(stored);
                self.results.not_stored(not_stored);
                schedule.append(&mut self.schedule);
                self.schedule = schedule;
                unschedule.append(&mut self.unschedule);
                self.unschedule = unschedule;
                self.changed.extend(changed);
            }
        }
        Ok(())
    }

    /// Stores the traces of the changed profiles, each profile's entry chained to its previous
    /// one, and points each profile's state at its newest. Answers the profiles whose traces
    /// could not be stored: those wait for the next checkpoint, which writes them again.
    async fn store_traces(&mut self) -> Vec<String> {
        if self.traces.is_empty() {
            return Vec::new();
        }
        let memory = self
            .memory
            .as_mut()
            .expect("memory is home between batches");
        let entries: Vec<Entry> = self
            .traces
            .drain()
            .map(|(profile, decisions)| Entry {
                prev_seq: memory.peek(&profile).map_or(0, |held| held.state.trace_seq),
                profile,
                decisions,
            })
            .collect();
        let stored = traces::store(&self.shared.js, self.lease.partition, entries).await;
        memory.traced(&stored.newest);
        let Some(error) = stored.error else {
            return Vec::new();
        };
        tracing::warn!(
            partition = self.lease.partition,
            %error,
            profiles = stored.unstored.len(),
            "storing decision traces failed; the next checkpoint stores them"
        );
        stored
            .unstored
            .into_iter()
            .map(|entry| {
                self.traces.insert(entry.profile.clone(), entry.decisions);
                entry.profile
            })
            .collect()
    }

    /// Encodes the `changed` profiles on a decision thread; their stored sizes are known from
    /// then on.
    async fn encode_changed(&mut self, changed: Vec<String>) -> Result<Vec<(String, Bytes)>, Exit> {
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        let memory = self.memory.take().expect("memory is home between batches");
        let shared = self.shared.clone();
        let encoded = self
            .shared
            .pool
            .run(move || {
                let encoded: Vec<(String, Result<Vec<u8>, profiles::EncodeError>)> = changed
                    .into_iter()
                    .filter_map(|id| {
                        let bytes = shared.profiles.encode(&memory.peek(&id)?.state);
                        Some((id, bytes))
                    })
                    .collect();
                (memory, encoded)
            })
            .await;
        let Ok((mut memory, encoded)) = encoded else {
            return Err(Exit::Lapsed);
        };
        let mut writes = Vec::with_capacity(encoded.len());
        for (id, bytes) in encoded {
            match bytes {
                Ok(bytes) => writes.push((id, Bytes::from(bytes))),
                // The size bound makes this a bug, not an input: say so loudly.
                Err(error) => {
                    tracing::error!(profile = %id, %error, "a profile cannot be written; it stays in memory only")
                }
            }
        }
        let sizes: Vec<(String, usize)> = writes
            .iter()
            .map(|(id, bytes)| (id.clone(), bytes.len()))
            .collect();
        memory.written(&sizes);
        self.memory = Some(memory);
        Ok(writes)
    }
}

/// A checkpoint being written.
type Flight = tokio::task::JoinHandle<Result<Written, Exit>>;

/// The end of the checkpoint in flight; never, when there is none.
async fn landing(
    flight: &mut Option<Flight>,
) -> Result<Result<Written, Exit>, tokio::task::JoinError> {
    match flight {
        Some(flight) => flight.await,
        None => std::future::pending().await,
    }
}
