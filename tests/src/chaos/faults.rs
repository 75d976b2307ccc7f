//! The faults of a chaos run: which ones, in what order, and injecting one into the fleet.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;

use super::{Fleet, Plan, panic_lines};
use crate::committed_through;

/// How long the pipeline may take to catch up after a fault before the run gives up.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(300);

/// One kind of trouble an operator's cluster meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// A broker node SIGKILLed, down for `Plan::broker_down`, started again on its store.
    BrokerRestart,
    /// A nudge instance SIGKILLed, started again after `Plan::instance_down`.
    InstanceKill,
    /// A nudge instance frozen (SIGSTOP) for `Plan::pause`, then resumed (SIGCONT).
    InstancePause,
    /// Every broker node stopped for `Plan::cluster_stop`, then started again.
    ClusterStop,
}

impl Fault {
    pub const ALL: [Fault; 4] = [
        Fault::BrokerRestart,
        Fault::InstanceKill,
        Fault::InstancePause,
        Fault::ClusterStop,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Fault::BrokerRestart => "broker node SIGKILLed and restarted",
            Fault::InstanceKill => "nudge instance SIGKILLed and restarted",
            Fault::InstancePause => "nudge instance paused (SIGSTOP, SIGCONT)",
            Fault::ClusterStop => "whole cluster stopped and started",
        }
    }
}

/// A fault as it happened.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    pub fault: Fault,
    /// The broker node or instance it hit.
    pub target: usize,
    /// When it began (ns since the Unix epoch, the clock JetStream stamps messages with).
    pub started_ns: i128,
    /// When what it took away was back (the node listening, the instance ready or resumed).
    pub restored_ns: i128,
    /// When every partition had committed every event stored before `restored_ns`.
    pub caught_up_ns: i128,
}

pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_nanos() as i128
}

/// The plan's faults in the order they happen: restarts and kills spread evenly among each
/// other, the pauses spread over the run, the whole-cluster stop in the middle.
pub fn schedule(plan: &Plan) -> Vec<Fault> {
    let (restarts, kills) = (plan.broker_restarts, plan.instance_kills);
    let total = restarts + kills;
    let mut out: Vec<Fault> = (0..total)
        .map(|slot| {
            // A restart wherever the running share of restarts steps up (Bresenham's line).
            if (slot + 1) * restarts / total > slot * restarts / total {
                Fault::BrokerRestart
            } else {
                Fault::InstanceKill
            }
        })
        .collect();
    for pause in 0..plan.pauses {
        let at = (pause + 1) * out.len() / (plan.pauses + 1);
        out.insert(at, Fault::InstancePause);
    }
    out.insert(out.len() / 2, Fault::ClusterStop);
    out
}

/// Injects the `nth` fault of its kind (which picks the node or instance it hits), waits until
/// what it took away is back, then until the pipeline has caught up with what was sent meanwhile
/// (so the next fault meets a recovered fleet and each recovery is measured on its own).
pub async fn inject(
    fleet: &mut Fleet,
    js: &jetstream::Context,
    plan: &Plan,
    fault: Fault,
    nth: usize,
) -> FaultRecord {
    let started_ns = now_ns();
    let target = match fault {
        Fault::BrokerRestart => {
            let node = nth % 3;
            fleet.cluster.kill(node);
            tokio::time::sleep(plan.broker_down).await;
            fleet.cluster.restart(node);
            node
        }
        Fault::InstanceKill => {
            let instance = nth % fleet.instances.len();
            let nudge = fleet.instances[instance]
                .take()
                .expect("a running instance");
            fleet.panics.extend(panic_lines(&nudge));
            nudge.kill().await;
            tokio::time::sleep(plan.instance_down).await;
            fleet.instances[instance] = Some(fleet.start_instance().await);
            instance
        }
        Fault::InstancePause => {
            let instance = nth % fleet.instances.len();
            let nudge = fleet.instances[instance]
                .as_ref()
                .expect("a running instance");
            nudge.pause();
            tokio::time::sleep(plan.pause).await;
            nudge.resume();
            instance
        }
        Fault::ClusterStop => {
            fleet.cluster.stop_all();
            tokio::time::sleep(plan.cluster_stop).await;
            fleet.cluster.start_all().await;
            0
        }
    };
    let restored_ns = now_ns();
    let caught_up_ns = wait_caught_up(js).await;
    FaultRecord {
        fault,
        target,
        started_ns,
        restored_ns,
        caught_up_ns,
    }
}

/// Waits until every partition has committed every event `NUDGE_EVENTS` holds now; answers when.
/// A broker still electing its leaders answers errors for a while: they are waited out.
async fn wait_caught_up(js: &jetstream::Context) -> i128 {
    let deadline = Instant::now() + CATCH_UP_LIMIT;
    let last = loop {
        if let Ok(mut stream) = js.get_stream("NUDGE_EVENTS").await
            && let Ok(info) = stream.info().await
        {
            break info.state.last_sequence;
        }
        assert!(Instant::now() < deadline, "NUDGE_EVENTS never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    loop {
        let Err(positions) = committed_through(js, last).await else {
            return now_ns();
        };
        assert!(
            Instant::now() < deadline,
            "the partitions never caught up with sequence {last}: {positions:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_holds_every_fault_the_plan_asks_for_spread_out() {
        for plan in [Plan::short(), Plan::long()] {
            let schedule = schedule(&plan);
            let count = |f| schedule.iter().filter(|x| **x == f).count();
            assert_eq!(count(Fault::BrokerRestart), plan.broker_restarts);
            assert_eq!(count(Fault::InstanceKill), plan.instance_kills);
            assert_eq!(count(Fault::InstancePause), plan.pauses);
            assert_eq!(count(Fault::ClusterStop), 1);
            // Restarts never come three in a row: the kills are spread among them.
            assert!(
                !schedule
                    .windows(3)
                    .any(|w| w.iter().all(|f| *f == Fault::BrokerRestart)),
                "{schedule:?}"
            );
        }
    }
}
