//! Where settings come from and in which order (defaults, the TOML file, `NUDGE_*`, flags),
//! relative paths made absolute, and retired settings warned about rather than refused.

use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::Serialize;

use super::Settings;

/// Settings of earlier versions that no longer mean anything; a file or environment that still
/// sets them gets a warning naming what replaced them, not an error.
const RETIRED: [(&str, &str); 8] = [
    (
        "consumer_name",
        "partitions (instances share the work by partition)",
    ),
    ("lanes", "partitions"),
    ("lane_queue", "partition_queue_batches"),
    ("max_ack_pending", "max_pending_actions"),
    ("ack_wait_ms", "partition_lease_ms"),
    ("nak_backoff_ms", "retry_backoff_ms"),
    ("profile_cache_entries", "partition_max_profiles"),
    (
        "profile_cas_retries",
        "nothing: one owner per partition writes its profiles",
    ),
];
/// Settings given as command-line flags; unset flags leave lower layers alone.
#[derive(Debug, Default, Clone, Serialize, clap::Args)]
pub struct SettingsFlags {
    /// TOML settings file (default: ./nudge.toml when it exists)
    #[arg(long, env = "NUDGE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// NATS server URL [env: NUDGE_NATS_URL]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_url: Option<String>,
    /// HTTP listen address [env: NUDGE_LISTEN]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Admin bearer token [env: NUDGE_ADMIN_TOKEN]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// Data directory for `nudge up` [env: NUDGE_DATA_DIR]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

impl Settings {
    pub fn load(flags: &SettingsFlags) -> Result<Settings, Box<figment::Error>> {
        let file = flags
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("nudge.toml"));
        // Only known names are read from the environment: other NUDGE_* variables (of tools and
        // tests around nudge) are not settings. The TOML file, in contrast, refuses unknown keys
        // (retired ones only warn).
        let known: Vec<String> = match serde_json::to_value(Settings::default()) {
            Ok(serde_json::Value::Object(fields)) => fields.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        let mut settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Serialized::defaults(file_without_retired(&file)?))
            .merge(Env::prefixed("NUDGE_").only(&known))
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(Box::new)?;
        settings.resolve_paths().map_err(|error| {
            Box::new(figment::Error::from(format!(
                "resolving relative paths against the working directory: {error}"
            )))
        })?;
        for (name, replaced_by) in RETIRED {
            if std::env::var_os(format!("NUDGE_{}", name.to_uppercase())).is_some() {
                tracing::warn!(
                    "NUDGE_{} is no longer a setting (see {replaced_by}); ignored",
                    name.to_uppercase()
                );
            }
        }
        Ok(settings)
    }
}

impl Settings {
    /// Relative paths in the settings mean relative to the working directory at start-up;
    /// made absolute once, so every part (the plugin code cache insists) sees the same path.
    fn resolve_paths(&mut self) -> std::io::Result<()> {
        self.data_dir = std::path::absolute(&self.data_dir)?;
        for path in [
            &mut self.plugin_cache_dir,
            &mut self.plugins_dir,
            &mut self.nats_creds_file,
            &mut self.nats_tls_ca,
            &mut self.nats_tls_cert,
            &mut self.nats_tls_key,
            &mut self.tls_cert,
            &mut self.tls_key,
        ]
        .into_iter()
        .flatten()
        {
            *path = std::path::absolute(&*path)?;
        }
        Ok(())
    }
}

/// The TOML settings file as a table (empty when there is none), minus retired settings, each
/// of which gets a warning.
fn file_without_retired(path: &std::path::Path) -> Result<toml::Table, Box<figment::Error>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(toml::Table::new()),
        Err(error) => {
            return Err(Box::new(figment::Error::from(format!(
                "reading {}: {error}",
                path.display()
            ))));
        }
    };
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|error| Box::new(figment::Error::from(format!("{}: {error}", path.display()))))?;
    for (name, replaced_by) in RETIRED {
        if table.remove(name).is_some() {
            tracing::warn!(
                "{}: `{name}` is no longer a setting (see {replaced_by}); ignored",
                path.display()
            );
        }
    }
    Ok(table)
}
