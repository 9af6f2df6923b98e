//! `portico-loadgen`: one benchmark run against a Socket.IO server, one JSON line out.
//!
//! Run with `portico-loadgen echo --url http://127.0.0.1:8080 --secret S --conns 100 --inflight 50`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use portico_bench::fanout::{FanoutArgs, Readers};
use portico_bench::{echo, fanout, idle, interactive, run};

#[derive(Parser)]
#[command(about = "Socket.IO / SSE load generator for Portico's benchmarks")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Args, Clone)]
struct Common {
    /// Server base URL, `http://host:port`.
    #[arg(long)]
    url: String,
    /// HS256 secret the tokens are signed with.
    #[arg(long, env = "BENCH_SECRET", hide_env_values = true)]
    secret: String,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
}

#[derive(Args)]
struct Timing {
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds to wait for outstanding acks/deliveries after the measurement.
    #[arg(long, default_value_t = 3.0)]
    grace: f64,
}

#[derive(Subcommand)]
enum Mode {
    /// N connections, each with K acked events in flight.
    Echo {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[arg(long, default_value = "/echo")]
        ns: String,
        #[arg(long, default_value_t = 100)]
        conns: usize,
        #[arg(long, default_value_t = 50)]
        inflight: usize,
    },
    /// N connections, each sending one `emit-and-ack` event at a time at a fixed pace and
    /// waiting for both answers (the emit and the ack).
    Interactive {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[arg(long, default_value = "/echo")]
        ns: String,
        #[arg(long, default_value_t = 10)]
        conns: usize,
        /// Events per second per connection.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
    },
    /// One publisher, M subscribers in a chat room.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[command(flatten)]
        room: Room,
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// Subscribers connect here instead of `--url` (another node of a cluster).
        #[arg(long)]
        sub_url: Option<String>,
    },
    /// One Socket.IO publisher, M SSE readers of the same room.
    Sse {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[command(flatten)]
        room: Room,
        /// Path (and query) on --url that streams the room's messages over SSE.
        #[arg(long)]
        sse_path: String,
        #[arg(long, default_value_t = 1000)]
        readers: usize,
    },
    /// N authenticated connections held idle until stdin closes.
    Idle {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "/echo")]
        ns: String,
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        /// Longest hold, in seconds.
        #[arg(long, default_value_t = 60.0)]
        hold: f64,
    },
}

#[derive(Args)]
struct Room {
    #[arg(long, default_value = "/chat")]
    ns: String,
    #[arg(long, default_value = "bench")]
    room: String,
    /// Publications in flight (unacked) at once.
    #[arg(long, default_value_t = 4)]
    inflight: usize,
    /// Publications per second, sent on a clock (at most `inflight` unacked);
    /// 0: as fast as acks come back.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

fn addr(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("--url must be http://host:port"))?;
    Ok(rest.trim_end_matches('/').to_owned())
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn fanout_args(
    common: &Common,
    timing: &Timing,
    room: &Room,
    subscribers: usize,
) -> anyhow::Result<FanoutArgs> {
    Ok(FanoutArgs {
        addr: addr(&common.url)?,
        sub_addr: addr(&common.url)?,
        ns: room.ns.clone(),
        room: room.room.clone(),
        secret: common.secret.clone(),
        subscribers,
        inflight: room.inflight,
        rate: room.rate,
        warmup: secs(timing.warmup),
        duration: secs(timing.duration),
        grace: secs(timing.grace),
        concurrency: common.connect_concurrency,
    })
}

async fn main_async(cli: Cli) -> anyhow::Result<serde_json::Value> {
    match cli.mode {
        Mode::Echo {
            common,
            timing,
            ns,
            conns,
            inflight,
        } => {
            echo::run(echo::EchoArgs {
                addr: addr(&common.url)?,
                ns,
                secret: common.secret,
                conns,
                inflight,
                warmup: secs(timing.warmup),
                duration: secs(timing.duration),
                grace: secs(timing.grace),
                concurrency: common.connect_concurrency,
            })
            .await
        }
        Mode::Interactive {
            common,
            timing,
            ns,
            conns,
            rate,
        } => {
            interactive::run(interactive::InteractiveArgs {
                addr: addr(&common.url)?,
                ns,
                secret: common.secret,
                conns,
                rate,
                warmup: secs(timing.warmup),
                duration: secs(timing.duration),
                grace: secs(timing.grace),
                concurrency: common.connect_concurrency,
            })
            .await
        }
        Mode::Fanout {
            common,
            timing,
            room,
            subscribers,
            sub_url,
        } => {
            let mut args = fanout_args(&common, &timing, &room, subscribers)?;
            if let Some(url) = sub_url {
                args.sub_addr = addr(&url)?;
            }
            fanout::run(args, Readers::Sockets).await
        }
        Mode::Sse {
            common,
            timing,
            room,
            sse_path,
            readers,
        } => {
            let url = format!("{}{sse_path}", common.url.trim_end_matches('/'));
            fanout::run(
                fanout_args(&common, &timing, &room, readers)?,
                Readers::Sse { url },
            )
            .await
        }
        Mode::Idle {
            common,
            ns,
            conns,
            hold,
        } => {
            idle::run(idle::IdleArgs {
                addr: addr(&common.url)?,
                ns,
                secret: common.secret,
                conns,
                hold: secs(hold),
                concurrency: common.connect_concurrency,
            })
            .await
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One thread: the generator is pinned to one core, and a single-threaded runtime
    // wastes nothing on cross-thread wake-ups there.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(main_async(cli))?;
    run::emit_line(&result);
    // Connections still held are closed by the exit; no need to wait for each.
    std::process::exit(0)
}
