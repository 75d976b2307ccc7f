//! Criterion: one call of the tiny plug-in under Extism with a timeout (Extism's epoch
//! deadline) and a memory cap, the event passed as its CloudEvent JSON and the action returned as
//! JSON. The counterpart of `cargo bench -p nudge --bench plugin_call`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use extism::{Manifest, Plugin, Wasm};

fn benches(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/wasm32-unknown-unknown/release/extism_guest.wasm");
    let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (./run builds it)", path.display()));
    let manifest = Manifest::new([Wasm::data(wasm)])
        .with_timeout(Duration::from_millis(50))
        .with_memory_max(1024);
    let mut plugin = Plugin::new(&manifest, [], false).expect("extism plug-in");
    let event = serde_json::json!({
        "specversion": "1.0", "id": "evt-123456", "source": "https://shop.example/catalog",
        "type": "product.viewed", "subject": "user-42", "time": "2026-11-27T10:00:00Z",
        "datacontenttype": "application/json",
        "data": {"product_id": "sku-1", "price": 99.0, "currency": "EUR", "category": "shoes"}
    })
    .to_string();
    c.bench_function("extism: call, tiny guest (same logic)", |b| {
        b.iter(|| {
            let out: &[u8] = plugin.call("handle", black_box(event.as_bytes())).expect("ok");
            black_box(out.len())
        })
    });
}

criterion_group!(extism_benches, benches);
criterion_main!(extism_benches);
