//! Holding one partition: the compare-and-set writes on its record (take over, renew,
//! checkpoint, release) and the fence markers that make a former owner's writes fail at the
//! server.
//!
//! Ownership is not exclusivity (an owner paused past its lease still believes it owns), so
//! three things stop a former owner:
//! 1. it stops itself: every action publish and checkpoint first checks that the lease, by this
//!    process's monotonic clock, has not run out (a contender waits a whole lease from when *it*
//!    saw the last renewal, which is later);
//! 2. its record writes (position, renewal) are compare-and-set on the revision it last wrote,
//!    and a takeover changed it;
//! 3. its profile writes go in atomic batches (nats-server 2.12) whose first message carries
//!    `Nats-Expected-Last-Subject-Sequence` on the partition's fence marker in `NUDGE_PROFILES`
//!    (`Nats-Expected-Last-Subject-Sequence-Subject`, 2.11), which every takeover rewrites: the
//!    server refuses the batch whole.
//!
//! Actions are not fenced at the server (a marker would have to live in `NUDGE_ACTIONS`, among
//! the actions consumers read): a former owner that passed check 1 an instant before its pause
//! can still send the publish it was about to send. That action was decided from the same
//! checkpointed state and the same events the new owner replays, so it carries the same
//! deterministic id and JetStream keeps one copy.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::kv;
use tokio_util::sync::CancellationToken;

use super::record::{PartitionRecord, partition_key};
use crate::clock::SharedClock;

/// Key of a partition's fence marker in `NUDGE_PROFILES` (profile keys are base64url and never
/// hold a dot, so this cannot collide with one).
pub fn profile_fence_key(partition: u32) -> String {
    format!("_fence.{partition}")
}

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another instance took the partition over: stop, write nothing more.
    #[error("partition {0} was taken over by another instance")]
    Lost(u32),
    /// NATS did not answer; the lease stays valid until it runs out.
    #[error(transparent)]
    Transient(#[from] anyhow::Error),
}

/// The fence this owner's profile writes carry: refused by the server once another instance
/// took the partition over and wrote a new marker.
pub struct Fence {
    subject: String,
    seq: u64,
}

impl Fence {
    /// Headers for a profile write.
    pub fn profile_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            self.seq.to_string().as_str(),
        );
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence-Subject",
            self.subject.as_str(),
        );
        headers
    }
}

struct Held {
    record: PartitionRecord,
    revision: u64,
}

/// One owned partition.
pub struct Lease {
    pub partition: u32,
    pub epoch: u64,
    /// The committed position when the lease was taken: where the new owner resumes.
    pub resume_after: u64,
    pub fence: Fence,
    kv: kv::Store,
    clock: SharedClock,
    held: tokio::sync::Mutex<Held>,
    lease: Duration,
    /// Monotonic deadline of the lease, as nanoseconds after `base`.
    valid_until_ns: AtomicU64,
    base: Instant,
    lost: CancellationToken,
    last_checkpoint_ms: Mutex<i64>,
}

impl Lease {
    /// Takes partition `partition` over from the record seen at `revision` (0: no record yet).
    /// `Ok(None)`: another instance got there first.
    #[allow(clippy::too_many_arguments)]
    pub async fn acquire(
        cluster: &kv::Store,
        profiles: &kv::Store,
        clock: SharedClock,
        partition: u32,
        me: &str,
        seen: Option<(PartitionRecord, u64)>,
        lease: Duration,
    ) -> anyhow::Result<Option<Lease>> {
        let (previous, revision) = seen.unwrap_or_default();
        let now_ms = clock.now_ms();
        let record = PartitionRecord {
            owner: Some(me.to_owned()),
            epoch: previous.epoch + 1,
            renewed_at_ms: now_ms,
            ..previous
        };
        let base = Instant::now();
        let written = write(cluster, partition, &record, revision).await;
        let revision = match written {
            Ok(revision) => revision,
            Err(LeaseError::Lost(_)) => return Ok(None),
            Err(LeaseError::Transient(error)) => return Err(error),
        };
        // Fence before the first write: from here on, the former owner's writes are refused.
        let seq = profiles
            .put(
                profile_fence_key(partition),
                record.epoch.to_string().into(),
            )
            .await?;
        let fence = Fence {
            subject: format!("{}{}", profiles.prefix, profile_fence_key(partition)),
            seq,
        };
        let held_lease = Lease {
            partition,
            epoch: record.epoch,
            resume_after: record.position,
            fence,
            kv: cluster.clone(),
            clock,
            last_checkpoint_ms: Mutex::new(record.checkpoint_at_ms),
            held: tokio::sync::Mutex::new(Held { record, revision }),
            lease,
            valid_until_ns: AtomicU64::new(0),
            base,
            lost: CancellationToken::new(),
        };
        held_lease.extend_from(base);
        Ok(Some(held_lease))
    }

    /// The lease runs until a little before `sent + lease`: a contender waits a whole lease from
    /// when it *saw* this write, so this side always stops first.
    fn extend_from(&self, sent: Instant) {
        let margin = self.lease / 10;
        let until = sent.saturating_duration_since(self.base) + self.lease - margin;
        self.valid_until_ns
            .fetch_max(until.as_nanos() as u64, Ordering::AcqRel);
    }

    /// Whether this instance may still publish and write for the partition.
    pub fn is_valid(&self) -> bool {
        !self.lost.is_cancelled()
            && (self.base.elapsed().as_nanos() as u64) < self.valid_until_ns.load(Ordering::Acquire)
    }

    /// Cancelled once the partition is known to be lost.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    pub fn last_checkpoint_ms(&self) -> i64 {
        *self
            .last_checkpoint_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the partition lost (a refused write showed another owner fenced it).
    pub fn mark_lost(&self) {
        self.lost.cancel();
    }

    async fn update(
        &self,
        change: impl FnOnce(&mut PartitionRecord, i64),
    ) -> Result<(), LeaseError> {
        if self.lost.is_cancelled() {
            return Err(LeaseError::Lost(self.partition));
        }
        let mut held = self.held.lock().await;
        let mut record = held.record.clone();
        let now_ms = self.clock.now_ms();
        change(&mut record, now_ms);
        record.renewed_at_ms = now_ms;
        let sent = Instant::now();
        match write(&self.kv, self.partition, &record, held.revision).await {
            Ok(revision) => {
                *held = Held { record, revision };
                self.extend_from(sent);
                Ok(())
            }
            Err(error) => {
                if matches!(error, LeaseError::Lost(_)) {
                    self.lost.cancel();
                }
                Err(error)
            }
        }
    }

    /// Renews the lease.
    pub async fn renew(&self) -> Result<(), LeaseError> {
        self.update(|_, _| {}).await
    }

    /// Commits `position`: everything of the partition up to it is checkpointed.
    pub async fn checkpoint(&self, position: u64) -> Result<(), LeaseError> {
        self.update(|record, now_ms| {
            record.position = record.position.max(position);
            record.checkpoint_at_ms = now_ms;
        })
        .await?;
        *self
            .last_checkpoint_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = self.clock.now_ms();
        Ok(())
    }

    /// Gives the partition up (after a final checkpoint), so another instance takes it at once.
    pub async fn release(&self) -> Result<(), LeaseError> {
        self.update(|record, _| record.owner = None).await?;
        self.lost.cancel();
        Ok(())
    }
}

async fn write(
    kv: &kv::Store,
    partition: u32,
    record: &PartitionRecord,
    revision: u64,
) -> Result<u64, LeaseError> {
    let bytes = serde_json::to_vec(record).map_err(anyhow::Error::from)?;
    let key = partition_key(partition);
    if revision == 0 {
        kv.create(&key, bytes.into()).await.map_err(|e| {
            if e.kind() == kv::CreateErrorKind::AlreadyExists {
                LeaseError::Lost(partition)
            } else {
                LeaseError::Transient(e.into())
            }
        })
    } else {
        kv.update(&key, bytes.into(), revision).await.map_err(|e| {
            if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                LeaseError::Lost(partition)
            } else {
                LeaseError::Transient(e.into())
            }
        })
    }
}
