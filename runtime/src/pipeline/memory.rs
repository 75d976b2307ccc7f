//! The profiles of one owned partition, held in memory between checkpoints: loaded from KV the
//! first time an event needs one, changed in place by decisions, written once per checkpoint
//! (the partition knows which changed), and evicted, least recently used first, past
//! `partition_max_profiles` — never one with changes no checkpoint has written yet.

use lru::LruCache;
use nudge_rules::ProfileState;

/// Growth of a profile's stored form one ordinary event can cause at most (a window entry with
/// its field hashes, a counter, a last-seen time, a cap counter, a remembered event), used to
/// tell when a state might be near `profile_max_bytes` without serializing it per event.
pub const EVENT_GROWTH_BOUND_BYTES: usize = 1_024;

/// One profile in memory.
pub struct Held {
    pub state: ProfileState,
    /// Its stored size at the last serialization, plus what events since could have added.
    pub size_bound_bytes: usize,
}

pub struct ProfileMemory {
    entries: LruCache<String, Held>,
    max_profiles: usize,
}

impl ProfileMemory {
    pub fn new(max_profiles: usize) -> ProfileMemory {
        ProfileMemory {
            entries: LruCache::unbounded(),
            max_profiles: max_profiles.max(1),
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.entries.contains(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Held> {
        self.entries.get_mut(id)
    }

    /// Adds a profile loaded from KV (`stored_bytes` long) or new.
    pub fn insert(&mut self, id: String, state: ProfileState, stored_bytes: usize) {
        self.entries.put(
            id,
            Held {
                state,
                size_bound_bytes: stored_bytes,
            },
        );
    }

    /// A profile without touching its place in the eviction order.
    pub fn peek(&self, id: &str) -> Option<&Held> {
        self.entries.peek(id)
    }

    /// After a checkpoint wrote them: their stored sizes.
    pub fn written(&mut self, sizes: &[(String, usize)]) {
        for (id, bytes) in sizes {
            if let Some(held) = self.entries.peek_mut(id) {
                held.size_bound_bytes = *bytes;
            }
        }
    }

    /// After a checkpoint stored their traces: where each profile's newest now are.
    pub fn traced(&mut self, newest: &[(String, u64)]) {
        for (id, seq) in newest {
            if let Some(held) = self.entries.peek_mut(id) {
                held.state.trace_seq = *seq;
            }
        }
    }

    /// Drops least recently used profiles until at most `partition_max_profiles` remain, never
    /// one that is `changed` (not written since it changed). Right after a checkpoint landed.
    pub fn evict(&mut self, changed: impl Fn(&str) -> bool) -> usize {
        let excess = self.entries.len().saturating_sub(self.max_profiles);
        if excess == 0 {
            return 0;
        }
        let victims: Vec<String> = self
            .entries
            .iter()
            .rev()
            .filter(|(id, _)| !changed(id))
            .take(excess)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &victims {
            self.entries.pop(id);
        }
        victims.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut memory = ProfileMemory::new(2);
        for id in ["a", "b", "c"] {
            memory.insert(id.into(), ProfileState::new(id, 0), 10);
        }
        memory.get_mut("a").unwrap().size_bound_bytes = 11;
        assert_eq!(memory.evict(|id| id == "b"), 1);
        assert!(memory.contains("a"), "used lately");
        assert!(memory.contains("b"), "changed and not written: kept");
        assert!(
            !memory.contains("c"),
            "the least recently used of the rest goes"
        );
        memory.written(&[("a".into(), 20)]);
        assert_eq!(memory.peek("a").unwrap().size_bound_bytes, 20);
    }
}
