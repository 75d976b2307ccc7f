//! Whether a new version of a schema is compatible with the one before, judged structurally:
//! every way the new one refuses something the old one accepted (for `backward`), or the other
//! way round (for `forward`), named with its place in the schema.
//!
//! What is compared: `type` (an `integer` is a `number`), `enum`/`const`, `required`,
//! `properties` (recursively), `additionalProperties`, `items`, and the bounds `minimum`,
//! `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength`, `minItems`,
//! `maxItems`, `minProperties`, `maxProperties`, `pattern` and `format`. Every other keyword that
//! can refuse a value ([`NOT_COMPARED`]) is listed as a note where either version uses it, and
//! left to the second check the registry makes: the new version must accept the most recent
//! stored events of the type that the current one accepts.
//!
//! A property added while the old schema left other properties open is compatible: it would only
//! refuse events that already carried that property with another value, and the stored events
//! show whether producers send one.

use serde_json::{Map, Value};

use super::Compatibility;

/// What a comparison found: reasons make the new version incompatible; notes name what was not
/// compared.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    pub reasons: Vec<String>,
    pub notes: Vec<String>,
}

/// Keywords that can refuse a value and are not compared structurally.
pub const NOT_COMPARED: [&str; 16] = [
    "$ref",
    "$dynamicRef",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "dependentSchemas",
    "dependentRequired",
    "patternProperties",
    "propertyNames",
    "prefixItems",
    "contains",
    "uniqueItems",
    "multipleOf",
    "unevaluatedProperties",
];

const LOWER_BOUNDS: [&str; 5] = [
    "minimum",
    "exclusiveMinimum",
    "minLength",
    "minItems",
    "minProperties",
];
const UPPER_BOUNDS: [&str; 5] = [
    "maximum",
    "exclusiveMaximum",
    "maxLength",
    "maxItems",
    "maxProperties",
];

/// Compares `new` with `old` by `mode`.
pub fn compare(old: &Value, new: &Value, mode: Compatibility) -> Findings {
    let mut findings = Findings::default();
    if matches!(mode, Compatibility::Backward | Compatibility::Full) {
        narrowed(old, new, "", "the new version", &mut findings);
    }
    if matches!(mode, Compatibility::Forward | Compatibility::Full) {
        narrowed(new, old, "", "the previous version", &mut findings);
    }
    findings.notes.sort();
    findings.notes.dedup();
    findings
}

/// Adds to `findings` each way `narrow` refuses what `wide` accepts, at `path`; `who` names the
/// narrow one in the messages (`the new version` for `backward`).
fn narrowed(wide: &Value, narrow: &Value, path: &str, who: &str, findings: &mut Findings) {
    let at = if path.is_empty() { "/" } else { path };
    let empty = Map::new();
    let (wide, narrow) = match (wide, narrow) {
        (_, Value::Bool(true)) | (Value::Bool(false), _) => return,
        (_, Value::Bool(false)) => {
            findings
                .reasons
                .push(format!("{at}: {who} refuses everything"));
            return;
        }
        (Value::Bool(true), Value::Object(narrow)) => (&empty, narrow),
        (Value::Object(wide), Value::Object(narrow)) => (wide, narrow),
        _ => return,
    };
    for keyword in NOT_COMPARED {
        if wide.contains_key(keyword) || narrow.contains_key(keyword) {
            findings
                .notes
                .push(format!("{at}: `{keyword}` is not compared structurally"));
        }
    }
    let mut reason = |text: String| findings.reasons.push(format!("{at}: {text}"));
    types(wide, narrow, who, &mut reason);
    allowed_values(wide, narrow, who, &mut reason);
    bounds(wide, narrow, who, &mut reason);
    let wide_required = strings(wide.get("required"));
    for name in strings(narrow.get("required")) {
        if !wide_required.contains(&name) {
            reason(format!("{who} requires `{name}`"));
        }
    }
    properties(wide, narrow, path, who, findings);
    let items = format!("{path}/items");
    match (wide.get("items"), narrow.get("items")) {
        (Some(wide_items), Some(narrow_items)) => {
            narrowed(wide_items, narrow_items, &items, who, findings)
        }
        (None, Some(narrow_items)) => {
            narrowed(&Value::Bool(true), narrow_items, &items, who, findings)
        }
        _ => {}
    }
}

/// The listed properties, one by one, and what becomes of those not listed.
fn properties(
    wide: &Map<String, Value>,
    narrow: &Map<String, Value>,
    path: &str,
    who: &str,
    findings: &mut Findings,
) {
    let at = if path.is_empty() { "/" } else { path };
    let empty = Map::new();
    let listed = |schema: &Map<String, Value>| -> Map<String, Value> {
        schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty)
            .clone()
    };
    let (wide_properties, narrow_properties) = (listed(wide), listed(narrow));
    let wide_additional = wide
        .get("additionalProperties")
        .unwrap_or(&Value::Bool(true));
    let narrow_additional = narrow
        .get("additionalProperties")
        .unwrap_or(&Value::Bool(true));
    // What the narrow one does with properties it does not list, against what the wide one did.
    let others = format!("{path}/additionalProperties");
    match (wide_additional, narrow_additional) {
        (Value::Bool(false), _) | (_, Value::Bool(true)) => {}
        (_, Value::Bool(false)) => findings.reasons.push(format!(
            "{at}: {who} refuses properties it does not list (`additionalProperties: false`)"
        )),
        (wide_schema, narrow_schema) => {
            narrowed(wide_schema, narrow_schema, &others, who, findings)
        }
    }
    for (name, wide_property) in &wide_properties {
        let child = format!("{path}/properties/{name}");
        match narrow_properties.get(name) {
            Some(narrow_property) => {
                narrowed(wide_property, narrow_property, &child, who, findings)
            }
            None if *narrow_additional == Value::Bool(false) => findings.reasons.push(format!(
                "{at}: {who} lacks property `{name}` while its `additionalProperties` is false"
            )),
            None => narrowed(wide_property, narrow_additional, &child, who, findings),
        }
    }
}

/// The JSON types a schema allows; `None` for any.
fn type_set(schema: &Map<String, Value>) -> Option<Vec<String>> {
    match schema.get("type")? {
        Value::String(one) => Some(vec![one.clone()]),
        Value::Array(many) => Some(
            many.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

fn types(
    wide: &Map<String, Value>,
    narrow: &Map<String, Value>,
    who: &str,
    reason: &mut impl FnMut(String),
) {
    let Some(narrow_types) = type_set(narrow) else {
        return;
    };
    let admits = |t: &str| {
        narrow_types.iter().any(|n| n == t)
            || (t == "integer" && narrow_types.iter().any(|n| n == "number"))
    };
    let only = narrow_types.join(" or ");
    match type_set(wide) {
        None => reason(format!("{who} allows only {only}, the other any type")),
        Some(wide_types) => {
            for lost in wide_types.iter().filter(|t| !admits(t)) {
                reason(format!("{who} refuses type {lost} (it allows only {only})"));
            }
        }
    }
}

/// The values an `enum` or `const` allows; `None` for any.
fn value_set(schema: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(Value::Array(values)) = schema.get("enum") {
        return Some(values.clone());
    }
    schema.get("const").map(|one| vec![one.clone()])
}

fn allowed_values(
    wide: &Map<String, Value>,
    narrow: &Map<String, Value>,
    who: &str,
    reason: &mut impl FnMut(String),
) {
    let Some(narrow_values) = value_set(narrow) else {
        return;
    };
    match value_set(wide) {
        None => reason(format!(
            "{who} allows only the values {}, the other any",
            Value::Array(narrow_values)
        )),
        Some(wide_values) => {
            let lost: Vec<Value> = wide_values
                .into_iter()
                .filter(|v| !narrow_values.contains(v))
                .collect();
            if !lost.is_empty() {
                reason(format!("{who} refuses the values {}", Value::Array(lost)));
            }
        }
    }
}

/// Lower bounds that must not rise and upper bounds that must not fall; a pattern or format
/// that must not appear or change.
fn bounds(
    wide: &Map<String, Value>,
    narrow: &Map<String, Value>,
    who: &str,
    reason: &mut impl FnMut(String),
) {
    for (keywords, lower) in [(LOWER_BOUNDS, true), (UPPER_BOUNDS, false)] {
        for keyword in keywords {
            let Some(new) = narrow.get(keyword).and_then(Value::as_f64) else {
                continue;
            };
            match wide.get(keyword).and_then(Value::as_f64) {
                None => reason(format!("{who} has `{keyword}: {new}`, the other none")),
                Some(old) if (lower && new > old) || (!lower && new < old) => {
                    reason(format!("{who} has `{keyword}: {new}`, the other {old}"))
                }
                Some(_) => {}
            }
        }
    }
    for keyword in ["pattern", "format"] {
        if let Some(new) = narrow.get(keyword)
            && wide.get(keyword) != Some(new)
        {
            let other = wide
                .get(keyword)
                .map_or("none".to_owned(), Value::to_string);
            reason(format!("{who} has `{keyword}: {new}`, the other {other}"));
        }
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
