//! Backtest throughput: stored events per second through `nudge::backtest` (the code behind
//! `nudge replay` and `POST /api/rules/{id}/backtest`), reading `NUDGE_EVENTS` from a real
//! nats-server with an ordered consumer and deciding every event in the simulation.
//!
//! Fills the stream with `BACKTEST_EVENTS` (default 200000) events of the realistic mix over
//! 10,000 profiles, one second apart in event time, then backtests each template that reacts to
//! the mix `BACKTEST_ROUNDS` times (default 3) and prints events/s per round and the median.
//! Run: `cargo bench -p nudge-tests --bench backtest`

use std::sync::Arc;

use nudge::backtest::{self, Backtest};
use nudge::config::Settings;
use nudge_rules::file::{TEMPLATES, parse_rule_file};
use nudge_rules::{Rule, Sandbox};
use nudge_tests::NatsServer;
use nudge_tests::bench::env_number;
use nudge_tests::workload::prefill_at;

const START_MS: i64 = 1_795_000_000_000;

/// The allocator the `nudge` binary (and so `nudge replay` and the API) runs on.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let events = env_number("BACKTEST_EVENTS", 200_000);
    let rounds = env_number("BACKTEST_ROUNDS", 3);
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let settings = Settings::default();
    nudge::topology::ensure_streams(&js, &settings)
        .await
        .expect("streams");
    let time_of = |n: u64| START_MS + n as i64 * 1_000;
    let mean_bytes = prefill_at(&js, "", 0, events, Some(&time_of)).await;
    println!("stored {events} events, {mean_bytes} bytes each on average");

    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let sandbox = Arc::new(Sandbox::new(settings.rule_limits()));
    // First a rule no stored event triggers: the floor (read, decode, profile bookkeeping).
    let idle = (
        "idle.toml",
        "name = \"idle\"\ntriggers = [\"never.happens\"]\nscript = \"1\"\n",
    );
    let cases = std::iter::once(idle).chain(["abandoned-cart", "win-back", "welcome-series"].map(
        |template| {
            *TEMPLATES
                .iter()
                .find(|(f, _)| f.trim_end_matches(".toml") == template)
                .expect("template")
        },
    ));
    for (file, text) in cases {
        let template = file.trim_end_matches(".toml");
        let (id, spec) = parse_rule_file(file, text).expect("template parses");
        let rule = backtest::compile(&sandbox, Rule::unsaved(id, spec, "bench")).expect("compiles");
        let mut rates = Vec::new();
        for round in 1..=rounds {
            let outcome = backtest::run(
                &js,
                Backtest {
                    sandbox: sandbox.clone(),
                    rule: rule.clone(),
                    policy: Arc::new(settings.policy().expect("policy")),
                    limits: settings.state_limits(),
                    from_ms: 0,
                    to_ms: now_ms + 60_000,
                    sample: 20,
                    max_events: settings.backtest_max_events,
                },
            )
            .await
            .expect("backtest");
            assert_eq!(outcome.report.events_scanned, events);
            println!(
                "{template} round {round}: {} events in {} ms = {} events/s ({} matched, {} timers fired, {} actions)",
                outcome.report.events_scanned,
                outcome.elapsed_ms,
                outcome.events_per_second,
                outcome.report.events_matched,
                outcome.report.timers_fired,
                outcome.report.actions_total
            );
            rates.push(outcome.events_per_second);
        }
        rates.sort_unstable();
        println!("{template}: median {} events/s", rates[rates.len() / 2]);
    }
}
