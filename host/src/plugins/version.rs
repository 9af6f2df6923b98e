//! One loaded version of a plugin: its compiled component, its `InstancePre`,
//! and a pool of warm instances reused across calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use wasmtime::component::Component;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::{Instance, Pre};
use super::engine::{PluginEngine, sha256_hex};
use super::error::{CallError, LoadError};
use super::host_impl::{HostState, MemoryCap};
use super::kv::KvSpace;
use super::stats::Histogram;
use super::types::{Action, Connection, Event, Manifest, Rejection, TimerEvent};

/// How instances are used for calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Reuse warm instances across calls (fast; state in linear memory survives between calls).
    #[default]
    Pooled,
    /// A fresh instance for every call, which carries one connection's queued
    /// events (no state can leak between calls; an instantiation costs about
    /// twenty warm calls).
    Fresh,
}

/// Per-plugin resource limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// CPU time one call may take before it is interrupted.
    pub call_timeout: Duration,
    /// Linear memory cap of one instance.
    pub memory_bytes: usize,
    pub isolation: Isolation,
    /// Idle instances kept warm.
    pub max_warm: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_millis(100),
            memory_bytes: 32 << 20,
            isolation: Isolation::Pooled,
            max_warm: 16,
        }
    }
}

/// Bounds the node's operator sets per plugin name (`runtime.call_wall_timeout_ms`,
/// `runtime.max_instances_per_plugin`, `[plugins.<name>]`), whatever revision
/// serves it: they hold for uploaded, restored and replicated versions alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallPolicy {
    /// Wall time one call may take, host calls (KV, outbound HTTP) and
    /// instantiation included; past it the call fails and its instance is dropped.
    pub wall_timeout: Duration,
    /// Instances of the plugin (all its versions, warm or in a call) alive at once.
    pub max_instances: usize,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            wall_timeout: Duration::from_secs(10),
            max_instances: 250,
        }
    }
}

/// How many instances of one plugin are alive, against its cap. Shared by
/// the plugin's versions; every instance holds a [`QuotaSlot`].
#[derive(Debug)]
pub(super) struct Quota {
    max: usize,
    alive: AtomicUsize,
}

impl Quota {
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            alive: AtomicUsize::new(0),
        })
    }

    fn take(self: &Arc<Self>) -> Result<QuotaSlot, CallError> {
        self.alive
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .map_err(|_| CallError::Busy(self.max))?;
        Ok(QuotaSlot(self.clone()))
    }
}

/// One instance's place in its plugin's [`Quota`]; given back on drop.
struct QuotaSlot(Arc<Quota>);

impl Drop for QuotaSlot {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Live counters of a plugin version.
#[derive(Debug, Default)]
pub struct Counters {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    /// Calls stopped at their wall-clock deadline (`call_wall_timeout_ms`).
    pub wall_timeouts: AtomicU64,
    /// Calls refused because the plugin had `max_instances` instances alive.
    pub busy: AtomicU64,
    pub memory_limit_hits: AtomicU64,
    pub traps: AtomicU64,
    pub instances_created: AtomicU64,
    /// Client events handled (`on-event` calls).
    pub events: AtomicU64,
    /// Wall time of every call, instantiation included.
    pub call_time: Histogram,
}

struct Warm {
    store: Store<HostState>,
    instance: Instance,
    _slot: QuotaSlot,
}

/// What one call answers: actions, or a rejection the client sees.
pub type Answer = Result<Vec<Action>, Rejection>;

/// A compiled, validated plugin version ready to serve calls.
pub struct PluginVersion {
    pub name: String,
    pub manifest: Manifest,
    pub sha256: String,
    pub size: usize,
    /// The component's bytes, kept so the data directory can save any
    /// revision (plugins from `--plugins` included) and rollback needs no file.
    pub wasm: Arc<[u8]>,
    pub loaded_at: SystemTime,
    pub limits: Limits,
    pub config: Arc<HashMap<String, String>>,
    pub counters: Counters,
    engine: Arc<PluginEngine>,
    pre: Pre,
    kv: KvSpace,
    presence: Arc<crate::presence::Presence>,
    conns: crate::connstate::ConnSpace,
    timers: crate::timers::TimerSpace,
    outbound: Arc<crate::outbound::Outbound>,
    version_label: Arc<str>,
    warm: Mutex<Vec<Warm>>,
    wall_timeout: Duration,
    quota: Arc<Quota>,
}

/// Everything needed to load a version besides its bytes.
pub struct LoadSpec {
    pub name: String,
    pub limits: Limits,
    pub config: HashMap<String, String>,
    pub kv: KvSpace,
    pub presence: Arc<crate::presence::Presence>,
    pub conns: crate::connstate::ConnSpace,
    pub timers: crate::timers::TimerSpace,
    pub outbound: Arc<crate::outbound::Outbound>,
    pub wall_timeout: Duration,
    pub(super) quota: Arc<Quota>,
}

impl PluginVersion {
    /// Compile, link and validate a plugin; `describe()` must succeed within limits.
    pub async fn load(
        engine: Arc<PluginEngine>,
        wasm: Arc<[u8]>,
        spec: LoadSpec,
    ) -> Result<Arc<Self>, LoadError> {
        let sha256 = sha256_hex(&wasm);
        let component: Component = engine.compile_bounded(wasm.clone(), sha256.clone()).await?;

        // Unknown imports (the WASI interfaces std pulls in) trap when called:
        // a plugin gets no files, network, environment or clock beyond ours.
        let mut linker = engine.linker.clone();
        define_hash_seed(&engine.engine, &mut linker, &component)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let pre = Pre::new(&engine.engine, &component, instance_pre)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;

        let mut version = Self {
            name: spec.name,
            manifest: Manifest {
                name: String::new(),
                version: String::new(),
                description: String::new(),
                events: vec![],
            },
            sha256,
            size: wasm.len(),
            wasm: wasm.clone(),
            loaded_at: SystemTime::now(),
            limits: spec.limits,
            config: Arc::new(spec.config),
            counters: Counters::default(),
            engine,
            pre,
            kv: spec.kv,
            presence: spec.presence,
            conns: spec.conns,
            timers: spec.timers,
            outbound: spec.outbound,
            version_label: Arc::from("?"),
            warm: Mutex::new(Vec::new()),
            wall_timeout: spec.wall_timeout,
            // Validation does not count against the plugin's quota: a fixed
            // version can be deployed while every instance of the old one is stuck.
            quota: Quota::new(1),
        };
        let manifest = match version.describe().await {
            Ok(m) => m,
            Err(e) => return Err(LoadError::Describe(e.to_string())),
        };
        validate_manifest(&manifest).map_err(LoadError::Describe)?;
        version.version_label = Arc::from(manifest.version.as_str());
        version.manifest = manifest;
        // Instances made before the manifest was known carry a placeholder version label.
        version.warm.get_mut().unwrap().clear();
        version.quota = spec.quota;
        Ok(Arc::new(version))
    }

    async fn describe(&self) -> Result<Manifest, CallError> {
        self.bounded(async {
            let mut w = self.checkout().await?;
            let r = w.instance.describe(&mut w.store).await;
            self.finish(w, r)
        })
        .await
    }

    pub async fn on_connect(&self, conn: &Connection) -> Result<Answer, CallError> {
        self.bounded(async {
            let mut w = self.checkout().await?;
            let r = w.instance.on_connect(&mut w.store, conn).await;
            self.finish(w, r)
        })
        .await
    }

    /// One event; see [`on_events`](Self::on_events).
    pub async fn on_event(&self, conn: &Connection, event: Event) -> Result<Answer, CallError> {
        let mut answers = self.on_events(conn, vec![event]).await?;
        Ok(answers.pop().expect("one answer per event"))
    }

    /// Events of one connection, in order, in one call (a 0.1.0 plugin gets
    /// one call per event); one answer per event. A failed call fails them all.
    pub async fn on_events(
        &self,
        conn: &Connection,
        events: Vec<Event>,
    ) -> Result<Vec<Answer>, CallError> {
        let n = events.len() as u64;
        self.counters.events.fetch_add(n, Ordering::Relaxed);
        self.bounded(async {
            let mut w = self.checkout().await?;
            let r = w.instance.on_events(&mut w.store, conn, events).await;
            self.finish(w, r)
        })
        .await
    }

    pub async fn on_disconnect(
        &self,
        conn: &Connection,
        reason: &str,
    ) -> Result<Vec<Action>, CallError> {
        self.bounded(async {
            let mut w = self.checkout().await?;
            let r = w.instance.on_disconnect(&mut w.store, conn, reason).await;
            self.finish(w, r)
        })
        .await
    }

    pub async fn on_subscribe(
        &self,
        conn: &Connection,
        channel: &str,
    ) -> Result<Result<(), Rejection>, CallError> {
        self.bounded(async {
            let mut w = self.checkout().await?;
            let r = w.instance.on_subscribe(&mut w.store, conn, channel).await;
            self.finish(w, r)
        })
        .await
    }

    /// A timer of this plugin fired. `None` from a 0.1.0 plugin (it has no timers).
    pub async fn on_timer(&self, timer: &TimerEvent) -> Result<Option<Vec<Action>>, CallError> {
        self.bounded(async {
            let mut w = self.checkout().await?;
            let r = w.instance.on_timer(&mut w.store, timer).await;
            self.finish(w, r)
        })
        .await
    }

    /// The contract version the plugin was built against (`0.1.0`, `0.2.0`, `0.3.0`).
    pub fn contract(&self) -> &'static str {
        self.pre.contract()
    }

    /// Whether several events go to the plugin in one call (`on-events`,
    /// 0.2.0 on). A 0.1.0 plugin gets one call per event, so a batch for it
    /// would only tie the events' fates together.
    pub fn takes_event_lists(&self) -> bool {
        self.contract() != "0.1.0"
    }

    /// The plugin's connections on this node and their state.
    pub fn connections(&self) -> &crate::connstate::ConnSpace {
        &self.conns
    }

    /// The plugin's timers.
    pub fn timers(&self) -> &crate::timers::TimerSpace {
        &self.timers
    }

    /// The plugin's outbound HTTP (its counters by origin).
    pub fn outbound(&self) -> &Arc<crate::outbound::Outbound> {
        &self.outbound
    }

    /// Instances currently idle in the pool.
    pub fn warm_instances(&self) -> usize {
        self.warm.lock().unwrap().len()
    }

    /// Instances of this plugin alive now (every version, warm or in a call).
    pub fn instances_alive(&self) -> usize {
        self.quota.alive.load(Ordering::Acquire)
    }

    /// Failed calls (traps, timeouts, memory-limit hits, no instance) so far.
    pub fn failures(&self) -> u64 {
        self.counters.errors.load(Ordering::Relaxed)
    }

    /// Drop the idle instances of a version that no longer takes new calls
    /// (kept for rollback): they would only hold pooling-allocator slots.
    pub fn retire(&self) {
        self.warm.lock().unwrap().clear();
    }

    /// Run one call within the wall-clock deadline. Past it the call's
    /// future is dropped, and with it the instance (its store, possibly in
    /// the middle of a host call): a timed-out instance is never reused.
    async fn bounded<R>(
        &self,
        call: impl std::future::Future<Output = Result<R, CallError>>,
    ) -> Result<R, CallError> {
        let started = std::time::Instant::now();
        match tokio::time::timeout(self.wall_timeout, call).await {
            Ok(r) => r,
            Err(_) => {
                self.counters.call_time.record(started.elapsed());
                let err = CallError::WallTimeout(self.wall_timeout.as_millis() as u64);
                self.count(&err);
                tracing::warn!(plugin = %self.name, version = %self.version_label, kind = err.kind(), "plugin call failed: {err}");
                Err(err)
            }
        }
    }

    /// A warm instance (or a new one, within the plugin's quota), armed for one call.
    async fn checkout(&self) -> Result<Warm, CallError> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let pooled = self.warm.lock().unwrap().pop();
        let mut warm = match pooled {
            Some(w) => w,
            None => self.instantiate().await.inspect_err(|e| {
                self.count(e);
                self.counters.call_time.record(started.elapsed());
            })?,
        };
        warm.store.data_mut().started = started;
        self.arm(&mut warm.store);
        Ok(warm)
    }

    /// Return the instance to the pool after a good call; drop it after a
    /// failed one (a trapped instance cannot be entered again).
    fn finish<R>(&self, warm: Warm, result: wasmtime::Result<R>) -> Result<R, CallError> {
        self.counters
            .call_time
            .record(warm.store.data().started.elapsed());
        match result {
            Ok(r) => {
                if self.limits.isolation == Isolation::Pooled {
                    let mut pool = self.warm.lock().unwrap();
                    if pool.len() < self.limits.max_warm {
                        pool.push(warm);
                    }
                }
                Ok(r)
            }
            Err(e) => {
                let err = self.classify(e, &warm.store);
                self.count(&err);
                tracing::warn!(plugin = %self.name, version = %self.version_label, kind = err.kind(), "plugin call failed: {err}");
                Err(err)
            }
        }
    }

    async fn instantiate(&self) -> Result<Warm, CallError> {
        let slot = self.quota.take()?;
        let state = HostState {
            plugin: Arc::from(self.name.as_str()),
            version: self.version_label.clone(),
            kv: self.kv.clone(),
            presence: self.presence.clone(),
            config: self.config.clone(),
            conns: self.conns.clone(),
            timers: self.timers.clone(),
            outbound: self.outbound.clone(),
            started: std::time::Instant::now(),
            limiter: MemoryCap {
                max_bytes: self.limits.memory_bytes,
                hit: false,
            },
            ticks_used: 0,
            tick_budget: 1,
        };
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut cx| {
            let s = cx.data_mut();
            s.ticks_used += 1;
            // Yield at every tick so a long call never starves the tokio
            // worker; interrupt once the call's budget is spent.
            Ok(if s.ticks_used >= s.tick_budget {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        self.arm(&mut store);
        self.counters
            .instances_created
            .fetch_add(1, Ordering::Relaxed);
        match self.pre.instantiate(&mut store).await {
            Ok(instance) => Ok(Warm {
                store,
                instance,
                _slot: slot,
            }),
            Err(e) => match self.classify(e, &store) {
                CallError::Trap(m) => Err(CallError::Unavailable(m)),
                other => Err(other),
            },
        }
    }

    /// Reset the CPU budget before a call: the epoch deadline must be set
    /// before every entry (a fresh store's deadline is already past).
    fn arm(&self, store: &mut Store<HostState>) {
        let tick = self.engine.tick.as_millis().max(1);
        let budget = (self.limits.call_timeout.as_millis().div_ceil(tick) as u64).max(1) + 1;
        let s = store.data_mut();
        s.ticks_used = 0;
        s.tick_budget = budget;
        store.set_epoch_deadline(1);
    }

    fn classify(&self, error: wasmtime::Error, store: &Store<HostState>) -> CallError {
        if store.data().limiter.hit {
            return CallError::MemoryLimit(self.limits.memory_bytes);
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => {
                CallError::Timeout(self.limits.call_timeout.as_millis() as u64)
            }
            Some(trap) => CallError::Trap(trap.to_string()),
            None => CallError::Trap(format!("{:#}", error.root_cause())),
        }
    }

    fn count(&self, err: &CallError) {
        let c = &self.counters;
        c.errors.fetch_add(1, Ordering::Relaxed);
        match err {
            CallError::Timeout(_) => &c.timeouts,
            CallError::WallTimeout(_) => &c.wall_timeouts,
            CallError::Busy(_) => &c.busy,
            CallError::MemoryLimit(_) => &c.memory_limit_hits,
            CallError::Trap(_) | CallError::Unavailable(_) => &c.traps,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

/// std's `HashMap` asks `wasi:random/insecure-seed` for its hash keys. That
/// import grants nothing (it is not a secure random source), so plugins get
/// it rather than a trap on first use of a `HashMap`.
fn define_hash_seed(
    engine: &wasmtime::Engine,
    linker: &mut wasmtime::component::Linker<HostState>,
    component: &Component,
) -> wasmtime::Result<()> {
    use std::hash::{BuildHasher, RandomState};
    let names: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .filter(|name| name.starts_with("wasi:random/insecure-seed@"))
        .collect();
    for name in names {
        linker
            .instance(&name)?
            .func_wrap("insecure-seed", |_, (): ()| {
                let seed = RandomState::new();
                Ok(((seed.hash_one(1u8), seed.hash_one(2u8)),))
            })?;
    }
    Ok(())
}

fn validate_manifest(m: &Manifest) -> Result<(), String> {
    let name_ok = !m.name.is_empty()
        && m.name.len() <= 64
        && m.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(format!(
            "manifest name {:?} must be 1-64 chars of a-z, 0-9, '-' or '_'",
            m.name
        ));
    }
    if m.version.is_empty() || m.version.len() > 64 {
        return Err("manifest version must be 1-64 characters".into());
    }
    for e in &m.events {
        if let Some(schema) = &e.schema_json
            && serde_json::from_str::<serde_json::Value>(schema).is_err()
        {
            return Err(format!("schema of event {:?} is not valid JSON", e.name));
        }
    }
    Ok(())
}
