//! A real Prometheus, private to one test, loaded with the repository's scrape configuration
//! (`deploy/prometheus/`) pointed at a running nudge, scraping every second; killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The `prometheus` executable: `NUDGE_TEST_PROMETHEUS`, else Debian's.
fn binary() -> String {
    std::env::var("NUDGE_TEST_PROMETHEUS").unwrap_or_else(|_| "prometheus".into())
}

pub struct Prometheus {
    child: std::process::Child,
    pub url: String,
    /// The configuration directory (`prometheus.yml`, `alerts.yml`) it runs with.
    pub config_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `deploy/prometheus/` scraping `target` (`127.0.0.1:port`) and
    /// evaluating the alerting rules every second.
    pub fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let shipped = std::fs::read_to_string(deploy_dir().join("prometheus/prometheus.yml"))
            .expect("deploy/prometheus/prometheus.yml");
        assert!(shipped.contains("localhost:8080") && shipped.contains("15s"));
        let config = shipped
            .replace("localhost:8080", target)
            .replace("15s", "1s");
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        std::fs::copy(
            deploy_dir().join("prometheus/alerts.yml"),
            dir.path().join("alerts.yml"),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary())
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e} (apt-get install prometheus)", binary()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "prometheus did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            config_dir: dir.path().to_owned(),
            _dir: dir,
        }
    }

    /// `GET /api/v1/<path>`'s `data`; panics on an error answer (a PromQL syntax error, say).
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let answer: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if answer["status"] != "success" {
            return Err(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        Ok(answer["data"].clone())
    }

    /// The series an instant query answers, or Prometheus's error.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("query", &[("query", expr)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.config_dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Runs `promtool` with `args` in `dir`; answers its output, or panics with it.
pub fn promtool(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian's prometheus package) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}: {text}");
    text
}
