//! Scaling out: the partitions of the profile key, which instance owns which, and how ownership
//! moves — on NATS's own machinery (KV compare-and-set and fenced writes), with no consensus of
//! our own.
//!
//! Each instance heartbeats into `NUDGE_INSTANCES`, watches the partition records in
//! `NUDGE_CLUSTER`, and every tick renews what it owns and plans (see [`assign`]) what to take
//! and give up. Taking a partition is a compare-and-set on its record that bumps the epoch,
//! followed by new fence markers ([`lease`]); the pipeline then restores the partition from its
//! record's committed position. Releasing is a last checkpoint, then a compare-and-set that
//! clears the owner.

pub mod assign;
pub mod lease;
pub mod record;
pub mod resize;
pub mod view;

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{Context, kv};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::topology;
use assign::Plan;
use lease::Lease;
use record::{InstanceRecord, TOPOLOGY_KEY, Topology};
use view::View;

/// This instance's membership in the cluster.
pub struct Cluster {
    pub id: String,
    pub partitions: u32,
    pub lease: Duration,
    records: kv::Store,
    heartbeats: kv::Store,
    profiles: kv::Store,
    clock: SharedClock,
    view: Mutex<View>,
    started_at_ms: i64,
    listen: String,
    /// Both watches have replayed what is stored: planning before that would see every
    /// partition as free.
    records_loaded: AtomicBool,
    heartbeats_loaded: AtomicBool,
}

/// A random instance id, prefixed with the host name so people can tell instances apart.
pub fn instance_id(settings: &Settings) -> String {
    if let Some(id) = &settings.instance_id {
        return id.clone();
    }
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "nudge".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

impl Cluster {
    /// Checks the topology (creating it on first start) and starts following the cluster's
    /// records until `shutdown`.
    pub async fn join(
        js: &Context,
        settings: &Settings,
        listen: String,
        clock: SharedClock,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Arc<Cluster>> {
        let records = topology::ensure_bucket(js, topology::CLUSTER_BUCKET, settings).await?;
        let heartbeats = topology::ensure_bucket(js, topology::INSTANCES_BUCKET, settings).await?;
        let profiles = topology::ensure_bucket(js, topology::PROFILES_BUCKET, settings).await?;
        let partitions = ensure_topology(&records, settings.partitions, clock.now_ms()).await?;
        let cluster = Arc::new(Cluster {
            id: instance_id(settings),
            partitions,
            lease: Duration::from_millis(settings.partition_lease_ms),
            records,
            heartbeats,
            profiles,
            started_at_ms: clock.now_ms(),
            clock,
            view: Mutex::new(View::new(partitions)),
            listen,
            records_loaded: AtomicBool::new(false),
            heartbeats_loaded: AtomicBool::new(false),
        });
        for watched in [Watched::Records, Watched::Heartbeats] {
            let cluster = cluster.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { cluster.follow(watched, shutdown).await });
        }
        Ok(cluster)
    }

    async fn follow(self: Arc<Self>, watched: Watched, shutdown: CancellationToken) {
        let (bucket, loaded, noun) = match watched {
            Watched::Records => (&self.records, &self.records_loaded, "partition record"),
            Watched::Heartbeats => (&self.heartbeats, &self.heartbeats_loaded, "heartbeat"),
        };
        crate::versioned::follow(bucket, noun, loaded, &shutdown, |entry| {
            let mut view = self.view();
            match watched {
                Watched::Records => view.apply_partition(&entry),
                Watched::Heartbeats => view.apply_instance(&entry),
            }
            std::future::ready(())
        })
        .await;
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the view holds everything stored (until then, plan nothing).
    pub fn loaded(&self) -> bool {
        use std::sync::atomic::Ordering::Acquire;
        self.records_loaded.load(Acquire) && self.heartbeats_loaded.load(Acquire)
    }

    /// What to release and acquire now, given the partitions this instance `owns`.
    pub fn plan(&self, owns: &BTreeSet<u32>) -> Plan {
        let view = self.view();
        let live = view.live(&self.id, self.lease);
        assign::plan(&self.id, &live, &view.seen(self.lease), owns)
    }

    /// Tries to take `partition` over; `Ok(None)` if another instance was faster.
    pub async fn acquire(&self, partition: u32) -> anyhow::Result<Option<Lease>> {
        let seen = self.view().record(partition);
        Lease::acquire(
            &self.records,
            &self.profiles,
            self.clock.clone(),
            partition,
            &self.id,
            seen,
            self.lease,
        )
        .await
    }

    /// Announces this instance and what it owns.
    pub async fn heartbeat(&self, owns: &BTreeSet<u32>) -> anyhow::Result<()> {
        let record = InstanceRecord {
            id: self.id.clone(),
            started_at_ms: self.started_at_ms,
            heartbeat_at_ms: self.clock.now_ms(),
            listen: self.listen.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            partitions: owns.iter().copied().collect(),
        };
        self.heartbeats
            .put(&self.id, serde_json::to_vec(&record)?.into())
            .await?;
        Ok(())
    }

    /// Leaves: other instances stop counting this one at once instead of after a lease.
    pub async fn leave(&self) {
        if let Err(error) = self.heartbeats.delete(&self.id).await {
            tracing::debug!(%error, "could not remove this instance's heartbeat");
        }
    }

    /// Who owns what, with each partition's committed position and lag against the stream's
    /// last sequence: what `GET /api/cluster` answers.
    /// Partitions of the events stream, as the topology says.
    pub fn partition_count(&self) -> usize {
        self.view().partitions.len()
    }

    pub fn status(&self, stream_last_seq: u64) -> ClusterStatus {
        let view = self.view();
        let partitions: Vec<PartitionStatus> = view
            .partitions
            .iter()
            .enumerate()
            .map(|(p, observed)| {
                let record = observed.record.clone().unwrap_or_default();
                PartitionStatus {
                    partition: p as u32,
                    owner: record.owner.clone(),
                    epoch: record.epoch,
                    position: record.position,
                    lag: stream_last_seq.saturating_sub(record.position),
                    last_checkpoint: (record.checkpoint_at_ms > 0)
                        .then(|| nudge_rules::calendar::rfc3339(record.checkpoint_at_ms)),
                }
            })
            .collect();
        let instances = view
            .instances(self.lease)
            .into_iter()
            .map(|instance| {
                let owned: Vec<&PartitionStatus> = partitions
                    .iter()
                    .filter(|p| p.owner.as_deref() == Some(instance.id.as_str()))
                    .collect();
                InstanceStatus {
                    partitions: owned.iter().map(|p| p.partition).collect(),
                    lag: owned.iter().map(|p| p.lag).max().unwrap_or(0),
                    last_checkpoint: owned.iter().filter_map(|p| p.last_checkpoint.clone()).max(),
                    listen: instance.listen,
                    started_at: nudge_rules::calendar::rfc3339(instance.started_at_ms),
                    version: instance.version,
                    id: instance.id,
                }
            })
            .collect();
        ClusterStatus {
            partitions: self.partitions,
            instance: self.id.clone(),
            stream_last_sequence: stream_last_seq,
            instances,
            partition_states: partitions,
        }
    }
}

#[derive(Clone, Copy)]
enum Watched {
    Records,
    Heartbeats,
}

/// Creates the topology record, or checks the stored one against the `partitions` setting.
async fn ensure_topology(records: &kv::Store, partitions: u32, now_ms: i64) -> anyhow::Result<u32> {
    anyhow::ensure!(
        (1..=nudge_rules::partition::MAX_PARTITIONS).contains(&partitions),
        "partitions: {partitions} is out of range (1 to {})",
        nudge_rules::partition::MAX_PARTITIONS
    );
    let wanted = Topology {
        partitions,
        created_at_ms: now_ms,
    };
    match records
        .create(TOPOLOGY_KEY, serde_json::to_vec(&wanted)?.into())
        .await
    {
        Ok(_) => return Ok(partitions),
        Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {}
        Err(error) => return Err(error).context("creating the cluster topology"),
    }
    let stored = records
        .get(TOPOLOGY_KEY)
        .await
        .context("reading the cluster topology")?
        .context("the cluster topology vanished while starting")?;
    let stored: Topology =
        serde_json::from_slice(&stored).context("the stored cluster topology is unreadable")?;
    anyhow::ensure!(
        stored.partitions == partitions,
        "partitions: this deployment has {} partitions (fixed when its topology was created, {}), \
         and the setting says {partitions}. Keep the setting at {}, or change the count with \
         every instance stopped: `nudge partitions set {partitions}` (see the README)",
        stored.partitions,
        nudge_rules::calendar::rfc3339(stored.created_at_ms),
        stored.partitions,
    );
    Ok(stored.partitions)
}

/// `GET /api/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub partitions: u32,
    /// The instance that answered.
    pub instance: String,
    pub stream_last_sequence: u64,
    pub instances: Vec<InstanceStatus>,
    pub partition_states: Vec<PartitionStatus>,
}

#[derive(Debug, Serialize)]
pub struct InstanceStatus {
    pub id: String,
    pub partitions: Vec<u32>,
    /// The largest lag among its partitions.
    pub lag: u64,
    pub last_checkpoint: Option<String>,
    pub listen: String,
    pub started_at: String,
    pub version: String,
}

#[derive(Debug, Serialize)]
pub struct PartitionStatus {
    pub partition: u32,
    pub owner: Option<String>,
    pub epoch: u64,
    /// The stream sequence its last checkpoint covers.
    pub position: u64,
    /// Stream messages after `position`: what a new owner would read again.
    pub lag: u64,
    pub last_checkpoint: Option<String>,
}
