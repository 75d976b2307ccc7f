//! Plugins from a directory (`plugins_dir`): every `<name>.wasm`, with its optional
//! `<name>.toml` manifest, is stored as plugin `<name>` (underscores become dashes) when its code
//! or manifest differs from the stored version. `nudge up` uses it to load the example plugins.

use std::path::Path;

use anyhow::Context as _;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::manifest::{Manifest, parse_manifest};
use super::store::{PluginStore, PluginWrite};

const ACTOR: &str = "plugins_dir";

/// Stores what changed; answers the names written.
pub async fn store_changed(store: &PluginStore, dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading plugins_dir {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    entries.sort();
    let mut written = Vec::new();
    for path in entries {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let name = stem.replace('_', "-");
        let wasm = Bytes::from(
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        );
        let manifest = read_manifest(&path.with_extension("toml"))?;
        let sha256 = hex::encode(Sha256::digest(&wasm));
        let unchanged = match store.get(&name).await {
            Ok(current) => current.sha256 == sha256 && current.manifest == manifest,
            Err(_) => false,
        };
        if unchanged {
            continue;
        }
        let write = PluginWrite {
            wasm: Some(wasm),
            manifest: Some(manifest),
        };
        store
            .put(&name, write, ACTOR, None)
            .await
            .with_context(|| format!("storing plugin {name} from {}", path.display()))?;
        tracing::info!(plugin = %name, path = %path.display(), "plugin stored from plugins_dir");
        written.push(name);
    }
    Ok(written)
}

fn read_manifest(path: &Path) -> anyhow::Result<Manifest> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            parse_manifest(&text, true).with_context(|| format!("manifest {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
