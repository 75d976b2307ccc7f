//! The authorization matrix end to end: every route × every role → the expected status (403
//! naming `role` for each denied cell, 401 without, with a wrong or a revoked credential), the
//! table checked against the OpenAPI document so no route goes untested, and the audit log of
//! the changes made on the way.

use std::collections::BTreeSet;

use nudge_tests::matrix::*;
use nudge_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

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
    let created = find("webhook.create", "by-developer");
    assert_eq!(created["after"]["url"], "http://127.0.0.1:9/hook");
    let rotated = find("webhook.rotate", "by-developer");
    assert_eq!(rotated["after"]["secrets"].as_array().unwrap().len(), 2);
    find("webhook.delete", "by-developer");
    assert!(
        !audit.to_string().contains("whsec_"),
        "secrets appear in the audit log as fingerprints only"
    );
}
