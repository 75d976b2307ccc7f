//! What the cluster keeps in NATS: the topology (`NUDGE_CLUSTER` key `topology`), one record per
//! partition (`partition.<n>`: owner, epoch, committed stream position) and one heartbeat per
//! running instance (`NUDGE_INSTANCES`, key = instance id).

use serde::{Deserialize, Serialize};

/// Key of the topology record in `NUDGE_CLUSTER`.
pub const TOPOLOGY_KEY: &str = "topology";

/// The key of partition `n`'s record in `NUDGE_CLUSTER`.
pub fn partition_key(partition: u32) -> String {
    format!("partition.{partition}")
}

/// The partition number of a record key, if it is one.
pub fn partition_of_key(key: &str) -> Option<u32> {
    key.strip_prefix("partition.")?.parse().ok()
}

/// Fixed when the deployment's topology is created: changing it needs every instance stopped
/// (`nudge partitions set`, see the README).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub partitions: u32,
    pub created_at_ms: i64,
}

/// One partition's record. Every write is a compare-and-set on the revision the writer last
/// read — a takeover, the owner's renewals and checkpoints, a release — so exactly one writer
/// wins and a former owner's next write fails.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// The owning instance; `None` once released.
    pub owner: Option<String>,
    /// Incremented by every takeover.
    pub epoch: u64,
    /// The `NUDGE_EVENTS` stream sequence the last checkpoint covers: every event of this
    /// partition at or before it is decided, its actions stored and its state written.
    pub position: u64,
    /// When that checkpoint was written (wall clock, for people).
    #[serde(default)]
    pub checkpoint_at_ms: i64,
    /// When the owner last renewed (wall clock, for people: expiry is judged by each observer's
    /// own clock, from when it saw the record change).
    #[serde(default)]
    pub renewed_at_ms: i64,
}

/// A running instance's heartbeat, rewritten every lease tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub id: String,
    pub started_at_ms: i64,
    pub heartbeat_at_ms: i64,
    /// The HTTP address it serves.
    pub listen: String,
    pub version: String,
    pub partitions: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_round_trip() {
        assert_eq!(partition_key(7), "partition.7");
        assert_eq!(partition_of_key("partition.7"), Some(7));
        assert_eq!(partition_of_key(TOPOLOGY_KEY), None);
        assert_eq!(partition_of_key("partition.x"), None);
    }
}
