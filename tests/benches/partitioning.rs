//! The two ways to keep a profile's events with one instance, measured bare (no rules, no state)
//! against one nats-server on the same events, so their cost on this machine is known before
//! nudge is built on one of them (BENCHMARKS.md, "Choosing the partitioning design"):
//!
//! - `bare`: the drain benchmark's baseline — durable pull consumer, publish one output per
//!   event with a `Nats-Msg-Id`, wait for the publish ack, ack the input.
//! - `repartition` (design a, Kafka Streams' repartition topic): stage 1 reads the input with a
//!   durable consumer, republishes each event on `part.<partition>` with a deterministic
//!   `Nats-Msg-Id` and acks it; stage 2 has one durable consumer per partition (filtered on its
//!   subject) that publishes the output and acks. Both stages run at once; the clock stops when
//!   the last output is stored and its input acked.
//! - `read-all/k` (design b): `k` readers, as `k` instances would, each read the whole stream
//!   with an ordered consumer (no acks), find each event's partition from its `subject` and
//!   publish the output of the events of the partitions they own, fenced the way nudge fences
//!   (`Nats-Expected-Last-Subject-Sequence` on the partition's fence marker).
//!
//! Run: `cargo bench -p nudge-tests --bench partitioning` (`PARTITIONING_EVENTS`, default
//! 100000; `PARTITIONING_ROUNDS`, default 3; `PARTITIONS`, default 16).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use nudge_rules::partition::{partition_of, profile_key_of};
use nudge_tests::NatsServer;
use nudge_tests::bench::{env_number, input_and_output};
use nudge_tests::workload::prefill;
use serde_json::json;

/// Publishes awaited at once at most, as in the drain benchmark's bare loop.
const IN_FLIGHT: usize = 2_048;

struct Setup {
    js: jetstream::Context,
    input: stream::Stream,
    tag: String,
    url: String,
}

/// A connection of its own, as a separate process would have.
async fn connect(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.expect("connect"))
}

/// A fresh input stream holding `count` events and an output stream with a dedupe window.
async fn setup(url: &str, js: &jetstream::Context, tag: &str, first: u64, count: u64) -> Setup {
    let input = input_and_output(
        js,
        &format!("IN_{tag}"),
        &format!("{tag}.in.>"),
        &format!("OUT_{tag}"),
        vec![format!("{tag}.out.>"), format!("{tag}.fence.>")],
    )
    .await;
    prefill(js, &format!("{tag}.in."), first, count).await;
    Setup {
        js: js.clone(),
        input,
        tag: tag.to_owned(),
        url: url.to_owned(),
    }
}

/// Awaits the oldest publish acks while more than `keep` are in flight, then runs `done` on each.
async fn settle<T>(
    in_flight: &mut VecDeque<(T, PublishAckFuture)>,
    keep: usize,
    mut done: impl AsyncFnMut(T),
) {
    while in_flight.len() > keep {
        let (item, ack) = in_flight.pop_front().expect("in flight");
        ack.await.expect("publish ack");
        done(item).await;
    }
}

async fn bare(s: &Setup, count: u64) -> Duration {
    let consumer = s
        .input
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bare".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 4_096,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let started = Instant::now();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(256)
        .messages()
        .await
        .expect("pull");
    let mut in_flight = VecDeque::new();
    for _ in 0..count {
        let message = messages.next().await.expect("message").expect("no error");
        let id = message.info().expect("info").stream_sequence.to_string();
        let publish = PublishMessage::build()
            .payload(message.payload.clone())
            .message_id(id);
        let ack =
            s.js.send_publish(format!("{}.out.x", s.tag), publish)
                .await
                .expect("publish");
        in_flight.push_back((message, ack));
        settle(&mut in_flight, IN_FLIGHT, async |m: jetstream::Message| {
            m.ack().await.expect("ack")
        })
        .await;
    }
    settle(&mut in_flight, 0, async |m: jetstream::Message| {
        m.ack().await.expect("ack")
    })
    .await;
    started.elapsed()
}

fn partition_of_payload(payload: &[u8], partitions: u32) -> u32 {
    profile_key_of(payload).map_or(0, |key| partition_of(&key, partitions))
}

async fn repartition(s: &Setup, count: u64, partitions: u32) -> Duration {
    s.js.create_stream(stream::Config {
        name: format!("PART_{}", s.tag),
        subjects: vec![format!("{}.part.>", s.tag)],
        duplicate_window: Duration::from_secs(7_200),
        ..Default::default()
    })
    .await
    .expect("partition stream");
    let handled = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let stage1 = {
        let url = s.url.clone();
        let tag = s.tag.clone();
        tokio::spawn(async move {
            let js = connect(&url).await;
            let input = js.get_stream(format!("IN_{tag}")).await.expect("input");
            let consumer = input
                .create_consumer(consumer::pull::Config {
                    durable_name: Some("repartition".into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    max_ack_pending: 4_096,
                    ..Default::default()
                })
                .await
                .expect("consumer");
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(256)
                .messages()
                .await
                .expect("pull");
            let mut in_flight = VecDeque::new();
            for _ in 0..count {
                let message = messages.next().await.expect("message").expect("no error");
                let sequence = message.info().expect("info").stream_sequence;
                let p = partition_of_payload(&message.payload, partitions);
                let publish = PublishMessage::build()
                    .payload(message.payload.clone())
                    .message_id(format!("r{sequence}"));
                let ack = js
                    .send_publish(format!("{tag}.part.{p}"), publish)
                    .await
                    .expect("publish");
                in_flight.push_back((message, ack));
                settle(&mut in_flight, IN_FLIGHT, async |m: jetstream::Message| {
                    m.ack().await.expect("ack")
                })
                .await;
            }
            settle(&mut in_flight, 0, async |m: jetstream::Message| {
                m.ack().await.expect("ack")
            })
            .await;
        })
    };
    let stage2: Vec<_> = (0..partitions)
        .map(|p| {
            let url = s.url.clone();
            let tag = s.tag.clone();
            let handled = handled.clone();
            tokio::spawn(async move {
                let js = connect(&url).await;
                let part = js
                    .get_stream(format!("PART_{tag}"))
                    .await
                    .expect("partitions");
                let consumer = part
                    .create_consumer(consumer::pull::Config {
                        durable_name: Some(format!("p{p}")),
                        filter_subject: format!("{tag}.part.{p}"),
                        ack_policy: consumer::AckPolicy::Explicit,
                        max_ack_pending: 4_096,
                        ..Default::default()
                    })
                    .await
                    .expect("partition consumer");
                let mut messages = consumer
                    .stream()
                    .max_messages_per_batch(256)
                    .heartbeat(Duration::from_millis(500))
                    .expires(Duration::from_secs(1))
                    .messages()
                    .await
                    .expect("pull");
                let mut in_flight = VecDeque::new();
                while handled.load(Ordering::Acquire) < count {
                    let next =
                        tokio::time::timeout(Duration::from_millis(50), messages.next()).await;
                    let got = matches!(next, Ok(Some(Ok(_))));
                    if let Ok(Some(Ok(message))) = next {
                        let id = message.info().expect("info").stream_sequence.to_string();
                        let publish = PublishMessage::build()
                            .payload(message.payload.clone())
                            .message_id(id);
                        let ack = js
                            .send_publish(format!("{tag}.out.x"), publish)
                            .await
                            .expect("publish");
                        in_flight.push_back((message, ack));
                    }
                    let keep = if got { IN_FLIGHT / 8 } else { 0 };
                    let before = in_flight.len();
                    settle(&mut in_flight, keep, async |m: jetstream::Message| {
                        m.ack().await.expect("ack");
                    })
                    .await;
                    handled.fetch_add((before - in_flight.len()) as u64, Ordering::AcqRel);
                }
            })
        })
        .collect();
    stage1.await.expect("stage 1");
    for partition in stage2 {
        partition.await.expect("stage 2");
    }
    assert_eq!(
        handled.load(Ordering::Acquire),
        count,
        "every event handled"
    );
    started.elapsed()
}

async fn read_all(s: &Setup, count: u64, partitions: u32, readers: u32) -> Duration {
    let mut fences = Vec::new();
    for p in 0..partitions {
        let ack =
            s.js.publish(format!("{}.fence.{p}", s.tag), "owner".into())
                .await
                .expect("fence")
                .await
                .expect("fence ack");
        fences.push(ack.sequence);
    }
    let last = s
        .input
        .clone()
        .info()
        .await
        .expect("input info")
        .state
        .last_sequence;
    let started = Instant::now();
    let runs: Vec<_> = (0..readers)
        .map(|reader| {
            let fences = fences.clone();
            let input = s.input.clone();
            let js = s.js.clone();
            let tag = s.tag.clone();
            tokio::spawn(async move {
                let consumer = input
                    .create_consumer(consumer::pull::OrderedConfig {
                        deliver_policy: consumer::DeliverPolicy::All,
                        ..Default::default()
                    })
                    .await
                    .expect("ordered consumer");
                let mut messages = consumer.messages().await.expect("messages");
                let mut in_flight = VecDeque::new();
                let mut published = 0_u64;
                loop {
                    let message = messages.next().await.expect("message").expect("no error");
                    let sequence = message.info().expect("info").stream_sequence;
                    let p = partition_of_payload(&message.payload, partitions);
                    if p % readers == reader {
                        let mut headers = HeaderMap::new();
                        headers.insert(
                            "Nats-Expected-Last-Subject-Sequence",
                            fences[p as usize].to_string().as_str(),
                        );
                        headers.insert(
                            "Nats-Expected-Last-Subject-Sequence-Subject",
                            format!("{tag}.fence.{p}").as_str(),
                        );
                        let publish = PublishMessage::build()
                            .payload(message.payload.clone())
                            .headers(headers)
                            .message_id(sequence.to_string());
                        let ack = js
                            .send_publish(format!("{tag}.out.x"), publish)
                            .await
                            .expect("publish");
                        in_flight.push_back(((), ack));
                        published += 1;
                        settle(&mut in_flight, IN_FLIGHT, async |_| {}).await;
                    }
                    if sequence >= last {
                        break;
                    }
                }
                settle(&mut in_flight, 0, async |_| {}).await;
                published
            })
        })
        .collect();
    let mut published = 0;
    for run in runs {
        published += run.await.expect("reader");
    }
    assert_eq!(published, count, "every event published once");
    started.elapsed()
}

fn main() {
    let count = env_number("PARTITIONING_EVENTS", 100_000);
    let rounds = env_number("PARTITIONING_ROUNDS", 3);
    let partitions = env_number("PARTITIONS", 16) as u32;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let nats = NatsServer::start();
        let js = nats.jetstream().await;
        // Three readers on two cores is left out: one run of it never finished, and two already
        // show the cost of every instance reading everything.
        let designs = ["bare", "repartition", "read-all/1", "read-all/2"];
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); designs.len()];
        for round in 0..rounds {
            for (i, design) in designs.iter().enumerate() {
                let tag = format!("r{round}d{i}");
                let s = setup(&nats.url, &js, &tag, round * count, count).await;
                let elapsed = match *design {
                    "bare" => bare(&s, count).await,
                    "repartition" => repartition(&s, count, partitions).await,
                    other => {
                        let readers = other.trim_start_matches("read-all/").parse().unwrap_or(1);
                        read_all(&s, count, partitions, readers).await
                    }
                };
                let rate = count as f64 / elapsed.as_secs_f64();
                rates[i].push(rate);
                println!(
                    "{}",
                    json!({"round": round, "design": design, "events_per_s": rate.round()})
                );
                for name in [
                    format!("IN_{tag}"),
                    format!("OUT_{tag}"),
                    format!("PART_{tag}"),
                ] {
                    js.delete_stream(name).await.ok();
                }
            }
        }
        let bare_median = median(&mut rates[0].clone());
        for (design, rates) in designs.iter().zip(rates.iter_mut()) {
            let m = median(rates);
            println!(
                "{}",
                json!({"design": design, "median_events_per_s": m.round(),
                       "ratio_to_bare": (m / bare_median * 100.0).round() / 100.0})
            );
        }
    });
}

fn median(rates: &mut [f64]) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}
