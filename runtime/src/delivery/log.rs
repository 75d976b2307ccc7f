//! The delivery log: stream `NUDGE_DELIVERIES`, one message per attempt on
//! `deliveries.<channel>.<profile key>.<action id>` (time, endpoint, status, outcome, latency,
//! error), kept by `deliveries_max_age_s` and `deliveries_max_bytes`. It is also how attempts
//! are counted: JetStream's delivery count would include the times a delivery waited for an
//! open breaker, which are not attempts.

use async_nats::jetstream::Context;
use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use nudge_rules::Channel;
use serde::{Deserialize, Serialize};

use crate::tail::tail;
use crate::topology::DELIVERIES_STREAM;

/// One attempt, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    pub action_id: String,
    pub channel: String,
    /// The endpoint (webhook name).
    pub endpoint: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub at: String,
    pub outcome: String,
    #[serde(default)]
    pub status: Option<u16>,
    pub latency_ms: u64,
    #[serde(default)]
    pub error: Option<String>,
}

/// The subject of one action's attempts.
pub fn subject(channel: Channel, profile_id: &str, action_id: &str) -> String {
    format!(
        "deliveries.{}.{}.{action_id}",
        channel.as_str(),
        crate::profiles::key(profile_id)
    )
}

/// The latest attempts logged for `profile_id` (every channel), newest first, at most `limit`.
pub async fn of_profile(
    js: &Context,
    profile_id: &str,
    limit: usize,
) -> anyhow::Result<Vec<Attempt>> {
    let filter = format!("deliveries.*.{}.>", crate::profiles::key(profile_id));
    let stored = tail(js, DELIVERIES_STREAM, Some(filter), u64::MAX, limit, None).await?;
    stored
        .iter()
        .map(|m| {
            serde_json::from_slice(&m.payload)
                .map_err(|e| anyhow::anyhow!("{}: an unreadable attempt: {e}", m.subject))
        })
        .collect()
}

#[derive(Clone)]
pub struct DeliveryLog {
    js: Context,
    stream: Stream,
}

impl DeliveryLog {
    pub async fn open(js: &Context) -> anyhow::Result<DeliveryLog> {
        Ok(DeliveryLog {
            js: js.clone(),
            stream: js.get_stream(DELIVERIES_STREAM).await?,
        })
    }

    /// The number of the last attempt logged on `subject` (0: none yet).
    pub async fn attempts_made(&self, subject: &str) -> anyhow::Result<u32> {
        match self.stream.direct_get_last_for_subject(subject).await {
            Ok(message) => Ok(serde_json::from_slice::<Attempt>(&message.payload)
                .map_err(|e| anyhow::anyhow!("{subject}: an unreadable attempt: {e}"))?
                .attempt),
            Err(error) if matches!(error.kind(), DirectGetErrorKind::NotFound) => Ok(0),
            Err(error) => Err(error.into()),
        }
    }

    /// Stores `attempt` and waits for JetStream's ack.
    pub async fn append(&self, subject: String, attempt: &Attempt) -> anyhow::Result<()> {
        let body = serde_json::to_vec(attempt)?;
        self.js.publish(subject, body.into()).await?.await?;
        Ok(())
    }
}
