//! Helpers for a plugin's native unit tests (`cargo test`), where there is no host.

use serde_json::Value;

/// Sets what [`crate::config()`] returns natively, for this thread.
pub fn set_config(config: Value) {
    crate::guest::set_native_config(config);
}
