//! The plugin developer's loop: `nudge plugin new` scaffolds a crate that builds for
//! wasm32-wasip2 and passes its own test as generated; `nudge plugin test` runs any plugin
//! through the real host and reports what the call cost.

use std::path::Path;
use std::process::Command;

use nudge_tests::*;
use serde_json::{Value, json};

fn nudge(args: &[&str]) -> std::process::Output {
    Command::new(nudge_binary()).args(args).output().unwrap()
}

/// `nudge plugin test <wasm> --event <event> [extra…]`.
fn plugin_test(wasm: &Path, event: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(nudge_binary())
        .args(["plugin", "test"])
        .arg(wasm)
        .arg("--event")
        .arg(event)
        .args(extra)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn plugin_test_prints_actions_and_the_cost_of_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let event_path = dir.path().join("view.json");
    let view = event(
        "v1",
        "product.viewed",
        "user-7",
        json!({ "product_id": "sku-1", "price": 100, "views": 5 }),
    );
    std::fs::write(&event_path, view.to_string()).unwrap();
    let wasm = plugin_wasm_dir().join("dynamic_pricing.wasm");
    let output = plugin_test(&wasm, &event_path, &[]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    let (action, summary) = stdout
        .rsplit_once("}\n")
        .expect("an action, then the summary");
    let action: Value = serde_json::from_str(&format!("{action}}}")).expect("the action as JSON");
    assert_eq!(action["type"], "nudge.action.price");
    assert_eq!(action["data"]["price"], 95.0);
    for part in ["wall time", "fuel consumed", "peak memory"] {
        assert!(summary.contains(part), "{summary}");
    }
    assert!(
        !summary.contains("fuel consumed n/a"),
        "fuel is metered: {summary}"
    );
}

#[test]
fn plugin_test_reports_a_limit_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let event_path = dir.path().join("loop.json");
    std::fs::write(
        &event_path,
        event("l1", "hostile.loop", "u", json!({})).to_string(),
    )
    .unwrap();
    let wasm = plugin_wasm_dir().join("hostile.wasm");
    let output = plugin_test(&wasm, &event_path, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("plugin_deadline_ms"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_scaffolded_plugin_builds_passes_its_test_and_runs_in_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let output = nudge(&[
        "plugin",
        "new",
        "cart-nudger",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let crate_dir = dir.path().join("cart-nudger");
    // The plugins' own target directory: shared build cache, and not the one this test runs from.
    let target = repo().join("target/plugins");
    let cargo = |args: &[&str]| {
        let output = Command::new(repo().join("scripts/wasm-cargo"))
            .args(args)
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "wasm-cargo {args:?}: {}",
            text(&output.stderr)
        );
    };
    cargo(&["build", "--release"]);
    let native_test = Command::new("cargo")
        .arg("test")
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(
        native_test.status.success(),
        "{}",
        text(&native_test.stderr)
    );
    assert!(
        text(&native_test.stdout).contains("2 passed"),
        "{}",
        text(&native_test.stdout)
    );

    let wasm = target.join("wasm32-wasip2/release/cart_nudger.wasm");
    let event = crate_dir.join("events/cart.updated.json");
    let manifest = crate_dir.join("plugin.toml");
    let output = plugin_test(&wasm, &event, &["--manifest", manifest.to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("\"title\": \"Your cart is waiting\""),
        "{stdout}"
    );
    assert!(
        text(&output.stderr).contains("2 items in the cart of user-42"),
        "the guest's log line: {}",
        text(&output.stderr)
    );
}
