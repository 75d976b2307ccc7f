//! Test certificates (a CA and certificates it signs, made with the `openssl` command), and a
//! nats-server that requires TLS with client certificates and a user and password, for the
//! tests of nudge's NATS credentials and TLS settings: a random port, a temporary store, killed
//! on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::nats_server_binary;

pub const USER: &str = "nudge";
pub const PASSWORD: &str = "s3cret-nats-password";

pub struct SecureNats {
    child: Child,
    dir: tempfile::TempDir,
    /// `tls://127.0.0.1:<port>`.
    pub url: String,
}

impl Drop for SecureNats {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// `openssl req` with a new P-256 key, unencrypted, and `args`.
fn new_key(dir: &Path, args: &[&str]) {
    let key = [
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(dir, &[&key[..], args].concat());
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A test CA in `dir`: `ca.key` and `ca.pem`, valid for a day.
pub fn make_ca(dir: &Path) {
    new_key(
        dir,
        &[
            "-x509",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=nudge test CA",
        ],
    );
}

/// A P-256 key and a certificate signed by the CA in `dir` (see [`make_ca`]), for `name`
/// (`<name>.key`, `<name>.pem`; 127.0.0.1 and localhost), valid for `usage` (`serverAuth`).
pub fn issue(dir: &Path, name: &str, usage: &str) {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n"),
    )
    .unwrap();
    let subject = format!("/CN={name}");
    new_key(dir, &["-keyout", &key, "-out", &csr, "-subj", &subject]);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &ext,
        ],
    );
}

impl SecureNats {
    pub fn start() -> SecureNats {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        make_ca(path);
        issue(path, "server", "serverAuth");
        issue(path, "client", "clientAuth");
        let config = format!(
            "host: 127.0.0.1\nport: -1\njetstream {{ store_dir: \"{store}\", max_file_store: {budget} }}\n\
             tls {{ cert_file: \"{dir}/server.pem\", key_file: \"{dir}/server.key\", \
             ca_file: \"{dir}/ca.pem\", verify: true }}\n\
             authorization {{ user: \"{USER}\", password: \"{PASSWORD}\" }}\n",
            store = path.join("store").display(),
            budget = crate::JETSTREAM_BUDGET,
            dir = path.display(),
        );
        std::fs::write(path.join("nats.conf"), config).unwrap();
        let binary = nats_server_binary();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(path.join("nats.conf"))
            .arg("--ports_file_dir")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let name = binary.rsplit('/').next().unwrap_or("nats-server");
        let ports_file = path.join(format!("{name}_{}.ports", child.id()));
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&ports_file)
                && let Ok(ports) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(url) = ports["nats"][0].as_str()
                && let Some(port) = url.rsplit(':').next()
            {
                break port.to_owned();
            }
            assert!(Instant::now() < deadline, "nats-server wrote no ports file");
            std::thread::sleep(Duration::from_millis(20));
        };
        SecureNats {
            child,
            url: format!("tls://127.0.0.1:{port}"),
            dir,
        }
    }

    /// A file the server's set-up made: `ca.pem`, `client.pem`, `client.key`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}
