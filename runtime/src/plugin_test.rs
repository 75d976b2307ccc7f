//! `nudge plugin test <file.wasm> --event <file>`: run a plugin through the real host, offline,
//! and print its actions with what the call cost: wall time, fuel and peak memory.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use nudge_rules::{CloudEvent, Profile};

use crate::config::Settings;
use crate::plugin::dispatch::{to_actions, wit_event, wit_profile};
use crate::plugin::manifest::{Manifest, PluginRecord, parse_manifest};
use crate::plugin::set::LoadedPlugin;
use crate::plugin::{CallReport, PluginHost};
use crate::rulestore::now_rfc3339;

pub struct PluginTest<'a> {
    pub wasm: &'a Path,
    pub event: Option<&'a Path>,
    pub profile: Option<&'a Path>,
    /// A manifest (`.toml`) whose `config` the plugin gets.
    pub manifest: Option<&'a Path>,
    /// JSON input for the `call` export instead of an event.
    pub input: Option<&'a str>,
}

/// Returns the exit code: 0 when the call succeeded, 1 when the plugin was refused or failed.
pub fn run(settings: &Settings, test: PluginTest) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    let shown = test.wasm.display();
    let wasm = std::fs::read(test.wasm).with_context(|| format!("reading {shown}"))?;
    let manifest = match test.manifest {
        Some(path) => parse_manifest(&std::fs::read_to_string(path)?, true)
            .with_context(|| format!("manifest {}", path.display()))?,
        None => Manifest::default(),
    };
    let mut limits = settings.plugin_limits();
    limits.cache_dir = None;
    // Metered, so the fuel a call used can be reported even when no budget is set.
    let host = PluginHost::new(limits, true)?;
    let compile_started = Instant::now();
    let code = match host.compile(&wasm) {
        Ok(code) => code,
        Err(reason) => {
            eprintln!("{shown}: refused: {reason}");
            return Ok(1);
        }
    };
    let compile_ms = compile_started.elapsed().as_millis();
    let name = test
        .wasm
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .replace('_', "-");
    let record = PluginRecord {
        name: name.clone(),
        version: 0,
        sha256: code.sha256.clone(),
        size_bytes: wasm.len() as u64,
        contract: code.contract_version().to_owned(),
        manifest,
        updated_by: "local".into(),
        updated_at: now_rfc3339(),
    };
    let plugin = LoadedPlugin::new(record, code);
    let (failure, report) = if let Some(input) = test.input {
        let input: serde_json::Value =
            serde_json::from_str(input).context("--input is not JSON")?;
        let (result, report) = host.call(&plugin.instances, &input.to_string());
        match result {
            Ok(output) => {
                writeln!(out, "{output}")?;
                (None, report)
            }
            Err(failure) => (Some(failure), report),
        }
    } else {
        let event_path = test
            .event
            .context("pass --event <file.json> (or --input <json> for the call export)")?;
        let event_text = std::fs::read(event_path)
            .with_context(|| format!("reading {}", event_path.display()))?;
        let event = CloudEvent::from_slice(&event_text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", event_path.display()))?;
        let profile = match test.profile {
            Some(path) => serde_json::from_slice(&std::fs::read(path)?)
                .with_context(|| format!("{} is not a profile", path.display()))?,
            None => Profile::new(&event.subject),
        };
        let (result, report) = host.handle(
            &plugin.instances,
            &wit_event(&event),
            &wit_profile(&profile),
        );
        match result.and_then(|actions| to_actions(&plugin, actions)) {
            Ok(actions) => {
                let time = now_rfc3339();
                for action in &actions {
                    writeln!(
                        out,
                        "{}",
                        serde_json::to_string_pretty(&action.to_cloudevent(&event, &time))?
                    )?;
                }
                if actions.is_empty() {
                    writeln!(out, "plugin {name} ran and returned no action")?;
                }
                (None, report)
            }
            Err(failure) => (Some(failure), report),
        }
    };
    for (level, line) in &report.logs {
        eprintln!("{level}: {line}");
    }
    writeln!(out, "{}", summary(&name, compile_ms, &report, &host))?;
    if let Some(failure) = failure {
        eprintln!(
            "{shown}: plugin failed ({}): {}",
            failure.reason, failure.message
        );
        return Ok(1);
    }
    Ok(0)
}

fn summary(name: &str, compile_ms: u128, report: &CallReport, host: &PluginHost) -> String {
    let limits = host.limits();
    let fuel = report
        .fuel_consumed
        .map_or("n/a".to_owned(), |f| f.to_string());
    let fuel_budget = if limits.fuel > 0 {
        limits.fuel.to_string()
    } else {
        "unlimited".to_owned()
    };
    format!(
        "plugin {name}: wall time {} µs, fuel consumed {fuel} (budget {fuel_budget}), peak memory {} KiB (cap {} KiB), compiled in {compile_ms} ms",
        report.wall_us,
        report.peak_memory_bytes / 1024,
        limits.max_memory_bytes / 1024,
    )
}
