//! Write [nudge](https://github.com/nudge-dev/nudge) plugins in Rust.
//!
//! A plugin is a WebAssembly component that nudge runs for every event of the types it subscribes
//! to (and whenever a rule calls `plugin("<name>", input)`). This crate hides the WIT contract in
//! `sdk/wit/plugin.wit` behind typed [`Event`], [`Profile`] and [`Action`] values and one
//! [`Plugin`] trait; [`export_plugin!`] makes your type the component's entry point.
//!
//! # A complete plugin
//!
//! ```
//! use nudge_sdk::{Action, Event, Plugin, Profile, Result, json};
//!
//! struct Welcome;
//!
//! impl Plugin for Welcome {
//!     fn handle(event: &Event, profile: &Profile) -> Result<Vec<Action>> {
//!         if event.event_type != "user.registered" || !profile.consents_to("push") {
//!             return Ok(vec![]);
//!         }
//!         let name = event.data["name"].as_str().unwrap_or("there");
//!         let greeting = nudge_sdk::config()["greeting"].as_str().unwrap_or("Welcome").to_owned();
//!         Ok(vec![Action::push(json!({ "title": format!("{greeting}, {name}!") }))])
//!     }
//! }
//!
//! nudge_sdk::export_plugin!(Welcome);
//!
//! // Natively (`cargo test`), handlers are plain functions:
//! nudge_sdk::testing::set_config(json!({ "greeting": "Hello" }));
//! let event = Event::new("user.registered", "user-42", json!({ "name": "Ada" }));
//! let actions = Welcome::handle(&event, &Profile::new("user-42")).unwrap();
//! assert_eq!(actions[0].payload["title"], "Hello, Ada!");
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type `cdylib`), try it
//! with `nudge plugin test target/wasm32-wasip2/release/<name>.wasm --event event.json`, and
//! upload it with `PUT /api/plugins/<name>`. `nudge plugin new <name>` scaffolds all of this.
//!
//! # What a plugin can reach
//!
//! Only what the host grants: [`config()`] (the plugin's configuration from its manifest) and
//! [`log`]. No files, network, environment or clock. Every call has a deadline, a memory cap and
//! a bounded stack. nudge reuses an instance for a bounded number of successful calls (the
//! `plugin_instance_max_calls` setting) and drops it after any failure: do not rely on state
//! surviving from one call to the next, and do not let it leak from one profile to another.

#![deny(unsafe_code)]

mod action;
mod event;
#[doc(hidden)]
pub mod guest;
pub mod log;
pub mod testing;

pub use action::{Action, Channel};
pub use event::{Event, Profile};
pub use serde_json::{Map, Value, json};

/// The generated WIT bindings. Plugins use the types above instead.
#[doc(hidden)]
#[allow(unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_guest",
        default_bindings_module: "nudge_sdk::bindings",
    });
}

/// Why a plugin refused an event or a call; nudge logs it with the plugin, the event and this
/// message, and counts it in `nudge_plugin_errors_total{reason="error"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error(message.to_owned())
    }
}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error(message)
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Error {
        Error(error.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A plugin. Implement [`Plugin::handle`] to act on events, [`Plugin::call`] to be callable from
/// rules, or both; then `nudge_sdk::export_plugin!(YourType);`.
pub trait Plugin {
    /// The actions for one event (none is a fine answer).
    fn handle(event: &Event, profile: &Profile) -> Result<Vec<Action>> {
        let _ = (event, profile);
        Ok(Vec::new())
    }

    /// The result of `plugin("<name>", input)` in a rule.
    fn call(input: Value) -> Result<Value> {
        let _ = input;
        Err(Error::new("this plugin has no call function"))
    }
}

/// The plugin's configuration (a JSON object; `{}` when its manifest sets none). Natively it is
/// what [`testing::set_config`] set.
pub fn config() -> Value {
    guest::config()
}

/// Makes `$plugin` (a type implementing [`Plugin`]) the component's entry point.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        type __NudgeExportedPlugin = $crate::guest::Adapter<$plugin>;
        $crate::bindings::export_guest!(__NudgeExportedPlugin with_types_in $crate::bindings);
    };
}
