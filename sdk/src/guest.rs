//! The bridge between the generated WIT bindings and the typed API: converts what crosses the
//! component boundary, and stands in for the host when a plugin runs natively in its tests.

use std::marker::PhantomData;

use serde_json::{Map, Value};

use crate::bindings::nudge::plugin::types as wit;
use crate::{Action, Channel, Event, Plugin, Profile};

pub use wit::Level;

/// Exports a [`Plugin`] through the generated `Guest` trait; see [`crate::export_plugin!`].
pub struct Adapter<P>(PhantomData<P>);

impl<P: Plugin> crate::bindings::Guest for Adapter<P> {
    fn handle(event: wit::Event, profile: wit::Profile) -> Result<Vec<wit::Action>, String> {
        let event = Event {
            data: serde_json::from_str(&event.data).map_err(|e| format!("event data: {e}"))?,
            id: event.id,
            source: event.source,
            event_type: event.type_,
            subject: event.subject,
            time: event.time,
        };
        let profile = Profile {
            id: profile.id,
            timezone: profile.timezone,
            attributes: object(&profile.attributes)?,
            consent: object(&profile.consent)?,
        };
        let actions = P::handle(&event, &profile).map_err(|e| e.0)?;
        Ok(actions.into_iter().map(to_wit).collect())
    }

    fn call(input: String) -> Result<String, String> {
        let input: Value = serde_json::from_str(&input).map_err(|e| format!("input: {e}"))?;
        let output = P::call(input).map_err(|e| e.0)?;
        Ok(output.to_string())
    }
}

fn object(json: &str) -> Result<Map<String, Value>, String> {
    // Most profiles carry no consent flags and many no attributes: skip the parser for `{}`.
    if json == "{}" {
        return Ok(Map::new());
    }
    match serde_json::from_str(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err("profile field is not a JSON object".to_owned()),
        Err(e) => Err(format!("profile: {e}")),
    }
}

fn to_wit(action: Action) -> wit::Action {
    wit::Action {
        channel: match action.channel {
            Channel::Push => wit::Channel::Push,
            Channel::Personalize => wit::Channel::Personalize,
            Channel::Price => wit::Channel::Price,
            Channel::Webhook => wit::Channel::Webhook,
            Channel::Email => wit::Channel::Email,
        },
        target: action.target,
        payload: Value::Object(action.payload).to_string(),
    }
}

#[cfg(target_family = "wasm")]
pub fn log(level: Level, message: &str) {
    crate::bindings::nudge::plugin::host::log(level, message);
}

#[cfg(target_family = "wasm")]
pub fn config() -> Value {
    serde_json::from_str(&crate::bindings::nudge::plugin::host::config())
        .unwrap_or_else(|_| Value::Object(Map::new()))
}

#[cfg(target_family = "wasm")]
pub fn set_native_config(_config: Value) {}

#[cfg(not(target_family = "wasm"))]
thread_local! {
    static NATIVE_CONFIG: std::cell::RefCell<Value> = std::cell::RefCell::new(Value::Object(Map::new()));
}

#[cfg(not(target_family = "wasm"))]
pub fn log(level: Level, message: &str) {
    eprintln!("[{level:?}] {message}");
}

#[cfg(not(target_family = "wasm"))]
pub fn config() -> Value {
    NATIVE_CONFIG.with_borrow(Clone::clone)
}

#[cfg(not(target_family = "wasm"))]
pub fn set_native_config(config: Value) {
    NATIVE_CONFIG.set(config);
}
