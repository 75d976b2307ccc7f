//! When to try a delivery again: exponential back-off from `base_ms`, capped at `max_ms`, with
//! "equal jitter" (half the delay fixed, half random) so that the retries of many deliveries
//! that failed together spread out instead of arriving together; an endpoint's `Retry-After`
//! replaces the computed delay (capped the same way, so no endpoint can hold a delivery
//! forever). After `max_attempts` attempts there is none: the delivery is dead-lettered.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    pub max_attempts: u32,
    pub base_ms: u64,
    pub max_ms: u64,
}

impl RetrySchedule {
    /// The wait before the next attempt, after `attempts_made` attempts the last of which failed
    /// in a way worth retrying; `None`: that was the last. `jitter` in `[0, 1)` comes from the
    /// caller's random source (so this stays pure); `retry_after` is what the endpoint asked for.
    pub fn next_delay(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        let cap = Duration::from_millis(self.max_ms);
        if let Some(asked) = retry_after {
            return Some(asked.min(cap));
        }
        let doublings = attempts_made.saturating_sub(1).min(63);
        let full_ms = self
            .base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_ms);
        let half_ms = full_ms / 2;
        let random_ms = (half_ms as f64 * jitter.clamp(0.0, 1.0)) as u64;
        Some(Duration::from_millis(full_ms - half_ms + random_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SCHEDULE: RetrySchedule = RetrySchedule {
        max_attempts: 5,
        base_ms: 1_000,
        max_ms: 60_000,
    };

    #[test]
    fn doubles_up_to_the_cap_and_stops_after_the_last_attempt() {
        let without_jitter: Vec<_> = (1..=5)
            .map(|made| SCHEDULE.next_delay(made, None, 0.0))
            .collect();
        assert_eq!(
            without_jitter,
            [
                Some(Duration::from_millis(500)),
                Some(Duration::from_millis(1_000)),
                Some(Duration::from_millis(2_000)),
                Some(Duration::from_millis(4_000)),
                None
            ]
        );
        let long = RetrySchedule {
            max_attempts: 100,
            ..SCHEDULE
        };
        assert_eq!(
            long.next_delay(90, None, 0.999_999),
            Some(Duration::from_millis(59_999)),
            "capped"
        );
    }

    #[test]
    fn retry_after_replaces_the_back_off_within_the_cap() {
        assert_eq!(
            SCHEDULE.next_delay(1, Some(Duration::from_secs(30)), 0.5),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            SCHEDULE.next_delay(1, Some(Duration::from_secs(3_600)), 0.5),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            SCHEDULE.next_delay(5, Some(Duration::from_secs(1)), 0.5),
            None,
            "not past the last attempt"
        );
    }

    proptest! {
        #[test]
        fn a_delay_is_between_half_and_all_of_its_step_and_never_past_the_cap(
            made in 1u32..5, jitter in 0.0f64..1.0, base_ms in 1u64..100_000, max_ms in 1u64..10_000_000
        ) {
            let schedule = RetrySchedule { max_attempts: 5, base_ms, max_ms };
            let step_ms = base_ms.saturating_mul(1 << (made - 1)).min(max_ms);
            let delay_ms = schedule.next_delay(made, None, jitter).unwrap().as_millis() as u64;
            prop_assert!(delay_ms >= step_ms - step_ms / 2);
            prop_assert!(delay_ms <= step_ms);
        }
    }
}
