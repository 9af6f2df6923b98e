//! Run with `cargo run --release -- GUEST.wasm [--calls 500] [--rounds 10]` (README.md).
//!
//! Per-call cost of one outbound GET to a loopback server from inside a component: through
//! the Portico import (`portico:plugin/outbound`, served by the host's own `outbound` module,
//! compiled in from `host/src/outbound/`) and through `wasi:http/outgoing-handler`
//! (wasmtime-wasi-http 48, its default sender). Also, without wasm: the host's
//! `Outbound::fetch` called from Rust, and a ureq agent like the host's whose resolver does
//! not spawn a thread per request (what the import would cost with that fixed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Result, Store, bail,
    ensure, format_err,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

// The host's outbound HTTP, unchanged (it needs `crate::plugins::Histogram`).
#[allow(dead_code, unused_imports)]
#[path = "../../../host/src/outbound/mod.rs"]
mod outbound;
#[allow(dead_code)]
#[path = "../../../host/src/plugins/stats.rs"]
mod stats;
mod plugins {
    pub use crate::stats::Histogram;
}

wasmtime::component::bindgen!({
    inline: r#"
        package bench:cost;

        world bench {
            import portico:plugin/outbound@0.2.0;
            export run: func(via: u8, authority: string, path: string, n: u32) -> result<list<u64>, string>;
        }
    "#,
    path: "../../wit/0.2.0",
    imports: { "portico:plugin/outbound": async },
    exports: { default: async },
});

use portico::plugin::outbound as wit;

struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    outbound: Arc<outbound::Outbound>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            // The default sender: a new connection per request (hyper, tokio).
            hooks: Default::default(),
        }
    }
}

/// As `host/src/plugins/host_v2.rs` serves it.
impl wit::Host for State {
    async fn fetch(&mut self, req: wit::Request) -> Result<wit::Response, wit::HttpError> {
        let req = outbound::Request {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
            timeout: req.timeout_ms.map(|ms| Duration::from_millis(ms.into())),
        };
        use outbound::OutboundError as E;
        let response = self.outbound.fetch(req).await.map_err(|e| match e {
            E::Forbidden(m) => wit::HttpError::Forbidden(m),
            E::BlockedAddress(m) => wit::HttpError::BlockedAddress(m),
            E::Timeout(ms) => wit::HttpError::Timeout(ms),
            E::TooLarge(n) => wit::HttpError::TooLarge(n),
            E::Busy(n) => wit::HttpError::Busy(n),
            E::Invalid(m) => wit::HttpError::Invalid(m),
            E::Failed(m) => wit::HttpError::Failed(m),
        })?;
        Ok(wit::Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }
}

/// A loopback HTTP/1.1 server answering `ok` to every request, keep-alive, on its own
/// thread and runtime.
fn serve() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                stream.set_nodelay(true).unwrap();
                tokio::spawn(connection(stream));
            }
        });
    });
    Ok(addr)
}

async fn connection(mut stream: tokio::net::TcpStream) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let len = loop {
            if let Some(len) = request_len(&buf) {
                break len;
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        buf.drain(..len);
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";
        if stream.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// The length of the first complete request in `buf` (a body by length or chunked).
fn request_len(buf: &[u8]) -> Option<usize> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
    if text.contains("transfer-encoding: chunked") {
        let end = buf[head..].windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some(head + end + 5);
    }
    let length = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    (buf.len() >= head + length).then_some(head + length)
}

/// ureq's `DefaultResolver` spawns a thread per request when a timeout is set (the host
/// always sets one), even for an IP literal and a pooled connection. This resolver parses
/// the literal in place: the host's agent otherwise (no redirects, no proxy, a timeout).
#[derive(Debug)]
struct Literal;

impl ureq::unversioned::resolver::Resolver for Literal {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let authority = uri.authority().ok_or(ureq::Error::HostNotFound)?;
        let addr: SocketAddr = authority
            .as_str()
            .parse()
            .map_err(|_| ureq::Error::HostNotFound)?;
        let mut addrs = self.empty();
        addrs.push(addr);
        Ok(addrs)
    }
}

fn literal_agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build();
    let connector = ureq::unversioned::transport::DefaultConnector::default();
    ureq::Agent::with_parts(config, connector, Literal)
}

fn literal_get(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, ureq::Error> {
    agent
        .get(url)
        .call()?
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
}

struct Stats {
    median: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    mean: f64,
}

fn stats(ns: &mut [u64]) -> Stats {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    Stats {
        median: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        p999: at(0.999),
        mean: ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1000.0,
    }
}

fn arg(args: &[String], name: &str, default: u32) -> Result<u32> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args
            .get(i + 1)
            .ok_or_else(|| format_err!("{name} needs a value"))?
            .parse()?),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(guest) = args.first().filter(|a| !a.starts_with("--")) else {
        bail!("usage: wasi-http-cost GUEST.wasm [--calls N] [--rounds R]");
    };
    let calls = arg(&args, "--calls", 500)?;
    let rounds = arg(&args, "--rounds", 10)?;

    let addr = serve()?;
    let origin = format!("http://{addr}");
    let settings = outbound::OutboundSettings {
        policy: outbound::Policy::new(std::slice::from_ref(&origin), &[])
            .map_err(|e| format_err!("{e}"))?,
        ..Default::default()
    };
    let outbound = Arc::new(outbound::Outbound::new(settings));

    // The host's engine settings (host/src/plugins/engine.rs), pooling with defaults.
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(
            PoolingAllocationConfig::default(),
        ));
    let engine = Engine::new(&config)?;
    let component = Component::from_file(&engine, guest)?;
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Bench::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    let state = State {
        wasi: WasiCtx::builder().build(),
        http: WasiHttpCtx::new(),
        table: ResourceTable::new(),
        outbound: outbound.clone(),
    };
    let mut store = Store::new(&engine, state);
    store.set_epoch_deadline(u64::MAX);
    let bench = Bench::instantiate_async(&mut store, &component, &linker).await?;

    let literal = literal_agent();
    let authority = addr.to_string();
    let mut by_via: [Vec<u64>; 4] = Default::default();
    // Round 0 warms up (connections, caches) and is not counted; the ways alternate in
    // order from round to round so drift on a noisy machine falls on both.
    for round in 0..=rounds {
        let order: [u8; 4] = if round % 2 == 0 {
            [0, 1, 2, 3]
        } else {
            [3, 2, 1, 0]
        };
        for via in order {
            let took = if via == 3 {
                let mut took = Vec::with_capacity(calls as usize);
                for _ in 0..calls {
                    let (agent, url) = (literal.clone(), format!("{origin}/x"));
                    let started = Instant::now();
                    let body = tokio::task::spawn_blocking(move || literal_get(&agent, &url))
                        .await?
                        .map_err(|e| format_err!("{e}"))?;
                    took.push(started.elapsed().as_nanos() as u64);
                    ensure!(body == b"ok", "unexpected body");
                }
                took
            } else if via == 2 {
                let mut took = Vec::with_capacity(calls as usize);
                for _ in 0..calls {
                    let req = outbound::Request {
                        method: "GET".into(),
                        url: format!("{origin}/x"),
                        headers: vec![],
                        body: vec![],
                        timeout: None,
                    };
                    let started = Instant::now();
                    let res = outbound.fetch(req).await.map_err(|e| format_err!("{e}"))?;
                    took.push(started.elapsed().as_nanos() as u64);
                    ensure!(res.body == b"ok", "unexpected body");
                }
                took
            } else {
                bench
                    .call_run(&mut store, via, &authority, "/x", calls)
                    .await?
                    .map_err(|e| format_err!("{e}"))?
            };
            if round > 0 {
                by_via[via as usize].extend(took);
            }
        }
    }

    println!(
        "{} calls per way ({rounds} rounds of {calls}), loopback GET of a 2-byte body",
        by_via[0].len()
    );
    println!(
        "{:<52} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "way (µs per call)", "median", "p90", "p99", "p99.9", "mean"
    );
    let names = [
        "component -> portico:plugin/outbound (ureq)",
        "component -> wasi:http/outgoing-handler",
        "host Outbound::fetch, no wasm",
        "host ureq, IP literal resolved in place, no wasm",
    ];
    let mut medians = [0.0; 4];
    let mut p99s = [0.0; 4];
    for (i, name) in names.iter().enumerate() {
        let s = stats(&mut by_via[i]);
        println!(
            "{name:<52} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            s.median, s.p90, s.p99, s.p999, s.mean
        );
        medians[i] = s.median;
        p99s[i] = s.p99;
    }
    println!(
        "wasi:http / portico: median x{:.2}, p99 x{:.2}",
        medians[1] / medians[0],
        p99s[1] / p99s[0]
    );
    Ok(())
}
