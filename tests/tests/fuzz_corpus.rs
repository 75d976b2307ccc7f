//! Every fuzz target's seeds and every input a fuzzing run found (`tests/fuzz/seeds/<target>/`,
//! `tests/fuzz/findings/<target>/`) replayed through the target in the test command, so a finding
//! once fixed stays fixed; `scripts/fuzz` does the fuzzing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nudge_tests::fuzz::{self, TARGETS};
use nudge_tests::plugin_wasm_dir;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target` on the file's bytes; the panic, if any, is reported with the file.
fn replay(name: &str, target: fuzz::Target, file: &Path) -> Result<(), String> {
    let bytes = std::fs::read(file).expect("a corpus file");
    std::panic::catch_unwind(|| target(&bytes))
        .map_err(|_| format!("{name} broke a promise on {}", file.display()))
}

#[test]
fn every_seed_and_every_past_finding_keeps_its_promises() {
    let mut broken = Vec::new();
    for (name, target) in TARGETS {
        let seeds = files_in(&fuzz_dir().join("seeds").join(name));
        assert!(!seeds.is_empty(), "the {name} target has no seeds");
        let findings = files_in(&fuzz_dir().join("findings").join(name));
        for file in seeds.iter().chain(&findings) {
            broken.extend(replay(name, target, file).err());
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_component_target_compiles_and_calls_real_plugins() {
    let mut plugins = files_in(&plugin_wasm_dir());
    plugins.retain(|p| p.extension().is_some_and(|e| e == "wasm"));
    plugins.extend(files_in(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/fixtures/legacy"),
    ));
    plugins.retain(|p| p.extension().is_some_and(|e| e == "wasm"));
    assert!(plugins.len() > 3, "no plugins built: {plugins:?}");
    for plugin in plugins {
        replay("component", fuzz::component, &plugin).unwrap();
    }
}

/// The targets in `nudge_tests::fuzz`, the fuzz crate's binaries and the seed directories are one
/// set.
#[test]
fn every_target_has_a_libfuzzer_binary_and_seeds() {
    let names: BTreeSet<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    let stems = |dir: &str| -> BTreeSet<String> {
        std::fs::read_dir(fuzz_dir().join(dir))
            .expect("the directory")
            .map(|e| e.expect("an entry").path())
            .map(|p| {
                p.file_stem()
                    .expect("a name")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    };
    assert_eq!(stems("fuzz_targets"), names);
    assert_eq!(stems("seeds"), names);
    let manifest: toml::Value = toml::from_str(
        &std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("the fuzz manifest"),
    )
    .expect("TOML");
    let bins: BTreeSet<String> = manifest["bin"]
        .as_array()
        .expect("[[bin]]")
        .iter()
        .map(|b| b["name"].as_str().expect("a name").to_owned())
        .collect();
    assert_eq!(bins, names);
}
