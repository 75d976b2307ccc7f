//! Webhook endpoints through the API, against a real nats-server, the nudge binary and a local
//! HTTP receiver: the secret is answered once and never again, changes keep it, a rotation adds
//! one that the previous overlaps with, refusals name the field, a second instance sees the same
//! endpoints, and a test request arrives signed and its answer is explained.

use nudge_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The first 8 hex digits of the secret's SHA-256, as the API shows it.
fn fingerprint(secret: &str) -> String {
    nudge::access::digest(secret)[..8].to_owned()
}

fn fingerprints(endpoint: &Value) -> Vec<String> {
    endpoint["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["fingerprint"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn endpoints_keep_their_secret_to_themselves() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;

    let (status, created) = nudge
        .api(
            Method::PUT,
            "/api/webhooks/crm",
            Some(json!({"url": "https://crm.example/hooks/nudge",
                        "headers": {"Authorization": "Bearer crm-token"}, "timeout_ms": 2000})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["timeout_ms"], 2000);
    assert_eq!(created["headers"]["authorization"], "Bearer crm-token");
    assert_eq!(fingerprints(&created), [fingerprint(&secret)]);

    let (status, read) = nudge.api_get("/api/webhooks/crm").await;
    assert_eq!(status, StatusCode::OK);
    assert!(read.get("secret").is_none(), "{read}");
    assert!(!read.to_string().contains(&secret));
    assert_eq!(fingerprints(&read), [fingerprint(&secret)]);

    // A change keeps the secret and answers none.
    let (status, changed) = nudge
        .api(
            Method::PUT,
            "/api/webhooks/crm",
            Some(json!({"url": "https://crm.example/v2/hooks", "enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert!(changed.get("secret").is_none(), "{changed}");
    assert_eq!(changed["url"], "https://crm.example/v2/hooks");
    assert_eq!(changed["enabled"], false);
    assert_eq!(changed["timeout_ms"], 5000, "webhook_timeout_ms again");
    assert_eq!(fingerprints(&changed), [fingerprint(&secret)]);

    // A rotation answers the new secret once; the old one signs on until it expires.
    let (status, rotated) = nudge
        .api(Method::POST, "/api/webhooks/crm/rotate", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert_eq!(
        fingerprints(&rotated),
        [fingerprint(new_secret), fingerprint(&secret)]
    );
    assert!(rotated["secrets"][0]["expires_at"].is_null());
    assert!(rotated["secrets"][1]["expires_at"].is_string(), "{rotated}");

    // Another instance on the same NATS sees the same endpoints.
    let other = Nudge::start(&nats, &[]).await;
    let (_, listed) = other.api_get("/api/webhooks").await;
    let listed = listed["webhooks"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "crm");
    assert_eq!(fingerprints(&listed[0]).len(), 2);

    let (status, _) = nudge.api(Method::DELETE, "/api/webhooks/crm", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, gone) = nudge.api_get("/api/webhooks/crm").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(gone["error"]["field"], "name");
}

#[tokio::test]
async fn refusals_name_the_field() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    for (path, body, field) in [
        (
            "/api/webhooks/crm",
            json!({"url": "crm.example/hook"}),
            "url",
        ),
        (
            "/api/webhooks/crm",
            json!({"url": "ftp://crm.example/"}),
            "url",
        ),
        ("/api/webhooks/crm", json!({}), "url"),
        (
            "/api/webhooks/crm",
            json!({"url": "http://h/", "timeout_ms": 60000}),
            "timeout_ms",
        ),
        (
            "/api/webhooks/crm",
            json!({"url": "http://h/", "headers": {"webhook-signature": "v1,forged"}}),
            "headers.webhook-signature",
        ),
        (
            "/api/webhooks/crm",
            json!({"url": "http://h/", "secret": "whsec_mine"}),
            "secret",
        ),
        ("/api/webhooks/crm.v2", json!({"url": "http://h/"}), "name"),
    ] {
        let (status, answer) = nudge.api(Method::PUT, path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    let (status, answer) = nudge
        .api(Method::POST, "/api/webhooks/nowhere/rotate", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (_, listed) = nudge.api_get("/api/webhooks").await;
    assert_eq!(listed["webhooks"], json!([]), "nothing stored by a refusal");
}

/// `POST /api/webhooks/{name}/test` against a local receiver: a signed request the secret
/// verifies (both secrets during a rotation), the endpoint's own headers, and each kind of answer
/// reported as a delivery would read it.
#[tokio::test]
async fn a_test_request_is_signed_and_its_answer_explained() {
    use nudge::delivery::signature::SigningKey;
    use nudge_tests::receiver::Receiver;
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let receiver = Receiver::start().await;
    let (_, created) = nudge
        .api(
            Method::PUT,
            "/api/webhooks/crm",
            Some(json!({"url": receiver.url, "headers": {"X-Tenant": "acme"}, "timeout_ms": 500})),
        )
        .await;
    let first = SigningKey::parse(created["secret"].as_str().unwrap()).unwrap();

    let (status, answer) = nudge
        .api(
            Method::POST,
            "/api/webhooks/crm/test",
            Some(json!({"payload": {"cart": 3}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    assert_eq!(answer["status"], 204);
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    let id = request.header("webhook-id");
    assert_eq!(id, answer["webhook_id"].as_str().unwrap());
    assert!(id.starts_with("test_"), "{id}");
    assert_eq!(request.header("x-tenant"), "acme");
    assert_eq!(request.header("content-type"), "application/json");
    let timestamp_s: i64 = request.header("webhook-timestamp").parse().unwrap();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now_s - timestamp_s).abs() < 60, "{timestamp_s} vs {now_s}");
    let signature = request.header("webhook-signature");
    assert!(first.verifies(signature, id, timestamp_s, &request.body));
    assert!(
        !first.verifies(signature, id, timestamp_s + 1, &request.body),
        "the timestamp is signed"
    );
    let event: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(event["type"], "nudge.action.webhook");
    assert_eq!(event["id"], id);
    assert_eq!(
        event["data"],
        json!({"webhook": "crm", "payload": {"cart": 3}})
    );

    // During a rotation each request carries a signature by the old and by the new secret.
    let (_, rotated) = nudge
        .api(Method::POST, "/api/webhooks/crm/rotate", None)
        .await;
    let second = SigningKey::parse(rotated["secret"].as_str().unwrap()).unwrap();
    nudge
        .api(Method::POST, "/api/webhooks/crm/test", None)
        .await;
    let request = receiver.received().pop().unwrap();
    let (id, signature) = (
        request.header("webhook-id"),
        request.header("webhook-signature"),
    );
    let timestamp_s: i64 = request.header("webhook-timestamp").parse().unwrap();
    assert_eq!(signature.split(' ').count(), 2, "{signature}");
    assert!(first.verifies(signature, id, timestamp_s, &request.body));
    assert!(second.verifies(signature, id, timestamp_s, &request.body));

    // Each kind of answer, as a delivery reads it.
    receiver.answer(503, Some("30"));
    let answer = test_crm(&nudge).await;
    assert_eq!(
        (
            &answer["outcome"],
            &answer["status"],
            &answer["retry_after"]
        ),
        (&json!("retry"), &json!(503), &json!("30")),
        "{answer}"
    );
    receiver.answer(422, None);
    assert_eq!(test_crm(&nudge).await["outcome"], "refused");
    receiver.answer(410, None);
    assert_eq!(test_crm(&nudge).await["outcome"], "gone");
    let (_, endpoint) = nudge.api_get("/api/webhooks/crm").await;
    assert_eq!(endpoint["enabled"], true, "a test changes nothing");
    receiver.answer(204, None);
    receiver.stall(std::time::Duration::from_millis(2_000));
    let answer = test_crm(&nudge).await;
    assert_eq!(answer["outcome"], "retry", "{answer}");
    assert!(answer["status"].is_null(), "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("timeout_ms"),
        "{answer}"
    );
    drop(receiver);
    let answer = test_crm(&nudge).await;
    assert_eq!(answer["outcome"], "retry", "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("connect"),
        "{answer}"
    );
}

async fn test_crm(nudge: &Nudge) -> Value {
    let (status, answer) = nudge
        .api(Method::POST, "/api/webhooks/crm/test", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}
