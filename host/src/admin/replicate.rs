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

use futures::future::BoxFuture;

use super::records::{
    Blob, Changed, Notifications, PluginRecord, PluginRecords, RecordLimits, RecordsUnavailable,
};
use crate::control::{ChangeEvent, ChangeSink, Origin, PluginControl, PluginSet, SinkError, Txn};
use crate::plugins::{Limits, PluginSettings, PluginVersion, Registry, Rollout};

/// How often a node compares its plugin set with the cluster's.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// Which change a record is (its unique `change` id).
type Stamp = String;

fn stamp(rec: &PluginRecord) -> Stamp {
    rec.change.clone()
}

pub struct Replicator {
    store: Arc<dyn PluginRecords>,
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

/// What applying a record does, worked out (and compiled) outside the lock.
enum Plan {
    Unchanged,
    Remove,
    /// Switch to a revision this node already has: no recompiling.
    Switch(u64),
    Install {
        mount: String,
        version: Arc<PluginVersion>,
    },
}

/// What applying a record did to the plugin set.
enum Outcome {
    Unchanged,
    Installed,
    Removed(usize),
}

impl Replicator {
    /// Subscribe to change notifications (before the first load, so no
    /// change falls between the two).
    pub async fn new(
        store: Arc<dyn PluginRecords>,
        node: String,
    ) -> Result<Self, RecordsUnavailable> {
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

    /// Load the cluster's plugin set through `control` before serving: the
    /// records win over what `--plugins` and the data directory loaded for
    /// the same names. Returns the names removed and the names installed.
    pub async fn load(&self, control: &PluginControl) -> (Vec<String>, Vec<String>) {
        let (mut removed, mut installed) = (Vec::new(), Vec::new());
        let records = match self.store.all().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot read the cluster's plugin set ({e}); the reconcile retries");
                return (removed, installed);
            }
        };
        for (name, rec) in records.records {
            let outcome = match self.plan(control, &name, &rec).await {
                Ok(plan) => {
                    let mut tx = control.transaction().await;
                    if rec.removed {
                        tx.mark_removed(&name);
                    }
                    execute(&mut tx, &name, plan, Origin::Startup).await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(Outcome::Installed) => installed.push(name.clone()),
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

    /// Record and announce a local change of `name`. Called under the control
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

    /// Work out (and compile, when needed) what makes this node serve what
    /// `rec` says for `name`. Changes nothing.
    async fn plan(
        &self,
        control: &PluginControl,
        name: &str,
        rec: &PluginRecord,
    ) -> Result<Plan, Failure> {
        let slot = control.registry().get(name);
        if rec.removed {
            return Ok(slot.map_or(Plan::Unchanged, |_| Plan::Remove));
        }
        if let Some(slot) = slot {
            if matches(&slot.active(), rec) {
                return Ok(Plan::Unchanged);
            }
            let (revisions, _) = slot.revisions();
            if let Some(r) = revisions.iter().rev().find(|r| matches(&r.version, rec)) {
                return Ok(Plan::Switch(r.id));
            }
        }
        let wasm = match self
            .store
            .blob(&rec.sha256)
            .await
            .map_err(|e| Failure::Redis(e.to_string()))?
        {
            Blob::Found(wasm) => wasm,
            Blob::Missing => return Err(Failure::Load("its component is not in redis".into())),
            Blob::Refused(why) => return Err(Failure::Load(why)),
        };
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
        let version = control
            .prepare(name, wasm.into(), &settings)
            .await
            .map_err(|e| Failure::Load(e.to_string()))?;
        Ok(Plan::Install {
            mount: rec.mount.clone(),
            version,
        })
    }
}

/// Carry out `plan` under the control lock.
async fn execute(
    tx: &mut Txn<'_>,
    name: &str,
    plan: Plan,
    origin: Origin,
) -> Result<Outcome, Failure> {
    let load = |e: crate::control::ControlError| Failure::Load(e.to_string());
    match plan {
        Plan::Unchanged => Ok(Outcome::Unchanged),
        Plan::Remove => match tx.remove(name, origin).await {
            Ok((_, disconnected)) => Ok(Outcome::Removed(disconnected)),
            Err(_) => Ok(Outcome::Unchanged),
        },
        Plan::Switch(id) => {
            tx.rollback(name, Some(&id.to_string()), origin)
                .await
                .map_err(load)?;
            Ok(Outcome::Installed)
        }
        Plan::Install { mount, version } => {
            tx.install(name, Some(mount), version, Rollout::Now, origin)
                .await
                .map_err(load)?;
            Ok(Outcome::Installed)
        }
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

/// Local changes are recorded in Redis and announced, under the control lock.
impl ChangeSink for Replicator {
    fn on_change<'a>(
        &'a self,
        event: &'a ChangeEvent,
        set: PluginSet<'a>,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if event.origin == Origin::Local {
                self.announce(set.registry, event.change.name()).await;
            }
            Ok(())
        })
    }
}

/// Whether `rec` is another change than the one this node applied last for `name`.
fn unseen(r: &Replicator, name: &str, rec: &PluginRecord) -> bool {
    r.applied.lock().unwrap().get(name) != Some(&stamp(rec))
}

/// Apply the cluster's record of `name` if this node has not applied it yet.
async fn sync(control: &PluginControl, r: &Replicator, name: &str, rec: Option<PluginRecord>) {
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
    let plan = r.plan(control, name, &rec).await;
    let mut tx = control.transaction().await;
    // Compiling took a while: apply only if the record is still the latest
    // and no local change came in between.
    match r.store.get(name).await {
        Ok(Some(now)) if now.change == rec.change => {}
        Ok(_) => return,
        Err(e) => return tracing::debug!(plugin = name, "cannot read the plugin record: {e}"),
    }
    if !unseen(r, name, &rec) || r.pending.lock().unwrap().contains(name) {
        return;
    }
    let outcome = match plan {
        Ok(plan) => execute(&mut tx, name, plan, Origin::Cluster).await,
        Err(e) => Err(e),
    };
    let outcome = match outcome {
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
    match outcome {
        Outcome::Unchanged => return,
        Outcome::Installed => {}
        Outcome::Removed(disconnected) => {
            tracing::info!(plugin = name, disconnected, "removed by the cluster");
        }
    }
    let v = tx.registry().get(name).map(|s| s.active());
    tracing::info!(plugin = name, from = %rec.node, generation = rec.generation, version = v.as_ref().map(|v| v.manifest.version.as_str()).unwrap_or("-"), "applied a plugin change from the cluster");
}

/// Follow the cluster: apply announced changes as they come, and every
/// [`RECONCILE_EVERY`] retry pending announcements and compare with the
/// records (notifications are lost while Redis is away).
pub fn spawn(control: Arc<PluginControl>, r: Arc<Replicator>) {
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
                        sync(&control, &r, &note.name, None).await;
                    }
                }
                _ = tick.tick() => reconcile(&control, &r).await,
            }
        }
    });
}

async fn reconcile(control: &PluginControl, r: &Replicator) {
    let pending: Vec<String> = r.pending.lock().unwrap().iter().cloned().collect();
    for name in pending {
        let tx = control.transaction().await;
        r.announce(tx.registry(), &name).await;
    }
    let Ok(set) = r.store.all().await else {
        return;
    };
    let (records, refused) = (set.records, set.refused);
    // Names the cluster had a record of and no longer has: Redis restarted
    // without its data. Record what this node serves again, so nodes that
    // start later still find the set.
    let lost: Vec<String> = r
        .applied
        .lock()
        .unwrap()
        .keys()
        .filter(|n| !records.contains_key(*n) && !refused.contains(*n))
        .cloned()
        .collect();
    for name in lost {
        let tx = control.transaction().await;
        tracing::info!(plugin = %name, "the cluster lost its record of this plugin; recording it again");
        r.record(tx.registry(), &name, true).await;
    }
    for (name, rec) in records {
        if r.pending.lock().unwrap().contains(&name) {
            continue;
        }
        if unseen(r, &name, &rec) {
            sync(control, r, &name, Some(rec)).await;
        }
    }
}
