//! A partition's share of the rule results, counted exactly once. The outcomes a decision
//! brings (exposures, conversions) wait with their profile until a checkpoint writes that
//! profile; they then go into the same atomic batch as the profile, as the new cumulative record
//! of the partition's counts for each rule they touch. A profile's state and the counts of what
//! it decided are stored together or not at all, so a new owner replaying from the committed
//! position neither misses an outcome (its profile was not written: it is decided again) nor
//! counts one twice (its profile was written: the replay skips it).

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use nudge_rules::experiment::Outcome;
use nudge_rules::experiment::results::{Results, ResultsLimits};

use crate::profiles::{self, ATOMIC_BATCH_MESSAGES};
use crate::results;

/// Outcomes decided for one profile since it was last written, with when.
pub type Pending = Vec<(i64, Outcome)>;

/// One atomic batch of a checkpoint: profiles, then the records their outcomes change.
#[derive(Default)]
pub struct Chunk {
    /// `(KV key, value)`, ready to write.
    pub writes: Vec<(String, Bytes)>,
    /// The profiles in it (ids) and the outcomes going in with them.
    pub pending: Vec<(String, Pending)>,
    /// The records as this chunk stores them, per rule.
    pub records: Vec<(String, Results)>,
}

pub struct PartitionResults {
    partition: u32,
    limits: ResultsLimits,
    /// The largest record that may be stored (`profile_max_bytes`).
    max_record_bytes: usize,
    /// What KV holds for this partition, per rule.
    stored: HashMap<String, Results>,
    pending: HashMap<String, Pending>,
}

impl PartitionResults {
    pub fn new(
        partition: u32,
        limits: ResultsLimits,
        max_record_bytes: usize,
        stored: HashMap<String, Results>,
    ) -> Self {
        PartitionResults {
            partition,
            limits,
            max_record_bytes,
            stored,
            pending: HashMap::new(),
        }
    }

    /// Takes the records the partition's former owner stored.
    pub fn restore(&mut self, stored: HashMap<String, Results>) {
        self.stored = stored;
    }

    /// Keeps `outcomes` of a decision about `profile` at `at_ms` until the profile is written.
    pub fn add(&mut self, profile: &str, at_ms: i64, outcomes: Vec<Outcome>) {
        if outcomes.is_empty() {
            return;
        }
        let pending = match self.pending.get_mut(profile) {
            Some(pending) => pending,
            None => self.pending.entry(profile.to_owned()).or_default(),
        };
        pending.extend(outcomes.into_iter().map(|o| (at_ms, o)));
    }

    /// Splits a checkpoint's encoded profiles into atomic batches, each ending with the records
    /// its profiles' outcomes change (cumulative: what was stored, plus every chunk before and
    /// this one).
    pub fn chunks(&mut self, profiles: Vec<(String, Bytes)>, now_ms: i64) -> Vec<Chunk> {
        let mut running: HashMap<String, Results> = HashMap::new();
        let mut chunks = Vec::new();
        let mut chunk = Chunk::default();
        let mut rules: BTreeSet<String> = BTreeSet::new();
        for (id, bytes) in profiles {
            let pending = self.pending.remove(&id).unwrap_or_default();
            let new_rules: BTreeSet<&str> = pending
                .iter()
                .map(|(_, o)| o.rule_version().0)
                .filter(|rule| !rules.contains(*rule))
                .collect();
            if chunk.writes.len() + 1 + rules.len() + new_rules.len() > ATOMIC_BATCH_MESSAGES {
                chunks.push(self.finish(chunk, &mut rules, &running, now_ms));
                chunk = Chunk::default();
            }
            for (at_ms, outcome) in &pending {
                let rule = outcome.rule_version().0;
                rules.insert(rule.to_owned());
                let record = match running.get_mut(rule) {
                    Some(record) => record,
                    None => {
                        let stored = self.stored.get(rule).cloned().unwrap_or_default();
                        running.entry(rule.to_owned()).or_insert(stored)
                    }
                };
                record.record(std::slice::from_ref(outcome), *at_ms);
            }
            chunk.writes.push((profiles::key(&id), bytes));
            chunk.pending.push((id, pending));
        }
        if !chunk.writes.is_empty() {
            chunks.push(self.finish(chunk, &mut rules, &running, now_ms));
        }
        chunks
    }

    /// Appends the records of `rules` to `chunk`.
    fn finish(
        &self,
        mut chunk: Chunk,
        rules: &mut BTreeSet<String>,
        running: &HashMap<String, Results>,
        now_ms: i64,
    ) -> Chunk {
        for rule in std::mem::take(rules) {
            let Some(record) = running.get(&rule) else {
                continue;
            };
            let mut record = record.clone();
            match self.bounded(&rule, &mut record, now_ms) {
                Ok(bytes) => {
                    chunk
                        .writes
                        .push((results::record_key(self.partition, &rule), bytes));
                    chunk.records.push((rule, record));
                }
                // Not written, the stored record stays as it was: this chunk's counts for the
                // rule are lost, and said so.
                Err(error) => tracing::error!(
                    partition = self.partition,
                    rule,
                    %error,
                    "a rule's results record cannot be encoded; this checkpoint's counts for it are lost"
                ),
            }
        }
        chunk
    }

    /// The record trimmed to its bounds and encoded; past `profile_max_bytes` its oldest days
    /// go first (counted and logged), so a record can always be stored.
    fn bounded(
        &self,
        rule: &str,
        record: &mut Results,
        now_ms: i64,
    ) -> Result<Bytes, rmp_serde::encode::Error> {
        let mut limits = self.limits;
        loop {
            record.trim(limits, now_ms);
            let bytes = results::encode(record)?;
            if bytes.len() <= self.max_record_bytes || limits.retention_days <= 1 {
                return Ok(Bytes::from(bytes));
            }
            limits.retention_days /= 2;
            metrics::counter!(crate::telemetry::RESULTS_TRIMMED).increment(1);
            tracing::warn!(
                partition = self.partition,
                rule,
                bytes = bytes.len(),
                retention_days = limits.retention_days,
                "a rule's results outgrow profile_max_bytes; its oldest days are dropped"
            );
        }
    }

    /// After a checkpoint stored `chunks`: the records are what KV holds now.
    pub fn stored(&mut self, chunks: Vec<Chunk>) {
        for chunk in chunks {
            self.stored.extend(chunk.records);
        }
    }

    /// After a checkpoint stored none of `chunks`: their outcomes wait again, before any that
    /// came since.
    pub fn not_stored(&mut self, chunks: Vec<Chunk>) {
        for (id, mut earlier) in chunks.into_iter().flat_map(|c| c.pending) {
            if let Some(later) = self.pending.remove(&id) {
                earlier.extend(later);
            }
            if !earlier.is_empty() {
                self.pending.insert(id, earlier);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_rules::experiment::Arm;

    fn exposed(rule: &str) -> Outcome {
        Outcome::Exposed {
            rule: rule.into(),
            version: 1,
            arm: Arm::Treatment,
            actions: 1,
            first: true,
        }
    }

    fn limits() -> ResultsLimits {
        ResultsLimits {
            retention_days: 90,
            max_versions: 20,
        }
    }

    fn profiles(n: usize) -> Vec<(String, Bytes)> {
        (0..n)
            .map(|i| (format!("u{i}"), Bytes::from_static(b"state")))
            .collect()
    }

    fn treated(record: &Results, rule: &str) -> u64 {
        record.rules[rule][&1].total.treatment.profiles
    }

    #[test]
    fn records_are_cumulative_per_chunk_and_chunks_stay_within_a_batch() {
        let mut results = PartitionResults::new(3, limits(), 1 << 20, HashMap::new());
        for i in 0..1_500 {
            results.add(&format!("u{i}"), 0, vec![exposed("cart")]);
        }
        results.add("u0", 0, vec![exposed("welcome")]);
        let chunks = results.chunks(profiles(1_500), 0);
        assert_eq!(chunks.len(), 2);
        assert!(
            chunks
                .iter()
                .all(|c| c.writes.len() <= ATOMIC_BATCH_MESSAGES)
        );
        let last_key = |c: &Chunk| c.writes.last().unwrap().0.clone();
        assert_eq!(last_key(&chunks[0]), "results.3.welcome");
        assert_eq!(last_key(&chunks[1]), "results.3.cart");
        let first_cart = &chunks[0]
            .records
            .iter()
            .find(|(r, _)| r == "cart")
            .unwrap()
            .1;
        let second_cart = &chunks[1].records[0].1;
        let in_first = (chunks[0].writes.len() - 2) as u64;
        assert_eq!(treated(first_cart, "cart"), in_first);
        assert_eq!(treated(second_cart, "cart"), 1_500);
        // Stored, they are where the next checkpoint counts on from.
        results.stored(chunks);
        results.add("u7", 0, vec![exposed("cart")]);
        let next = results.chunks(profiles(8), 0);
        assert_eq!(treated(&next[0].records[0].1, "cart"), 1_501);
    }

    #[test]
    fn a_chunk_not_stored_gives_its_outcomes_back_first() {
        let mut results = PartitionResults::new(0, limits(), 1 << 20, HashMap::new());
        results.add("u0", 1, vec![exposed("cart")]);
        let chunks = results.chunks(profiles(1), 5);
        results.add("u0", 2, vec![exposed("welcome")]);
        results.not_stored(chunks);
        let again = results.chunks(profiles(1), 5);
        let rules: Vec<&str> = again[0].records.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(rules, ["cart", "welcome"]);
        assert_eq!(again[0].pending[0].1[0].0, 1, "the earlier outcome first");
    }

    #[test]
    fn a_record_too_large_loses_its_oldest_days_not_the_batch() {
        let mut results = PartitionResults::new(0, limits(), 600, HashMap::new());
        for day in 0..60 {
            results.add("u0", day * 86_400_000, vec![exposed("cart")]);
        }
        let chunks = results.chunks(profiles(1), 59 * 86_400_000);
        let (key, bytes) = chunks[0].writes.last().unwrap();
        assert_eq!(key, "results.0.cart");
        assert!(bytes.len() <= 600, "{}", bytes.len());
        assert_eq!(treated(&chunks[0].records[0].1, "cart"), 60, "totals kept");
    }
}
