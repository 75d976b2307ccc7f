//! Access control end to end: every API route × every role → the expected status (403 for each
//! denied cell, 401 without or with a revoked credential), the table checked against the
//! OpenAPI document so no route goes untested; browser sessions refuse state changes without
//! their CSRF token, expire when idle, end at sign-out; four-eyes review; the audit log.

use std::collections::BTreeSet;
use std::time::Duration;

use nudge_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ROLES: [&str; 4] = ["viewer", "marketer", "developer", "admin"];

fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).expect("a role")
}

fn rule_body(name: &str) -> Value {
    json!({"name": name, "triggers": ["cart.updated"], "script": "push(#{ title: \"hi\" });"})
}

/// One cell row: a route, how to call it for `role`, and the lowest role allowed (`None`:
/// anyone, signed in or not).
struct Case {
    method: Method,
    route: &'static str,
    path: String,
    body: Option<Value>,
    min_role: Option<&'static str>,
}

fn cases(role: &str) -> Vec<Case> {
    let event = event("e-1", "cart.updated", "user-1", json!({"total": 5}));
    let c = |method: Method,
             route: &'static str,
             path: String,
             body: Option<Value>,
             min: Option<&'static str>| Case {
        method,
        route,
        path,
        body,
        min_role: min,
    };
    use Method as M;
    vec![
        c(
            M::POST,
            "/login",
            "/login".into(),
            Some(json!({"username": "nobody", "password": "not a password"})),
            None,
        ),
        c(M::POST, "/logout", "/logout".into(), None, None),
        c(
            M::GET,
            "/api/openapi.json",
            "/api/openapi.json".into(),
            None,
            None,
        ),
        c(
            M::GET,
            "/api/session",
            "/api/session".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::GET,
            "/api/rules",
            "/api/rules".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::GET,
            "/api/rules/{id}",
            "/api/rules/base".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::PUT,
            "/api/rules/{id}",
            format!("/api/rules/new-{role}"),
            Some(rule_body("new")),
            Some("marketer"),
        ),
        c(
            M::PATCH,
            "/api/rules/{id}",
            "/api/rules/base".into(),
            Some(json!({"enabled": true})),
            Some("marketer"),
        ),
        c(
            M::DELETE,
            "/api/rules/{id}",
            format!("/api/rules/del-{role}"),
            None,
            Some("marketer"),
        ),
        c(
            M::GET,
            "/api/rules/{id}/versions",
            "/api/rules/base/versions".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::GET,
            "/api/rules/{id}/versions/{version}",
            "/api/rules/base/versions/1".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::POST,
            "/api/rules/{id}/restore",
            "/api/rules/base/restore".into(),
            Some(json!({"version": 1})),
            Some("marketer"),
        ),
        c(
            M::POST,
            "/api/rules/{id}/check",
            "/api/rules/base/check".into(),
            Some(rule_body("x")),
            Some("marketer"),
        ),
        c(
            M::POST,
            "/api/rules/{id}/test",
            "/api/rules/base/test".into(),
            Some(json!({"event": event})),
            Some("marketer"),
        ),
        c(
            M::POST,
            "/api/rules/{id}/backtest",
            "/api/rules/base/backtest".into(),
            Some(json!({"last": "1h"})),
            Some("marketer"),
        ),
        c(
            M::GET,
            "/api/rules/{id}/samples",
            "/api/rules/base/samples".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::PUT,
            "/api/rules/{id}/samples",
            "/api/rules/base/samples".into(),
            Some(json!({"samples": [{"name": "cart", "event": event}]})),
            Some("marketer"),
        ),
        c(
            M::GET,
            "/api/rules/{id}/draft",
            "/api/rules/base/draft".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::DELETE,
            "/api/rules/{id}/draft",
            "/api/rules/base/draft".into(),
            None,
            Some("marketer"),
        ),
        c(
            M::POST,
            "/api/rules/{id}/draft/approve",
            "/api/rules/base/draft/approve".into(),
            None,
            Some("developer"),
        ),
        c(
            M::GET,
            "/api/drafts",
            "/api/drafts".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::GET,
            "/api/stats",
            "/api/stats".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::GET,
            "/api/templates",
            "/api/templates".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::GET,
            "/api/events/recent",
            "/api/events/recent?limit=5".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::GET,
            "/api/live",
            "/api/live".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::GET,
            "/api/profiles/{id}",
            "/api/profiles/user-1".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::GET,
            "/api/profiles/{id}/trace",
            "/api/profiles/user-1/trace".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::GET,
            "/api/plugins",
            "/api/plugins".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::GET,
            "/api/plugins/{name}",
            "/api/plugins/missing".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::PUT,
            "/api/plugins/{name}",
            "/api/plugins/bogus".into(),
            Some(json!("not wasm")),
            Some("developer"),
        ),
        c(
            M::PATCH,
            "/api/plugins/{name}",
            "/api/plugins/missing".into(),
            Some(json!({"enabled": false})),
            Some("developer"),
        ),
        c(
            M::DELETE,
            "/api/plugins/{name}",
            "/api/plugins/missing".into(),
            None,
            Some("developer"),
        ),
        c(
            M::GET,
            "/api/plugins/{name}/versions",
            "/api/plugins/missing/versions".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::POST,
            "/api/plugins/{name}/test",
            "/api/plugins/missing/test".into(),
            Some(json!({"event": event})),
            Some("developer"),
        ),
        c(
            M::GET,
            "/api/dlq",
            "/api/dlq".into(),
            None,
            Some("developer"),
        ),
        c(
            M::POST,
            "/api/dlq/{sequence}/redrive",
            "/api/dlq/999/redrive".into(),
            None,
            Some("developer"),
        ),
        c(
            M::POST,
            "/api/dlq/redrive",
            "/api/dlq/redrive".into(),
            None,
            Some("developer"),
        ),
        c(
            M::GET,
            "/api/users",
            "/api/users".into(),
            None,
            Some("admin"),
        ),
        c(
            M::POST,
            "/api/users",
            "/api/users".into(),
            Some(
                json!({"username": format!("made-by-{role}"), "password": "long enough", "role": "viewer"}),
            ),
            Some("admin"),
        ),
        c(
            M::DELETE,
            "/api/users/{username}",
            format!("/api/users/gone-{role}"),
            None,
            Some("admin"),
        ),
        c(
            M::GET,
            "/api/tokens",
            "/api/tokens".into(),
            None,
            Some("admin"),
        ),
        c(
            M::POST,
            "/api/tokens",
            "/api/tokens".into(),
            Some(json!({"name": format!("by-{role}"), "role": "viewer"})),
            Some("admin"),
        ),
        c(
            M::DELETE,
            "/api/tokens/{id}",
            "/api/tokens/VICTIM".into(),
            None,
            Some("admin"),
        ),
        c(
            M::GET,
            "/api/audit",
            "/api/audit".into(),
            None,
            Some("admin"),
        ),
    ]
}

/// What a public route answers whoever calls: the document; a refused sign-in (the case's
/// credentials are wrong); a sign-out with no session to end.
fn public_status(route: &str) -> StatusCode {
    match route {
        "/login" => StatusCode::UNAUTHORIZED,
        "/logout" => StatusCode::NO_CONTENT,
        _ => StatusCode::OK,
    }
}

async fn call(nudge: &Nudge, case: &Case, auth: Option<&str>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(case.method.clone(), nudge.url(&case.path));
    if let Some(token) = auth {
        request = request.bearer_auth(token);
    }
    if let Some(body) = &case.body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    if case.route == "/api/live" {
        return (status, Value::Null);
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn create_token(nudge: &Nudge, name: &str, role: &str) -> (String, String) {
    let (status, body) = nudge
        .api(
            Method::POST,
            "/api/tokens",
            Some(json!({"name": name, "role": role})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn every_route_for_every_role_answers_as_its_policy_says() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    nudge.put_rule("base", rule_body("base")).await;

    // The table covers exactly the routes the OpenAPI document lists.
    let (_, doc) = nudge.api_get("/api/openapi.json").await;
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let tested: BTreeSet<(String, String)> = cases("viewer")
        .iter()
        .map(|c| (c.method.to_string(), c.route.to_owned()))
        .collect();
    assert_eq!(
        documented, tested,
        "every documented route is in the matrix"
    );

    let mut tokens = Vec::new();
    for role in ROLES {
        nudge
            .put_rule(&format!("del-{role}"), rule_body("doomed"))
            .await;
        let (status, _) = nudge
            .api(
                Method::POST,
                "/api/users",
                Some(json!({"username": format!("gone-{role}"), "password": "long enough", "role": "viewer"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (_, token) = create_token(&nudge, &format!("matrix-{role}"), role).await;
        let (victim, _) = create_token(&nudge, &format!("victim-{role}"), "viewer").await;
        tokens.push((role, token, victim));
    }

    let mut cells = 0;
    for (role, token, victim) in &tokens {
        for mut case in cases(role) {
            case.path = case.path.replace("VICTIM", victim);
            let (status, body) = call(&nudge, &case, Some(token)).await;
            cells += 1;
            let allowed = case.min_role.is_none_or(|min| rank(role) >= rank(min));
            let cell = format!("{} {} as {role}", case.method, case.path);
            if case.min_role.is_none() {
                assert_eq!(status, public_status(case.route), "{cell}: {body}");
            } else if allowed {
                assert!(
                    status != StatusCode::UNAUTHORIZED
                        && status != StatusCode::FORBIDDEN
                        && !status.is_server_error(),
                    "{cell}: allowed, but answered {status} {body}"
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{cell}: {body}");
                assert_eq!(body["error"]["field"], "role", "{cell}: {body}");
            }
        }
    }
    assert_eq!(cells, 4 * cases("viewer").len());

    // Without a credential, or with a wrong or revoked one: 401 everywhere but the public routes.
    let (revoked_id, revoked) = create_token(&nudge, "to-revoke", "admin").await;
    let (status, _) = nudge
        .api(Method::DELETE, &format!("/api/tokens/{revoked_id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for case in cases("nobody") {
        for auth in [None, Some("nudge_wrong_token"), Some(revoked.as_str())] {
            let (status, body) = call(&nudge, &case, auth).await;
            let expected = if case.min_role.is_none() {
                public_status(case.route)
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(
                status, expected,
                "{} {} with {auth:?}: {body}",
                case.method, case.path
            );
        }
    }

    // Every change above is in the audit log, with who and how.
    let (_, audit) = nudge.api_get("/api/audit?limit=1000").await;
    let entries = audit["entries"].as_array().unwrap();
    let find = |action: &str, target: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["target"] == target)
            .unwrap_or_else(|| panic!("no {action} of {target} in {audit}"))
    };
    let put = find("rule.put", "new-marketer");
    assert_eq!(put["actor"], "token:matrix-marketer");
    assert_eq!(put["role"], "marketer");
    assert!(put["via"].as_str().unwrap().starts_with("token:"));
    assert_eq!(put["before"], Value::Null);
    assert_eq!(put["after"]["version"], 1);
    let deleted = find("rule.delete", "del-developer");
    assert_eq!(deleted["before"]["name"], "doomed");
    find("token.revoke", &revoked_id);
    find("user.create", "made-by-admin");
    assert_eq!(
        find("user.delete", "gone-admin")["before"]["role"],
        "viewer"
    );
    assert!(
        entries
            .iter()
            .all(|e| e["action"] != "rule.put" || e["target"] != "new-viewer")
    );
}

/// Signs in over the JSON form of `/login`; answers the cookie header and the CSRF token.
async fn sign_in(nudge: &Nudge, username: &str, password: &str) -> (String, String) {
    let response = reqwest::Client::new()
        .post(nudge.url("/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(set_cookie.contains("Secure"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    (cookie, body["csrf"].as_str().unwrap().to_owned())
}

async fn with_session(
    nudge: &Nudge,
    method: Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, nudge.url(path))
        .header("cookie", cookie);
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

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

    let (_, audit) = nudge.api_get("/api/audit").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"session.login") && actions.contains(&"session.logout"),
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
