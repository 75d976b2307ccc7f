//! This instance's view of the cluster, kept current by watching `NUDGE_CLUSTER` (the partition
//! records) and `NUDGE_INSTANCES` (heartbeats). Expiry is judged on this side's own monotonic
//! clock — "unchanged since I saw it, for a whole lease" — so no two machines' clocks are
//! compared.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;

use super::assign::Seen;
use super::record::{InstanceRecord, PartitionRecord, partition_of_key};

/// One partition's record as last seen, and when it last changed.
#[derive(Debug, Clone)]
pub struct Observed {
    pub record: Option<PartitionRecord>,
    pub revision: u64,
    pub changed_at: Instant,
}

pub struct View {
    pub partitions: Vec<Observed>,
    instances: BTreeMap<String, (InstanceRecord, Instant)>,
}

impl View {
    pub fn new(partitions: u32) -> View {
        let now = Instant::now();
        View {
            partitions: (0..partitions)
                .map(|_| Observed {
                    record: None,
                    revision: 0,
                    changed_at: now,
                })
                .collect(),
            instances: BTreeMap::new(),
        }
    }

    /// Applies a change of `NUDGE_CLUSTER`.
    pub fn apply_partition(&mut self, entry: &kv::Entry) {
        let Some(slot) =
            partition_of_key(&entry.key).and_then(|p| self.partitions.get_mut(p as usize))
        else {
            return;
        };
        if entry.revision <= slot.revision {
            return;
        }
        let record = match entry.operation {
            kv::Operation::Put => match serde_json::from_slice(&entry.value) {
                Ok(record) => Some(record),
                Err(error) => {
                    tracing::warn!(key = %entry.key, %error, "unreadable partition record");
                    return;
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        *slot = Observed {
            record,
            revision: entry.revision,
            changed_at: Instant::now(),
        };
    }

    /// Applies a change of `NUDGE_INSTANCES`.
    pub fn apply_instance(&mut self, entry: &kv::Entry) {
        match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<InstanceRecord>(&entry.value) {
                Ok(record) => {
                    self.instances
                        .insert(entry.key.clone(), (record, Instant::now()));
                }
                Err(error) => tracing::warn!(key = %entry.key, %error, "unreadable heartbeat"),
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                self.instances.remove(&entry.key);
            }
        }
    }

    /// Instances whose heartbeat this side saw within `lease`, plus `me`, sorted.
    pub fn live(&self, me: &str, lease: Duration) -> Vec<String> {
        let mut live: Vec<String> = self
            .instances
            .iter()
            .filter(|(_, (_, seen))| seen.elapsed() < lease)
            .map(|(id, _)| id.clone())
            .collect();
        if !live.iter().any(|id| id == me) {
            live.push(me.to_owned());
            live.sort();
        }
        live
    }

    /// Heartbeats seen within `lease`, for `GET /api/cluster`.
    pub fn instances(&self, lease: Duration) -> Vec<InstanceRecord> {
        self.instances
            .values()
            .filter(|(_, seen)| seen.elapsed() < lease)
            .map(|(record, _)| record.clone())
            .collect()
    }

    /// How each partition looks to an instance deciding what to take.
    pub fn seen(&self, lease: Duration) -> Vec<Seen> {
        self.partitions
            .iter()
            .map(|observed| {
                let quiet = observed.changed_at.elapsed();
                let owned = observed.record.as_ref().is_some_and(|r| r.owner.is_some());
                match (owned, quiet >= lease, quiet >= 2 * lease) {
                    (true, false, _) => Seen::Owned,
                    (true, true, orphaned) => Seen::Takeable { orphaned },
                    (false, orphaned, _) => Seen::Takeable { orphaned },
                }
            })
            .collect()
    }

    /// The record of `partition` with its revision, as a takeover's compare-and-set needs it.
    pub fn record(&self, partition: u32) -> Option<(PartitionRecord, u64)> {
        let observed = self.partitions.get(partition as usize)?;
        observed
            .record
            .clone()
            .map(|record| (record, observed.revision))
    }
}
