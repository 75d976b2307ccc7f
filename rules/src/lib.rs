//! nudge's domain core: CloudEvents, the rule model, the trigger index and the sandboxed Rhai
//! evaluator.
//!
//! Everything here is pure: no NATS, no HTTP, no clock (callers pass the time), no file system. The runtime feeds events
//! in and publishes the [`Action`]s that come out; tests and `nudge rule test` do the same without
//! any server.

#![forbid(unsafe_code)]

pub mod action;
pub mod calendar;
pub mod context;
pub mod decide;
pub mod duration;
pub mod event;
pub mod experiment;
pub mod file;
pub mod partition;
pub mod policy;
pub mod profile;
pub mod rule;
pub mod ruleset;
pub mod sandbox;
pub mod schema;
pub mod simulate;
pub mod state;
pub mod trigger;
pub mod window;

pub use action::{Action, Channel};
pub use decide::{Decider, Decision, PluginOutcome, Trace};
pub use event::{CloudEvent, EventError};
pub use policy::Policy;
pub use profile::Profile;
pub use rule::{Rule, RuleError, RuleSpec};
pub use ruleset::{CompiledRule, Evaluation, RuleFailure, RuleSet};
pub use sandbox::{Limits, PluginCallError, PluginCalls, Sandbox};
pub use state::{ProfileState, StateLimits};
pub use trigger::{Pattern, TriggerIndex};
