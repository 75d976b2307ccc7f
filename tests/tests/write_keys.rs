//! Named ingest write keys: each with its own rate limit (429 naming the key, with
//! Retry-After), rotated with a grace period, revoked on every instance, never shown again
//! after creation, and every change in the audit log.

use nudge_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// One Segment `track` call with `key` as the HTTP Basic user name.
async fn track(nudge: &Nudge, key: &str, id: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(nudge.url("/v1/track"))
        .basic_auth(key, Some(""))
        .json(&json!({"userId": "u1", "event": "Page Viewed", "messageId": id}))
        .send()
        .await
        .unwrap()
}

async fn status_of(nudge: &Nudge, key: &str, id: &str) -> (StatusCode, Value) {
    let response = track(nudge, key, id).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn create(nudge: &Nudge, body: Value) -> (StatusCode, Value) {
    nudge.api(Method::POST, "/api/write-keys", Some(body)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn write_keys_are_rate_limited_rotated_revoked_and_audited() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;

    let (status, web) = create(
        &nudge,
        json!({"name": "shop-web", "rate_per_s": 1, "burst": 2}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{web}");
    let web_key = web["key"].as_str().unwrap().to_owned();
    assert!(web_key.starts_with("wk_"), "{web_key}");
    let (_, app) = create(&nudge, json!({"name": "mobile-app"})).await;
    let app_key = app["key"].as_str().unwrap().to_owned();
    assert_eq!(app["rate_per_s"], 1000, "the default rate: {app}");

    // Refusals name the field.
    let (status, body) = create(&nudge, json!({"name": "shop web!"})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("name"))
    );
    let (status, body) = create(&nudge, json!({"name": "shop-web"})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::CONFLICT, Some("name"))
    );
    let (status, body) = create(&nudge, json!({"name": "zero", "rate_per_s": 0})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("rate_per_s"))
    );

    // The list never shows a secret or its digest.
    let (_, list) = nudge.api_get("/api/write-keys").await;
    let listed = list["write_keys"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{list}");
    for key in listed {
        assert!(
            key.get("key").is_none() && key.get("digest").is_none(),
            "{key}"
        );
    }

    // shop-web: a burst of 2, then 429 naming it, with Retry-After; mobile-app goes on.
    for n in 0..2 {
        assert_eq!(
            status_of(&nudge, &web_key, &format!("w{n}")).await.0,
            StatusCode::OK
        );
    }
    let limited = track(&nudge, &web_key, "w2").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["field"], "write_key");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`shop-web`"),
        "{body}"
    );
    for n in 0..5 {
        assert_eq!(
            status_of(&nudge, &app_key, &format!("a{n}")).await.0,
            StatusCode::OK
        );
    }
    assert!(
        nudge
            .metrics()
            .await
            .contains(r#"nudge_ingest_rate_limited_total{key="shop-web"} 1"#)
    );
    // A higher limit applies at once.
    let (status, updated) = nudge
        .api(
            Method::PATCH,
            "/api/write-keys/shop-web",
            Some(json!({"rate_per_s": 100, "burst": 100})),
        )
        .await;
    assert_eq!(
        (status, updated["rate_per_s"].as_u64()),
        (StatusCode::OK, Some(100))
    );
    assert_eq!(status_of(&nudge, &web_key, "w3").await.0, StatusCode::OK);

    // Rotation: the new secret and, for the grace period, the old one.
    let (status, rotated) = nudge
        .api(
            Method::POST,
            "/api/write-keys/mobile-app/rotate",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second_key = rotated["key"].as_str().unwrap().to_owned();
    assert!(
        rotated["previous_valid_until_ms"].as_i64().is_some(),
        "{rotated}"
    );
    assert_eq!(status_of(&nudge, &second_key, "r1").await.0, StatusCode::OK);
    assert_eq!(status_of(&nudge, &app_key, "r2").await.0, StatusCode::OK);
    // Rotating with no grace ends the one before at once.
    let (_, again) = nudge
        .api(
            Method::POST,
            "/api/write-keys/mobile-app/rotate",
            Some(json!({"grace_s": 0})),
        )
        .await;
    let third_key = again["key"].as_str().unwrap().to_owned();
    let (status, body) = status_of(&nudge, &second_key, "r3").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rotated"),
        "{body}"
    );
    assert_eq!(
        status_of(&nudge, &app_key, "r4").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status_of(&nudge, &third_key, "r5").await.0, StatusCode::OK);

    // A second instance knows the keys; a revocation reaches it.
    let other = Nudge::start(&nats, &[]).await;
    assert_eq!(status_of(&other, &third_key, "o1").await.0, StatusCode::OK);
    let (status, revoked) = nudge
        .api(Method::DELETE, "/api/write-keys/mobile-app", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    until("the revocation on the other instance", async || {
        let (status, body) = status_of(&other, &third_key, "o2").await;
        (status == StatusCode::UNAUTHORIZED).then_some(body)
    })
    .await;
    let (_, body) = status_of(&nudge, &third_key, "r6").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`mobile-app` is revoked"),
        "{body}"
    );
    let (status, _) = nudge
        .api(
            Method::POST,
            "/api/write-keys/mobile-app/rotate",
            Some(json!({})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a revoked key is not rotated back to life"
    );
    // The write_key setting's key is untouched by all this.
    assert_eq!(status_of(&nudge, WRITE_KEY, "b1").await.0, StatusCode::OK);

    let (_, audit) = nudge.api_get("/api/audit?limit=1000").await;
    let actions: Vec<(String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("write_key."))
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("write_key.create", "shop-web"),
        ("write_key.create", "mobile-app"),
        ("write_key.update", "shop-web"),
        ("write_key.rotate", "mobile-app"),
        ("write_key.revoke", "mobile-app"),
    ] {
        assert!(
            actions
                .iter()
                .any(|(a, t)| (a.as_str(), t.as_str()) == expected),
            "no {expected:?} in {actions:?}"
        );
    }
    let entries = audit.to_string();
    for secret in [&web_key, &app_key, &second_key, &third_key] {
        assert!(
            !entries.contains(secret.as_str()),
            "a secret is in the audit log"
        );
    }
}
