//! What the admin API returns: plain JSON views of slots and revisions.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use utoipa::ToSchema;

use crate::plugins::{Canary, PluginSlot, PluginVersion, Revision, SlotEvent};

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A mounted plugin and its active version.
#[derive(Serialize, ToSchema)]
pub struct PluginView {
    pub name: String,
    /// Socket.IO namespace (and SSE stream) it serves.
    pub mount: String,
    /// Revision number of the active version (per plugin, from 1).
    pub revision: u64,
    /// Manifest version of the active revision.
    pub version: String,
    pub sha256: String,
    /// Component size in bytes.
    pub size: usize,
    /// The `portico:plugin` contract version the component was built against
    /// (`0.3.0`, `0.2.0` or `0.1.0`).
    pub contract: &'static str,
    /// Unix time (ms) the active version was loaded.
    pub loaded_at_ms: u64,
    pub manifest: ManifestView,
    pub limits: LimitsView,
    /// Values the plugin reads with `config::get`.
    pub config: BTreeMap<String, String>,
    /// Connections open now (canary ones included).
    pub connections: u64,
    /// Counters of the active version.
    pub counters: CountersView,
    /// The running canary, if any.
    pub canary: Option<CanaryView>,
    /// Recent deployments, rollbacks and canary outcomes, oldest first.
    pub events: Vec<EventView>,
}

#[derive(Serialize, ToSchema)]
pub struct ManifestView {
    pub name: String,
    pub version: String,
    pub description: String,
    pub events: Vec<EventSpecView>,
}

#[derive(Serialize, ToSchema)]
pub struct EventSpecView {
    pub name: String,
    pub description: String,
    /// JSON Schema of the payload.
    #[schema(value_type = Option<Object>)]
    pub schema: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct LimitsView {
    pub call_timeout_ms: u64,
    pub memory_limit_bytes: usize,
    /// `pooled` or `fresh`.
    pub isolation: String,
    pub max_warm_instances: usize,
}

/// Live counters of one version.
#[derive(Serialize, ToSchema)]
pub struct CountersView {
    /// Plugin calls (connect, event, disconnect, subscribe, describe).
    pub calls: u64,
    /// Client events handled.
    pub events: u64,
    /// Failed calls: traps, timeouts, memory-limit hits, no instance.
    pub errors: u64,
    pub traps: u64,
    pub timeouts: u64,
    pub memory_limit_hits: u64,
    /// Median call time in microseconds (upper bound, within 12.5 %).
    pub p50_us: Option<f64>,
    /// 99th percentile call time in microseconds.
    pub p99_us: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct CanaryView {
    pub revision: u64,
    pub version: String,
    pub sha256: String,
    /// Share of new connections it serves.
    pub percent: u8,
    /// Connections open on it now.
    pub connections: u64,
    pub started_at_ms: u64,
    pub counters: CountersView,
}

#[derive(Serialize, ToSchema)]
pub struct EventView {
    pub at_ms: u64,
    /// `deployed`, `rolled_back`, `canary_started`, `canary_promoted` or `canary_rolled_back`.
    pub kind: String,
    pub revision: u64,
    pub message: String,
}

/// One kept revision of a plugin.
#[derive(Serialize, ToSchema)]
pub struct RevisionView {
    pub revision: u64,
    pub version: String,
    pub sha256: String,
    pub size: usize,
    pub installed_at_ms: u64,
    pub active: bool,
    pub canary: bool,
    pub config: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
pub struct VersionsView {
    pub name: String,
    /// Oldest first.
    pub revisions: Vec<RevisionView>,
}

#[derive(Serialize, ToSchema)]
pub struct PluginList {
    pub plugins: Vec<PluginView>,
}

#[derive(Serialize, ToSchema)]
pub struct Removed {
    pub name: String,
    pub mount: String,
    /// Sockets told `plugin_removed` and disconnected.
    pub disconnected: usize,
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_a_component`.
    pub code: String,
    pub message: String,
}

pub fn counters(v: &PluginVersion) -> CountersView {
    let c = &v.counters;
    let us = |q| {
        c.call_time
            .quantile(q)
            .map(|d| d.as_nanos() as f64 / 1000.0)
    };
    CountersView {
        calls: c.calls.load(Ordering::Relaxed),
        events: c.events.load(Ordering::Relaxed),
        errors: c.errors.load(Ordering::Relaxed),
        traps: c.traps.load(Ordering::Relaxed),
        timeouts: c.timeouts.load(Ordering::Relaxed),
        memory_limit_hits: c.memory_limit_hits.load(Ordering::Relaxed),
        p50_us: us(0.5),
        p99_us: us(0.99),
    }
}

fn config(v: &PluginVersion) -> BTreeMap<String, String> {
    v.config
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn canary(c: &Canary, connections: u64) -> CanaryView {
    CanaryView {
        revision: c.revision,
        version: c.version.manifest.version.clone(),
        sha256: c.version.sha256.clone(),
        percent: c.percent,
        connections,
        started_at_ms: millis(c.started_at),
        counters: counters(&c.version),
    }
}

fn event(e: SlotEvent) -> EventView {
    EventView {
        at_ms: e.at_ms,
        kind: e.kind.to_owned(),
        revision: e.revision,
        message: e.message,
    }
}

pub fn plugin(slot: &PluginSlot) -> PluginView {
    let rev = slot.active_revision();
    let v = &rev.version;
    let (connections, on_canary) = slot.connections();
    let m = &v.manifest;
    PluginView {
        name: slot.name.clone(),
        mount: slot.mount.clone(),
        revision: rev.id,
        version: m.version.clone(),
        sha256: v.sha256.clone(),
        size: v.size,
        contract: v.contract(),
        loaded_at_ms: millis(v.loaded_at),
        manifest: ManifestView {
            name: m.name.clone(),
            version: m.version.clone(),
            description: m.description.clone(),
            events: m
                .events
                .iter()
                .map(|e| EventSpecView {
                    name: e.name.clone(),
                    description: e.description.clone(),
                    schema: e
                        .schema_json
                        .as_deref()
                        .and_then(|s| serde_json::from_str(s).ok()),
                })
                .collect(),
        },
        limits: LimitsView {
            call_timeout_ms: v.limits.call_timeout.as_millis() as u64,
            memory_limit_bytes: v.limits.memory_bytes,
            isolation: match v.limits.isolation {
                crate::plugins::Isolation::Pooled => "pooled",
                crate::plugins::Isolation::Fresh => "fresh",
            }
            .to_owned(),
            max_warm_instances: v.limits.max_warm,
        },
        config: config(v),
        connections,
        counters: counters(v),
        canary: slot.canary().map(|c| canary(&c, on_canary)),
        events: slot.events().into_iter().map(event).collect(),
    }
}

pub fn versions(slot: &PluginSlot) -> VersionsView {
    let (revisions, active) = slot.revisions();
    let canary = slot.canary().map(|c| c.revision);
    VersionsView {
        name: slot.name.clone(),
        revisions: revisions
            .iter()
            .map(|r: &Revision| RevisionView {
                revision: r.id,
                version: r.version.manifest.version.clone(),
                sha256: r.version.sha256.clone(),
                size: r.version.size,
                installed_at_ms: millis(r.installed_at),
                active: r.id == active,
                canary: Some(r.id) == canary,
                config: config(&r.version),
            })
            .collect(),
    }
}
