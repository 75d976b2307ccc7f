//! Rules in NATS KV: the current version per rule in `NUDGE_RULES`, every version ever written in
//! `NUDGE_RULE_VERSIONS` (see [`crate::versioned`]). A rule is compiled before it is stored, so a
//! broken script never reaches another instance.

use std::sync::Arc;

use nudge_rules::rule::validate_rule_id;
use nudge_rules::{CompiledRule, Rule, RuleError, RuleSpec, Sandbox};

pub use crate::versioned::now_rfc3339;
use crate::versioned::{self, Record, VersionedStore};

impl Record for Rule {
    const NOUN: &'static str = "rule";

    fn key(&self) -> &str {
        &self.id
    }

    fn version(&self) -> u64 {
        self.version
    }
}

pub type Head = versioned::Head<Rule>;
pub type StoreError = versioned::StoreError<RuleError>;

#[derive(Clone)]
pub struct RuleStore {
    store: VersionedStore<Rule>,
    sandbox: Arc<Sandbox>,
}

impl RuleStore {
    pub fn new(store: VersionedStore<Rule>, sandbox: Arc<Sandbox>) -> Self {
        RuleStore { store, sandbox }
    }

    pub fn heads(&self) -> &async_nats::jetstream::kv::Store {
        self.store.heads()
    }

    /// The current version of a rule.
    pub async fn get(&self, id: &str) -> Result<Rule, StoreError> {
        validate_rule_id(id)?;
        self.store.get(id).await
    }

    /// Every rule's current version, by id.
    pub async fn list(&self) -> Result<Vec<Rule>, StoreError> {
        self.store.list().await
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
        let current = self.store.current_for_write(id, expected_version).await?;
        let current_version = current.as_ref().map_or(0, |(h, _)| h.record.version);
        let rule = Rule {
            id: id.into(),
            spec,
            version: current_version + 1,
            updated_by: actor.into(),
            updated_at: now_rfc3339(),
        };
        // Compiling here refuses a broken script before anything is stored.
        CompiledRule::compile(&self.sandbox, rule.clone())?;
        let head = Head {
            record: rule,
            deleted: false,
        };
        self.store
            .commit(head, current.map(|(_, r)| r), current_version)
            .await
    }

    /// Marks a rule deleted; its versions stay readable and restorable.
    pub async fn delete(&self, id: &str, actor: &str) -> Result<Rule, StoreError> {
        validate_rule_id(id)?;
        let Some((head, revision)) = self.store.head(id).await?.filter(|(h, _)| !h.deleted) else {
            return Err(VersionedStore::<Rule>::not_found(id));
        };
        let version = head.record.version;
        let mut rule = head.record;
        rule.version += 1;
        rule.updated_by = actor.into();
        rule.updated_at = now_rfc3339();
        let head = Head {
            record: rule,
            deleted: true,
        };
        self.store.commit(head, Some(revision), version).await
    }

    /// One version of a rule, deleted versions included.
    pub async fn version(&self, id: &str, version: u64) -> Result<Head, StoreError> {
        validate_rule_id(id)?;
        self.store.version(id, version).await
    }

    /// The newest `limit` versions, newest first.
    pub async fn versions(&self, id: &str, limit: u64) -> Result<Vec<Head>, StoreError> {
        validate_rule_id(id)?;
        self.store.versions(id, limit).await
    }

    /// Makes an old version current again, as a new version.
    pub async fn restore(&self, id: &str, version: u64, actor: &str) -> Result<Rule, StoreError> {
        let old = self.version(id, version).await?;
        self.put(id, old.record.spec, actor, None).await
    }
}
