//! The set of mounted plugins. Each plugin has a slot whose active version is
//! swapped atomically: calls in flight finish on the version they started with.
//! A slot keeps a bounded history of revisions (for rollback), an optional
//! canary, and an "unmounted" signal that streams listen to.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::watch;

use super::canary::Canary;
use super::engine::PluginEngine;
use super::error::{LoadError, RegistryError};
use super::kv::KvStore;
use super::version::{CallPolicy, Limits, LoadSpec, PluginVersion, Quota};

/// Revisions kept per plugin (the active one and the canary are never evicted).
pub const MAX_REVISIONS: usize = 10;
/// Slot events (rollbacks, canary outcomes) kept for the admin API.
const MAX_EVENTS: usize = 20;

/// One uploaded version of a plugin, numbered from 1 per plugin.
#[derive(Clone)]
pub struct Revision {
    pub id: u64,
    pub version: Arc<PluginVersion>,
    pub installed_at: SystemTime,
}

/// Something that happened to a slot, e.g. a canary rolled back automatically.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotEvent {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    /// `deployed`, `rolled_back`, `canary_started`, `canary_promoted`, `canary_rolled_back`.
    pub kind: &'static str,
    pub revision: u64,
    pub message: String,
}

#[derive(Clone)]
struct History {
    revisions: VecDeque<Revision>,
    active: u64,
    next_id: u64,
    events: VecDeque<SlotEvent>,
}

/// A mounted plugin: its name, where it is mounted, and its active version.
pub struct PluginSlot {
    pub name: String,
    /// Socket.IO namespace (and SSE stream name) it serves, e.g. `/chat`.
    pub mount: String,
    active: ArcSwap<PluginVersion>,
    canary: ArcSwapOption<Canary>,
    history: Mutex<History>,
    connections: AtomicU64,
    canary_connections: AtomicU64,
    unmounted: watch::Sender<bool>,
}

/// Counts a connection while it lives; dropping it uncounts it.
pub struct ConnectionGuard {
    slot: Arc<PluginSlot>,
    canary: bool,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.slot.connections.fetch_sub(1, Ordering::Relaxed);
        if self.canary {
            self.slot.canary_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl ConnectionGuard {
    /// Whether this connection was assigned to the canary at connect.
    pub fn on_canary(&self) -> bool {
        self.canary
    }
}

impl PluginSlot {
    fn new(name: &str, mount: String, first: Revision) -> Self {
        let active = first.version.clone();
        Self {
            name: name.to_owned(),
            mount,
            active: ArcSwap::new(active),
            canary: ArcSwapOption::empty(),
            history: Mutex::new(History {
                active: first.id,
                next_id: first.id + 1,
                revisions: VecDeque::from([first]),
                events: VecDeque::new(),
            }),
            connections: AtomicU64::new(0),
            canary_connections: AtomicU64::new(0),
            unmounted: watch::Sender::new(false),
        }
    }

    /// The version new calls go to.
    pub fn active(&self) -> Arc<PluginVersion> {
        self.active.load_full()
    }

    /// The version a connection's calls go to: the canary's while one runs
    /// and the connection was assigned to it, else the active one.
    pub fn version_for(&self, on_canary: bool) -> Arc<PluginVersion> {
        if on_canary && let Some(c) = &*self.canary.load() {
            return c.version.clone();
        }
        self.active()
    }

    /// Count a new connection and decide (once, sticky) whether it is served
    /// by the canary.
    pub fn connect(self: &Arc<Self>) -> ConnectionGuard {
        let canary = self
            .canary
            .load()
            .as_ref()
            .is_some_and(|c| c.take_connection());
        self.connections.fetch_add(1, Ordering::Relaxed);
        if canary {
            self.canary_connections.fetch_add(1, Ordering::Relaxed);
        }
        ConnectionGuard {
            slot: self.clone(),
            canary,
        }
    }

    /// Connections open now, and how many of them are on the canary.
    pub fn connections(&self) -> (u64, u64) {
        (
            self.connections.load(Ordering::Relaxed),
            self.canary_connections.load(Ordering::Relaxed),
        )
    }

    pub fn canary(&self) -> Option<Arc<Canary>> {
        self.canary.load_full()
    }

    /// The revisions kept (oldest first) and the active revision's id.
    pub fn revisions(&self) -> (Vec<Revision>, u64) {
        let h = self.history.lock().unwrap();
        (h.revisions.iter().cloned().collect(), h.active)
    }

    pub fn active_revision(&self) -> Revision {
        let h = self.history.lock().unwrap();
        find(&h, h.active).expect("the active revision is kept")
    }

    /// Recent events, oldest first.
    pub fn events(&self) -> Vec<SlotEvent> {
        self.history
            .lock()
            .unwrap()
            .events
            .iter()
            .cloned()
            .collect()
    }

    /// Make an earlier revision active: `to` is a revision id, a manifest
    /// version or a sha256 prefix (8+ hex digits); `None` is the revision
    /// before the active one. A running canary is ended first; with `None`
    /// that is the whole rollback.
    pub fn rollback(&self, to: Option<&str>) -> Result<Revision, RegistryError> {
        let mut h = self.history.lock().unwrap();
        if to.is_none()
            && let Some(c) = self.canary.swap(None)
        {
            let message = "canary ended by a rollback".to_owned();
            push_event(&mut h, "rolled_back", c.revision, message);
            c.version.retire();
            return Ok(find(&h, h.active).expect("the active revision is kept"));
        }
        let target = match to {
            None => h
                .revisions
                .iter()
                .filter(|r| r.id < h.active)
                .max_by_key(|r| r.id)
                .cloned()
                .ok_or(RegistryError::NoPrevious)?,
            Some(sel) => {
                select(&h, sel).ok_or_else(|| RegistryError::NoSuchRevision(sel.into()))?
            }
        };
        if let Some(c) = self.canary.swap(None) {
            c.version.retire();
        }
        self.activate(&mut h, &target);
        let message = format!(
            "version {} is active again",
            target.version.manifest.version
        );
        push_event(&mut h, "rolled_back", target.id, message);
        Ok(target)
    }

    /// Make the canary active for every connection.
    pub fn promote(&self) -> Result<Revision, RegistryError> {
        let mut h = self.history.lock().unwrap();
        let canary = self.canary.load_full().ok_or(RegistryError::NoCanary)?;
        let target = find(&h, canary.revision).ok_or(RegistryError::NoCanary)?;
        self.activate(&mut h, &target);
        self.canary.store(None);
        let message = format!(
            "version {} is active for all",
            target.version.manifest.version
        );
        push_event(&mut h, "canary_promoted", target.id, message);
        Ok(target)
    }

    /// End the canary because it failed; its connections go back to the
    /// active version. `false` if `revision` is no longer the canary.
    pub fn abort_canary(&self, revision: u64, reason: &str) -> bool {
        let mut h = self.history.lock().unwrap();
        match self.canary.load_full() {
            Some(c) if c.revision == revision => {
                self.canary.store(None);
                c.version.retire();
                push_event(&mut h, "canary_rolled_back", revision, reason.to_owned());
                true
            }
            _ => false,
        }
    }

    /// Streams end when this turns `true` (the plugin was removed).
    pub fn unmounted(&self) -> watch::Receiver<bool> {
        self.unmounted.subscribe()
    }

    pub fn is_unmounted(&self) -> bool {
        *self.unmounted.borrow()
    }

    /// The revisions, active version and canary now, to [`put_back`](Self::put_back)
    /// if a change cannot be saved.
    pub fn state(&self) -> SlotState {
        let history = self.history.lock().unwrap().clone();
        SlotState {
            history,
            active: self.active.load_full(),
            canary: self.canary.load_full(),
        }
    }

    /// Undo the changes made since `state` was taken.
    pub fn put_back(&self, state: SlotState) {
        let mut h = self.history.lock().unwrap();
        *h = state.history;
        self.active.store(state.active);
        self.canary.store(state.canary);
    }

    fn activate(&self, h: &mut History, target: &Revision) {
        let old = self.active.swap(target.version.clone());
        h.active = target.id;
        if !Arc::ptr_eq(&old, &target.version) {
            old.retire();
        }
    }

    fn add(&self, h: &mut History, version: Arc<PluginVersion>) -> Revision {
        let rev = Revision {
            id: h.next_id,
            version,
            installed_at: SystemTime::now(),
        };
        h.next_id += 1;
        h.revisions.push_back(rev.clone());
        let canary = self.canary.load().as_ref().map(|c| c.revision);
        while h.revisions.len() > MAX_REVISIONS {
            let keep = |r: &Revision| r.id == h.active || Some(r.id) == canary || r.id == rev.id;
            match h.revisions.iter().position(|r| !keep(r)) {
                Some(i) => drop(h.revisions.remove(i)),
                None => break,
            }
        }
        rev
    }
}

fn find(h: &History, id: u64) -> Option<Revision> {
    h.revisions.iter().find(|r| r.id == id).cloned()
}

fn select(h: &History, sel: &str) -> Option<Revision> {
    let sel = sel.trim();
    let by_id = sel
        .strip_prefix('r')
        .unwrap_or(sel)
        .parse::<u64>()
        .ok()
        .and_then(|id| find(h, id));
    let newest = |f: &dyn Fn(&Revision) -> bool| h.revisions.iter().rev().find(|r| f(r)).cloned();
    by_id
        .or_else(|| newest(&|r| r.version.manifest.version == sel))
        .or_else(|| {
            (sel.len() >= 8 && sel.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| newest(&|r| r.version.sha256.starts_with(&sel.to_ascii_lowercase())))
                .flatten()
        })
}

fn push_event(h: &mut History, kind: &'static str, revision: u64, message: String) {
    let at_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    h.events.push_back(SlotEvent {
        at_ms,
        kind,
        revision,
        message,
    });
    while h.events.len() > MAX_EVENTS {
        h.events.pop_front();
    }
}

/// A slot as it was: see [`PluginSlot::state`].
pub struct SlotState {
    history: History,
    active: Arc<PluginVersion>,
    canary: Option<Arc<Canary>>,
}

/// What the operator configured for a plugin.
#[derive(Debug, Clone, Default)]
pub struct PluginSettings {
    pub mount: Option<String>,
    pub limits: Limits,
    pub config: HashMap<String, String>,
}

/// How a validated version is put in service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollout {
    /// Active for every connection at once.
    Now,
    /// Serves this percentage of new connections until promoted or rolled back.
    Canary(u8),
}

/// Every plugin this node serves.
pub struct Registry {
    engine: Arc<PluginEngine>,
    kv: KvStore,
    presence: Arc<crate::presence::Presence>,
    conns: crate::connstate::ConnStore,
    timers: crate::timers::Timers,
    /// The operator's outbound HTTP settings by plugin name (node config).
    outbound_settings: HashMap<String, crate::outbound::OutboundSettings>,
    /// One client per plugin, shared by its versions (its in-flight cap and counters).
    outbound: Mutex<HashMap<String, Arc<crate::outbound::Outbound>>>,
    /// The operator's call bounds: the default, and by plugin name (node config).
    call_policy: (CallPolicy, HashMap<String, CallPolicy>),
    /// One instance quota per plugin, shared by its versions.
    quotas: Mutex<HashMap<String, Arc<Quota>>>,
    slots: RwLock<BTreeMap<String, Arc<PluginSlot>>>,
}

/// Whether an install mounted a new plugin or replaced a running one.
pub enum Installed {
    New(Arc<PluginSlot>),
    Replaced(Arc<PluginSlot>),
}

impl Installed {
    pub fn slot(&self) -> &Arc<PluginSlot> {
        match self {
            Self::New(s) | Self::Replaced(s) => s,
        }
    }
}

impl Registry {
    pub fn new(engine: Arc<PluginEngine>, kv: KvStore) -> Self {
        Self {
            engine,
            kv,
            presence: crate::presence::Presence::memory("local".into()),
            conns: crate::connstate::ConnStore::default(),
            timers: crate::timers::Timers::default(),
            outbound_settings: HashMap::new(),
            outbound: Mutex::default(),
            call_policy: (CallPolicy::default(), HashMap::new()),
            quotas: Mutex::default(),
            slots: RwLock::default(),
        }
    }

    /// Record presence in `presence` (the node's, possibly cluster-wide).
    pub fn with_presence(mut self, presence: Arc<crate::presence::Presence>) -> Self {
        self.presence = presence;
        self
    }

    /// Let plugins make HTTP requests as `settings` (by plugin name) allow.
    pub fn with_outbound(
        mut self,
        settings: HashMap<String, crate::outbound::OutboundSettings>,
    ) -> Self {
        self.outbound_settings = settings;
        self
    }

    /// Bound every plugin's calls by `default`, or by its entry in `by_name`.
    pub fn with_call_policy(
        mut self,
        default: CallPolicy,
        by_name: HashMap<String, CallPolicy>,
    ) -> Self {
        self.call_policy = (default, by_name);
        self
    }

    /// The call bounds of plugin `name`.
    pub fn call_policy(&self, name: &str) -> CallPolicy {
        let (default, by_name) = &self.call_policy;
        by_name.get(name).copied().unwrap_or(*default)
    }

    fn quota(&self, name: &str) -> Arc<Quota> {
        let max = self.call_policy(name).max_instances;
        self.quotas
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_insert_with(|| Quota::new(max))
            .clone()
    }

    fn outbound(&self, name: &str) -> Arc<crate::outbound::Outbound> {
        let mut clients = self.outbound.lock().unwrap();
        let settings = self
            .outbound_settings
            .get(name)
            .cloned()
            .unwrap_or_default();
        clients
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(crate::outbound::Outbound::new(settings)))
            .clone()
    }

    /// Compiles given up at the engine's compile timeout so far.
    pub fn compile_timeouts(&self) -> u64 {
        self.engine.compile_timeouts()
    }

    /// The plugins' key-value store.
    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    /// Who is in which channel; plugins read it through the `presence` import.
    pub fn presence(&self) -> &Arc<crate::presence::Presence> {
        &self.presence
    }

    /// Compile and validate `wasm` without putting it in service.
    pub async fn prepare(
        &self,
        name: &str,
        wasm: Arc<[u8]>,
        settings: &PluginSettings,
    ) -> Result<Arc<PluginVersion>, LoadError> {
        let spec = LoadSpec {
            name: name.to_owned(),
            limits: settings.limits.clone(),
            config: settings.config.clone(),
            kv: self.kv.space(name),
            presence: self.presence.clone(),
            conns: self.conns.space(name),
            timers: self.timers.space(name),
            outbound: self.outbound(name),
            wall_timeout: self.call_policy(name).wall_timeout,
            quota: self.quota(name),
        };
        let version = PluginVersion::load(self.engine.clone(), wasm, spec).await?;
        if version.manifest.name != name {
            tracing::warn!(plugin = name, manifest = %version.manifest.name, "plugin is served under its given name, not its manifest name");
        }
        Ok(version)
    }

    /// Compile and validate `wasm`, then make it the active version of `name`.
    /// On any error nothing changes.
    pub async fn install(
        &self,
        name: &str,
        wasm: Arc<[u8]>,
        settings: PluginSettings,
    ) -> Result<Installed, LoadError> {
        let version = self.prepare(name, wasm, &settings).await?;
        let (installed, _) = self.deploy(name, settings.mount, version, Rollout::Now)?;
        Ok(installed)
    }

    /// Put a validated version in service as a new revision of `name`.
    pub fn deploy(
        &self,
        name: &str,
        mount: Option<String>,
        version: Arc<PluginVersion>,
        rollout: Rollout,
    ) -> Result<(Installed, Revision), RegistryError> {
        let mut slots = self.slots.write().unwrap();
        let Some(slot) = slots.get(name) else {
            if let Rollout::Canary(_) = rollout {
                return Err(RegistryError::CanaryNeedsActive(name.to_owned()));
            }
            let mount = mount.unwrap_or_else(|| format!("/{name}"));
            if let Some(other) = slots.values().find(|s| s.mount == mount) {
                return Err(RegistryError::MountTaken {
                    mount,
                    by: other.name.clone(),
                });
            }
            let first = Revision {
                id: 1,
                version,
                installed_at: SystemTime::now(),
            };
            let slot = Arc::new(PluginSlot::new(name, mount, first.clone()));
            push_event(
                &mut slot.history.lock().unwrap(),
                "deployed",
                1,
                "mounted".into(),
            );
            slots.insert(name.to_owned(), slot.clone());
            return Ok((Installed::New(slot), first));
        };
        if let Some(mount) = mount.filter(|m| *m != slot.mount) {
            return Err(RegistryError::MountChange {
                mount,
                current: slot.mount.clone(),
            });
        }
        let mut h = slot.history.lock().unwrap();
        let rev = slot.add(&mut h, version);
        match rollout {
            Rollout::Now => {
                if let Some(c) = slot.canary.swap(None) {
                    c.version.retire();
                }
                slot.activate(&mut h, &rev);
                let message = format!("version {} is active", rev.version.manifest.version);
                push_event(&mut h, "deployed", rev.id, message);
            }
            Rollout::Canary(percent) => {
                if let Some(c) = slot.canary.swap(Some(Arc::new(Canary::new(
                    rev.id,
                    rev.version.clone(),
                    percent,
                )))) {
                    c.version.retire();
                }
                let message = format!(
                    "version {} serves {percent} % of new connections",
                    rev.version.manifest.version
                );
                push_event(&mut h, "canary_started", rev.id, message);
            }
        }
        drop(h);
        Ok((Installed::Replaced(slot.clone()), rev))
    }

    /// Recreate a slot from saved revisions (at start, before serving).
    /// `revisions` must contain `active`.
    pub fn restore(
        &self,
        name: &str,
        mount: String,
        mut revisions: Vec<Revision>,
        active: u64,
    ) -> Option<Arc<PluginSlot>> {
        revisions.sort_by_key(|r| r.id);
        let first = revisions.iter().find(|r| r.id == active)?.clone();
        let slot = Arc::new(PluginSlot::new(name, mount, first));
        {
            let mut h = slot.history.lock().unwrap();
            h.next_id = revisions.last().map_or(1, |r| r.id + 1);
            h.revisions = revisions.into();
            for r in &h.revisions {
                if r.id != active {
                    r.version.retire();
                }
            }
        }
        self.slots
            .write()
            .unwrap()
            .insert(name.to_owned(), slot.clone());
        Some(slot)
    }

    /// Take `name` out of service: new connections are refused and streams
    /// listening to [`PluginSlot::unmounted`] end.
    pub fn remove(&self, name: &str) -> Option<Arc<PluginSlot>> {
        let slot = self.detach(name)?;
        self.close(&slot);
        Some(slot)
    }

    /// Take `name` out of the set, nothing more: new connections find no
    /// plugin, open ones keep working until [`close`](Self::close) (or go on
    /// after [`reattach`](Self::reattach)).
    pub fn detach(&self, name: &str) -> Option<Arc<PluginSlot>> {
        self.slots.write().unwrap().remove(name)
    }

    /// Put a detached slot back.
    pub fn reattach(&self, slot: Arc<PluginSlot>) {
        self.slots.write().unwrap().insert(slot.name.clone(), slot);
    }

    /// End a detached slot: its streams end, its timers and connection state go.
    pub fn close(&self, slot: &PluginSlot) {
        slot.unmounted.send_replace(true);
        self.timers.remove(&slot.name);
        self.conns.remove(&slot.name);
    }

    pub fn get(&self, name: &str) -> Option<Arc<PluginSlot>> {
        self.slots.read().unwrap().get(name).cloned()
    }

    pub fn list(&self) -> Vec<Arc<PluginSlot>> {
        self.slots.read().unwrap().values().cloned().collect()
    }
}
