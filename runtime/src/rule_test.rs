//! `nudge rule test <rule> --event <file>`: evaluate a rule file against an event file, offline.
//! Prints the actions as the CloudEvents nudge would publish; errors carry the script line.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use nudge_rules::file::parse_rule_file;
use nudge_rules::ruleset::evaluate_rules;
use nudge_rules::{CloudEvent, CompiledRule, Profile, Rule, RuleError, Sandbox};

use crate::config::Settings;
use crate::rulestore::now_rfc3339;

/// Returns the process exit code: 0 when the rule ran (fired or not), 1 when it failed.
pub fn run(
    settings: &Settings,
    rule_path: &Path,
    event_path: &Path,
    profile_path: Option<&Path>,
) -> anyhow::Result<i32> {
    // writeln! rather than println!: a closed pipe (`| head`) is an error to report, not a panic.
    let mut out = std::io::stdout().lock();
    let text = std::fs::read_to_string(rule_path)
        .with_context(|| format!("reading {}", rule_path.display()))?;
    let shown = rule_path.display();
    let (id, spec) = match parse_rule_file(&rule_path.to_string_lossy(), &text) {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("{shown}: {error}");
            return Ok(1);
        }
    };
    let event_text =
        std::fs::read(event_path).with_context(|| format!("reading {}", event_path.display()))?;
    let event = CloudEvent::from_slice(&event_text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", event_path.display()))?;
    let profile = match profile_path {
        Some(path) => serde_json::from_slice(&std::fs::read(path)?)
            .with_context(|| format!("{} is not a profile", path.display()))?,
        None => Profile::new(&event.subject),
    };
    let sandbox = Arc::new(Sandbox::new(settings.rule_limits()));
    let rule = Rule::unsaved(id, spec, "local");
    let compiled = match CompiledRule::compile(&sandbox, rule) {
        Ok(compiled) => Arc::new(compiled),
        Err(RuleError::Compile {
            line,
            column,
            message,
        }) => {
            eprintln!("{shown}: script line {line}, column {column}: {message}");
            return Ok(1);
        }
        Err(error) => {
            eprintln!("{shown}: {error}");
            return Ok(1);
        }
    };
    let triggered = compiled.triggers_on(&event.event_type);
    if !triggered {
        writeln!(
            out,
            "rule {} does not trigger on {} (triggers: {})",
            compiled.rule.id,
            event.event_type,
            compiled.rule.spec.triggers.join(", ")
        )?;
        return Ok(0);
    }
    let evaluation = evaluate_rules(&sandbox, &[&compiled], &event, &profile);
    for line in &evaluation.logs {
        eprintln!("print: {line}");
    }
    let time = now_rfc3339();
    for action in &evaluation.actions {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&action.to_cloudevent(&event, &time))?
        )?;
    }
    if let Some(failure) = evaluation.failures.first() {
        let line = failure
            .failure
            .line
            .map(|l| format!(" at script line {l}"))
            .unwrap_or_default();
        eprintln!("{shown}: rule failed{line}: {}", failure.failure.message);
        return Ok(1);
    }
    if evaluation.actions.is_empty() {
        writeln!(out, "rule {} ran and fired no action", compiled.rule.id)?;
    }
    Ok(0)
}
