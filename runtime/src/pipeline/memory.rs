//! The profiles of one owned partition, held in memory between checkpoints: loaded from KV the
//! first time an event needs one, changed in place by decisions, marked dirty, written once per
//! checkpoint, and evicted (least recently used, clean ones only) past `partition_max_profiles`.

use lru::LruCache;
use nudge_rules::ProfileState;

/// Growth of a profile's stored form one ordinary event can cause at most (a window entry with
/// its field hashes, a counter, a last-seen time, a cap counter, a remembered event), used to
/// tell when a state might be near `profile_max_bytes` without serializing it per event.
pub const EVENT_GROWTH_BOUND_BYTES: usize = 1_024;

/// One profile in memory.
pub struct Held {
    pub state: ProfileState,
    /// Changed since the last checkpoint.
    pub dirty: bool,
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
                dirty: false,
                size_bound_bytes: stored_bytes,
            },
        );
    }

    /// Profiles changed since the last checkpoint.
    pub fn dirty(&self) -> impl Iterator<Item = (&String, &Held)> {
        self.entries.iter().filter(|(_, held)| held.dirty)
    }

    pub fn dirty_count(&self) -> usize {
        self.entries.iter().filter(|(_, held)| held.dirty).count()
    }

    /// After a checkpoint wrote them: clean, with their stored sizes.
    pub fn written(&mut self, sizes: &[(String, usize)]) {
        for (id, bytes) in sizes {
            if let Some(held) = self.entries.peek_mut(id) {
                held.dirty = false;
                held.size_bound_bytes = *bytes;
            }
        }
    }

    /// Drops least recently used clean profiles until at most `partition_max_profiles` remain
    /// (dirty ones wait for the next checkpoint).
    pub fn evict(&mut self) -> usize {
        let mut evicted = 0;
        let mut kept_dirty = Vec::new();
        while self.entries.len() + kept_dirty.len() > self.max_profiles {
            let Some((id, held)) = self.entries.pop_lru() else {
                break;
            };
            if held.dirty {
                kept_dirty.push((id, held));
            } else {
                evicted += 1;
            }
        }
        for (id, held) in kept_dirty {
            self.entries.put(id, held);
        }
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_clean_profiles_only() {
        let mut memory = ProfileMemory::new(2);
        for id in ["a", "b", "c"] {
            memory.insert(id.into(), ProfileState::new(id, 0), 10);
        }
        memory.get_mut("a").unwrap().dirty = true;
        assert_eq!(memory.evict(), 1);
        assert!(memory.contains("a"), "dirty profiles stay");
        assert!(
            !memory.contains("b"),
            "the least recently used clean one goes"
        );
        assert_eq!(memory.dirty_count(), 1);
        memory.written(&[("a".into(), 20)]);
        assert_eq!(memory.dirty_count(), 0);
    }
}
