//! Did it work, end to end: a rule with a goal and a 10 % holdout on a real nats-server and a
//! real nudge. Only the treated group is sent anything, and `GET /api/rules/{id}/results`
//! counts each group and each conversion once — goal events delivered twice and a nudge
//! SIGKILLed between them (a new one resumes from the checkpoint) included — exactly as the
//! documented holdout draw and the orders sent say.

use std::time::Duration;

use nudge_rules::experiment::holdout_bucket;
use nudge_tests::*;
use serde_json::json;

const PROFILES: usize = 300;
const LEASE: [(&str, &str); 1] = [("NUDGE_PARTITION_LEASE_MS", "2000")];

fn user(i: usize) -> String {
    format!("user-{i}")
}

fn held_out(i: usize) -> bool {
    holdout_bucket("cart", &user(i)) < 1_000
}

fn orders(i: usize) -> bool {
    i.is_multiple_of(3)
}

async fn order(js: &async_nats::jetstream::Context, i: usize) {
    let placed = event(
        &format!("o{i}"),
        "order.placed",
        &user(i),
        json!({"total": 25}),
    );
    publish(js, &placed).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn results_count_each_group_and_conversion_once_across_a_sigkill() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let nudge = Nudge::start(&nats, &LEASE).await;
    nudge
        .put_rule(
            "cart",
            json!({"name": "Cart reminder", "triggers": ["cart.updated"],
                   "script": "push(#{ title: \"Still thinking?\" });",
                   "goal": {"event": "order.placed", "within": "1d", "value": "data.total"},
                   "holdout": 10}),
        )
        .await;
    for i in 0..PROFILES {
        let cart = event(&format!("c{i}"), "cart.updated", &user(i), json!({}));
        publish(&js, &cart).await;
    }
    // Half of the orders, each delivered twice (the same CloudEvent id: a redelivery).
    for i in (0..PROFILES / 2).filter(|i| orders(*i)) {
        order(&js, i).await;
        order(&js, i).await;
    }
    wait_drained(&js, Duration::from_secs(60)).await;
    nudge.kill().await;
    // A new nudge resumes; the first half is redelivered once more, then the rest arrives.
    let nudge = Nudge::start(&nats, &LEASE).await;
    for i in (0..PROFILES).filter(|i| orders(*i)) {
        order(&js, i).await;
    }
    wait_drained_or(&js, Duration::from_secs(60), || nudge.logs()).await;

    let treated = (0..PROFILES).filter(|i| !held_out(*i)).count() as u64;
    let control = PROFILES as u64 - treated;
    let treated_converted = (0..PROFILES)
        .filter(|i| !held_out(*i) && orders(*i))
        .count() as u64;
    let control_converted = (0..PROFILES).filter(|i| held_out(*i) && orders(*i)).count() as u64;
    assert!(
        control > 10 && control_converted > 0,
        "a control group to measure"
    );

    let (status, results) = nudge.api_get("/api/rules/cart/results").await;
    assert_eq!(status, 200, "{results}");
    let v1 = &results["versions"][0];
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["triggered"], PROFILES as u64, "{results:#}");
    for (group, profiles, converted) in [
        ("treatment", treated, treated_converted),
        ("control", control, control_converted),
    ] {
        assert_eq!(v1[group]["profiles"], profiles, "{group}: {results:#}");
        assert_eq!(v1[group]["converted"], converted, "{group}: {results:#}");
        assert_eq!(
            v1[group]["conversions"], converted,
            "{group}: once per action"
        );
        assert_eq!(v1[group]["value"], 25.0 * converted as f64, "{group}");
    }
    // Fewer than 50 held-out profiles: no uplift yet, and the answer says why.
    assert!(v1["uplift"].is_null());
    assert!(
        v1["reason"]
            .as_str()
            .unwrap()
            .contains("results_min_profiles"),
        "{v1}"
    );
    assert_eq!(results["overall"]["treatment"]["profiles"], treated);
    // Only the treated group got the push; the held-out decisions are traced as such.
    assert_eq!(stream_len(&js, "NUDGE_ACTIONS").await, treated);
    let first_held_out = (0..PROFILES).find(|i| held_out(*i)).unwrap();
    let (_, trace) = nudge
        .api_get(&format!("/api/profiles/{}/trace", user(first_held_out)))
        .await;
    let reasons: Vec<&str> = trace["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["suppressed"].as_array().unwrap())
        .filter_map(|s| s["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"holdout"), "{trace:#}");

    // The filters name their field.
    let (status, error) = nudge
        .api_get("/api/rules/cart/results?from=yesterday")
        .await;
    assert_eq!(
        (status.as_u16(), &error["error"]["field"]),
        (400, &json!("from"))
    );
    let (status, error) = nudge.api_get("/api/rules/cart/results?version=9").await;
    assert_eq!(
        (status.as_u16(), &error["error"]["field"]),
        (400, &json!("version"))
    );
}
