//! `nudge partitions set N`: changing the partition count of a deployment whose instances are
//! all stopped. Profiles are keyed by profile id, not by partition, so nothing moves but the
//! positions: every new partition starts from the lowest position any old one committed, and
//! the events after it are read again — each profile skips those its state already holds (its
//! `seq`), and the actions they would repeat carry ids JetStream has already seen.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{Context, kv};
use futures::StreamExt;

use super::record::{
    InstanceRecord, PartitionRecord, TOPOLOGY_KEY, Topology, partition_key, partition_of_key,
};
use crate::config::Settings;
use crate::topology;

/// What `nudge partitions` shows.
#[derive(Debug, serde::Serialize)]
pub struct Layout {
    pub partitions: u32,
    pub created_at: String,
    /// `(partition, owner, committed position)`.
    pub records: Vec<(u32, Option<String>, u64)>,
}

async fn records(cluster: &kv::Store) -> anyhow::Result<Vec<(u32, PartitionRecord)>> {
    let mut keys = cluster.keys().await?;
    let mut records = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key?;
        let Some(partition) = partition_of_key(&key) else {
            continue;
        };
        if let Some(bytes) = cluster.get(&key).await? {
            let record: PartitionRecord = serde_json::from_slice(&bytes)
                .with_context(|| format!("the record of partition {partition} is unreadable"))?;
            records.push((partition, record));
        }
    }
    records.sort_by_key(|(p, _)| *p);
    Ok(records)
}

async fn topology_of(cluster: &kv::Store) -> anyhow::Result<Option<Topology>> {
    let Some(bytes) = cluster.get(TOPOLOGY_KEY).await? else {
        return Ok(None);
    };
    Ok(Some(
        serde_json::from_slice(&bytes).context("the stored topology is unreadable")?,
    ))
}

/// The deployment's partitions as stored.
pub async fn layout(js: &Context, settings: &Settings) -> anyhow::Result<Layout> {
    let cluster = topology::ensure_bucket(js, topology::CLUSTER_BUCKET, settings).await?;
    let topology = topology_of(&cluster)
        .await?
        .context("no topology yet: the first `nudge serve` creates it")?;
    Ok(Layout {
        partitions: topology.partitions,
        created_at: nudge_rules::calendar::rfc3339(topology.created_at_ms),
        records: records(&cluster)
            .await?
            .into_iter()
            .map(|(p, r)| (p, r.owner, r.position))
            .collect(),
    })
}

/// Sets the partition count to `partitions`, refusing while any instance runs or owns one.
pub async fn set(
    js: &Context,
    settings: &Settings,
    partitions: u32,
    now_ms: i64,
) -> anyhow::Result<u64> {
    anyhow::ensure!(
        (1..=nudge_rules::partition::MAX_PARTITIONS).contains(&partitions),
        "the partition count must be 1 to {}",
        nudge_rules::partition::MAX_PARTITIONS
    );
    let cluster = topology::ensure_bucket(js, topology::CLUSTER_BUCKET, settings).await?;
    let heartbeats = topology::ensure_bucket(js, topology::INSTANCES_BUCKET, settings).await?;
    let lease = Duration::from_millis(settings.partition_lease_ms);
    let mut keys = heartbeats.keys().await?;
    while let Some(key) = keys.next().await {
        let Some(bytes) = heartbeats.get(key?).await? else {
            continue;
        };
        let Ok(instance) = serde_json::from_slice::<InstanceRecord>(&bytes) else {
            continue;
        };
        let age_ms = now_ms - instance.heartbeat_at_ms;
        anyhow::ensure!(
            age_ms > lease.as_millis() as i64,
            "instance {} is running (last heartbeat {age_ms} ms ago): stop every instance first",
            instance.id
        );
    }
    let old = records(&cluster).await?;
    if let Some((partition, owner)) = old
        .iter()
        .find_map(|(p, r)| r.owner.as_deref().map(|owner| (p, owner)))
    {
        anyhow::bail!(
            "partition {partition} is still owned by {owner}: stop every instance first (a \
             graceful stop releases its partitions; a killed instance's run out after \
             partition_lease_ms)"
        );
    }
    let resume_after = old.iter().map(|(_, r)| r.position).min().unwrap_or(0);
    let epoch = old.iter().map(|(_, r)| r.epoch).max().unwrap_or(0) + 1;
    let topology = Topology {
        partitions,
        created_at_ms: now_ms,
    };
    cluster
        .put(TOPOLOGY_KEY, serde_json::to_vec(&topology)?.into())
        .await?;
    for partition in 0..partitions {
        let record = PartitionRecord {
            owner: None,
            epoch,
            position: resume_after,
            checkpoint_at_ms: now_ms,
            renewed_at_ms: now_ms,
        };
        cluster
            .put(
                partition_key(partition),
                serde_json::to_vec(&record)?.into(),
            )
            .await?;
    }
    for (partition, _) in old.iter().filter(|(p, _)| *p >= partitions) {
        cluster.delete(partition_key(*partition)).await?;
    }
    Ok(resume_after)
}
