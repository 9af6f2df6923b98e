//! One loaded version of a plugin: its compiled component, its `InstancePre`,
//! and a pool of warm instances reused across calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use wasmtime::component::Component;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::{self, PluginBindings, PluginBindingsPre};
use super::engine::{PluginEngine, sha256_hex};
use super::error::{CallError, LoadError};
use super::host_impl::{HostState, MemoryCap};
use super::kv::KvSpace;
use super::stats::Histogram;
use super::types::{Action, Connection, Event, Manifest, Rejection};

/// How instances are used for calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Reuse warm instances across calls (fast; state in linear memory survives between calls).
    #[default]
    Pooled,
    /// A fresh instance for every call (no state can leak between messages; ~10x slower).
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

/// Live counters of a plugin version.
#[derive(Debug, Default)]
pub struct Counters {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
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
    bindings: PluginBindings,
}

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
    pre: PluginBindingsPre<HostState>,
    kv: KvSpace,
    presence: Arc<crate::presence::Presence>,
    version_label: Arc<str>,
    warm: Mutex<Vec<Warm>>,
}

/// Call export `$method` of the `handler` interface on a warm instance of
/// version `$v`, timed: each export keeps its own argument and result types.
macro_rules! call {
    ($v:expr, $method:ident($($arg:expr),*)) => {{
        let v = $v;
        let started = std::time::Instant::now();
        let outcome = match v.checkout().await {
            Ok(mut warm) => {
                let handler = warm.bindings.portico_plugin_handler();
                let result = handler.$method(&mut warm.store, $($arg),*).await;
                v.checkin(warm, result)
            }
            Err(e) => Err(e),
        };
        v.counters.call_time.record(started.elapsed());
        outcome
    }};
}

/// Everything needed to load a version besides its bytes.
pub struct LoadSpec {
    pub name: String,
    pub limits: Limits,
    pub config: HashMap<String, String>,
    pub kv: KvSpace,
    pub presence: Arc<crate::presence::Presence>,
}

impl PluginVersion {
    /// Compile, link and validate a plugin; `describe()` must succeed within limits.
    pub async fn load(
        engine: Arc<PluginEngine>,
        wasm: Arc<[u8]>,
        spec: LoadSpec,
    ) -> Result<Arc<Self>, LoadError> {
        let sha256 = sha256_hex(&wasm);
        let (compiled_engine, bytes, sha) = (engine.clone(), wasm.clone(), sha256.clone());
        let component: Component =
            tokio::task::spawn_blocking(move || compiled_engine.compile(&bytes, &sha)).await??;

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
        let pre = PluginBindingsPre::new(instance_pre)
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
            version_label: Arc::from("?"),
            warm: Mutex::new(Vec::new()),
        };
        let manifest = match call!(&version, call_describe()) {
            Ok(m) => bindings::manifest(m),
            Err(e) => return Err(LoadError::Describe(e.to_string())),
        };
        validate_manifest(&manifest).map_err(LoadError::Describe)?;
        version.version_label = Arc::from(manifest.version.as_str());
        version.manifest = manifest;
        // Instances made before the manifest was known carry a placeholder version label.
        version.warm.get_mut().unwrap().clear();
        Ok(Arc::new(version))
    }

    pub async fn on_connect(
        &self,
        conn: &Connection,
    ) -> Result<Result<Vec<Action>, Rejection>, CallError> {
        let conn = bindings::connection(conn);
        let answer = call!(self, call_on_connect(&conn))?;
        Ok(answer.map(bindings::actions).map_err(bindings::rejection))
    }

    pub async fn on_event(
        &self,
        conn: &Connection,
        event: Event,
    ) -> Result<Result<Vec<Action>, Rejection>, CallError> {
        self.counters.events.fetch_add(1, Ordering::Relaxed);
        let (conn, event) = (bindings::connection(conn), bindings::event(event));
        let answer = call!(self, call_on_event(&conn, &event))?;
        Ok(answer.map(bindings::actions).map_err(bindings::rejection))
    }

    pub async fn on_disconnect(
        &self,
        conn: &Connection,
        reason: &str,
    ) -> Result<Vec<Action>, CallError> {
        let conn = bindings::connection(conn);
        Ok(bindings::actions(call!(
            self,
            call_on_disconnect(&conn, reason)
        )?))
    }

    pub async fn on_subscribe(
        &self,
        conn: &Connection,
        channel: &str,
    ) -> Result<Result<(), Rejection>, CallError> {
        let conn = bindings::connection(conn);
        let answer = call!(self, call_on_subscribe(&conn, channel))?;
        Ok(answer.map_err(bindings::rejection))
    }

    /// Instances currently idle in the pool.
    pub fn warm_instances(&self) -> usize {
        self.warm.lock().unwrap().len()
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

    /// A warm instance (or a new one), its CPU budget armed.
    async fn checkout(&self) -> Result<Warm, CallError> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let pooled = self.warm.lock().unwrap().pop();
        let mut warm = match pooled {
            Some(w) => w,
            None => self.instantiate().await.inspect_err(|e| self.count(e))?,
        };
        self.arm(&mut warm.store);
        Ok(warm)
    }

    /// After a call: keep the instance warm, or drop it and count the failure.
    fn checkin<T>(&self, warm: Warm, result: wasmtime::Result<T>) -> Result<T, CallError> {
        match result {
            Ok(response) => {
                if self.limits.isolation == Isolation::Pooled {
                    let mut pool = self.warm.lock().unwrap();
                    if pool.len() < self.limits.max_warm {
                        pool.push(warm);
                    }
                }
                Ok(response)
            }
            // A trapped instance cannot be entered again: it is dropped here.
            Err(e) => {
                let err = self.classify(e, &warm.store);
                self.count(&err);
                tracing::warn!(plugin = %self.name, version = %self.version_label, kind = err.kind(), "plugin call failed: {err}");
                Err(err)
            }
        }
    }

    async fn instantiate(&self) -> Result<Warm, CallError> {
        let state = HostState {
            plugin: Arc::from(self.name.as_str()),
            version: self.version_label.clone(),
            kv: self.kv.clone(),
            presence: self.presence.clone(),
            config: self.config.clone(),
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
        match self.pre.instantiate_async(&mut store).await {
            Ok(bindings) => Ok(Warm { store, bindings }),
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
