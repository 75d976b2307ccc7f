//! HTTPS on nudge's own listener (rustls): a client that trusts the CA gets through and a plain
//! HTTP one does not; SIGHUP serves a renewed certificate without a restart; a certificate that
//! cannot be read stops start-up with the setting named.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use nudge_tests::secure::{issue, make_ca};
use nudge_tests::*;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A client that trusts only the CA in `dir`, with a new connection (and handshake) per
/// request, so each sees the certificate served now.
fn client_trusting(dir: &Path) -> reqwest::Client {
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
}

/// `nudge serve` with `env`; answers the child and the address it printed.
async fn serve(
    nats: &NatsServer,
    data: &Path,
    env: &[(&str, &Path)],
) -> (tokio::process::Child, String) {
    let mut command = tokio::process::Command::new(nudge_binary());
    command
        .arg("serve")
        .env("NUDGE_NATS_URL", &nats.url)
        .env("NUDGE_LISTEN", "127.0.0.1:0")
        .env("NUDGE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("NUDGE_WRITE_KEY", WRITE_KEY)
        .env("NUDGE_DATA_DIR", data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("nudge listening on ") {
                return url.trim().to_owned();
            }
        }
        panic!("nudge exited before listening");
    })
    .await
    .expect("nudge listens");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, listening)
}

#[tokio::test(flavor = "multi_thread")]
async fn https_is_served_and_a_renewed_certificate_is_taken_on_sighup() {
    let nats = NatsServer::start();
    let (first, second, data) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    for pki in [first.path(), second.path()] {
        make_ca(pki);
        issue(pki, "server", "serverAuth");
    }
    // The files nudge serves: the first CA's certificate, replaced by the second's later.
    let (cert, key) = (data.path().join("cert.pem"), data.path().join("key.pem"));
    std::fs::copy(first.path().join("server.pem"), &cert).unwrap();
    std::fs::copy(first.path().join("server.key"), &key).unwrap();
    let (child, url) = serve(
        &nats,
        &data.path().join("data"),
        &[("NUDGE_TLS_CERT", &cert), ("NUDGE_TLS_KEY", &key)],
    )
    .await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let (old_ca, new_ca) = (
        client_trusting(first.path()),
        client_trusting(second.path()),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = old_ca.get(format!("{url}/readyz")).send().await;
        if ready.as_ref().is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never ready over HTTPS: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rules = old_ca
        .get(format!("{url}/api/rules"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(rules.status().is_success());
    let plain = url.replacen("https://", "http://", 1);
    let refused = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        !refused.is_ok_and(|r| r.status().is_success()),
        "plain HTTP is not served on an HTTPS listener"
    );
    assert!(
        new_ca.get(format!("{url}/healthz")).send().await.is_err(),
        "the second CA's client does not trust the first certificate"
    );

    // Renewal: new files, then SIGHUP.
    std::fs::copy(second.path().join("server.pem"), &cert).unwrap();
    std::fs::copy(second.path().join("server.key"), &key).unwrap();
    let pid = Pid::from_raw(child.id().unwrap() as i32);
    kill(pid, Signal::SIGHUP).unwrap();
    until("the renewed certificate served", async || {
        new_ca
            .get(format!("{url}/healthz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    assert!(
        old_ca.get(format!("{url}/healthz")).send().await.is_err(),
        "the old certificate is no longer served"
    );

    // A certificate that cannot be read keeps serving the one before, and says so.
    std::fs::write(&cert, "not a certificate").unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = new_ca.get(format!("{url}/healthz")).send().await.unwrap();
    assert!(still.status().is_success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_that_cannot_be_read_stops_start_up_naming_the_setting() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let stderr = serve_refused(
        &nats.url,
        &[
            ("NUDGE_TLS_CERT", cert.as_os_str()),
            ("NUDGE_TLS_KEY", key.as_os_str()),
        ],
    )
    .await;
    assert!(
        stderr.contains("(tls_cert)") && stderr.contains("(tls_key)"),
        "{stderr}"
    );

    let half = std::process::Command::new(nudge_binary())
        .args(["config", "check"])
        .current_dir(dir.path())
        .env("NUDGE_TLS_CERT", &cert)
        .output()
        .unwrap();
    assert!(!half.status.success());
    assert!(
        String::from_utf8_lossy(&half.stderr).contains("tls_cert and tls_key go together"),
        "{}",
        String::from_utf8_lossy(&half.stderr)
    );
}
