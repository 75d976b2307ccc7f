//! nudge's domain core: CloudEvents, the rule model, the trigger index and the sandboxed Rhai
//! evaluator.
//!
//! Everything here is pure: no NATS, no HTTP, no clock, no file system. The runtime feeds events
//! in and publishes the [`Action`]s that come out; tests and `nudge rule test` do the same without
//! any server.

#![forbid(unsafe_code)]

pub mod action;
pub mod duration;
pub mod event;
pub mod file;
pub mod profile;
pub mod rule;
pub mod ruleset;
pub mod sandbox;
pub mod trigger;

pub use action::{Action, Channel};
pub use event::{CloudEvent, EventError};
pub use profile::Profile;
pub use rule::{Rule, RuleError, RuleSpec};
pub use ruleset::{CompiledRule, Evaluation, RuleFailure, RuleSet};
pub use sandbox::{Limits, PluginCallError, PluginCalls, Sandbox};
pub use trigger::{Pattern, TriggerIndex};
