//! The rule-language functions that read or change profile state: `count`, `last_seen`,
//! `since`, `set_attribute`, `after` and `cancel`.
//!
//! The profile's state is lent to a thread-local [`Context`] for the length of one event's
//! evaluation (evaluation never awaits, so it runs start to end on one thread). A rule's changes
//! are collected as [`Effects`] and applied only when the rule succeeds: a failing rule changes
//! nothing.

use std::cell::RefCell;

use rhai::{Dynamic, Engine, EvalAltResult, Map, Position};
use serde_json::Value;

use crate::calendar::rfc3339;
use crate::duration::parse_duration;
use crate::rule::validate_key;
use crate::state::{ProfileState, StateLimits, check_attribute, field_hash};

/// Raised by a function that hit a profile limit: the rule fails as a limit naming `setting`.
#[derive(Debug, Clone)]
pub struct LimitHit {
    pub message: String,
    pub setting: &'static str,
}

/// A follow-up a rule asked for with `after(delay, name, #{ unless, data })`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledTimer {
    pub name: String,
    pub delay_ms: i64,
    pub unless: Vec<String>,
    pub data: Value,
}

/// What one successful rule run changes in the profile state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    pub attributes: Vec<(String, Value)>,
    pub timers: Vec<ScheduledTimer>,
    pub cancels: Vec<String>,
}

pub(crate) struct Context {
    pub state: ProfileState,
    pub now_ms: i64,
    pub limits: StateLimits,
    pub effects: Effects,
}

thread_local! {
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Runs `f` with `state` readable by the rule functions; gives the state back.
pub(crate) fn with_state<T>(
    state: ProfileState,
    now_ms: i64,
    limits: &StateLimits,
    f: impl FnOnce() -> T,
) -> (T, ProfileState) {
    CONTEXT.set(Some(Context {
        state,
        now_ms,
        limits: limits.clone(),
        effects: Effects::default(),
    }));
    let result = f();
    let context = CONTEXT.take();
    (result, context.map(|c| c.state).unwrap_or_default())
}

/// Forgets the effects of a previous rule; called before each rule runs.
pub(crate) fn reset_effects() {
    CONTEXT.with_borrow_mut(|c| {
        if let Some(c) = c {
            c.effects = Effects::default();
        }
    });
}

pub(crate) fn take_effects() -> Effects {
    CONTEXT
        .with_borrow_mut(|c| c.as_mut().map(|c| std::mem::take(&mut c.effects)))
        .unwrap_or_default()
}

/// Applies a succeeded rule's effects to the lent state, so the next rule sees them.
pub(crate) fn with_context_mut<T>(f: impl FnOnce(&mut Context) -> T) -> Option<T> {
    CONTEXT.with_borrow_mut(|c| c.as_mut().map(f))
}

fn read<T>(f: impl FnOnce(&Context) -> T) -> Option<T> {
    CONTEXT.with_borrow(|c| c.as_ref().map(f))
}

fn error(message: String) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(message.into(), Position::NONE))
}

fn limit(message: String, setting: &'static str) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(LimitHit { message, setting }),
        Position::NONE,
    ))
}

fn millis(function: &str, text: &str) -> Result<i64, Box<EvalAltResult>> {
    parse_duration(text)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .map_err(|m| error(format!("{function}: {m}")))
}

fn count(event_type: &str, window: &str, filter: Option<Map>) -> Result<i64, Box<EvalAltResult>> {
    let window_ms = millis("count", window)?;
    let hashes: Vec<u32> = match filter {
        None => Vec::new(),
        Some(filter) => filter
            .iter()
            .map(|(k, v)| {
                let value: Value = rhai::serde::from_dynamic(v).unwrap_or(Value::Null);
                field_hash(k, &value).ok_or_else(|| {
                    error(format!(
                        "count: filter field `{k}` must be a string, number or bool"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let counted = read(|c| {
        if window_ms > c.limits.window_max_age_ms {
            return Err(limit(
                format!(
                    "count(\"{event_type}\", \"{window}\"): windows reach back at most {} s (profile_window_max_age_s)",
                    c.limits.window_max_age_ms / 1_000
                ),
                "profile_window_max_age_s",
            ));
        }
        Ok(c.state.count(event_type, window_ms, c.now_ms, &hashes))
    });
    counted.unwrap_or(Ok(0))
}

fn last_seen_ms(event_type: &str) -> Option<(i64, i64)> {
    read(|c| {
        c.state
            .last_seen_ms
            .get(event_type)
            .map(|seen| (*seen, c.now_ms))
    })
    .flatten()
}

fn schedule(delay: &str, name: &str, options: Map) -> Result<(), Box<EvalAltResult>> {
    let delay_ms = millis("after", delay)?;
    validate_key("name", name).map_err(|e| error(format!("after: timer {e}")))?;
    let mut unless = Vec::new();
    let mut data = Value::Object(Default::default());
    for (key, value) in options {
        match key.as_str() {
            "unless" => {
                let types: Value = rhai::serde::from_dynamic(&value).unwrap_or(Value::Null);
                unless = match types {
                    Value::String(t) => vec![t],
                    Value::Array(items) => items
                        .into_iter()
                        .map(|t| match t {
                            Value::String(t) => Ok(t),
                            _ => Err(error("after: `unless` lists event types".into())),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(error("after: `unless` lists event types".into())),
                };
                for pattern in &unless {
                    crate::trigger::Pattern::parse(pattern)
                        .map_err(|m| error(format!("after: unless: {m}")))?;
                }
            }
            "data" => {
                data = rhai::serde::from_dynamic(&value)
                    .map_err(|e| error(format!("after: `data` is not JSON: {e}")))?;
            }
            other => {
                return Err(error(format!(
                    "after: unknown option `{other}` (use `unless` and `data`)"
                )));
            }
        }
    }
    let outcome = with_context_mut(|c| {
        let pending = c.state.timers.len() + c.effects.timers.len();
        let replaces = c.state.timers.contains_key(name);
        if !replaces && pending >= c.limits.max_timers {
            return Err(limit(
                format!(
                    "after(\"{delay}\", \"{name}\"): a profile may have {} timers pending (profile_max_timers)",
                    c.limits.max_timers
                ),
                "profile_max_timers",
            ));
        }
        c.effects.timers.push(ScheduledTimer {
            name: name.to_owned(),
            delay_ms,
            unless: unless.clone(),
            data: data.clone(),
        });
        Ok(())
    });
    outcome.unwrap_or(Ok(()))
}

/// Registers the stateful functions of the rule language.
pub(crate) fn register(engine: &mut Engine) {
    engine.register_fn("count", |event_type: &str, window: &str| {
        count(event_type, window, None)
    });
    engine.register_fn("count", |event_type: &str, window: &str, filter: Map| {
        count(event_type, window, Some(filter))
    });
    engine.register_fn("last_seen", |event_type: &str| -> Dynamic {
        last_seen_ms(event_type).map_or(Dynamic::UNIT, |(seen, _)| rfc3339(seen).into())
    });
    engine.register_fn("since", |event_type: &str| -> Dynamic {
        last_seen_ms(event_type).map_or(Dynamic::UNIT, |(seen, now)| {
            Dynamic::from_int((now - seen) / 1_000)
        })
    });
    engine.register_fn(
        "set_attribute",
        |name: &str, value: Dynamic| -> Result<(), Box<EvalAltResult>> {
            let value: Value = rhai::serde::from_dynamic(&value)
                .map_err(|e| error(format!("set_attribute(\"{name}\"): not JSON: {e}")))?;
            let checked = with_context_mut(|c| {
                check_attribute(&c.state.profile.attributes, name, &value, &c.limits).map_err(
                    |m| {
                        let setting = if m.contains("profile_max_attributes") {
                            "profile_max_attributes"
                        } else {
                            "profile_max_attribute_bytes"
                        };
                        limit(format!("set_attribute: {m}"), setting)
                    },
                )?;
                c.effects.attributes.push((name.to_owned(), value.clone()));
                Ok(())
            });
            checked.unwrap_or(Ok(()))
        },
    );
    engine.register_fn("after", |delay: &str, name: &str| {
        schedule(delay, name, Map::new())
    });
    engine.register_fn("after", schedule);
    engine.register_fn("cancel", |name: &str| {
        with_context_mut(|c| c.effects.cancels.push(name.to_owned()));
    });
}
