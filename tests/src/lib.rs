//! Test harness: a real `nats-server` per test (random port, temp store, killed on drop — the
//! pattern of the async-nats repository's own test helper) and the real `nudge` binary as a child
//! process that tests can SIGKILL.

pub use nats_server::{JETSTREAM_BUDGET, NatsServer, jetstream_budget_config, nats_server_binary};
pub use wait::{WAIT, until};

pub mod bench;
pub mod chaos;
pub mod cluster;
pub mod fuzz;
pub mod matrix;
mod nats_server;
pub mod ordered;
pub mod prometheus;
pub mod receiver;
pub mod secure;
pub mod signin;
pub mod smtp;
mod wait;
pub mod workload;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const WRITE_KEY: &str = "test-write-key";

/// Runs `nudge serve` against `nats_url` with `env`, expecting it to give up at start; answers
/// what it printed on stderr (the reason).
pub async fn serve_refused(nats_url: &str, env: &[(&str, &std::ffi::OsStr)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(nudge_binary());
    command
        .arg("serve")
        .current_dir(dir.path())
        .env("NUDGE_NATS_URL", nats_url)
        .env("NUDGE_LISTEN", "127.0.0.1:0")
        .env("NUDGE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("NUDGE_WRITE_KEY", WRITE_KEY)
        .env("NUDGE_DATA_DIR", dir.path().join("data"));
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("nudge gives up at once")
        .expect("running nudge");
    assert!(
        !output.status.success(),
        "nudge started, but should not have"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `nudge` binary built by `cargo build` next to the test executable, or `NUDGE_BIN`.
pub fn nudge_binary() -> PathBuf {
    if let Ok(path) = std::env::var("NUDGE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps, the chaos binary from target/<profile>.
    let dir = exe.parent().expect("target/<profile>[/deps]");
    let profile_dir = if dir.ends_with("deps") {
        dir.parent().expect("target/<profile>")
    } else {
        dir
    };
    let binary = profile_dir.join("nudge");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --bins` first (scripts/test does)",
        binary.display()
    );
    binary
}

/// A running `nudge serve` child process.
pub struct Nudge {
    child: Child,
    pub base_url: String,
    pub log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Nudge {
    /// Starts `nudge serve` against `nats` and waits until `/readyz` says ready.
    pub async fn start(nats: &NatsServer, env: &[(&str, &str)]) -> Nudge {
        Self::start_command(&["serve"], Some(&nats.url), env).await
    }

    /// Starts `nudge serve` against a NATS URL (a cluster's list of nodes, say).
    pub async fn serve(nats_url: &str, env: &[(&str, &str)]) -> Nudge {
        Self::start_command(&["serve"], Some(nats_url), env).await
    }

    pub async fn start_command(
        args: &[&str],
        nats_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> Nudge {
        let dir = tempfile::tempdir().expect("temp dir");
        let log_path = dir.path().join("nudge.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = Command::new(nudge_binary());
        command
            .args(args)
            .current_dir(dir.path())
            .env("NUDGE_LISTEN", "127.0.0.1:0")
            .env("NUDGE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("NUDGE_WRITE_KEY", WRITE_KEY)
            .env("NUDGE_DATA_DIR", dir.path().join("data"))
            .env("NUDGE_NATS_SERVER_BIN", nats_server_binary())
            .env(
                "RUST_LOG",
                std::env::var("NUDGE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("NUDGE_NATS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        if let Some(url) = nats_url {
            command.env("NUDGE_NATS_URL", url);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("starting nudge");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base_url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("nudge listening on ") {
                    return Some(url.trim().to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "nudge did not start; log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            )
        });
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let nudge = Nudge {
            child,
            base_url,
            log_path,
            _dir: dir,
        };
        nudge.wait_ready().await;
        nudge
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client.get(format!("{}/readyz", self.base_url)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nudge never became ready; log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id().expect("running child") as i32)
    }

    /// SIGSTOP: the process is frozen (its leases run out while it cannot see it).
    pub fn pause(&self) {
        kill(self.pid(), Signal::SIGSTOP).expect("SIGSTOP nudge");
    }

    /// SIGCONT after [`Nudge::pause`].
    pub fn resume(&self) {
        kill(self.pid(), Signal::SIGCONT).expect("SIGCONT nudge");
    }

    /// SIGKILL: no shutdown code runs.
    pub async fn kill(mut self) {
        kill(self.pid(), Signal::SIGKILL).expect("SIGKILL nudge");
        self.child.wait().await.ok();
    }

    /// SIGTERM and wait for a graceful exit; returns whether it exited successfully.
    pub async fn stop(mut self) -> bool {
        kill(self.pid(), Signal::SIGTERM).expect("SIGTERM nudge");
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        matches!(status, Ok(Ok(s)) if s.success())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `PUT /api/rules/{id}` with the admin token; panics unless it is stored.
    pub async fn put_rule(&self, id: &str, rule: Value) -> Value {
        let response = reqwest::Client::new()
            .put(self.url(&format!("/api/rules/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&rule)
            .send()
            .await
            .expect("PUT rule");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON answer");
        assert!(
            status.is_success(),
            "PUT /api/rules/{id} answered {status}: {body}"
        );
        body
    }

    /// A management API request with the admin token; answers the status and the JSON body
    /// (`null` when there is none).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        let mut request = reqwest::Client::new()
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("API request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET` on the management API; answers the status and the JSON body.
    pub async fn api_get(&self, path: &str) -> (reqwest::StatusCode, Value) {
        self.api(reqwest::Method::GET, path, None).await
    }

    /// `PUT /api/plugins/{name}` with a plugin's `.wasm` and a JSON manifest (multipart);
    /// answers the status and the JSON body.
    pub async fn upload_plugin(
        &self,
        name: &str,
        wasm: Vec<u8>,
        manifest: Value,
    ) -> (reqwest::StatusCode, Value) {
        let form = reqwest::multipart::Form::new()
            .part(
                "wasm",
                reqwest::multipart::Part::bytes(wasm).file_name("plugin.wasm"),
            )
            .text("manifest", manifest.to_string());
        let response = reqwest::Client::new()
            .put(self.url(&format!("/api/plugins/{name}")))
            .bearer_auth(ADMIN_TOKEN)
            .multipart(form)
            .send()
            .await
            .expect("PUT plugin");
        let status = response.status();
        (status, response.json().await.expect("JSON answer"))
    }

    /// Like [`Nudge::upload_plugin`], panicking unless it is stored.
    pub async fn put_plugin(&self, name: &str, wasm: Vec<u8>, manifest: Value) -> Value {
        let (status, body) = self.upload_plugin(name, wasm, manifest).await;
        assert!(
            status.is_success(),
            "PUT /api/plugins/{name} answered {status}: {body}"
        );
        body
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The dead letter of the action (or event) `event_id` caused, once it is there.
    pub async fn dead_letter_of(&self, event_id: &str) -> Value {
        until(&format!("the dead letter of {event_id}"), async || {
            let (_, dlq) = self.api_get("/api/dlq").await;
            dlq["letters"]
                .as_array()?
                .iter()
                .find(|l| l["payload"]["causationid"] == event_id)
                .cloned()
        })
        .await
    }

    /// The actions of the audit log, newest first.
    pub async fn audit_actions(&self) -> Vec<String> {
        let (_, audit) = self.api_get("/api/audit").await;
        audit["entries"]
            .as_array()
            .expect("audit entries")
            .iter()
            .map(|e| e["action"].as_str().expect("an action").to_owned())
            .collect()
    }
}

/// A CloudEvent as a shop would publish it, padded to a realistic size.
pub fn event(id: &str, event_type: &str, subject: &str, data: Value) -> Value {
    serde_json::json!({
        "specversion": "1.0", "id": id, "source": "https://shop.example/checkout",
        "type": event_type, "subject": subject, "time": "2026-11-27T10:00:00Z",
        "datacontenttype": "application/json", "data": data,
    })
}

/// Publishes a CloudEvent on `events.<type>` and waits for JetStream's ack.
pub async fn publish(js: &jetstream::Context, event: &Value) {
    let subject = format!("events.{}", event["type"].as_str().expect("type"));
    js.publish(subject, serde_json::to_vec(event).expect("json").into())
        .await
        .expect("publish")
        .await
        .expect("publish ack");
}

/// Number of messages stored in a stream.
pub async fn stream_len(js: &jetstream::Context, name: &str) -> u64 {
    let mut stream = js.get_stream(name).await.expect("stream exists");
    stream.info().await.expect("stream info").state.messages
}

/// A stream's state: messages held, bytes held, last sequence.
pub async fn stream_state(js: &jetstream::Context, name: &str) -> (u64, u64, u64) {
    let mut stream = js.get_stream(name).await.expect("stream exists");
    let state = stream.info().await.expect("stream info").state.clone();
    (state.messages, state.bytes, state.last_sequence)
}

/// Reads every message of a stream from the start (up to `max`), with its headers.
pub async fn read_stream(
    js: &jetstream::Context,
    name: &str,
    max: usize,
) -> Vec<async_nats::Message> {
    let stream: stream::Stream = js.get_stream(name).await.expect("stream exists");
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("ephemeral consumer");
    let mut out = Vec::new();
    let mut batch = consumer
        .fetch()
        .max_messages(max)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .expect("fetch");
    while let Some(Ok(message)) = batch.next().await {
        out.push(message.split().0);
        if out.len() >= max {
            break;
        }
    }
    out
}

/// Reads every message a stream holds now, in order, however many.
pub async fn read_all(js: &jetstream::Context, name: &str) -> Vec<async_nats::Message> {
    read_all_stored(js, name)
        .await
        .into_iter()
        .map(|(message, _)| message)
        .collect()
}

/// [`read_all`], with the time JetStream stored each message (ns since the Unix epoch).
pub async fn read_all_stored(
    js: &jetstream::Context,
    name: &str,
) -> Vec<(async_nats::Message, i128)> {
    let mut stream: stream::Stream = js.get_stream(name).await.expect("stream exists");
    let last = stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence;
    let mut out = Vec::new();
    if last == 0 {
        return out;
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    while let Some(Ok(message)) = messages.next().await {
        let info = message.info().expect("metadata");
        let (seq, stored_ns) = (info.stream_sequence, info.published.unix_timestamp_nanos());
        out.push((message.split().0, stored_ns));
        if seq >= last {
            break;
        }
    }
    out
}

/// Waits until a stream holds at least `count` messages; panics with `context` after `timeout`.
pub async fn wait_for_len(
    js: &jetstream::Context,
    name: &str,
    count: u64,
    timeout: Duration,
    context: &str,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let len = stream_len(js, name).await;
        if len >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} holds {len} messages, expected {count}: {context}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every partition's committed position (`NUDGE_CLUSTER`), in partition order.
pub async fn partition_positions(js: &jetstream::Context) -> Vec<u64> {
    let Ok(cluster) = js.get_key_value("NUDGE_CLUSTER").await else {
        return Vec::new();
    };
    let Ok(Some(topology)) = cluster.get("topology").await else {
        return Vec::new();
    };
    let topology: Value = serde_json::from_slice(&topology).expect("topology JSON");
    let partitions = topology["partitions"].as_u64().expect("partitions");
    let mut positions = Vec::new();
    for p in 0..partitions {
        let record = cluster.get(format!("partition.{p}")).await.ok().flatten();
        let position = record
            .and_then(|r| serde_json::from_slice::<Value>(&r).ok())
            .and_then(|r| r["position"].as_u64())
            .unwrap_or(0);
        positions.push(position);
    }
    positions
}

/// Whether every partition has committed every event up to stream sequence `last`; if not, the
/// partitions' positions.
pub async fn committed_through(js: &jetstream::Context, last: u64) -> Result<(), Vec<u64>> {
    let positions = partition_positions(js).await;
    if !positions.is_empty() && positions.iter().all(|p| *p >= last) {
        Ok(())
    } else {
        Err(positions)
    }
}

/// Waits until every partition has committed every event in `NUDGE_EVENTS`: decided, actions
/// stored, profiles and traces written.
pub async fn wait_drained(js: &jetstream::Context, timeout: Duration) {
    wait_drained_or(js, timeout, String::new).await;
}

/// [`wait_drained`], adding `explain()` (say, the instances' logs) to the failure.
pub async fn wait_drained_or(
    js: &jetstream::Context,
    timeout: Duration,
    explain: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut stream = js.get_stream("NUDGE_EVENTS").await.expect("events stream");
        let last = stream
            .info()
            .await
            .expect("stream info")
            .state
            .last_sequence;
        let Err(positions) = committed_through(js, last).await else {
            return;
        };
        assert!(
            Instant::now() < deadline,
            "not drained (stream at {last}); partition positions: {positions:?}\n{}",
            explain()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn json_payload(message: &async_nats::Message) -> Value {
    serde_json::from_slice(&message.payload).expect("JSON payload")
}

/// Where `scripts/build-plugins` puts the plugins and fixtures (`NUDGE_PLUGIN_WASM_DIR` overrides).
pub fn plugin_wasm_dir() -> PathBuf {
    std::env::var_os("NUDGE_PLUGIN_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/plugins/wasm32-wasip2/release")
        })
}

/// The `.wasm` of a plugin or fixture crate, e.g. `plugin_wasm("push_compose")`.
pub fn plugin_wasm(crate_name: &str) -> Vec<u8> {
    let path = plugin_wasm_dir().join(format!("{crate_name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (scripts/build-plugins builds it)",
            path.display()
        )
    })
}
