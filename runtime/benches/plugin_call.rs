//! Criterion: the per-event cost of a plugin through the real host — a fresh instance from the
//! pooling allocator, epoch interruption on, the event and profile lowered into the guest, one
//! action lifted back and shaped as a nudge action. The guest is `plugins/fixtures/tiny` (parse
//! the event, return one action); `tests/plugin-bench` runs the same logic under Extism.
//!
//! Run: `scripts/build-plugins && cargo bench -p nudge --bench plugin_call`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use nudge::plugin::dispatch::{wit_event, wit_profile};
use nudge::plugin::manifest::{Manifest, PluginRecord};
use nudge::plugin::set::LoadedPlugin;
use nudge::plugin::{PluginHost, PluginLimits, PluginSet, Plugins};
use nudge_rules::{CloudEvent, Profile};
use serde_json::json;

fn tiny_wasm() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins/wasm32-wasip2/release/tiny.wasm");
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-plugins)", path.display()))
}

pub fn view_event() -> CloudEvent {
    CloudEvent::from_value(json!({
        "specversion": "1.0", "id": "evt-123456", "source": "https://shop.example/catalog",
        "type": "product.viewed", "subject": "user-42", "time": "2026-11-27T10:00:00Z",
        "datacontenttype": "application/json",
        "data": {"product_id": "sku-1", "price": 99.0, "currency": "EUR", "category": "shoes"}
    }))
    .expect("valid event")
}

fn benches(c: &mut Criterion) {
    let limits = PluginLimits {
        cache_dir: None,
        ..PluginLimits::default()
    };
    let host = Arc::new(PluginHost::new(limits, false).expect("host"));
    let code = host.compile(&tiny_wasm()).expect("tiny compiles");
    let record = PluginRecord {
        name: "tiny".into(),
        version: 1,
        sha256: code.sha256.clone(),
        size_bytes: 0,
        contract: code.contract_version().to_owned(),
        manifest: Manifest {
            triggers: vec!["product.*".into()],
            ..Manifest::default()
        },
        updated_by: "bench".into(),
        updated_at: String::new(),
    };
    let plugin = Arc::new(LoadedPlugin::new(record, code));
    let event = view_event();
    let profile = Profile::new("user-42");
    let (wit_e, wit_p) = (wit_event(&event), wit_profile(&profile));

    c.bench_function(
        "plugin: handle, tiny guest (instantiate + call + lift)",
        |b| {
            b.iter(|| {
                let (result, _) = host.handle(&plugin.instances, black_box(&wit_e), &wit_p);
                black_box(result.expect("ok"))
            })
        },
    );

    let live = Arc::new(ArcSwap::from_pointee(
        PluginSet::default().with_plugin(plugin.clone()),
    ));
    let plugins = Plugins::new(host.clone(), live);
    c.bench_function(
        "plugin: per event, tiny guest (route + convert + call + shape)",
        |b| {
            b.iter(|| {
                black_box(plugins.handle_event(black_box(&event), &profile))
                    .actions
                    .len()
            })
        },
    );
}

criterion_group!(plugin_benches, benches);
criterion_main!(plugin_benches);
