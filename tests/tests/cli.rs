//! The `nudge` command line: offline `rule test`, and `nudge up` with its own nats-server.

use std::process::Command;

use futures::StreamExt;
use nudge_tests::*;
use serde_json::{Value, json};

fn rule_test(rule: &std::path::Path, event: &std::path::Path) -> std::process::Output {
    Command::new(nudge_binary())
        .args(["rule", "test"])
        .arg(rule)
        .arg("--event")
        .arg(event)
        .output()
        .unwrap()
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn rule_test_prints_the_actions_without_any_server() {
    let dir = tempfile::tempdir().unwrap();
    let rule = write(
        dir.path(),
        "big-cart.toml",
        "name = \"Big cart\"\ntriggers = [\"cart.*\"]\nscript = '''\nif event.data.total > 100 { push(#{ title: \"Big!\" }) }\n'''\n",
    );
    let event = write(
        dir.path(),
        "event.json",
        &event("e1", "cart.updated", "user-1", json!({"total": 150})).to_string(),
    );
    let output = rule_test(&rule, &event);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let action: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(action["type"], "nudge.action.push");
    assert_eq!(action["data"]["title"], "Big!");
    assert_eq!(action["causationid"], "e1");
}

#[test]
fn rule_test_points_at_the_broken_line() {
    let dir = tempfile::tempdir().unwrap();
    let event = write(
        dir.path(),
        "event.json",
        &event("e1", "cart.updated", "user-1", json!({})).to_string(),
    );
    let broken = write(dir.path(), "broken.rhai", "let a = 1;\nlet b = a +;\n");
    let output = rule_test(&broken, &event);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");

    let looping = write(dir.path(), "looping.rhai", "loop {}");
    let output = rule_test(&looping, &event);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("rule_max_operations"));
}

#[tokio::test(flavor = "multi_thread")]
async fn nudge_up_runs_its_own_nats_server_and_loads_the_examples() {
    let plugins_dir = plugin_wasm_dir().join("../../nudge-plugins");
    let plugins_dir = plugins_dir.to_str().unwrap();
    let nudge = Nudge::start_command(&["up"], None, &[("NUDGE_PLUGINS_DIR", plugins_dir)]).await;
    let (_, plugins) = nudge.api_get("/api/plugins").await;
    let names: Vec<&str> = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["dynamic-pricing", "personalize-offer", "push-compose"]
    );
    assert_eq!(
        plugins[0]["triggers"],
        json!(["product.viewed"]),
        "the manifest came along"
    );
    let (_, rules) = nudge.api_get("/api/rules").await;
    let ids: Vec<&str> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["big-cart-banner", "order-thanks", "welcome"]);

    let response = reqwest::Client::new()
        .post(nudge.url("/v1/track"))
        .basic_auth(WRITE_KEY, Some(""))
        .json(
            &json!({"userId": "u1", "event": "Order Completed", "properties": {"order_id": "o1"}}),
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let children = Command::new("pgrep")
        .args(["-P", &nudge.pid().to_string(), "nats-server"])
        .output()
        .unwrap();
    let nats_pid = String::from_utf8(children.stdout)
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        !nats_pid.is_empty(),
        "nudge up runs nats-server as its child"
    );
    own_server_budget_holds_every_stream(&nudge, &nats_pid).await;
    assert!(nudge.stop().await, "nudge up exits cleanly on SIGTERM");
    assert!(
        !std::path::Path::new(&format!("/proc/{nats_pid}")).exists(),
        "nats-server was stopped with nudge"
    );
}

/// `nudge up` gives its server a file store budget from what nudge's settings reserve (so it
/// starts on a nearly full disk); the reservation it computes is what the server holds.
async fn own_server_budget_holds_every_stream(nudge: &Nudge, nats_pid: &str) {
    let config_path = nudge
        .log_path
        .with_file_name("data")
        .join("nats-server.conf");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let reserved: i64 = config
        .split_once(" GiB (")
        .and_then(|(_, rest)| rest.split_once(" bytes)"))
        .map(|(number, _)| number.parse().unwrap())
        .unwrap_or_else(|| panic!("no reservation in {config}"));
    assert!(
        config.contains(&format!("max_file_store: {}", reserved + reserved / 4)),
        "{config}"
    );
    let cmdline = std::fs::read_to_string(format!("/proc/{nats_pid}/cmdline")).unwrap();
    let args: Vec<&str> = cmdline.split('\0').collect();
    let port = args[args.iter().position(|a| *a == "--port").unwrap() + 1];
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let mut names = js.stream_names();
    let mut held = 0;
    while let Some(name) = names.next().await {
        let mut stream = js.get_stream(name.unwrap()).await.unwrap();
        held += stream.info().await.unwrap().config.max_bytes;
    }
    assert_eq!(
        held, reserved,
        "storage::reserved_bytes must count every stream and bucket nudge makes"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nudge_watch_prints_the_actions_as_they_are_published() {
    use tokio::io::AsyncBufReadExt;
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    nudge.put_rule("hello", json!({"name": "hello", "triggers": ["user.registered"], "script": "push(#{ title: \"hi\" })"})).await;
    let mut watch = tokio::process::Command::new(nudge_binary())
        .args(["watch", "--count", "1", "--nats-url", &nats.url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(watch.stderr.take().unwrap()).lines();
    // Subscribed once it says so (log lines may come first).
    loop {
        let line = stderr
            .next_line()
            .await
            .unwrap()
            .expect("nudge watch says it is watching");
        if line.starts_with("watching actions.>") {
            break;
        }
    }

    let js = nats.jetstream().await;
    publish(&js, &event("w-1", "user.registered", "user-5", json!({}))).await;
    let output = tokio::time::timeout(std::time::Duration::from_secs(20), watch.wait_with_output())
        .await
        .expect("nudge watch ends after --count messages")
        .unwrap();
    assert!(output.status.success());
    let line = String::from_utf8(output.stdout).unwrap();
    let (subject, payload) = line.trim_end().split_once(' ').unwrap();
    assert_eq!(subject, "actions.push");
    let action: Value = serde_json::from_str(payload).unwrap();
    assert_eq!(action["causationid"], "w-1");
    assert_eq!(action["data"]["title"], "hi");
}

#[tokio::test(flavor = "multi_thread")]
async fn nudge_refuses_a_nats_server_too_old_for_fenced_checkpoints() {
    let old = std::env::var("NUDGE_TEST_OLD_NATS_SERVER").expect(
        "NUDGE_TEST_OLD_NATS_SERVER names a nats-server older than 2.12 (scripts/test sets it)",
    );
    let nats = NatsServer::start_binary(&old);
    let stderr = serve_refused(&nats.url, &[]).await;
    assert!(stderr.contains("too old"), "{stderr}");
    assert!(
        stderr.contains("2.12"),
        "names the version it needs: {stderr}"
    );
    assert!(
        stderr.contains("atomic batch"),
        "names the feature: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_partition_count_changes_with_every_instance_stopped() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let nudge = Nudge::start(&nats, &[]).await;
    nudge
        .put_rule(
            "every",
            json!({"name": "every", "triggers": ["cart.updated"], "script": "push(#{})"}),
        )
        .await;
    for n in 0..200 {
        publish(
            &js,
            &event(
                &format!("e{n}"),
                "cart.updated",
                &format!("u{}", n % 37),
                json!({}),
            ),
        )
        .await;
    }
    wait_drained(&js, std::time::Duration::from_secs(30)).await;
    let partitions = |args: &[&str]| {
        std::process::Command::new(nudge_binary())
            .arg("partitions")
            .args(args)
            .env("NUDGE_NATS_URL", &nats.url)
            .output()
            .unwrap()
    };
    // Refused while an instance runs.
    let refused = partitions(&["set", "4"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("stop every instance first"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(nudge.stop().await);
    let changed = partitions(&["set", "4"]);
    assert!(
        changed.status.success(),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    let shown: Value = serde_json::from_slice(&partitions(&[]).stdout).unwrap();
    assert_eq!(shown["partitions"], 4, "{shown}");
    assert_eq!(shown["records"].as_array().unwrap().len(), 4, "{shown}");

    // An instance still set to 16 is refused, naming the way out.
    let mismatched = tokio::process::Command::new(nudge_binary())
        .arg("serve")
        .env("NUDGE_NATS_URL", &nats.url)
        .env("NUDGE_LISTEN", "127.0.0.1:0")
        .output()
        .await
        .unwrap();
    assert!(!mismatched.status.success());
    let stderr = String::from_utf8_lossy(&mismatched.stderr);
    assert!(
        stderr.contains("this deployment has 4 partitions"),
        "{stderr}"
    );
    assert!(stderr.contains("nudge partitions set"), "{stderr}");

    // Set to 4, it resumes: old events are read again but change and publish nothing new.
    let nudge = Nudge::start(&nats, &[("NUDGE_PARTITIONS", "4")]).await;
    publish(&js, &event("after", "cart.updated", "u1", json!({}))).await;
    wait_drained(&js, std::time::Duration::from_secs(30)).await;
    assert_eq!(stream_len(&js, "NUDGE_ACTIONS").await, 201);
    let (_, profile) = nudge.api_get("/api/profiles/u1").await;
    assert_eq!(profile["counters"]["cart.updated"], 7, "{profile}");
}
