//! Writing one checkpoint of a partition, off the partition's own loop: the partition stores
//! the traces and takes a [`Snapshot`] (the position decided so far, the actions sent, the
//! timers, the changed profiles already encoded) and goes on deciding while [`write`] confirms
//! the actions, stores the timers, writes the profiles and commits the position — in that
//! order, as the invariants require. One checkpoint is in flight per partition at a time, so
//! positions and profile writes stay in order.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use nudge_rules::decide::Scheduled;

use super::Shared;
use super::outbox::Outbox;
use super::partition::Exit;
use super::results::Chunk;
use crate::cluster::lease::{Lease, LeaseError};
use crate::profiles;

/// What one checkpoint writes, taken from the partition when it starts.
pub struct Snapshot {
    /// Every event of the partition up to this stream sequence is decided.
    pub position: u64,
    pub outbox: Outbox,
    pub schedule: Vec<Scheduled>,
    pub unschedule: Vec<String>,
    /// The changed profiles, encoded (shared with the publishes, not copied into them), in
    /// atomic batches with the results records their outcomes change.
    pub chunks: Vec<Chunk>,
    /// The atomic batch's id.
    pub batch_id: String,
    pub started: Instant,
}

/// How a checkpoint ended, short of the partition stopping.
pub enum Written {
    /// Everything stored; the position committed unless `committed` is false (the next
    /// checkpoint commits a later one).
    Done {
        position: u64,
        committed: bool,
        profiles: usize,
        started: Instant,
        /// Every chunk, stored.
        chunks: Vec<Chunk>,
    },
    /// Storing failed for now: what was not written goes back to the partition, to be written
    /// by the next checkpoint with whatever changed since.
    Retry {
        schedule: Vec<Scheduled>,
        unschedule: Vec<String>,
        /// The profiles to write again (all of them: a state written twice is still right).
        changed: Vec<String>,
        /// The chunks stored before the failure, and those not stored (their outcomes wait).
        stored: Vec<Chunk>,
        not_stored: Vec<Chunk>,
    },
}

/// Writes `snapshot`; `Err` when the partition must stop (lost, lapsed).
pub async fn write(
    shared: Arc<Shared>,
    lease: Arc<Lease>,
    mut snapshot: Snapshot,
) -> Result<Written, Exit> {
    let partition = lease.partition;
    snapshot.outbox.confirm(&lease, &shared.settings).await?;
    let retry = |snapshot: Snapshot, stored_chunks: usize| {
        let mut not_stored = snapshot.chunks;
        let stored: Vec<Chunk> = not_stored.drain(..stored_chunks).collect();
        let changed = stored
            .iter()
            .chain(&not_stored)
            .flat_map(|chunk| chunk.pending.iter().map(|(id, _)| id.clone()))
            .collect();
        Written::Retry {
            schedule: snapshot.schedule,
            unschedule: snapshot.unschedule,
            changed,
            stored,
            not_stored,
        }
    };
    // Timers before the state that lists them: a timer whose state is lost is dropped by the
    // profile when it fires, but a state listing a lost timer would wait forever.
    if !snapshot.schedule.is_empty() {
        if let Err(error) = shared.timers.schedule_all(&snapshot.schedule).await {
            tracing::warn!(
                partition,
                error = format!("{error:#}"),
                "storing timers failed; the checkpoint is retried"
            );
            return Ok(retry(snapshot, 0));
        }
        snapshot.schedule.clear();
    }
    if !snapshot.chunks.is_empty() {
        let fence = lease.fence.profile_headers();
        let chunks: Vec<&[(String, Bytes)]> = snapshot
            .chunks
            .iter()
            .map(|c| c.writes.as_slice())
            .collect();
        match shared
            .profiles
            .write_atomically(&chunks, &fence, &snapshot.batch_id)
            .await
        {
            Ok(()) => {}
            Err((_, profiles::WriteError::Fenced)) => {
                lease.mark_lost();
                return Err(Exit::Lost);
            }
            Err((stored, profiles::WriteError::Failed(error))) => {
                tracing::warn!(partition, %error, "writing profiles failed; the checkpoint is retried");
                return Ok(retry(snapshot, stored));
            }
        }
    }
    for id in &snapshot.unschedule {
        shared.timers.unschedule(id).await;
    }
    let committed = match lease.checkpoint(snapshot.position).await {
        Ok(()) => true,
        Err(LeaseError::Lost(_)) => return Err(Exit::Lost),
        Err(LeaseError::Transient(error)) => {
            tracing::warn!(partition, %error, "committing the position failed; the next checkpoint covers it");
            false
        }
    };
    Ok(Written::Done {
        position: snapshot.position,
        committed,
        profiles: snapshot.chunks.iter().map(|c| c.pending.len()).sum(),
        started: snapshot.started,
        chunks: snapshot.chunks,
    })
}
