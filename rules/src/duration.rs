//! Human durations as marketers write them in rules: `"90s"`, `"30m"`, `"24h"`, `"7d"`, `"2w"`.

use std::time::Duration;

/// Parses `<positive integer><unit>` with unit `s`, `m`, `h`, `d` or `w`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit (use s, m, h, d or w, e.g. \"30m\")"))?;
    let (number, unit) = text.split_at(split_at);
    let count: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` must start with a whole number, e.g. \"30m\""))?;
    if count == 0 {
        return Err(format!("`{text}` must be longer than zero"));
    }
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "`{text}` has unknown unit `{unit}` (use s, m, h, d or w)"
            ));
        }
    };
    count
        .checked_mul(unit_seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(1_209_600)));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            "30",
            "m",
            "0m",
            "3x",
            "-1h",
            "1.5h",
            "99999999999999999999w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }
}
