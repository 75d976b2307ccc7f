//! Warm instances of one plugin version. Instantiating a component costs far more than calling
//! it (fresh pages fault in, dirty ones are released), so an instance that finished a call
//! cleanly goes back to an idle list and serves the next call of the same version. It is dropped
//! instead after any failure (a trap may leave it inconsistent) and after
//! `plugin_instance_max_calls` calls, which bounds what a guest can carry from one event to the
//! next; `plugin_instance_max_calls = 1` gives every call a fresh instance.

use std::sync::{Arc, Mutex};

use wasmtime::Store;

use super::contract::Bound;
use super::host::Compiled;
use super::state::CallState;

/// An instantiated plugin with its store, ready for its next call.
pub struct Warm {
    pub(super) store: Store<CallState>,
    pub(super) plugin: Bound,
    pub(super) calls: u64,
}

/// The code, configuration and idle instances of one loaded plugin version.
pub struct Instances {
    pub code: Arc<Compiled>,
    pub config: Arc<str>,
    idle: Mutex<Vec<Warm>>,
}

impl Instances {
    pub fn new(code: Arc<Compiled>, config: Arc<str>) -> Instances {
        Instances {
            code,
            config,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn take(&self) -> Option<Warm> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Keeps `warm` for a later call unless `max_idle` instances already wait.
    pub(super) fn give_back(&self, warm: Warm, max_idle: usize) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < max_idle {
            idle.push(warm);
        }
    }
}
