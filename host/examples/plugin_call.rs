//! Per-message plugin call cost, warm pool against fresh instance: `on_event` on the echo
//! plugin through the `Registry`, no network. Prints one JSON line (and writes it to the
//! file after `--json`, if given).
//!
//! Run with `make plugins && cargo run --release -p portico --example plugin_call`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use portico::plugins::{
    Connection, EngineSettings, Event, Isolation, KvStore, Limits, PluginEngine, PluginSettings,
    Principal, Registry, Transport,
};
use serde_json::{Value, json};

/// Batches per mode and calls per batch: the median of per-batch means is reported.
const POOLED: (usize, usize) = (200, 2000);
const FRESH: (usize, usize) = (100, 50);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let wasm = std::env::var_os("PORTICO_BENCH_ECHO_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/wasm32-wasip2/plugin/echo.wasm")
        });
    let bytes: Arc<[u8]> = std::fs::read(&wasm)
        .map_err(|e| anyhow::anyhow!("{}: {e} (run `make plugins`)", wasm.display()))?
        .into();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let engine = Arc::new(
            PluginEngine::new(&EngineSettings::default())
                .map_err(|e| anyhow::anyhow!("wasm engine: {e:#}"))?,
        );
        let registry = Registry::new(engine, KvStore::memory(1000));
        let mut report = serde_json::Map::new();
        for (isolation, key, (batches, per_batch)) in [
            (Isolation::Pooled, "pooled", POOLED),
            (Isolation::Fresh, "fresh", FRESH),
        ] {
            let settings = PluginSettings {
                limits: Limits {
                    isolation,
                    ..Limits::default()
                },
                ..PluginSettings::default()
            };
            registry
                .install(&format!("echo-{key}"), bytes.clone(), settings)
                .await?;
            let version = registry
                .get(&format!("echo-{key}"))
                .expect("just installed")
                .active();
            let conn = connection();
            let event = Event::new("echo", r#"[{"n":1,"text":"hello"}]"#, vec![], true);
            for _ in 0..per_batch {
                version
                    .on_event(&conn, event.clone())
                    .await?
                    .map_err(|r| anyhow::anyhow!("echo refused: {r:?}"))?;
            }
            let mut means = Vec::with_capacity(batches);
            for _ in 0..batches {
                let start = Instant::now();
                for _ in 0..per_batch {
                    let actions = version.on_event(&conn, event.clone()).await?;
                    std::hint::black_box(actions.is_ok());
                }
                means.push(start.elapsed().as_nanos() as f64 / per_batch as f64);
            }
            means.sort_by(f64::total_cmp);
            let q = |f: f64| means[((means.len() - 1) as f64 * f).round() as usize];
            report.insert(
                key.into(),
                json!({
                    "median_ns": q(0.5),
                    "p10_ns": q(0.1),
                    "p90_ns": q(0.9),
                    "calls": batches * per_batch,
                    "instances_created": version.counters.instances_created.load(std::sync::atomic::Ordering::Relaxed),
                }),
            );
        }
        report.insert(
            "what".into(),
            json!(format!(
                "warm pool {} batches x {} calls, fresh {} batches x {} calls, a 1-argument acked event",
                POOLED.0, POOLED.1, FRESH.0, FRESH.1
            )),
        );
        anyhow::Ok(Value::Object(report))
    })?;
    println!("{result}");
    if let Some(path) = out {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, format!("{result}\n"))?;
    }
    Ok(())
}

fn connection() -> Connection {
    Connection {
        id: "bench-socket".into(),
        namespace: "/echo".into(),
        transport: Transport::WebSocket,
        remote_addr: Some("127.0.0.1:1".into()),
        principal: Some(Principal {
            subject: Some("bench".into()),
            claims_json: r#"{"sub":"bench"}"#.into(),
        }),
        query: vec![],
        auth_json: "{}".into(),
    }
}
