//! Calendar arithmetic in a profile's time zone: which day and ISO week an instant falls in (for
//! caps), and when quiet hours end. Times are milliseconds since the Unix epoch, given by the
//! caller: the core has no clock.

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// An IANA time zone by name (`"Europe/Berlin"`, `"UTC"`).
pub fn zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| format!("unknown time zone \"{name}\" (use an IANA name)"))
}

/// The zone of a profile; an unknown name counts as UTC rather than failing the event.
pub fn zone_or_utc(name: &str) -> TimeZone {
    zone(name).unwrap_or(TimeZone::UTC)
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// `("2026-11-27", "2026-W48")`: the local day and ISO week of `ms` in `tz`.
pub fn day_and_week(ms: i64, tz: &TimeZone) -> (String, String) {
    let date = timestamp(ms).to_zoned(tz.clone()).date();
    let week = date.iso_week_date();
    (
        date.to_string(),
        format!("{}-W{:02}", week.year(), week.week()),
    )
}

/// RFC 3339 in UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    format!("{:.3}", timestamp(ms))
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    text.parse::<Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| format!("\"{text}\" is not an RFC 3339 time: {e}"))
}

/// Local hours during which marketing actions wait, e.g. 21:00 to 08:00 (crossing midnight).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `"HH:MM"`, local time, inclusive.
    pub start: String,
    /// `"HH:MM"`, local time, exclusive.
    pub end: String,
}

impl QuietHours {
    pub fn validate(&self) -> Result<(Time, Time), String> {
        let parse = |field: &str, text: &str| {
            Time::strptime("%H:%M", text)
                .map_err(|_| format!("{field}: \"{text}\" must be HH:MM, e.g. \"21:00\""))
        };
        Ok((parse("start", &self.start)?, parse("end", &self.end)?))
    }

    /// When the quiet hours that `ms` falls in end, or `None` when `ms` is not in them.
    pub fn release_at(&self, ms: i64, tz: &TimeZone) -> Option<i64> {
        let (start, end) = self.validate().ok()?;
        if start == end {
            return None;
        }
        let now = timestamp(ms).to_zoned(tz.clone());
        let time = now.time();
        let quiet = if start < end {
            time >= start && time < end
        } else {
            time >= start || time < end
        };
        if !quiet {
            return None;
        }
        let mut date = now.date();
        if start > end && time >= start {
            date = date.tomorrow().ok()?;
        }
        let release = date.to_datetime(end).to_zoned(tz.clone()).ok()?;
        Some(release.timestamp().as_millisecond())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        parse_rfc3339(text).unwrap()
    }

    #[test]
    fn days_and_weeks_follow_the_profile_time_zone() {
        let utc = zone("UTC").unwrap();
        let tokyo = zone("Asia/Tokyo").unwrap();
        let t = ms("2026-11-29T20:00:00Z");
        assert_eq!(
            day_and_week(t, &utc),
            ("2026-11-29".into(), "2026-W48".into())
        );
        // Already Monday in Tokyo: a new day and a new ISO week.
        assert_eq!(
            day_and_week(t, &tokyo),
            ("2026-11-30".into(), "2026-W49".into())
        );
        assert!(zone("Nowhere/Land").is_err());
    }

    #[test]
    fn quiet_hours_across_midnight_release_at_their_end() {
        let quiet = QuietHours {
            start: "21:00".into(),
            end: "08:00".into(),
        };
        let berlin = zone("Europe/Berlin").unwrap();
        // 22:30 in Berlin (UTC+1 in November) → released at 08:00 Berlin next day.
        assert_eq!(
            quiet.release_at(ms("2026-11-27T21:30:00Z"), &berlin),
            Some(ms("2026-11-28T07:00:00Z"))
        );
        // 06:00 Berlin → 08:00 Berlin the same day.
        assert_eq!(
            quiet.release_at(ms("2026-11-28T05:00:00Z"), &berlin),
            Some(ms("2026-11-28T07:00:00Z"))
        );
        assert_eq!(quiet.release_at(ms("2026-11-28T12:00:00Z"), &berlin), None);
        assert_eq!(
            rfc3339(ms("2026-11-28T07:00:00Z")),
            "2026-11-28T07:00:00.000Z"
        );
    }
}
