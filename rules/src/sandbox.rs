//! The Rhai sandbox: one engine with hard limits, the rule-language functions, and the mapping of
//! Rhai errors to failures that name the limit that was hit.
//!
//! Actions and `print` output are collected in a thread-local sink. Evaluation never awaits, so
//! one evaluation runs start to end on one thread and the sink cannot mix two evaluations.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use rhai::{AST, Dynamic, Engine, EvalAltResult, Map, Position, Scope};
use serde::{Deserialize, Serialize};

use crate::action::{Channel, shape_payload};
use crate::event::CloudEvent;
use crate::profile::Profile;
use crate::rule::RuleError;

/// Bounds on one rule's evaluation of one event. Every field is a documented setting
/// (`NUDGE_RULE_*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Rhai operations (roughly: expressions evaluated) per evaluation.
    pub max_operations: u64,
    /// Nested function calls.
    pub max_call_depth: usize,
    /// Expression nesting, checked when the script compiles.
    pub max_expr_depth: usize,
    pub max_string_bytes: usize,
    pub max_array_len: usize,
    pub max_map_len: usize,
    /// Variables alive at once.
    pub max_variables: usize,
    /// Functions a script may define.
    pub max_functions: usize,
    /// Actions one rule may fire for one event.
    pub max_actions: usize,
    /// Wall-clock bound, for what the operation count does not see (large native calls).
    pub deadline_ms: u64,
    pub max_script_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 100_000,
            max_call_depth: 32,
            max_expr_depth: 64,
            max_string_bytes: 16 * 1024,
            max_array_len: 1_024,
            max_map_len: 256,
            max_variables: 256,
            max_functions: 64,
            max_actions: 16,
            deadline_ms: 20,
            max_script_bytes: 64 * 1024,
        }
    }
}

/// Why one rule failed on one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A limit was hit; the payload names the setting.
    Limit(&'static str),
    /// The script raised an error (bad type, missing function, `throw`).
    Error,
}

impl FailureKind {
    /// `limit` or `error`, as the decision trace and metrics label it.
    pub fn reason(self) -> &'static str {
        match self {
            FailureKind::Limit(_) => "limit",
            FailureKind::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunFailure {
    pub kind: FailureKind,
    pub message: String,
    pub line: Option<usize>,
}

/// What a successful evaluation of one rule produced.
#[derive(Debug, Default)]
pub struct RunOutput {
    pub actions: Vec<(Channel, Dynamic)>,
    pub logs: Vec<String>,
    /// Profile changes and timers the rule asked for, applied only because it succeeded.
    pub effects: crate::context::Effects,
}

#[derive(Default)]
struct Sink {
    actions: Vec<(Channel, Map)>,
    logs: Vec<String>,
    max_actions: usize,
    max_map_len: usize,
    deadline: Option<Instant>,
}

thread_local! {
    static SINK: RefCell<Sink> = RefCell::new(Sink::default());
}

const MAX_LOG_LINES: usize = 32;
const DEADLINE_CHECK_EVERY_OPS: u64 = 1_024;

/// Plugins a rule may call as functions: `plugin(name, input)`. The runtime implements it over
/// its WebAssembly host; this crate only sees JSON in and out.
pub trait PluginCalls: Send + Sync {
    /// Runs plugin `name` with `input`. `rule_deadline` is when the calling rule's
    /// `rule_deadline_ms` runs out: the call must end by then, whatever the plugin's own limit.
    fn call(
        &self,
        name: &str,
        input: serde_json::Value,
        rule_deadline: Option<Instant>,
    ) -> Result<serde_json::Value, PluginCallError>;
}

/// A failed `plugin(name, input)`: the rule fails with this message, as a limit failure when the
/// plugin hit one of its limits.
#[derive(Debug, Clone)]
pub struct PluginCallError {
    pub message: String,
    pub limit: Option<&'static str>,
}

pub struct Sandbox {
    engine: Engine,
    limits: Limits,
}

impl Sandbox {
    pub fn new(limits: Limits) -> Sandbox {
        Sandbox::with_plugins(limits, None)
    }

    /// A sandbox whose rules can call `plugins`; without them `plugin(..)` fails the rule.
    pub fn with_plugins(
        limits: Limits,
        plugins: Option<std::sync::Arc<dyn PluginCalls>>,
    ) -> Sandbox {
        let mut engine = Engine::new();
        engine
            .set_max_operations(limits.max_operations)
            .set_max_call_levels(limits.max_call_depth)
            .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
            .set_max_string_size(limits.max_string_bytes)
            .set_max_array_size(limits.max_array_len)
            .set_max_map_size(limits.max_map_len)
            .set_max_variables(limits.max_variables)
            .set_max_functions(limits.max_functions)
            .set_strict_variables(true);
        engine.disable_symbol("eval");
        engine.on_print(|text| log_line(text.to_owned()));
        engine
            .on_debug(|text, _, pos| log_line(format!("line {}: {text}", pos.line().unwrap_or(0))));
        engine.on_progress(|ops| {
            if ops % DEADLINE_CHECK_EVERY_OPS != 0 {
                return None;
            }
            let expired = SINK.with_borrow(|s| s.deadline.is_some_and(|d| Instant::now() >= d));
            expired.then(|| Dynamic::from("deadline"))
        });
        register_actions(&mut engine);
        crate::context::register(&mut engine);
        engine.register_fn("plugin", move |name: &str, input: Dynamic| {
            call_plugin(plugins.as_deref(), name, input)
        });
        Sandbox { engine, limits }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles a script once; the AST is then evaluated for every matching event.
    pub fn compile(&self, script: &str) -> Result<AST, RuleError> {
        if script.len() > self.limits.max_script_bytes {
            return Err(RuleError::invalid(
                "script",
                format!(
                    "is {} bytes; the limit is {} (rule_max_script_bytes)",
                    script.len(),
                    self.limits.max_script_bytes
                ),
            ));
        }
        let scope = Self::declared_scope();
        self.engine
            .compile_with_scope(&scope, script)
            .map_err(|e| RuleError::Compile {
                line: e.1.line().unwrap_or(0),
                column: e.1.position().unwrap_or(0),
                message: e.0.to_string(),
            })
    }

    /// What the rule language defines before the script runs; strict variables make any other
    /// free name a compile error with a position.
    fn declared_scope() -> Scope<'static> {
        let mut scope = Scope::new();
        scope.push_constant("event", Dynamic::UNIT);
        scope.push_constant("profile", Dynamic::UNIT);
        scope
    }

    /// Builds the scope every rule matching `event` runs in; built once per event.
    pub fn scope_for(event: &CloudEvent, profile: &Profile) -> Scope<'static> {
        let mut event_map = Map::new();
        event_map.insert("type".into(), event.event_type.as_str().into());
        event_map.insert("subject".into(), event.subject.as_str().into());
        event_map.insert("id".into(), event.id.as_str().into());
        event_map.insert("source".into(), event.source.as_str().into());
        event_map.insert(
            "time".into(),
            event.time.as_deref().map_or(Dynamic::UNIT, Into::into),
        );
        event_map.insert("data".into(), json_to_dynamic(&event.data));
        let mut scope = Scope::new();
        scope.push_constant("event", Dynamic::from_map(event_map));
        scope.push_constant("profile", profile_value(profile));
        scope
    }

    /// Runs one compiled script in `scope`, leaving the scope as it found it.
    pub fn run(&self, scope: &mut Scope<'static>, ast: &AST) -> Result<RunOutput, RunFailure> {
        let scope_len = scope.len();
        SINK.with_borrow_mut(|s| {
            *s = Sink {
                max_actions: self.limits.max_actions,
                max_map_len: self.limits.max_map_len,
                deadline: Some(Instant::now() + Duration::from_millis(self.limits.deadline_ms)),
                ..Sink::default()
            }
        });
        crate::context::reset_effects();
        let result = self.engine.run_ast_with_scope(scope, ast);
        scope.rewind(scope_len);
        let sink = SINK.take();
        if let Err(err) = result {
            return Err(self.failure(*err));
        }
        let actions = sink
            .actions
            .into_iter()
            .map(|(channel, map)| (channel, Dynamic::from_map(map)))
            .collect();
        Ok(RunOutput {
            actions,
            logs: sink.logs,
            effects: crate::context::take_effects(),
        })
    }

    fn failure(&self, err: EvalAltResult) -> RunFailure {
        let line = err.position().line();
        let root = root_cause(err);
        let l = &self.limits;
        let (kind, message) = match &root {
            EvalAltResult::ErrorTooManyOperations(_) => (
                FailureKind::Limit("rule_max_operations"),
                format!(
                    "exceeded {} operations (rule_max_operations)",
                    l.max_operations
                ),
            ),
            EvalAltResult::ErrorStackOverflow(_) => (
                FailureKind::Limit("rule_max_call_depth"),
                format!(
                    "exceeded call depth {} (rule_max_call_depth)",
                    l.max_call_depth
                ),
            ),
            EvalAltResult::ErrorTooManyVariables(_) => (
                FailureKind::Limit("rule_max_variables"),
                format!(
                    "exceeded {} variables (rule_max_variables)",
                    l.max_variables
                ),
            ),
            EvalAltResult::ErrorTerminated(..) => (
                FailureKind::Limit("rule_deadline_ms"),
                format!("ran longer than {} ms (rule_deadline_ms)", l.deadline_ms),
            ),
            EvalAltResult::ErrorDataTooLarge(what, _) => {
                let setting = if what.contains("string") || what.contains("String") {
                    "rule_max_string_bytes"
                } else if what.contains("rray") {
                    "rule_max_array_len"
                } else {
                    "rule_max_map_len"
                };
                (
                    FailureKind::Limit(setting),
                    format!("{what} exceeds {setting}"),
                )
            }
            EvalAltResult::ErrorRuntime(value, _) if value.is::<ActionLimit>() => (
                FailureKind::Limit("rule_max_actions"),
                format!(
                    "fired more than {} actions (rule_max_actions)",
                    l.max_actions
                ),
            ),
            EvalAltResult::ErrorRuntime(value, _) if value.is::<crate::context::LimitHit>() => {
                let hit = value.clone_cast::<crate::context::LimitHit>();
                (FailureKind::Limit(hit.setting), hit.message)
            }
            EvalAltResult::ErrorRuntime(value, _) if value.is::<PluginCallError>() => {
                let failed = value.clone_cast::<PluginCallError>();
                let kind = failed.limit.map_or(FailureKind::Error, FailureKind::Limit);
                (kind, failed.message)
            }
            other => (FailureKind::Error, other.to_string()),
        };
        RunFailure {
            kind,
            message,
            line,
        }
    }
}

/// The profile as scripts see it (`profile.id`, `.attributes`, `.consent`, `.timezone`).
pub(crate) fn profile_value(profile: &Profile) -> Dynamic {
    let json_map = |map: &serde_json::Map<String, serde_json::Value>| {
        Dynamic::from_map(
            map.iter()
                .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
                .collect(),
        )
    };
    let mut value = Map::new();
    value.insert("id".into(), profile.id.as_str().into());
    value.insert("attributes".into(), json_map(&profile.attributes));
    value.insert("consent".into(), json_map(&profile.consent));
    value.insert("timezone".into(), profile.timezone.as_str().into());
    Dynamic::from_map(value)
}

/// JSON to a Rhai value, directly: the serde route through `rhai::serde::to_dynamic` costs about
/// twice as much, and this runs for every event that triggers a rule.
pub fn json_to_dynamic(value: &serde_json::Value) -> Dynamic {
    use serde_json::Value;
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => Dynamic::from_array(items.iter().map(json_to_dynamic).collect()),
        Value::Object(fields) => Dynamic::from_map(
            fields
                .iter()
                .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
                .collect(),
        ),
    }
}

fn root_cause(err: EvalAltResult) -> EvalAltResult {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => root_cause(*inner),
        other => other,
    }
}

fn log_line(line: String) {
    SINK.with_borrow_mut(|s| {
        if s.logs.len() < MAX_LOG_LINES {
            s.logs.push(line);
        }
    });
}

fn call_plugin(
    plugins: Option<&dyn PluginCalls>,
    name: &str,
    input: Dynamic,
) -> Result<Dynamic, Box<EvalAltResult>> {
    let fail = |message: String, limit| {
        Box::new(EvalAltResult::ErrorRuntime(
            Dynamic::from(PluginCallError { message, limit }),
            Position::NONE,
        ))
    };
    let Some(plugins) = plugins else {
        return Err(fail(
            format!("plugin(\"{name}\"): plugins are not available here"),
            None,
        ));
    };
    let input: serde_json::Value = rhai::serde::from_dynamic(&input)
        .map_err(|e| fail(format!("plugin(\"{name}\"): input is not JSON: {e}"), None))?;
    let rule_deadline = SINK.with_borrow(|s| s.deadline);
    match plugins.call(name, input, rule_deadline) {
        Ok(output) => Ok(json_to_dynamic(&output)),
        Err(error) => Err(fail(
            format!("plugin(\"{name}\") failed: {}", error.message),
            error.limit,
        )),
    }
}

/// Marker raised when a rule fires more than `max_actions`.
#[derive(Debug, Clone)]
struct ActionLimit;

fn emit(channel: Channel, payload: Map) -> Result<(), Box<EvalAltResult>> {
    SINK.with_borrow_mut(|s| {
        if payload.len() > s.max_map_len {
            return Err(Box::new(EvalAltResult::ErrorDataTooLarge(
                "Size of object map".into(),
                Position::NONE,
            )));
        }
        if s.actions.len() >= s.max_actions {
            return Err(Box::new(EvalAltResult::ErrorRuntime(
                Dynamic::from(ActionLimit),
                Position::NONE,
            )));
        }
        s.actions.push((channel, payload));
        Ok(())
    })
}

/// The action functions of the rule language (PRODUCT.md, "The rule language").
fn register_actions(engine: &mut Engine) {
    let shaped = |channel: Channel, target: Option<Dynamic>, payload| {
        let payload = shape_payload(channel, target, payload);
        channel.check_payload(&payload)?;
        emit(channel, payload)
    };
    engine.register_fn("push", move |payload: Map| {
        shaped(Channel::Push, None, payload)
    });
    engine.register_fn("personalize", move |slot: &str, payload: Map| {
        shaped(Channel::Personalize, Some(slot.into()), payload)
    });
    engine.register_fn("price", move |product_id: Dynamic, payload: Map| {
        shaped(Channel::Price, Some(product_id), payload)
    });
    engine.register_fn("webhook", move |name: &str, payload: Map| {
        shaped(Channel::Webhook, Some(name.into()), payload)
    });
    engine.register_fn("email", move |payload: Map| {
        shaped(Channel::Email, None, payload)
    });
}
