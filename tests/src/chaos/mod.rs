//! The chaos suite: a 3-node JetStream cluster and several nudge instances under a steady,
//! ordered load while broker nodes restart, instances are SIGKILLed and paused, the whole cluster
//! stops and starts again, and poison events and hostile rules and plugins arrive throughout.
//! Afterwards [`Report`] says whether any event was lost, any action stored twice, any profile's
//! order broken or any poison event left without its reason, and how long each recovery took.
//!
//! [`Plan::short`] runs in the test command (`tests/tests/chaos.rs`); [`Plan::long`] runs behind
//! `scripts/chaos` and writes its report to a file.

mod faults;
mod report;
mod traffic;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cluster::NatsCluster;
use crate::{Nudge, ordered, wait_drained_or};

pub use faults::{Fault, FaultRecord};
pub use report::{KindFigures, Report};

/// What one chaos run does.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: &'static str,
    /// Profiles of the ordered load; each round sends one event to every profile.
    pub profiles: u32,
    /// Events a second the load aims for (it slows when the broker does).
    pub rate_per_s: u32,
    /// nudge instances sharing the partitions.
    pub instances: usize,
    /// Broker nodes SIGKILLed and started again, in turn.
    pub broker_restarts: usize,
    /// nudge instances SIGKILLed (each started again, as a supervisor would).
    pub instance_kills: usize,
    /// nudge instances frozen with SIGSTOP for `pause`, then resumed.
    pub pauses: usize,
    /// How long the whole cluster stays stopped (once, in the middle of the run).
    pub cluster_stop: Duration,
    /// The load between one fault's end and the next fault.
    pub fault_gap: Duration,
    /// How long a restarted broker node stays down.
    pub broker_down: Duration,
    /// How long a paused instance stays frozen (longer than its leases).
    pub pause: Duration,
    /// How long a killed instance stays down before its supervisor starts it again.
    pub instance_down: Duration,
    /// The instances' partition lease.
    pub partition_lease_ms: u64,
}

impl Plan {
    /// The form the test command runs: every kind of fault, a few times, in about two minutes.
    pub fn short() -> Plan {
        Plan {
            name: "short",
            profiles: 200,
            rate_per_s: 400,
            instances: 3,
            broker_restarts: 3,
            instance_kills: 4,
            pauses: 1,
            cluster_stop: Duration::from_secs(10),
            fault_gap: Duration::from_secs(3),
            broker_down: Duration::from_secs(2),
            pause: Duration::from_secs(6),
            instance_down: Duration::from_secs(1),
            partition_lease_ms: 2_000,
        }
    }

    /// The form `scripts/chaos` runs: what the operators' kit promises, for several minutes.
    pub fn long() -> Plan {
        Plan {
            name: "long",
            profiles: 2_000,
            rate_per_s: 2_000,
            instances: 3,
            broker_restarts: 10,
            instance_kills: 20,
            pauses: 2,
            cluster_stop: Duration::from_secs(30),
            fault_gap: Duration::from_secs(6),
            broker_down: Duration::from_secs(3),
            pause: Duration::from_secs(8),
            instance_down: Duration::from_secs(1),
            partition_lease_ms: 3_000,
        }
    }

    /// The environment of every instance: replicated streams, the plan's lease, quick checkpoints.
    fn instance_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("NUDGE_REPLICAS", "3".into()),
            (
                "NUDGE_PARTITION_LEASE_MS",
                self.partition_lease_ms.to_string(),
            ),
            ("NUDGE_CHECKPOINT_INTERVAL_MS", "200".into()),
        ]
    }
}

/// The cluster and the instances the faults act on.
pub struct Fleet {
    pub cluster: NatsCluster,
    /// `None` while an instance is killed and not started again yet.
    pub instances: Vec<Option<Nudge>>,
    env: Vec<(&'static str, String)>,
    /// Log lines of instances killed so far that say a thread panicked.
    pub panics: Vec<String>,
}

impl Fleet {
    /// Starts one more instance (or a killed one again) against the cluster.
    pub async fn start_instance(&self) -> Nudge {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Nudge::serve(&self.cluster.url, &env).await
    }

    /// An instance that is running now, to send API requests to.
    pub fn live(&self) -> &Nudge {
        self.instances
            .iter()
            .flatten()
            .next()
            .expect("an instance is running")
    }
}

/// The lines of `nudge`'s log that report a panic (read before a kill takes its log away).
fn panic_lines(nudge: &Nudge) -> Vec<String> {
    nudge
        .logs()
        .lines()
        .filter(|l| l.contains("panicked"))
        .map(str::to_owned)
        .collect()
}

/// How long one step of the run (a fault and the catching up after it, a rule change, the last
/// round of load) may take before the run stops, naming the step, instead of hanging.
const STEP_LIMIT: Duration = Duration::from_secs(360);

async fn within<T>(step: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP_LIMIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("chaos: {step} did not finish within {STEP_LIMIT:?}"),
    }
}

/// Runs `plan` from a fresh cluster to its report. Panics only when the harness itself cannot
/// go on (an instance that does not start again is such a finding).
pub async fn run(plan: &Plan) -> Report {
    let started = Instant::now();
    let cluster = NatsCluster::start(3).await;
    let mut fleet = Fleet {
        cluster,
        instances: Vec::new(),
        env: plan.instance_env(),
        panics: Vec::new(),
    };
    for _ in 0..plan.instances {
        let nudge = fleet.start_instance().await;
        fleet.instances.push(Some(nudge));
    }
    // The load, the side traffic and the judge each on a connection of their own, so one
    // connection's trouble shows as that task's, not everyone's.
    let js = fleet.cluster.jetstream().await;
    let (load_js, side_js) = (
        fleet.cluster.jetstream().await,
        fleet.cluster.jetstream().await,
    );
    ordered::put_order_rule(fleet.live()).await;
    let hostile = traffic::install_hostile(fleet.live()).await;
    // Every instance runs the rule before the first event.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(traffic::ordered_load(load_js, plan.clone(), stop.clone()));
    let side = tokio::spawn(traffic::poison_and_hostile_events(side_js, stop.clone()));
    // A steady state to compare the recoveries with.
    tokio::time::sleep(plan.fault_gap * 2).await;
    let mut changes = traffic::RuleChanges::default();
    let mut records = Vec::new();
    let mut injected: HashMap<Fault, usize> = HashMap::new();
    let schedule = faults::schedule(plan);
    for (i, fault) in schedule.iter().copied().enumerate() {
        // Each kind goes round its targets: every broker node restarts in turn.
        let nth = injected.entry(fault).or_default();
        let step = faults::inject(&mut fleet, &js, plan, fault, *nth);
        let record = within(&format!("fault {} ({fault:?})", i + 1), step).await;
        *nth += 1;
        eprintln!(
            "chaos: {}/{}: {} (target {}): back after {} ms, caught up {} ms later",
            i + 1,
            schedule.len(),
            fault.label(),
            record.target,
            (record.restored_ns - record.started_ns) / 1_000_000,
            (record.caught_up_ns - record.restored_ns) / 1_000_000
        );
        records.push(record);
        let change = changes.make_one(fleet.live(), &hostile);
        within(&format!("the change after fault {}", i + 1), change).await;
        tokio::time::sleep(plan.fault_gap).await;
    }
    stop.store(true, Ordering::Relaxed);
    let load = within("the load's last round", load)
        .await
        .expect("the load task");
    let side = within("the side traffic", side)
        .await
        .expect("the side task");

    let drain_started = Instant::now();
    wait_drained_or(&js, Duration::from_secs(300), || {
        format!("{}\n{}", fleet.live().logs(), fleet.cluster.logs())
    })
    .await;
    let drain_ms = drain_started.elapsed().as_millis();
    let still_running: Vec<String> = fleet
        .instances
        .iter()
        .flatten()
        .flat_map(panic_lines)
        .collect();
    fleet.panics.extend(still_running);
    let report = Report::gather(
        &js,
        plan,
        &load,
        &side,
        &changes,
        &records,
        &fleet.panics,
        drain_ms,
        started,
    )
    .await;
    for nudge in fleet.instances.into_iter().flatten() {
        nudge.stop().await;
    }
    report
}
