//! Shared fixtures for the host's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use portico::plugins::{
    Connection, EngineSettings, Event, KvStore, PluginEngine, PluginSettings, Registry, Transport,
};

/// Where `make plugins` puts the components (override with `PORTICO_PLUGIN_DIR`).
pub fn plugin_dir() -> PathBuf {
    std::env::var_os("PORTICO_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/plugin")
        })
}

/// The bytes of a built plugin.
pub fn plugin_bytes(name: &str) -> Arc<[u8]> {
    let path = plugin_dir().join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; build the plugins first with `make plugins`",
                path.display()
            )
        })
        .into()
}

pub fn registry() -> Registry {
    let engine = PluginEngine::new(&EngineSettings::default()).expect("engine");
    Registry::new(Arc::new(engine), KvStore::memory(10_000))
}

pub async fn install(registry: &Registry, name: &str, settings: PluginSettings) {
    if let Err(e) = registry.install(name, plugin_bytes(name), settings).await {
        panic!("installing {name}: {e}");
    }
}

pub fn conn(id: &str) -> Connection {
    Connection {
        id: id.into(),
        namespace: "/test".into(),
        transport: Transport::WebSocket,
        remote_addr: None,
        principal: None,
        query: vec![],
        auth_json: "{}".into(),
    }
}

pub fn event(name: &str, args_json: &str) -> Event {
    Event::new(name, args_json, vec![], true)
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}
