//! Running nudge as a service: the systemd unit is one systemd accepts, `nudge config check`
//! prints the effective settings with secrets masked (and relative paths made absolute) or
//! names what is wrong, and `nudge config example` is the committed example file.

use std::process::Command;

use nudge_tests::*;

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

#[test]
fn the_systemd_unit_is_one_systemd_accepts_without_a_warning() {
    let unit = std::fs::read_to_string(repo_file("deploy/systemd/nudge.service")).unwrap();
    for hardening in [
        "User=nudge",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=nudge",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(hardening), "the unit lacks {hardening}");
    }
    // systemd-analyze checks that ExecStart's program exists: point it at the built binary.
    let dir = tempfile::tempdir().unwrap();
    let local = unit.replace(
        "/usr/local/bin/nudge",
        nudge_binary().to_str().expect("a UTF-8 path"),
    );
    let path = dir.path().join("nudge.service");
    std::fs::write(&path, local).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package) runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "systemd warns: {stderr}");
}

#[test]
fn config_check_prints_the_effective_settings_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nudge.toml"),
        "listen = \"0.0.0.0:9090\"\ndata_dir = \"state\"\n",
    )
    .unwrap();
    let output = Command::new(nudge_binary())
        .args(["config", "check"])
        .current_dir(dir.path())
        .env("NUDGE_ADMIN_TOKEN", "very-secret-token")
        .env("NUDGE_SMTP_PASSWORD", "very-secret-password")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("listen = \"0.0.0.0:9090\""), "{stdout}");
    assert!(
        stdout.starts_with("# nudge's streams and buckets reserve ")
            && stdout.contains(" GiB (")
            && stdout.contains(" per replica in JetStream's file store"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("very-secret"),
        "a secret printed: {stdout}"
    );
    assert!(stdout.contains("admin_token = \"********\""), "{stdout}");
    let resolved = dir.path().canonicalize().unwrap().join("state");
    assert!(
        stdout.contains(&format!("data_dir = \"{}\"", resolved.display())),
        "relative paths resolve against the working directory: {stdout}"
    );

    let bad = Command::new(nudge_binary())
        .args(["config", "check"])
        .current_dir(dir.path())
        .env("NUDGE_REPLICAS", "9")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("replicas (9) must be 1 to 5"), "{stderr}");
}

#[test]
fn config_example_is_the_committed_example_file() {
    let output = Command::new(nudge_binary())
        .args(["config", "example"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let committed = std::fs::read_to_string(repo_file("deploy/nudge.toml")).unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), committed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_room_for_the_streams_is_named_with_what_to_change() {
    // nudge's defaults reserve about 18 GiB; this server's budget is 1 GB.
    let nats = NatsServer::start_with_budget("1GB");
    let stderr = serve_refused(&nats.url, &[]).await;
    for part in [
        "JetStream could not set aside 4.0 GiB",
        "for NUDGE_EVENTS",
        "max_file_store",
        "nudge's settings reserve",
        "*_max_bytes settings",
    ] {
        assert!(stderr.contains(part), "no `{part}` in: {stderr}");
    }
}
