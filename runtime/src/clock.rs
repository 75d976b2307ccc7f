//! Where "now" comes from. The live service reads the system clock; backtests run the core's
//! simulation on event time instead. Everything that needs the time takes a [`Clock`], so no
//! decision reads the system clock behind the caller's back.

use std::sync::Arc;

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }
}

impl SystemClock {
    /// Wall-clock milliseconds `later` from now.
    pub fn now_ms_plus(&self, later: std::time::Duration) -> i64 {
        self.now_ms()
            .saturating_add(i64::try_from(later.as_millis()).unwrap_or(i64::MAX))
    }
}

pub type SharedClock = Arc<dyn Clock>;

pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}
