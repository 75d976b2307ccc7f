//! A three-node JetStream cluster on loopback ports, private to one test: each node a real
//! `nats-server` with its own store, routed to the others, killed on drop. A node can be
//! SIGKILLed and started again on the same ports and store, as an operator's restart would.

use std::process::Stdio;
use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::nats_server_binary;

struct Node {
    child: Option<std::process::Child>,
    client_port: u16,
    cluster_port: u16,
}

pub struct NatsCluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
    /// Every node's client URL, comma-separated (what `NUDGE_NATS_URL` takes).
    pub url: String,
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl NatsCluster {
    /// Starts `size` nodes and waits until JetStream answers through the first.
    pub async fn start(size: usize) -> NatsCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let nodes: Vec<Node> = (0..size)
            .map(|_| Node {
                child: None,
                client_port: free_port(),
                cluster_port: free_port(),
            })
            .collect();
        let url = nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = NatsCluster { nodes, dir, url };
        for index in 0..size {
            cluster.spawn(index);
        }
        cluster.wait_for_jetstream().await;
        cluster
    }

    fn spawn(&mut self, index: usize) {
        let routes = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect::<Vec<_>>()
            .join(",");
        let node = &self.nodes[index];
        let store = self.dir.path().join(format!("n{index}"));
        let log =
            std::fs::File::create(self.dir.path().join(format!("n{index}.log"))).expect("node log");
        let child = std::process::Command::new(nats_server_binary())
            .arg("--config")
            .arg(crate::jetstream_budget_config(
                self.dir.path(),
                crate::JETSTREAM_BUDGET,
            ))
            .args(["--jetstream", "--addr", "127.0.0.1"])
            .args(["--port", &node.client_port.to_string()])
            .args(["--server_name", &format!("n{index}")])
            .args(["--cluster_name", "nudge-test"])
            .args([
                "--cluster",
                &format!("nats://127.0.0.1:{}", node.cluster_port),
            ])
            .args(["--routes", &routes])
            .arg("--store_dir")
            .arg(store)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting a cluster node");
        self.nodes[index].child = Some(child);
    }

    async fn wait_for_jetstream(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(client) = async_nats::connect(self.node_url(0)).await {
                let js = jetstream::new(client);
                // A replicated stream can be created once the meta group has a leader.
                let probe = js
                    .create_stream(jetstream::stream::Config {
                        name: "HARNESS_PROBE".into(),
                        subjects: vec!["harness.probe".into()],
                        num_replicas: self.nodes.len(),
                        ..Default::default()
                    })
                    .await;
                if probe.is_ok() {
                    js.delete_stream("HARNESS_PROBE").await.ok();
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the cluster's JetStream never came up:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The client URL of node `index`.
    pub fn node_url(&self, index: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[index].client_port)
    }

    /// SIGKILLs node `index` (its store stays).
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts node `index` again on its ports and store, and waits until it accepts clients.
    pub fn restart(&mut self, index: usize) {
        self.spawn(index);
        let port = self.nodes[index].client_port;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "node {index} did not come back");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A JetStream context on a connection that knows every node.
    pub async fn jetstream(&self) -> jetstream::Context {
        let servers: Vec<String> = (0..self.nodes.len()).map(|i| self.node_url(i)).collect();
        let client = async_nats::ConnectOptions::new()
            .connect(servers.as_slice())
            .await
            .expect("connecting to the cluster");
        jetstream::new(client)
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        (0..self.nodes.len())
            .map(|i| {
                let text = std::fs::read_to_string(self.dir.path().join(format!("n{i}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                format!(
                    "--- n{i}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
    }
}
