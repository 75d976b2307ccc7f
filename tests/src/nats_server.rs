//! A real `nats-server` with JetStream, private to one test: random port, temp store, killed on
//! drop (the pattern of the async-nats repository's own test helper).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::Value;

/// The JetStream file store a test server may reserve. JetStream reserves every stream's
/// `max_bytes` up front from this budget, which by default is 75% of the disk free when the server
/// starts; nudge's default limits reserve about 18 GiB, so on a CI machine whose disk is mostly
/// taken by build output every test would fail to start nudge, though each writes a few MB.
pub const JETSTREAM_BUDGET: &str = "256GB";

const BUDGET_CONFIG_FILE: &str = "jetstream-budget.conf";

/// Writes a `nats-server` configuration that sets the JetStream file store budget (which has no
/// command-line flag) into `dir`, and returns its path.
pub fn jetstream_budget_config(dir: &Path, budget: &str) -> PathBuf {
    let path = dir.join(BUDGET_CONFIG_FILE);
    std::fs::write(&path, format!("jetstream {{ max_file_store: {budget} }}\n"))
        .expect("writing the nats-server configuration");
    path
}

/// A `nats-server` with JetStream, private to one test.
pub struct NatsServer {
    child: std::process::Child,
    pub url: String,
    dir: tempfile::TempDir,
}

pub fn nats_server_binary() -> String {
    std::env::var("NUDGE_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into())
}

fn spawn_nats_server(dir: &std::path::Path, port: &str) -> std::process::Child {
    spawn_nats_server_binary(&nats_server_binary(), dir, port)
}

fn spawn_nats_server_binary(
    binary: &str,
    dir: &std::path::Path,
    port: &str,
) -> std::process::Child {
    std::process::Command::new(binary)
        .arg("--config")
        .arg(dir.join(BUDGET_CONFIG_FILE))
        .args([
            "--jetstream",
            "--addr",
            "127.0.0.1",
            "--port",
            port,
            "--store_dir",
        ])
        .arg(dir.join("store"))
        .arg("--ports_file_dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("starting {binary}: {e} (install nats-server or set NUDGE_TEST_NATS_SERVER)")
        })
}

impl NatsServer {
    /// The server's process id (to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts the binary named by `NUDGE_TEST_NATS_SERVER`, else `nats-server` from PATH.
    pub fn start() -> NatsServer {
        Self::start_binary(&nats_server_binary())
    }

    /// Starts the `nats-server` at `binary` (an older one, say).
    pub fn start_binary(binary: &str) -> NatsServer {
        Self::start_with(binary, JETSTREAM_BUDGET)
    }

    /// Starts a server whose JetStream file store budget is `budget` (`1GB`, say).
    pub fn start_with_budget(budget: &str) -> NatsServer {
        Self::start_with(&nats_server_binary(), budget)
    }

    fn start_with(binary: &str, budget: &str) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        jetstream_budget_config(dir.path(), budget);
        let child = spawn_nats_server_binary(binary, dir.path(), "-1");
        let name = binary.rsplit('/').next().unwrap_or("nats-server");
        let ports_file = dir.path().join(format!("{name}_{}.ports", child.id()));
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(&ports_file)
                && let Ok(ports) = serde_json::from_str::<Value>(&text)
                && let Some(url) = ports["nats"][0].as_str()
            {
                break url.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "nats-server wrote no ports file at {}",
                ports_file.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        NatsServer { child, url, dir }
    }

    /// SIGKILLs the server, then starts it again on the same port with the same store.
    pub fn crash_and_restart(&mut self, down_for: Duration) {
        self.child.kill().expect("SIGKILL nats-server");
        self.child.wait().ok();
        std::thread::sleep(down_for);
        let port = self.url.rsplit(':').next().expect("port").to_owned();
        self.child = spawn_nats_server(self.dir.path(), &port);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().expect("port")))
            .is_err()
        {
            assert!(Instant::now() < deadline, "nats-server did not come back");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn jetstream(&self) -> jetstream::Context {
        let client = async_nats::connect(&self.url)
            .await
            .expect("connecting to the test nats-server");
        jetstream::new(client)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
