//! Memory of one `nudge serve` from outside, step by step: idle; with 100 rules; after each of 8
//! plugins is stored (the three example plugins, then the `tiny` fixture under five names: four
//! distinct codes, so the last four cost what a loaded version costs beyond its compiled code);
//! and under load — `FOOTPRINT_EVENTS` (default 50000) realistic events drained through all of
//! them. Each step prints the resident set (anonymous and file-backed) and the peak.
//! Run: `scripts/build-plugins && cargo build --release --bins &&
//! cargo bench -p nudge-tests --bench footprint`.

use std::time::Duration;

use nudge_tests::bench::{RULES, env_number, peak_rss_mib, status_mib};
use nudge_tests::workload::prefill;
use nudge_tests::*;
use serde_json::{Value, json};

/// Lets allocations settle (and the plugin sync finish) before a reading.
const SETTLE: Duration = Duration::from_secs(3);

fn manifest(plugin_dir: &str) -> Value {
    let path = format!(
        "{}/../plugins/{plugin_dir}/plugin.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("plugin.toml");
    let table: toml::Table = text.parse().expect("plugin.toml is TOML");
    serde_json::to_value(table).expect("manifest as JSON")
}

async fn reading(nudge: &Nudge, step: &str) -> Value {
    tokio::time::sleep(SETTLE).await;
    let pid = nudge.pid().to_string();
    let row = json!({
        "step": step,
        "rss_mib": status_mib(&pid, "VmRSS:").round(),
        "anonymous_mib": status_mib(&pid, "RssAnon:").round(),
        "file_mib": status_mib(&pid, "RssFile:").round(),
        "peak_mib": peak_rss_mib(&pid).round(),
    });
    println!("{row}");
    row
}

fn main() {
    let events = env_number("FOOTPRINT_EVENTS", 50_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let nats = NatsServer::start();
        let js = nats.jetstream().await;
        let nudge = Nudge::start(&nats, &[]).await;
        let mut rows = vec![reading(&nudge, "idle").await];
        for copy in 0..10 {
            for (id, trigger, script) in RULES {
                let id = format!("{id}-{copy}");
                nudge
                    .put_rule(
                        &id,
                        json!({"name": id, "triggers": [trigger], "script": script}),
                    )
                    .await;
            }
        }
        rows.push(reading(&nudge, "100 rules").await);
        let examples = [
            ("personalize-offer", "personalize_offer"),
            ("push-compose", "push_compose"),
            ("dynamic-pricing", "dynamic_pricing"),
        ];
        for (name, crate_name) in examples {
            nudge
                .put_plugin(name, plugin_wasm(crate_name), manifest(name))
                .await;
            rows.push(reading(&nudge, &format!("+ plugin {name}")).await);
        }
        let types = [
            "cart.updated",
            "product.viewed",
            "order.placed",
            "user.registered",
            ">",
        ];
        for (copy, trigger) in types.iter().enumerate() {
            let name = format!("tiny-{copy}");
            nudge
                .put_plugin(&name, plugin_wasm("tiny"), json!({ "triggers": [trigger] }))
                .await;
            rows.push(reading(&nudge, &format!("+ plugin {name} ({trigger})")).await);
        }
        prefill(&js, "", 0, events).await;
        wait_drained(&js, Duration::from_secs(900)).await;
        rows.push(reading(&nudge, &format!("after draining {events} events")).await);
        assert!(nudge.stop().await);
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "steps": rows })).expect("summary")
        );
    });
}
