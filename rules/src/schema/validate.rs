//! Validating an event's `data` with a compiled JSON Schema, and naming what is wrong: each
//! violation's kind, where in the data (`instance_path`), which part of the schema
//! (`schema_path`) and a message.

use jsonschema::error::ValidationErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Violations reported for one event at most; the rest are summed up in one more.
pub const VIOLATIONS_PER_EVENT_MAX: usize = 10;

/// A JSON Schema that is not one (or not one nudge can use): where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema{path}: {message}")]
pub struct SchemaError {
    /// JSON pointer into the schema document (empty for the whole document).
    pub path: String,
    pub message: String,
}

/// One way an event breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// `missing_required`, `wrong_type`, `extra_property`, `not_in_enum`, `format`,
    /// `constraint`, `unplanned` or `unknown_schema_version`.
    pub kind: String,
    /// JSON pointer into the event's `data`.
    pub instance_path: String,
    /// JSON pointer into the schema.
    pub schema_path: String,
    pub message: String,
}

impl Violation {
    pub fn unplanned(event_type: &str) -> Self {
        Violation {
            kind: "unplanned".into(),
            instance_path: String::new(),
            schema_path: String::new(),
            message: format!("no schema is registered for event type {event_type}"),
        }
    }

    pub fn unknown_version(message: String) -> Self {
        Violation {
            kind: "unknown_schema_version".into(),
            instance_path: String::new(),
            schema_path: String::new(),
            message,
        }
    }

    /// The field at fault in the CloudEvent, dotted: `/items/0/sku` → `data.items.0.sku`
    /// (`type` or `dataschema` for violations that are not about the data).
    pub fn field(&self) -> String {
        match self.kind.as_str() {
            "unplanned" => "type".into(),
            "unknown_schema_version" => "dataschema".into(),
            _ => {
                let mut field = String::from("data");
                for segment in self.instance_path.split('/').skip(1) {
                    field.push('.');
                    field.push_str(&segment.replace("~1", "/").replace("~0", "~"));
                }
                field
            }
        }
    }

    /// One line for a dead letter's reason or an HTTP error.
    pub fn describe(&self) -> String {
        if self.schema_path.is_empty() {
            return format!("{}: {}", self.field(), self.message);
        }
        format!(
            "{}: {} ({}, schema {})",
            self.field(),
            self.message,
            self.kind,
            self.schema_path
        )
    }
}

/// One schema version, compiled once.
#[derive(Debug)]
pub struct CompiledSchema {
    validator: jsonschema::Validator,
}

impl CompiledSchema {
    /// Compiles a draft 2020-12 schema (formats such as `date-time` and `email` are checked,
    /// not only annotations). A `$schema` naming another draft is refused.
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        if let Some(declared) = schema.get("$schema").and_then(Value::as_str)
            && !declared.contains("2020-12")
        {
            return Err(SchemaError {
                path: "/$schema".into(),
                message: format!("nudge validates with draft 2020-12, not \"{declared}\""),
            });
        }
        if !schema.is_object() && !schema.is_boolean() {
            return Err(SchemaError {
                path: String::new(),
                message: "a JSON Schema is an object (or true/false)".into(),
            });
        }
        jsonschema::draft202012::meta::validate(schema).map_err(|e| SchemaError {
            path: e.instance_path().to_string(),
            message: e.to_string(),
        })?;
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(schema)
            .map_err(|e| SchemaError {
                path: e.schema_path().to_string(),
                message: e.to_string(),
            })?;
        Ok(CompiledSchema { validator })
    }

    pub fn is_valid(&self, data: &Value) -> bool {
        self.validator.is_valid(data)
    }

    /// Every violation of `data` (at most [`VIOLATIONS_PER_EVENT_MAX`], the last one saying how
    /// many more there were); empty when it is valid. The fast path for a valid event is one
    /// `is_valid`.
    pub fn violations(&self, data: &Value) -> Vec<Violation> {
        if self.validator.is_valid(data) {
            return Vec::new();
        }
        let mut violations = Vec::new();
        let mut more = 0usize;
        for error in self.validator.iter_errors(data) {
            if violations.len() == VIOLATIONS_PER_EVENT_MAX {
                more += 1;
                continue;
            }
            let mut instance_path = error.instance_path().to_string();
            // The validator points at the object; the field at fault is the one to name.
            if let Some(name) = field_at_fault(error.kind()) {
                instance_path.push('/');
                instance_path.push_str(&name.replace('~', "~0").replace('/', "~1"));
            }
            violations.push(Violation {
                kind: kind_of(error.kind()).into(),
                instance_path,
                schema_path: error.schema_path().to_string(),
                message: error.to_string(),
            });
        }
        if more > 0
            && let Some(last) = violations.last_mut()
        {
            last.message
                .push_str(&format!(" (and {more} more violations not listed)"));
        }
        violations
    }
}

/// The property a missing-required or extra-property error is about (the first, for several
/// extra ones: the message names them all).
fn field_at_fault(kind: &ValidationErrorKind) -> Option<&str> {
    match kind {
        ValidationErrorKind::Required { property } => property.as_str(),
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            unexpected.first().map(String::as_str)
        }
        _ => None,
    }
}

/// The report's name for a kind of error.
fn kind_of(kind: &ValidationErrorKind) -> &'static str {
    match kind {
        ValidationErrorKind::Required { .. } => "missing_required",
        ValidationErrorKind::Type { .. } => "wrong_type",
        ValidationErrorKind::AdditionalProperties { .. }
        | ValidationErrorKind::UnevaluatedProperties { .. }
        | ValidationErrorKind::AdditionalItems { .. }
        | ValidationErrorKind::UnevaluatedItems { .. } => "extra_property",
        ValidationErrorKind::Enum { .. } | ValidationErrorKind::Constant { .. } => "not_in_enum",
        ValidationErrorKind::Format { .. } => "format",
        _ => "constraint",
    }
}
