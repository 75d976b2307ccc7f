//! The chaos suite's short form (`scripts/chaos` runs the long one): a 3-node JetStream cluster
//! and three nudge instances under ordered load while broker nodes restart, instances are
//! SIGKILLed and paused, the whole cluster stops and starts, and poison events and hostile rules
//! and plugins arrive throughout. Nothing may be lost, stored twice or reordered.

use nudge_tests::chaos::{self, Fault, Plan};

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_doubled_or_reordered_through_restarts_kills_pauses_and_a_cluster_stop() {
    let report = chaos::run(&Plan::short()).await;
    let markdown = report.markdown();
    println!("{markdown}");
    assert!(report.passed(), "{markdown}");
    for fault in Fault::ALL {
        let figures = report.recovery_of(fault);
        assert!(figures.times > 0, "{fault:?} never happened:\n{markdown}");
        assert!(
            figures.longest_delay_ms[1].is_finite(),
            "no event met {fault:?}:\n{markdown}"
        );
    }
    assert!(report.poison_dead_lettered > 0, "{markdown}");
    assert!(report.hostile_events > 0, "{markdown}");
    assert!(
        report.changes_accepted > 0 && report.changes_refused > 0,
        "{markdown}"
    );
}
