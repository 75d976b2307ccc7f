//! Drafting a schema from real events: the types each field had, the fields every event carried
//! (required), small sets of string values (an `enum`) and string formats all values share
//! (`date-time`, `date`, `email`, `uuid`, `uri`). The draft accepts every event it was drawn
//! from; it is a starting point a person edits, not a verdict.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

/// A string field with at most this many distinct values (each seen at least
/// [`ENUM_MIN_SEEN_PER_VALUE`] times on average) is drafted as an `enum`.
pub const ENUM_MAX_VALUES: usize = 5;
pub const ENUM_MIN_SEEN_PER_VALUE: usize = 3;

/// The formats a draft may give a string field, most specific first.
const FORMATS: [&str; 5] = ["date-time", "date", "email", "uuid", "uri"];

/// What the events showed of one place in their data.
#[derive(Default)]
struct Node {
    types: BTreeSet<&'static str>,
    /// Distinct string values while there are few of them (`None` past [`ENUM_MAX_VALUES`]).
    values: Option<BTreeSet<String>>,
    strings: usize,
    /// Formats every string here had so far.
    formats: Option<Vec<&'static str>>,
    objects: usize,
    properties: BTreeMap<String, (usize, Node)>,
    items: Option<Box<Node>>,
}

/// Decides whether a string has a format, as the validator will.
struct Formats {
    checks: Vec<(&'static str, jsonschema::Validator)>,
}

impl Formats {
    fn new() -> Self {
        let checks = FORMATS
            .iter()
            .filter_map(|format| {
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft202012)
                    .should_validate_formats(true)
                    .build(&json!({ "format": format }))
                    .ok()?;
                Some((*format, validator))
            })
            .collect();
        Formats { checks }
    }

    fn of(&self, text: &str) -> Vec<&'static str> {
        let value = Value::String(text.to_owned());
        self.checks
            .iter()
            .filter(|(_, validator)| validator.is_valid(&value))
            .map(|(format, _)| *format)
            .collect()
    }
}

impl Node {
    fn add(&mut self, value: &Value, formats: &Formats) {
        match value {
            Value::Null => {
                self.types.insert("null");
            }
            Value::Bool(_) => {
                self.types.insert("boolean");
            }
            Value::Number(n) => {
                self.types
                    .insert(if n.is_f64() { "number" } else { "integer" });
            }
            Value::String(text) => {
                self.types.insert("string");
                if self.strings == 0 {
                    self.values = Some(BTreeSet::new());
                }
                self.strings += 1;
                if let Some(values) = &mut self.values {
                    values.insert(text.clone());
                    if values.len() > ENUM_MAX_VALUES {
                        self.values = None;
                    }
                }
                let here = formats.of(text);
                self.formats = Some(match self.formats.take() {
                    None => here,
                    Some(before) => before.into_iter().filter(|f| here.contains(f)).collect(),
                });
            }
            Value::Array(items) => {
                self.types.insert("array");
                let node = self.items.get_or_insert_with(Box::default);
                for item in items {
                    node.add(item, formats);
                }
            }
            Value::Object(fields) => {
                self.types.insert("object");
                self.objects += 1;
                for (name, field) in fields {
                    let (seen, node) = self.properties.entry(name.clone()).or_default();
                    *seen += 1;
                    node.add(field, formats);
                }
            }
        }
    }

    fn schema(&self) -> Map<String, Value> {
        let mut schema = Map::new();
        let mut types: Vec<&str> = self.types.iter().copied().collect();
        if types.contains(&"number") {
            types.retain(|t| *t != "integer");
        }
        match types.as_slice() {
            [] => {}
            [one] => {
                schema.insert("type".into(), json!(one));
            }
            many => {
                schema.insert("type".into(), json!(many));
            }
        }
        let only_strings = types == ["string"];
        let format = self.formats.as_ref().and_then(|f| f.first());
        if let Some(format) = format.filter(|_| only_strings) {
            schema.insert("format".into(), json!(format));
        } else if let Some(values) = self.values.as_ref().filter(|v| {
            only_strings && !v.is_empty() && self.strings >= v.len() * ENUM_MIN_SEEN_PER_VALUE
        }) {
            schema.insert("enum".into(), json!(values));
        }
        if !self.properties.is_empty() {
            let properties: Map<String, Value> = self
                .properties
                .iter()
                .map(|(name, (_, node))| (name.clone(), Value::Object(node.schema())))
                .collect();
            let required: Vec<&String> = self
                .properties
                .iter()
                .filter(|(_, (seen, _))| *seen == self.objects)
                .map(|(name, _)| name)
                .collect();
            schema.insert("properties".into(), Value::Object(properties));
            if !required.is_empty() {
                schema.insert("required".into(), json!(required));
            }
        }
        if let Some(items) = &self.items {
            schema.insert("items".into(), Value::Object(items.schema()));
        }
        schema
    }
}

/// A draft 2020-12 schema of the `data` of `samples`. With no samples it accepts anything.
pub fn infer<'a>(samples: impl IntoIterator<Item = &'a Value>) -> Value {
    let formats = Formats::new();
    let mut root = Node::default();
    for sample in samples {
        root.add(sample, &formats);
    }
    let mut schema = Map::new();
    schema.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    schema.extend(root.schema());
    Value::Object(schema)
}
