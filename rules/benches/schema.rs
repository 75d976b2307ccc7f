//! Criterion benchmarks of event schemas: validating one event's data against a typical
//! 10-field schema (the cost every event of a planned type pays), a violating event (its
//! violations collected), and checking a rule's reads against the schemas.
//!
//! Run: `cargo bench -p nudge-rules --bench schema`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use nudge_rules::schema::{
    Compatibility, CompiledSchema, EventSchema, Mode, SchemaSet, SchemaSpec, Unplanned, data_reads,
};
use nudge_rules::{CloudEvent, Limits, Pattern, Sandbox};
use serde_json::{Value, json};

/// Ten fields, as a shop's cart event has them: strings, numbers, an enum, formats, an array
/// of objects.
fn cart_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "cart_id": {"type": "string"},
            "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
            "total": {"type": "number", "minimum": 0},
            "subtotal": {"type": "number"},
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "sku": {"type": "string"}, "qty": {"type": "integer"}, "price": {"type": "number"}
            }, "required": ["sku", "qty"]}},
            "channel": {"type": "string"},
            "campaign": {"type": "string"},
            "coupon": {"type": ["string", "null"]},
            "at": {"type": "string", "format": "date-time"},
            "email": {"type": "string", "format": "email"}
        },
        "required": ["cart_id", "currency", "total", "items"]
    })
}

fn cart_event(total: Value) -> CloudEvent {
    CloudEvent::from_value(json!({
        "specversion": "1.0", "id": "evt-1", "source": "https://shop.example/cart",
        "type": "cart.updated", "subject": "user-42",
        "data": {"cart_id": "c-981", "currency": "EUR", "total": total, "subtotal": 120.0,
            "items": [{"sku": "sku-1", "qty": 1, "price": 99.0}, {"sku": "sku-2", "qty": 2, "price": 14.75}],
            "channel": "web", "campaign": "autumn-sale", "coupon": null,
            "at": "2026-11-27T10:00:00Z", "email": "ada@example.com"}
    }))
    .expect("valid event")
}

fn benches(c: &mut Criterion) {
    let mut set = SchemaSet::new(Unplanned::Allow, 10);
    let schema = EventSchema {
        event_type: "cart.updated".into(),
        spec: SchemaSpec {
            schema: cart_schema(),
            mode: Mode::Block,
            compatibility: Compatibility::Backward,
        },
        version: 1,
        updated_by: "bench".into(),
        updated_at: String::new(),
    };
    set.insert(
        &schema,
        Arc::new(CompiledSchema::compile(&cart_schema()).unwrap()),
    );
    let valid = cart_event(json!(128.5));
    assert!(set.check(&valid).is_none());
    c.bench_function("schema: validate a valid 10-field event", |b| {
        b.iter(|| black_box(set.check(black_box(&valid))))
    });
    let invalid = cart_event(json!("128.5"));
    assert!(set.check(&invalid).is_some());
    c.bench_function(
        "schema: validate a violating event (violations named)",
        |b| b.iter(|| black_box(set.check(black_box(&invalid)))),
    );
    let unplanned = CloudEvent {
        event_type: "page.viewed".into(),
        ..valid.clone()
    };
    c.bench_function("schema: an event of a type with no schema", |b| {
        b.iter(|| black_box(set.check(black_box(&unplanned))))
    });
    let sandbox = Sandbox::new(Limits::default());
    let ast = sandbox
        .compile("if event.data.totl > 100 && event.data.currency == \"EUR\" { push(#{ title: `${event.data.items[0].sku}` }); }")
        .unwrap();
    let triggers = [Pattern::parse("cart.*").unwrap()];
    c.bench_function("schema: check a rule's reads (editor lint)", |b| {
        b.iter(|| black_box(set.check_reads(&data_reads(&ast), &triggers)))
    });
}

criterion_group!(schema, benches);
criterion_main!(schema);
