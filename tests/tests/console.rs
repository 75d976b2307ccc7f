//! The API behind the UI's pages, end to end: dead letters listed with reason and payload and
//! re-driven (one, all) after a fix; recent events by type; pinned samples validated; per-rule
//! figures; the live view's server-sent events, filtered.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use nudge_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const WELCOME: &str = r#"push(#{ title: `Welcome, ${event.data.first_name}!` });"#;

async fn put_welcome(nudge: &Nudge) {
    nudge
        .put_rule(
            "welcome",
            json!({"name": "Welcome", "triggers": ["user.registered"], "script": WELCOME}),
        )
        .await;
}

async fn pushes(js: &async_nats::jetstream::Context) -> Vec<Value> {
    read_stream(js, "NUDGE_ACTIONS", 1_000)
        .await
        .iter()
        .map(json_payload)
        .collect()
}

#[tokio::test]
async fn dead_letters_are_listed_with_their_reason_and_redriven_after_a_fix() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let nudge = Nudge::start(&nats, &[]).await;

    // A poison event: listed with the field at fault and the payload as sent.
    js.publish(
        "events.user.registered",
        r#"{"specversion":"1.0","id":"p-1"}"#.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    wait_for_len(
        &js,
        "NUDGE_DLQ",
        1,
        Duration::from_secs(10),
        "poison event to the DLQ",
    )
    .await;
    let (status, dlq) = nudge.api_get("/api/dlq").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dlq["total"], 1);
    let letter = &dlq["letters"][0];
    assert_eq!(letter["subject"], "events.user.registered");
    assert_eq!(letter["kind"], "invalid_event");
    assert!(
        letter["reason"].as_str().unwrap().contains("source"),
        "{letter}"
    );
    assert_eq!(letter["payload"]["id"], "p-1");

    // A letter of an event that failed for a reason since fixed (its rule did not exist yet):
    // re-driving publishes it again, the new rule acts on it, and the letter is gone.
    let good = event(
        "g-1",
        "user.registered",
        "user-1",
        json!({"first_name": "Ada"}),
    );
    let mut headers = HeaderMap::new();
    headers.insert("Nudge-Original-Subject", "events.user.registered");
    headers.insert("Nudge-Dlq-Kind", "publish_failed");
    headers.insert("Nudge-Dlq-Reason", "actions stream unavailable");
    js.publish_with_headers(
        "dlq.events.user.registered",
        headers,
        serde_json::to_vec(&good).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    put_welcome(&nudge).await;
    let (_, dlq) = nudge.api_get("/api/dlq").await;
    assert_eq!(dlq["total"], 2);
    let sequence = dlq["letters"][0]["sequence"].as_u64().unwrap();
    assert_eq!(dlq["letters"][0]["reason"], "actions stream unavailable");
    let (status, done) = nudge
        .api(Method::POST, &format!("/api/dlq/{sequence}/redrive"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["subject"], "events.user.registered");
    wait_for_len(
        &js,
        "NUDGE_ACTIONS",
        1,
        Duration::from_secs(10),
        "the re-driven event's push",
    )
    .await;
    assert_eq!(pushes(&js).await[0]["data"]["title"], "Welcome, Ada!");
    let (status, _) = nudge
        .api(Method::POST, &format!("/api/dlq/{sequence}/redrive"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a re-driven letter is gone");

    // Re-drive all: the poison event goes round again and comes back as a new letter.
    let (status, summary) = nudge.api(Method::POST, "/api/dlq/redrive", None).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["redriven"], 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, dlq) = nudge.api_get("/api/dlq").await;
        let letters = dlq["letters"].as_array().unwrap();
        if letters.len() == 1 && letters[0]["sequence"].as_u64() != Some(1) {
            assert_eq!(letters[0]["payload"]["id"], "p-1");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the poison event did not come back: {dlq}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pushes(&js).await.len(), 1, "nothing else fired");
}

#[tokio::test]
async fn recent_events_samples_and_stats_feed_the_editor() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let nudge = Nudge::start(&nats, &[]).await;
    put_welcome(&nudge).await;
    for (i, (event_type, subject)) in [
        ("user.registered", "u-1"),
        ("cart.updated", "u-1"),
        ("user.registered", "u-2"),
    ]
    .iter()
    .enumerate()
    {
        publish(
            &js,
            &event(
                &format!("e-{i}"),
                event_type,
                subject,
                json!({"first_name": "A"}),
            ),
        )
        .await;
    }
    let (status, recent) = nudge
        .api_get("/api/events/recent?type=user.registered")
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = recent["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e-2", "e-0"], "newest first, of that type only");
    let (status, body) = nudge.api_get("/api/events/recent?type=a%20b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "type");

    // Samples are validated as CloudEvents, naming the field.
    let bad = json!({"samples": [{"name": "x", "event": {"specversion": "1.0", "id": "1", "type": "t"}}]});
    let (status, body) = nudge
        .api(Method::PUT, "/api/rules/welcome/samples", Some(bad))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "samples[0].event.source", "{body}");
    let sample = json!({"samples": [{"name": "Ada", "event": recent["events"][0]}]});
    let (status, _) = nudge
        .api(Method::PUT, "/api/rules/welcome/samples", Some(sample))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, samples) = nudge.api_get("/api/rules/welcome/samples").await;
    assert_eq!(samples["samples"][0]["event"]["id"], "e-2");

    wait_for_len(
        &js,
        "NUDGE_ACTIONS",
        2,
        Duration::from_secs(10),
        "two welcome pushes",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, stats) = nudge.api_get("/api/stats").await;
        if stats["rules"]["welcome"]["fired"] == 2 {
            assert_eq!(stats["rules"]["welcome"]["matched"], 2);
            assert_eq!(stats["rules"]["welcome"]["errors"], 0);
            assert!(stats["rules"]["welcome"]["last_fired"].is_string());
            break;
        }
        assert!(Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads server-sent events until `until` matches one, or panics after `timeout`.
async fn read_sse(
    response: &mut reqwest::Response,
    until: impl Fn(&[(String, Value)]) -> bool,
    timeout: Duration,
) -> Vec<(String, Value)> {
    let deadline = Instant::now() + timeout;
    let (mut buffer, mut seen) = (String::new(), Vec::new());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, response.chunk()).await;
        let Ok(Ok(Some(chunk))) = chunk else {
            panic!("live view ended or timed out; seen {seen:?}");
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let kind = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_owned();
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("null");
            let value: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            if kind.is_empty() {
                continue;
            }
            seen.push((kind, value));
            if until(&seen) {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn the_live_view_streams_events_and_actions_filtered() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let nudge = Nudge::start(&nats, &[]).await;
    put_welcome(&nudge).await;
    let open = |query: &str| {
        reqwest::Client::new()
            .get(nudge.url(&format!("/api/live{query}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    let mut all = open("").await.unwrap();
    assert_eq!(all.status(), StatusCode::OK);
    assert!(
        all.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut pushes_for_u2 = open("?channel=push&profile=u-2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish(
        &js,
        &event("l-1", "user.registered", "u-1", json!({"first_name": "A"})),
    )
    .await;
    publish(
        &js,
        &event("l-2", "user.registered", "u-2", json!({"first_name": "B"})),
    )
    .await;

    let seen = read_sse(
        &mut all,
        |seen| seen.iter().filter(|(kind, _)| kind == "action").count() == 2,
        Duration::from_secs(10),
    )
    .await;
    let kinds: Vec<(&str, &str)> = seen
        .iter()
        .map(|(k, v)| (k.as_str(), v["profile"].as_str().unwrap_or("")))
        .collect();
    assert!(
        kinds.contains(&("event", "u-1")) && kinds.contains(&("action", "u-1")),
        "{kinds:?}"
    );
    let action = &seen
        .iter()
        .find(|(k, v)| k == "action" && v["profile"] == "u-2")
        .unwrap()
        .1;
    assert_eq!(action["channel"], "push");
    assert_eq!(action["rule"], "welcome@v1");
    assert_eq!(action["data"]["title"], "Welcome, B!");

    let filtered = read_sse(
        &mut pushes_for_u2,
        |seen| seen.iter().any(|(kind, _)| kind == "action"),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        filtered.len(),
        1,
        "only u-2's push passes the filter: {filtered:?}"
    );
    assert_eq!(filtered[0].1["profile"], "u-2");
}

#[tokio::test]
async fn the_binary_serves_the_ui_pages_and_assets() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let client = reqwest::Client::new();
    for page in ["/", "/login", "/rules/welcome", "/live?rule=x"] {
        let response = client.get(nudge.url(page)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{page}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'self'")
        );
        let html = response.text().await.unwrap();
        assert!(
            html.contains(r#"<script type="module" src="/assets/app.js">"#),
            "{page}: {html}"
        );
    }
    let bundle = client
        .get(nudge.url("/assets/app.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), StatusCode::OK);
    assert_eq!(bundle.headers()["content-encoding"], "gzip");
    assert!(
        bundle.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    for missing in ["/assets/nope.js", "/api/nope", "/v1/nope"] {
        let response = client.get(nudge.url(missing)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], "path");
    }
}
