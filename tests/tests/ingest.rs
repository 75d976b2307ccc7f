//! HTTP ingest: CloudEvents and the Segment Tracking API, through to the actions they cause.

use std::time::Duration;

use nudge_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

async fn post(
    nudge: &Nudge,
    path: &str,
    body: Value,
    auth: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().post(nudge.url(path)).json(&body);
    request = match auth {
        Some(("basic", key)) => request.basic_auth(key, Some("")),
        Some((_, token)) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn cloudevents_ingest_publishes_and_answers_after_the_ack() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    nudge.put_rule("welcome", json!({"name": "w", "triggers": ["user.registered"], "script": "push(#{ title: `Hi ${event.data.name}` })"})).await;

    let single = event("reg-1", "user.registered", "user-1", json!({"name": "Ada"}));
    let (status, body) = post(
        &nudge,
        "/v1/events",
        single.clone(),
        Some(("basic", WRITE_KEY)),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        stream_len(&js, "NUDGE_EVENTS").await,
        1,
        "stored before the answer"
    );

    let (_, again) = post(&nudge, "/v1/events", single, Some(("bearer", ADMIN_TOKEN))).await;
    assert_eq!(
        again,
        json!({"accepted": 0, "duplicates": 1}),
        "a retried request is deduplicated"
    );

    let batch = json!([
        event("reg-2", "user.registered", "user-2", json!({"name": "Bo"})),
        event("reg-3", "user.registered", "user-3", json!({"name": "Cy"})),
    ]);
    let response = reqwest::Client::new()
        .post(nudge.url("/v1/events"))
        .basic_auth(WRITE_KEY, Some(""))
        .header("content-type", "application/cloudevents-batch+json")
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    wait_for_len(&js, "NUDGE_ACTIONS", 3, WAIT, "three registrations").await;
    let titles: Vec<Value> = read_stream(&js, "NUDGE_ACTIONS", 10)
        .await
        .iter()
        .map(|m| json_payload(m)["data"]["title"].clone())
        .collect();
    assert_eq!(titles.len(), 3);
    for name in ["Hi Ada", "Hi Bo", "Hi Cy"] {
        assert!(titles.contains(&json!(name)), "{titles:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn segment_track_works_unchanged() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;
    nudge.put_rule("thanks", json!({"name": "t", "triggers": ["order.completed"], "script": "push(#{ title: `Order ${event.data.order_id}` })"})).await;

    let track = json!({"userId": "user-9", "event": "Order Completed", "properties": {"order_id": "o-1"},
                       "messageId": "msg-1", "timestamp": "2026-11-27T10:00:00Z", "context": {"library": {"name": "analytics-node"}}});
    let (status, body) = post(&nudge, "/v1/track", track, Some(("basic", WRITE_KEY))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"success": true})));
    let batch = json!({"batch": [
        {"type": "identify", "userId": "user-9", "traits": {"email": "a@b.c"}, "messageId": "msg-2"},
        {"type": "track", "anonymousId": "anon-1", "event": "Order Completed", "properties": {"order_id": "o-2"}, "messageId": "msg-3"}
    ]});
    let (status, _) = post(&nudge, "/v1/batch", batch, Some(("basic", WRITE_KEY))).await;
    assert_eq!(status, StatusCode::OK);

    wait_for_len(&js, "NUDGE_ACTIONS", 2, WAIT, "two orders").await;
    let events = read_stream(&js, "NUDGE_EVENTS", 10).await;
    let types: Vec<&str> = events.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        types,
        [
            "events.order.completed",
            "events.profile.identified",
            "events.order.completed"
        ]
    );
    let actions = read_stream(&js, "NUDGE_ACTIONS", 10).await;
    let subjects: Vec<Value> = actions
        .iter()
        .map(|m| json_payload(m)["subject"].clone())
        .collect();
    assert!(
        subjects.contains(&json!("user-9")) && subjects.contains(&json!("anon-1")),
        "{subjects:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_with_the_field_named() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let js = nats.jetstream().await;

    let (status, body) = post(
        &nudge,
        "/v1/track",
        json!({"userId": "u", "event": "X"}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["field"], "Authorization");
    let (status, _) = post(
        &nudge,
        "/v1/track",
        json!({"userId": "u", "event": "X"}),
        Some(("basic", "wrong")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let cases = [
        ("/v1/track", json!({"event": "Order Completed"}), "userId"),
        ("/v1/track", json!({"userId": "u"}), "event"),
        (
            "/v1/batch",
            json!({"batch": [{"type": "track", "userId": "u", "event": "A"}, {"type": "alias"}]}),
            "batch[1].type",
        ),
        (
            "/v1/events",
            json!([
                event("a", "x.y", "u", json!({})),
                event("b", "bad type", "u", json!({}))
            ]),
            "[1].type",
        ),
        (
            "/v1/events",
            json!({"specversion": "1.0", "id": "a", "source": "s", "type": "t"}),
            "subject",
        ),
    ];
    for (path, body, field) in cases {
        let (status, answer) = post(&nudge, path, body, Some(("basic", WRITE_KEY))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{path}: {answer}");
    }
    let too_big = event(
        "big",
        "x.y",
        "u",
        json!({"blob": "x".repeat(2 * 1024 * 1024)}),
    );
    let (status, answer) = post(&nudge, "/v1/events", too_big, Some(("basic", WRITE_KEY))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(
        stream_len(&js, "NUDGE_EVENTS").await,
        0,
        "nothing from a refused request is published"
    );
}
