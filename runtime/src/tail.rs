//! Reads the most recent messages of a stream (optionally of one subject filter) with a
//! throw-away ordered view: what the trace, audit, DLQ and recent-events pages list.

use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt;

/// One stored message.
pub struct Stored {
    pub sequence: u64,
    pub subject: String,
    pub headers: Option<async_nats::HeaderMap>,
    pub payload: bytes::Bytes,
    /// When the stream stored it (ms since the epoch).
    pub stored_ms: i64,
}

impl Stored {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref()?.get(name).map(|v| v.as_str())
    }
}

/// The last `limit` messages matching `filter` among the stream's last `scan_last` messages,
/// most recent first. `before` (a sequence) pages back.
pub async fn tail(
    js: &Context,
    stream_name: &str,
    filter: Option<String>,
    scan_last: u64,
    limit: usize,
    before: Option<u64>,
) -> anyhow::Result<Vec<Stored>> {
    let mut stream = js.get_stream(stream_name).await?;
    let info = stream.info().await?;
    let last = before
        .map(|b| b.saturating_sub(1))
        .unwrap_or(info.state.last_sequence)
        .min(info.state.last_sequence);
    if info.state.messages == 0 || last < info.state.first_sequence || limit == 0 {
        return Ok(Vec::new());
    }
    let start = last
        .saturating_sub(scan_last.saturating_sub(1))
        .max(info.state.first_sequence);
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: filter.unwrap_or_default(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(10),
            ..Default::default()
        })
        .await?;
    let pending = usize::try_from(consumer.cached_info().num_pending).unwrap_or(0);
    let mut found: std::collections::VecDeque<Stored> = std::collections::VecDeque::new();
    let mut remaining = pending;
    while remaining > 0 {
        let batch = remaining.min(1_000);
        let mut messages = consumer
            .fetch()
            .max_messages(batch)
            .expires(Duration::from_secs(2))
            .messages()
            .await?;
        let mut got = 0;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| anyhow::anyhow!(e))?;
            got += 1;
            let info = message.info().map_err(|e| anyhow::anyhow!(e))?;
            if info.stream_sequence > last {
                remaining = 0;
                break;
            }
            let stored_ms = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
            let sequence = info.stream_sequence;
            found.push_back(Stored {
                sequence,
                subject: message.subject.to_string(),
                headers: message.headers.clone(),
                payload: message.payload.clone(),
                stored_ms,
            });
            if found.len() > limit {
                found.pop_front();
            }
        }
        if got == 0 {
            break;
        }
        remaining = remaining.saturating_sub(got);
    }
    let name = consumer.cached_info().name.clone();
    stream.delete_consumer(&name).await.ok();
    let mut newest_first: Vec<Stored> = found.into_iter().collect();
    newest_first.reverse();
    Ok(newest_first)
}
