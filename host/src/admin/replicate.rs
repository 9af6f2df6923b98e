//! Plugins across nodes (cluster mode): every change made through a node's
//! admin API (upload, rollback, promote, removal) is recorded in Redis and
//! announced; the other nodes apply it as if it had been made locally. A node
//! loads the cluster's plugin set before it accepts clients, and a periodic
//! reconcile catches notifications missed while Redis was away.
//!
//! Canaries stay on the node that runs them; promoting one changes the active
//! version, which then reaches every node.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::persist;
use crate::cluster::{Changed, ClusterError, PluginRecord, PluginStore, RecordLimits};
use crate::gateway;
use crate::plugins::{
    Installed, Limits, PluginSettings, PluginSlot, PluginVersion, Registry, Rollout, sha256_hex,
};
use crate::server::AppState;

/// How often a node compares its plugin set with the cluster's.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// Which change a record is (its unique `change` id).
type Stamp = String;

fn stamp(rec: &PluginRecord) -> Stamp {
    rec.change.clone()
}

/// Change notifications from Redis: `(channel, payload)`.
type Notifications = mpsc::Receiver<(String, Vec<u8>)>;

pub struct Replicator {
    store: PluginStore,
    node: String,
    /// The change applied (or announced) last, per plugin name. A record that differs is applied: records are
    /// always read fresh from Redis, and a Redis that restarted empty counts
    /// generations from 1 again, so "newer" cannot be trusted, "other" can.
    applied: Mutex<HashMap<String, Stamp>>,
    /// Local changes not yet recorded (Redis was away): retried by the reconcile.
    pending: Mutex<BTreeSet<String>>,
    changes: Mutex<Option<Notifications>>,
    /// Numbers this node's changes.
    seq: AtomicU64,
}

/// What applying a record did to the registry.
enum Outcome {
    Unchanged,
    New(Arc<PluginSlot>),
    Replaced,
    Removed(Arc<PluginSlot>),
}

impl Replicator {
    /// Subscribe to change notifications (before the first load, so no
    /// change falls between the two).
    pub async fn new(store: PluginStore, node: String) -> Result<Self, ClusterError> {
        let changes = store.changes().await?;
        Ok(Self {
            store,
            node,
            applied: Mutex::default(),
            pending: Mutex::default(),
            changes: Mutex::new(Some(changes)),
            seq: AtomicU64::new(0),
        })
    }

    /// Load the cluster's plugin set into `registry` before serving: the
    /// records win over what `--plugins` and the data directory loaded for
    /// the same names. Returns the names removed and the names installed.
    pub async fn load(&self, registry: &Registry) -> (Vec<String>, Vec<String>) {
        let (mut removed, mut installed) = (Vec::new(), Vec::new());
        let records = match self.store.all().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot read the cluster's plugin set ({e}); the reconcile retries");
                return (removed, installed);
            }
        };
        for (name, rec) in records {
            match self.apply(registry, &name, &rec).await {
                Ok(Outcome::New(_) | Outcome::Replaced) => installed.push(name.clone()),
                Ok(Outcome::Removed(_) | Outcome::Unchanged) => {}
                Err(Failure::Redis(e)) => {
                    tracing::warn!(plugin = %name, "cluster plugin not loaded yet: {e}");
                    continue;
                }
                Err(Failure::Load(e)) => {
                    tracing::error!(plugin = %name, sha256 = %rec.sha256, "cluster plugin not loaded: {e}")
                }
            }
            if rec.removed {
                removed.push(name.clone());
            }
            self.applied.lock().unwrap().insert(name, stamp(&rec));
        }
        (removed, installed)
    }

    /// The record of what this node serves for `name` now (removed if nothing).
    fn record_of(&self, registry: &Registry, name: &str) -> (PluginRecord, Option<Arc<[u8]>>) {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let change = format!("{}:{nanos}:{seq}", self.node);
        let Some(slot) = registry.get(name) else {
            let rec = PluginRecord {
                generation: 0,
                node: self.node.clone(),
                change,
                removed: true,
                mount: String::new(),
                sha256: String::new(),
                config: Default::default(),
                limits: limits_record(&Limits::default()),
            };
            return (rec, None);
        };
        let v = slot.active();
        let rec = PluginRecord {
            generation: 0,
            node: self.node.clone(),
            change,
            removed: false,
            mount: slot.mount.clone(),
            sha256: v.sha256.clone(),
            config: v
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            limits: limits_record(&v.limits),
        };
        (rec, Some(v.wasm.clone()))
    }

    /// Record and announce a local change of `name`. Called under the admin
    /// lock. While Redis is away the change is kept pending and retried.
    async fn announce(&self, registry: &Registry, name: &str) {
        self.record(registry, name, false).await;
    }

    /// Record what this node serves for `name`; with `only_if_absent`, only
    /// where the cluster has no record (another node's change wins).
    async fn record(&self, registry: &Registry, name: &str, only_if_absent: bool) {
        let (rec, wasm) = self.record_of(registry, name);
        let change = rec.change.clone();
        let res = async {
            if let Some(wasm) = &wasm {
                self.store.put_blob(&rec.sha256, wasm).await?;
            }
            self.store.publish(name, rec, only_if_absent).await
        }
        .await;
        match res {
            Ok(None) => {}
            Ok(Some(_)) => {
                self.applied.lock().unwrap().insert(name.to_owned(), change);
                self.pending.lock().unwrap().remove(name);
            }
            Err(e) => {
                tracing::warn!(
                    plugin = name,
                    "change not yet shared with the cluster ({e}); retrying"
                );
                self.pending.lock().unwrap().insert(name.to_owned());
            }
        }
    }

    /// Make `registry` serve what `rec` says for `name`.
    async fn apply(
        &self,
        registry: &Registry,
        name: &str,
        rec: &PluginRecord,
    ) -> Result<Outcome, Failure> {
        if rec.removed {
            return Ok(registry
                .remove(name)
                .map_or(Outcome::Unchanged, Outcome::Removed));
        }
        if let Some(slot) = registry.get(name) {
            if matches(&slot.active(), rec) {
                return Ok(Outcome::Unchanged);
            }
            // A revision this node already has: switch to it, no recompiling.
            let (revisions, _) = slot.revisions();
            if let Some(r) = revisions.iter().rev().find(|r| matches(&r.version, rec)) {
                slot.rollback(Some(&r.id.to_string()))
                    .map_err(|e| Failure::Load(e.to_string()))?;
                return Ok(Outcome::Replaced);
            }
        }
        let wasm = self
            .store
            .blob(&rec.sha256)
            .await
            .map_err(|e| Failure::Redis(e.to_string()))?
            .ok_or_else(|| Failure::Load("its component is not in redis".into()))?;
        if sha256_hex(&wasm) != rec.sha256 {
            return Err(Failure::Load(
                "its component in redis has another sha256".into(),
            ));
        }
        let settings = PluginSettings {
            mount: Some(rec.mount.clone()),
            limits: Limits {
                call_timeout: Duration::from_millis(rec.limits.call_timeout_ms),
                memory_bytes: rec.limits.memory_bytes,
                isolation: rec.limits.isolation,
                max_warm: rec.limits.max_warm,
            },
            config: rec.config.clone().into_iter().collect(),
        };
        let version = registry
            .prepare(name, wasm.into(), &settings)
            .await
            .map_err(|e| Failure::Load(e.to_string()))?;
        let (installed, _) = registry
            .deploy(name, settings.mount, version, Rollout::Now)
            .map_err(|e| Failure::Load(e.to_string()))?;
        Ok(match installed {
            Installed::New(slot) => Outcome::New(slot),
            Installed::Replaced(_) => Outcome::Replaced,
        })
    }
}

enum Failure {
    /// Redis did not answer: retried later.
    Redis(String),
    /// The record cannot be served here (logged once per generation).
    Load(String),
}

fn limits_record(l: &Limits) -> RecordLimits {
    RecordLimits {
        call_timeout_ms: l.call_timeout.as_millis() as u64,
        memory_bytes: l.memory_bytes,
        isolation: l.isolation,
        max_warm: l.max_warm,
    }
}

/// Whether `v` is what `rec` describes (same component, config and limits).
fn matches(v: &PluginVersion, rec: &PluginRecord) -> bool {
    v.sha256 == rec.sha256
        && v.config.len() == rec.config.len()
        && rec.config.iter().all(|(k, x)| v.config.get(k) == Some(x))
        && limits_record(&v.limits) == rec.limits
}

/// After a change through this node's admin API: share it with the cluster.
/// Called under the admin lock; a no-op on a single node.
pub(super) async fn announce(state: &AppState, name: &str) {
    if let Some(r) = state.admin.replicator() {
        r.announce(&state.registry, name).await;
    }
}

/// Whether `rec` is another change than the one this node applied last for `name`.
fn unseen(r: &Replicator, name: &str, rec: &PluginRecord) -> bool {
    r.applied.lock().unwrap().get(name) != Some(&stamp(rec))
}

/// Apply the cluster's record of `name` if this node has not applied it yet.
async fn sync(state: &AppState, r: &Replicator, name: &str, rec: Option<PluginRecord>) {
    let mut removed = state.admin.lock.lock().await;
    let rec = match rec {
        Some(rec) => rec,
        None => match r.store.get(name).await {
            Ok(Some(rec)) => rec,
            Ok(None) => return,
            Err(e) => return tracing::debug!(plugin = name, "cannot read the plugin record: {e}"),
        },
    };
    // A local change not shared yet wins: the reconcile records it first.
    if !unseen(r, name, &rec) || r.pending.lock().unwrap().contains(name) {
        return;
    }
    let outcome = match r.apply(&state.registry, name, &rec).await {
        Ok(o) => o,
        Err(Failure::Redis(e)) => {
            return tracing::debug!(plugin = name, "plugin change not applied yet: {e}");
        }
        Err(Failure::Load(e)) => {
            tracing::error!(plugin = name, sha256 = %rec.sha256, from = %rec.node, "plugin change from the cluster not applied: {e}");
            r.applied
                .lock()
                .unwrap()
                .insert(name.to_owned(), stamp(&rec));
            return;
        }
    };
    r.applied
        .lock()
        .unwrap()
        .insert(name.to_owned(), stamp(&rec));
    match &outcome {
        Outcome::Unchanged => return,
        Outcome::New(slot) => {
            removed.remove(name);
            if let Err(e) = state.gateway.mount(slot.clone()).await {
                tracing::error!(plugin = name, "{e}");
            }
        }
        Outcome::Replaced => {}
        Outcome::Removed(slot) => {
            removed.insert(name.to_owned());
            let disconnected = gateway::unmount(&state.io, slot);
            tracing::info!(plugin = name, disconnected, "removed by the cluster");
        }
    }
    let v = state.registry.get(name).map(|s| s.active());
    tracing::info!(plugin = name, from = %rec.node, generation = rec.generation, version = v.as_ref().map(|v| v.manifest.version.as_str()).unwrap_or("-"), "applied a plugin change from the cluster");
    persist(state, &removed).await;
}

/// Follow the cluster: apply announced changes as they come, and every
/// [`RECONCILE_EVERY`] retry pending announcements and compare with the
/// records (notifications are lost while Redis is away).
pub fn spawn(state: AppState) {
    let Some(r) = state.admin.replicator().cloned() else {
        return;
    };
    let Some(mut changes) = r.changes.lock().unwrap().take() else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RECONCILE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = changes.recv() => {
                    let Some((_, payload)) = msg else { return };
                    let Ok(note) = serde_json::from_slice::<Changed>(&payload) else { continue };
                    if note.node != r.node {
                        sync(&state, &r, &note.name, None).await;
                    }
                }
                _ = tick.tick() => reconcile(&state, &r).await,
            }
        }
    });
}

async fn reconcile(state: &AppState, r: &Replicator) {
    let pending: Vec<String> = r.pending.lock().unwrap().iter().cloned().collect();
    for name in pending {
        let _guard = state.admin.lock.lock().await;
        r.announce(&state.registry, &name).await;
    }
    let Ok(records) = r.store.all().await else {
        return;
    };
    // Names the cluster had a record of and no longer has: Redis restarted
    // without its data. Record what this node serves again, so nodes that
    // start later still find the set.
    let lost: Vec<String> = r
        .applied
        .lock()
        .unwrap()
        .keys()
        .filter(|n| !records.contains_key(*n))
        .cloned()
        .collect();
    for name in lost {
        let _guard = state.admin.lock.lock().await;
        tracing::info!(plugin = %name, "the cluster lost its record of this plugin; recording it again");
        r.record(&state.registry, &name, true).await;
    }
    for (name, rec) in records {
        if r.pending.lock().unwrap().contains(&name) {
            continue;
        }
        if unseen(r, &name, &rec) {
            sync(state, r, &name, Some(rec)).await;
        }
    }
}
