//! The fields a tracking plan knows, as a tree drawn from the schemas of the event types a rule
//! (or plugin) is triggered by, and the check of a rule's reads against it: an unknown field with
//! the nearest known name, and a comparison with a literal of another type.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::reads::{FieldRead, Step};

/// What the plan knows of one place in the data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Field {
    /// The JSON types allowed here; empty for any.
    pub types: BTreeSet<String>,
    /// The named fields of an object here.
    pub children: BTreeMap<String, Field>,
    /// Whether the plan lists the fields here (`properties`): only then is a name missing from
    /// `children` unknown.
    pub listed: bool,
    /// An array's elements.
    pub items: Option<Box<Field>>,
}

impl Field {
    /// The tree of one schema (its `properties`, `items`, and those of `allOf`/`anyOf`/
    /// `oneOf` branches; `$ref`s are not followed).
    pub fn of(schema: &Value) -> Field {
        let mut field = Field::default();
        field.add(schema);
        field
    }

    /// Merges another schema's fields in (a rule triggered by several types reads their union).
    pub fn add(&mut self, schema: &Value) {
        let Value::Object(schema) = schema else {
            return;
        };
        match schema.get("type") {
            Some(Value::String(one)) => {
                self.types.insert(one.clone());
            }
            Some(Value::Array(many)) => {
                self.types
                    .extend(many.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            _ => {}
        }
        if let Some(Value::Object(properties)) = schema.get("properties") {
            self.listed = true;
            for (name, property) in properties {
                self.children.entry(name.clone()).or_default().add(property);
            }
        }
        if matches!(schema.get("additionalProperties"), Some(Value::Object(_))) {
            // A map whose keys are free: any name is known.
            self.listed = false;
        }
        if let Some(items) = schema.get("items") {
            self.items.get_or_insert_with(Box::default).add(items);
        }
        for branches in ["allOf", "anyOf", "oneOf"] {
            for branch in schema
                .get(branches)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.add(branch);
            }
        }
    }

    /// Merges another type's tree in (a rule triggered by several types): a field either knows
    /// is known, a place either leaves open stays open, and a place either allows any type of
    /// allows any.
    pub fn merge(&mut self, other: &Field) {
        if self.types.is_empty() || other.types.is_empty() {
            self.types.clear();
        } else {
            self.types.extend(other.types.iter().cloned());
        }
        self.listed &= other.listed;
        for (name, child) in &other.children {
            self.children.entry(name.clone()).or_default().merge(child);
        }
        if let Some(items) = &other.items {
            self.items.get_or_insert_with(Box::default).merge(items);
        }
    }

    /// Every dotted path below this one (`customer.email`; an array's element fields as
    /// `items[].sku`), for the editor's completion.
    pub fn paths(&self) -> Vec<String> {
        let mut paths = Vec::new();
        self.collect("", &mut paths);
        paths
    }

    fn collect(&self, prefix: &str, paths: &mut Vec<String>) {
        for (name, child) in &self.children {
            let path = format!("{prefix}{name}");
            paths.push(path.clone());
            child.collect(&format!("{path}."), paths);
            if let Some(items) = &child.items {
                items.collect(&format!("{path}[]."), paths);
            }
        }
    }

    fn accepts(&self, literal: &str) -> bool {
        self.types.is_empty()
            || self.types.contains(literal)
            || (literal == "integer" && self.types.contains("number"))
            || (literal == "number" && self.types.contains("integer"))
    }
}

/// A finding about one read, where it is in the script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldWarning {
    pub line: usize,
    pub column: usize,
    /// The field as read, `data.totl`.
    pub field: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
}

/// Checks each read against `plan`, the fields of `types` (named in the messages).
pub fn check(reads: &[FieldRead], plan: &Field, types: &str) -> Vec<FieldWarning> {
    reads
        .iter()
        .filter_map(|read| check_one(read, plan, types))
        .collect()
}

fn check_one(read: &FieldRead, plan: &Field, types: &str) -> Option<FieldWarning> {
    let mut here = plan;
    let mut walked = String::from("data");
    for step in &read.steps {
        match step {
            Step::Element => {
                walked.push_str("[]");
                here = match &here.items {
                    Some(items) => items,
                    None => return None,
                };
            }
            Step::Field { name, line, column } => {
                let parent = walked.clone();
                walked.push('.');
                walked.push_str(name);
                if let Some(child) = here.children.get(name) {
                    here = child;
                    continue;
                }
                let scalar = !here.types.is_empty() && !here.types.contains("object");
                if !here.listed && !scalar {
                    return None;
                }
                let suggestion = nearest(name, here.children.keys());
                let mut message = if scalar {
                    let kinds: Vec<&str> = here.types.iter().map(String::as_str).collect();
                    format!(
                        "event.{parent} is {} in the schema of {types}: it has no field `{name}`",
                        kinds.join(" or ")
                    )
                } else {
                    format!("event.{walked} is not in the schema of {types}")
                };
                if let Some(suggestion) = &suggestion {
                    message.push_str(&format!(" — did you mean `{suggestion}`?"));
                }
                return Some(FieldWarning {
                    line: *line,
                    column: *column,
                    field: walked,
                    message,
                    suggestion,
                });
            }
        }
    }
    let (literal, line, column) = read.compared_with?;
    if here.accepts(literal) {
        return None;
    }
    let kinds: Vec<&str> = here.types.iter().map(String::as_str).collect();
    Some(FieldWarning {
        line,
        column,
        field: walked.clone(),
        message: format!(
            "event.{walked} is {} in the schema of {types}, compared here with {} {literal}",
            kinds.join(" or "),
            if literal == "integer" { "an" } else { "a" }
        ),
        suggestion: None,
    })
}

/// The known name nearest to a misspelled one, when it is near enough to be a typo.
pub fn nearest<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> Option<String> {
    known
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|(distance, candidate)| {
            *distance <= 2.max(name.len().min(candidate.len()) / 4) && *distance < name.len()
        })
        .min()
        .map(|(_, candidate)| candidate.clone())
}
