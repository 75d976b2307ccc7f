//! Event schemas in NATS KV, versioned like rules: the current version per event type in
//! `NUDGE_SCHEMAS`, every version in `NUDGE_SCHEMA_VERSIONS` ([`crate::versioned`]). A new
//! version is compiled, then compared with the one before by the type's compatibility mode —
//! structurally, and against the type's most recent stored events — before it is stored.

use nudge_rules::event::validate_event_type;
use nudge_rules::schema::compat::{self, Findings};
use nudge_rules::schema::{Compatibility, CompiledSchema, EventSchema, SchemaSpec, Violation};
use serde::Serialize;
use serde_json::Value;

use crate::versioned::{self, Record, VersionedStore, now_rfc3339};

impl Record for EventSchema {
    const NOUN: &'static str = "schema";

    fn key(&self) -> &str {
        &self.event_type
    }

    fn version(&self) -> u64 {
        self.version
    }
}

pub type Head = versioned::Head<EventSchema>;
pub type StoreError = versioned::StoreError<SchemaError>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    /// A field of the request at fault (`type`, `schema`, `schema/properties/a/type`…).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The new version is not compatible with the current one.
    #[error("not {mode} compatible with version {version}: {}", reasons.join("; "))]
    Incompatible {
        mode: &'static str,
        version: u64,
        reasons: Vec<String>,
    },
}

impl SchemaError {
    /// Why a version is incompatible (none for other errors).
    pub fn reasons(&self) -> &[String] {
        match self {
            SchemaError::Incompatible { reasons, .. } => reasons,
            SchemaError::Invalid { .. } => &[],
        }
    }
}

/// Bounds on the registry (settings `schemas_max`, `schema_max_bytes`).
#[derive(Debug, Clone)]
pub struct SchemaLimits {
    pub schemas_max: usize,
    pub schema_max_bytes: usize,
}

/// How the stored recent events of the type fare under a new version.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecentCheck {
    pub checked: usize,
    pub failing: usize,
    /// A few of the failing events, with their violations.
    pub samples: Vec<RecentFailure>,
    /// What the structural comparison could not compare.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecentFailure {
    pub event_id: String,
    pub violations: Vec<Violation>,
}

/// Failing recent events listed in a [`RecentCheck`] (and named in a refusal) at most.
const RECENT_FAILURES_LISTED: usize = 5;

fn mode_name(mode: Compatibility) -> &'static str {
    match mode {
        Compatibility::Backward => "backward",
        Compatibility::Forward => "forward",
        Compatibility::Full => "full",
        Compatibility::None => "none",
    }
}

/// Checks an event type's name and the document's size, and compiles it.
pub fn compile(
    event_type: &str,
    spec: &SchemaSpec,
    limits: &SchemaLimits,
) -> Result<CompiledSchema, SchemaError> {
    validate_event_type(event_type).map_err(|message| SchemaError::Invalid {
        field: "type".into(),
        message,
    })?;
    let bytes = serde_json::to_vec(&spec.schema)
        .map_err(|e| SchemaError::Invalid {
            field: "schema".into(),
            message: format!("cannot be written as JSON: {e}"),
        })?
        .len();
    if bytes > limits.schema_max_bytes {
        return Err(SchemaError::Invalid {
            field: "schema".into(),
            message: format!(
                "{bytes} bytes; the limit is {} (schema_max_bytes)",
                limits.schema_max_bytes
            ),
        });
    }
    CompiledSchema::compile(&spec.schema).map_err(|e| SchemaError::Invalid {
        field: format!("schema{}", e.path),
        message: e.message,
    })
}

/// Validates the recent events' `data` (newest first) with `compiled`; with `accepted_by`,
/// only the events that schema accepts are counted (those a compatibility promise covers).
pub fn check_recent(
    compiled: &CompiledSchema,
    recent: &[(String, Value)],
    accepted_by: Option<&CompiledSchema>,
) -> RecentCheck {
    let mut check = RecentCheck::default();
    for (event_id, data) in recent {
        if accepted_by.is_some_and(|previous| !previous.is_valid(data)) {
            continue;
        }
        check.checked += 1;
        let violations = compiled.violations(data);
        if violations.is_empty() {
            continue;
        }
        check.failing += 1;
        if check.samples.len() < RECENT_FAILURES_LISTED {
            check.samples.push(RecentFailure {
                event_id: event_id.clone(),
                violations,
            });
        }
    }
    check
}

/// Whether `spec` may follow `previous`, the current version, by the current version's
/// compatibility mode (a change of mode applies from the next version on, so loosening it is a
/// change of its own, audited like any): the structural comparison, and — for `backward` and
/// `full`, which promise that what was valid stays valid — every recent stored event the
/// current version accepts and `compiled` refuses. Answers the comparison's notes.
pub fn compatible(
    previous: &EventSchema,
    spec: &SchemaSpec,
    compiled: &CompiledSchema,
    recent: &[(String, Value)],
) -> Result<Vec<String>, SchemaError> {
    let mode = previous.spec.compatibility;
    let Findings { mut reasons, notes } =
        compat::compare(&previous.spec.schema, &spec.schema, mode);
    if matches!(mode, Compatibility::Backward | Compatibility::Full) {
        let current =
            CompiledSchema::compile(&previous.spec.schema).map_err(|e| SchemaError::Invalid {
                field: "version".into(),
                message: format!("the current version no longer compiles: {e}"),
            })?;
        let broken = check_recent(compiled, recent, Some(&current));
        for failure in &broken.samples {
            let described: Vec<String> =
                failure.violations.iter().map(Violation::describe).collect();
            reasons.push(format!(
                "stored event {} is refused: {}",
                failure.event_id,
                described.join("; ")
            ));
        }
        if broken.failing > broken.samples.len() {
            reasons.push(format!(
                "{} more of the {} most recent stored events the current version accepts are refused",
                broken.failing - broken.samples.len(),
                broken.checked
            ));
        }
    }
    if reasons.is_empty() {
        Ok(notes)
    } else {
        Err(SchemaError::Incompatible {
            mode: mode_name(mode),
            version: previous.version,
            reasons,
        })
    }
}

#[derive(Clone)]
pub struct SchemaStore {
    store: VersionedStore<EventSchema>,
    limits: SchemaLimits,
}

impl SchemaStore {
    pub fn new(store: VersionedStore<EventSchema>, limits: SchemaLimits) -> Self {
        SchemaStore { store, limits }
    }

    pub fn limits(&self) -> &SchemaLimits {
        &self.limits
    }

    pub fn heads(&self) -> &async_nats::jetstream::kv::Store {
        self.store.heads()
    }

    fn checked(event_type: &str) -> Result<(), StoreError> {
        validate_event_type(event_type).map_err(|message| {
            StoreError::Invalid(SchemaError::Invalid {
                field: "type".into(),
                message,
            })
        })
    }

    pub async fn get(&self, event_type: &str) -> Result<EventSchema, StoreError> {
        Self::checked(event_type)?;
        self.store.get(event_type).await
    }

    pub async fn list(&self) -> Result<Vec<EventSchema>, StoreError> {
        self.store.list().await
    }

    /// Writes a new version after [`compile`] and [`compatible`] (with `recent`, the type's
    /// recent stored events). `expected_version`, when given, must be the current version.
    /// Answers the stored version and how the recent events fare under it.
    pub async fn put(
        &self,
        event_type: &str,
        spec: SchemaSpec,
        actor: &str,
        expected_version: Option<u64>,
        recent: &[(String, Value)],
    ) -> Result<(EventSchema, RecentCheck), StoreError> {
        let compiled = compile(event_type, &spec, &self.limits)?;
        let current = self
            .store
            .current_for_write(event_type, expected_version)
            .await?;
        let live = current.as_ref().filter(|(h, _)| !h.deleted);
        if live.is_none() && self.list().await?.len() >= self.limits.schemas_max {
            return Err(StoreError::Invalid(SchemaError::Invalid {
                field: "type".into(),
                message: format!(
                    "there are {} schemas already (schemas_max)",
                    self.limits.schemas_max
                ),
            }));
        }
        let mut check = check_recent(&compiled, recent, None);
        if let Some((head, _)) = live {
            check.notes = compatible(&head.record, &spec, &compiled, recent)?;
        }
        let current_version = current.as_ref().map_or(0, |(h, _)| h.record.version);
        let schema = EventSchema {
            event_type: event_type.to_owned(),
            spec,
            version: current_version + 1,
            updated_by: actor.to_owned(),
            updated_at: now_rfc3339(),
        };
        let head = Head {
            record: schema,
            deleted: false,
        };
        let stored = self
            .store
            .commit(head, current.map(|(_, r)| r), current_version)
            .await?;
        Ok((stored, check))
    }

    /// Marks a type's schema deleted (its events are unplanned from then on); its versions stay
    /// readable.
    pub async fn delete(&self, event_type: &str, actor: &str) -> Result<EventSchema, StoreError> {
        Self::checked(event_type)?;
        let Some((head, revision)) = self
            .store
            .head(event_type)
            .await?
            .filter(|(h, _)| !h.deleted)
        else {
            return Err(VersionedStore::<EventSchema>::not_found(event_type));
        };
        let previous = head.record.version;
        let mut schema = head.record;
        schema.version += 1;
        schema.updated_by = actor.to_owned();
        schema.updated_at = now_rfc3339();
        let head = Head {
            record: schema,
            deleted: true,
        };
        self.store.commit(head, Some(revision), previous).await
    }

    pub async fn version(&self, event_type: &str, version: u64) -> Result<Head, StoreError> {
        Self::checked(event_type)?;
        self.store.version(event_type, version).await
    }

    /// The newest `limit` versions, newest first.
    pub async fn versions(&self, event_type: &str, limit: u64) -> Result<Vec<Head>, StoreError> {
        Self::checked(event_type)?;
        self.store.versions(event_type, limit).await
    }
}
