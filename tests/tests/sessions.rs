//! Browser sessions and review end to end: sign-in throttling, cookie attributes, every
//! state change refused without the CSRF token, sign-out, idle expiry, removed users signed out;
//! four-eyes review of a marketer's changes; the audit log of both.

use std::time::Duration;

use nudge_tests::matrix::*;
use nudge_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn sessions_need_csrf_to_change_anything_and_end_at_sign_out_or_when_idle() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[("NUDGE_SESSION_IDLE_TIMEOUT_S", "3")]).await;
    let (status, body) = nudge
        .api(
            Method::POST,
            "/api/users",
            Some(json!({"username": "ada", "password": "correct horse", "role": "admin"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("password_hash").is_none(), "{body}");
    nudge.put_rule("base", rule_body("base")).await;

    // A wrong password is refused without saying which part was wrong.
    let response = reqwest::Client::new()
        .post(nudge.url("/login"))
        .json(&json!({"username": "ada", "password": "wrong horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Guessing is throttled per user name: after the minute's budget, even the right password waits.
    let guess = |username: &'static str, password: &'static str| {
        reqwest::Client::new()
            .post(nudge.url("/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
    };
    for _ in 0..10 {
        assert_eq!(
            guess("eve", "guess").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let throttled = guess("eve", "guess").await.unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = throttled.json().await.unwrap();
    assert_eq!(body["error"]["field"], "username");

    let (cookie, csrf) = sign_in(&nudge, "ada", "correct horse").await;
    let (status, me) = with_session(&nudge, Method::GET, "/api/session", &cookie, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["username"], "ada");
    assert_eq!(me["role"], "admin");

    // Every state-changing route refuses a session request without the CSRF token.
    let mut refused = 0;
    for case in cases("admin") {
        // Signing in has no session yet to protect (and the cookie is SameSite=Strict).
        if case.method == Method::GET || case.route == "/login" {
            continue;
        }
        for token in [None, Some("forged")] {
            let (status, body) = with_session(
                &nudge,
                case.method.clone(),
                &case.path,
                &cookie,
                token,
                case.body.clone(),
            )
            .await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{} {} with csrf {token:?}: {body}",
                case.method,
                case.path
            );
            assert_eq!(body["error"]["field"], "X-CSRF-Token");
            refused += 1;
        }
    }
    assert!(refused >= 2 * 15, "{refused}");
    // The same request with it goes through.
    let (status, body) = with_session(
        &nudge,
        Method::PUT,
        "/api/rules/by-session",
        &cookie,
        Some(&csrf),
        Some(rule_body("s")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["updated_by"], "ada");

    // Sign-out needs the token too, then the cookie is worthless.
    let logout = |csrf: Option<String>| {
        let mut request = reqwest::Client::new()
            .post(nudge.url("/logout"))
            .header("cookie", &cookie);
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    assert_eq!(logout(None).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        logout(Some(csrf.clone())).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let (status, _) = with_session(&nudge, Method::GET, "/api/session", &cookie, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Idle past session_idle_timeout_s: signed out.
    let (cookie, _) = sign_in(&nudge, "ada", "correct horse").await;
    let (status, _) = with_session(&nudge, Method::GET, "/api/rules", &cookie, None, None).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, body) = with_session(&nudge, Method::GET, "/api/rules", &cookie, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A removed user's session ends at its next check (every half idle timeout here).
    let (status, _) = nudge
        .api(
            Method::POST,
            "/api/users",
            Some(json!({"username": "zed", "password": "long enough", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (zed, _) = sign_in(&nudge, "zed", "long enough").await;
    let (status, body) = nudge.api(Method::DELETE, "/api/users/zed", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let (status, _) = with_session(&nudge, Method::GET, "/api/session", &zed, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let actions = nudge.audit_actions().await;
    assert!(
        actions.iter().any(|a| a == "session.login")
            && actions.iter().any(|a| a == "session.logout"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn four_eyes_keeps_a_marketers_change_as_a_draft_until_someone_else_approves() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[("NUDGE_REVIEW_REQUIRED", "true")]).await;
    for (name, role) in [
        ("mia", "marketer"),
        ("max", "marketer"),
        ("dev", "developer"),
    ] {
        let (status, body) = nudge
            .api(
                Method::POST,
                "/api/users",
                Some(json!({"username": name, "password": "password-123", "role": role})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (mia, mia_csrf) = sign_in(&nudge, "mia", "password-123").await;
    let (status, body) = with_session(
        &nudge,
        Method::PUT,
        "/api/rules/welcome",
        &mia,
        Some(&mia_csrf),
        Some(rule_body("welcome")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["draft"]["author"], "mia");
    // Not live yet.
    let (status, _) = nudge.api_get("/api/rules/welcome").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A broken script is refused before review, with its line and column.
    let broken = json!({"name": "b", "triggers": ["x"], "script": "let x = ;"});
    let (status, body) = with_session(
        &nudge,
        Method::PUT,
        "/api/rules/broken",
        &mia,
        Some(&mia_csrf),
        Some(broken),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["line"], 1);

    // Another marketer may not approve (role), the developer may.
    let (max, max_csrf) = sign_in(&nudge, "max", "password-123").await;
    let (status, _) = with_session(
        &nudge,
        Method::POST,
        "/api/rules/welcome/draft/approve",
        &max,
        Some(&max_csrf),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (dev, dev_csrf) = sign_in(&nudge, "dev", "password-123").await;
    let (status, rule) = with_session(
        &nudge,
        Method::POST,
        "/api/rules/welcome/draft/approve",
        &dev,
        Some(&dev_csrf),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rule}");
    assert_eq!(rule["version"], 1);
    assert_eq!(rule["updated_by"], "mia (approved by dev)");
    let (status, _) = nudge.api_get("/api/rules/welcome/draft").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A developer's own change is not held; nor can an author approve their own draft.
    let (status, _) = with_session(
        &nudge,
        Method::PATCH,
        "/api/rules/welcome",
        &dev,
        Some(&dev_csrf),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = with_session(
        &nudge,
        Method::PATCH,
        "/api/rules/welcome",
        &mia,
        Some(&mia_csrf),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = nudge
        .api(Method::POST, "/api/rules/welcome/draft/approve", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], true);

    // Deleting cannot be reviewed as a draft, so it is the approvers' alone in this mode.
    let (status, body) = with_session(
        &nudge,
        Method::DELETE,
        "/api/rules/welcome",
        &mia,
        Some(&mia_csrf),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = with_session(
        &nudge,
        Method::DELETE,
        "/api/rules/welcome",
        &dev,
        Some(&dev_csrf),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (_, audit) = nudge.api_get("/api/audit").await;
    let actions: Vec<(String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        actions.contains(&("draft.submit".into(), "mia".into())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("draft.approve".into(), "dev".into())),
        "{actions:?}"
    );
}
