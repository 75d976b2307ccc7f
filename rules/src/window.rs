//! One event type's recent events for `count()`, kept packed: every entry is the event's time
//! (i64, little-endian), how many field hashes follow (u8), and the hashes (u32 each), oldest
//! entry first, in one byte buffer. A profile holds a window per event type and an owner holds
//! thousands of profiles in memory, so an entry costs its bytes and no allocation of its own;
//! and the stored form (the same bytes; base64 of them in JSON) is written without converting
//! anything.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde::de::{Error as _, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes of an entry before its hashes: time (8) and hash count (1).
const HEAD_BYTES: usize = 9;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    bytes: Vec<u8>,
    len: usize,
}

/// One entry: when the event happened, and hashes of its scalar data fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub at_ms: i64,
    hashes: &'a [u8],
}

impl Entry<'_> {
    pub fn hashes(&self) -> impl Iterator<Item = u32> + '_ {
        self.hashes
            .chunks_exact(4)
            .map(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]))
    }

    /// Whether every hash of `filter` is among this entry's.
    pub fn has_all(&self, filter: &[u32]) -> bool {
        filter.iter().all(|f| self.hashes().any(|h| h == *f))
    }
}

impl Window {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends an entry (at most 255 hashes are kept).
    pub fn push(&mut self, at_ms: i64, hashes: &[u32]) {
        let kept = hashes.len().min(usize::from(u8::MAX));
        self.bytes.reserve(HEAD_BYTES + 4 * kept);
        self.bytes.extend_from_slice(&at_ms.to_le_bytes());
        self.bytes.push(kept as u8);
        for hash in &hashes[..kept] {
            self.bytes.extend_from_slice(&hash.to_le_bytes());
        }
        self.len += 1;
    }

    /// Entries, oldest first.
    pub fn entries(&self) -> Entries<'_> {
        Entries { rest: &self.bytes }
    }

    /// Drops the oldest entries until at most `max` remain, and every entry older than
    /// `oldest_kept_ms`.
    pub fn trim(&mut self, max: usize, oldest_kept_ms: i64) {
        let excess = self.len.saturating_sub(max);
        let mut dropped = 0;
        let mut cut = 0;
        for entry in self.entries() {
            if dropped >= excess && entry.at_ms >= oldest_kept_ms {
                break;
            }
            dropped += 1;
            cut += HEAD_BYTES + entry.hashes.len();
        }
        if dropped > 0 {
            self.bytes.drain(..cut);
            self.len -= dropped;
        }
    }

    /// Entries at or after `since_ms` that carry every hash of `filter`.
    pub fn count(&self, since_ms: i64, filter: &[u32]) -> i64 {
        self.entries()
            .filter(|e| e.at_ms >= since_ms && e.has_all(filter))
            .count() as i64
    }

    /// A window read back from its packed bytes; `None` if they are truncated.
    fn unpack(bytes: Vec<u8>) -> Option<Window> {
        let mut len = 0;
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let count = usize::from(*rest.get(8)?);
            rest = rest.get(HEAD_BYTES + 4 * count..)?;
            len += 1;
        }
        Some(Window { bytes, len })
    }
}

/// The entries of a window, oldest first.
pub struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        let (at, tail) = self.rest.split_first_chunk::<8>()?;
        let (count, tail) = tail.split_first()?;
        let (hashes, tail) = tail.split_at_checked(4 * usize::from(*count))?;
        self.rest = tail;
        Some(Entry {
            at_ms: i64::from_le_bytes(*at),
            hashes,
        })
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&STANDARD_NO_PAD.encode(&self.bytes))
        } else {
            serializer.serialize_bytes(&self.bytes)
        }
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Window, D::Error> {
        let bytes = if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            STANDARD_NO_PAD
                .decode(text.as_bytes())
                .map_err(D::Error::custom)?
        } else {
            deserializer.deserialize_bytes(PackedBytes)?
        };
        Window::unpack(bytes).ok_or_else(|| D::Error::custom("window truncated"))
    }
}

/// A window's packed bytes in a binary format.
struct PackedBytes;

impl Visitor<'_> for PackedBytes {
    type Value = Vec<u8>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a window's packed bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
        Ok(bytes.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_entries_packed_and_trims_the_oldest() {
        let mut window = Window::default();
        window.push(10, &[1, 2]);
        window.push(20, &[]);
        window.push(30, &[2]);
        assert_eq!(window.len(), 3);
        assert_eq!(window.count(0, &[2]), 2);
        assert_eq!(window.count(15, &[]), 2);
        assert_eq!(window.count(0, &[1, 2]), 1);
        window.trim(2, 0);
        assert_eq!(
            window.entries().map(|e| e.at_ms).collect::<Vec<_>>(),
            [20, 30]
        );
        window.trim(10, 25);
        assert_eq!(window.len(), 1);
        assert_eq!(
            window
                .entries()
                .next()
                .unwrap()
                .hashes()
                .collect::<Vec<_>>(),
            [2]
        );
    }

    #[test]
    fn survives_its_stored_form_and_refuses_a_truncated_one() {
        let mut window = Window::default();
        window.push(-5, &[7, 8, 9]);
        window.push(i64::MAX, &[]);
        let json = serde_json::to_string(&window).unwrap();
        assert_eq!(serde_json::from_str::<Window>(&json).unwrap(), window);
        let mut bytes = window.bytes.clone();
        bytes.pop();
        let truncated = format!("\"{}\"", STANDARD_NO_PAD.encode(bytes));
        assert!(serde_json::from_str::<Window>(&truncated).is_err());
    }
}
