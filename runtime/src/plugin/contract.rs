//! The versions of the plugin contract the host runs: the current `sdk/wit/plugin.wit` and the
//! earlier `sdk/wit/0.1.0/plugin.wit`, each with its generated bindings. The rest of the host
//! speaks the current version; a plugin built against an earlier one is adapted here, at the
//! edge, so an upgrade of nudge never stops a plugin that already runs.

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::state::CallState;

/// Bindings of the current contract, `nudge:plugin@0.2.0`.
pub mod current {
    wasmtime::component::bindgen!({ path: "../sdk/wit", world: "plugin" });
}

/// Bindings of `nudge:plugin@0.1.0`: the same world without the `email` channel.
pub mod v0_1 {
    wasmtime::component::bindgen!({ path: "../sdk/wit/0.1.0", world: "plugin" });
}

pub use current::nudge::plugin::types::{Action, Channel, Event, Level, Profile};

use v0_1::nudge::plugin::types as old;

/// A plugin linked against the host, ready to instantiate, by the contract version it was built
/// against.
pub enum Pre {
    Current(current::PluginPre<CallState>),
    V0_1(v0_1::PluginPre<CallState>),
}

/// An instance of a plugin, by contract version.
pub enum Bound {
    Current(current::Plugin),
    V0_1(v0_1::Plugin),
}

/// Grants the `host` interface of every contract version.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    current::Plugin::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    v0_1::Plugin::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    Ok(())
}

impl Pre {
    /// Type-checks the plugin's exports against each version, newest first.
    pub fn new(instance_pre: InstancePre<CallState>) -> Result<Pre, String> {
        let newest = match current::PluginPre::new(instance_pre.clone()) {
            Ok(pre) => return Ok(Pre::Current(pre)),
            Err(error) => error,
        };
        match v0_1::PluginPre::new(instance_pre) {
            Ok(pre) => Ok(Pre::V0_1(pre)),
            Err(_) => Err(format!(
                "does not implement the nudge:plugin/plugin world (handle and call) of version \
                 0.2.0 or 0.1.0: {newest:#}"
            )),
        }
    }

    /// The contract version the plugin was built against.
    pub fn version(&self) -> &'static str {
        match self {
            Pre::Current(_) => "0.2.0",
            Pre::V0_1(_) => "0.1.0",
        }
    }

    pub fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Bound> {
        Ok(match self {
            Pre::Current(pre) => Bound::Current(pre.instantiate(store)?),
            Pre::V0_1(pre) => Bound::V0_1(pre.instantiate(store)?),
        })
    }
}

impl Bound {
    pub fn call_handle(
        &self,
        store: &mut Store<CallState>,
        event: &Event,
        profile: &Profile,
    ) -> wasmtime::Result<Result<Vec<Action>, String>> {
        match self {
            Bound::Current(plugin) => plugin.call_handle(store, event, profile),
            Bound::V0_1(plugin) => {
                let event = old::Event {
                    id: event.id.clone(),
                    source: event.source.clone(),
                    type_: event.type_.clone(),
                    subject: event.subject.clone(),
                    time: event.time.clone(),
                    data: event.data.clone(),
                };
                let profile = old::Profile {
                    id: profile.id.clone(),
                    timezone: profile.timezone.clone(),
                    attributes: profile.attributes.clone(),
                    consent: profile.consent.clone(),
                };
                let actions = plugin.call_handle(store, &event, &profile)?;
                Ok(actions.map(|actions| actions.into_iter().map(from_v0_1).collect()))
            }
        }
    }

    pub fn call_call(
        &self,
        store: &mut Store<CallState>,
        input_json: &String,
    ) -> wasmtime::Result<Result<String, String>> {
        match self {
            Bound::Current(plugin) => plugin.call_call(store, input_json),
            Bound::V0_1(plugin) => plugin.call_call(store, input_json),
        }
    }
}

fn from_v0_1(action: old::Action) -> Action {
    let channel = match action.channel {
        old::Channel::Push => Channel::Push,
        old::Channel::Personalize => Channel::Personalize,
        old::Channel::Price => Channel::Price,
        old::Channel::Webhook => Channel::Webhook,
    };
    Action {
        channel,
        target: action.target,
        payload: action.payload,
    }
}

impl old::Host for CallState {}

impl v0_1::nudge::plugin::host::Host for CallState {
    fn log(&mut self, level: old::Level, message: String) {
        let level = match level {
            old::Level::Trace => Level::Trace,
            old::Level::Debug => Level::Debug,
            old::Level::Info => Level::Info,
            old::Level::Warn => Level::Warn,
            old::Level::Error => Level::Error,
        };
        current::nudge::plugin::host::Host::log(self, level, message);
    }

    fn config(&mut self) -> String {
        current::nudge::plugin::host::Host::config(self)
    }
}
