//! Bounds sign-in attempts per user name (`login_attempts_per_minute`), so passwords cannot be
//! guessed at the speed of the network. Per instance, in a bounded LRU map.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

/// User names tracked at once; the least recently tried are forgotten first.
const TRACKED_USERNAMES: usize = 10_000;
const WINDOW_MS: i64 = 60_000;

pub struct LoginThrottle {
    per_minute: u32,
    /// User name → (window start ms, attempts in it).
    attempts: Mutex<LruCache<String, (i64, u32)>>,
}

impl LoginThrottle {
    pub fn new(per_minute: u32) -> Self {
        LoginThrottle {
            per_minute,
            attempts: Mutex::new(LruCache::new(
                NonZeroUsize::new(TRACKED_USERNAMES).expect("non-zero"),
            )),
        }
    }

    /// Counts an attempt for `username` at `now_ms`; false once the minute's budget is spent.
    pub fn allow(&self, username: &str, now_ms: i64) -> bool {
        let Ok(mut attempts) = self.attempts.lock() else {
            return false;
        };
        let entry = attempts.get_or_insert_mut(username.to_owned(), || (now_ms, 0));
        if now_ms - entry.0 >= WINDOW_MS {
            *entry = (now_ms, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_n_attempts_per_minute() {
        let throttle = LoginThrottle::new(3);
        assert!((0..3).all(|i| throttle.allow("ada", i)));
        assert!(!throttle.allow("ada", 10));
        assert!(throttle.allow("bob", 10), "other users are not affected");
        assert!(throttle.allow("ada", 60_001), "a new minute, a new budget");
    }
}
