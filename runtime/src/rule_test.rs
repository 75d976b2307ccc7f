//! `nudge rule test <rule> --event <file>`: evaluate a rule file against an event file, offline.
//! Prints the actions as the CloudEvents nudge would publish; errors carry the script line.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use nudge_rules::decide::dry_run;
use nudge_rules::file::parse_rule_file;
use nudge_rules::{CloudEvent, CompiledRule, Decider, Profile, Rule, RuleError, Sandbox};

use crate::clock;
use crate::config::Settings;

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
    let (policy, limits) = (settings.policy()?, settings.state_limits());
    let decider = Decider {
        sandbox: &sandbox,
        policy: &policy,
        limits: &limits,
    };
    let decision = dry_run(
        &decider,
        &compiled,
        &event,
        profile,
        clock::system().now_ms(),
    );
    for line in &decision.logs {
        eprintln!("print: {line}");
    }
    for message in &decision.publish {
        let action: serde_json::Value = serde_json::from_str(&message.body)?;
        writeln!(out, "{}", serde_json::to_string_pretty(&action)?)?;
    }
    for held in &decision.trace.held {
        eprintln!(
            "held by quiet hours until {}: {} action",
            held.until.as_deref().unwrap_or("?"),
            held.channel.unwrap_or("?")
        );
    }
    for item in decision
        .trace
        .suppressed
        .iter()
        .filter(|i| i.channel.is_some())
    {
        eprintln!(
            "suppressed ({}): {}",
            item.reason.unwrap_or("?"),
            item.detail.as_deref().unwrap_or("")
        );
    }
    for timer in &decision.trace.timers_scheduled {
        eprintln!(
            "timer {} scheduled for {}",
            timer.detail.as_deref().unwrap_or("?"),
            timer.until.as_deref().unwrap_or("?")
        );
    }
    if let Some(failure) = decision.failures.first() {
        let line = failure
            .failure
            .line
            .map(|l| format!(" at script line {l}"))
            .unwrap_or_default();
        eprintln!("{shown}: rule failed{line}: {}", failure.failure.message);
        return Ok(1);
    }
    if decision.publish.is_empty() && decision.trace.held.is_empty() {
        writeln!(out, "rule {} ran and fired no action", compiled.rule.id)?;
    }
    Ok(0)
}
