//! The consuming side: this instance's share of the partitions, read from `NUDGE_EVENTS`,
//! decided against profile state held in memory, checkpointed in batches.
//!
//! - [`reader`]: one ordered consumer reads every event and routes those of owned partitions;
//! - [`partition`]: one worker per owned partition decides its events in stream order, publishes
//!   their actions, and checkpoints (traces, actions confirmed, timers, profiles, position);
//! - [`decision`] runs on the [`pool`] of decision threads, never on the async workers;
//! - this module's [`run`] keeps ownership current every tick: heartbeat, renew leases, and take
//!   or give up partitions as `cluster::assign` plans.
//!
//! Ordering: one owner per partition, one worker per owned partition, strictly sequential — so
//! the events of one profile are decided one at a time, in stream order, across any number of
//! instances.

mod checkpoint;
mod decision;
pub mod dlq;
mod memory;
mod outbox;
mod partition;
mod pool;
mod reader;
mod results;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::Context;
use futures::future::join_all;
use nudge_rules::CloudEvent;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use decision::Decisions;
pub use pool::{Pool, default_threads};

use crate::cluster::Cluster;
use crate::cluster::lease::Lease;
use crate::config::Settings;
use crate::profiles::ProfileStore;
use crate::telemetry;
use crate::timers::TimerStore;
use partition::{Exit, Partition};
use reader::Router;

/// Decodes a NATS payload as a CloudEvent; the error is the DLQ reason.
pub fn decode(payload: &[u8], max_event_bytes: usize) -> Result<CloudEvent, String> {
    if payload.len() > max_event_bytes {
        return Err(format!(
            "event is {} bytes; the limit is {max_event_bytes} (max_event_bytes)",
            payload.len()
        ));
    }
    CloudEvent::from_slice(payload).map_err(|e| format!("invalid CloudEvent: {e}"))
}

/// What every partition worker of this instance shares.
pub struct Shared {
    pub js: Context,
    pub client: Client,
    pub decisions: Decisions,
    pub profiles: ProfileStore,
    pub timers: TimerStore,
    pub pool: Pool,
    pub settings: Arc<Settings>,
    router: Arc<Router>,
}

impl Shared {
    pub fn new(
        js: Context,
        client: Client,
        decisions: Decisions,
        timers: TimerStore,
        settings: Arc<Settings>,
        partitions: u32,
    ) -> Shared {
        let threads = match settings.decision_threads {
            0 => default_threads(),
            n => n,
        };
        Shared {
            js,
            client,
            profiles: decisions.profiles.clone(),
            decisions,
            timers,
            pool: Pool::new(threads),
            settings,
            router: Arc::new(Router::new(partitions)),
        }
    }

    /// The stream's last sequence as the reader last saw it.
    pub fn tail(&self) -> u64 {
        self.router.tail.load(Ordering::Acquire)
    }
}

struct Owned {
    lease: Arc<Lease>,
    stop: CancellationToken,
    worker: JoinHandle<Exit>,
}

/// Owns partitions and consumes their events until `shutdown`; then checkpoints and releases
/// every owned partition (within `shutdown_grace_ms`) so other instances take over at once.
pub async fn run(
    shared: Arc<Shared>,
    cluster: Arc<Cluster>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let reader_stop = CancellationToken::new();
    let reader = tokio::spawn(reader::run(
        shared.js.clone(),
        shared.router.clone(),
        shared.settings.fetch_batch,
        reader_stop.clone(),
    ));
    let tick = cluster.lease / 4;
    let mut owned: BTreeMap<u32, Owned> = BTreeMap::new();
    loop {
        reap(&shared, &mut owned).await;
        let owns: BTreeSet<u32> = owned.keys().copied().collect();
        if let Err(error) = cluster.heartbeat(&owns).await {
            tracing::warn!(error = format!("{error:#}"), "heartbeat failed");
        }
        renew(&owned).await;
        if cluster.loaded() {
            let plan = cluster.plan(&owns);
            if !plan.acquire.is_empty() || !plan.release.is_empty() {
                tracing::debug!(?plan, "ownership plan");
            }
            for partition in plan.release {
                if let Some(held) = owned.remove(&partition) {
                    // The worker checkpoints and releases on its own; this loop keeps renewing
                    // the others meanwhile.
                    shared.router.detach(partition);
                    held.stop.cancel();
                    tokio::spawn(finish(partition, held.worker));
                }
            }
            for partition in plan.acquire {
                match cluster.acquire(partition).await {
                    Ok(Some(lease)) => {
                        owned.insert(partition, start(&shared, lease));
                    }
                    Ok(None) => tracing::debug!(partition, "another instance took it first"),
                    Err(error) => {
                        tracing::warn!(
                            partition,
                            error = format!("{error:#}"),
                            "taking a partition failed"
                        )
                    }
                }
            }
        }
        telemetry::partitions_owned(owned.len());
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
    }
    // Stop reading, let every worker checkpoint and release, then leave.
    for (partition, held) in &owned {
        shared.router.detach(*partition);
        held.stop.cancel();
    }
    let grace = Duration::from_millis(shared.settings.shutdown_grace_ms);
    let finishing = join_all(
        owned
            .into_iter()
            .map(|(partition, held)| finish(partition, held.worker)),
    );
    if tokio::time::timeout(grace, finishing).await.is_err() {
        tracing::warn!(
            ?grace,
            "partitions not released in time; other instances take them when their leases run out"
        );
    }
    reader_stop.cancel();
    reader.await.ok();
    cluster.leave().await;
    Ok(())
}

fn start(shared: &Arc<Shared>, lease: Lease) -> Owned {
    let partition = lease.partition;
    let lease = Arc::new(lease);
    tracing::info!(
        partition,
        epoch = lease.epoch,
        from = lease.resume_after,
        "took partition"
    );
    metrics::counter!(telemetry::PARTITIONS_ACQUIRED).increment(1);
    let (sender, queue) = mpsc::channel(shared.settings.partition_queue_batches.max(1));
    let stop = CancellationToken::new();
    let worker = Partition::new(lease.clone(), shared.clone(), queue, stop.clone());
    let worker = tokio::spawn(worker.run());
    shared.router.attach(partition, lease.resume_after, sender);
    Owned {
        lease,
        stop,
        worker,
    }
}

/// Waits for a worker to end and says how it ended.
async fn finish(partition: u32, worker: JoinHandle<Exit>) {
    match worker.await {
        Ok(Exit::Released) => tracing::info!(partition, "released partition"),
        Ok(exit) => tracing::warn!(partition, ?exit, "partition stopped"),
        Err(error) => tracing::error!(partition, %error, "partition worker failed"),
    }
}

/// Forgets workers that stopped on their own (lost or lapsed); their partitions can be taken
/// again — by this instance too, from their last checkpoint.
async fn reap(shared: &Shared, owned: &mut BTreeMap<u32, Owned>) {
    let ended: Vec<u32> = owned
        .iter()
        .filter(|(_, held)| held.worker.is_finished())
        .map(|(partition, _)| *partition)
        .collect();
    for partition in ended {
        if let Some(held) = owned.remove(&partition) {
            shared.router.detach(partition);
            metrics::counter!(telemetry::PARTITIONS_LOST).increment(1);
            finish(partition, held.worker).await;
        }
    }
}

/// Renews every owned lease at once; a lost one stops its worker.
async fn renew(owned: &BTreeMap<u32, Owned>) {
    join_all(owned.values().map(|held| async {
        if let Err(error) = held.lease.renew().await {
            tracing::warn!(partition = held.lease.partition, %error, "renewing the lease failed");
        }
    }))
    .await;
}
