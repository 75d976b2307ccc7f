//! Rules in NATS KV: the current version per rule in `NUDGE_RULES`, every version ever written in
//! `NUDGE_RULE_VERSIONS`. Writes compare-and-set on the current revision, so two editors (or two
//! instances) never overwrite each other silently.

use std::sync::Arc;

use async_nats::jetstream::kv::{self, Operation};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use nudge_rules::rule::validate_rule_id;
use nudge_rules::{CompiledRule, Rule, RuleError, RuleSpec, Sandbox};
use serde::{Deserialize, Serialize};

/// The value of a rule's key in `NUDGE_RULES`. Deleting keeps the record (marked) so version
/// numbers keep counting up when a rule of the same id is created again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Head {
    #[serde(flatten)]
    pub rule: Rule,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rule {0} not found")]
    NotFound(String),
    #[error("rule {id} is at version {actual}, not {expected}: reload and edit again")]
    Conflict {
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("rule store: {0}")]
    Nats(String),
}

fn nats(e: impl std::fmt::Display) -> StoreError {
    StoreError::Nats(e.to_string())
}

#[derive(Clone)]
pub struct RuleStore {
    heads: kv::Store,
    versions: kv::Store,
    sandbox: Arc<Sandbox>,
}

impl RuleStore {
    pub fn new(heads: kv::Store, versions: kv::Store, sandbox: Arc<Sandbox>) -> Self {
        RuleStore {
            heads,
            versions,
            sandbox,
        }
    }

    pub fn heads(&self) -> &kv::Store {
        &self.heads
    }

    async fn head(&self, id: &str) -> Result<Option<(Head, u64)>, StoreError> {
        let Some(entry) = self.heads.entry(id).await.map_err(nats)? else {
            return Ok(None);
        };
        if entry.operation != Operation::Put {
            return Ok(None);
        }
        let head: Head = serde_json::from_slice(&entry.value).map_err(nats)?;
        Ok(Some((head, entry.revision)))
    }

    /// The current version of a rule.
    pub async fn get(&self, id: &str) -> Result<Rule, StoreError> {
        validate_rule_id(id)?;
        match self.head(id).await? {
            Some((head, _)) if !head.deleted => Ok(head.rule),
            _ => Err(StoreError::NotFound(id.into())),
        }
    }

    /// Every rule's current version, by id.
    pub async fn list(&self) -> Result<Vec<Rule>, StoreError> {
        let mut ids: Vec<String> = match self.heads.keys().await {
            Ok(keys) => keys.try_collect().await.map_err(nats)?,
            Err(e) => return Err(nats(e)),
        };
        ids.sort();
        let heads = futures::stream::iter(ids)
            .map(|id| async move { self.head(&id).await })
            .buffered(16)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(heads
            .into_iter()
            .flatten()
            .filter(|(h, _)| !h.deleted)
            .map(|(h, _)| h.rule)
            .collect())
    }

    /// Writes a new version. `expected_version`, when given, must be the current version.
    pub async fn put(
        &self,
        id: &str,
        spec: RuleSpec,
        actor: &str,
        expected_version: Option<u64>,
    ) -> Result<Rule, StoreError> {
        validate_rule_id(id)?;
        let current = self.head(id).await?;
        let current_version = current.as_ref().map_or(0, |(h, _)| h.rule.version);
        if let Some(expected) = expected_version
            && expected != current_version
        {
            return Err(StoreError::Conflict {
                id: id.into(),
                expected,
                actual: current_version,
            });
        }
        let rule = Rule {
            id: id.into(),
            spec,
            version: current_version + 1,
            updated_by: actor.into(),
            updated_at: now_rfc3339(),
        };
        // Compiling here refuses a broken script before anything is stored.
        CompiledRule::compile(&self.sandbox, rule.clone())?;
        self.commit(
            Head {
                rule,
                deleted: false,
            },
            current.map(|(_, r)| r),
            current_version,
        )
        .await
    }

    /// Marks a rule deleted; its versions stay readable and restorable.
    pub async fn delete(&self, id: &str, actor: &str) -> Result<Rule, StoreError> {
        validate_rule_id(id)?;
        let Some((head, revision)) = self.head(id).await?.filter(|(h, _)| !h.deleted) else {
            return Err(StoreError::NotFound(id.into()));
        };
        let version = head.rule.version;
        let mut rule = head.rule;
        rule.version += 1;
        rule.updated_by = actor.into();
        rule.updated_at = now_rfc3339();
        self.commit(
            Head {
                rule,
                deleted: true,
            },
            Some(revision),
            version,
        )
        .await
    }

    /// Compare-and-set on the head, then record the version. The head is the commit point: if a
    /// crash comes in between, `version()` serves that version from the head instead.
    async fn commit(
        &self,
        head: Head,
        revision: Option<u64>,
        previous_version: u64,
    ) -> Result<Rule, StoreError> {
        let id = head.rule.id.clone();
        let value = Bytes::from(serde_json::to_vec(&head).map_err(nats)?);
        let written = match revision {
            Some(revision) => self
                .heads
                .update(&id, value.clone(), revision)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => self
                .heads
                .create(&id, value.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        if let Err(error) = written {
            let actual = self.head(&id).await?.map_or(0, |(h, _)| h.rule.version);
            if actual != previous_version {
                return Err(StoreError::Conflict {
                    id,
                    expected: previous_version,
                    actual,
                });
            }
            return Err(StoreError::Nats(error));
        }
        self.versions
            .put(version_key(&id, head.rule.version), value)
            .await
            .map_err(nats)?;
        Ok(head.rule)
    }

    /// One version of a rule, deleted versions included.
    pub async fn version(&self, id: &str, version: u64) -> Result<Head, StoreError> {
        validate_rule_id(id)?;
        if let Some(value) = self
            .versions
            .get(version_key(id, version))
            .await
            .map_err(nats)?
        {
            return serde_json::from_slice(&value).map_err(nats);
        }
        match self.head(id).await? {
            Some((head, _)) if head.rule.version == version => Ok(head),
            _ => Err(StoreError::NotFound(format!("{id} version {version}"))),
        }
    }

    /// The newest `limit` versions, newest first.
    pub async fn versions(&self, id: &str, limit: u64) -> Result<Vec<Head>, StoreError> {
        validate_rule_id(id)?;
        let Some((head, _)) = self.head(id).await? else {
            return Err(StoreError::NotFound(id.into()));
        };
        let newest = head.rule.version;
        let oldest = newest.saturating_sub(limit.max(1) - 1).max(1);
        let found: Vec<Option<Head>> = futures::stream::iter((oldest..=newest).rev())
            .map(|v| async move {
                match self.version(id, v).await {
                    Ok(head) => Ok(Some(head)),
                    Err(StoreError::NotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffered(16)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Makes an old version current again, as a new version.
    pub async fn restore(&self, id: &str, version: u64, actor: &str) -> Result<Rule, StoreError> {
        let old = self.version(id, version).await?;
        self.put(id, old.rule.spec, actor, None).await
    }
}

fn version_key(id: &str, version: u64) -> String {
    format!("{id}.{version}")
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
