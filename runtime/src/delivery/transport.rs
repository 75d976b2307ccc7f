//! What the delivery worker needs of a channel: how to read an action of it, where the action
//! goes (the target whose breaker, slots and pace it shares) and how one attempt is made. The
//! worker ([`super::worker`]) owns everything else — retries, breakers, the log, the DLQ — so
//! every channel it delivers behaves the same way.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use nudge_rules::Channel;
use serde::de::DeserializeOwned;

use super::request::Answer;

/// Where one delivery ended up.
pub enum Settled {
    Ack,
    /// Handed back, to come again after the delay.
    Later(Duration),
    DeadLetter {
        kind: &'static str,
        reason: String,
    },
}

/// Where an action goes, resolved for one attempt.
pub struct Target<P> {
    /// Whose breaker, slots and pace the delivery shares (the endpoint's name, the relay).
    pub key: String,
    /// Deliveries per second at most (per instance); none: as fast as it answers.
    pub rate_per_s: Option<u32>,
    /// What the attempt needs (the endpoint, the rendered message).
    pub prepared: P,
}

/// The bounds of one channel's deliveries, from its `<channel>_*` settings.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryLimits {
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub breaker_failures: u32,
    pub breaker_cool_down_ms: u64,
    /// Deliveries in flight per instance (the consumer's pending acks too).
    pub in_flight_max: usize,
    /// Of those, per target.
    pub target_in_flight_max: usize,
    /// The longest one attempt may take.
    pub attempt_max_ms: u64,
}

/// One channel's way of delivering.
pub trait Transport: Send + Sync + 'static {
    /// What the transport reads of an action's `data`.
    type Data: DeserializeOwned + Send;
    type Prepared: Send + Sync;

    fn channel(&self) -> Channel;

    /// How dead letters name the target `key`: "webhook `crm`", "the SMTP relay host:port".
    /// Asked only when one is written, so no delivery pays for the words.
    fn describe(&self, key: &str) -> String;

    /// Resolves where the action goes and prepares the attempt; an action that cannot go
    /// anywhere settles here (dead-lettered, or handed back while NATS cannot be read).
    fn prepare(
        &self,
        data: Self::Data,
    ) -> impl Future<Output = Result<Target<Self::Prepared>, Settled>> + Send;

    /// One attempt.
    fn send(
        &self,
        target: &Target<Self::Prepared>,
        action_id: &str,
        action: Bytes,
        now_ms: i64,
    ) -> impl Future<Output = Answer> + Send;

    /// The target said it is gone for good (HTTP 410): switch it off. Answers why, for the DLQ.
    /// Only HTTP has such an answer; other transports never report [`super::outcome::Outcome::Gone`].
    fn gone(&self, key: &str, at: &str, _now_ms: i64) -> impl Future<Output = String> + Send {
        let reason = format!("{key} said it is gone, at {at}");
        async move { reason }
    }
}
