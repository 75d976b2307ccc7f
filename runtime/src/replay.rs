//! `nudge replay <rule>`: backtest a stored rule (by id, optionally an older `--version`) or a
//! rule file (a draft) over the events stored in `NUDGE_EVENTS`, and print the report as JSON.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use nudge_rules::calendar::parse_rfc3339;
use nudge_rules::duration::parse_duration;
use nudge_rules::file::parse_rule_file;
use nudge_rules::{Rule, Sandbox};

use crate::backtest::{self, Backtest};
use crate::clock;
use crate::config::Settings;
use crate::rulestore::RuleStore;
use crate::topology;
use crate::versioned::VersionedStore;

pub struct Replay<'a> {
    /// A rule id, or the path of a `.toml` / `.rhai` rule file.
    pub rule: &'a str,
    pub version: Option<u64>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub last: &'a str,
    pub sample: Option<usize>,
}

pub async fn run(settings: &Settings, replay: Replay<'_>) -> anyhow::Result<i32> {
    let url = settings
        .nats_url
        .clone()
        .context("no NATS URL: pass --nats-url or set NUDGE_NATS_URL")?;
    let (_client, js) = topology::connect(&url, settings).await?;
    // No plugin host here: a rule calling `plugin(..)` fails, and the report counts it.
    let sandbox = Arc::new(Sandbox::new(settings.rule_limits()));
    let rule = if Path::new(replay.rule).is_file() {
        let text = std::fs::read_to_string(replay.rule)?;
        let (id, spec) = parse_rule_file(replay.rule, &text)?;
        Rule::unsaved(id, spec, "draft")
    } else {
        let store = RuleStore::new(
            VersionedStore::new(
                js.get_key_value(topology::RULES_BUCKET).await?,
                js.get_key_value(topology::RULE_VERSIONS_BUCKET).await?,
            ),
            sandbox.clone(),
        );
        match replay.version {
            Some(version) => store.version(replay.rule, version).await?.record,
            None => store.get(replay.rule).await?,
        }
    };
    let rule = backtest::compile(&sandbox, rule)?;
    let to_ms = match replay.to {
        Some(to) => parse_rfc3339(to).map_err(|m| anyhow::anyhow!("--to: {m}"))?,
        None => clock::system().now_ms(),
    };
    let from_ms = match replay.from {
        Some(from) => parse_rfc3339(from).map_err(|m| anyhow::anyhow!("--from: {m}"))?,
        None => {
            let last = parse_duration(replay.last).map_err(|m| anyhow::anyhow!("--last: {m}"))?;
            to_ms - i64::try_from(last.as_millis()).unwrap_or(i64::MAX / 2)
        }
    };
    let outcome = backtest::run(
        &js,
        Backtest {
            sandbox,
            rule,
            policy: Arc::new(settings.policy()?),
            limits: settings.state_limits(),
            from_ms,
            to_ms,
            sample: replay.sample.unwrap_or(settings.backtest_sample),
            max_events: settings.backtest_max_events,
        },
    )
    .await?;
    eprintln!(
        "{}: {} events in {} ms ({} events/s), {} matched, {} actions",
        outcome.rule,
        outcome.report.events_scanned,
        outcome.elapsed_ms,
        outcome.events_per_second,
        outcome.report.events_matched,
        outcome.report.actions_total
    );
    println!("{}", serde_json::to_string_pretty(&outcome)?);
    Ok(0)
}
