//! The web UI in a real browser: `web/tests/ui.mjs` drives Debian's Chromium (playwright-core)
//! against a real nudge and nats-server started here, and saves a screenshot of each main page
//! to `target/screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;

use nudge_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

const PASSWORD: &str = "browser-test-password";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test]
async fn a_marketer_edits_tests_saves_watches_and_restores_a_rule_in_the_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium is not at {chromium}: scripts/test installs Debian's chromium package"
    );
    let web = repo_root().join("web");
    assert!(
        web.join("node_modules/playwright-core").exists(),
        "web/node_modules is missing: building nudge runs `npm ci` in web/"
    );
    let nats = NatsServer::start();
    // The Results step shows an uplift from a dozen profiles.
    let nudge = Nudge::start(&nats, &[("NUDGE_RESULTS_MIN_PROFILES", "1")]).await;
    for (username, role) in [("mia", "marketer"), ("vic", "viewer"), ("root", "admin")] {
        let (status, body) = nudge
            .api(
                Method::POST,
                "/api/users",
                Some(json!({"username": username, "password": PASSWORD, "role": role})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let screenshots = repo_root().join("target/screenshots");
    let output = tokio::process::Command::new("node")
        .arg("tests/ui.mjs")
        .current_dir(&web)
        .env("NUDGE_URL", &nudge.base_url)
        .env("NATS_URL", &nats.url)
        .env("UI_PASSWORD", PASSWORD)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOT_DIR", &screenshots)
        .env(
            "PLUGIN_WASM",
            plugin_wasm_dir().join("personalize_offer.wasm"),
        )
        .stdin(Stdio::null())
        .output()
        .await
        .expect("running node (Node.js is needed to build the UI, so it is installed)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed (screenshot: {}/failure.png)\n{stdout}\n{stderr}\nnudge log:\n{}",
        screenshots.display(),
        nudge.logs()
    );
    assert!(stdout.contains("ui: all steps passed"), "{stdout}");
    // A whole session of the UI — sign-ins (one refused), tokens, webhook secrets shown once,
    // uploads — leaves no secret in nudge's logs.
    let logs = nudge.logs();
    for secret in [
        ADMIN_TOKEN,
        WRITE_KEY,
        PASSWORD,
        "not her password",
        "whsec_",
    ] {
        assert!(!logs.contains(secret), "`{secret}` is in nudge's logs");
    }
    for page in [
        "login",
        "rules",
        "editor-test",
        "live",
        "profile",
        "versions",
        "results",
        "rules-results",
        "plugins",
        "dlq",
        "schemas",
        "editor-warning",
        "admin",
    ] {
        assert!(
            screenshots.join(format!("{page}.png")).exists(),
            "no screenshot of {page}"
        );
    }
}
