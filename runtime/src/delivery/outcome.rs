//! What an endpoint's answer means for a delivery, as the webhook practice the ecosystem has
//! settled on reads it (Standard Webhooks, Svix): 2xx delivered; a timeout, a connection error,
//! 408, 429 or 5xx worth retrying (after `Retry-After` when the endpoint says so); 410 Gone: the
//! endpoint is switched off; any other answer (3xx included: deliveries follow no redirects)
//! refused for good, so retrying it would only repeat the refusal.

use std::time::{Duration, SystemTime};

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Worth another attempt; `after`: what the endpoint asked for in `Retry-After`.
    Retry {
        after: Option<Duration>,
    },
    /// 410: the receiver says the endpoint is gone for good.
    Gone,
    /// Refused for good (4xx other than 408, 410, 429; 3xx).
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Gone => "gone",
            Outcome::Refused => "refused",
        }
    }
}

/// The outcome of an answer with `status`, its `Retry-After` header as sent (if any), read at
/// `now`.
pub fn of_status(status: u16, retry_after: Option<&str>, now: SystemTime) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry {
            after: retry_after.and_then(|value| parse_retry_after(value, now)),
        },
        410 => Outcome::Gone,
        _ => Outcome::Refused,
    }
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110); a date in the past is "now".
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_the_practice_of_webhook_senders() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(of_status(204, None, now), Outcome::Delivered);
        for status in [408, 429, 500, 502, 503] {
            assert_eq!(
                of_status(status, None, now),
                Outcome::Retry { after: None },
                "{status}"
            );
        }
        assert_eq!(of_status(410, None, now), Outcome::Gone);
        for status in [301, 400, 401, 403, 404, 422] {
            assert_eq!(of_status(status, None, now), Outcome::Refused, "{status}");
        }
        assert_eq!(
            of_status(429, Some("120"), now),
            Outcome::Retry {
                after: Some(Duration::from_secs(120))
            }
        );
        let in_a_minute = httpdate::fmt_http_date(now + Duration::from_secs(60));
        assert_eq!(
            of_status(503, Some(&in_a_minute), now),
            Outcome::Retry {
                after: Some(Duration::from_secs(60))
            }
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(60));
        assert_eq!(
            of_status(503, Some(&past), now),
            Outcome::Retry {
                after: Some(Duration::ZERO)
            }
        );
        assert_eq!(
            of_status(503, Some("soon"), now),
            Outcome::Retry { after: None },
            "an unreadable Retry-After leaves the schedule to the sender"
        );
    }
}
