//! The uplift of a rule: treatment's conversion rate minus control's, with a 95 % confidence
//! interval by Newcombe's hybrid score method (method 10 in Newcombe, "Interval estimation for
//! the difference between independent proportions", Statistics in Medicine 17, 1998), built
//! from the Wilson score interval of each rate. Chosen over the two-proportion z (Wald)
//! interval because it keeps its coverage with small groups and rates near zero — where
//! conversion rates and young control groups live — and never leaves [-1, 1].

use serde::Serialize;

/// The normal quantile for a two-sided 95 % interval.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// One group of an experiment: profiles exposed, and how many of them converted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Group {
    pub profiles: u64,
    pub converted: u64,
}

impl Group {
    /// The conversion rate; `None` for an empty group.
    pub fn rate(&self) -> Option<f64> {
        (self.profiles > 0).then(|| self.converted as f64 / self.profiles as f64)
    }
}

/// Treatment's rate minus control's, and its 95 % interval, as fractions (0.021 = 2.1 points).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Uplift {
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// The Wilson score interval of `converted` out of `profiles` (which must not be zero).
pub fn wilson(group: Group, z: f64) -> (f64, f64) {
    let n = group.profiles as f64;
    let p = group.converted as f64 / n;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = z / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The uplift of `treatment` over `control`, or why it is not shown yet: either group has
/// fewer than `min_profiles` profiles (`results_min_profiles`), or a group converted more
/// profiles than it has (inconsistent counts).
pub fn uplift(treatment: Group, control: Group, min_profiles: u64) -> Result<Uplift, String> {
    for (name, group) in [("treatment", treatment), ("control", control)] {
        if group.converted > group.profiles {
            return Err(format!(
                "the {name} group counts {} conversions among {} profiles",
                group.converted, group.profiles
            ));
        }
        if group.profiles < min_profiles.max(1) {
            return Err(format!(
                "not enough data yet: the {name} group has {} profiles; the uplift is shown \
                 from {} in each group (results_min_profiles)",
                group.profiles,
                min_profiles.max(1)
            ));
        }
    }
    let (p1, p2) = (
        treatment.converted as f64 / treatment.profiles as f64,
        control.converted as f64 / control.profiles as f64,
    );
    let (l1, u1) = wilson(treatment, Z_95);
    let (l2, u2) = wilson(control, Z_95);
    let value = p1 - p2;
    Ok(Uplift {
        value,
        ci_low: value - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(),
        ci_high: value + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(converted: u64, profiles: u64) -> Group {
        Group {
            profiles,
            converted,
        }
    }

    fn close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 5e-5, "{actual} vs {expected}");
    }

    #[test]
    fn matches_newcombes_published_examples() {
        // Table II of Newcombe (1998), method 10.
        for ((x1, n1, x2, n2), (low, high)) in [
            ((56, 70, 48, 80), (0.0524, 0.3339)),
            ((9, 10, 3, 10), (0.1705, 0.8090)),
            ((5, 56, 0, 29), (-0.0381, 0.1926)),
        ] {
            let u = uplift(group(x1, n1), group(x2, n2), 1).unwrap();
            close(u.ci_low, low);
            close(u.ci_high, high);
        }
    }

    #[test]
    fn wilson_interval_by_hand() {
        // 90 of 900: centre (0.1 + z²/1800) / (1 + z²/900), half-width
        // z / (1 + z²/900) · √(0.1 · 0.9 / 900 + z² / (4 · 900²)).
        let (low, high) = wilson(group(90, 900), Z_95);
        close(low, 0.082068);
        close(high, 0.121332);
        assert_eq!(wilson(group(0, 20), Z_95).0, 0.0);
        assert_eq!(wilson(group(20, 20), Z_95).1, 1.0);
    }

    #[test]
    fn small_groups_have_no_uplift_yet() {
        let reason = uplift(group(10, 100), group(1, 12), 50).unwrap_err();
        assert!(reason.contains("control group has 12 profiles"), "{reason}");
        assert!(reason.contains("results_min_profiles"), "{reason}");
        assert!(uplift(group(10, 5), group(1, 100), 1).is_err());
        assert_eq!(group(0, 0).rate(), None);
    }
}
