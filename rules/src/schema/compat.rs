//! Whether a new version of a schema is compatible with the one before, judged structurally:
//! every way the new one refuses something the old one accepted (for `backward`), or the other
//! way round (for `forward`), named with its place in the schema.
//!
//! What is compared: `type` (an `integer` is a `number`), `enum`/`const`, `required`,
//! `properties` (recursively), `additionalProperties`, `items`, and the bounds `minimum`,
//! `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength`, `minItems`,
//! `maxItems`, `pattern` and `format`. What is not (`$ref`, `allOf`/`anyOf`/`oneOf`/`not`,
//! conditionals) is listed as a note, and left to the second check the registry makes: the new
//! version must accept the most recent stored events of the type.
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

/// Compares `new` with `old` by `mode`.
pub fn compare(old: &Value, new: &Value, mode: Compatibility) -> Findings {
    let mut findings = Findings::default();
    if matches!(mode, Compatibility::Backward | Compatibility::Full) {
        narrowed(old, new, "", "accepted", &mut findings);
    }
    if matches!(mode, Compatibility::Forward | Compatibility::Full) {
        narrowed(new, old, "", "refused", &mut findings);
    }
    findings.notes.sort();
    findings.notes.dedup();
    findings
}

/// Adds to `findings` each way `narrow` refuses what `wide` accepts, at `path`. `verb` says
/// how the old version treated it, for the message (`accepted` when `wide` is the old one).
fn narrowed(wide: &Value, narrow: &Value, path: &str, verb: &str, findings: &mut Findings) {
    let at = if path.is_empty() { "/" } else { path };
    let (wide, narrow) = match (wide, narrow) {
        (_, Value::Bool(true)) | (Value::Bool(false), _) => return,
        (_, Value::Bool(false)) => {
            let reason = format!("{at}: everything is refused now, which the other version {verb}");
            findings.reasons.push(reason);
            return;
        }
        (Value::Bool(true), Value::Object(narrow)) => (&Map::new(), narrow),
        (Value::Object(wide), Value::Object(narrow)) => (wide, narrow),
        _ => return,
    };
    for keyword in [
        "$ref",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "dependentSchemas",
    ] {
        if wide.contains_key(keyword) || narrow.contains_key(keyword) {
            findings
                .notes
                .push(format!("{at}: `{keyword}` is not compared structurally"));
        }
    }
    let mut reason = |text: String| findings.reasons.push(format!("{at}: {text}"));
    types(wide, narrow, verb, &mut reason);
    allowed_values(wide, narrow, verb, &mut reason);
    bounds(wide, narrow, &mut reason);
    let wide_required = strings(wide.get("required"));
    for name in strings(narrow.get("required")) {
        if !wide_required.contains(&name) {
            reason(format!("`{name}` is required now"));
        }
    }
    let empty = Map::new();
    let wide_properties = wide
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let narrow_properties = narrow
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let narrow_additional = narrow.get("additionalProperties");
    let wide_additional = wide.get("additionalProperties");
    if narrow_additional == Some(&Value::Bool(false))
        && !matches!(wide_additional, Some(Value::Bool(false)))
    {
        reason("properties not listed are refused now (`additionalProperties: false`)".into());
    }
    for (name, wide_property) in wide_properties {
        let child = format!("{path}/properties/{name}");
        match (narrow_properties.get(name), narrow_additional) {
            (Some(narrow_property), _) => {
                narrowed(wide_property, narrow_property, &child, verb, findings)
            }
            (None, Some(Value::Bool(false))) => findings.reasons.push(format!(
                "{at}: property `{name}` is gone while `additionalProperties` is false"
            )),
            (None, Some(additional)) => narrowed(wide_property, additional, &child, verb, findings),
            (None, None) => {}
        }
    }
    if let (Some(wide_items), Some(narrow_items)) = (wide.get("items"), narrow.get("items")) {
        narrowed(
            wide_items,
            narrow_items,
            &format!("{path}/items"),
            verb,
            findings,
        );
    } else if let (None, Some(narrow_items)) = (wide.get("items"), narrow.get("items")) {
        narrowed(
            &Value::Bool(true),
            narrow_items,
            &format!("{path}/items"),
            verb,
            findings,
        );
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
    verb: &str,
    reason: &mut impl FnMut(String),
) {
    let Some(narrow_types) = type_set(narrow) else {
        return;
    };
    let admits = |t: &str| {
        narrow_types.iter().any(|n| n == t)
            || (t == "integer" && narrow_types.iter().any(|n| n == "number"))
    };
    match type_set(wide) {
        None => reason(format!(
            "only {} now, where the other version {verb} any type",
            narrow_types.join(" or ")
        )),
        Some(wide_types) => {
            for lost in wide_types.iter().filter(|t| !admits(t)) {
                reason(format!(
                    "type {lost} is refused now (only {})",
                    narrow_types.join(" or ")
                ));
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
    verb: &str,
    reason: &mut impl FnMut(String),
) {
    let Some(narrow_values) = value_set(narrow) else {
        return;
    };
    match value_set(wide) {
        None => reason(format!(
            "only the values {} now, where the other version {verb} any",
            Value::Array(narrow_values)
        )),
        Some(wide_values) => {
            let lost: Vec<Value> = wide_values
                .into_iter()
                .filter(|v| !narrow_values.contains(v))
                .collect();
            if !lost.is_empty() {
                reason(format!("the values {} are refused now", Value::Array(lost)));
            }
        }
    }
}

/// Lower bounds that must not rise and upper bounds that must not fall.
fn bounds(wide: &Map<String, Value>, narrow: &Map<String, Value>, reason: &mut impl FnMut(String)) {
    const LOWER: [&str; 4] = ["minimum", "exclusiveMinimum", "minLength", "minItems"];
    const UPPER: [&str; 4] = ["maximum", "exclusiveMaximum", "maxLength", "maxItems"];
    for (keywords, tighter) in [(LOWER, true), (UPPER, false)] {
        for keyword in keywords {
            let Some(new) = narrow.get(keyword).and_then(Value::as_f64) else {
                continue;
            };
            match wide.get(keyword).and_then(Value::as_f64) {
                None => reason(format!("`{keyword}: {new}` is new")),
                Some(old) if (tighter && new > old) || (!tighter && new < old) => {
                    reason(format!("`{keyword}` went from {old} to {new}"))
                }
                Some(_) => {}
            }
        }
    }
    for keyword in ["pattern", "format"] {
        if let Some(new) = narrow.get(keyword)
            && wide.get(keyword) != Some(new)
        {
            reason(format!("`{keyword}` is {new} now"));
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
