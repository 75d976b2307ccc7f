//! Decision traces in `NUDGE_TRACE`: how a partition stores them at each checkpoint and how
//! `GET /api/profiles/{id}/trace` finds one profile's among them.
//!
//! A checkpoint stores the decisions of all the profiles its partition changed in a few
//! messages on `trace.<partition>` (at most [`TRACE_MESSAGE_MAX_BYTES`] each), not one message
//! per profile: at a few events per profile per checkpoint, one message per profile cost the
//! server a stored message for every third event. So that one profile's decisions can still be
//! found without scanning, each profile's entry names the message that holds its previous
//! entry, and its state (`ProfileState::trace_seq`) the newest: reading walks that chain
//! back, newest first, until it has enough or reaches a message retention has dropped.
//!
//! A message is a JSON array of entries, `{"id": <profile id>, "prev": <sequence or 0>,
//! "decisions": [<decision trace>, ...]}`, decisions oldest first.

use async_nats::jetstream::Context;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use serde::Deserialize;
use serde_json::Value;

use crate::topology::TRACE_STREAM;

/// The largest trace message a checkpoint publishes (one profile's entry alone may be larger,
/// up to the server's `max_payload`).
pub const TRACE_MESSAGE_MAX_BYTES: usize = 256 * 1024;

/// One profile's decisions since its last stored entry.
pub struct Entry {
    pub profile: String,
    /// The sequence of the message holding its previous entry (0: none).
    pub prev_seq: u64,
    /// Serialized decision traces, oldest first.
    pub decisions: Vec<Vec<u8>>,
}

/// What storing a checkpoint's traces came to.
pub struct Stored {
    /// Each stored profile with the sequence of the message now holding its newest entry.
    pub newest: Vec<(String, u64)>,
    /// Entries not stored (the server did not answer or refused), with why.
    pub unstored: Vec<Entry>,
    pub error: Option<String>,
}

/// Publishes `entries` on `trace.<partition>`, one message after the other, each acknowledged
/// before the next: a profile whose entry does not fit in one message keeps its chain.
pub async fn store(js: &Context, partition: u32, entries: Vec<Entry>) -> Stored {
    let subject = format!("trace.{partition}");
    let mut stored = Stored {
        newest: Vec::with_capacity(entries.len()),
        unstored: Vec::new(),
        error: None,
    };
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let mut body = Vec::with_capacity(TRACE_MESSAGE_MAX_BYTES.min(64 * 1024));
        let mut in_message = Vec::new();
        body.push(b'[');
        while let Some(entry) = entries.next_if(|entry| {
            in_message.is_empty() || body.len() + entry_bytes(entry) <= TRACE_MESSAGE_MAX_BYTES
        }) {
            if !in_message.is_empty() {
                body.push(b',');
            }
            write_entry(&mut body, &entry);
            in_message.push(entry);
        }
        body.push(b']');
        let published = match js.publish(subject.clone(), body.into()).await {
            Ok(ack) => ack.await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match published {
            Ok(ack) => stored.newest.extend(
                in_message
                    .into_iter()
                    .map(|entry| (entry.profile, ack.sequence)),
            ),
            Err(error) => {
                stored.unstored.extend(in_message);
                stored.unstored.extend(entries);
                stored.error = Some(error);
                break;
            }
        }
    }
    stored
}

/// An upper bound of an entry's bytes in a message, for packing.
fn entry_bytes(entry: &Entry) -> usize {
    // The id escaped at worst doubles; the rest is the keys, a number and the separators.
    2 * entry.profile.len()
        + 64
        + entry
            .decisions
            .iter()
            .map(|decision| decision.len() + 1)
            .sum::<usize>()
}

fn write_entry(body: &mut Vec<u8>, entry: &Entry) {
    body.extend_from_slice(br#"{"id":"#);
    serde_json::to_writer(&mut *body, &entry.profile).expect("a string serializes");
    body.extend_from_slice(format!(r#","prev":{},"decisions":["#, entry.prev_seq).as_bytes());
    for (i, decision) in entry.decisions.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(decision);
    }
    body.extend_from_slice(b"]}");
}

#[derive(Deserialize)]
struct StoredEntry {
    id: String,
    prev: u64,
    decisions: Vec<Value>,
}

/// Up to `limit` decisions of `profile`, most recent first, walking back from the message
/// `newest_seq` (the profile state's `trace_seq`; 0: none).
pub async fn read(
    js: &Context,
    profile: &str,
    newest_seq: u64,
    limit: usize,
) -> anyhow::Result<Vec<Value>> {
    let mut decisions = Vec::with_capacity(limit);
    if newest_seq == 0 || limit == 0 {
        return Ok(decisions);
    }
    let stream = js.get_stream(TRACE_STREAM).await?;
    let mut seq = newest_seq;
    // Every entry holds at least one decision, so `limit` hops are enough; the sequence must
    // fall at each hop, so a damaged chain cannot loop.
    for _ in 0..limit {
        let message = match stream.get_raw_message(seq).await {
            Ok(message) => message,
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => break,
            Err(error) => return Err(error.into()),
        };
        let entries: Vec<StoredEntry> = serde_json::from_slice(&message.payload)
            .map_err(|e| anyhow::anyhow!("the trace message {seq} is unreadable: {e}"))?;
        let Some(entry) = entries.into_iter().find(|entry| entry.id == profile) else {
            // Only a trace stream deleted and created anew (sequences start again) does this.
            tracing::warn!(
                seq,
                profile,
                "a trace message holds no entry of the profile pointing at it; its older decisions are not shown"
            );
            break;
        };
        decisions.extend(entry.decisions.into_iter().rev());
        if decisions.len() >= limit || entry.prev == 0 || entry.prev >= seq {
            break;
        }
        seq = entry.prev;
    }
    decisions.truncate(limit);
    Ok(decisions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_the_json_it_claims() {
        let entry = Entry {
            profile: "user \"7\"".into(),
            prev_seq: 41,
            decisions: vec![br#"{"a":1}"#.to_vec(), br#"{"b":2}"#.to_vec()],
        };
        let mut body = Vec::new();
        write_entry(&mut body, &entry);
        assert!(body.len() <= entry_bytes(&entry));
        let parsed: StoredEntry = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(parsed.id, "user \"7\"");
        assert_eq!(parsed.prev, 41);
        assert_eq!(parsed.decisions.len(), 2);
    }
}
