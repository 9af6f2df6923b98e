//! Processes: servers pinned to one core, the load generator pinned to another, and what
//! /proc says about them (CPU time, resident memory).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// Core the servers run on; the generator gets [`GEN_CORE`].
pub const SERVER_CORE: &str = "0";
pub const GEN_CORE: &str = "1";

/// A server under test. Killed when dropped.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `cmd` pinned to the server core and wait for its `listening on http://ADDR` line.
pub fn start_server(mut cmd: Command, log: &Path) -> anyhow::Result<Server> {
    let program = format!("{cmd:?}");
    let log_file = std::fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        // Backtraces make every wasmtime error path slower; no server runs with them.
        .env_remove("RUST_BACKTRACE");
    let mut child = cmd.spawn().with_context(|| format!("starting {program}"))?;
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !sent && let Some(addr) = line.strip_prefix("listening on http://") {
                let _ = tx.send(addr.trim().to_owned());
                sent = true;
            }
        }
    });
    let mut server = Server {
        child,
        pid,
        addr: String::new(),
    };
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => server.addr = addr,
        Err(_) => {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            bail!("{program} did not print its address: {tail}");
        }
    }
    Ok(server)
}

/// A command run through `taskset -c <core>`, so the pid is the program's own.
/// A private `redis-server` on a free loopback port (pinned with the servers).
pub fn start_redis(log: &Path) -> anyhow::Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log_file = std::fs::File::create(log)?;
    let child = pinned("0", "redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(Stdio::null())
        .spawn()
        .context("starting redis-server")?;
    let addr = format!("127.0.0.1:{port}");
    let pid = child.id();
    let server = Server {
        child,
        pid,
        addr: addr.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "redis-server did not start on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

pub fn pinned(core: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("taskset");
    c.arg("-c").arg(core).arg(program);
    c
}

/// User + system CPU seconds of a whole process (all threads).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is 3rd overall, utime 14th, stime 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Resident set size in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// A running load generator: its `{"phase":...}` lines are passed to `on_phase` as they
/// come (with its stdin, which the callback may close); the last line is the result.
pub fn run_loadgen(
    bin: &Path,
    args: &[String],
    secret: &str,
    timeout: Duration,
    mut on_phase: impl FnMut(&str, &mut Option<ChildStdin>),
) -> anyhow::Result<(Value, f64)> {
    let mut cmd = pinned(GEN_CORE, bin);
    cmd.args(args)
        .env("BENCH_SECRET", secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting portico-loadgen")?;
    let pid = child.id();
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut result = None;
    let mut gen_cpu = (0.0, 0.0);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let v: Value = serde_json::from_str(&line)
                    .with_context(|| format!("loadgen printed a non-JSON line: {line}"))?;
                if let Some(phase) = v.get("phase").and_then(Value::as_str) {
                    match phase {
                        "measure-start" => gen_cpu.0 = cpu_seconds(pid).unwrap_or(0.0),
                        "measure-end" => gen_cpu.1 = cpu_seconds(pid).unwrap_or(0.0),
                        _ => {}
                    }
                    on_phase(phase, &mut stdin);
                } else {
                    result = Some(v);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("loadgen did not finish within {timeout:?}");
            }
        }
    }
    drop(stdin);
    let out = child.wait_with_output()?;
    match result {
        Some(v) => Ok((v, gen_cpu.1 - gen_cpu.0)),
        None => bail!(
            "loadgen exited ({}) without a result: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// `GET path` on `addr` with an optional Bearer token; the status code.
/// `PUT` `body` to `path` with a bearer token; the status and how long the server took.
pub fn http_put(
    addr: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Duration)> {
    use std::io::Read;
    let started = std::time::Instant::now();
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head)?;
    let took = started.elapsed();
    let line = String::from_utf8_lossy(&head[..n]);
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no HTTP status in {line:?}"))?;
    Ok((code, took))
}

pub fn http_status(addr: &str, path: &str, token: Option<&str>) -> anyhow::Result<u16> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no HTTP status in {line:?}"))
}
