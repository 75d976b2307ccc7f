//! The audit log: stream `NUDGE_AUDIT` (`audit.<action>`), which denies deletes and purges, so
//! entries can only be appended. One entry per change: who (user, role, how they signed in),
//! when, what (action and target) and the record before and after.

use async_nats::jetstream::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Principal;
use crate::rulestore::now_rfc3339;
use crate::tail::tail;
use crate::topology::AUDIT_STREAM;

/// Entries one `GET /api/audit` answers at most.
pub const AUDIT_PAGE_MAX: usize = 1_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    #[serde(default)]
    pub sequence: u64,
    pub at: String,
    pub actor: String,
    pub role: String,
    /// `session`, `token:<id>` or `bootstrap`.
    pub via: String,
    /// `rule.put`, `plugin.delete`, `user.create`, `token.revoke`, `draft.approve`, …
    pub action: String,
    pub target: String,
    #[serde(default)]
    pub before: Value,
    #[serde(default)]
    pub after: Value,
}

pub fn via_label(principal: &Principal) -> String {
    match &principal.via {
        super::Via::Bootstrap => "bootstrap".into(),
        super::Via::Token(id) => format!("token:{id}"),
        super::Via::Session => "session".into(),
    }
}

/// Appends an entry and waits for the stream to store it. The change it describes has already
/// happened, so a failure is logged loudly rather than undoing it.
pub async fn record(
    js: &Context,
    who: &Principal,
    action: &str,
    target: &str,
    before: Value,
    after: Value,
) {
    let entry = Entry {
        sequence: 0,
        at: now_rfc3339(),
        actor: who.name.clone(),
        role: who.role.as_str().into(),
        via: via_label(who),
        action: action.into(),
        target: target.into(),
        before,
        after,
    };
    let result = async {
        let body = serde_json::to_vec(&entry)?;
        js.publish(format!("audit.{action}"), body.into())
            .await?
            .await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(error) = result {
        tracing::error!(%error, action, target, actor = %who.name, "could not write the audit log");
    }
}

/// The most recent entries, newest first; `before` (a sequence) pages back.
pub async fn list(js: &Context, limit: usize, before: Option<u64>) -> anyhow::Result<Vec<Entry>> {
    let limit = limit.clamp(1, AUDIT_PAGE_MAX);
    let stored = tail(js, AUDIT_STREAM, None, limit as u64, limit, before).await?;
    Ok(stored
        .into_iter()
        .filter_map(|m| {
            let mut entry: Entry = serde_json::from_slice(&m.payload).ok()?;
            entry.sequence = m.sequence;
            Some(entry)
        })
        .collect())
}
