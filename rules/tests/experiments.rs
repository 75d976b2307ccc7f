//! A rule with a goal and a 10 % holdout over a thousand profiles on the simulated clock: who is
//! held out, what is published, which conversions count, and the uplift — each against a
//! computation made outside nudge (Python: hashlib for the draw, the Newcombe formulas for the
//! interval).

use std::sync::Arc;

use nudge_rules::experiment::Arm;
use nudge_rules::experiment::uplift::uplift;
use nudge_rules::simulate::Simulation;
use nudge_rules::state::DAY_MS;
use nudge_rules::{
    CloudEvent, CompiledRule, Decider, Limits, Policy, Rule, RuleSet, RuleSpec, Sandbox,
    StateLimits,
};
use serde_json::{Value, json};

const PROFILES: usize = 1_000;
const START_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn cart_rule(sandbox: &Arc<Sandbox>) -> RuleSet {
    let spec: RuleSpec = serde_json::from_value(json!({
        "name": "Abandoned cart",
        "triggers": ["cart.updated"],
        "script": "push(#{ title: \"Your cart misses you\" });",
        "goal": {"event": "order.placed", "within": "3d", "value": "data.total"},
        "holdout": 10,
    }))
    .unwrap();
    let rule = Rule {
        version: 1,
        ..Rule::unsaved("cart", spec, "test")
    };
    RuleSet::new(sandbox.clone()).with_rule(Arc::new(CompiledRule::compile(sandbox, rule).unwrap()))
}

fn event(id: &str, event_type: &str, subject: &str, data: Value) -> CloudEvent {
    CloudEvent::from_value(json!({"specversion": "1.0", "id": id, "source": "shop",
        "type": event_type, "subject": subject, "data": data}))
    .unwrap()
}

/// Runs `test` with a simulation of the cart rule (traces kept).
fn with_cart_rule(test: impl FnOnce(Simulation)) {
    let sandbox = Arc::new(Sandbox::new(Limits::default()));
    let (policy, limits) = (Policy::default(), StateLimits::default());
    let rules = cart_rule(&sandbox);
    let decider = Decider {
        sandbox: &sandbox,
        policy: &policy,
        limits: &limits,
    };
    test(Simulation::new(decider, &rules, 0).keep_traces());
}

fn control(i: usize) -> bool {
    nudge_rules::experiment::holdout_bucket("cart", &format!("user-{i}")) < 1_000
}

#[test]
fn a_thousand_profiles_with_a_ten_percent_holdout_come_out_as_computed_by_hand() {
    with_cart_rule(a_thousand_profiles);
}

fn a_thousand_profiles(mut simulation: Simulation) {
    for i in 0..PROFILES {
        let user = format!("user-{i}");
        simulation.feed(
            &event(&format!("c{i}"), "cart.updated", &user, json!({})),
            START_MS + i as i64,
        );
    }
    // Known conversion: one treated profile in five orders a day later, one held-out profile
    // in ten. Every order is delivered twice (same id: the second is a duplicate), and a
    // second, later order within the window does not convert the same action again.
    let mut orders = Vec::new();
    for i in 0..PROFILES {
        let converts = if control(i) { i % 10 == 0 } else { i % 5 == 0 };
        let user = format!("user-{i}");
        if converts {
            let order = event(
                &format!("o{i}"),
                "order.placed",
                &user,
                json!({"total": 25.0}),
            );
            orders.push((START_MS + DAY_MS + i as i64, order.clone()));
            orders.push((START_MS + DAY_MS + i as i64, order));
            let again = event(
                &format!("p{i}"),
                "order.placed",
                &user,
                json!({"total": 5.0}),
            );
            orders.push((START_MS + 2 * DAY_MS + i as i64, again));
        } else if i % 7 == 1 {
            // Ordered, but after the three days: not a conversion.
            let late = event(
                &format!("l{i}"),
                "order.placed",
                &user,
                json!({"total": 99.0}),
            );
            orders.push((START_MS + 4 * DAY_MS + i as i64, late));
        }
    }
    orders.sort_by_key(|(at, _)| *at);
    for (at_ms, order) in &orders {
        simulation.feed(order, *at_ms);
    }
    let results = simulation.results.clone();
    let (report, traces) = simulation.finish();

    // By hand (Python, from the documented draw): 107 held out, 8 of them convert; 893
    // treated, 176 convert.
    let v1 = &results.rules["cart"][&1].total;
    assert_eq!(v1.triggered, PROFILES as u64);
    assert_eq!(
        (v1.control.profiles, v1.control.profiles_converted),
        (107, 8)
    );
    assert_eq!(
        (v1.treatment.profiles, v1.treatment.profiles_converted),
        (893, 176)
    );
    assert_eq!(v1.treatment.conversions, 176, "one conversion per action");
    assert_eq!(v1.treatment.value, 176.0 * 25.0);
    assert_eq!(v1.control.value, 8.0 * 25.0);
    // Only the treated group was sent anything; the held-out decisions are traced as such.
    assert_eq!(report.actions_total, 893);
    assert_eq!(report.suppressed.get("holdout"), Some(&107));
    let traces = traces.unwrap();
    let held_out = traces
        .iter()
        .flat_map(|t| &t.suppressed)
        .filter(|s| s.reason == Some("holdout"))
        .count();
    assert_eq!(held_out, 107);
    assert!(
        traces
            .iter()
            .any(|t| t.converted.iter().any(|c| c.rule == "cart@v1"))
    );
    assert_eq!(report.goals["cart"], *v1);

    // Rates 176/893 = 19.71 % and 8/107 = 7.48 %; Newcombe's interval of the difference, by
    // hand: +12.23 points (+5.19 to +16.79).
    let uplift = uplift(
        v1.arm(Arm::Treatment).group(),
        v1.arm(Arm::Control).group(),
        50,
    )
    .unwrap();
    for (actual, expected) in [
        (uplift.value, 0.122_322_1),
        (uplift.ci_low, 0.051_947_8),
        (uplift.ci_high, 0.167_857_9),
    ] {
        assert!((actual - expected).abs() < 1e-6, "{actual} vs {expected}");
    }
}

#[test]
fn membership_is_the_documented_draw_whatever_the_state() {
    // A fresh state (another instance, after a restart) puts every profile in the same group:
    // the draw reads only the rule and profile ids.
    let groups = |id: &'static str| {
        let mut held = Vec::new();
        with_cart_rule(|mut simulation| {
            for i in 0..200 {
                let user = format!("user-{i}");
                simulation.feed(&event(id, "cart.updated", &user, json!({})), START_MS);
                let last = simulation.traces.as_ref().unwrap().last().unwrap();
                held.push(last.suppressed.iter().any(|s| s.reason == Some("holdout")));
            }
        });
        held
    };
    let first = groups("a");
    assert_eq!(first, (0..200).map(control).collect::<Vec<_>>());
    assert_eq!(first, groups("b"));
}
