//! The wasmtime host. One [`Engine`] per process; a plugin is compiled once per content hash
//! (and cached on disk across restarts) and pre-instantiated against the capabilities nudge
//! grants; instances come from the pooling allocator and are reused for a bounded number of
//! clean calls ([`Instances`]). Every call has an epoch deadline, a memory cap, a bounded stack,
//! table and instance limits and optional fuel. A call that breaks a limit fails alone, says
//! which limit, and its instance is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    Trap,
};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};

use super::PluginLimits;
use super::contract::{self, Bound, Pre};
use super::instances::{Instances, Warm};
use super::state::{CallState, Level};
use super::wasi_io::{Io, TokioFreeIo};

pub use contract::{
    Action as WitAction, Channel as WitChannel, Event as WitEvent, Profile as WitProfile,
};

/// How often the epoch advances; deadlines are whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);
/// The budget of a metered call when no `plugin_fuel` is set: large enough never to run out
/// before the deadline, small enough to stay exact in wasmtime's signed fuel counter.
const UNMETERED_FUEL: u64 = 1 << 60;
/// Core instances a component may bring (a Rust component has a handful).
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;

/// A plugin compiled and linked, ready to instantiate per call. Shared by every version with the
/// same code.
pub struct Compiled {
    pub sha256: String,
    pub(super) pre: Pre,
}

impl Compiled {
    /// The version of `nudge:plugin` the plugin was built against.
    pub fn contract_version(&self) -> &'static str {
        self.pre.version()
    }
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("sha256", &self.sha256)
            .field("contract", &self.pre.version())
            .finish()
    }
}

/// Why one call failed. `reason` labels `nudge_plugin_errors_total`; `setting` names the limit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PluginFailure {
    pub reason: &'static str,
    pub setting: Option<&'static str>,
    pub message: String,
}

impl PluginFailure {
    fn limit(reason: &'static str, setting: &'static str, message: String) -> PluginFailure {
        PluginFailure {
            reason,
            setting: Some(setting),
            message,
        }
    }

    fn error(reason: &'static str, message: String) -> PluginFailure {
        PluginFailure {
            reason,
            setting: None,
            message,
        }
    }
}

impl std::fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a call cost, whatever its outcome.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CallReport {
    pub wall_us: u64,
    /// `None` when fuel metering is off.
    pub fuel_consumed: Option<u64>,
    pub peak_memory_bytes: usize,
    pub logs: Vec<(String, String)>,
}

pub struct PluginHost {
    engine: Engine,
    linker: Linker<CallState>,
    limits: PluginLimits,
    metered: bool,
    compiled: Mutex<HashMap<String, Weak<Compiled>>>,
    _ticker: EpochTicker,
}

impl PluginHost {
    /// A host with `limits`. `metered` turns fuel accounting on even when `limits.fuel` is 0
    /// (for `nudge plugin test`, which reports the fuel a call used).
    pub fn new(limits: PluginLimits, metered: bool) -> anyhow::Result<PluginHost> {
        let metered = metered || limits.fuel > 0;
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(metered)
            .max_wasm_stack(limits.max_stack_bytes);
        let slots = limits.pool_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            .total_core_instances(slots * CORE_INSTANCES_PER_COMPONENT)
            .total_memories(slots * 2)
            .total_tables(slots * CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(2)
            .max_tables_per_component(CORE_INSTANCES_PER_COMPONENT)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .max_memory_size(limits.max_memory_bytes)
            .table_elements(limits.max_table_elements);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = &limits.cache_dir {
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            match Cache::new(cache) {
                Ok(cache) => {
                    config.cache(Some(cache));
                }
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "plugin code cache unavailable; compiling without it");
                }
            }
        }
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("starting the WebAssembly engine: {e:#}"))?;
        let mut linker = Linker::new(&engine);
        grant(&mut linker).map_err(|e| anyhow::anyhow!("linking the host capabilities: {e:#}"))?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(PluginHost {
            engine,
            linker,
            limits,
            metered,
            compiled: Mutex::new(HashMap::new()),
            _ticker: ticker,
        })
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// Compiles and links `wasm`, or says why it is not a plugin nudge can run: not a component,
    /// imports a capability the host does not grant, or does not export the `plugin` world.
    /// Code already compiled (same SHA-256) is shared.
    pub fn compile(&self, wasm: &[u8]) -> Result<Arc<Compiled>, String> {
        let sha256 = hex::encode(Sha256::digest(wasm));
        if let Some(found) = self.cached(&sha256) {
            return Ok(found);
        }
        let component = Component::new(&self.engine, wasm)
            .map_err(|e| format!("not a WebAssembly component nudge can compile: {e:#}"))?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| refused_imports(&self.engine, &component, &e))?;
        let pre = Pre::new(instance_pre)?;
        let compiled = Arc::new(Compiled {
            sha256: sha256.clone(),
            pre,
        });
        let mut cache = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, weak| weak.strong_count() > 0);
        cache.insert(sha256, Arc::downgrade(&compiled));
        Ok(compiled)
    }

    fn cached(&self, sha256: &str) -> Option<Arc<Compiled>> {
        let cache = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(sha256).and_then(Weak::upgrade)
    }

    /// Runs the plugin's `handle` export for one event.
    pub fn handle(
        &self,
        instances: &Instances,
        event: &WitEvent,
        profile: &WitProfile,
    ) -> (Result<Vec<WitAction>, PluginFailure>, CallReport) {
        let (result, report) = self.run(instances, None, |plugin, store| {
            let actions = plugin.call_handle(store, event, profile)?;
            Ok(actions.map(|actions| {
                let bytes: usize = actions
                    .iter()
                    .map(|a| a.payload.len() + a.target.as_ref().map_or(0, String::len))
                    .sum();
                (actions, bytes)
            }))
        });
        let max_actions = self.limits.max_actions;
        let result = result.and_then(|actions| {
            if actions.len() <= max_actions {
                return Ok(actions);
            }
            Err(PluginFailure::limit(
                "actions",
                "plugin_max_actions",
                format!(
                    "returned {} actions; the limit is {max_actions} (plugin_max_actions)",
                    actions.len()
                ),
            ))
        });
        (result, report)
    }

    /// Runs the plugin's `call` export: a rule's `plugin(name, input)`.
    pub fn call(
        &self,
        instances: &Instances,
        input_json: &str,
    ) -> (Result<String, PluginFailure>, CallReport) {
        self.call_until(instances, input_json, None)
    }

    /// Like [`PluginHost::call`], ending by `rule_deadline` if that comes before the plugin's
    /// own deadline: a rule's plugin calls count against the rule's time.
    pub fn call_until(
        &self,
        instances: &Instances,
        input_json: &str,
        rule_deadline: Option<Instant>,
    ) -> (Result<String, PluginFailure>, CallReport) {
        self.run(instances, rule_deadline, |plugin, store| {
            let output = plugin.call_call(store, &input_json.to_owned())?;
            Ok(output.map(|json| {
                let bytes = json.len();
                (json, bytes)
            }))
        })
    }

    /// A new instance in a new store (see [`Instances`] for when one is needed).
    fn instantiate(
        &self,
        instances: &Instances,
    ) -> Result<Warm, (wasmtime::Error, Store<CallState>)> {
        let state = CallState::new(&self.limits, instances.config.clone());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(self.deadline_ticks());
        if self.metered {
            // Instantiation runs guest code too (start functions), on the same budget.
            let _ = store.set_fuel(self.fuel_budget());
        }
        match guarded(|| instances.code.pre.instantiate(&mut store)) {
            Ok(plugin) => Ok(Warm {
                store,
                plugin,
                calls: 0,
            }),
            Err(error) => Err((error, store)),
        }
    }

    fn fuel_budget(&self) -> u64 {
        if self.limits.fuel > 0 {
            self.limits.fuel
        } else {
            UNMETERED_FUEL
        }
    }

    fn deadline_ticks(&self) -> u64 {
        self.limits
            .deadline_ms
            .div_ceil(EPOCH_TICK.as_millis() as u64)
            .max(1)
    }

    /// The ticks a call gets, and whether a calling rule's deadline (sooner than the plugin's
    /// own) is what bounds it.
    fn budget(&self, rule_deadline: Option<Instant>) -> (u64, bool) {
        let own = self.deadline_ticks();
        let Some(deadline) = rule_deadline else {
            return (own, false);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let ticks = (left.as_micros() as u64).div_ceil(EPOCH_TICK.as_micros() as u64);
        if ticks < own {
            (ticks, true)
        } else {
            (own, false)
        }
    }

    /// One call: a warm instance (or a new one), the per-call deadline and fuel, the invocation,
    /// then the outcome classified and the instance kept or dropped.
    fn run<T>(
        &self,
        instances: &Instances,
        rule_deadline: Option<Instant>,
        invoke: impl FnOnce(
            &Bound,
            &mut Store<CallState>,
        ) -> wasmtime::Result<Result<(T, usize), String>>,
    ) -> (Result<T, PluginFailure>, CallReport) {
        let started = Instant::now();
        let (ticks, bounded_by_rule) = self.budget(rule_deadline);
        if ticks == 0 {
            return (Err(rule_time_up()), CallReport::default());
        }
        let mut warm = match instances
            .take()
            .map_or_else(|| self.instantiate(instances), Ok)
        {
            Ok(warm) => warm,
            Err((error, mut store)) => {
                let failure = self.classify(&error, store.data().limiter.memory_refused);
                return (Err(failure), self.report(started, &mut store, None));
            }
        };
        warm.store.data_mut().begin_call();
        warm.store.set_epoch_deadline(ticks);
        let fuel = if self.limits.fuel > 0 {
            self.limits.fuel
        } else {
            UNMETERED_FUEL
        };
        if self.metered {
            let _ = warm.store.set_fuel(fuel);
        }
        let Warm { store, plugin, .. } = &mut warm;
        let outcome = guarded(|| invoke(plugin, store));
        let result = match outcome {
            Ok(Ok((_, bytes))) if bytes > self.limits.max_output_bytes => {
                Err(PluginFailure::limit(
                    "output",
                    "plugin_max_output_bytes",
                    format!(
                        "returned {bytes} bytes; the limit is {} (plugin_max_output_bytes)",
                        self.limits.max_output_bytes
                    ),
                ))
            }
            Ok(Ok((value, _))) => Ok(value),
            Ok(Err(message)) => Err(PluginFailure::error("error", message)),
            Err(error) if bounded_by_rule && is_interrupt(&error) => Err(rule_time_up()),
            Err(error) => Err(self.classify(&error, warm.store.data().limiter.memory_refused)),
        };
        let report = self.report(started, &mut warm.store, self.metered.then_some(fuel));
        warm.calls += 1;
        // Only a clean call leaves an instance fit to reuse (a guest error is clean: it returned).
        let clean = result.is_ok() || matches!(&result, Err(f) if f.reason == "error");
        if clean && warm.calls < self.limits.instance_max_calls {
            instances.give_back(warm, self.limits.idle_instances);
        }
        (result, report)
    }

    fn report(
        &self,
        started: Instant,
        store: &mut Store<CallState>,
        fuel: Option<u64>,
    ) -> CallReport {
        CallReport {
            wall_us: started.elapsed().as_micros() as u64,
            fuel_consumed: fuel.map(|fuel| fuel.saturating_sub(store.get_fuel().unwrap_or(0))),
            peak_memory_bytes: store.data().limiter.peak_memory_bytes,
            logs: std::mem::take(&mut store.data_mut().logs)
                .into_iter()
                .map(|(level, line)| (level_name(level).to_owned(), line))
                .collect(),
        }
    }

    fn classify(&self, error: &wasmtime::Error, memory_refused: bool) -> PluginFailure {
        let l = &self.limits;
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginFailure::limit(
                "deadline",
                "plugin_deadline_ms",
                format!("ran longer than {} ms (plugin_deadline_ms)", l.deadline_ms),
            ),
            Some(Trap::OutOfFuel) => PluginFailure::limit(
                "fuel",
                "plugin_fuel",
                format!("used up its {} fuel (plugin_fuel)", l.fuel),
            ),
            Some(Trap::StackOverflow) => PluginFailure::limit(
                "stack",
                "plugin_max_stack_bytes",
                format!(
                    "overflowed its {} byte stack (plugin_max_stack_bytes)",
                    l.max_stack_bytes
                ),
            ),
            _ if memory_refused => PluginFailure::limit(
                "memory",
                "plugin_max_memory_bytes",
                format!(
                    "needed more than {} bytes of memory (plugin_max_memory_bytes)",
                    l.max_memory_bytes
                ),
            ),
            Some(trap) => PluginFailure::error("trap", format!("trapped: {trap}")),
            None if format!("{error:#}").contains("maximum concurrent") => PluginFailure::limit(
                "pool",
                "plugin_pool_instances",
                format!(
                    "no free instance slot: {} plugin calls already running (plugin_pool_instances)",
                    l.pool_instances
                ),
            ),
            None => PluginFailure::error("trap", format!("{error:#}")),
        }
    }
}

fn is_interrupt(error: &wasmtime::Error) -> bool {
    matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt))
}

/// A rule's plugin call that the rule's own deadline ended.
fn rule_time_up() -> PluginFailure {
    PluginFailure::limit(
        "deadline",
        "rule_deadline_ms",
        "the calling rule's time ran out during the call (rule_deadline_ms)".into(),
    )
}

/// Runs `work`, turning a panic in a host function (WASI included) into an error of this call:
/// it must not take the caller down with it.
fn guarded<T>(work: impl FnOnce() -> wasmtime::Result<T>) -> wasmtime::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(wasmtime::Error::msg(format!(
            "host function panicked: {message}"
        )))
    })
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// The interfaces [`grant`] links, by name without version: what a plugin may import. Kept in
/// step with `grant` (a test compiles a plugin that uses them and refuses one that needs more).
const GRANTED: &[&str] = &[
    "nudge:plugin/host",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// What an import a plugin may not have gives, in words a plugin author knows.
fn capability(interface: &str) -> &'static str {
    let families = [
        ("wasi:sockets/", "network sockets"),
        ("wasi:http/", "HTTP"),
        ("wasi:filesystem/", "files"),
        ("wasi:clocks/", "clocks"),
        ("wasi:cli/", "the process's command line"),
    ];
    families
        .iter()
        .find(|(prefix, _)| interface.starts_with(prefix))
        .map_or("something nudge does not offer", |(_, words)| words)
}

/// Why a component cannot be linked: every import nudge does not grant, each with what it
/// would give, or (when the imports are all granted) the linker's own words.
fn refused_imports(engine: &Engine, component: &Component, error: &wasmtime::Error) -> String {
    let forbidden: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| {
            let unversioned = name.split('@').next().unwrap_or(name);
            !GRANTED.contains(&unversioned)
        })
        .map(|name| {
            let unversioned = name.split('@').next().unwrap_or(name);
            format!("`{name}` ({})", capability(unversioned))
        })
        .collect();
    if forbidden.is_empty() {
        return format!("imports something nudge does not grant: {error:#}");
    }
    format!(
        "imports what nudge does not grant plugins: {}. A plugin gets the nudge:plugin host \
         interface, randomness and closed standard streams, and nothing else (no network, \
         files, clocks or HTTP); remove the code that uses them (often a dependency's default \
         features)",
        forbidden.join(", ")
    )
}

struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// Everything a plugin may import: the `nudge:plugin/host` interface, and of WASI only what a
/// guest's standard library needs to start (streams, empty environment, exit, closed stdio) and
/// randomness. No files, sockets, clocks or HTTP: a guest importing those is refused at upload.
fn grant(l: &mut Linker<CallState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::{cli, io, random, sync};
    contract::add_to_linker(l)?;
    io::error::add_to_linker::<CallState, HasIo>(l, |s| s.ctx().table)?;
    sync::io::poll::add_to_linker::<CallState, TokioFreeIo>(l, |s| Io(s.ctx().table))?;
    sync::io::streams::add_to_linker::<CallState, TokioFreeIo>(l, |s| Io(s.ctx().table))?;
    cli::exit::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::environment::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::stdin::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::stdout::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::stderr::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_input::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_output::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_stdin::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_stdout::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_stderr::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    random::random::add_to_linker::<CallState, WasiRandom>(l, CallState::random)?;
    random::insecure::add_to_linker::<CallState, WasiRandom>(l, CallState::random)?;
    random::insecure_seed::add_to_linker::<CallState, WasiRandom>(l, CallState::random)?;
    Ok(())
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped, so a call past its deadline
/// traps at the next tick.
struct EpochTicker {
    _alive: Arc<()>,
}

impl EpochTicker {
    fn start(engine: Engine) -> EpochTicker {
        let alive = Arc::new(());
        let watch = Arc::downgrade(&alive);
        std::thread::Builder::new()
            .name("nudge-epoch".into())
            .spawn(move || {
                while watch.strong_count() > 0 {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .ok();
        EpochTicker { _alive: alive }
    }
}
