use serde_json::{Value, json};

use super::compat::compare;
use super::fields::{Field, check};
use super::infer::infer;
use super::reads::data_reads;
use super::*;
use crate::{Limits, Sandbox};
use std::sync::Arc;

fn cart_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "total": { "type": "number", "minimum": 0 },
            "currency": { "type": "string", "enum": ["EUR", "USD"] },
            "items": { "type": "array", "items": {
                "type": "object",
                "properties": { "sku": { "type": "string" }, "qty": { "type": "integer" } },
                "required": ["sku"]
            } },
            "customer": { "type": "object", "properties": {
                "email": { "type": "string", "format": "email" }
            } },
            "at": { "type": "string", "format": "date-time" }
        },
        "required": ["total", "currency"]
    })
}

fn event(data: Value) -> CloudEvent {
    CloudEvent::from_value(json!({
        "specversion": "1.0", "id": "e1", "source": "shop", "type": "cart.updated",
        "subject": "ada", "data": data
    }))
    .unwrap()
}

fn set(mode: Mode, unplanned: Unplanned) -> SchemaSet {
    let mut set = SchemaSet::new(unplanned, 10);
    let schema = EventSchema {
        event_type: "cart.updated".into(),
        spec: SchemaSpec {
            schema: cart_schema(),
            mode,
            compatibility: Compatibility::Backward,
        },
        version: 1,
        updated_by: "dev".into(),
        updated_at: String::new(),
    };
    set.insert(
        &schema,
        Arc::new(CompiledSchema::compile(&cart_schema()).unwrap()),
    );
    set
}

#[test]
fn violations_name_their_kind_and_paths() {
    let set = set(Mode::Block, Unplanned::Allow);
    assert_eq!(
        set.check(&event(json!({"total": 3, "currency": "EUR"}))),
        None
    );
    let verdict = set
        .check(&event(json!({
            "total": "12", "currency": "GBP", "customer": {"email": "nope"},
            "items": [{"qty": 1}]
        })))
        .unwrap();
    assert!(verdict.block);
    let found: Vec<(&str, &str, &str)> = verdict
        .violations
        .iter()
        .map(|v| {
            (
                v.kind.as_str(),
                v.instance_path.as_str(),
                v.schema_path.as_str(),
            )
        })
        .collect();
    for expected in [
        ("wrong_type", "/total", "/properties/total/type"),
        ("not_in_enum", "/currency", "/properties/currency/enum"),
        (
            "format",
            "/customer/email",
            "/properties/customer/properties/email/format",
        ),
        (
            "missing_required",
            "/items/0/sku",
            "/properties/items/items/required",
        ),
    ] {
        assert!(found.contains(&expected), "{expected:?} in {found:?}");
    }
    let total = verdict
        .violations
        .iter()
        .find(|v| v.kind == "wrong_type")
        .unwrap();
    assert_eq!(total.field(), "data.total");
    assert!(
        total.describe().starts_with("data.total: "),
        "{}",
        total.describe()
    );
}

#[test]
fn modes_unplanned_types_and_dataschema() {
    let bad = event(json!({"total": "12", "currency": "EUR"}));
    assert!(!set(Mode::Warn, Unplanned::Allow).check(&bad).unwrap().block);
    assert_eq!(set(Mode::Off, Unplanned::Allow).check(&bad), None);
    let mut other = bad.clone();
    other.event_type = "page.viewed".into();
    assert_eq!(set(Mode::Block, Unplanned::Allow).check(&other), None);
    let verdict = set(Mode::Block, Unplanned::Block).check(&other).unwrap();
    assert!(verdict.block);
    assert_eq!(verdict.violations[0].kind, "unplanned");
    assert_eq!(verdict.violations[0].field(), "type");
    let mut own = other.clone();
    own.source = crate::decide::TIMER_SOURCE.into();
    assert_eq!(
        set(Mode::Block, Unplanned::Block).check(&own),
        None,
        "nudge's own events pass"
    );
    let mut pinned = event(json!({"total": 1, "currency": "EUR"}));
    pinned.extensions.insert(
        "dataschema".into(),
        json!("https://nudge.example/api/schemas/cart.updated/versions/1"),
    );
    assert_eq!(set(Mode::Block, Unplanned::Allow).check(&pinned), None);
    pinned.extensions.insert(
        "dataschema".into(),
        json!("https://x/api/schemas/cart.updated/versions/7"),
    );
    let verdict = set(Mode::Block, Unplanned::Allow).check(&pinned).unwrap();
    assert_eq!(verdict.violations[0].kind, "unknown_schema_version");
    pinned
        .extensions
        .insert("dataschema".into(), json!("urn:other"));
    let verdict = set(Mode::Warn, Unplanned::Allow).check(&pinned).unwrap();
    assert_eq!(verdict.violations[0].field(), "dataschema");
}

#[test]
fn a_schema_that_is_not_one_is_refused_with_its_place() {
    let error =
        CompiledSchema::compile(&json!({"type": "object", "properties": {"a": {"type": 5}}}))
            .unwrap_err();
    assert!(error.path.contains("/properties/a/type"), "{error}");
    let error =
        CompiledSchema::compile(&json!({"$schema": "http://json-schema.org/draft-04/schema#"}))
            .unwrap_err();
    assert_eq!(error.path, "/$schema");
    assert!(CompiledSchema::compile(&json!([1])).is_err());
}

/// Compatibility decisions: (old, new, backward ok, forward ok).
#[test]
fn compatibility_by_mode() {
    let base = json!({"type": "object", "properties": {
        "total": {"type": "number"}, "currency": {"type": "string", "enum": ["EUR", "USD"]}
    }, "required": ["total"]});
    let with = |patch: Value| {
        let mut schema = base.clone();
        json_patch(&mut schema, patch);
        schema
    };
    let table: Vec<(&str, Value, bool, bool)> = vec![
        ("same", base.clone(), true, true),
        (
            "new optional property",
            with(json!({"properties": {"coupon": {"type": "string"}}})),
            true,
            true,
        ),
        (
            "new required field",
            with(json!({"required": ["total", "currency"]})),
            false,
            true,
        ),
        (
            "required dropped",
            with(json!({"required": []})),
            true,
            false,
        ),
        (
            "narrowed enum",
            with(json!({"properties": {"currency": {"type": "string", "enum": ["EUR"]}}})),
            false,
            true,
        ),
        (
            "widened enum",
            with(
                json!({"properties": {"currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]}}}),
            ),
            true,
            false,
        ),
        (
            "number to integer",
            with(json!({"properties": {"total": {"type": "integer"}}})),
            false,
            true,
        ),
        (
            "closed",
            with(json!({"additionalProperties": false})),
            false,
            true,
        ),
        (
            "new minimum",
            with(json!({"properties": {"total": {"type": "number", "minimum": 1}}})),
            false,
            true,
        ),
    ];
    for (name, new, backward, forward) in table {
        let b = compare(&base, &new, Compatibility::Backward);
        let f = compare(&base, &new, Compatibility::Forward);
        let full = compare(&base, &new, Compatibility::Full);
        assert_eq!(
            b.reasons.is_empty(),
            backward,
            "{name} backward: {:?}",
            b.reasons
        );
        assert_eq!(
            f.reasons.is_empty(),
            forward,
            "{name} forward: {:?}",
            f.reasons
        );
        assert_eq!(full.reasons.is_empty(), backward && forward, "{name} full");
        assert!(compare(&base, &new, Compatibility::None).reasons.is_empty());
    }
    // A property removed while additionalProperties is false: events carrying it are refused.
    let closed = with(json!({"additionalProperties": false}));
    let mut removed = closed.clone();
    removed["properties"]
        .as_object_mut()
        .unwrap()
        .remove("currency");
    let reasons = compare(&closed, &removed, Compatibility::Backward).reasons;
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("lacks property `currency`"),
        "{reasons:?}"
    );
    let reasons = compare(
        &base,
        &with(json!({"required": ["total", "currency"]})),
        Compatibility::Backward,
    )
    .reasons;
    assert_eq!(
        reasons,
        vec!["/: the new version requires `currency`".to_string()]
    );
    let reasons = compare(
        &with(json!({"required": ["total", "currency"]})),
        &base,
        Compatibility::Forward,
    )
    .reasons;
    assert_eq!(
        reasons,
        vec!["/: the previous version requires `currency`".to_string()]
    );
    let typed_extras = with(json!({"additionalProperties": {"type": "string"}}));
    let reasons = compare(&base, &typed_extras, Compatibility::Backward).reasons;
    assert_eq!(
        reasons,
        vec![
            "/additionalProperties: the new version allows only string, the other any type"
                .to_string()
        ]
    );
    let notes = compare(
        &json!({"anyOf": [{}]}),
        &json!({"anyOf": [{}]}),
        Compatibility::Backward,
    )
    .notes;
    assert_eq!(
        notes,
        vec!["/: `anyOf` is not compared structurally".to_string()]
    );
}

/// Merges `patch` into `target` (objects key by key, anything else replaced).
fn json_patch(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                json_patch(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

#[test]
fn an_inferred_draft_accepts_every_event_it_came_from() {
    let samples: Vec<Value> = (0..40u64)
        .map(|i| {
            let mut data = json!({
                "cart_id": format!("c-{i}"),
                "total": if i % 3 == 0 { json!(i) } else { json!(i as f64 + 0.5) },
                "currency": if i.is_multiple_of(2) { "EUR" } else { "USD" },
                "at": format!("2026-11-{:02}T10:00:00Z", 1 + i % 28),
                "customer": {"email": format!("user{i}@example.com"), "id": i},
                "items": (0..(i % 3)).map(|n| json!({"sku": format!("sku-{n}"), "qty": n + 1})).collect::<Vec<_>>(),
            });
            if i % 5 == 0 {
                data["coupon"] = json!(null);
            }
            data
        })
        .collect();
    let draft = infer(&samples);
    let compiled = CompiledSchema::compile(&draft).expect("the draft is a schema");
    for sample in &samples {
        assert_eq!(compiled.violations(sample), vec![], "{sample}");
    }
    assert_eq!(
        draft["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(draft["properties"]["total"]["type"], "number");
    assert_eq!(
        draft["properties"]["currency"]["enum"],
        json!(["EUR", "USD"])
    );
    assert_eq!(draft["properties"]["cart_id"].get("enum"), None);
    assert_eq!(draft["properties"]["at"]["format"], "date-time");
    assert_eq!(
        draft["properties"]["customer"]["properties"]["email"]["format"],
        "email"
    );
    assert_eq!(
        draft["properties"]["customer"]["properties"]["id"]["type"],
        "integer"
    );
    assert_eq!(
        draft["properties"]["items"]["items"]["required"],
        json!(["qty", "sku"])
    );
    let required = draft["required"].as_array().unwrap();
    assert!(required.contains(&json!("total")) && !required.contains(&json!("coupon")));
    assert!(!compiled.is_valid(&json!({"total": "12"})));
}

fn reads_of(script: &str) -> Vec<super::reads::FieldRead> {
    let sandbox = Sandbox::new(Limits::default());
    data_reads(&sandbox.compile(script).unwrap())
}

#[test]
fn the_fields_a_rule_reads_are_found_in_its_ast() {
    let reads = reads_of(
        "let t = event.data.total;\nif event.data[\"currency\"] == \"EUR\" && event.data.items[0].sku != () {\n  print(event.data.customer.email.len());\n}\nlet p = profile.attributes.plan;",
    );
    let dotted: Vec<String> = reads.iter().map(|r| r.dotted()).collect();
    assert_eq!(
        dotted,
        [
            "event.data.total",
            "event.data.currency",
            "event.data.items[].sku",
            "event.data.customer.email"
        ]
    );
    assert_eq!(reads[1].compared_with.map(|c| c.0), Some("string"));
    let counted = reads_of("if event.data.items.len() > 0 { }");
    assert_eq!(counted[0].dotted(), "event.data.items");
    assert_eq!(
        counted[0].compared_with, None,
        "the length is compared, not the array"
    );
}

#[test]
fn a_misspelled_field_is_named_with_the_nearest_known_one() {
    let plan = Field::of(&cart_schema());
    let script = "if event.data.totl > 100 {\n  push(#{ title: \"x\" });\n}\nif event.data.total > \"100\" { }\nlet e = event.data.customer.emial;\nlet s = event.data.items[0].sku;\nlet n = event.data.total.amount;";
    let warnings = check(&reads_of(script), &plan, "cart.updated");
    let fields: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "data.totl",
            "data.total",
            "data.customer.emial",
            "data.total.amount"
        ]
    );
    let typo = &warnings[0];
    assert_eq!((typo.line, typo.column), (1, 15));
    assert_eq!(typo.suggestion.as_deref(), Some("total"));
    assert!(
        typo.message.contains("did you mean `total`?"),
        "{}",
        typo.message
    );
    assert!(
        warnings[1].message.contains("compared here with a string"),
        "{}",
        warnings[1].message
    );
    assert_eq!(warnings[1].line, 4);
    assert_eq!(warnings[2].suggestion.as_deref(), Some("email"));
    assert!(
        warnings[3].message.contains("has no field `amount`"),
        "{}",
        warnings[3].message
    );
    assert!(plan.paths().contains(&"customer.email".to_string()));
    assert!(plan.paths().contains(&"items[].sku".to_string()));
}
