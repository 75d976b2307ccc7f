//! Event schemas end to end, against a real nats-server and nudge: a schema drafted from stored
//! events and registered; an incompatible change refused with its reasons; bad events flagged
//! (`warn`, in the trace) or blocked (`block`: to the DLQ with their paths over NATS, 400 naming
//! the field over HTTP) and re-driven once the schema is fixed; the violations report; rules and
//! plugins whose reads the schemas lack warned about, or refused in strict mode.

use nudge_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn cart(i: usize) -> Value {
    json!({
        "cart_id": format!("c-{i}"),
        "total": 10.5 + i as f64,
        "currency": if i.is_multiple_of(2) { "EUR" } else { "USD" },
        "items": [{"sku": format!("sku-{i}"), "qty": 1 + i % 3}],
    })
}

async fn put_schema(nudge: &Nudge, event_type: &str, body: Value) -> (StatusCode, Value) {
    nudge
        .api(
            Method::PUT,
            &format!("/api/schemas/{event_type}"),
            Some(body),
        )
        .await
}

/// Publishes carts, drafts a schema from them and registers it with `mode`.
async fn plan_carts(nudge: &Nudge, js: &async_nats::jetstream::Context, mode: &str) -> Value {
    for i in 0..12 {
        publish(
            js,
            &event(&format!("seed-{i}"), "cart.updated", "seed", cart(i)),
        )
        .await;
    }
    let (status, draft) = nudge
        .api(Method::POST, "/api/schemas/cart.updated/infer", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{draft}");
    assert_eq!(draft["events"], 12, "{draft}");
    let schema = draft["schema"].clone();
    assert_eq!(schema["properties"]["total"]["type"], "number", "{schema}");
    assert_eq!(
        schema["properties"]["currency"]["enum"],
        json!(["EUR", "USD"])
    );
    let (status, stored) = put_schema(
        nudge,
        "cart.updated",
        json!({"schema": schema, "mode": mode}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    assert_eq!(stored["recent_events"]["checked"], 12, "{stored}");
    assert_eq!(stored["recent_events"]["failing"], 0, "{stored}");
    schema
}

#[tokio::test]
async fn a_registry_of_versions_that_refuses_incompatible_changes() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    let schema = plan_carts(&nudge, &js, "warn").await;

    // A new required field: old events lack it, so `backward` refuses, naming why.
    let mut stricter = schema.clone();
    stricter["required"]
        .as_array_mut()
        .unwrap()
        .push(json!("coupon"));
    stricter["properties"]["coupon"] = json!({"type": "string"});
    let (status, refused) = put_schema(
        &nudge,
        "cart.updated",
        json!({"schema": stricter, "version": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let reasons: Vec<String> = serde_json::from_value(refused["error"]["reasons"].clone()).unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("the new version requires `coupon`")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("stored event seed-") && r.contains("coupon")),
        "{reasons:?}"
    );
    // The current version's mode applies: loosening it is a change of its own (version 2),
    // after which the same change is taken (version 3).
    let (status, stored) = put_schema(
        &nudge,
        "cart.updated",
        json!({"schema": schema, "compatibility": "none", "version": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    let (status, stored) = put_schema(
        &nudge,
        "cart.updated",
        json!({"schema": stricter, "version": 2}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["version"], 3);
    assert_eq!(
        stored["recent_events"]["failing"], 12,
        "every seed lacks a coupon: {stored}"
    );
    let (_, versions) = nudge.api_get("/api/schemas/cart.updated/versions").await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        3,
        "{versions}"
    );
    let (status, first) = nudge.api_get("/api/schemas/cart.updated/versions/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["schema"], schema);
    // Not a schema: 400 naming the place in the document.
    let (status, error) = put_schema(
        &nudge,
        "page.viewed",
        json!({"schema": {"type": "object", "properties": {"url": {"type": 5}}}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let field = error["error"]["field"].as_str().unwrap();
    assert!(
        field.starts_with("schema") && field.contains("/properties/url"),
        "{error}"
    );
    let (status, error) =
        put_schema(&nudge, "page.viewed", json!({"schema": {}, "mode": "loud"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["field"], "mode", "{error}");
    let (_, list) = nudge.api_get("/api/schemas").await;
    assert_eq!(list["schemas"][0]["type"], "cart.updated", "{list}");
    assert_eq!(list["unplanned_events"], "allow");
    let audit = nudge.audit_actions().await;
    assert!(audit.contains(&"schema.create".into()) && audit.contains(&"schema.update".into()));
}

#[tokio::test]
async fn bad_events_are_flagged_or_blocked_and_re_driven_once_fixed() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[("NUDGE_UNPLANNED_EVENTS", "warn")]).await;
    let js = nats.jetstream().await;
    let schema = plan_carts(&nudge, &js, "warn").await;
    nudge
        .put_rule(
            "cart-push",
            json!({"name": "cart push", "triggers": ["cart.updated"],
                   "script": "push(#{ title: `Your cart: ${event.data.total}` })"}),
        )
        .await;

    // warn: decided as usual, the violation in the trace.
    let bad = json!({"cart_id": "x", "total": "12", "currency": "EUR", "items": []});
    publish(&js, &event("warned-1", "cart.updated", "ada", bad.clone())).await;
    let decision = until("warned-1 decided", async || {
        let (_, trace) = nudge.api_get("/api/profiles/ada/trace").await;
        let latest = trace["decisions"][0].clone();
        (latest["event_id"] == "warned-1").then_some(latest)
    })
    .await;
    assert_eq!(decision["fired"][0]["rule"], "cart-push@v1", "{decision}");
    let violation = &decision["schema_violations"][0];
    assert_eq!(violation["kind"], "wrong_type", "{decision}");
    assert_eq!(violation["instance_path"], "/total");
    assert_eq!(violation["schema_path"], "/properties/total/type");
    // warn over HTTP: accepted (not a 400), decided, the violation in the trace.
    let http_warned = event("warned-2", "cart.updated", "cy", bad.clone());
    let (status, body) = nudge
        .api(Method::POST, "/v1/events", Some(http_warned))
        .await;
    assert!(status.is_success(), "{status}: {body}");
    let decision = until("warned-2 decided", async || {
        let (_, trace) = nudge.api_get("/api/profiles/cy/trace").await;
        let latest = trace["decisions"][0].clone();
        (latest["event_id"] == "warned-2").then_some(latest)
    })
    .await;
    assert_eq!(decision["fired"][0]["rule"], "cart-push@v1", "{decision}");
    assert_eq!(decision["schema_violations"][0]["instance_path"], "/total");
    // An unplanned type (unplanned_events = warn) is flagged too.
    publish(
        &js,
        &event("page-1", "page.viewed", "ada", json!({"url": "/"})),
    )
    .await;

    // block: the same event goes to the DLQ with its paths, and nothing fires.
    let (status, body) = put_schema(
        &nudge,
        "cart.updated",
        json!({"schema": schema, "mode": "block", "compatibility": "none"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    publish(&js, &event("blocked-1", "cart.updated", "bob", bad.clone())).await;
    let letter = until("blocked-1 dead-lettered", async || {
        let (_, dlq) = nudge.api_get("/api/dlq").await;
        dlq["letters"]
            .as_array()?
            .iter()
            .find(|l| l["payload"]["id"] == "blocked-1")
            .cloned()
    })
    .await;
    assert_eq!(letter["kind"], "schema_violation", "{letter}");
    let reason = letter["reason"].as_str().unwrap();
    assert!(
        reason.contains("data.total") && reason.contains("/properties/total/type"),
        "{reason}"
    );

    // Over HTTP: 400 naming the field, and nothing published.
    let before = stream_len(&js, "NUDGE_EVENTS").await;
    let http_bad = event("blocked-2", "cart.updated", "bob", bad.clone());
    let (status, error) = nudge.api(Method::POST, "/v1/events", Some(http_bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["field"], "data.total", "{error}");
    let good = event("fine-1", "cart.updated", "bob", cart(1));
    let batch = json!([good, event("blocked-3", "cart.updated", "bob", bad.clone())]);
    let (status, error) = nudge.api(Method::POST, "/v1/events", Some(batch)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["field"], "[1].data.total", "{error}");
    assert_eq!(
        stream_len(&js, "NUDGE_EVENTS").await,
        before,
        "the whole request refused"
    );
    // A Segment call is told the field by its own name.
    let track = json!({"userId": "bob", "event": "Cart Updated",
        "properties": {"cart_id": "c-9", "total": "12", "currency": "EUR", "items": []}});
    let (status, error) = nudge.api(Method::POST, "/v1/track", Some(track)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["field"], "properties.total", "{error}");

    // The report: counts by kind, the unplanned type, samples with the offending value.
    let report = until("the violations report", async || {
        let (_, report) = nudge.api_get("/api/schema-violations").await;
        let types = report["types"].as_array()?.clone();
        let carts = types.iter().find(|t| t["type"] == "cart.updated")?.clone();
        let pages = types.iter().find(|t| t["type"] == "page.viewed")?.clone();
        (carts["blocked"] == 4).then_some((carts, pages))
    })
    .await;
    let (carts, pages) = report;
    // The seeds may have been decided before their schema existed (unplanned, warned).
    assert!(carts["warned"].as_u64() >= Some(2), "{carts}");
    // Two warned (over NATS and over HTTP), four blocked.
    assert_eq!(carts["kinds"]["wrong_type"], 6, "{carts}");
    assert_eq!(carts["samples"][0]["data"]["total"], "12", "{carts}");
    assert_eq!(
        carts["samples"][0]["violations"][0]["instance_path"],
        "/total"
    );
    let hours = carts["hours"].as_array().unwrap();
    let wrong_types: u64 = hours
        .iter()
        .filter_map(|h| h["kinds"]["wrong_type"].as_u64())
        .sum();
    assert_eq!(wrong_types, 6, "by kind per hour: {carts}");
    assert_eq!(pages["kinds"]["unplanned"], 1, "{pages}");
    let metrics = nudge.metrics().await;
    assert!(
        metrics
            .contains("nudge_schema_violations_total{kind=\"wrong_type\",outcome=\"blocked\"} 4"),
        "{metrics}"
    );

    // The producer sends strings: widening the type is compatible (stored events included),
    // and the blocked event, re-driven, is decided.
    let mut widened = schema.clone();
    widened["properties"]["total"] = json!({"type": ["number", "string"]});
    let (status, body) = put_schema(
        &nudge,
        "cart.updated",
        json!({"schema": widened, "mode": "block", "version": 2}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let path = format!("/api/dlq/{}/redrive", letter["sequence"]);
    let (status, body) = nudge.api(Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until("blocked-1 decided after the re-drive", async || {
        let (_, trace) = nudge.api_get("/api/profiles/bob/trace").await;
        trace["decisions"]
            .as_array()?
            .iter()
            .find(|d| d["event_id"] == "blocked-1" && d["fired"][0]["rule"] == "cart-push@v1")
            .cloned()
    })
    .await;
}

#[tokio::test]
async fn rules_and_plugins_reading_fields_the_schemas_lack_are_caught() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    plan_carts(&nudge, &js, "warn").await;
    let typo = json!({"name": "big cart", "triggers": ["cart.*"],
        "script": "if event.data.totl > 100 {\n  push(#{ title: \"Big cart\" });\n}"});

    // The editor's lint: the warning with its place and the nearest name, and the fields.
    let (status, check) = nudge
        .api(
            Method::POST,
            "/api/rules/big-cart/check",
            Some(typo.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{check}");
    let warning = &check["warnings"][0];
    assert_eq!(
        (warning["line"].as_u64(), warning["column"].as_u64()),
        (Some(1), Some(15)),
        "{check}"
    );
    assert_eq!(warning["suggestion"], "total");
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `total`?")
    );
    let fields = check["fields"].as_array().unwrap();
    assert!(
        fields.contains(&json!("total")) && fields.contains(&json!("items[].sku")),
        "{check}"
    );
    // Saved with the warning (not strict).
    let saved = nudge.put_rule("big-cart", typo.clone()).await;
    assert_eq!(saved["warnings"][0]["field"], "data.totl", "{saved}");
    let (_, fine) = nudge
        .api(
            Method::POST,
            "/api/rules/ok/check",
            Some(json!({"name": "ok", "triggers": ["cart.updated"], "script": "let t = event.data.total;"})),
        )
        .await;
    assert_eq!(fine["warnings"], json!([]), "{fine}");
    let manifest =
        json!({"triggers": ["cart.updated"], "reads": ["data.totl", "data.items[].sku"]});
    let uploaded = nudge
        .put_plugin(
            "push-compose",
            plugin_wasm("push_compose"),
            manifest.clone(),
        )
        .await;
    assert_eq!(uploaded["warnings"][0]["field"], "data.totl", "{uploaded}");
    assert_eq!(
        uploaded["warnings"].as_array().unwrap().len(),
        1,
        "{uploaded}"
    );

    // strict_schemas: the same rule and plugin are refused, a disabled rule is not.
    let strict = Nudge::start(&nats, &[("NUDGE_STRICT_SCHEMAS", "true")]).await;
    let (status, error) = strict
        .api(Method::PUT, "/api/rules/strict-cart", Some(typo.clone()))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["field"], "script");
    assert_eq!(error["error"]["line"], 1);
    assert_eq!(
        error["error"]["warnings"][0]["suggestion"], "total",
        "{error}"
    );
    let mut disabled = typo.clone();
    disabled["enabled"] = json!(false);
    strict.put_rule("strict-cart", disabled).await;
    let (status, error) = strict
        .upload_plugin("strict-push", plugin_wasm("push_compose"), manifest)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["field"], "reads[0]", "{error}");
}
