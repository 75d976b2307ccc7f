//! Waiting for what a test expects to happen, with a bound, instead of sleeping a guess.

use std::time::{Duration, Instant};

/// How long [`until`] waits for what a test expects to happen.
pub const WAIT: Duration = Duration::from_secs(20);

/// Polls `check` every 50 ms until it answers something, for at most [`WAIT`].
pub async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(started.elapsed() < WAIT, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
