//! Event schemas, nudge's tracking plan: a JSON Schema (draft 2020-12) of the `data` of each event
//! type, what an event that breaks it comes to (`mode`), how a new version must relate to the one
//! before (`compatibility`), and the checks built on them — validation ([`validate`]),
//! compatibility ([`compat`]), drafting a schema from events ([`infer`]) and checking the fields
//! rules read ([`fields`], [`reads`]).

pub mod compat;
pub mod fields;
pub mod infer;
pub mod reads;
pub mod validate;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::CloudEvent;
use crate::trigger::Pattern;
pub use fields::{Field, FieldWarning};
pub use reads::{FieldRead, data_reads};
pub use validate::{CompiledSchema, SchemaError, Violation};

/// What an event that breaks its type's schema comes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Not validated.
    Off,
    /// Decided as usual; the violation is counted and shown in the trace.
    #[default]
    Warn,
    /// Not decided: dead-lettered (kind `schema_violation`), or refused with 400 over HTTP.
    Block,
}

/// What the next version of a type's schema must keep of this one (the current version's mode
/// judges a change).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compatibility {
    /// The next version accepts every event this one accepts (stored events stay valid).
    #[default]
    Backward,
    /// This version accepts every event the next one accepts (consumers written against this
    /// version can read new events).
    Forward,
    /// Both.
    Full,
    /// No check.
    None,
}

/// What an event of a type with no schema comes to (setting `unplanned_events`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unplanned {
    #[default]
    Allow,
    Warn,
    Block,
}

/// What people write: `PUT /api/schemas/{type}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSpec {
    pub schema: Value,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub compatibility: Compatibility,
}

/// One stored version of an event type's schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSchema {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(flatten)]
    pub spec: SchemaSpec,
    pub version: u64,
    pub updated_by: String,
    pub updated_at: String,
}

/// An event's violations, and whether they keep it from being decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub block: bool,
    pub violations: Vec<Violation>,
}

/// One type's compiled versions (the newest ones loaded), its current mode, and the fields
/// its current version knows.
#[derive(Clone)]
struct TypeSchemas {
    latest: u64,
    mode: Mode,
    versions: HashMap<u64, Arc<CompiledSchema>>,
    fields: Arc<Field>,
}

/// What checking a rule's (or plugin's) reads against the plan found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReadCheck {
    pub warnings: Vec<FieldWarning>,
    /// Every field of `event.data` the triggering types' schemas know (dotted), for completion.
    pub fields: Vec<String>,
}

/// Every type's schemas as the pipeline and the HTTP ingest validate with: compiled once per
/// version, swapped whole when one changes.
#[derive(Clone, Default)]
pub struct SchemaSet {
    types: HashMap<String, TypeSchemas>,
    unplanned: Unplanned,
    /// Versions kept compiled per type, the newest ones.
    versions_kept: usize,
}

impl SchemaSet {
    pub fn new(unplanned: Unplanned, versions_kept: usize) -> Self {
        SchemaSet {
            types: HashMap::new(),
            unplanned,
            versions_kept: versions_kept.max(1),
        }
    }

    /// Adds a compiled version; the newest added becomes the type's current one (its mode
    /// applies).
    pub fn insert(&mut self, schema: &EventSchema, compiled: Arc<CompiledSchema>) {
        let entry = self
            .types
            .entry(schema.event_type.clone())
            .or_insert_with(|| TypeSchemas {
                latest: 0,
                mode: schema.spec.mode,
                versions: HashMap::new(),
                fields: Arc::default(),
            });
        if schema.version >= entry.latest {
            entry.latest = schema.version;
            entry.mode = schema.spec.mode;
            entry.fields = Arc::new(Field::of(&schema.spec.schema));
        }
        entry.versions.insert(schema.version, compiled);
        let oldest_kept = entry.latest.saturating_sub(self.versions_kept as u64 - 1);
        entry.versions.retain(|version, _| *version >= oldest_kept);
    }

    /// Forgets a type (its schema was deleted): its events are unplanned from now on.
    pub fn remove(&mut self, event_type: &str) {
        self.types.remove(event_type);
    }

    /// The newest compiled version of a type, if it has one.
    pub fn latest(&self, event_type: &str) -> Option<&Arc<CompiledSchema>> {
        let entry = self.types.get(event_type)?;
        entry.versions.get(&entry.latest)
    }

    /// The current version of a type's schema, if it has one.
    pub fn version(&self, event_type: &str) -> Option<u64> {
        self.types.get(event_type).map(|entry| entry.latest)
    }

    /// The types with a schema.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    /// Checks `reads` against the schemas of every type one of `triggers` matches (nothing to
    /// check when none has a schema).
    pub fn check_reads(&self, reads: &[FieldRead], triggers: &[Pattern]) -> ReadCheck {
        let mut matched: Vec<(&String, &TypeSchemas)> = self
            .types
            .iter()
            .filter(|(event_type, _)| triggers.iter().any(|p| p.matches(event_type)))
            .collect();
        if matched.is_empty() {
            return ReadCheck::default();
        }
        matched.sort_by(|a, b| a.0.cmp(b.0));
        let mut plan = Field::clone(&matched[0].1.fields);
        for (_, schemas) in &matched[1..] {
            plan.merge(&schemas.fields);
        }
        let names: Vec<&str> = matched.iter().map(|(t, _)| t.as_str()).collect();
        ReadCheck {
            warnings: fields::check(reads, &plan, &names.join(", ")),
            fields: plan.paths(),
        }
    }

    /// What the tracking plan says of `event`: `None` when it is valid (or not checked).
    /// nudge's own events (`source` under `nudge/`: timers, unsubscribes) are not checked: their
    /// shape is nudge's, not a producer's.
    pub fn check(&self, event: &CloudEvent) -> Option<Verdict> {
        if event.source.starts_with(OWN_SOURCE_PREFIX) {
            return None;
        }
        let Some(entry) = self.types.get(&event.event_type) else {
            return match self.unplanned {
                Unplanned::Allow => None,
                mode => Some(Verdict {
                    block: mode == Unplanned::Block,
                    violations: vec![Violation::unplanned(&event.event_type)],
                }),
            };
        };
        if entry.mode == Mode::Off {
            return None;
        }
        let block = entry.mode == Mode::Block;
        let version = match event.extensions.get("dataschema") {
            None => entry.latest,
            Some(uri) => match dataschema_version(uri, &event.event_type) {
                Ok(version) => version,
                Err(message) => {
                    return Some(Verdict {
                        block,
                        violations: vec![Violation::unknown_version(message)],
                    });
                }
            },
        };
        let Some(schema) = entry.versions.get(&version) else {
            return Some(Verdict {
                block,
                violations: vec![Violation::unknown_version(format!(
                    "dataschema names version {version} of {}, which is not loaded (the newest is \
                     {})",
                    event.event_type, entry.latest
                ))],
            });
        };
        let violations = schema.violations(&event.data);
        (!violations.is_empty()).then_some(Verdict { block, violations })
    }
}

/// The `source` prefix of the events nudge itself publishes.
pub const OWN_SOURCE_PREFIX: &str = "nudge/";

/// The version a CloudEvent's `dataschema` selects: a URI ending in
/// `/schemas/<type>/versions/<n>` — the address of that version in nudge's API.
pub fn dataschema_version(uri: &Value, event_type: &str) -> Result<u64, String> {
    let Some(uri) = uri.as_str() else {
        return Err("dataschema: must be a string (a URI)".into());
    };
    // Checked in place: an event that names its schema pays no allocation for it.
    uri.rsplit_once("/versions/")
        .filter(|(head, _)| {
            head.strip_suffix(event_type)
                .is_some_and(|rest| rest.ends_with("/schemas/"))
        })
        .and_then(|(_, version)| version.parse::<u64>().ok())
        .ok_or_else(|| {
            format!(
                "dataschema: \"{uri}\" does not end in \"/schemas/{event_type}/versions/<version>\" \
                 (the version's address in nudge's API)"
            )
        })
}

#[cfg(test)]
mod tests;
