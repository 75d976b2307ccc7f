//! A circuit breaker per endpoint (the Envoy / resilience4j shape): closed while the endpoint
//! answers; open after `failures_to_open` failures in a row, when deliveries to it wait instead
//! of piling up; after `cool_down_ms` half-open, letting one probe through; closed again when the
//! probe succeeds, open for another cool-down when it fails. Pure: the caller passes the time.

/// The breaker's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerLimits {
    pub failures_to_open: u32,
    pub cool_down_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures_in_a_row: u32,
    },
    Open {
        until_ms: i64,
    },
    /// One probe is out; everything else waits for its answer.
    HalfOpen,
}

/// What the breaker lets a delivery do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Send it.
    Send,
    /// Send it as the probe of a half-open breaker.
    Probe,
    /// Do not send; try again at `retry_at_ms`.
    Wait { retry_at_ms: i64 },
}

#[derive(Debug, Clone)]
pub struct Breaker {
    limits: BreakerLimits,
    state: State,
}

impl Breaker {
    pub fn new(limits: BreakerLimits) -> Breaker {
        assert!(
            limits.failures_to_open >= 1,
            "a breaker opens after one failure at the least"
        );
        Breaker {
            limits,
            state: State::Closed {
                failures_in_a_row: 0,
            },
        }
    }

    /// `closed`, `open` or `half_open`, for metrics and the UI.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen => "half_open",
        }
    }

    /// Whether a delivery may go out at `now_ms`.
    pub fn permit(&mut self, now_ms: i64) -> Permit {
        match self.state {
            State::Closed { .. } => Permit::Send,
            State::Open { until_ms } if now_ms < until_ms => Permit::Wait {
                retry_at_ms: until_ms,
            },
            State::Open { .. } => {
                self.state = State::HalfOpen;
                Permit::Probe
            }
            // The probe's answer decides; until then the rest waits a cool-down at most.
            State::HalfOpen => Permit::Wait {
                retry_at_ms: now_ms.saturating_add(self.cool_down_ms()),
            },
        }
    }

    /// Records how a permitted delivery went: `failed` is an answer worth retrying (timeout,
    /// connection error, 408, 429, 5xx) — a refusal means the endpoint is up.
    pub fn record(&mut self, failed: bool, now_ms: i64) {
        self.state = match (self.state, failed) {
            (_, false) => State::Closed {
                failures_in_a_row: 0,
            },
            (State::Closed { failures_in_a_row }, true)
                if failures_in_a_row + 1 < self.limits.failures_to_open =>
            {
                State::Closed {
                    failures_in_a_row: failures_in_a_row + 1,
                }
            }
            // The threshold reached, a failed probe, or a late answer while open.
            (_, true) => State::Open {
                until_ms: now_ms.saturating_add(self.cool_down_ms()),
            },
        };
    }

    /// A permitted delivery did not go out after all (NATS failed before it could): a probe's
    /// turn passes to the next delivery; a closed breaker counts nothing.
    pub fn abandon(&mut self, now_ms: i64) {
        if self.state == State::HalfOpen {
            self.state = State::Open { until_ms: now_ms };
        }
    }

    fn cool_down_ms(&self) -> i64 {
        i64::try_from(self.limits.cool_down_ms).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BreakerLimits = BreakerLimits {
        failures_to_open: 3,
        cool_down_ms: 1_000,
    };

    #[test]
    fn opens_after_failures_in_a_row_probes_after_the_cool_down_and_closes_on_success() {
        let mut breaker = Breaker::new(LIMITS);
        for _ in 0..2 {
            assert_eq!(breaker.permit(0), Permit::Send);
            breaker.record(true, 0);
        }
        breaker.record(false, 0);
        assert_eq!(breaker.state_name(), "closed", "a success resets the count");
        for _ in 0..3 {
            breaker.record(true, 10);
        }
        assert_eq!(breaker.state_name(), "open");
        assert_eq!(breaker.permit(500), Permit::Wait { retry_at_ms: 1_010 });
        assert_eq!(breaker.permit(1_010), Permit::Probe);
        assert_eq!(breaker.state_name(), "half_open");
        assert_eq!(
            breaker.permit(1_011),
            Permit::Wait { retry_at_ms: 2_011 },
            "one probe at a time"
        );
        breaker.record(false, 1_050);
        assert_eq!(breaker.state_name(), "closed");
        assert_eq!(breaker.permit(1_051), Permit::Send);
    }

    #[test]
    fn a_failed_probe_opens_it_for_another_cool_down() {
        let mut breaker = Breaker::new(BreakerLimits {
            failures_to_open: 1,
            cool_down_ms: 1_000,
        });
        breaker.record(true, 0);
        assert_eq!(breaker.permit(1_000), Permit::Probe);
        breaker.abandon(1_100);
        assert_eq!(
            breaker.permit(1_100),
            Permit::Probe,
            "the probe's turn passes on"
        );
        breaker.record(true, 1_200);
        assert_eq!(breaker.state_name(), "open");
        assert_eq!(breaker.permit(2_199), Permit::Wait { retry_at_ms: 2_200 });
        assert_eq!(breaker.permit(2_200), Permit::Probe);
    }
}
