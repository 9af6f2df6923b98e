//! The `portico` command: `serve` runs a node, `token mint` prints a dev token.

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
    /// Compiled-plugin cache directory.
    #[arg(long, env = "PORTICO_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
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
        .with_writer(std::io::stderr);
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
    if let Some(dir) = args.cache_dir {
        config.cache_dir = Some(dir);
    }
    let mut builder = match args.scheduler {
        Scheduler::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        Scheduler::CurrentThread => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = builder.enable_all().build().context("starting tokio")?;
    runtime.block_on(async {
        let server = Server::bind(config).await?;
        // Scripts and tests wait for this exact line to learn the real port.
        println!("listening on http://{}", server.local_addr());
        server.run(shutdown_signal()).await.context("serving")
    })
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
