//! Signing in as a browser does (the JSON form of `/login`, the session cookie and its CSRF
//! token) and making API tokens, for the access and session tests.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::Nudge;

pub async fn create_token(nudge: &Nudge, name: &str, role: &str) -> (String, String) {
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

/// Signs in over the JSON form of `/login`; answers the cookie header and the CSRF token.
pub async fn sign_in(nudge: &Nudge, username: &str, password: &str) -> (String, String) {
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

pub async fn with_session(
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
