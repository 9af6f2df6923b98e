//! `portico-bench`: runs every peer through every scenario, side by side in one run, and
//! rewrites BENCHMARKS.md. Servers run on core 0, the generator on core 1.
//!
//! Run with `make bench` (or `make bench-quick`); it expects release builds of `portico`,
//! `portico-loadgen` and `portico-native-peer`, the wasm plugins, and the Node peer's
//! `node_modules`.

mod flap;
mod procs;
mod report;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde_json::Value;

use procs::{SERVER_CORE, Server, cpu_seconds, pinned, rss_kib, run_loadgen, start_server};

/// Shared by the generator and every peer; loopback only.
// At least 32 bytes: shorter HS256 secrets are refused outside --dev.
const SECRET: &str = "portico-bench-secret-0123456789abcdef";
/// Packets queued per socket in both Rust peers (socketioxide drops beyond it; Node has no
/// such limit). Larger than the default 128 so a bursty reader is not counted as loss.
const MAX_BUFFER: &str = "1024";
/// Events queued per SSE stream in Portico (its default, 256, cuts off readers that
/// fall that far behind, which a 1,000-stream burst does).
const SSE_BUFFER: &str = "8192";
/// Where a Portico node streams a chat room over SSE (scenario d), once SSE exists.
const SSE_PATH: &str = "/sse/chat?channel=bench";
/// Admin token every Portico under test gets (scenario e swaps a plugin through the admin API).
const ADMIN_TOKEN: &str = "portico-bench-admin";

#[derive(Parser)]
#[command(about = "Benchmark Portico against Node socket.io and native socketioxide")]
struct Args {
    /// The short version (under 3 minutes).
    #[arg(long)]
    quick: bool,
    /// Repository root.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Report to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// The command that produced the run, shown at the top of the report.
    #[arg(long, default_value = "make bench")]
    command: String,
    /// Scenarios to run (letters), default all.
    #[arg(long, default_value = "abcdefghi")]
    only: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Peer {
    PorticoWarm,
    PorticoCurrent,
    PorticoFresh,
    NativeMulti,
    NativeCurrent,
    Node,
}

impl Peer {
    pub fn label(self) -> &'static str {
        match self {
            Peer::PorticoWarm => "Portico, wasm plugin, warm pool",
            Peer::PorticoCurrent => "Portico, wasm plugin, warm pool, current-thread runtime",
            Peer::PorticoFresh => "Portico, wasm plugin, fresh instance per call",
            Peer::NativeMulti => "native socketioxide, multi-thread runtime",
            Peer::NativeCurrent => "native socketioxide, current-thread runtime",
            Peer::Node => "Node.js socket.io",
        }
    }

    pub fn is_portico(self) -> bool {
        matches!(
            self,
            Peer::PorticoWarm | Peer::PorticoFresh | Peer::PorticoCurrent
        )
    }
}

/// How long and how hard each scenario runs.
pub struct Settings {
    pub quick: bool,
    pub peers: Vec<Peer>,
    pub warmup: f64,
    pub duration: f64,
    pub echo_conns: usize,
    pub echo_inflight: usize,
    pub subscribers: usize,
    pub pub_inflight: usize,
    pub idle_conns: usize,
    pub interactive_conns: usize,
    pub interactive_rate: f64,
}

impl Settings {
    fn new(quick: bool) -> Self {
        let mut peers = vec![Peer::PorticoWarm, Peer::PorticoFresh];
        if !quick {
            peers.push(Peer::PorticoCurrent);
        }
        peers.push(Peer::NativeMulti);
        if !quick {
            peers.push(Peer::NativeCurrent);
        }
        peers.push(Peer::Node);
        Self {
            quick,
            peers,
            warmup: if quick { 1.0 } else { 2.0 },
            duration: if quick { 3.0 } else { 10.0 },
            echo_conns: 100,
            echo_inflight: 50,
            subscribers: 1000,
            pub_inflight: 64,
            idle_conns: 10_000,
            interactive_conns: 10,
            interactive_rate: 100.0,
        }
    }
}

pub struct Paths {
    root: PathBuf,
    portico: PathBuf,
    loadgen: PathBuf,
    native: PathBuf,
    node_server: PathBuf,
    plugins: PathBuf,
    logs: PathBuf,
}

impl Paths {
    fn new(root: &Path) -> anyhow::Result<Self> {
        let root = root.canonicalize()?;
        let release = root.join("target/release");
        let work = root.join("target/bench");
        let p = Self {
            portico: release.join("portico"),
            loadgen: release.join("portico-loadgen"),
            native: release.join("portico-native-peer"),
            node_server: root.join("bench/peers/node/server.mjs"),
            plugins: work.join("plugins"),
            logs: work.join("logs"),
            root,
        };
        for bin in [&p.portico, &p.loadgen, &p.native] {
            anyhow::ensure!(
                bin.exists(),
                "{} is missing: build with `cargo build --release -p portico -p portico-bench -p portico-native-peer`",
                bin.display()
            );
        }
        anyhow::ensure!(
            p.root
                .join("bench/peers/node/node_modules/socket.io")
                .exists(),
            "the Node peer's dependencies are missing: run `npm ci` in bench/peers/node"
        );
        std::fs::create_dir_all(&p.plugins)?;
        std::fs::create_dir_all(&p.logs)?;
        // Only the two plugins the scenarios use, so every Portico run loads the same set.
        for name in ["echo", "chat"] {
            let src = p
                .root
                .join(format!("target/wasm32-wasip2/plugin/{name}.wasm"));
            std::fs::copy(&src, p.plugins.join(format!("{name}.wasm")))
                .with_context(|| format!("{} (run `make plugins`)", src.display()))?;
        }
        Ok(p)
    }
}

/// One peer's outcome in one scenario.
pub enum Cell {
    Done(Measured),
    Unavailable(String),
    Failed(String),
}

/// What was measured for one peer in one scenario.
pub struct Measured {
    /// The generator's result line.
    pub lg: Value,
    /// Server CPU seconds during the measured window (idle: during connecting).
    pub server_cpu: f64,
    /// Generator CPU seconds during the measured window.
    pub gen_cpu: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

fn start(p: &Paths, peer: Peer, scenario: &str) -> anyhow::Result<Server> {
    start_with_env(p, peer, scenario, &[])
}

fn start_with_env(
    p: &Paths,
    peer: Peer,
    scenario: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<Server> {
    start_on(p, peer, scenario, env, SERVER_CORE)
}

/// Start `peer` on `cores` (a `taskset -c` list).
fn start_on(
    p: &Paths,
    peer: Peer,
    scenario: &str,
    env: &[(&str, &str)],
    cores: &str,
) -> anyhow::Result<Server> {
    let log = p.logs.join(format!("{scenario}-{peer:?}.log"));
    let mut cmd = match peer {
        Peer::PorticoWarm | Peer::PorticoFresh | Peer::PorticoCurrent => {
            let mut c = pinned(cores, &p.portico);
            c.args(["serve", "--listen", "127.0.0.1:0", "--jwt-secret", SECRET])
                .arg("--plugins")
                .arg(&p.plugins)
                .arg("--cache-dir")
                .arg(p.root.join("target/bench/cache"))
                .env("PORTICO_LOG", "warn")
                .env(
                    "PORTICO_RUNTIME__ISOLATION",
                    if peer == Peer::PorticoFresh {
                        "fresh"
                    } else {
                        "pooled"
                    },
                )
                .env("PORTICO_SOCKETIO__MAX_BUFFER_SIZE", MAX_BUFFER)
                .env("PORTICO_ADMIN_TOKEN", ADMIN_TOKEN)
                // SSE readers get the same slack as Socket.IO sockets (MAX_BUFFER):
                // below it a reader that falls behind is cut off by design.
                .env("PORTICO_SSE__BUFFER", SSE_BUFFER)
                // Same rules for every peer: no throttling (the peers have none).
                .env("PORTICO_THROTTLE__EVENTS_PER_SEC", "0")
                .env("PORTICO_THROTTLE__CONNECTIONS_PER_SEC", "0")
                // The load generator is one address: no per-address caps either.
                .env("PORTICO_NET__MAX_CONNECTIONS_PER_IP", "0")
                .env("PORTICO_NET__ACCEPT_RATE_PER_IP", "0")
                .env("PORTICO_SOCKETIO__MAX_PENDING_SESSIONS", "0")
                .env("PORTICO_SOCKETIO__MAX_PENDING_SESSIONS_PER_IP", "0")
                .env(
                    "PORTICO_SCHEDULER",
                    if peer == Peer::PorticoCurrent {
                        "current-thread"
                    } else {
                        "multi-thread"
                    },
                );
            c
        }
        Peer::NativeMulti | Peer::NativeCurrent => {
            let mut c = pinned(cores, &p.native);
            c.args(["--listen", "127.0.0.1:0", "--max-buffer-size", MAX_BUFFER])
                .args([
                    "--runtime",
                    if peer == Peer::NativeMulti {
                        "multi"
                    } else {
                        "current"
                    },
                ])
                .env("BENCH_SECRET", SECRET);
            c
        }
        Peer::Node => {
            let mut c = pinned(cores, "node");
            c.arg(&p.node_server)
                .env("PORT", "0")
                .env("BENCH_SECRET", SECRET)
                .env("NODE_ENV", "production");
            c
        }
    };
    cmd.envs(env.iter().copied());
    start_server(cmd, &log)
}

fn timing_args(s: &Settings) -> Vec<String> {
    vec![
        "--warmup".into(),
        s.warmup.to_string(),
        "--duration".into(),
        s.duration.to_string(),
    ]
}

/// Run the generator against a fresh server, sampling the server's CPU time over the
/// measured window.
fn measure(p: &Paths, peer: Peer, scenario: &str, args: Vec<String>) -> anyhow::Result<Measured> {
    measure_on(p, peer, scenario, args, SERVER_CORE, &[])
}

fn measure_on(
    p: &Paths,
    peer: Peer,
    scenario: &str,
    args: Vec<String>,
    cores: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<Measured> {
    let server = start_on(p, peer, scenario, env, cores)?;
    let mut full = args;
    full.splice(1..1, ["--url".into(), format!("http://{}", server.addr)]);
    let pid = server.pid;
    let mut cpu = (0.0, 0.0);
    let (lg, gen_cpu) = run_loadgen(
        &p.loadgen,
        &full,
        SECRET,
        Duration::from_secs(180),
        |phase, _| match phase {
            "measure-start" => cpu.0 = cpu_seconds(pid).unwrap_or(0.0),
            "measure-end" => cpu.1 = cpu_seconds(pid).unwrap_or(0.0),
            _ => {}
        },
    )?;
    Ok(Measured {
        lg,
        server_cpu: cpu.1 - cpu.0,
        gen_cpu,
        rss_before_kib: 0,
        rss_after_kib: rss_kib(pid).unwrap_or(0),
    })
}

/// (i) echo and fan-out with connection state recovery on and off (no pids,
/// no offsets), three runs of each, alternating: what its bookkeeping costs.
fn scenario_recovery_cost(p: &Paths, s: &Settings) -> Vec<report::RecoveryAb> {
    let loads: [(&'static str, &str, Vec<String>, &str); 2] = [
        ("echo acks", "i-echo", echo_args(s), "acks"),
        (
            "fan-out deliveries",
            "i-fanout",
            fanout_args(s),
            "deliveries",
        ),
    ];
    let mut out = Vec::new();
    for (label, key, args, count) in loads {
        let mut ab = report::RecoveryAb {
            label,
            on: Vec::new(),
            off: Vec::new(),
        };
        for round in 0..3 {
            for on in [true, false] {
                eprintln!(
                    "scenario ({key}) recovery {}, run {}...",
                    if on { "on" } else { "off" },
                    round + 1
                );
                let env: &[(&str, &str)] = if on {
                    &[]
                } else {
                    &[("PORTICO_SOCKETIO__RECOVERY_WINDOW_SECS", "0")]
                };
                match measure_on(p, Peer::PorticoWarm, key, args.clone(), SERVER_CORE, env) {
                    Ok(m) => {
                        let v = report::per_cpu(report::num(&m.lg, count), m.server_cpu);
                        if on { ab.on.push(v) } else { ab.off.push(v) }
                    }
                    Err(e) => eprintln!("  failed: {e}"),
                }
            }
        }
        out.push(ab);
    }
    out
}

fn scenario_echo(p: &Paths, s: &Settings, peer: Peer) -> Cell {
    cell(measure(p, peer, "a-echo", echo_args(s)))
}

fn echo_args(s: &Settings) -> Vec<String> {
    let mut args = vec![
        "echo".into(),
        "--conns".into(),
        s.echo_conns.to_string(),
        "--inflight".into(),
        s.echo_inflight.to_string(),
    ];
    args.extend(timing_args(s));
    args
}

/// (g) an event answered with an emit and an ack, one at a time per connection, at low load.
fn scenario_interactive(p: &Paths, s: &Settings, peer: Peer) -> Cell {
    let mut args = vec![
        "interactive".into(),
        "--conns".into(),
        s.interactive_conns.to_string(),
        "--rate".into(),
        s.interactive_rate.to_string(),
    ];
    args.extend(timing_args(s));
    cell(measure(p, peer, "g-interactive", args))
}

fn scenario_fanout(p: &Paths, s: &Settings, peer: Peer) -> Cell {
    cell(measure(p, peer, "b-fanout", fanout_args(s)))
}

fn fanout_args(s: &Settings) -> Vec<String> {
    let mut args = vec![
        "fanout".into(),
        "--subscribers".into(),
        s.subscribers.to_string(),
        "--inflight".into(),
        s.pub_inflight.to_string(),
    ];
    args.extend(timing_args(s));
    args
}

/// Cores the server gets in the scaling runs (h): both, so it shares core 1 with the
/// generator.
const SCALING_CORES: &str = "0,1";

/// (h) echo and fan-out again with the server on two cores; the one-core figures are (a)
/// and (b). Only the multi-thread peers can use a second core.
fn scenario_scaling(p: &Paths, s: &Settings, peer: Peer, key: &str) -> Cell {
    if !matches!(peer, Peer::PorticoWarm | Peer::NativeMulti) {
        return Cell::Unavailable("only the multi-thread peers run on two cores".into());
    }
    let (name, args) = match key {
        "h-echo" => ("h-echo-2cores", echo_args(s)),
        _ => ("h-fanout-2cores", fanout_args(s)),
    };
    cell(measure_on(p, peer, name, args, SCALING_CORES, &[]))
}

fn scenario_idle(p: &Paths, s: &Settings, peer: Peer) -> Cell {
    let run = || -> anyhow::Result<Measured> {
        let server = start(p, peer, "c-idle")?;
        let pid = server.pid;
        // Let the server finish starting (JIT, lazy allocations) before the baseline.
        std::thread::sleep(Duration::from_millis(500));
        let before = rss_kib(pid).context("reading server RSS")?;
        let cpu_before = cpu_seconds(pid).unwrap_or(0.0);
        let mut after = 0;
        let mut cpu_after = 0.0;
        let args = vec![
            "idle".into(),
            "--url".into(),
            format!("http://{}", server.addr),
            "--conns".into(),
            s.idle_conns.to_string(),
            "--hold".into(),
            "60".into(),
        ];
        let (lg, gen_cpu) = run_loadgen(
            &p.loadgen,
            &args,
            SECRET,
            Duration::from_secs(120),
            |phase, stdin| {
                if phase == "connected" {
                    cpu_after = cpu_seconds(pid).unwrap_or(0.0);
                    // Settle: sockets finish their post-connect work.
                    std::thread::sleep(Duration::from_millis(1000));
                    after = rss_kib(pid).unwrap_or(0);
                    stdin.take();
                }
            },
        )?;
        Ok(Measured {
            lg,
            server_cpu: cpu_after - cpu_before,
            gen_cpu,
            rss_before_kib: before,
            rss_after_kib: after,
        })
    };
    cell(run())
}

fn cell(r: anyhow::Result<Measured>) -> Cell {
    match r {
        Ok(m) => Cell::Done(m),
        Err(e) => Cell::Failed(format!("{e:#}")),
    }
}

/// What this Portico build can do, found by asking it (never assumed).
pub struct Features {
    /// `Ok(())` when SSE is served, else why not.
    pub sse: Result<(), String>,
    pub hot_swap: Result<(), String>,
    pub cluster: Result<(), String>,
}

fn probe(p: &Paths) -> Features {
    let http = || -> anyhow::Result<(Result<(), String>, Result<(), String>)> {
        let server = start(p, Peer::PorticoWarm, "probe")?;
        let token = portico_bench::run::token(SECRET, "probe")?;
        let sse = match procs::http_status(&server.addr, SSE_PATH, Some(&token))? {
            200 => Ok(()),
            code => Err(format!(
                "this Portico build has no SSE endpoint (GET {SSE_PATH} answered {code})"
            )),
        };
        let hot_swap = match procs::http_status(
            &server.addr,
            "/admin/v1/plugins",
            Some(ADMIN_TOKEN),
        )? {
            200 => Ok(()),
            code => Err(format!(
                "this Portico build has no admin API to install a new plugin version (GET /admin/v1/plugins answered {code})"
            )),
        };
        Ok((sse, hot_swap))
    };
    let (sse, hot_swap) = http().unwrap_or_else(|e| {
        let why = format!("probe failed: {e:#}");
        (Err(why.clone()), Err(why))
    });
    Features {
        sse,
        hot_swap,
        cluster: probe_cluster(p),
    }
}

/// A build without clustering refuses a `[cluster]` config section at start.
fn probe_cluster(p: &Paths) -> Result<(), String> {
    let out = Command::new(&p.portico)
        .args(["serve", "--listen", "127.0.0.1:0", "--jwt-secret", SECRET])
        .arg("--plugins")
        .arg(&p.plugins)
        .env("PORTICO_CLUSTER__REDIS_URL", "redis://127.0.0.1:1/")
        .env_remove("RUST_BACKTRACE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            // A build with clustering would keep running (or retry Redis): stop it.
            std::thread::sleep(Duration::from_secs(2));
            let _ = c.kill();
            c.wait_with_output()
        });
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("unknown field `cluster`") => Err(
            "this Portico build has no Redis cluster support (config section `cluster` is unknown)"
                .into(),
        ),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("probe failed: {e}")),
    }
}

/// (a) with the `echo` plugin replaced through the admin API halfway through the
/// measured window: acks lost or failed across the swap, and the latency around it.
fn scenario_swap(p: &Paths, s: &Settings, peer: Peer, f: &Features) -> Cell {
    if !peer.is_portico() {
        return Cell::Unavailable("Portico-only scenario".into());
    }
    if let Err(why) = &f.hot_swap {
        return Cell::Unavailable(why.clone());
    }
    let run = || -> anyhow::Result<Measured> {
        let server = start(p, peer, "e-swap")?;
        let wasm = std::fs::read(p.plugins.join("echo.wasm"))?;
        let mut args = vec![
            "echo".into(),
            "--url".into(),
            format!("http://{}", server.addr),
            "--conns".into(),
            s.echo_conns.to_string(),
            "--inflight".into(),
            s.echo_inflight.to_string(),
        ];
        args.extend(timing_args(s));
        let pid = server.pid;
        let mut cpu = (0.0, 0.0);
        let swap = std::sync::Arc::new(std::sync::Mutex::new(None));
        let mut swapper = None;
        let (mut lg, gen_cpu) = run_loadgen(
            &p.loadgen,
            &args,
            SECRET,
            Duration::from_secs(180),
            |phase, _| match phase {
                "measure-start" => {
                    cpu.0 = cpu_seconds(pid).unwrap_or(0.0);
                    let (addr, wasm, swap, half) = (
                        server.addr.clone(),
                        wasm.clone(),
                        swap.clone(),
                        s.duration / 2.0,
                    );
                    swapper = Some(std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs_f64(half));
                        // A new revision (new config) of the same component: the
                        // compiled artifact is cached, so this is the swap itself.
                        let r = procs::http_put(
                            &addr,
                            "/admin/v1/plugins/echo?config.revision=2",
                            ADMIN_TOKEN,
                            "application/wasm",
                            &wasm,
                        );
                        *swap.lock().unwrap() = Some(r.map_err(|e| e.to_string()));
                    }));
                }
                "measure-end" => cpu.1 = cpu_seconds(pid).unwrap_or(0.0),
                _ => {}
            },
        )?;
        if let Some(t) = swapper {
            let _ = t.join();
        }
        match swap.lock().unwrap().take() {
            Some(Ok((200, took))) => lg["swap_ms"] = Value::from(took.as_secs_f64() * 1000.0),
            Some(Ok((code, _))) => anyhow::bail!("the swap answered HTTP {code}"),
            Some(Err(e)) => anyhow::bail!("the swap failed: {e}"),
            None => anyhow::bail!("the swap did not happen within the run"),
        }
        Ok(Measured {
            lg,
            server_cpu: cpu.1 - cpu.0,
            gen_cpu,
            rss_before_kib: 0,
            rss_after_kib: rss_kib(pid).unwrap_or(0),
        })
    };
    cell(run())
}

/// (b) across two nodes over one Redis: the publisher on node A, every
/// subscriber on node B, so each delivery crosses nodes.
/// Deliveries per second scenario (f) offers (publications/s x subscribers).
const CLUSTER_OFFERED: f64 = 1_100_000.0;

fn scenario_cluster(p: &Paths, s: &Settings, peer: Peer, f: &Features) -> Cell {
    if peer != Peer::PorticoWarm {
        return Cell::Unavailable("run with the warm-pool Portico only".into());
    }
    if let Err(why) = &f.cluster {
        return Cell::Unavailable(why.clone());
    }
    let run = || -> anyhow::Result<Measured> {
        let redis = procs::start_redis(&p.logs.join("f-redis.log"))?;
        let url = format!("redis://{}/", redis.addr);
        let env = [("PORTICO_REDIS_URL", url.as_str())];
        let a = start_with_env(p, peer, "f-node-a", &env)?;
        let b = start_with_env(p, peer, "f-node-b", &env)?;
        let mut args = vec![
            "fanout".into(),
            "--url".into(),
            format!("http://{}", a.addr),
            "--sub-url".into(),
            format!("http://{}", b.addr),
            "--subscribers".into(),
            s.subscribers.to_string(),
            "--inflight".into(),
            s.pub_inflight.to_string(),
            // Paced, not closed-loop: node A's acks do not wait for node B, so an
            // unpaced publisher measures how far B falls behind, not what it
            // sustains. 1.1M deliveries/s offered; all of them must arrive.
            "--rate".into(),
            format!("{:.1}", CLUSTER_OFFERED / s.subscribers.max(1) as f64),
        ];
        args.extend(timing_args(s));
        let pids = [a.pid, b.pid, redis.pid];
        let cpu_all = || {
            pids.iter()
                .map(|&pid| cpu_seconds(pid).unwrap_or(0.0))
                .sum::<f64>()
        };
        let mut cpu = (0.0, 0.0);
        let (lg, gen_cpu) = run_loadgen(
            &p.loadgen,
            &args,
            SECRET,
            Duration::from_secs(180),
            |phase, _| match phase {
                "measure-start" => cpu.0 = cpu_all(),
                "measure-end" => cpu.1 = cpu_all(),
                _ => {}
            },
        )?;
        Ok(Measured {
            lg,
            server_cpu: cpu.1 - cpu.0,
            gen_cpu,
            rss_before_kib: 0,
            rss_after_kib: rss_kib(b.pid).unwrap_or(0),
        })
    };
    cell(run())
}

fn scenario_sse(p: &Paths, s: &Settings, peer: Peer, f: &Features) -> Cell {
    if !peer.is_portico() {
        return Cell::Unavailable("this peer implements no SSE endpoint yet".into());
    }
    if let Err(why) = &f.sse {
        return Cell::Unavailable(why.clone());
    }
    // `--sse-path` is resolved against the server URL the runner passes.
    let mut args = vec![
        "sse".into(),
        "--readers".into(),
        s.subscribers.to_string(),
        "--inflight".into(),
        s.pub_inflight.to_string(),
        "--sse-path".into(),
        SSE_PATH.into(),
    ];
    args.extend(timing_args(s));
    cell(measure(p, peer, "d-sse", args))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::new(args.quick);
    let paths = Paths::new(&args.root)?;
    let mut rep = report::Report::new(&args.command, &settings);
    let wants = |c: char| args.only.contains(c);
    let features = probe(&paths);

    type Run = fn(&Paths, &Settings, Peer) -> Cell;
    let plain: [(char, &str, Run); 4] = [
        ('a', "a", scenario_echo),
        ('b', "b", scenario_fanout),
        ('c', "c", scenario_idle),
        ('g', "g", scenario_interactive),
    ];
    for (letter, key, run) in plain {
        if !wants(letter) {
            continue;
        }
        for &peer in &settings.peers {
            eprintln!("scenario ({key}) {}...", peer.label());
            let c = run(&paths, &settings, peer);
            if let Cell::Failed(e) = &c {
                eprintln!("  failed: {e}");
            }
            rep.add(key, peer, c);
        }
    }
    if wants('d') {
        for &peer in &settings.peers {
            eprintln!("scenario (d) {}...", peer.label());
            rep.add("d", peer, scenario_sse(&paths, &settings, peer, &features));
        }
    }
    if wants('e') {
        for &peer in &settings.peers {
            eprintln!("scenario (e) {}...", peer.label());
            let c = scenario_swap(&paths, &settings, peer, &features);
            if let Cell::Failed(e) = &c {
                eprintln!("  failed: {e}");
            }
            rep.add("e", peer, c);
        }
    }
    if wants('f') {
        for &peer in &settings.peers {
            eprintln!("scenario (f) {}...", peer.label());
            let c = scenario_cluster(&paths, &settings, peer, &features);
            if let Cell::Failed(e) = &c {
                eprintln!("  failed: {e}");
            }
            rep.add("f", peer, c);
        }
    }
    if wants('i') {
        for ab in scenario_recovery_cost(&paths, &settings) {
            rep.add_recovery(ab);
        }
    }
    if wants('h') {
        for key in ["h-echo", "h-fanout"] {
            for &peer in &settings.peers {
                eprintln!("scenario ({key}, two cores) {}...", peer.label());
                let c = scenario_scaling(&paths, &settings, peer, key);
                if let Cell::Failed(e) = &c {
                    eprintln!("  failed: {e}");
                }
                rep.add(key, peer, c);
            }
        }
    }
    let micro = std::fs::read_to_string(paths.root.join("target/bench/plugin_call.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(s.trim()).ok());
    let notes = std::fs::read_to_string(paths.root.join("bench/NOTES.md")).unwrap_or_default();
    let flaps = std::fs::read_to_string(paths.root.join(flap::FILE)).ok();
    let text = rep.render(micro.as_ref(), flaps.as_deref(), &notes);
    std::fs::write(paths.root.join(&args.out), text)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
