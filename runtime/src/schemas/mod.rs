//! Event schemas in the service: the registry in NATS ([`store`]), every instance's running set
//! ([`sync`]), the violations report ([`report`]), and what the pipeline and the HTTP ingest do
//! with an event's verdict ([`flag`]). The checks themselves are the core's
//! ([`nudge_rules::schema`]).

pub mod report;
pub mod store;
pub mod sync;

use std::collections::HashMap;

use async_nats::jetstream::Context;
use async_nats::jetstream::kv;
use nudge_rules::CloudEvent;
use nudge_rules::schema::Verdict;
use serde_json::Value;

use crate::tail::tail;
use crate::topology::EVENTS_STREAM;
pub use report::TypeReport;
pub use sync::LiveSchemas;

/// Counts an event's violations in the report, at `at_ms`.
pub fn flag(event: &CloudEvent, verdict: &Verdict, at_ms: i64) {
    report::global().flag(&report::Flagged {
        event_type: &event.event_type,
        event_id: &event.id,
        subject: &event.subject,
        data: &event.data,
        violations: &verdict.violations,
        blocked: verdict.block,
        at_ms,
    });
}

/// A blocked event's reason: every violation with its paths.
pub fn reason(verdict: &Verdict) -> String {
    let described: Vec<String> = verdict.violations.iter().map(|v| v.describe()).collect();
    format!("breaks its schema: {}", described.join("; "))
}

/// The `data` of the `limit` most recent stored events of `event_type` (newest first, among
/// the stream's last `scan` messages), with their ids. Messages that are not CloudEvents are
/// left out: they never reached a rule either.
pub async fn recent_data(
    js: &Context,
    event_type: &str,
    scan: u64,
    limit: usize,
) -> anyhow::Result<Vec<(String, Value)>> {
    let stored = tail(
        js,
        EVENTS_STREAM,
        Some(format!("events.{event_type}")),
        scan,
        limit,
        None,
    )
    .await?;
    Ok(stored
        .iter()
        .filter_map(|message| CloudEvent::from_slice(&message.payload).ok())
        .map(|event| (event.id, event.data))
        .collect())
}

/// Every instance's report summed: the others' stored entries and this instance's own.
pub async fn cluster_wide(
    bucket: &kv::Store,
    instance: &str,
) -> anyhow::Result<HashMap<String, TypeReport>> {
    let mut total = report::global().snapshot();
    for theirs in crate::stats::others::<HashMap<String, TypeReport>>(bucket, instance).await? {
        for (event_type, report) in theirs {
            total.entry(event_type).or_default().merge(&report);
        }
    }
    Ok(total)
}
