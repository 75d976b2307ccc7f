//! Backtesting: one rule (a saved version or an unsaved draft) over the events stored in
//! `NUDGE_EVENTS` for a time range, through the core's in-memory simulation — throwaway
//! profiles, timers on the simulated clock, the live policy — publishing nothing.
//!
//! An ordered consumer reads and decodes the range in stream order; a blocking thread owns the
//! simulation and decides the events while the next batch is read and decoded. The simulated clock is each event's
//! `time` (the stream's timestamp when it has none), never going backwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use nudge_rules::calendar::{parse_rfc3339, rfc3339};
use nudge_rules::simulate::{Report, Simulation};
use nudge_rules::{CloudEvent, CompiledRule, Decider, Policy, Rule, RuleSet, Sandbox, StateLimits};
use serde::Serialize;
use time::OffsetDateTime;

use crate::topology::EVENTS_STREAM;

/// Stored events handed to the simulation at once.
const BATCH_EVENTS: usize = 1_024;
/// A range whose end is past the stream's last message ends when nothing arrives for this long.
const IDLE_END: Duration = Duration::from_secs(2);

pub struct Backtest {
    /// The sandbox the rule was compiled with (the live one: rules may call plugins).
    pub sandbox: Arc<Sandbox>,
    pub rule: Arc<CompiledRule>,
    pub policy: Arc<Policy>,
    pub limits: StateLimits,
    pub from_ms: i64,
    pub to_ms: i64,
    pub sample: usize,
    pub max_events: u64,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    /// `<id>@v<version>` (`@v0` for a draft).
    pub rule: String,
    pub from: String,
    pub to: String,
    #[serde(flatten)]
    pub report: Report,
    /// Stored events that are not valid CloudEvents (the live pipeline sends them to the DLQ).
    pub events_invalid: u64,
    /// True when `backtest_max_events` stopped the run before `to`.
    pub truncated: bool,
    pub elapsed_ms: u64,
    pub events_per_second: u64,
}

/// Decoded on the reading side, so decoding and deciding use both cores.
type Batch = Vec<(i64, Result<CloudEvent, ()>)>;

/// Compiles the rule to backtest. A disabled rule is backtested as if enabled: finding out what
/// it would do before switching it on is the point.
pub fn compile(
    sandbox: &Sandbox,
    mut rule: Rule,
) -> Result<Arc<CompiledRule>, nudge_rules::RuleError> {
    rule.spec.enabled = true;
    CompiledRule::compile(sandbox, rule).map(Arc::new)
}

/// Runs the backtest; the events are read from `js`.
pub async fn run(js: &Context, backtest: Backtest) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Batch>(4);
    let from_ms = backtest.from_ms;
    let to_ms = backtest.to_ms;
    let max_events = backtest.max_events;
    let rule_label = format!("{}@v{}", backtest.rule.rule.id, backtest.rule.rule.version);
    let simulate = tokio::task::spawn_blocking(move || {
        let rules = RuleSet::new(backtest.sandbox.clone()).with_rule(backtest.rule.clone());
        let decider = Decider {
            sandbox: rules.sandbox(),
            policy: &backtest.policy,
            limits: &backtest.limits,
        };
        let mut simulation = Simulation::new(decider, &rules, backtest.sample);
        let mut invalid = 0u64;
        let mut clock_ms = i64::MIN;
        while let Some(batch) = receiver.blocking_recv() {
            for (stored_ms, decoded) in batch {
                let Ok(event) = decoded else {
                    invalid += 1;
                    continue;
                };
                let at_ms = event
                    .time
                    .as_deref()
                    .and_then(|t| parse_rfc3339(t).ok())
                    .unwrap_or(stored_ms);
                clock_ms = clock_ms.max(at_ms);
                simulation.feed(&event, clock_ms);
            }
        }
        simulation.advance(clock_ms.max(to_ms));
        (simulation.finish().0, invalid)
    });
    let read = read_range(js, from_ms, to_ms, max_events, &sender).await;
    drop(sender);
    let (report, events_invalid) = simulate.await?;
    let truncated = read?;
    let elapsed = started.elapsed();
    let scanned = report.events_scanned + events_invalid;
    Ok(Outcome {
        rule: rule_label,
        from: rfc3339(from_ms),
        to: rfc3339(to_ms),
        report,
        events_invalid,
        truncated,
        elapsed_ms: elapsed.as_millis() as u64,
        events_per_second: (scanned as f64 / elapsed.as_secs_f64().max(1e-9)) as u64,
    })
}

/// Sends the stored events of `[from_ms, to_ms]` in batches; answers whether `max_events`
/// cut the range short.
async fn read_range(
    js: &Context,
    from_ms: i64,
    to_ms: i64,
    max_events: u64,
    sender: &tokio::sync::mpsc::Sender<Batch>,
) -> anyhow::Result<bool> {
    let mut stream = js.get_stream(EVENTS_STREAM).await?;
    let last_ms = stream
        .info()
        .await?
        .state
        .last_timestamp
        .unix_timestamp_nanos()
        / 1_000_000;
    if stream.cached_info().state.messages == 0 || last_ms < i128::from(from_ms) {
        return Ok(false);
    }
    let start_time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(from_ms) * 1_000_000)
        .context("`from` is out of range")?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartTime { start_time },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?.ready_chunks(BATCH_EVENTS);
    let mut read = 0u64;
    loop {
        let chunk = match tokio::time::timeout(IDLE_END, messages.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) | Err(_) => return Ok(false),
        };
        let mut batch = Vec::with_capacity(chunk.len());
        let mut at_end = false;
        for message in chunk {
            let message = message?;
            let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            let stored_ms = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
            if stored_ms > to_ms {
                at_end = true;
                break;
            }
            at_end = info.pending == 0;
            let decoded = CloudEvent::from_slice(&message.payload).map_err(|_| ());
            batch.push((stored_ms, decoded));
            read += 1;
            if read >= max_events {
                sender.send(batch).await.ok();
                return Ok(!at_end);
            }
        }
        if sender.send(batch).await.is_err() {
            anyhow::bail!("the simulation stopped");
        }
        if at_end {
            return Ok(false);
        }
    }
}
