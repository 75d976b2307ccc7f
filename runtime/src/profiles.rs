//! Profile state in NATS KV (`NUDGE_PROFILES`): one key per profile, written only by
//! compare-and-set on the revision that was read, so two instances deciding events of the same
//! profile never lose each other's update (the loser re-reads and decides again).
//!
//! Each lane keeps a small cache of the states it wrote with their revisions: in the common
//! case (one instance owns the profile's traffic) an event costs one KV write and no read.

use std::num::NonZeroUsize;

use async_nats::jetstream::kv;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lru::LruCache;
use nudge_rules::ProfileState;

/// The KV key (and trace subject token) of a profile id: base64url, so any id is a valid key.
pub fn key(profile_id: &str) -> String {
    let encoded = URL_SAFE_NO_PAD.encode(profile_id.as_bytes());
    if encoded.is_empty() {
        "_".to_owned()
    } else {
        encoded
    }
}

/// A state and the KV revision it was read or written at (`0`: the key does not exist).
pub type Versioned = (ProfileState, u64);

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("another instance wrote this profile first")]
    Conflict,
    #[error("the profile state is {0} bytes; the limit is {1} (profile_max_bytes)")]
    TooLarge(usize, usize),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

#[derive(Clone)]
pub struct ProfileStore {
    kv: kv::Store,
    max_bytes: usize,
}

impl ProfileStore {
    pub fn new(kv: kv::Store, max_bytes: usize) -> Self {
        ProfileStore { kv, max_bytes }
    }

    /// The stored state of `id`, or `None` with revision 0 when nudge has never seen it.
    pub async fn load(&self, id: &str) -> anyhow::Result<Option<Versioned>> {
        let Some(entry) = self.kv.entry(key(id)).await? else {
            return Ok(None);
        };
        if !matches!(entry.operation, kv::Operation::Put) {
            return Ok(Some((ProfileState::new(id, 0), entry.revision)));
        }
        let state = serde_json::from_slice(&entry.value)
            .map_err(|e| anyhow::anyhow!("profile {id}: stored state unreadable: {e}"))?;
        Ok(Some((state, entry.revision)))
    }

    /// Writes `state` if the key is still at `revision`; answers the new revision.
    pub async fn save(
        &self,
        id: &str,
        state: &ProfileState,
        revision: u64,
    ) -> Result<u64, WriteError> {
        let bytes = serde_json::to_vec(state).map_err(anyhow::Error::from)?;
        if bytes.len() > self.max_bytes {
            return Err(WriteError::TooLarge(bytes.len(), self.max_bytes));
        }
        if revision == 0 {
            self.kv.create(key(id), bytes.into()).await.map_err(|e| {
                if e.kind() == kv::CreateErrorKind::AlreadyExists {
                    WriteError::Conflict
                } else {
                    WriteError::Other(e.into())
                }
            })
        } else {
            self.kv
                .update(key(id), bytes.into(), revision)
                .await
                .map_err(|e| {
                    if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                        WriteError::Conflict
                    } else {
                        WriteError::Other(e.into())
                    }
                })
        }
    }
}

/// One lane's cache of profile states with their revisions.
pub struct ProfileCache {
    entries: LruCache<String, Versioned>,
}

impl ProfileCache {
    pub fn new(entries: usize) -> Self {
        ProfileCache {
            entries: LruCache::new(NonZeroUsize::new(entries.max(1)).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// Takes the cached state out: a decision that is not written must not stay in the cache,
    /// and the written state is put back.
    pub fn take(&mut self, id: &str) -> Option<Versioned> {
        self.entries.pop(id)
    }

    pub fn put(&mut self, id: &str, versioned: Versioned) {
        self.entries.put(id.to_owned(), versioned);
    }

    /// The actions of event `identity` are stored: its outbox is no longer needed, and the next
    /// write of the profile leaves it out (a redelivery then republishes nothing, correctly).
    pub fn settled(&mut self, id: &str, identity: &str) {
        if let Some((state, _)) = self.entries.peek_mut(id)
            && let Some(applied) = state.applied.iter_mut().find(|a| a.event == identity)
        {
            applied.outbox.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::key;

    #[test]
    fn any_profile_id_becomes_a_valid_key() {
        for id in ["user-42", "a@b.example", "with space", "x.y>z*", ""] {
            let k = key(id);
            assert!(
                k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{k}"
            );
        }
        assert_ne!(key("a"), key("b"));
    }
}
