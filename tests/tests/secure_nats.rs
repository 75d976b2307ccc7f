//! nudge against a nats-server that requires TLS with a client certificate and a user and
//! password: with the settings for both it serves and decides events; without the client
//! certificate, or with a wrong password, it refuses to start, saying why; the password never
//! appears in its logs.

use std::process::Command;

use nudge_tests::secure::{PASSWORD, SecureNats, USER};
use nudge_tests::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn nudge_serves_over_tls_with_a_client_certificate_and_a_password() {
    let nats = SecureNats::start();
    let (ca, cert, key) = (
        nats.file("ca.pem"),
        nats.file("client.pem"),
        nats.file("client.key"),
    );
    let tls = [
        ("NUDGE_NATS_TLS_CA", ca.to_str().unwrap()),
        ("NUDGE_NATS_TLS_CERT", cert.to_str().unwrap()),
        ("NUDGE_NATS_TLS_KEY", key.to_str().unwrap()),
    ];
    let mut env = tls.to_vec();
    env.extend([("NUDGE_NATS_USER", USER), ("NUDGE_NATS_PASSWORD", PASSWORD)]);
    let nudge = Nudge::serve(&nats.url, &env).await;
    nudge
        .put_rule(
            "tls-cart",
            json!({"name": "tls cart", "triggers": ["cart.updated"],
                   "script": "push(#{ title: \"over TLS\" })"}),
        )
        .await;
    let cart = event("tls-1", "cart.updated", "ada", json!({"total": 3}));
    let (status, body) = nudge.api(Method::POST, "/v1/events", Some(cart)).await;
    assert!(status.is_success(), "{status} {body}");
    until("the event decided over TLS", async || {
        let (_, trace) = nudge.api_get("/api/profiles/ada/trace").await;
        (trace["decisions"][0]["fired"][0]["rule"] == "tls-cart@v1").then_some(())
    })
    .await;
    let logs = nudge.logs();
    assert!(
        !logs.contains(PASSWORD),
        "the password is in the logs:\n{logs}"
    );

    // Refused: a wrong password, and no client certificate. nudge exits saying why.
    let refused = |env: Vec<(&str, &str)>| {
        let output = Command::new(nudge_binary())
            .arg("serve")
            .env("NUDGE_NATS_URL", &nats.url)
            .env("NUDGE_LISTEN", "127.0.0.1:0")
            .envs(env)
            .output()
            .unwrap();
        assert!(!output.status.success(), "nudge started anyway");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let mut wrong = tls.to_vec();
    wrong.extend([("NUDGE_NATS_USER", USER), ("NUDGE_NATS_PASSWORD", "not it")]);
    let said = refused(wrong);
    assert!(said.contains("connecting to NATS"), "{said}");
    assert!(said.to_lowercase().contains("authoriz"), "{said}");
    assert!(!said.contains("not it"), "the password is printed: {said}");
    let said = refused(vec![
        ("NUDGE_NATS_TLS_CA", ca.to_str().unwrap()),
        ("NUDGE_NATS_USER", USER),
        ("NUDGE_NATS_PASSWORD", PASSWORD),
    ]);
    assert!(said.contains("connecting to NATS"), "{said}");
    assert!(!said.contains(PASSWORD), "the password is printed: {said}");
}
