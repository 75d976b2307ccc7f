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

/// Cluster ports come from below Linux's ephemeral range (32768–60999), which is where every
/// port-0 listener of the tests running beside this one lands: a port taken from there and
/// released could be handed to another test before the node binds it (CI saw exactly that), and a
/// restarted node needs its old ports still free.
const CLUSTER_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// How many times a cluster is started on new ports when a node could not bind its own.
const START_ATTEMPTS: usize = 5;

/// A port in `CLUSTER_PORTS` nothing listens on right now, picked at random so that tests
/// starting clusters at the same moment do not walk the same sequence.
fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let span = u64::from(CLUSTER_PORTS.end - CLUSTER_PORTS.start);
        let port = CLUSTER_PORTS.start + (hasher.finish() % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn new_nodes(size: usize) -> Vec<Node> {
    (0..size)
        .map(|_| Node {
            child: None,
            client_port: free_port(),
            cluster_port: free_port(),
        })
        .collect()
}

fn client_urls(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
        .collect::<Vec<_>>()
        .join(",")
}

impl NatsCluster {
    /// Starts `size` nodes and waits until JetStream answers through the first. A node that
    /// exits at once (its port was taken in the meantime) restarts the cluster on new ports.
    pub async fn start(size: usize) -> NatsCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let nodes = new_nodes(size);
        let url = client_urls(&nodes);
        let mut cluster = NatsCluster { nodes, dir, url };
        for attempt in 1..=START_ATTEMPTS {
            for index in 0..size {
                cluster.spawn(index);
            }
            if cluster.all_nodes_listening() {
                break;
            }
            assert!(
                attempt < START_ATTEMPTS,
                "the cluster's nodes could not bind their ports:\n{}",
                cluster.logs()
            );
            for index in 0..size {
                cluster.kill(index);
            }
            cluster.nodes = new_nodes(size);
            cluster.url = client_urls(&cluster.nodes);
        }
        cluster.wait_for_jetstream().await;
        cluster
    }

    /// Waits until every node accepts clients; false as soon as one has exited.
    fn all_nodes_listening(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &mut self.nodes {
            let child = node.child.as_mut().expect("spawned");
            while std::net::TcpStream::connect(("127.0.0.1", node.client_port)).is_err() {
                if !matches!(child.try_wait(), Ok(None)) {
                    return false;
                }
                assert!(Instant::now() < deadline, "a cluster node never listened");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // A node binds its client port before its route port: give a failing route bind the
        // moment it needs to show.
        std::thread::sleep(Duration::from_millis(100));
        self.nodes
            .iter_mut()
            .all(|node| matches!(node.child.as_mut().map(|c| c.try_wait()), Some(Ok(None))))
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
        // Appended to, so a restarted node's log keeps what it said before.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("n{index}.log")))
            .expect("node log");
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

    /// Stops every node with SIGTERM (a clean shutdown, as an operator's maintenance would) and
    /// waits until they have exited; their stores stay.
    pub fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = &node.child {
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).ok();
            }
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                child.wait().ok();
            }
        }
    }

    /// Starts every node again on its ports and store, and waits until JetStream answers.
    pub async fn start_all(&mut self) {
        for index in 0..self.nodes.len() {
            self.spawn(index);
        }
        assert!(
            self.all_nodes_listening(),
            "a node did not come back:\n{}",
            self.logs()
        );
        self.wait_for_jetstream().await;
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
