//! Records read from NATS (an endpoint, a template) that serve deliveries for a while before
//! they are read again: a change reaches deliveries within that time, and a busy target costs
//! one read per period instead of one per delivery. Expired records go at the next insert, so
//! the map holds at most the records read within one period.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Fresh<T> {
    period: Duration,
    entries: Mutex<HashMap<String, (Arc<T>, Instant)>>,
}

impl<T> Fresh<T> {
    pub fn new(period: Duration) -> Fresh<T> {
        Fresh {
            period,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<T>, Instant)>> {
        // A panic elsewhere while holding the lock leaves nothing half-written here.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record read under `key` within the period, if any.
    pub fn get(&self, key: &str) -> Option<Arc<T>> {
        self.entries()
            .get(key)
            .filter(|(_, read)| read.elapsed() < self.period)
            .map(|(record, _)| record.clone())
    }

    /// Keeps `record`, just read, under `key`.
    pub fn insert(&self, key: &str, record: T) -> Arc<T> {
        let record = Arc::new(record);
        let mut entries = self.entries();
        entries.retain(|_, (_, read)| read.elapsed() < self.period);
        entries.insert(key.to_owned(), (record.clone(), Instant::now()));
        record
    }

    pub fn forget(&self, key: &str) {
        self.entries().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_serves_for_its_period_then_is_read_again() {
        let fresh = Fresh::new(Duration::from_millis(30));
        assert!(fresh.get("crm").is_none());
        fresh.insert("crm", 1);
        assert_eq!(fresh.get("crm").as_deref(), Some(&1));
        fresh.forget("crm");
        assert!(fresh.get("crm").is_none());
        fresh.insert("crm", 2);
        std::thread::sleep(Duration::from_millis(40));
        assert!(fresh.get("crm").is_none(), "expired");
        fresh.insert("erp", 3);
        assert_eq!(
            fresh.entries().len(),
            1,
            "the expired record went at the insert"
        );
    }
}
