//! Which partition a profile belongs to: FNV-1a (32 bit) of the profile key, modulo the
//! partition count — the hash nats-server's own `{{partition(n, …)}}` subject mapping uses, so a
//! producer (or a NATS subject mapping over a token holding the key) computes the same number.
//!
//! Every event of one profile lands in one partition, and one instance at a time owns a
//! partition: that is what keeps a profile's events decided one at a time, in stream order.

use serde::Deserialize;
use std::borrow::Cow;

/// The most partitions a deployment may have: enough for hundreds of instances, few enough that
/// every instance can track all of them.
pub const MAX_PARTITIONS: u32 = 1_024;

/// FNV-1a, 32 bit, fed piece by piece (text written with `write!` included), so a hash over
/// several parts needs no buffer.
pub struct Fnv1a32(u32);

impl Default for Fnv1a32 {
    fn default() -> Self {
        Fnv1a32(0x811c_9dc5)
    }
}

impl Fnv1a32 {
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        for byte in bytes {
            self.0 = (self.0 ^ u32::from(*byte)).wrapping_mul(0x0100_0193);
        }
        self
    }

    pub fn finish(&self) -> u32 {
        self.0
    }
}

impl std::fmt::Write for Fnv1a32 {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.bytes(text.as_bytes());
        Ok(())
    }
}

/// FNV-1a, 32 bit, over the bytes of `key`.
pub fn fnv1a32(key: &[u8]) -> u32 {
    Fnv1a32::default().bytes(key).finish()
}

/// The partition of `profile_key` among `partitions` (at least 1).
pub fn partition_of(profile_key: &str, partitions: u32) -> u32 {
    fnv1a32(profile_key.as_bytes()) % partitions.max(1)
}

#[derive(Deserialize)]
struct SubjectOnly<'a> {
    #[serde(borrow)]
    subject: Option<Cow<'a, str>>,
}

/// The profile key (`subject`) of an encoded CloudEvent, read without decoding the rest: every
/// instance reads every event to find the ones of its partitions, so this runs per event on
/// each of them. `None` when the bytes are not a JSON object with a string `subject`; such an
/// event is routed by its NATS subject instead and refused by the full decoder.
pub fn profile_key_of(bytes: &[u8]) -> Option<Cow<'_, str>> {
    serde_json::from_slice::<SubjectOnly>(bytes).ok()?.subject
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_fnv1a_reference_vectors() {
        // From the FNV reference test suite (http://www.isthe.com/chongo/tech/comp/fnv/).
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition_of("user-42", 16), partition_of("user-42", 16));
        let used: std::collections::HashSet<u32> = (0..1_000)
            .map(|i| partition_of(&format!("user-{i}"), 16))
            .collect();
        assert_eq!(used.len(), 16);
        assert_eq!(partition_of("anyone", 1), 0);
        assert_eq!(partition_of("anyone", 0), 0);
    }

    #[test]
    fn reads_the_key_without_the_rest() {
        let event = br#"{"specversion":"1.0","id":"1","data":{"subject":"nested"},"subject":"user-7","type":"a.b"}"#;
        assert_eq!(profile_key_of(event).as_deref(), Some("user-7"));
        let escaped = br#"{"subject":"a\"b"}"#;
        assert_eq!(profile_key_of(escaped).as_deref(), Some("a\"b"));
        assert_eq!(profile_key_of(br#"{"id":"1"}"#), None);
        assert_eq!(profile_key_of(b"not json"), None);
        assert_eq!(profile_key_of(br#"{"subject":42}"#), None);
    }
}
