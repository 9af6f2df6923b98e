//! The `portico` command: `serve` runs a node, `token mint` prints a dev token,
//! `plugin ...` scaffolds plugins and drives a node's admin API.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use portico::auth::AuthMode;
use portico::config::Config;
use portico::server::Server;

#[derive(Parser)]
#[command(
    name = "portico",
    version,
    about = "Real-time edge host: Socket.IO and SSE with WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Serve(ServeArgs),
    /// Development tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Scaffold plugins; push, list, roll back and remove them on a running node.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(clap::Args)]
struct AdminArgs {
    /// Base URL of the node (or of its admin listener).
    #[arg(
        long,
        env = "PORTICO_ADMIN_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// Admin token.
    #[arg(
        long,
        env = "PORTICO_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// Print the API's JSON answer instead of a summary.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Create a plugin crate that builds for wasm32-wasip2 and has a native test.
    New {
        /// Plugin (and crate) name.
        name: String,
        /// Directory to create; default ./<name>.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path of a local portico-sdk checkout (default: the one this binary was built from).
        #[arg(long, conflicts_with = "sdk_version")]
        sdk_path: Option<PathBuf>,
        /// Depend on this registry version of portico-sdk instead of a path.
        #[arg(long)]
        sdk_version: Option<String>,
    },
    /// Upload a component: replaces the running version, or mounts a new plugin.
    Push {
        /// The .wasm component.
        file: PathBuf,
        /// Plugin name; default the file name without .wasm.
        #[arg(long)]
        name: Option<String>,
        /// Plugin config `key=value`; repeatable.
        #[arg(long = "config", value_parser = parse_claim)]
        config: Vec<(String, String)>,
        /// Limit or option `key=value` (call_timeout_ms, memory_limit_mb, isolation, max_warm_instances, mount); repeatable.
        #[arg(long = "set", value_parser = parse_claim)]
        set: Vec<(String, String)>,
        /// Roll out to this percentage of new connections as a canary.
        #[arg(long)]
        canary: Option<u8>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List plugins with their active version and counters.
    Ls {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List a plugin's kept revisions.
    Versions {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make an earlier revision active (default: the one before the active one).
    Rollback {
        name: String,
        /// Revision number, version or sha256 prefix.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make a running canary active for everyone.
    Promote {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Unmount a plugin; its clients are disconnected with `plugin_removed`.
    Rm {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "PORTICO_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one). Default 127.0.0.1:8080.
    #[arg(long, env = "PORTICO_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Directory whose *.wasm plugins are loaded at start.
    #[arg(long, env = "PORTICO_PLUGINS")]
    plugins: Option<PathBuf>,
    /// HS256 secret tokens are verified with.
    #[arg(long, env = "PORTICO_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Default auth mode of every namespace.
    #[arg(long, env = "PORTICO_AUTH")]
    auth: Option<AuthMode>,
    /// Compiled-plugin cache directory (default <data-dir>/cache with --data-dir).
    #[arg(long, env = "PORTICO_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Key accepted by the publish API (`Authorization: Bearer <key>`), besides `api.keys`.
    #[arg(long, env = "PORTICO_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Redis URL: turns on cluster mode (rooms, SSE, plugins and KV shared across nodes).
    #[arg(long, env = "PORTICO_REDIS_URL")]
    redis_url: Option<String>,
    /// Serve the demo page at / and hand out dev tokens (development only, loopback only).
    #[arg(long, env = "PORTICO_DEMO")]
    demo: bool,
    /// Development settings: accept HS256 secrets under 32 bytes and the admin
    /// API on a public main listener. Never in production.
    #[arg(long, env = "PORTICO_DEV")]
    dev: bool,
    /// Keep uploaded plugins, their revisions and the active set here across restarts.
    #[arg(long, env = "PORTICO_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Token of the admin API (/admin/v1); without one the API is disabled.
    #[arg(long, env = "PORTICO_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Serve the admin API on this address instead of the main listener.
    #[arg(long, env = "PORTICO_ADMIN_LISTEN")]
    admin_listen: Option<std::net::SocketAddr>,
    /// Tokio scheduler: `multi-thread` (one worker per core) or `current-thread` (one
    /// thread; the faster choice for a node pinned to a single core).
    #[arg(long, env = "PORTICO_SCHEDULER", default_value = "multi-thread")]
    scheduler: Scheduler,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Scheduler {
    MultiThread,
    CurrentThread,
}

#[derive(clap::Args)]
struct LogArgs {
    /// Log format.
    #[arg(long, env = "PORTICO_LOG_FORMAT", default_value = "human")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print an HS256 token signed with the configured secret.
    Mint {
        /// Subject (`sub` claim).
        #[arg(long)]
        sub: String,
        /// Lifetime, e.g. 90s, 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: i64,
        /// Extra claim `key=value`; repeatable.
        #[arg(long = "claim", value_parser = parse_claim)]
        claims: Vec<(String, String)>,
        /// Signing secret.
        #[arg(long, env = "PORTICO_JWT_SECRET", hide_env_values = true)]
        secret: String,
    },
}

fn parse_duration(s: &str) -> Result<i64, String> {
    let (n, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '-')
            .unwrap_or(s.len()),
    );
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 30m, 1h, 7d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("unknown unit {unit:?} (use s, m, h or d)")),
    };
    Ok(n * scale)
}

fn parse_claim(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTICO_LOG")
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Tokens never reach the log, whatever the level (socketioxide logs
        // CONNECT payloads at debug, HTTP tracing logs `?token=` URIs).
        .with_writer(|| portico::auth::Redacting(std::io::stderr()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Token {
            command:
                TokenCommand::Mint {
                    sub,
                    ttl,
                    claims,
                    secret,
                },
        } => {
            println!("{}", portico::auth::mint(&secret, &sub, ttl, &claims)?);
            Ok(())
        }
        Command::Serve(args) => serve(args),
        Command::Plugin { command } => plugin(command),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logs(args.log.log_format);
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.plugins {
        config.plugin_dir = dir;
    }
    if let Some(secret) = args.jwt_secret {
        config.auth.jwt_secret = Some(secret);
    }
    if let Some(mode) = args.auth {
        config.auth.mode = mode;
    }
    if let Some(url) = args.redis_url {
        config.cluster.redis_url = Some(url);
    }
    if args.demo {
        config.demo = true;
    }
    if args.dev {
        config.dev = true;
    }
    if let Some(dir) = args.cache_dir {
        config.cache_dir = Some(dir);
    }
    if let Some(key) = args.api_key {
        config.api.keys.push(key);
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = Some(dir);
    }
    if let Some(token) = args.admin_token {
        config.admin.token = Some(token);
    }
    if let Some(addr) = args.admin_listen {
        config.admin.listen = Some(addr);
    }
    config.check_safety()?;
    let mut builder = match args.scheduler {
        Scheduler::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        Scheduler::CurrentThread => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = builder.enable_all().build().context("starting tokio")?;
    let served = runtime.block_on(async {
        let server = Server::bind(config).await?;
        // Scripts and tests wait for this exact line to learn the real port.
        println!("listening on {}", server.url());
        if let Some(addr) = server.admin_addr() {
            println!("admin listening on http://{addr}");
        }
        if !server.state.admin.enabled() {
            tracing::info!(
                "admin API disabled: no admin token (--admin-token, PORTICO_ADMIN_TOKEN)"
            );
        }
        server.run(shutdown_signal()).await.context("serving")
    });
    // The grace period is over: tasks still running (open sockets) must not
    // hold the process.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    served
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// `portico plugin ...`: one request, a summary (or `--json`), exit 1 with a
/// one-line reason on failure.
fn plugin(command: PluginCommand) -> anyhow::Result<()> {
    use portico::admin::client::{self, Client};

    let connect = |a: &AdminArgs| Client::new(&a.url, a.token.clone());
    let result: anyhow::Result<()> = (|| {
        match command {
            PluginCommand::New {
                name,
                dir,
                sdk_path,
                sdk_version,
            } => plugin_new(&name, dir, sdk_path, sdk_version)?,
            PluginCommand::Push {
                file,
                name,
                config,
                set,
                canary,
                admin,
            } => plugin_push(file, name, config, set, canary, &admin)?,
            PluginCommand::Ls { admin } => {
                let list = connect(&admin).list()?;
                let table = client::plugin_table(&list);
                output(&admin, list, table);
            }
            PluginCommand::Versions { name, admin } => {
                let v = connect(&admin).versions(&name)?;
                let table = client::versions_table(&v);
                output(&admin, v, table);
            }
            PluginCommand::Rollback { name, to, admin } => {
                let p = connect(&admin).rollback(&name, to.as_deref())?;
                let line = format!("rolled back: {}\n", client::describe_plugin(&p));
                output(&admin, p, line);
            }
            PluginCommand::Promote { name, admin } => {
                let p = connect(&admin).promote(&name)?;
                let line = format!("promoted: {}\n", client::describe_plugin(&p));
                output(&admin, p, line);
            }
            PluginCommand::Rm { name, admin } => {
                let r = connect(&admin).remove(&name)?;
                let line = format!(
                    "removed {name} from {} ({} clients disconnected)\n",
                    r["mount"].as_str().unwrap_or("?"),
                    r["disconnected"]
                );
                output(&admin, r, line);
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

/// Print `value` as JSON with `--json`, else the `human` text.
fn output(admin: &AdminArgs, value: serde_json::Value, human: String) {
    if admin.json {
        println!("{value}");
    } else {
        print!("{human}");
    }
}

/// `portico plugin new`: scaffold a plugin crate.
fn plugin_new(
    name: &str,
    dir: Option<PathBuf>,
    sdk_path: Option<PathBuf>,
    sdk_version: Option<String>,
) -> anyhow::Result<()> {
    use portico::admin::scaffold::{self, SdkSource};
    let sdk = match (sdk_path, sdk_version) {
        (Some(p), _) => SdkSource::Path(
            p.canonicalize()
                .with_context(|| format!("SDK path {}", p.display()))?,
        ),
        (None, Some(v)) => SdkSource::Version(v),
        (None, None) => scaffold::default_sdk().context(
            "no local portico-sdk found: pass --sdk-path <plugin-sdk dir> or --sdk-version <v>",
        )?,
    };
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    scaffold::generate(name, &dir, &sdk)?;
    println!("created plugin {name} in {}", dir.display());
    println!(
        "  cd {} && cargo test && cargo build --target wasm32-wasip2 --release",
        dir.display()
    );
    println!(
        "  portico plugin push target/wasm32-wasip2/release/{}.wasm --name {name}",
        name.replace('-', "_")
    );
    Ok(())
}

/// `portico plugin push`: upload a component (optionally as a canary).
fn plugin_push(
    file: PathBuf,
    name: Option<String>,
    config: Vec<(String, String)>,
    set: Vec<(String, String)>,
    canary: Option<u8>,
    admin: &AdminArgs,
) -> anyhow::Result<()> {
    use portico::admin::client::{self, Client};
    let name = match name {
        Some(n) => n,
        None => file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_owned)
            .context("cannot name the plugin from the file name: pass --name")?,
    };
    let wasm = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut query: Vec<(String, String)> = config
        .into_iter()
        .map(|(k, v)| (format!("config.{k}"), v))
        .collect();
    query.extend(set);
    if let Some(pct) = canary {
        query.push(("canary".into(), pct.to_string()));
    }
    let p = Client::new(&admin.url, admin.token.clone()).push(&name, wasm, &query)?;
    let verb = if canary.is_some() {
        "canary started"
    } else {
        "active"
    };
    let line = format!("pushed {}: {verb}\n", client::describe_plugin(&p));
    output(admin, p, line);
    Ok(())
}
