//! Profile state in NATS KV (`NUDGE_PROFILES`): one key per profile, the state as the last
//! checkpoint of its partition's owner left it. Only that owner writes, in atomic batches fenced
//! by the partition's marker (see `cluster::lease`): once another instance takes the partition
//! over, the server refuses them whole.
//!
//! The stored form is MessagePack with field names (windows and applied-event digests as raw
//! bytes): a fifth smaller than JSON and quicker to write, and still self-describing, so fields
//! can be added the way they were in JSON. States stored as JSON by earlier versions (they start
//! with `{`, which no MessagePack map does) are still read.

use async_nats::HeaderMap;
use async_nats::jetstream::{Context, kv};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use nudge_rules::ProfileState;

/// The KV key of a profile id: base64url, so any id is a valid key.
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
    Serialize(#[from] rmp_serde::encode::Error),
}

/// A state in its stored form.
pub fn encode(state: &ProfileState) -> Result<Vec<u8>, EncodeError> {
    Ok(rmp_serde::to_vec_named(state)?)
}

/// A state read back from its stored form (or from the JSON of earlier versions).
pub fn decode(bytes: &[u8]) -> anyhow::Result<ProfileState> {
    Ok(if bytes.first() == Some(&b'{') {
        serde_json::from_slice(bytes)?
    } else {
        rmp_serde::from_slice(bytes)?
    })
}

/// A profile's state as its partition's last checkpoint stored it.
pub struct Stored {
    pub state: ProfileState,
    /// Its KV revision.
    pub revision: u64,
    /// Its stored size.
    pub bytes: usize,
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

    /// The stored state of `id`, or `None` when nudge has never seen it.
    pub async fn load(&self, id: &str) -> anyhow::Result<Option<Stored>> {
        let Some(entry) = self.kv.entry(key(id)).await? else {
            return Ok(None);
        };
        if !matches!(entry.operation, kv::Operation::Put) {
            return Ok(None);
        }
        let state = decode(&entry.value)
            .map_err(|e| anyhow::anyhow!("profile {id}: stored state unreadable: {e:#}"))?;
        Ok(Some(Stored {
            state,
            revision: entry.revision,
            bytes: entry.value.len(),
        }))
    }

    /// The state as stored bytes, if it fits `profile_max_bytes`.
    pub fn encode(&self, state: &ProfileState) -> Result<Vec<u8>, EncodeError> {
        let bytes = encode(state)?;
        if bytes.len() > self.max_bytes {
            return Err(EncodeError::TooLarge(bytes.len(), self.max_bytes));
        }
        Ok(bytes)
    }

    /// Writes `chunks` of `(KV key, value)` one after the other, each as one atomic batch (at
    /// most [`ATOMIC_BATCH_MESSAGES`]), the first message of each carrying the owner's `fence`
    /// headers: a chunk is stored whole, or — once another instance fenced the partition — not
    /// at all. One after the other: a clustered stream refuses fence checks while another write
    /// on it is in flight. The error says how many chunks were stored before it.
    pub async fn write_atomically(
        &self,
        chunks: &[&[(String, Bytes)]],
        fence: &HeaderMap,
        batch_prefix: &str,
    ) -> Result<(), (usize, WriteError)> {
        for (chunk_index, chunk) in chunks.iter().enumerate() {
            let batch_id = format!("{batch_prefix}-{chunk_index}");
            self.write_batch(chunk, fence, &batch_id)
                .await
                .map_err(|error| (chunk_index, error))?;
        }
        Ok(())
    }

    async fn write_batch(
        &self,
        chunk: &[(String, Bytes)],
        fence: &HeaderMap,
        batch_id: &str,
    ) -> Result<(), WriteError> {
        debug_assert!(chunk.len() <= ATOMIC_BATCH_MESSAGES);
        let client = self.js.client();
        let last = chunk.len();
        let mut reply = None;
        for (index, (key, bytes)) in chunk.iter().enumerate() {
            let sequence = index + 1;
            let mut headers = if sequence == 1 {
                fence.clone()
            } else {
                HeaderMap::new()
            };
            headers.insert("Nats-Batch-Id", batch_id);
            headers.insert("Nats-Batch-Sequence", sequence.to_string().as_str());
            let subject = format!("{}{key}", self.kv.prefix);
            let payload = bytes.clone();
            if sequence == last {
                headers.insert("Nats-Batch-Commit", "1");
                reply = Some(
                    client
                        .request_with_headers(subject, headers, payload)
                        .await
                        .map_err(|e| WriteError::Failed(e.to_string()))?,
                );
            } else {
                client
                    .publish_with_headers(subject, headers, payload)
                    .await
                    .map_err(|e| WriteError::Failed(e.to_string()))?;
            }
        }
        match reply {
            Some(reply) => batch_outcome(&reply.payload),
            None => Ok(()),
        }
    }

    /// Every stored value whose key matches `pattern` (KV wildcards), as `(key, value)`: the
    /// stream lists its subjects under the pattern (without reading any profile), then each is
    /// read.
    pub async fn scan(&self, pattern: &str) -> anyhow::Result<Vec<(String, Bytes)>> {
        use futures::TryStreamExt as _;
        let stream = self.js.get_stream(&self.kv.stream_name).await?;
        let subjects: Vec<(String, usize)> = stream
            .info_with_subjects(format!("{}{pattern}", self.kv.prefix))
            .await?
            .try_collect()
            .await?;
        let mut found = Vec::with_capacity(subjects.len());
        for (subject, _) in subjects {
            let Some(key) = subject.strip_prefix(self.kv.prefix.as_str()) else {
                continue;
            };
            if let Some(entry) = self.kv.entry(key).await?
                && matches!(entry.operation, kv::Operation::Put)
            {
                found.push((key.to_owned(), entry.value));
            }
        }
        Ok(found)
    }
}

/// The most messages nats-server takes in one atomic batch (its `batch.max_msgs` default).
pub const ATOMIC_BATCH_MESSAGES: usize = 1_000;

/// JetStream's "wrong last sequence": the fence moved.
const WRONG_LAST_SEQUENCE: u64 = 10_071;

/// Why a checkpoint's profile writes did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("another instance fenced the partition")]
    Fenced,
    #[error("{0}")]
    Failed(String),
}

/// Reads the commit's answer: the batch's ack, or why it was refused.
fn batch_outcome(answer: &[u8]) -> Result<(), WriteError> {
    #[derive(serde::Deserialize)]
    struct Refusal {
        err_code: u64,
        description: String,
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        error: Option<Refusal>,
        count: Option<usize>,
    }
    let answer: Answer = serde_json::from_slice(answer)
        .map_err(|e| WriteError::Failed(format!("an unreadable batch acknowledgement: {e}")))?;
    match (answer.error, answer.count) {
        (Some(refusal), _) if refusal.err_code == WRONG_LAST_SEQUENCE => Err(WriteError::Fenced),
        (Some(refusal), _) => Err(WriteError::Failed(refusal.description)),
        (None, Some(_)) => Ok(()),
        (None, None) => Err(WriteError::Failed(
            "the batch acknowledgement says neither stored nor refused".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::key;

    #[test]
    fn states_survive_their_stored_form_and_earlier_json_is_still_read() {
        use nudge_rules::ProfileState;
        let mut state = ProfileState::new("user-1", 1_700_000_000_000);
        state.counters.insert("cart.updated".into(), 3);
        state
            .windows
            .entry("cart.updated".into())
            .or_default()
            .push(5, &[1, 2]);
        state.profile.attributes.insert(
            "tier".into(),
            serde_json::json!({"level": 2.5, "tags": ["a"]}),
        );
        state.seq = 42;
        let stored = super::encode(&state).unwrap();
        assert_eq!(super::decode(&stored).unwrap(), state);
        let json = serde_json::to_vec(&state).unwrap();
        assert!(
            stored.len() < json.len(),
            "{} >= {}",
            stored.len(),
            json.len()
        );
        assert_eq!(
            super::decode(&json).unwrap(),
            state,
            "a state stored as JSON before"
        );
        assert!(
            super::decode(b"\xc1").is_err(),
            "not a state: an error, not a default"
        );
    }

    #[test]
    fn applied_events_are_stored_in_16_bytes_and_hex_stored_before_is_still_read() {
        use nudge_rules::state::Applied;
        use serde_json::json;
        let event = nudge_rules::CloudEvent::from_value(json!({"specversion": "1.0",
            "id": "e-1", "source": "shop", "type": "cart.updated", "subject": "user-1"}))
        .unwrap();
        let applied = Applied {
            event: event.identity(),
        };
        let stored = rmp_serde::to_vec_named(&applied).unwrap();
        let before = rmp_serde::to_vec_named(&json!({"event": event.identity_digest()})).unwrap();
        assert_eq!(before.len() - stored.len(), 16, "raw bytes instead of hex");
        assert_eq!(rmp_serde::from_slice::<Applied>(&stored).unwrap(), applied);
        assert_eq!(
            rmp_serde::from_slice::<Applied>(&before).unwrap(),
            applied,
            "hex, as stored before"
        );
        assert_eq!(
            serde_json::to_value(&applied).unwrap(),
            json!({"event": event.identity_digest()}),
            "hex in JSON"
        );
        let short = rmp_serde::to_vec_named(&json!({"event": "abc"})).unwrap();
        assert!(rmp_serde::from_slice::<Applied>(&short).is_err());
    }

    #[test]
    fn batch_answers_say_stored_fenced_or_why_not() {
        use super::{WriteError, batch_outcome};
        assert!(
            batch_outcome(br#"{"stream":"KV_NUDGE_PROFILES","seq":9,"batch":"b","count":3}"#)
                .is_ok()
        );
        let fenced = br#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 4"},"stream":"KV_NUDGE_PROFILES","seq":0}"#;
        assert!(matches!(batch_outcome(fenced), Err(WriteError::Fenced)));
        let other = br#"{"error":{"code":400,"err_code":10176,"description":"atomic publish is disabled"}}"#;
        assert!(
            matches!(batch_outcome(other), Err(WriteError::Failed(m)) if m.contains("disabled"))
        );
        assert!(batch_outcome(b"{}").is_err());
    }

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
