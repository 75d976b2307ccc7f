//! End-to-end drain benchmark. Against one nats-server, in one run:
//! 1. a bare async-nats loop (pull, publish one message per input with a Nats-Msg-Id, wait for
//!    the publish ack, ack the input; no logic) drains N pre-filled events;
//! 2. the release `nudge` binary drains the same N events through 10 rules.
//!
//! Each round it prints events/s of both, their ratio, CPU-seconds per million events and nudge's
//! peak RSS; then the medians over `DRAIN_ROUNDS` rounds (default 3).
//! Run: `cargo build --release --bins && cargo bench -p nudge-tests --bench drain`
//! (`DRAIN_EVENTS` sets N, default 100000). `DRAIN_PLUGIN=1` also stores the `tiny` plugin
//! (`plugins/fixtures/tiny`, built by `scripts/build-plugins`) on every event type, so each event
//! runs the 10 rules and one WebAssembly plugin call. `DRAIN_SCHEMAS=1` registers a schema for
//! every event type (drafted from the workload, mode `warn`), so every event is validated.
//! `DRAIN_EXPERIMENTS=1` gives every rule a goal (`order.placed` within 3 days, valued) and a
//! 10 % holdout, so profiles carry touches, orders are attributed and results are written.

use std::time::{Duration, Instant};

use nudge_tests::bench::{
    RULES, bare_loop, cpu_seconds, env_number, peak_rss_mib, status_mib, store_rules,
};
use nudge_tests::workload::{prefill, realistic_event};
use nudge_tests::*;
use serde_json::{Value, json};

/// What one nudge drain took and wrote.
struct Drained {
    elapsed: Duration,
    cpu_s: f64,
    server_cpu_s: f64,
    peak_rss_mib: f64,
    actions: u64,
    profile_writes: u64,
    stored_profile_bytes: u64,
    trace_messages: u64,
    trace_bytes: u64,
}

async fn nudge_drain(nats: &NatsServer, round: u64, count: u64) -> Drained {
    let js = nats.jetstream().await;
    let actions_before = stream_len(&js, "NUDGE_ACTIONS").await;
    let (_, _, profiles_before) = stream_state(&js, "KV_NUDGE_PROFILES").await;
    let (_, trace_bytes_before, traces_before) = stream_state(&js, "NUDGE_TRACE").await;
    prefill(&js, "", round * count, count).await;
    let nudge = Nudge::start(nats, &[]).await;
    let pid = nudge.pid().to_string();
    let server_pid = nats.pid().to_string();
    let cpu_before = cpu_seconds(&pid);
    let server_cpu_before = cpu_seconds(&server_pid);
    let started = Instant::now();
    wait_drained(&js, Duration::from_secs(1_800)).await;
    let elapsed = started.elapsed();
    let cpu = cpu_seconds(&pid) - cpu_before;
    let server_cpu_s = cpu_seconds(&server_pid) - server_cpu_before;
    let rss = peak_rss_mib(&pid);
    if std::env::var("DRAIN_SHOW_MEMORY").is_ok() {
        eprintln!(
            "nudge after the drain: rss {:.0} MiB (anonymous {:.0}, file {:.0}), peak {rss:.0}",
            status_mib(&pid, "VmRSS:"),
            status_mib(&pid, "RssAnon:"),
            status_mib(&pid, "RssFile:"),
        );
    }
    let actions = stream_len(&js, "NUDGE_ACTIONS").await - actions_before;
    if std::env::var("DRAIN_SHOW_METRICS").is_ok() {
        let metrics = nudge.metrics().await;
        metrics
            .lines()
            .filter(|l| l.starts_with("nudge_") && !l.contains("_bucket"))
            .for_each(|l| eprintln!("{l}"));
    }
    assert!(nudge.stop().await);
    let (profiles, profile_bytes, profiles_last) = stream_state(&js, "KV_NUDGE_PROFILES").await;
    let (_, trace_bytes_last, traces_last) = stream_state(&js, "NUDGE_TRACE").await;
    Drained {
        elapsed,
        cpu_s: cpu,
        server_cpu_s,
        peak_rss_mib: rss,
        actions,
        profile_writes: profiles_last - profiles_before,
        stored_profile_bytes: profile_bytes / profiles.max(1),
        trace_messages: traces_last - traces_before,
        trace_bytes: trace_bytes_last.saturating_sub(trace_bytes_before),
    }
}

fn main() {
    let count = env_number("DRAIN_EVENTS", 100_000);
    let rounds = env_number("DRAIN_ROUNDS", 3);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let nats = NatsServer::start();
        let js = nats.jetstream().await;
        let average_event_bytes = (0..1_000)
            .map(|n| realistic_event(n).1.len())
            .sum::<usize>()
            / 1_000;
        store_rules(&nats, std::env::var("DRAIN_PLUGIN").is_ok()).await;
        let rate = |t: Duration| count as f64 / t.as_secs_f64();
        let per_million = |cpu: f64| (cpu * 10_000_000.0 / count as f64).round() / 10.0;
        // Alternate the two so drift on the machine hits both alike; report every round and the
        // median of each.
        let mut bare_rates = Vec::new();
        let mut nudge_rates = Vec::new();
        for round in 0..rounds {
            let (bare_time, bare_cpu) = bare_loop(&js, round, count).await;
            let drained = nudge_drain(&nats, round, count).await;
            let nudge_time = drained.elapsed;
            let per_event = |n: u64| (n as f64 / count as f64 * 100.0).round() / 100.0;
            bare_rates.push(rate(bare_time));
            nudge_rates.push(rate(nudge_time));
            println!(
                "{}",
                json!({
                    "round": round,
                    "bare_loop_events_per_s": rate(bare_time).round(),
                    "nudge_events_per_s": rate(nudge_time).round(),
                    "ratio": (rate(nudge_time) / rate(bare_time) * 100.0).round() / 100.0,
                    "bare_loop_cpu_s_per_million_events": per_million(bare_cpu),
                    "nudge_cpu_s_per_million_events": per_million(drained.cpu_s),
                    "server_cpu_s_per_million_events_during_nudge": per_million(drained.server_cpu_s),
                    "nudge_peak_rss_mib": drained.peak_rss_mib.round(),
                    "actions_published": drained.actions,
                    "profile_writes_per_event": per_event(drained.profile_writes),
                    "trace_messages_per_event": per_event(drained.trace_messages),
                    "trace_bytes_per_event": drained.trace_bytes / count,
                    "stored_profile_bytes": drained.stored_profile_bytes,
                })
            );
        }
        let median = |rates: &mut Vec<f64>| {
            rates.sort_by(f64::total_cmp);
            rates[rates.len() / 2]
        };
        let (bare, nudge) = (median(&mut bare_rates), median(&mut nudge_rates));
        let summary: Value = json!({
            "events_per_round": count,
            "rounds": rounds,
            "average_event_bytes": average_event_bytes,
            "rules": RULES.len(),
            "plugin_on_every_event": std::env::var("DRAIN_PLUGIN").is_ok(),
            "schema_on_every_event": std::env::var("DRAIN_SCHEMAS").is_ok(),
            "experiments": std::env::var("DRAIN_EXPERIMENTS").is_ok(),
            "median_bare_loop_events_per_s": bare.round(),
            "median_nudge_events_per_s": nudge.round(),
            "median_ratio": (nudge / bare * 100.0).round() / 100.0,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("summary")
        );
    });
}
