//! WebAssembly plugins: the wasmtime host, the plugin registry in NATS and the live set every
//! instance routes events to.
//!
//! The host side of the contract in `sdk/wit/plugin.wit` lives in [`host`] and [`state`], its
//! versions in [`contract`]; what a
//! plugin is (manifest, version, code hash) in [`manifest`]; how plugins are stored and loaded in
//! [`store`] and [`sync`]; which plugins an event reaches in [`set`].

pub mod breaker;
pub mod contract;
pub mod dir;
pub mod dispatch;
pub mod host;
pub mod instances;
pub mod manifest;
pub mod set;
pub mod state;
pub mod store;
pub mod sync;
mod wasi_io;

use std::path::PathBuf;

use serde::Serialize;

pub use dispatch::Plugins;
pub use host::{CallReport, Compiled, PluginFailure, PluginHost};
pub use instances::Instances;
pub use manifest::{Manifest, PluginRecord};
pub use set::{LivePlugins, PluginSet};

/// Bounds on one plugin call; each is a `plugin_*` setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginLimits {
    pub deadline_ms: u64,
    pub max_memory_bytes: usize,
    pub max_stack_bytes: usize,
    pub max_table_elements: usize,
    pub max_instances: usize,
    /// 0: no fuel metering.
    pub fuel: u64,
    pub max_output_bytes: usize,
    pub max_actions: usize,
    pub max_log_lines: usize,
    pub pool_instances: u32,
    /// Calls an instance serves before it is replaced (1: a fresh instance per call).
    pub instance_max_calls: u64,
    /// Idle instances kept per loaded plugin version.
    pub idle_instances: usize,
    /// Limit-ended calls in a row that quarantine a version (0: never).
    pub quarantine_after: u32,
    /// How long a quarantine lasts.
    pub quarantine_ms: u64,
    /// Compiled-code cache; `None` compiles every time the process starts.
    pub cache_dir: Option<PathBuf>,
}

impl Default for PluginLimits {
    fn default() -> Self {
        crate::config::Settings::default().plugin_limits()
    }
}
