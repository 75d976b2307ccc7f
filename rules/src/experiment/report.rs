//! A rule's results as people read them (`GET /api/rules/{id}/results`): per version and over
//! all versions, each group's profiles, conversions and rate, the uplift with its interval (or
//! why there is none yet), and the days for the chart.

use std::collections::BTreeMap;

use serde::Serialize;

use super::results::{ArmCounts, Counts, VersionResults};
use super::uplift::{Uplift, uplift};
use crate::calendar::rfc3339;
use crate::state::DAY_MS;

/// One group of one version (or of all versions).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupReport {
    /// Profiles in the group (first exposed in the period).
    pub profiles: u64,
    /// Of those, converted at least once.
    pub converted: u64,
    /// `converted / profiles`; `null` for an empty group.
    pub rate: Option<f64>,
    /// Decisions to act (sent, held for quiet hours or held out), their actions, the
    /// conversions credited to them and the sum of their values.
    pub exposures: u64,
    pub actions: u64,
    pub conversions: u64,
    pub value: f64,
}

impl GroupReport {
    fn of(counts: &ArmCounts) -> GroupReport {
        GroupReport {
            profiles: counts.profiles,
            converted: counts.profiles_converted,
            rate: counts.group().rate(),
            exposures: counts.exposures,
            actions: counts.actions,
            conversions: counts.conversions,
            value: counts.value,
        }
    }
}

/// One UTC day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayReport {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub triggered: u64,
    /// Actions of the day's decisions that nudge delivered (webhooks, e-mails).
    pub delivered: u64,
    pub treatment: GroupReport,
    pub control: GroupReport,
}

/// One version, or every version together (`version` is `null`; a profile exposed to two
/// versions counts in each).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionReport {
    pub version: Option<u64>,
    pub triggered: u64,
    /// Actions nudge delivered itself (webhooks, e-mails: the channels with a delivery
    /// worker), counted once each, by the day they were decided.
    pub delivered: u64,
    pub treatment: GroupReport,
    pub control: GroupReport,
    /// Treatment's rate minus control's, with its 95 % interval; `null` with a `reason`.
    pub uplift: Option<Uplift>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub days: Vec<DayReport>,
}

/// Delivered actions per day number (since 1970-01-01, UTC), of one version.
pub type DeliveredDays = BTreeMap<i64, u64>;

/// Which days a report covers, as day numbers since 1970-01-01 (inclusive); `None`: all kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    pub from_day: Option<i64>,
    pub to_day: Option<i64>,
}

impl Period {
    fn contains(&self, day: i64) -> bool {
        self.from_day.is_none_or(|from| day >= from) && self.to_day.is_none_or(|to| day <= to)
    }

    fn is_all(&self) -> bool {
        self.from_day.is_none() && self.to_day.is_none()
    }
}

/// The report of one version: over the whole period kept (`total`, which outlives the days'
/// retention) or, for a period, the sum of its days.
pub fn version_report(
    version: Option<u64>,
    results: &VersionResults,
    delivered: &DeliveredDays,
    period: Period,
    min_profiles: u64,
) -> VersionReport {
    let days: Vec<(&i64, &Counts)> = results
        .days
        .iter()
        .filter(|(day, _)| period.contains(**day))
        .collect();
    let counts = if period.is_all() {
        results.total.clone()
    } else {
        let mut sum = Counts::default();
        for (_, counts) in &days {
            sum.add(counts);
        }
        sum
    };
    // The chart's days: those with counts or deliveries (a rule without goal or holdout has
    // only deliveries).
    let no_counts = Counts::default();
    let mut chart_days: BTreeMap<i64, &Counts> =
        days.iter().map(|(day, counts)| (**day, *counts)).collect();
    for day in delivered.keys().filter(|day| period.contains(**day)) {
        chart_days.entry(*day).or_insert(&no_counts);
    }
    let (uplift, reason) = if counts.control.profiles == 0 && counts.treatment.profiles > 0 {
        let reason = "not enough data yet: no profile is in the control group (a rule without \
                      `holdout` never has one)";
        (None, Some(reason.to_owned()))
    } else {
        match uplift(
            counts.treatment.group(),
            counts.control.group(),
            min_profiles,
        ) {
            Ok(uplift) => (Some(uplift), None),
            Err(reason) => (None, Some(reason)),
        }
    };
    VersionReport {
        version,
        triggered: counts.triggered,
        delivered: delivered
            .iter()
            .filter(|(day, _)| period.contains(**day))
            .map(|(_, n)| n)
            .sum(),
        treatment: GroupReport::of(&counts.treatment),
        control: GroupReport::of(&counts.control),
        uplift,
        reason,
        days: chart_days
            .into_iter()
            .map(|(day, counts)| DayReport {
                day: rfc3339(day * DAY_MS)[..10].to_owned(),
                triggered: counts.triggered,
                delivered: delivered.get(&day).copied().unwrap_or(0),
                treatment: GroupReport::of(&counts.treatment),
                control: GroupReport::of(&counts.control),
            })
            .collect(),
    }
}

/// Every version of a rule (newest first), then all of them together. A version appears when
/// it has results or delivered actions (a rule without goal or holdout has only the latter).
pub fn rule_report<'a>(
    versions: impl IntoIterator<Item = (&'a u64, &'a VersionResults)>,
    delivered: &BTreeMap<u64, DeliveredDays>,
    period: Period,
    min_profiles: u64,
) -> (Vec<VersionReport>, VersionReport) {
    let no_results = VersionResults::default();
    let mut merged: BTreeMap<u64, &VersionResults> = versions
        .into_iter()
        .map(|(version, results)| (*version, results))
        .collect();
    for version in delivered.keys() {
        merged.entry(*version).or_insert(&no_results);
    }
    let mut all = VersionResults::default();
    let mut all_delivered = DeliveredDays::new();
    let none = DeliveredDays::new();
    let mut reports = Vec::new();
    for (version, results) in &merged {
        let version_delivered = delivered.get(version).unwrap_or(&none);
        reports.push(version_report(
            Some(*version),
            results,
            version_delivered,
            period,
            min_profiles,
        ));
        for (day, n) in version_delivered {
            *all_delivered.entry(*day).or_default() += n;
        }
        all.total.add(&results.total);
        for (day, counts) in &results.days {
            all.days.entry(*day).or_default().add(counts);
        }
    }
    reports.reverse();
    let overall = version_report(None, &all, &all_delivered, period, min_profiles);
    (reports, overall)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Arm;
    use crate::experiment::results::Results;
    use crate::experiment::touch::{Conversion, Outcome};

    fn exposure(version: u64, arm: Arm) -> Outcome {
        Outcome::Exposed {
            rule: "cart".into(),
            version,
            arm,
            actions: 1,
            first: true,
        }
    }

    fn conversion(version: u64, arm: Arm) -> Outcome {
        Outcome::Converted(Conversion {
            rule: "cart".into(),
            version,
            arm,
            first: true,
            value: Some(10.0),
            after_ms: 1,
        })
    }

    #[test]
    fn versions_periods_and_the_reason_without_a_control_group() {
        let mut results = Results::default();
        // Day 0: version 1, 60 treated (30 convert on day 1), 60 held out (6 convert).
        for i in 0..60 {
            results.record(&[exposure(1, Arm::Treatment), exposure(1, Arm::Control)], 0);
            if i < 30 {
                results.record(&[conversion(1, Arm::Treatment)], DAY_MS);
            }
            if i < 6 {
                results.record(&[conversion(1, Arm::Control)], DAY_MS);
            }
        }
        // Day 2: version 2, no holdout.
        results.record(&[exposure(2, Arm::Treatment)], 2 * DAY_MS);
        let versions = &results.rules["cart"];
        // Version 1's actions: 50 delivered on day 0, 5 on day 1.
        let delivered = BTreeMap::from([(1, DeliveredDays::from([(0, 50), (1, 5)]))]);
        let (reports, overall) = rule_report(versions, &delivered, Period::default(), 50);
        assert_eq!(
            reports.iter().map(|r| r.version).collect::<Vec<_>>(),
            [Some(2), Some(1)]
        );
        let v1 = &reports[1];
        assert_eq!((v1.treatment.profiles, v1.treatment.converted), (60, 30));
        assert_eq!(v1.treatment.rate, Some(0.5));
        assert_eq!(v1.control.rate, Some(0.1));
        assert!((v1.uplift.unwrap().value - 0.4).abs() < 1e-12);
        assert_eq!(
            v1.days.iter().map(|d| d.day.as_str()).collect::<Vec<_>>(),
            ["1970-01-01", "1970-01-02"]
        );
        assert!(
            reports[0].reason.as_deref().unwrap().contains("holdout"),
            "{:?}",
            reports[0]
        );
        assert_eq!(
            (reports[1].delivered, reports[1].days[1].delivered),
            (55, 5)
        );
        assert_eq!((reports[0].delivered, overall.delivered), (0, 55));
        // A version with deliveries and no counts (no goal or holdout then) is reported too.
        let mut with_plain = delivered.clone();
        with_plain.insert(3, DeliveredDays::from([(4, 7)]));
        let (plain, _) = rule_report(versions, &with_plain, Period::default(), 50);
        assert_eq!((plain[0].version, plain[0].delivered), (Some(3), 7));
        assert_eq!(plain[0].days.len(), 1);
        assert_eq!(plain[0].days[0].day, "1970-01-05");
        assert_eq!(overall.version, None);
        assert_eq!(overall.treatment.profiles, 61);
        // A period sums its days only: day 1 has the conversions and no new profiles.
        let day1 = Period {
            from_day: Some(1),
            to_day: Some(1),
        };
        let (reports, _) = rule_report(versions, &delivered, day1, 50);
        assert_eq!(reports[1].treatment.conversions, 30);
        assert_eq!(reports[1].delivered, 5);
        assert_eq!(reports[1].treatment.profiles, 0);
        assert!(reports[1].uplift.is_none());
        assert_eq!(reports[1].days.len(), 1);
    }
}
