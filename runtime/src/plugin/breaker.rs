//! Quarantine for a plugin version that keeps breaking its limits. After
//! `plugin_quarantine_after` calls in a row ended by a limit (deadline, memory, stack, fuel,
//! output), the version's calls fail at once, without running, for `plugin_quarantine_ms`: a
//! plugin that loops until its deadline on every event then costs its partition one quick
//! failure per event instead of its whole deadline. When the cool-down is over, calls run again;
//! the first clean one closes the breaker, one more limit opens it for another cool-down.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A monotonic clock in milliseconds, shared by every breaker of the process.
fn monotonic_ms() -> i64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as i64
}

/// What a call's outcome did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// The version is quarantined from now on, for this long.
    Opened(Duration),
    /// A clean call after a quarantine: calls run normally again.
    Closed,
}

#[derive(Default)]
pub struct Breaker {
    /// Calls in a row that ended by a limit.
    consecutive: AtomicU32,
    /// Monotonic ms until which calls are refused (0: never opened).
    open_until_ms: AtomicI64,
}

impl Breaker {
    /// `Err(left)`: quarantined for `left` more.
    pub fn admit(&self) -> Result<(), Duration> {
        let left = self.open_until_ms.load(Ordering::Acquire) - monotonic_ms();
        if left > 0 {
            Err(Duration::from_millis(left as u64))
        } else {
            Ok(())
        }
    }

    /// Counts a call that ran: `hit_limit` when a limit ended it.
    pub fn record(&self, hit_limit: bool, after: u32, cooldown: Duration) -> Change {
        if !hit_limit {
            let was = self.consecutive.swap(0, Ordering::AcqRel);
            return if was >= after.max(1) {
                Change::Closed
            } else {
                Change::None
            };
        }
        let consecutive = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        if after == 0 || consecutive < after {
            return Change::None;
        }
        let until = monotonic_ms() + cooldown.as_millis() as i64;
        self.open_until_ms.store(until, Ordering::Release);
        Change::Opened(cooldown)
    }

    /// Limit-ended calls in a row so far.
    pub fn consecutive(&self) -> u32 {
        self.consecutive.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_limits_in_a_row_and_closes_on_a_clean_call() {
        let breaker = Breaker::default();
        let cooldown = Duration::from_millis(30);
        assert_eq!(breaker.record(true, 3, cooldown), Change::None);
        assert_eq!(
            breaker.record(false, 3, cooldown),
            Change::None,
            "not in a row"
        );
        assert_eq!(breaker.record(true, 3, cooldown), Change::None);
        assert_eq!(breaker.record(true, 3, cooldown), Change::None);
        assert_eq!(breaker.record(true, 3, cooldown), Change::Opened(cooldown));
        assert!(breaker.admit().is_err());
        std::thread::sleep(cooldown + Duration::from_millis(5));
        assert!(breaker.admit().is_ok(), "half-open after the cool-down");
        assert_eq!(breaker.record(true, 3, cooldown), Change::Opened(cooldown));
        std::thread::sleep(cooldown + Duration::from_millis(5));
        assert_eq!(breaker.record(false, 3, cooldown), Change::Closed);
        assert!(breaker.admit().is_ok());
    }

    #[test]
    fn zero_turns_quarantine_off() {
        let breaker = Breaker::default();
        for _ in 0..10 {
            assert_eq!(
                breaker.record(true, 0, Duration::from_secs(1)),
                Change::None
            );
        }
        assert!(breaker.admit().is_ok());
    }
}
