//! `nudge plugin new <name>`: scaffolds a plugin crate that builds for `wasm32-wasip2` and passes
//! its own test as generated: Cargo.toml, src/lib.rs, plugin.toml (manifest), an example event.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use nudge_rules::rule::validate_key;

/// The SDK of the source tree this binary was built from; `--sdk` overrides it.
pub fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk")
}

/// Writes the crate into `dir/<name>`; answers its path.
pub fn run(name: &str, dir: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    validate_key("name", name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the SDK is not at {} (pass --sdk <path to nudge/sdk>)",
            sdk.display()
        )
    })?;
    let root = dir.join(name);
    if root.exists() {
        anyhow::bail!("{} already exists", root.display());
    }
    let crate_name = name.replace('-', "_");
    let type_name: String = name
        .split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or(String::new(), |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    let sdk_toml = sdk.display().to_string().replace('\\', "/");
    let files = [
        (
            "Cargo.toml",
            CARGO_TOML
                .replace("{name}", name)
                .replace("{sdk}", &sdk_toml),
        ),
        (
            "src/lib.rs",
            LIB_RS
                .replace("{Type}", &type_name)
                .replace("{crate}", &crate_name),
        ),
        ("plugin.toml", MANIFEST.replace("{name}", name)),
        ("events/cart.updated.json", EVENT.to_owned()),
        (".gitignore", "target/\n".to_owned()),
        (
            "README.md",
            README
                .replace("{name}", name)
                .replace("{crate}", &crate_name),
        ),
    ];
    for (path, text) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(root)
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

# A nudge plugin: a WebAssembly component built with `cargo build --release --target wasm32-wasip2`.
[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
nudge-sdk = { path = "{sdk}" }

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true

[workspace]
"#;

const LIB_RS: &str = r#"//! A nudge plugin. `handle` runs for every event matching `triggers` in plugin.toml; `call` runs
//! when a rule calls `plugin("<name>", input)`.

use nudge_sdk::{Action, Event, Plugin, Profile, Result, Value, json};

pub struct {Type};

impl Plugin for {Type} {
    fn handle(event: &Event, profile: &Profile) -> Result<Vec<Action>> {
        let items = event.data["items"].as_u64().unwrap_or(0);
        if items == 0 || !profile.consents_to("push") {
            return Ok(vec![]);
        }
        let title = nudge_sdk::config()["title"]
            .as_str()
            .unwrap_or("Your cart is waiting")
            .to_owned();
        nudge_sdk::log::info(format!("{items} items in the cart of {}", event.subject));
        Ok(vec![Action::push(json!({ "title": title, "body": format!("{items} items left in your cart") }))])
    }

    fn call(input: Value) -> Result<Value> {
        Ok(json!({ "echo": input }))
    }
}

nudge_sdk::export_plugin!({Type});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cart_with_items_gets_a_push() {
        let event = Event::new("cart.updated", "user-42", json!({ "items": 2 }));
        let actions = {Type}::handle(&event, &Profile::new("user-42")).unwrap();
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].payload["body"], "2 items left in your cart");
    }

    #[test]
    fn an_empty_cart_gets_nothing() {
        let event = Event::new("cart.updated", "user-42", json!({ "items": 0 }));
        assert!({Type}::handle(&event, &Profile::new("user-42")).unwrap().is_empty());
    }
}
"#;

const MANIFEST: &str = r#"# The manifest of plugin {name}: which events it handles and its configuration.
description = "Reminds a profile of its cart"
triggers = ["cart.updated"]
enabled = true

[config]
title = "Your cart is waiting"
"#;

const EVENT: &str = r#"{
  "specversion": "1.0",
  "id": "evt-1",
  "source": "shop",
  "type": "cart.updated",
  "subject": "user-42",
  "data": { "items": 2, "value": 59.5 }
}
"#;

const README: &str = r#"# {name}

A nudge plugin.

    cargo test                                          # its unit tests, natively
    cargo build --release --target wasm32-wasip2        # the component
    nudge plugin test target/wasm32-wasip2/release/{crate}.wasm --event events/cart.updated.json --manifest plugin.toml
    curl -X PUT http://127.0.0.1:8080/api/plugins/{name} -H "Authorization: Bearer $NUDGE_ADMIN_TOKEN" \
      -F wasm=@target/wasm32-wasip2/release/{crate}.wasm -F manifest=@plugin.toml
"#;
