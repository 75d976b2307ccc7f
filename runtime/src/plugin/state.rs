//! What a plugin instance's store holds: its WASI context (empty: no files, env, network or stdio), its
//! resource limiter, its configuration and the log lines it wrote. Implements the host imports
//! of `sdk/wit/plugin.wit` (earlier versions adapt to these in [`super::contract`]).

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::PluginLimits;
use super::contract::current::nudge::plugin::{host, types};

pub use types::Level;

/// Longest log line kept from a plugin.
const MAX_LOG_LINE_BYTES: usize = 2_048;

/// Memory, table and instance bounds of one call, and the peak memory it reached.
pub struct CallLimiter {
    max_memory_bytes: usize,
    max_table_elements: usize,
    max_instances: usize,
    pub peak_memory_bytes: usize,
    /// A growth past `max_memory_bytes` was refused: a trap that follows is the memory cap's.
    pub memory_refused: bool,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.memory_refused = true;
            return Ok(false);
        }
        self.peak_memory_bytes = self.peak_memory_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_instances * 4
    }

    fn memories(&self) -> usize {
        self.max_instances
    }
}

pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: CallLimiter,
    config: Arc<str>,
    max_log_lines: usize,
    pub logs: Vec<(Level, String)>,
}

impl CallState {
    pub fn new(limits: &PluginLimits, config: Arc<str>) -> CallState {
        CallState {
            // Nothing granted: no preopened dirs, no env or args, stdio closed or discarded.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter: CallLimiter {
                max_memory_bytes: limits.max_memory_bytes,
                max_table_elements: limits.max_table_elements,
                max_instances: limits.max_instances,
                peak_memory_bytes: 0,
                memory_refused: false,
            },
            config,
            max_log_lines: limits.max_log_lines,
            logs: Vec::new(),
        }
    }
}

impl CallState {
    /// Forgets what the previous call on this instance left behind.
    pub fn begin_call(&mut self) {
        self.limiter.memory_refused = false;
        self.logs.clear();
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for CallState {}

impl host::Host for CallState {
    fn log(&mut self, level: Level, mut message: String) {
        if self.logs.len() >= self.max_log_lines {
            return;
        }
        if message.len() > MAX_LOG_LINE_BYTES {
            let mut end = MAX_LOG_LINE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        self.logs.push((level, message));
    }

    fn config(&mut self) -> String {
        self.config.to_string()
    }
}
