//! The rule language and its sandbox, end to end through `RuleSet::evaluate`.

use std::sync::Arc;

use nudge_rules::sandbox::FailureKind;
use nudge_rules::{
    Channel, CloudEvent, CompiledRule, Limits, Profile, Rule, RuleError, RuleSet, RuleSpec, Sandbox,
};
use serde_json::json;

fn rule(id: &str, triggers: &[&str], priority: i32, script: &str) -> Rule {
    let spec = RuleSpec {
        priority,
        ..RuleSpec::new(id, triggers, script)
    };
    Rule {
        version: 1,
        ..Rule::unsaved(id, spec, "test")
    }
}

fn set_with(limits: Limits, rules: Vec<Rule>) -> RuleSet {
    let sandbox = Arc::new(Sandbox::new(limits));
    rules
        .into_iter()
        .fold(RuleSet::new(sandbox.clone()), |set, r| {
            set.with_rule(Arc::new(CompiledRule::compile(&sandbox, r).unwrap()))
        })
}

fn set(rules: Vec<Rule>) -> RuleSet {
    set_with(Limits::default(), rules)
}

fn cart_event(total: f64) -> CloudEvent {
    CloudEvent::from_value(
        json!({"specversion":"1.0","id":"e1","source":"shop","type":"cart.updated",
        "subject":"user-42","data":{"total": total, "items": ["sku-1"]}}),
    )
    .unwrap()
}

fn compile_error(script: &str) -> RuleError {
    let sandbox = Sandbox::new(Limits::default());
    match sandbox.compile(script) {
        Err(e) => e,
        Ok(_) => panic!("`{script}` should not compile"),
    }
}

#[test]
fn a_rule_reads_the_event_and_fires_actions_on_every_channel() {
    let rules = set(vec![rule(
        "r",
        &["cart.*"],
        0,
        r#"
        if event.data.total > 100 && event.subject == profile.id {
            push(#{ title: `Total ${event.data.total}` });
            personalize("hero", #{ banner: "big-spender" });
            price("sku-1", #{ discount_pct: 10 });
            webhook("crm", #{ total: event.data.total });
            email(#{ to: "ada@example.com", template: "cart", total: event.data.total });
        }
    "#,
    )]);
    let evaluation = rules.evaluate(&cart_event(120.0), &Profile::new("user-42"));
    assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
    let channels: Vec<Channel> = evaluation.actions.iter().map(|a| a.channel).collect();
    assert_eq!(channels, Channel::ALL);
    assert_eq!(
        evaluation.actions[0].data_json(),
        json!({"title": "Total 120.0"})
    );
    assert_eq!(
        evaluation.actions[1].data_json(),
        json!({"slot": "hero", "banner": "big-spender"})
    );
    assert_eq!(
        evaluation.actions[2].data_json(),
        json!({"product_id": "sku-1", "discount_pct": 10})
    );
    assert_eq!(
        evaluation.actions[3].data_json(),
        json!({"webhook": "crm", "payload": {"total": 120.0}})
    );
    assert_eq!(
        evaluation.actions[4].data_json(),
        json!({"to": "ada@example.com", "template": "cart", "total": 120.0})
    );
    assert_eq!(evaluation.matched, vec!["r@v1"]);
    assert!(
        rules
            .evaluate(&cart_event(10.0), &Profile::new("user-42"))
            .actions
            .is_empty()
    );
}

#[test]
fn an_email_without_an_address_fails_the_rule_and_says_why() {
    let rules = set(vec![rule(
        "welcome",
        &[">"],
        0,
        r#"email(#{ to: profile.attributes.email, template: "welcome" })"#,
    )]);
    let evaluation = rules.evaluate(&cart_event(1.0), &Profile::new("u"));
    assert!(evaluation.actions.is_empty());
    let failure = &evaluation.failures[0];
    assert_eq!((failure.rule.as_str(), failure.version), ("welcome", 1));
    assert!(
        failure
            .failure
            .message
            .contains("`to` must be an e-mail address"),
        "{}",
        failure.failure.message
    );
}

#[test]
fn missing_data_fields_are_unit_so_defaults_work() {
    let rules = set(vec![rule(
        "r",
        &[">"],
        0,
        r#"push(#{ title: event.data.nope ?? "fallback" })"#,
    )]);
    let evaluation = rules.evaluate(&cart_event(1.0), &Profile::new("u"));
    assert_eq!(
        evaluation.actions[0].data_json(),
        json!({"title": "fallback"})
    );
}

#[test]
fn action_ids_are_deterministic_per_event_rule_and_position() {
    let rules = set(vec![rule("r", &[">"], 0, r#"push(#{}); push(#{});"#)]);
    let event = cart_event(1.0);
    let first = rules.evaluate(&event, &Profile::new("u"));
    let again = rules.evaluate(&event, &Profile::new("u"));
    let ids =
        |e: &nudge_rules::Evaluation| e.actions.iter().map(|a| a.id(&event)).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&again));
    assert_ne!(ids(&first)[0], ids(&first)[1]);
    let cloudevent = first.actions[0].to_cloudevent(&event, "2026-11-27T10:00:01Z");
    assert_eq!(cloudevent["type"], "nudge.action.push");
    assert_eq!(cloudevent["causationid"], "e1");
    assert_eq!(cloudevent["rule"], "r@v1");
    assert_eq!(cloudevent["subject"], "user-42");
}

#[test]
fn an_endless_loop_fails_alone_and_names_the_limit() {
    let rules = set(vec![
        rule("looper", &["cart.*"], 5, "loop {}"),
        rule("fine", &["cart.*"], 0, r#"push(#{ title: "still here" })"#),
    ]);
    let evaluation = rules.evaluate(&cart_event(1.0), &Profile::new("u"));
    assert_eq!(evaluation.actions.len(), 1);
    assert_eq!(evaluation.actions[0].origin.id, "fine");
    assert_eq!(evaluation.failures.len(), 1);
    let failure = &evaluation.failures[0];
    assert_eq!(failure.rule, "looper");
    assert_eq!(
        failure.failure.kind,
        FailureKind::Limit("rule_max_operations")
    );
    assert_eq!(failure.reason(), "limit");
}

#[test]
fn every_limit_is_enforced_and_named() {
    let cases = [
        ("fn f(n) { f(n + 1) } f(0);", "rule_max_call_depth"),
        (r#"let s = "x"; loop { s += s; }"#, "rule_max_string_bytes"),
        ("let a = []; loop { a.push(1); }", "rule_max_array_len"),
        (
            "let m = #{}; m.a = 1; let i = 0; loop { m += #{ a: i }; m[`k${i}`] = i; i += 1; }",
            "rule_max_map_len",
        ),
        // Rhai does not check a map grown by index assignment; the action functions do.
        (
            "let m = #{}; for i in 0..300 { m[`k${i}`] = i; } push(m);",
            "rule_max_map_len",
        ),
        ("loop { push(#{}); }", "rule_max_actions"),
    ];
    for (script, limit) in cases {
        let rules = set(vec![rule("r", &[">"], 0, script)]);
        let evaluation = rules.evaluate(&cart_event(1.0), &Profile::new("u"));
        assert!(
            evaluation.actions.is_empty(),
            "{script}: actions of a failed rule are dropped"
        );
        assert_eq!(evaluation.failures.len(), 1, "{script}");
        assert_eq!(
            evaluation.failures[0].limit(),
            Some(limit),
            "{script}: {:?}",
            evaluation.failures[0]
        );
    }
}

#[test]
fn the_wall_clock_deadline_stops_what_operations_do_not() {
    let limits = Limits {
        max_operations: 0,
        deadline_ms: 5,
        ..Limits::default()
    };
    let rules = set_with(
        limits,
        vec![rule("r", &[">"], 0, "let i = 0; loop { i += 1; }")],
    );
    let evaluation = rules.evaluate(&cart_event(1.0), &Profile::new("u"));
    assert_eq!(evaluation.failures[0].limit(), Some("rule_deadline_ms"));
}

#[test]
fn scripts_cannot_reach_outside_the_sandbox() {
    for script in [r#"eval("1")"#, r#"import "fs" as fs;"#] {
        assert!(
            matches!(compile_error(script), RuleError::Compile { .. }),
            "{script}"
        );
    }
    let RuleError::Compile {
        line,
        column,
        message,
    } = compile_error("let a = 1;\nlet b = nope + 1;")
    else {
        panic!("expected a compile error")
    };
    assert_eq!((line, column), (2, 9), "{message}");
    assert!(message.contains("nope"), "{message}");
    let rules = set(vec![rule("r", &[">"], 0, "open_file(\"/etc/passwd\")")]);
    let evaluation = rules.evaluate(&cart_event(1.0), &Profile::new("u"));
    assert_eq!(evaluation.failures[0].failure.kind, FailureKind::Error);
}

#[test]
fn higher_priority_runs_first_and_disabled_rules_never_run() {
    let mut disabled = rule("c-off", &[">"], 100, "push(#{})");
    disabled.spec.enabled = false;
    let rules = set(vec![
        rule("a-low", &["cart.updated"], 1, "push(#{})"),
        rule("b-high", &["cart.*"], 9, "push(#{})"),
        disabled,
        rule("d-other", &["order.>"], 50, "push(#{})"),
    ]);
    let evaluation = rules.evaluate(&cart_event(1.0), &Profile::new("u"));
    assert_eq!(evaluation.matched, vec!["b-high@v1", "a-low@v1"]);
}

#[test]
fn scripts_may_not_leak_variables_into_the_next_rule() {
    let rules = set(vec![
        rule("a", &[">"], 2, "let secret = 1;"),
        rule("b", &[">"], 1, "push(#{ leaked: is_def_var(\"secret\") })"),
    ]);
    let evaluation = rules.evaluate(&cart_event(1.0), &Profile::new("u"));
    assert_eq!(evaluation.actions[0].data_json(), json!({"leaked": false}));
}

#[test]
fn a_rule_cannot_change_the_event_the_next_rule_sees() {
    let rules = set(vec![
        rule(
            "a",
            &[">"],
            3,
            "let d = event.data; d.total = 0; d.items.push(\"x\"); let i = event.data.items; i.clear();",
        ),
        rule("b", &[">"], 2, "let d = event.data; d[\"total\"] = -1;"),
        rule(
            "c",
            &[">"],
            1,
            "push(#{ total: event.data.total, items: event.data.items.len() })",
        ),
    ]);
    let evaluation = rules.evaluate(&cart_event(1.5), &Profile::new("u"));
    assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
    assert_eq!(
        evaluation.actions[0].data_json(),
        json!({"total": 1.5, "items": 1})
    );
}
