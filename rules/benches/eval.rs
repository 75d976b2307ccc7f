//! Criterion benchmarks of the rule core: one compiled rule in a prepared scope (the per-rule
//! cost), building that scope from an event (paid once per event), a whole 10-rule set, and the
//! whole decision (profile state and policy included).
//!
//! Run: `cargo bench -p nudge-rules --bench eval`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use nudge_rules::rule::CapLimits;
use nudge_rules::{
    CloudEvent, CompiledRule, Decider, Limits, PluginOutcome, Policy, Profile, ProfileState, Rule,
    RuleSet, RuleSpec, Sandbox, StateLimits,
};
use serde_json::json;

fn rule(id: &str, trigger: &str, script: &str) -> Rule {
    Rule {
        version: 1,
        ..Rule::unsaved(id, RuleSpec::new(id, &[trigger], script), "bench")
    }
}

fn cart_event() -> CloudEvent {
    CloudEvent::from_value(json!({
        "specversion": "1.0", "id": "evt-123456", "source": "https://shop.example/cart",
        "type": "cart.updated", "subject": "user-42", "time": "2026-11-27T10:00:00Z",
        "datacontenttype": "application/json",
        "data": {"cart_id": "c-981", "currency": "EUR", "total": 128.5, "items": [
            {"sku": "sku-1", "qty": 1, "price": 99.0}, {"sku": "sku-2", "qty": 2, "price": 14.75}],
            "channel": "web", "campaign": "autumn-sale"}
    }))
    .expect("valid event")
}

const CART_RULE: &str = r#"
if event.data.total >= 100 {
    push(#{ title: "Free shipping unlocked", cart: event.data.cart_id });
}
"#;

fn benches(c: &mut Criterion) {
    let sandbox = Arc::new(Sandbox::new(Limits::default()));
    let event = cart_event();
    let profile = Profile::new("user-42");
    let compiled = Arc::new(
        CompiledRule::compile(&sandbox, rule("cart", "cart.*", CART_RULE)).expect("compiles"),
    );

    let mut scope = Sandbox::scope_for(&event, &profile);
    c.bench_function("one compiled rule, prepared scope", |b| {
        b.iter(|| black_box(sandbox.run(&mut scope, compiled.ast()).expect("runs")))
    });
    let quiet = Arc::new(
        CompiledRule::compile(
            &sandbox,
            rule(
                "quiet",
                "cart.*",
                "if event.data.total >= 1000 { push(#{}) }",
            ),
        )
        .expect("compiles"),
    );
    c.bench_function(
        "one compiled rule that fires nothing, prepared scope",
        |b| b.iter(|| black_box(sandbox.run(&mut scope, quiet.ast()).expect("runs"))),
    );
    let empty =
        Arc::new(CompiledRule::compile(&sandbox, rule("empty", "cart.*", "1")).expect("compiles"));
    c.bench_function("empty script, prepared scope", |b| {
        b.iter(|| black_box(sandbox.run(&mut scope, empty.ast()).expect("runs")))
    });
    c.bench_function("scope for one event (once per event)", |b| {
        b.iter(|| black_box(Sandbox::scope_for(black_box(&event), &profile)))
    });

    let wire = serde_json::to_vec(&event).expect("json");
    c.bench_function("decode one CloudEvent from JSON bytes", |b| {
        b.iter(|| black_box(CloudEvent::from_slice(black_box(&wire)).expect("valid")))
    });

    if std::env::var("BENCH_PARTS").is_ok() {
        c.bench_function("parts: JSON to serde_json::Value", |b| {
            b.iter(|| {
                black_box(
                    serde_json::from_slice::<serde_json::Value>(black_box(&wire)).expect("json"),
                )
            })
        });
        c.bench_function("parts: JSON to rhai::Dynamic", |b| {
            b.iter(|| {
                black_box(serde_json::from_slice::<rhai::Dynamic>(black_box(&wire)).expect("json"))
            })
        });
    }

    let mut set = RuleSet::new(sandbox.clone());
    let triggers = [
        "cart.*",
        "cart.updated",
        "order.>",
        "product.viewed",
        "user.registered",
        "*.viewed",
        "checkout.*",
        "cart.abandoned",
        "order.placed",
        "page.>",
    ];
    for (i, trigger) in triggers.iter().enumerate() {
        let compiled = CompiledRule::compile(&sandbox, rule(&format!("r{i}"), trigger, CART_RULE))
            .expect("compiles");
        set = set.with_rule(Arc::new(compiled));
    }
    c.bench_function(
        "10-rule set, event matching 2 (scope + eval + actions)",
        |b| b.iter(|| black_box(set.evaluate(black_box(&event), &profile))),
    );
    c.bench_function("trigger lookup in 10-rule set", |b| {
        b.iter(|| black_box(set.matching(black_box("cart.updated")).len()))
    });
    decide(c, &set, &event);
}

/// The whole decision for one event against a profile that has seen 50 before it: identity
/// check, windows, the 10-rule set, policy with caps, outbox. What a backtest pays per event.
fn decide(c: &mut Criterion, set: &RuleSet, event: &CloudEvent) {
    let policy = Policy {
        caps: std::collections::BTreeMap::from([(
            "push".to_owned(),
            CapLimits {
                per_day: Some(1_000_000),
                per_week: None,
            },
        )]),
        ..Policy::default()
    };
    let limits = StateLimits::default();
    let decider = Decider {
        sandbox: set.sandbox(),
        policy: &policy,
        limits: &limits,
    };
    let mut state = ProfileState::new("user-42", 0);
    let mut warm = event.clone();
    for n in 0..50 {
        warm.id = format!("warm-{n}");
        let matching = set.matching(&warm.event_type);
        decider.decide(&mut state, &warm, n * 1_000, &matching, &mut |_, _| {
            PluginOutcome::default()
        });
    }
    let mut n = 0u64;
    let mut next = event.clone();
    c.bench_function("decide one event (state, 10-rule set, policy)", |b| {
        b.iter(|| {
            n += 1;
            next.id = format!("evt-{n}");
            let matching = set.matching(&next.event_type);
            black_box(decider.decide(
                &mut state,
                &next,
                100_000 + n as i64,
                &matching,
                &mut |_, _| PluginOutcome::default(),
            ))
        })
    });
}

criterion_group!(eval, benches);
criterion_main!(eval);
