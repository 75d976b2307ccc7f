//! Delivered counts for the results: one message per action nudge delivered, on
//! `delivered.<rule|plugin>.<id>.<version>.<day>` in `NUDGE_DELIVERED`, with the action id as
//! its message id — so a delivery redone after a crash (the receiver saw it, the ack was lost)
//! counts once — and a rule's delivered count per version and day is the message count of its
//! subjects, which JetStream keeps per subject: reading them sends no message.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use async_nats::jetstream::Context;
use futures::TryStreamExt as _;
use nudge_rules::action::Origin;
use nudge_rules::calendar::parse_rfc3339;
use nudge_rules::experiment::report::DeliveredDays;
use nudge_rules::state::DAY_MS;

use crate::topology::DELIVERED_STREAM;

/// The subject counting one delivered action decided by `label` (the action's `rule`
/// extension) at `time` (its RFC 3339 `time`), or why the action names neither.
pub fn subject(label: &str, time: &str) -> Result<String, String> {
    let (kind, id, version) = Origin::parse_label(label)
        .ok_or_else(|| format!("`rule` is `{label}`, not a rule or plugin version"))?;
    let decided_ms =
        parse_rfc3339(time).map_err(|_| format!("`time` is `{time}`, not an RFC 3339 time"))?;
    let day = decided_ms.div_euclid(DAY_MS);
    Ok(format!("delivered.{}.{id}.{version}.{day}", kind.as_str()))
}

/// Counts action `action_id` as delivered, once, and waits for JetStream's ack.
pub async fn record(js: &Context, subject: String, action_id: &str) -> anyhow::Result<()> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", action_id);
    js.publish_with_headers(subject, headers, Default::default())
        .await?
        .await?;
    Ok(())
}

/// The delivered actions per version and day of `key`: a rule id, or `plugin:<name>` (an
/// [`Origin::key`]).
pub async fn of(js: &Context, key: &str) -> anyhow::Result<BTreeMap<u64, DeliveredDays>> {
    let stream = js.get_stream(DELIVERED_STREAM).await?;
    let (kind, id) = Origin::split_key(key);
    let prefix = format!("delivered.{}.{id}.", kind.as_str());
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(format!("{prefix}>"))
        .await?
        .try_collect()
        .await?;
    let mut counts: BTreeMap<u64, DeliveredDays> = BTreeMap::new();
    for (subject, messages) in subjects {
        let parsed = subject.strip_prefix(&prefix).and_then(|rest| {
            let (version, day) = rest.split_once('.')?;
            Some((version.parse::<u64>().ok()?, day.parse::<i64>().ok()?))
        });
        let Some((version, day)) = parsed else {
            anyhow::bail!("{subject}: not a delivered count nudge writes");
        };
        *counts.entry(version).or_default().entry(day).or_default() += messages as u64;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_the_origin_and_the_day_it_decided() {
        assert_eq!(
            subject("cart@v3", "2026-12-04T23:59:59Z").unwrap(),
            format!("delivered.rule.cart.3.{}", 1_796_428_799_000 / DAY_MS)
        );
        assert!(
            subject("plugin:crm@v1", "1970-01-02T00:00:00Z")
                .unwrap()
                .ends_with("plugin.crm.1.1")
        );
        assert!(
            subject("cart", "2026-12-04T00:00:00Z")
                .unwrap_err()
                .contains("`rule`")
        );
        assert!(
            subject("cart@v1", "yesterday")
                .unwrap_err()
                .contains("`time`")
        );
    }
}
