//! Signed ingest: with `ingest_signing_secret` set, a request must carry a Standard Webhooks
//! signature of its body, be fresh, and use its id once — on any instance. Each refusal names
//! the header at fault; a signed request is accepted and decided.

use nudge::delivery::signature::{SigningKey, generate_secret};
use nudge_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn send(
    nudge: &Nudge,
    body: &[u8],
    signed: Option<(&SigningKey, &str, i64)>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(nudge.url("/v1/events"))
        .basic_auth(WRITE_KEY, Some(""))
        .header("content-type", "application/cloudevents+json")
        .body(body.to_vec());
    if let Some((key, id, timestamp_s)) = signed {
        request = request
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp_s.to_string())
            .header("webhook-signature", key.sign(id, timestamp_s, body));
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn field(answer: &Value) -> &str {
    answer["error"]["field"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn signed_ingest_refuses_unsigned_stale_forged_and_replayed_requests() {
    let nats = NatsServer::start();
    let secret = generate_secret();
    let env = [("NUDGE_INGEST_SIGNING_SECRET", secret.as_str())];
    let (a, b) = (
        Nudge::start(&nats, &env).await,
        Nudge::start(&nats, &env).await,
    );
    let key = SigningKey::parse(&secret).unwrap();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = event("s-1", "cart.updated", "ada", json!({"total": 3})).to_string();
    let body = body.as_bytes();

    let (status, answer) = send(&a, body, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(field(&answer), "webhook-id", "unsigned: {answer}");

    let (status, answer) = send(&a, body, Some((&key, "msg-1", now_s))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "signed: {answer}");

    // The same request again, at either instance: a replay.
    for nudge in [&a, &b] {
        let (status, answer) = send(nudge, body, Some((&key, "msg-1", now_s))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert_eq!(field(&answer), "webhook-id", "replayed: {answer}");
    }

    let (status, answer) = send(&a, body, Some((&key, "msg-2", now_s - 3_600))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(field(&answer), "webhook-timestamp", "stale: {answer}");

    let other = SigningKey::parse(&generate_secret()).unwrap();
    let (status, answer) = send(&a, body, Some((&other, "msg-3", now_s))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(field(&answer), "webhook-signature", "forged: {answer}");
    // A forged request did not spend its id: signed properly, msg-3 is accepted.
    let (status, answer) = send(&a, body, Some((&key, "msg-3", now_s))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert!(!a.logs().contains(&secret) && !b.logs().contains(&secret));
}
