//! Did it work, end to end: a rule with a goal and a 10 % holdout on a real nats-server and a
//! real nudge. Only the treated group is sent anything, and `GET /api/rules/{id}/results`
//! counts each group and each conversion once — goal events delivered twice and a nudge
//! SIGKILLed between them (a new one resumes from the checkpoint) included — exactly as the
//! documented holdout draw and the orders sent say; each treated profile's webhook is
//! delivered and counted once under `delivered`; the rules list's summary agrees. On a 3-node
//! cluster, the same counts hold when a partition's owner is SIGKILLed under load and another
//! instance takes over from its checkpoint. A plugin's manifest goal and holdout count alike.

use std::time::Duration;

use nudge_rules::experiment::holdout_bucket;
use nudge_tests::cluster::NatsCluster;
use nudge_tests::receiver::Receiver;
use nudge_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PROFILES: usize = 300;
/// A short lease so the restarted nudge takes the partitions over at once, and a short ack wait
/// for deliveries the SIGKILL cut short (twice the webhook timeout).
const LEASE: [(&str, &str); 2] = [
    ("NUDGE_PARTITION_LEASE_MS", "2000"),
    ("NUDGE_WEBHOOK_TIMEOUT_MAX_MS", "2000"),
];

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

async fn put_cart_rule(nudge: &Nudge, script: &str) {
    nudge
        .put_rule(
            "cart",
            json!({"name": "Cart reminder", "triggers": ["cart.updated"], "script": script,
                   "goal": {"event": "order.placed", "within": "1d", "value": "data.total"},
                   "holdout": 10}),
        )
        .await;
}

/// A cart for every profile, then the orders of the first half, each delivered twice (the
/// same CloudEvent id: a redelivery).
async fn publish_carts_and_first_orders(js: &async_nats::jetstream::Context) {
    for i in 0..PROFILES {
        let cart = event(&format!("c{i}"), "cart.updated", &user(i), json!({}));
        publish(js, &cart).await;
    }
    for i in (0..PROFILES / 2).filter(|i| orders(*i)) {
        order(js, i).await;
        order(js, i).await;
    }
}

/// Every order, the first half once more: redeliveries after a restart or a failover.
async fn publish_all_orders(js: &async_nats::jetstream::Context) {
    for i in (0..PROFILES).filter(|i| orders(*i)) {
        order(js, i).await;
    }
}

/// Each group's profiles and conversions as the holdout draw and the orders say.
struct Expected {
    treated: u64,
    control: u64,
    treated_converted: u64,
    control_converted: u64,
}

fn expected() -> Expected {
    let treated = (0..PROFILES).filter(|i| !held_out(*i)).count() as u64;
    let converted = |held: bool| {
        (0..PROFILES)
            .filter(|i| held_out(*i) == held && orders(*i))
            .count() as u64
    };
    let expected = Expected {
        treated,
        control: PROFILES as u64 - treated,
        treated_converted: converted(false),
        control_converted: converted(true),
    };
    assert!(
        expected.control > 10 && expected.control_converted > 0,
        "a control group to measure"
    );
    expected
}

/// Version 1's counts are exact: every profile once in its group, every conversion once per
/// action, its value once; too few held out for an uplift, and the reason says so.
fn assert_counted_once(results: &Value) {
    let Expected {
        treated,
        control,
        treated_converted,
        control_converted,
    } = expected();
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
}

#[tokio::test(flavor = "multi_thread")]
async fn results_count_each_group_and_conversion_once_across_a_sigkill() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let nudge = Nudge::start(&nats, &LEASE).await;
    let receiver = Receiver::start().await;
    let (status, created) = nudge
        .api(
            Method::PUT,
            "/api/webhooks/crm",
            Some(json!({"url": receiver.url, "timeout_ms": 1000})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    put_cart_rule(
        &nudge,
        "push(#{ title: \"Still thinking?\" }); webhook(\"crm\", #{});",
    )
    .await;
    publish_carts_and_first_orders(&js).await;
    wait_drained(&js, Duration::from_secs(60)).await;
    nudge.kill().await;
    // A new nudge resumes; the first half is redelivered once more, then the rest arrives.
    let nudge = Nudge::start(&nats, &LEASE).await;
    publish_all_orders(&js).await;
    wait_drained_or(&js, Duration::from_secs(60), || nudge.logs()).await;

    let Expected {
        treated,
        control_converted,
        ..
    } = expected();

    // Every treated profile's webhook delivered (some by the first nudge, some by the second).
    until("the webhooks delivered", async || {
        (receiver.count() >= treated as usize).then_some(())
    })
    .await;
    let results = until("the deliveries counted", async || {
        let (status, results) = nudge.api_get("/api/rules/cart/results").await;
        assert_eq!(status, 200, "{results}");
        (results["versions"][0]["delivered"] == treated).then_some(results)
    })
    .await;
    assert_eq!(results["overall"]["delivered"], treated);
    assert_counted_once(&results);
    assert_eq!(results["overall"]["treatment"]["profiles"], treated);
    // The rules list's summary says the same.
    let (status, summary) = nudge.api_get("/api/results").await;
    assert_eq!(status, 200, "{summary}");
    let cart = &summary["rules"]["cart"];
    assert_eq!(cart["treatment"]["profiles"], treated, "{summary:#}");
    assert_eq!(cart["control"]["converted"], control_converted);
    assert_eq!(cart["reason"], results["versions"][0]["reason"]);
    // Only the treated group got the push and the webhook; the held-out decisions are traced
    // as such.
    assert_eq!(stream_len(&js, "NUDGE_ACTIONS").await, 2 * treated);
    assert!(receiver.count() >= treated as usize);
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

/// On a 3-node cluster with replicated streams, two instances share the partitions; one is
/// SIGKILLed while it decides and checkpoints under load (its checkpoints every 200 ms). The
/// other takes its partitions over from their last checkpoint — replaying what that one had
/// not covered, redelivered orders included — and the results still count every profile and
/// every conversion once.
#[tokio::test(flavor = "multi_thread")]
async fn results_count_once_when_the_owner_fails_over_on_a_cluster() {
    let cluster = NatsCluster::start(3).await;
    let settings = [
        ("NUDGE_REPLICAS", "3"),
        ("NUDGE_PARTITION_LEASE_MS", "2000"),
        ("NUDGE_CHECKPOINT_INTERVAL_MS", "200"),
    ];
    let a = Nudge::serve(&cluster.url, &settings).await;
    let b = Nudge::serve(&cluster.url, &settings).await;
    put_cart_rule(&a, "push(#{ title: \"Still thinking?\" });").await;
    until("both instances own partitions", async || {
        let (_, info) = b.api_get("/api/cluster").await;
        let owning = info["instances"].as_array().map_or(0, |i| {
            i.iter().filter(|i| i["partitions"] != json!([])).count()
        });
        (owning == 2).then_some(())
    })
    .await;
    let js = cluster.jetstream().await;
    publish_carts_and_first_orders(&js).await;
    // A dies with its share of those events in hand, some decided, some checkpointed.
    a.kill().await;
    publish_all_orders(&js).await;
    wait_drained_or(&js, Duration::from_secs(90), || {
        format!("--- b\n{}\n{}", b.logs(), cluster.logs())
    })
    .await;
    let (status, results) = b.api_get("/api/rules/cart/results").await;
    assert_eq!(status, 200, "{results}");
    assert_counted_once(&results);
    assert_eq!(stream_len(&js, "NUDGE_ACTIONS").await, expected().treated);
}

/// A plugin's manifest declares a goal and a 10 % holdout: its actions are held out, attributed
/// and counted exactly as a rule's, under `GET /api/plugins/{name}/results`, with the draw of
/// `plugin:<name>`.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugins_goal_and_holdout_count_as_a_rules_do() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let nudge = Nudge::start(&nats, &[]).await;
    nudge
        .put_plugin(
            "pricing",
            plugin_wasm("dynamic_pricing"),
            json!({ "triggers": ["product.viewed"],
                    "config": { "max_discount_pct": 20, "repeat_views": 2,
                                "repeat_view_discount_pct": 7, "floor": 1 },
                    "goal": { "event": "order.placed", "within": "1d", "value": "data.total" },
                    "holdout": 10 }),
        )
        .await;
    until("the plugin loaded", async || {
        let logs = nudge.logs();
        let loaded = |l: &&str| l.contains("plugin loaded") && l.contains("plugin=pricing");
        logs.lines().any(|l| loaded(&l)).then_some(())
    })
    .await;
    let held = |i: usize| holdout_bucket("plugin:pricing", &user(i)) < 1_000;
    for i in 0..PROFILES {
        let view = event(
            &format!("v{i}"),
            "product.viewed",
            &user(i),
            json!({ "product_id": "sku-7", "price": 50, "views": 3 }),
        );
        publish(&js, &view).await;
    }
    for i in (0..PROFILES).filter(|i| orders(*i)) {
        order(&js, i).await;
        order(&js, i).await;
    }
    wait_drained_or(&js, Duration::from_secs(60), || nudge.logs()).await;

    let treated = (0..PROFILES).filter(|i| !held(*i)).count() as u64;
    let converted = |control: bool| {
        (0..PROFILES)
            .filter(|i| held(*i) == control && orders(*i))
            .count() as u64
    };
    let (status, results) = nudge.api_get("/api/plugins/pricing/results").await;
    assert_eq!(status, 200, "{results}");
    assert_eq!(results["plugin"], "pricing");
    assert_eq!(results["holdout"], 10.0);
    let v1 = &results["versions"][0];
    assert_eq!(v1["version"], 1, "{results:#}");
    assert_eq!(v1["triggered"], PROFILES as u64);
    assert_eq!(v1["treatment"]["profiles"], treated);
    assert_eq!(v1["control"]["profiles"], PROFILES as u64 - treated);
    assert_eq!(v1["treatment"]["converted"], converted(false));
    assert_eq!(v1["control"]["converted"], converted(true));
    assert_eq!(v1["control"]["conversions"], converted(true), "once each");
    // Only the treated profiles were sent a price; the others are traced as held out.
    assert_eq!(stream_len(&js, "NUDGE_ACTIONS").await, treated);
    let first_held = (0..PROFILES).find(|i| held(*i)).unwrap();
    let (_, trace) = nudge
        .api_get(&format!("/api/profiles/{}/trace", user(first_held)))
        .await;
    assert!(
        trace
            .to_string()
            .contains("plugin:pricing@v1's 10% holdout"),
        "{trace:#}"
    );
    // A rule by the same name would be another experiment: the rules' summary has no plugin.
    let (_, summary) = nudge.api_get("/api/results").await;
    assert_eq!(summary["rules"], json!({}), "{summary}");
    let (status, error) = nudge
        .api_get("/api/plugins/pricing/results?version=7")
        .await;
    assert_eq!(
        (status.as_u16(), &error["error"]["field"]),
        (400, &json!("version"))
    );
}
