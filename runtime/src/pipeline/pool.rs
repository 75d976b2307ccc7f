//! The decision threads: where rules and plugins run, off the async workers that serve HTTP,
//! ingest and NATS. A rule or plugin that burns its whole deadline holds one of these threads,
//! never the event loop; `decision_threads` bounds how many run at once.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

pub struct Pool {
    jobs: mpsc::Sender<Job>,
}

/// The job's thread died (a bug: decisions catch their own failures).
#[derive(Debug, thiserror::Error)]
#[error("a decision thread failed while running this batch")]
pub struct JobLost;

impl Pool {
    /// Starts `threads` decision threads (at least one); they end when the pool is dropped.
    pub fn new(threads: usize) -> Pool {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("nudge-decide-{n}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let queue = queue.lock().unwrap_or_else(|e| e.into_inner());
                            queue.recv()
                        };
                        let Ok(job) = job else { return };
                        // A panicking job loses its answer (the caller sees `JobLost`), not
                        // the thread.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "could not start a decision thread");
            }
        }
        Pool { jobs }
    }

    /// Runs `work` on a decision thread and answers its result.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobLost> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(work());
        });
        self.jobs.send(job).map_err(|_| JobLost)?;
        answered.await.map_err(|_| JobLost)
    }
}

/// `decision_threads` = 0: one per core, keeping one core for the event loop on bigger machines.
pub fn default_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    if cores > 2 { cores - 1 } else { cores }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_a_panicking_one() {
        let pool = Pool::new(1);
        assert_eq!(pool.run(|| 2 + 2).await.unwrap(), 4);
        assert!(pool.run(|| panic!("bug")).await.is_err());
        assert_eq!(pool.run(|| "still here").await.unwrap(), "still here");
    }
}
