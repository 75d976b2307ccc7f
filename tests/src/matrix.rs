//! The access-control test table: every route the UI and scripts call, how to call it as a
//! given role, and the lowest role allowed — shared by the authorization-matrix and session
//! tests — plus helpers to call routes with a token or a browser session.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub use crate::signin::{create_token, sign_in, with_session};
use crate::{Nudge, event};

pub const ROLES: [&str; 4] = ["viewer", "marketer", "developer", "admin"];

pub fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).expect("a role")
}

pub fn rule_body(name: &str) -> Value {
    json!({"name": name, "triggers": ["cart.updated"], "script": "push(#{ title: \"hi\" });"})
}

/// One cell row: a route, how to call it for `role`, and the lowest role allowed (`None`:
/// anyone, signed in or not).
pub struct Case {
    pub method: Method,
    pub route: &'static str,
    pub path: String,
    pub body: Option<Value>,
    pub min_role: Option<&'static str>,
}

pub fn cases(role: &str) -> Vec<Case> {
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
            "/api/results",
            "/api/results".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::GET,
            "/api/rules/{id}/results",
            "/api/rules/base/results".into(),
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
            "/api/cluster",
            "/api/cluster".into(),
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
            "/api/profiles/{id}/deliveries",
            "/api/profiles/user-1/deliveries".into(),
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
            M::GET,
            "/api/plugins/{name}/results",
            "/api/plugins/missing/results".into(),
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
            "/api/write-keys",
            "/api/write-keys".into(),
            None,
            Some("admin"),
        ),
        c(
            M::POST,
            "/api/write-keys",
            "/api/write-keys".into(),
            Some(json!({"name": format!("by-{role}")})),
            Some("admin"),
        ),
        c(
            M::PATCH,
            "/api/write-keys/{name}",
            "/api/write-keys/VICTIM".into(),
            Some(json!({"rate_per_s": 5})),
            Some("admin"),
        ),
        c(
            M::DELETE,
            "/api/write-keys/{name}",
            "/api/write-keys/VICTIM".into(),
            None,
            Some("admin"),
        ),
        c(
            M::POST,
            "/api/write-keys/{name}/rotate",
            "/api/write-keys/VICTIM/rotate".into(),
            Some(json!({})),
            Some("admin"),
        ),
        c(
            M::GET,
            "/api/audit",
            "/api/audit".into(),
            None,
            Some("admin"),
        ),
        c(
            M::GET,
            "/api/webhooks",
            "/api/webhooks".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::PUT,
            "/api/webhooks/{name}",
            format!("/api/webhooks/by-{role}"),
            Some(json!({"url": "http://127.0.0.1:9/hook"})),
            Some("developer"),
        ),
        c(
            M::GET,
            "/api/webhooks/{name}",
            format!("/api/webhooks/by-{role}"),
            None,
            Some("viewer"),
        ),
        c(
            M::POST,
            "/api/webhooks/{name}/test",
            format!("/api/webhooks/by-{role}/test"),
            Some(json!({"payload": {"from": role}})),
            Some("developer"),
        ),
        c(
            M::POST,
            "/api/webhooks/{name}/rotate",
            format!("/api/webhooks/by-{role}/rotate"),
            None,
            Some("developer"),
        ),
        c(
            M::DELETE,
            "/api/webhooks/{name}",
            format!("/api/webhooks/by-{role}"),
            None,
            Some("developer"),
        ),
        c(
            M::GET,
            "/api/email-templates",
            "/api/email-templates".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::PUT,
            "/api/email-templates/{name}",
            format!("/api/email-templates/by-{role}"),
            Some(json!({"subject": "Hi {{ profile.id }}", "html": "<p>hi</p>"})),
            Some("marketer"),
        ),
        c(
            M::GET,
            "/api/email-templates/{name}",
            format!("/api/email-templates/by-{role}"),
            None,
            Some("viewer"),
        ),
        c(
            M::GET,
            "/api/email-templates/{name}/versions",
            format!("/api/email-templates/by-{role}/versions"),
            None,
            Some("viewer"),
        ),
        c(
            M::POST,
            "/api/email-templates/{name}/preview",
            format!("/api/email-templates/by-{role}/preview"),
            Some(json!({"subject": "Hi", "text": "{{ profile.attributes.name }}"})),
            Some("marketer"),
        ),
        c(
            M::DELETE,
            "/api/email-templates/{name}",
            format!("/api/email-templates/by-{role}"),
            None,
            Some("marketer"),
        ),
        c(
            M::GET,
            "/api/schemas",
            "/api/schemas".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::PUT,
            "/api/schemas/{type}",
            format!("/api/schemas/by.{role}"),
            Some(json!({"schema": {"type": "object"}, "mode": "warn"})),
            Some("developer"),
        ),
        c(
            M::GET,
            "/api/schemas/{type}",
            format!("/api/schemas/by.{role}"),
            None,
            Some("viewer"),
        ),
        c(
            M::GET,
            "/api/schemas/{type}/versions",
            format!("/api/schemas/by.{role}/versions"),
            None,
            Some("viewer"),
        ),
        c(
            M::GET,
            "/api/schemas/{type}/versions/{version}",
            format!("/api/schemas/by.{role}/versions/1"),
            None,
            Some("viewer"),
        ),
        c(
            M::POST,
            "/api/schemas/{type}/infer",
            format!("/api/schemas/by.{role}/infer"),
            None,
            Some("marketer"),
        ),
        c(
            M::GET,
            "/api/schema-violations",
            "/api/schema-violations".into(),
            None,
            Some("viewer"),
        ),
        c(
            M::DELETE,
            "/api/schemas/{type}",
            format!("/api/schemas/by.{role}"),
            None,
            Some("developer"),
        ),
    ]
}

/// What a public route answers whoever calls: the document; a refused sign-in (the case's
/// credentials are wrong); a sign-out with no session to end.
pub fn public_status(route: &str) -> StatusCode {
    match route {
        "/login" => StatusCode::UNAUTHORIZED,
        "/logout" => StatusCode::NO_CONTENT,
        _ => StatusCode::OK,
    }
}

pub async fn call(nudge: &Nudge, case: &Case, auth: Option<&str>) -> (StatusCode, Value) {
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
