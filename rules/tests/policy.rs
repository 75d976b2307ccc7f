//! Marketing policy and profile state through the whole decision, on a simulated clock:
//! caps in the profile's time zone, quiet hours that hold and release, transactional bypass,
//! consent with its trace, cooldown, priority arbitration, attributes, redelivery and timers.

use std::collections::BTreeMap;
use std::sync::Arc;

use nudge_rules::calendar::{QuietHours, parse_rfc3339};
use nudge_rules::rule::CapLimits;
use nudge_rules::simulate::Simulation;
use nudge_rules::{
    CloudEvent, CompiledRule, Decider, Decision, Limits, PluginOutcome, Policy, ProfileState, Rule,
    RuleSet, RuleSpec, Sandbox, StateLimits,
};
use serde_json::{Value, json};

fn ms(text: &str) -> i64 {
    parse_rfc3339(text).unwrap()
}

fn rules(specs: Vec<(&str, RuleSpec)>) -> RuleSet {
    let sandbox = Arc::new(Sandbox::new(Limits::default()));
    specs
        .into_iter()
        .fold(RuleSet::new(sandbox.clone()), |set, (id, spec)| {
            let rule = Rule {
                version: 1,
                ..Rule::unsaved(id, spec, "test")
            };
            set.with_rule(Arc::new(CompiledRule::compile(&sandbox, rule).unwrap()))
        })
}

fn event(id: &str, event_type: &str, data: Value) -> CloudEvent {
    CloudEvent::from_value(json!({"specversion":"1.0","id":id,"source":"test",
        "type":event_type,"subject":"u1","data":data}))
    .unwrap()
}

struct World {
    rules: RuleSet,
    policy: Policy,
    limits: StateLimits,
    state: ProfileState,
}

impl World {
    fn new(rules: RuleSet, policy: Policy) -> World {
        World {
            rules,
            policy,
            limits: StateLimits::default(),
            state: ProfileState::new("u1", 0),
        }
    }

    fn decide(&mut self, event: &CloudEvent, at: &str) -> Decision {
        let decider = Decider {
            sandbox: self.rules.sandbox(),
            policy: &self.policy,
            limits: &self.limits,
        };
        let matching = self.rules.matching(&event.event_type);
        decider.decide(&mut self.state, event, ms(at), &matching, &mut |_, _| {
            PluginOutcome::default()
        })
    }
}

fn push_rule(priority: i32) -> RuleSpec {
    RuleSpec {
        priority,
        ..RuleSpec::new("p", &["cart.updated"], r#"push(#{ title: "hi" });"#)
    }
}

fn reasons(decision: &Decision) -> Vec<&str> {
    decision
        .trace
        .suppressed
        .iter()
        .filter_map(|s| s.reason)
        .collect()
}

#[test]
fn caps_count_days_in_the_profile_time_zone() {
    let policy = Policy {
        caps: BTreeMap::from([(
            "push".to_owned(),
            CapLimits {
                per_day: Some(2),
                per_week: Some(3),
            },
        )]),
        ..Policy::default()
    };
    let mut world = World::new(rules(vec![("p", push_rule(0))]), policy);
    world.state.profile.timezone = "Asia/Tokyo".into();
    let fired = |d: &Decision| d.publish.len();
    // Friday 2026-11-27 in Tokyo (UTC+9): 01:00Z and 02:00Z are 10:00 and 11:00 local.
    assert_eq!(
        fired(&world.decide(
            &event("1", "cart.updated", json!({})),
            "2026-11-27T01:00:00Z"
        )),
        1
    );
    assert_eq!(
        fired(&world.decide(
            &event("2", "cart.updated", json!({})),
            "2026-11-27T02:00:00Z"
        )),
        1
    );
    let third = world.decide(
        &event("3", "cart.updated", json!({})),
        "2026-11-27T14:00:00Z",
    );
    assert_eq!(fired(&third), 0);
    assert_eq!(reasons(&third), ["cap"]);
    assert!(
        third.trace.suppressed[0]
            .detail
            .as_ref()
            .unwrap()
            .contains("2 per day")
    );
    // 15:00Z is already Saturday in Tokyo: a new day, but the week's third and last.
    assert_eq!(
        fired(&world.decide(
            &event("4", "cart.updated", json!({})),
            "2026-11-27T15:00:00Z"
        )),
        1
    );
    let fifth = world.decide(
        &event("5", "cart.updated", json!({})),
        "2026-11-28T03:00:00Z",
    );
    assert!(
        fifth.trace.suppressed[0]
            .detail
            .as_ref()
            .unwrap()
            .contains("3 per week")
    );
    // Monday in Tokyo: a new ISO week.
    assert_eq!(
        fired(&world.decide(
            &event("6", "cart.updated", json!({})),
            "2026-11-29T16:00:00Z"
        )),
        1
    );
}

#[test]
fn rule_caps_and_transactional_actions() {
    let capped = RuleSpec {
        caps: BTreeMap::from([(
            "push".to_owned(),
            CapLimits {
                per_day: Some(1),
                per_week: None,
            },
        )]),
        ..RuleSpec::new(
            "c",
            &["cart.updated"],
            r#"push(#{ title: "promo" }); push(#{ title: "receipt", transactional: true });"#,
        )
    };
    let mut world = World::new(rules(vec![("c", capped)]), Policy::default());
    let first = world.decide(
        &event("1", "cart.updated", json!({})),
        "2026-11-27T10:00:00Z",
    );
    assert_eq!(first.publish.len(), 2);
    let second = world.decide(
        &event("2", "cart.updated", json!({})),
        "2026-11-27T11:00:00Z",
    );
    assert_eq!(
        second.publish.len(),
        1,
        "only the transactional one: {:?}",
        second.trace
    );
    assert_eq!(second.fired[0].data_json()["title"], "receipt");
    assert_eq!(reasons(&second), ["cap"]);
}

#[test]
fn quiet_hours_hold_and_release_at_their_end() {
    let policy = Policy {
        quiet_hours: Some(QuietHours {
            start: "21:00".into(),
            end: "08:00".into(),
        }),
        quiet_channels: vec!["push".into()],
        ..Policy::default()
    };
    let set = rules(vec![("p", push_rule(0))]);
    let limits = StateLimits::default();
    let decider = Decider {
        sandbox: set.sandbox(),
        policy: &policy,
        limits: &limits,
    };
    let mut simulation = Simulation::new(decider, &set, 10).keep_traces();
    // 22:00 UTC: quiet. Held, not dropped.
    simulation.feed(
        &event("1", "cart.updated", json!({})),
        ms("2026-11-27T22:00:00Z"),
    );
    simulation.advance(ms("2026-11-28T07:59:59Z"));
    assert_eq!(simulation.report.actions_total, 0);
    assert_eq!(simulation.report.held, 1);
    simulation.advance(ms("2026-11-28T08:00:00Z"));
    assert_eq!(simulation.report.actions_total, 1);
    // Daytime: straight out.
    simulation.feed(
        &event("2", "cart.updated", json!({})),
        ms("2026-11-28T12:00:00Z"),
    );
    let (report, traces) = simulation.finish();
    assert_eq!(report.actions_total, 2);
    let traces = traces.unwrap();
    assert_eq!(traces[0].held[0].reason, Some("quiet_hours"));
    assert_eq!(
        traces[0].held[0].until.as_deref(),
        Some("2026-11-28T08:00:00.000Z")
    );
    assert_eq!(report.sample[0]["time"], "2026-11-27T22:00:00.000Z");
}

#[test]
fn consent_suppresses_even_transactional_and_the_trace_says_why() {
    let spec = RuleSpec::new(
        "t",
        &["order.placed"],
        r#"push(#{ title: "Thanks", transactional: true }); personalize("home", #{ x: 1 });"#,
    );
    let mut world = World::new(rules(vec![("t", spec)]), Policy::default());
    world.decide(
        &event(
            "0",
            "profile.identified",
            json!({"consent": {"push": false}, "plan": "pro"}),
        ),
        "2026-11-27T10:00:00Z",
    );
    assert_eq!(world.state.profile.attributes["plan"], "pro");
    let decision = world.decide(
        &event("1", "order.placed", json!({})),
        "2026-11-27T10:01:00Z",
    );
    assert_eq!(decision.publish.len(), 1);
    assert_eq!(decision.fired[0].channel.as_str(), "personalize");
    let suppressed = &decision.trace.suppressed[0];
    assert_eq!(suppressed.reason, Some("consent"));
    assert_eq!(suppressed.channel, Some("push"));
    assert_eq!(suppressed.rule, "t@v1");
    assert!(
        suppressed
            .detail
            .as_ref()
            .unwrap()
            .contains("opted out of push")
    );
}

#[test]
fn the_higher_priority_rule_wins_the_channel_and_cooldown_holds() {
    let low = push_rule(1);
    let high = RuleSpec {
        cooldown: Some("7d".into()),
        ..push_rule(5)
    };
    let mut world = World::new(rules(vec![("low", low), ("high", high)]), Policy::default());
    let first = world.decide(
        &event("1", "cart.updated", json!({})),
        "2026-11-27T10:00:00Z",
    );
    assert_eq!(first.fired.len(), 1);
    assert_eq!(first.fired[0].origin.id, "high");
    assert_eq!(reasons(&first), ["priority"]);
    // Within the cooldown the high rule is out, so the low one gets the channel.
    let second = world.decide(
        &event("2", "cart.updated", json!({})),
        "2026-12-01T10:00:00Z",
    );
    assert_eq!(second.fired[0].origin.id, "low");
    assert_eq!(reasons(&second), ["cooldown"]);
    let later = world.decide(
        &event("3", "cart.updated", json!({})),
        "2026-12-04T10:00:01Z",
    );
    assert_eq!(later.fired[0].origin.id, "high");
}

#[test]
fn windows_attributes_and_last_seen_in_rules() {
    let spec = RuleSpec::new(
        "w",
        &["product.viewed"],
        r#"
        let same = count("product.viewed", "1h", #{ product_id: event.data.product_id });
        set_attribute("views_1h", count("product.viewed", "1h"));
        set_attribute("same_1h", same);
        set_attribute("previous", last_seen("product.viewed"));
        set_attribute("since_s", since("product.viewed"));
        "#,
    );
    let mut world = World::new(rules(vec![("w", spec)]), Policy::default());
    for (id, product, at) in [
        ("1", "p1", "2026-11-27T10:00:00Z"),
        ("2", "p2", "2026-11-27T10:30:00Z"),
        ("3", "p1", "2026-11-27T10:45:00Z"),
        ("4", "p1", "2026-11-27T11:10:00Z"),
    ] {
        let d = world.decide(
            &event(id, "product.viewed", json!({"product_id": product})),
            at,
        );
        assert!(d.failures.is_empty(), "{:?}", d.failures);
    }
    let attributes = &world.state.profile.attributes;
    assert_eq!(attributes["views_1h"], 3, "10:00 fell out of the hour");
    assert_eq!(attributes["same_1h"], 2);
    assert_eq!(attributes["previous"], "2026-11-27T10:45:00.000Z");
    assert_eq!(attributes["since_s"], 25 * 60);
}

#[test]
fn failures_change_nothing_and_name_the_limit() {
    let spec = RuleSpec::new(
        "f",
        &["a.b"],
        r#"set_attribute("x", 1); after("1h", "t"); count("a.b", "90d");"#,
    );
    let mut world = World::new(rules(vec![("f", spec)]), Policy::default());
    let decision = world.decide(&event("1", "a.b", json!({})), "2026-11-27T10:00:00Z");
    assert_eq!(
        decision.failures[0].limit(),
        Some("profile_window_max_age_s")
    );
    assert_eq!(reasons(&decision), ["limit"]);
    assert!(world.state.profile.attributes.is_empty());
    assert!(world.state.timers.is_empty() && decision.schedule.is_empty());
}

#[test]
fn a_duplicate_event_publishes_and_changes_nothing() {
    let mut world = World::new(rules(vec![("p", push_rule(0))]), Policy::default());
    let cart = event("1", "cart.updated", json!({}));
    let first = world.decide(&cart, "2026-11-27T10:00:00Z");
    assert_eq!(first.publish.len(), 1);
    let state = world.state.clone();
    let again = world.decide(&cart, "2026-11-27T10:05:00Z");
    assert!(again.duplicate);
    assert!(
        again.publish.is_empty(),
        "its actions went out the first time"
    );
    assert_eq!(world.state, state);
}

#[test]
fn timers_fire_once_with_their_cause_and_unless_cancels() {
    let spec = RuleSpec::new(
        "a",
        &["cart.updated", "timer.remind"],
        r#"
        if event.type == "cart.updated" {
            after("30m", "remind", #{ unless: ["order.*"], data: #{ total: event.data.total } });
        } else {
            push(#{ title: `cart of ${event.data.total}`, cart: event.data.cause.id });
        }
        "#,
    );
    let set = rules(vec![("a", spec)]);
    let (policy, limits) = (Policy::default(), StateLimits::default());
    let decider = Decider {
        sandbox: set.sandbox(),
        policy: &policy,
        limits: &limits,
    };
    let mut simulation = Simulation::new(decider, &set, 10);
    simulation.feed(
        &event("c1", "cart.updated", json!({"total": 5})),
        ms("2026-11-27T10:00:00Z"),
    );
    simulation.advance(ms("2026-11-27T10:29:59Z"));
    assert_eq!(simulation.report.actions_total, 0);
    simulation.advance(ms("2026-11-27T10:30:00Z"));
    assert_eq!(simulation.report.actions_total, 1);
    assert_eq!(simulation.report.sample[0]["data"]["cart"], "c1");
    assert_eq!(simulation.report.sample[0]["data"]["title"], "cart of 5");
    simulation.feed(
        &event("c2", "cart.updated", json!({"total": 7})),
        ms("2026-11-27T11:00:00Z"),
    );
    simulation.feed(
        &event("o1", "order.placed", json!({})),
        ms("2026-11-27T11:10:00Z"),
    );
    simulation.advance(ms("2026-11-28T11:00:00Z"));
    assert_eq!(simulation.report.actions_total, 1);
    assert_eq!(simulation.report.timers_fired, 1);
    assert!(simulation.profile("u1").unwrap().timers.is_empty());
}
