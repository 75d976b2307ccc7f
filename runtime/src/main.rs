//! The `nudge` command line: `serve`, `up`, `watch`, `replay`, `partitions`, and the offline
//! `rule test`, `plugin test`, `plugin new`, `config check` and `config example`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nudge::config::{Settings, SettingsFlags};
use nudge::{plugin_new, plugin_test, replay, rule_test, service, telemetry, up, watch};
use tokio_util::sync::CancellationToken;

/// Rule evaluation allocates many small maps and strings; mimalloc handles that churn with
/// less CPU than the system allocator. Version 2 (the `v2` feature): it returns freed pages
/// after 10 ms where v3 waits a second, which kept a checkpoint's buffers resident (see
/// BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "nudge",
    version,
    about = "Real-time marketing triggers on NATS JetStream"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service against the NATS server in NUDGE_NATS_URL.
    Serve(SettingsFlags),
    /// Start locally: runs its own nats-server unless NUDGE_NATS_URL is set, seeds example rules.
    Up(SettingsFlags),
    /// Print messages on a NATS subject as they arrive (default: every action, `actions.>`).
    Watch {
        #[arg(default_value = "actions.>")]
        subject: String,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// NATS server URL (else `nats_url` from nudge.toml)
        #[arg(long, env = "NUDGE_NATS_URL")]
        nats_url: Option<String>,
    },
    /// Backtest a rule (stored id, or a rule file as a draft) over the stored events of a time
    /// range; prints what it would have done. Publishes nothing.
    Replay {
        /// A rule id, or a `.toml` / `.rhai` rule file.
        rule: String,
        /// A stored version instead of the current one.
        #[arg(long)]
        version: Option<u64>,
        /// Start of the range (RFC 3339); default: `--to` minus `--last`.
        #[arg(long)]
        from: Option<String>,
        /// End of the range (RFC 3339); default: now.
        #[arg(long)]
        to: Option<String>,
        /// How far back when `--from` is not given.
        #[arg(long, default_value = "24h")]
        last: String,
        /// Sample actions and suppressions to show.
        #[arg(long)]
        sample: Option<usize>,
        /// NATS server URL (else `nats_url` from nudge.toml)
        #[arg(long, env = "NUDGE_NATS_URL")]
        nats_url: Option<String>,
    },
    /// Show the partitions (count, owners, committed positions), or change their count with
    /// every instance stopped.
    Partitions {
        #[command(subcommand)]
        command: Option<PartitionsCommand>,
        /// NATS server URL (else `nats_url` from nudge.toml)
        #[arg(long, env = "NUDGE_NATS_URL", global = true)]
        nats_url: Option<String>,
    },
    /// Work with rule files offline.
    Rule {
        #[command(subcommand)]
        command: RuleCommand,
    },
    /// Develop plugins: scaffold one, run one against an event.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Settings: check a configuration, or print the example file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load the settings (defaults, file, NUDGE_* environment, flags), check them, and print the
    /// effective ones with secrets masked; exits 1 naming what is wrong.
    Check(SettingsFlags),
    /// Print a settings file with every setting and its default.
    Example,
}

#[derive(Subcommand)]
enum PartitionsCommand {
    /// Set the partition count (every instance stopped). New partitions resume from the lowest
    /// committed position; what follows it is read again and deduplicated. Afterwards, start
    /// the instances with `partitions` set to the same count.
    Set { count: u32 },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Run a plugin (.wasm) through the real host against an event file; prints its actions and
    /// the call's wall time, fuel and peak memory. Needs no server.
    Test {
        wasm: PathBuf,
        #[arg(long)]
        event: Option<PathBuf>,
        #[arg(long)]
        profile: Option<PathBuf>,
        /// A manifest (.toml) whose `config` the plugin gets.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Run the `call` export (what a rule's `plugin(name, input)` runs) with this JSON.
        #[arg(long)]
        input: Option<String>,
    },
    /// Scaffold a plugin crate that builds and passes its test as generated.
    New {
        name: String,
        /// Where to create it (a directory `<name>` inside).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The nudge SDK (`sdk/` of a nudge checkout).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RuleCommand {
    /// Evaluate a rule file (.toml or .rhai) against a CloudEvent file; needs no server.
    Test {
        rule: PathBuf,
        #[arg(long)]
        event: PathBuf,
        #[arg(long)]
        profile: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // mimalloc commits its arenas eagerly and asks for transparent huge pages on them, so every
    // 2 MiB page it touches counts whole in the resident set: without huge pages nudge idles at
    // 28 MiB instead of 39, and its first plugin costs 21 MiB instead of 68 (BENCHMARKS.md,
    // "Footprint"). Inherited by the nats-server `nudge up` starts.
    if let Err(error) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!(
            "nudge: could not turn transparent huge pages off ({error}); memory use will be higher"
        );
    }
    telemetry::init_logs();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Rule {
            command:
                RuleCommand::Test {
                    rule,
                    event,
                    profile,
                },
        } => Settings::load(&SettingsFlags::default())
            .map_err(anyhow::Error::from)
            .and_then(|settings| rule_test::run(&settings, &rule, &event, profile.as_deref())),
        Command::Plugin {
            command:
                PluginCommand::Test {
                    wasm,
                    event,
                    profile,
                    manifest,
                    input,
                },
        } => Settings::load(&SettingsFlags::default())
            .map_err(anyhow::Error::from)
            .and_then(|settings| {
                let test = plugin_test::PluginTest {
                    wasm: &wasm,
                    event: event.as_deref(),
                    profile: profile.as_deref(),
                    manifest: manifest.as_deref(),
                    input: input.as_deref(),
                };
                plugin_test::run(&settings, test)
            }),
        Command::Plugin {
            command: PluginCommand::New { name, dir, sdk },
        } => {
            let sdk = sdk.unwrap_or_else(plugin_new::default_sdk_path);
            plugin_new::run(&name, &dir, &sdk).map(|root| {
                say(format!("created plugin {name} in {}", root.display()));
                say(format!(
                    "  cd {} && cargo test && cargo build --release --target wasm32-wasip2",
                    root.display()
                ));
                0
            })
        }
        Command::Config {
            command: ConfigCommand::Check(flags),
        } => Settings::load(&flags)
            .map_err(anyhow::Error::from)
            .and_then(|settings| {
                settings.check()?;
                println!(
                    "# nudge's streams and buckets reserve {} per replica in JetStream's file store",
                    nudge::storage::human_bytes(nudge::storage::reserved_bytes(&settings))
                );
                print!("{}", settings.effective()?);
                Ok(0)
            }),
        Command::Config {
            command: ConfigCommand::Example,
        } => Settings::example().map(|text| {
            print!("{text}");
            0
        }),
        Command::Serve(flags) => run_async(serve(flags)),
        Command::Watch {
            subject,
            count,
            nats_url,
        } => run_async(async move {
            let flags = SettingsFlags {
                nats_url,
                ..SettingsFlags::default()
            };
            let settings = Settings::load(&flags)?;
            let url = settings.nats_url.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "no NATS URL: pass --nats-url or set NUDGE_NATS_URL (`nudge up` prints it)"
                )
            })?;
            watch::run(&settings, &url, &subject, count).await?;
            Ok(0)
        }),
        Command::Up(flags) => run_async(up(flags)),
        Command::Partitions { command, nats_url } => run_async(partitions(command, nats_url)),
        Command::Replay {
            rule,
            version,
            from,
            to,
            last,
            sample,
            nats_url,
        } => run_async(async move {
            let flags = SettingsFlags {
                nats_url,
                ..SettingsFlags::default()
            };
            let settings = Settings::load(&flags)?;
            let replay = replay::Replay {
                rule: &rule,
                version,
                from: from.as_deref(),
                to: to.as_deref(),
                last: &last,
                sample,
            };
            replay::run(&settings, replay).await
        }),
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            eprintln!("nudge: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a line for the person at the terminal; a closed stdout is not worth failing over.
fn say(line: impl std::fmt::Display) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn run_async(future: impl Future<Output = anyhow::Result<i32>>) -> anyhow::Result<i32> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

async fn listen(settings: &Settings) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {}: {e}", settings.listen))?;
    Ok(listener)
}

async fn serve(flags: SettingsFlags) -> anyhow::Result<i32> {
    let settings = Settings::load(&flags)?;
    let metrics = telemetry::init_metrics()?;
    let listener = listen(&settings).await?;
    let address = listener.local_addr()?;
    let scheme = settings.scheme();
    let shutdown = CancellationToken::new();
    service::cancel_on_signals(shutdown.clone());
    service::run(settings, listener, Some(metrics), shutdown, async |_| {
        say(format!("nudge listening on {scheme}://{address}"));
        Ok(())
    })
    .await?;
    Ok(0)
}

async fn partitions(
    command: Option<PartitionsCommand>,
    nats_url: Option<String>,
) -> anyhow::Result<i32> {
    let flags = SettingsFlags {
        nats_url,
        ..SettingsFlags::default()
    };
    let settings = Settings::load(&flags)?;
    let url = settings
        .nats_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no NATS URL: pass --nats-url or set NUDGE_NATS_URL"))?;
    let (_client, js) = nudge::topology::connect(&url, &settings).await?;
    use nudge::clock::Clock as _;
    match command {
        None => {
            let layout = nudge::cluster::resize::layout(&js, &settings).await?;
            say(serde_json::to_string_pretty(&layout)?);
        }
        Some(PartitionsCommand::Set { count }) => {
            let now_ms = nudge::clock::SystemClock.now_ms();
            let resume_after = nudge::cluster::resize::set(&js, &settings, count, now_ms).await?;
            say(format!(
                "{count} partitions, each resuming after stream sequence {resume_after}; start \
                 the instances with partitions = {count} (NUDGE_PARTITIONS={count})"
            ));
        }
    }
    Ok(0)
}

async fn up(flags: SettingsFlags) -> anyhow::Result<i32> {
    let mut settings = Settings::load(&flags)?;
    let metrics = telemetry::init_metrics()?;
    let shutdown = CancellationToken::new();
    service::cancel_on_signals(shutdown.clone());
    let mut nats_supervisor = None;
    // The local nats-server outlives the service, so the last acks still reach it.
    let stop_nats = CancellationToken::new();
    if settings.nats_url.is_none() {
        let (url, supervisor) = up::start_local_nats(&settings, stop_nats.clone()).await?;
        settings.nats_url = Some(url);
        nats_supervisor = Some(supervisor);
    }
    let admin_token = settings
        .admin_token
        .get_or_insert_with(|| up::random_secret("admin"))
        .clone();
    let write_key = settings
        .write_key
        .get_or_insert_with(|| up::random_secret("wk"))
        .clone();
    let nats_url = settings.nats_url.clone().unwrap_or_default();
    let listener = listen(&settings).await?;
    let address = listener.local_addr()?;
    let scheme = settings.scheme();
    let result = service::run(settings, listener, Some(metrics), shutdown.clone(), async |started| {
        let seeded = up::seed_examples(&started.store).await?;
        let admin_password = up::seed_admin(&started.access).await?;
        say(format!("nudge listening on {scheme}://{address}"));
        say("");
        say("  nudge is up");
        say(format!("  web UI                {scheme}://{address}/login"));
        if let Some(password) = admin_password {
            say(format!("  first admin           admin / {password}   (shown once; add users under Admin)"));
        }
        say(format!("  API, ingest, metrics  {scheme}://{address}   (GET /api/rules, POST /v1/events, /metrics)"));
        say(format!("  NATS                  {nats_url}   (publish CloudEvents on events.<type>, read actions.>)"));
        say(format!("  admin token           {admin_token}"));
        say(format!("  write key             {write_key}"));
        if !seeded.is_empty() {
            say(format!("  example rules loaded  {}", seeded.join(", ")));
        }
        let plugins: Vec<String> = started.plugins.list().await?.into_iter().map(|p| format!("{}@v{}", p.name, p.version)).collect();
        if !plugins.is_empty() {
            say(format!("  plugins               {}", plugins.join(", ")));
        }
        say("");
        Ok(())
    })
    .await;
    shutdown.cancel();
    stop_nats.cancel();
    if let Some(supervisor) = nats_supervisor {
        supervisor.await.ok();
    }
    result.map(|()| 0)
}
