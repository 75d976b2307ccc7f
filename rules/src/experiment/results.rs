//! Per rule version and per day, what experimenting rules did and what it brought: the counts a
//! rule's Results tab shows. Pure and additive: the pipeline keeps one [`Results`] per partition
//! (checkpointed with the partition's profiles, so each outcome counts once) and the API sums
//! them; a backtest keeps one for its whole run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Arm;
use super::touch::Outcome;
use super::uplift::Group;
use crate::state::DAY_MS;

/// One arm's counts (treatment or control).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArmCounts {
    /// Decisions to act (treatment: sent or held for quiet hours; control: held out).
    pub exposures: u64,
    /// Actions of those decisions.
    pub actions: u64,
    /// Profiles exposed to the version for the first time.
    pub profiles: u64,
    /// Conversions credited (one per exposure at most).
    pub conversions: u64,
    /// Profiles converting for the version for the first time.
    pub profiles_converted: u64,
    /// Sum of the conversions' values (`goal.value`).
    pub value: f64,
}

impl ArmCounts {
    fn add(&mut self, other: &ArmCounts) {
        self.exposures += other.exposures;
        self.actions += other.actions;
        self.profiles += other.profiles;
        self.conversions += other.conversions;
        self.profiles_converted += other.profiles_converted;
        self.value += other.value;
    }

    /// The profiles and converted profiles, for the uplift.
    pub fn group(&self) -> Group {
        Group {
            profiles: self.profiles,
            converted: self.profiles_converted,
        }
    }
}

/// One day (UTC) or a whole version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Events that ran the rule.
    pub triggered: u64,
    pub treatment: ArmCounts,
    pub control: ArmCounts,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.triggered += other.triggered;
        self.treatment.add(&other.treatment);
        self.control.add(&other.control);
    }

    pub fn arm(&self, arm: Arm) -> &ArmCounts {
        match arm {
            Arm::Treatment => &self.treatment,
            Arm::Control => &self.control,
        }
    }

    fn arm_mut(&mut self, arm: Arm) -> &mut ArmCounts {
        match arm {
            Arm::Treatment => &mut self.treatment,
            Arm::Control => &mut self.control,
        }
    }

    fn record(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Triggered { .. } => self.triggered += 1,
            Outcome::Exposed {
                arm,
                actions,
                first,
                ..
            } => {
                let counts = self.arm_mut(*arm);
                counts.exposures += 1;
                counts.actions += u64::from(*actions);
                counts.profiles += u64::from(*first);
            }
            Outcome::Converted(conversion) => {
                let counts = self.arm_mut(conversion.arm);
                counts.conversions += 1;
                counts.profiles_converted += u64::from(conversion.first);
                counts.value += conversion.value.unwrap_or(0.0);
            }
        }
    }
}

/// One rule version: its totals and its days.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionResults {
    pub total: Counts,
    /// The last day anything was counted (which versions are kept is decided by it).
    pub last_day: i64,
    /// Keyed by the day's number since 1970-01-01 (UTC).
    pub days: BTreeMap<i64, Counts>,
}

/// Every experimenting rule's results: rule id → version → counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Results {
    pub rules: BTreeMap<String, BTreeMap<u64, VersionResults>>,
}

/// Bounds on what [`Results`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultsLimits {
    /// Days kept per version (the oldest go first; totals keep counting).
    pub retention_days: i64,
    /// Rule versions kept; past it the least recently active version is forgotten.
    pub max_versions: usize,
}

impl Results {
    /// Counts `outcomes`, which happened at `now_ms`.
    pub fn record(&mut self, outcomes: &[Outcome], now_ms: i64) {
        let day = now_ms.div_euclid(DAY_MS);
        for outcome in outcomes {
            let (rule, version) = outcome.rule_version();
            let version = match self.rules.get_mut(rule) {
                Some(versions) => versions.entry(version).or_default(),
                None => self
                    .rules
                    .entry(rule.to_owned())
                    .or_default()
                    .entry(version)
                    .or_default(),
            };
            version.total.record(outcome);
            version.last_day = version.last_day.max(day);
            version.days.entry(day).or_default().record(outcome);
        }
    }

    /// Adds another partition's (or instance's) results.
    pub fn merge(&mut self, other: &Results) {
        for (rule, versions) in &other.rules {
            let mine = self.rules.entry(rule.clone()).or_default();
            for (version, theirs) in versions {
                let into = mine.entry(*version).or_default();
                into.total.add(&theirs.total);
                into.last_day = into.last_day.max(theirs.last_day);
                for (day, counts) in &theirs.days {
                    into.days.entry(*day).or_default().add(counts);
                }
            }
        }
    }

    /// Drops days older than the retention before `now_ms`, then the least recently active
    /// versions beyond the bound.
    pub fn trim(&mut self, limits: ResultsLimits, now_ms: i64) {
        let oldest_day = now_ms.div_euclid(DAY_MS) - limits.retention_days.max(1) + 1;
        for versions in self.rules.values_mut() {
            for version in versions.values_mut() {
                version.days.retain(|day, _| *day >= oldest_day);
            }
        }
        let mut active: Vec<(i64, String, u64)> = self
            .rules
            .iter()
            .flat_map(|(rule, versions)| {
                versions
                    .iter()
                    .map(|(version, results)| (results.last_day, rule.clone(), *version))
            })
            .collect();
        if active.len() <= limits.max_versions {
            return;
        }
        active.sort();
        let excess = active.len() - limits.max_versions;
        for (_, rule, version) in active.into_iter().take(excess) {
            if let Some(versions) = self.rules.get_mut(&rule) {
                versions.remove(&version);
                if versions.is_empty() {
                    self.rules.remove(&rule);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::touch::Conversion;

    fn exposed(rule: &str, version: u64, arm: Arm, first: bool) -> Outcome {
        Outcome::Exposed {
            rule: rule.into(),
            version,
            arm,
            actions: 2,
            first,
        }
    }

    fn converted(arm: Arm, first: bool, value: f64) -> Outcome {
        Outcome::Converted(Conversion {
            rule: "cart".into(),
            version: 1,
            arm,
            first,
            value: Some(value),
            after_ms: 1,
        })
    }

    #[test]
    fn counts_per_version_and_day_add_up_and_merge() {
        let mut a = Results::default();
        a.record(
            &[
                Outcome::Triggered {
                    rule: "cart".into(),
                    version: 1,
                },
                exposed("cart", 1, Arm::Treatment, true),
                exposed("cart", 1, Arm::Control, true),
            ],
            0,
        );
        a.record(&[converted(Arm::Treatment, true, 10.0)], DAY_MS + 5);
        let mut b = Results::default();
        b.record(&[converted(Arm::Treatment, false, 5.0)], DAY_MS + 9);
        a.merge(&b);
        let v1 = &a.rules["cart"][&1];
        assert_eq!(v1.total.triggered, 1);
        assert_eq!(v1.total.treatment.actions, 2);
        assert_eq!(v1.total.treatment.conversions, 2);
        assert_eq!(
            v1.total.treatment.group(),
            Group {
                profiles: 1,
                converted: 1
            }
        );
        assert_eq!(v1.total.treatment.value, 15.0);
        assert_eq!(
            v1.total.control.group(),
            Group {
                profiles: 1,
                converted: 0
            }
        );
        assert_eq!(v1.days.keys().copied().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(v1.days[&1].treatment.conversions, 2);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Results>(&json).unwrap(), a);
    }

    #[test]
    fn trimming_keeps_totals_and_the_most_recent_versions() {
        let mut results = Results::default();
        results.record(&[exposed("old", 1, Arm::Treatment, true)], 0);
        results.record(&[exposed("cart", 1, Arm::Treatment, true)], 10 * DAY_MS);
        results.record(&[exposed("cart", 2, Arm::Treatment, true)], 20 * DAY_MS);
        let limits = ResultsLimits {
            retention_days: 5,
            max_versions: 2,
        };
        results.trim(limits, 20 * DAY_MS);
        assert!(!results.rules.contains_key("old"));
        let cart = &results.rules["cart"];
        assert!(cart[&1].days.is_empty());
        assert_eq!(cart[&1].total.treatment.profiles, 1);
        assert_eq!(cart[&2].days.len(), 1);
    }
}
