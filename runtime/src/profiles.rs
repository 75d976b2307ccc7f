//! Profile state in NATS KV (`NUDGE_PROFILES`): one key per profile, the state as the last
//! checkpoint of its partition's owner left it. Only that owner writes, and its writes are
//! fenced (see `cluster::lease`): once another instance takes the partition over, the server
//! refuses them.

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{Context, kv};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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

/// Why a state cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("the profile state is {0} bytes; the limit is {1} (profile_max_bytes)")]
    TooLarge(usize, usize),
    #[error("the profile state cannot be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
}

#[derive(Clone)]
pub struct ProfileStore {
    kv: kv::Store,
    js: Context,
    max_bytes: usize,
}

impl ProfileStore {
    pub fn new(kv: kv::Store, js: Context, max_bytes: usize) -> Self {
        ProfileStore { kv, js, max_bytes }
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The stored state of `id` with its KV revision, or `None` when nudge has never seen it.
    pub async fn load(&self, id: &str) -> anyhow::Result<Option<(ProfileState, u64)>> {
        let Some(entry) = self.kv.entry(key(id)).await? else {
            return Ok(None);
        };
        if !matches!(entry.operation, kv::Operation::Put) {
            return Ok(None);
        }
        let state = serde_json::from_slice(&entry.value)
            .map_err(|e| anyhow::anyhow!("profile {id}: stored state unreadable: {e}"))?;
        Ok(Some((state, entry.revision)))
    }

    /// The state as stored bytes, if it fits `profile_max_bytes`.
    pub fn encode(&self, state: &ProfileState) -> Result<Vec<u8>, EncodeError> {
        let bytes = serde_json::to_vec(state)?;
        if bytes.len() > self.max_bytes {
            return Err(EncodeError::TooLarge(bytes.len(), self.max_bytes));
        }
        Ok(bytes)
    }

    /// Sends the write of `id`'s encoded state with the owner's fence headers; the future
    /// resolves when JetStream stored it (or refused it: the partition moved).
    pub async fn write(
        &self,
        id: &str,
        bytes: Vec<u8>,
        fence: HeaderMap,
    ) -> anyhow::Result<PublishAckFuture> {
        let subject = format!("{}{}", self.kv.prefix, key(id));
        let publish = PublishMessage::build().payload(bytes.into()).headers(fence);
        Ok(self.js.send_publish(subject, publish).await?)
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
