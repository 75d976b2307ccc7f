//! Plugins end to end: the registry API, plugins deciding actions for events from NATS, rules
//! calling plugins, hostile guests failing alone, and hot swap while events flow.

use std::collections::HashMap;
use std::time::Duration;

use nudge_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_validates_stores_versions_and_switches_plugins() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[("NUDGE_PLUGIN_MAX_WASM_BYTES", "1000000")]).await;

    let stored = nudge
        .put_plugin(
            "pricing",
            plugin_wasm("dynamic_pricing"),
            json!({ "triggers": ["product.viewed"] }),
        )
        .await;
    assert_eq!(stored["version"], 1);
    assert_eq!(stored["triggers"], json!(["product.viewed"]));
    assert_eq!(stored["sha256"].as_str().map(str::len), Some(64));

    // Not a component, a forbidden import, an unparsable trigger, too large: refused, field named.
    let refusals = [
        (
            "garbage",
            b"\0asm-not-really".to_vec(),
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "wasm",
            "not a WebAssembly component",
        ),
        (
            "sneaky",
            plugin_wasm("sneaky"),
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "wasm",
            "does not grant",
        ),
        (
            "badtrigger",
            plugin_wasm("dynamic_pricing"),
            json!({ "triggers": ["a..b"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "triggers[0]",
            "",
        ),
        (
            "huge",
            vec![0u8; 1_200_000],
            json!({}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "wasm",
            "plugin_max_wasm_bytes",
        ),
    ];
    for (name, wasm, manifest, status, field, message) in refusals {
        let (got, body) = nudge.upload_plugin(name, wasm, manifest).await;
        assert_eq!(got, status, "{name}: {body}");
        assert_eq!(body["error"]["field"], field, "{name}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(message),
            "{name}: {body}"
        );
        let (_, missing) = nudge.api_get(&format!("/api/plugins/{name}")).await;
        assert_eq!(
            missing["error"]["field"], "id",
            "{name} must not be stored: {missing}"
        );
    }

    // A raw application/wasm upload keeps the manifest; PATCH changes it and keeps the code.
    let response = client()
        .put(nudge.url("/api/plugins/pricing"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/wasm")
        .body(plugin_wasm("dynamic_pricing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let v2: Value = response.json().await.unwrap();
    assert_eq!(
        (v2["version"].clone(), v2["triggers"].clone()),
        (json!(2), json!(["product.viewed"]))
    );
    let (_, v3) = nudge
        .api(
            Method::PATCH,
            "/api/plugins/pricing",
            Some(json!({ "enabled": false })),
        )
        .await;
    assert_eq!(
        (
            v3["version"].clone(),
            v3["enabled"].clone(),
            v3["sha256"].clone()
        ),
        (json!(3), json!(false), stored["sha256"].clone())
    );

    let (_, list) = nudge.api_get("/api/plugins").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let (_, versions) = nudge.api_get("/api/plugins/pricing/versions").await;
    assert_eq!(versions.as_array().map(Vec::len), Some(3), "{versions}");

    let status = client()
        .get(nudge.url("/api/plugins"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (_, deleted) = nudge
        .api(Method::DELETE, "/api/plugins/pricing", None)
        .await;
    assert_eq!(deleted["deleted"], true);
    let (status, _) = nudge.api_get("/api/plugins/pricing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_prices_products_from_events_on_nats_and_can_be_dry_run() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    nudge
        .put_plugin(
            "dynamic-pricing",
            plugin_wasm("dynamic_pricing"),
            json!({ "triggers": ["product.viewed"], "config": { "max_discount_pct": 20, "repeat_views": 2, "repeat_view_discount_pct": 7, "floor": 1 } }),
        )
        .await;
    wait_loaded(&nudge, "dynamic-pricing", 1).await;

    let view = event(
        "view-1",
        "product.viewed",
        "user-9",
        json!({ "product_id": "sku-7", "price": 50, "views": 3 }),
    );
    let (_, answer) = nudge
        .api(
            Method::POST,
            "/api/plugins/dynamic-pricing/test",
            Some(json!({ "event": view })),
        )
        .await;
    assert_eq!(answer["actions"][0]["data"]["price"], 46.5, "{answer}");
    assert!(answer["report"]["wall_us"].as_u64().is_some(), "{answer}");
    assert_eq!(
        stream_len(&js, "NUDGE_ACTIONS").await,
        0,
        "a dry run publishes nothing"
    );

    publish(&js, &view).await;
    wait_for_len(&js, "NUDGE_ACTIONS", 1, WAIT, &nudge.logs()).await;
    let messages = read_stream(&js, "NUDGE_ACTIONS", 10).await;
    let action = json_payload(&messages[0]);
    assert_eq!(messages[0].subject.as_str(), "actions.price");
    assert_eq!(action["rule"], "plugin:dynamic-pricing@v1");
    assert_eq!(action["causationid"], "view-1");
    assert_eq!(action["data"]["product_id"], "sku-7");
    assert_eq!(action["data"]["price"], 46.5);
    assert_eq!(action["data"]["discount_pct"], 7.0);

    // Redelivered or republished, the same event causes no second action.
    publish(&js, &view).await;
    wait_drained(&js, WAIT).await;
    assert_eq!(stream_len(&js, "NUDGE_ACTIONS").await, 1);
    assert!(
        nudge
            .metrics()
            .await
            .contains("nudge_plugin_calls_total{plugin=\"dynamic-pricing\",export=\"handle\"}")
    );

    // Disabled (a new version), it no longer decides anything.
    let (status, _) = nudge
        .api(
            Method::PATCH,
            "/api/plugins/dynamic-pricing",
            Some(json!({ "enabled": false })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_loaded(&nudge, "dynamic-pricing", 2).await;
    let mut second = view.clone();
    second["id"] = json!("view-2");
    publish(&js, &second).await;
    wait_drained(&js, WAIT).await;
    assert_eq!(stream_len(&js, "NUDGE_ACTIONS").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_composes_a_localized_push_from_events_on_nats() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    nudge
        .put_plugin(
            "push-compose",
            plugin_wasm("push_compose"),
            json!({ "triggers": ["order.shipped"] }),
        )
        .await;
    wait_loaded(&nudge, "push-compose", 1).await;
    let shipped = event(
        "ship-1",
        "order.shipped",
        "user-5",
        json!({ "order_id": "A-17", "carrier": "DHL" }),
    );
    publish(&js, &shipped).await;
    wait_for_len(&js, "NUDGE_ACTIONS", 1, WAIT, &nudge.logs()).await;
    let message = &read_stream(&js, "NUDGE_ACTIONS", 1).await[0];
    let action = json_payload(message);
    assert_eq!(message.subject.as_str(), "actions.push");
    assert_eq!(action["rule"], "plugin:push-compose@v1");
    assert_eq!(action["data"]["title"], "Your order is on its way");
    assert_eq!(action["data"]["body"], "Order A-17 ships with DHL.");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_calls_a_plugin_as_a_function() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    nudge
        .put_plugin("offers", plugin_wasm("personalize_offer"), json!({}))
        .await;
    wait_loaded(&nudge, "offers", 1).await;
    nudge
        .put_rule(
            "vip-banner",
            json!({
                "name": "VIP banner",
                "triggers": ["page.viewed"],
                "script": r#"let offer = plugin("offers", #{ segment: event.data.segment });
                             if offer != () { personalize("hero", #{ offer: offer.id, banner: offer.banner }) }"#
            }),
        )
        .await;
    publish(
        &js,
        &event("p-1", "page.viewed", "user-3", json!({ "segment": "vip" })),
    )
    .await;
    wait_for_len(&js, "NUDGE_ACTIONS", 1, WAIT, &nudge.logs()).await;
    let action = json_payload(&read_stream(&js, "NUDGE_ACTIONS", 1).await[0]);
    assert_eq!(action["rule"], "vip-banner@v1");
    assert_eq!(
        action["data"],
        json!({ "slot": "hero", "offer": "vip-early-access", "banner": "Early access to the new collection" })
    );
}

/// Every hostile behaviour fails its own event within twice the deadline; the events are acked
/// (not retried forever), ordinary events still get their actions, nudge keeps serving, and each
/// failure is counted by plugin and reason.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_plugins_fail_alone_and_are_counted_by_reason() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    nudge
        .put_plugin(
            "hostile",
            plugin_wasm("hostile"),
            json!({ "triggers": ["hostile.*", "user.*"] }),
        )
        .await;
    wait_loaded(&nudge, "hostile", 1).await;
    let kinds = ["loop", "memory", "recursion", "trap", "output"];
    for (i, kind) in kinds.iter().enumerate() {
        publish(
            &js,
            &event(
                &format!("bad-{i}"),
                &format!("hostile.{kind}"),
                "user-1",
                json!({}),
            ),
        )
        .await;
        publish(
            &js,
            &event(
                &format!("ok-{i}"),
                "user.ok",
                &format!("user-{i}"),
                json!({}),
            ),
        )
        .await;
    }
    wait_drained(&js, WAIT).await;
    let actions = read_stream(&js, "NUDGE_ACTIONS", 20).await;
    let causes: Vec<String> = actions
        .iter()
        .map(|m| json_payload(m)["causationid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        causes.len(),
        kinds.len(),
        "one action per ordinary event: {causes:?}"
    );
    assert!(causes.iter().all(|c| c.starts_with("ok-")), "{causes:?}");
    assert_eq!(
        stream_len(&js, "NUDGE_DLQ").await,
        0,
        "a plugin failure is not a poison event"
    );

    let metrics = nudge.metrics().await;
    for reason in ["deadline", "memory", "stack", "trap", "output"] {
        let line = format!("nudge_plugin_errors_total{{plugin=\"hostile\",reason=\"{reason}\"}} 1");
        let counted: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("nudge_plugin_errors_total"))
            .collect();
        assert!(metrics.contains(&line), "missing {line} in: {counted:#?}");
    }
    let healthz = reqwest::get(nudge.url("/healthz")).await.unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);
    assert!(
        nudge.logs().contains("plugin_deadline_ms"),
        "the log names the limit"
    );
}

/// New versions are uploaded while events flow: every event gets exactly one action, from a
/// fully loaded version (v1's or v2's payload, never a mix, never none).
#[tokio::test(flavor = "multi_thread")]
async fn hot_swap_while_events_flow_loses_nothing() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    let manifest = |slot: &str| json!({ "triggers": ["cart.updated"], "config": { "slot": slot, "offers": [{ "id": slot, "banner": slot }] } });
    nudge
        .put_plugin("offers", plugin_wasm("personalize_offer"), manifest("v1"))
        .await;
    wait_loaded(&nudge, "offers", 1).await;

    const EVENTS: usize = 600;
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            for i in 0..EVENTS {
                publish(
                    &js,
                    &event(
                        &format!("c-{i}"),
                        "cart.updated",
                        &format!("user-{}", i % 37),
                        json!({ "value": i }),
                    ),
                )
                .await;
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    for version in 2..=4 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        nudge
            .put_plugin(
                "offers",
                plugin_wasm("personalize_offer"),
                manifest(&format!("v{version}")),
            )
            .await;
    }
    publisher.await.unwrap();
    wait_for_len(&js, "NUDGE_ACTIONS", EVENTS as u64, WAIT, &nudge.logs()).await;
    wait_drained(&js, WAIT).await;
    let actions = read_stream(&js, "NUDGE_ACTIONS", EVENTS + 10).await;
    assert_eq!(actions.len(), EVENTS);
    let mut per_event: HashMap<String, usize> = HashMap::new();
    let mut versions_seen: HashMap<String, usize> = HashMap::new();
    for message in &actions {
        let action = json_payload(message);
        *per_event
            .entry(action["causationid"].as_str().unwrap().to_owned())
            .or_default() += 1;
        let label = action["rule"].as_str().unwrap().to_owned();
        let slot = action["data"]["slot"].as_str().unwrap();
        assert_eq!(
            label,
            format!("plugin:offers@{slot}"),
            "code and configuration of one version: {action}"
        );
        assert_eq!(action["data"]["offer"], slot);
        *versions_seen.entry(label).or_default() += 1;
    }
    assert_eq!(per_event.len(), EVENTS);
    assert!(per_event.values().all(|&n| n == 1));
    assert!(
        versions_seen.contains_key("plugin:offers@v4"),
        "{versions_seen:?}"
    );
}

/// Waits until the instance logged that it runs `version` of plugin `name`.
async fn wait_loaded(nudge: &Nudge, name: &str, version: u64) {
    let needle = format!("plugin={name} version={version}");
    let deadline = std::time::Instant::now() + WAIT;
    while !nudge
        .logs()
        .lines()
        .any(|l| l.contains("plugin loaded") && l.contains(&needle))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} v{version} never loaded:\n{}",
            nudge.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
