//! The one wasmtime [`Engine`] of the process: configuration, the epoch
//! ticker that enforces CPU deadlines, and compilation with an on-disk cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::error::LoadError;
use super::host_impl::HostState;

/// Engine-wide settings (per-plugin limits are in [`super::Limits`]).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// How often the epoch advances; deadlines are counted in these ticks.
    pub tick: Duration,
    /// Instances that may exist at once, across every plugin (pooling slots).
    pub max_instances: u32,
    /// Largest linear memory any plugin may be configured for.
    pub max_memory_bytes: usize,
    /// Where compiled artifacts are kept; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Compiles that may run at once (each on a blocking thread); more wait.
    pub max_concurrent_compiles: usize,
    /// The longest a compile may take, its wait for a turn included.
    pub compile_timeout: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(5),
            max_instances: 1000,
            max_memory_bytes: 256 << 20,
            cache_dir: None,
            max_concurrent_compiles: 2,
            compile_timeout: Duration::from_secs(60),
        }
    }
}

/// The engine, the linker every plugin is instantiated with, and the ticker.
pub struct PluginEngine {
    pub(super) engine: Engine,
    pub(super) linker: Linker<HostState>,
    pub(super) tick: Duration,
    cache_dir: Option<PathBuf>,
    stop_ticker: Arc<AtomicBool>,
    compiles: Arc<tokio::sync::Semaphore>,
    compile_timeout: Duration,
    compile_timeouts: AtomicU64,
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl PluginEngine {
    pub fn new(settings: &EngineSettings) -> wasmtime::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(settings.max_instances)
            // A Rust component has a few core instances (main module + shims).
            .total_core_instances(settings.max_instances * 4)
            .total_memories(settings.max_instances * 2)
            .total_tables(settings.max_instances * 4)
            .total_stacks(settings.max_instances)
            .max_memory_size(settings.max_memory_bytes);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // `perf` can name plugin functions when the JIT writes /tmp/perf-<pid>.map.
        if std::env::var_os("PORTICO_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        if let Some(dir) = &settings.cache_dir
            && let Err(e) = crate::durable::remove_leftovers(dir)
        {
            tracing::warn!(dir = %dir.display(), "cannot clean the plugin cache: {e}");
        }

        let mut linker = Linker::new(&engine);
        super::bindings::add_to_linker(&mut linker)?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (weak, stop, tick) = (engine.weak(), stop_ticker.clone(), settings.tick);
        std::thread::Builder::new()
            .name("portico-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .expect("spawning the epoch thread");

        Ok(Self {
            engine,
            linker,
            tick: settings.tick,
            cache_dir: settings.cache_dir.clone(),
            stop_ticker,
            compiles: Arc::new(tokio::sync::Semaphore::new(
                settings.max_concurrent_compiles.max(1),
            )),
            compile_timeout: settings.compile_timeout,
            compile_timeouts: AtomicU64::new(0),
        })
    }

    /// Compiles given up at `compile_timeout` so far.
    pub fn compile_timeouts(&self) -> u64 {
        self.compile_timeouts.load(Ordering::Relaxed)
    }

    /// [`compile`](Self::compile) on a blocking thread, at most
    /// `max_concurrent_compiles` at once, given up after `compile_timeout`
    /// (the wait for a turn included). A compile given up on keeps its
    /// thread and its turn until wasmtime returns (it cannot be interrupted),
    /// so the bound on concurrent compiles holds; its result is dropped.
    pub(super) async fn compile_bounded(
        self: &Arc<Self>,
        wasm: Arc<[u8]>,
        sha256: String,
    ) -> Result<Component, LoadError> {
        let deadline = tokio::time::Instant::now() + self.compile_timeout;
        let timed_out = || {
            self.compile_timeouts.fetch_add(1, Ordering::Relaxed);
            LoadError::CompileTimeout(self.compile_timeout.as_millis() as u64)
        };
        let turn = tokio::time::timeout_at(deadline, self.compiles.clone().acquire_owned())
            .await
            .map_err(|_| timed_out())?
            .expect("the compile semaphore is never closed");
        let engine = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            engine.compile(&wasm, &sha256)
        });
        match tokio::time::timeout_at(deadline, task).await {
            Ok(done) => done?,
            Err(_) => Err(timed_out()),
        }
    }

    /// Compile `wasm` (or load its cached artifact). CPU-heavy: call from a blocking thread.
    pub(super) fn compile(&self, wasm: &[u8], sha256: &str) -> Result<Component, LoadError> {
        const CORE_MODULE: [u8; 8] = *b"\0asm\x01\0\0\0";
        const COMPONENT: [u8; 8] = *b"\0asm\x0d\0\x01\0";
        match wasm.get(..8) {
            Some(h) if h == COMPONENT => {}
            Some(h) if h == CORE_MODULE => {
                return Err(LoadError::NotAComponent(
                    "this is a core wasm module; build the plugin for wasm32-wasip2 so it is a component".into(),
                ));
            }
            _ => {
                return Err(LoadError::NotAComponent(
                    "no WebAssembly component header".into(),
                ));
            }
        }
        let cached = self.cache_path(sha256);
        if let Some(path) = &cached
            && let Some(component) = self.load_cached(path)
        {
            return Ok(component);
        }
        let component = Component::new(&self.engine, wasm)
            .map_err(|e| LoadError::NotAComponent(format!("{e:#}")))?;
        if let Some(path) = cached {
            self.store_cached(&path, &component);
        }
        Ok(component)
    }

    /// Artifacts are keyed by the wasm's sha256 and the engine's compatibility
    /// hash, so a wasmtime upgrade or a settings change never loads a stale one.
    fn cache_path(&self, sha256: &str) -> Option<PathBuf> {
        use std::hash::{Hash, Hasher};
        let dir = self.cache_dir.as_ref()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        Some(dir.join(format!("{sha256}-{:016x}.cwasm", h.finish())))
    }

    /// The cached artifact at `path`, if it is whole: its header's length
    /// and sha256 must match what follows (a file cut short by a crash or
    /// damaged on disk is removed and the plugin recompiled; deserializing
    /// it would be undefined behaviour).
    #[allow(unsafe_code)]
    fn load_cached(&self, path: &std::path::Path) -> Option<Component> {
        let file = match std::fs::read(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read cached artifact: {e}");
                return None;
            }
        };
        let Some(artifact) = checked_artifact(&file) else {
            tracing::warn!(path = %path.display(), "cached artifact is damaged or cut short; recompiling");
            let _ = std::fs::remove_file(path);
            return None;
        };
        // SAFETY: `artifact` is byte for byte what this host serialized: the
        // header's sha256 covers every byte, the cache directory is the host's
        // own, and the name binds the wasm hash and the engine settings.
        // wasmtime still checks the format and version.
        match unsafe { Component::deserialize(&self.engine, artifact) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable cached artifact: {e:#}");
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    fn store_cached(&self, path: &std::path::Path, component: &Component) {
        let write = || -> wasmtime::Result<()> {
            let artifact = component.serialize()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            crate::durable::write_atomic(path, &with_header(&artifact))?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), "could not cache compiled plugin: {e:#}");
        }
    }
}

/// Cached artifacts start with this, then the artifact's length (u64, little
/// endian) and its sha256, then the artifact.
const ARTIFACT_MAGIC: &[u8; 8] = b"PORTCWA1";
const ARTIFACT_HEADER: usize = 8 + 8 + 32;

fn with_header(artifact: &[u8]) -> Vec<u8> {
    let mut file = Vec::with_capacity(ARTIFACT_HEADER + artifact.len());
    file.extend_from_slice(ARTIFACT_MAGIC);
    file.extend_from_slice(&(artifact.len() as u64).to_le_bytes());
    file.extend_from_slice(&Sha256::digest(artifact));
    file.extend_from_slice(artifact);
    file
}

/// The artifact inside a cache file, if its header vouches for every byte.
fn checked_artifact(file: &[u8]) -> Option<&[u8]> {
    let header = file.get(..ARTIFACT_HEADER)?;
    let artifact = &file[ARTIFACT_HEADER..];
    let len = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let whole = &header[..8] == ARTIFACT_MAGIC
        && len == artifact.len() as u64
        && Sha256::digest(artifact)[..] == header[16..];
    whole.then_some(artifact)
}

/// Hex sha256 of a plugin's bytes: its identity in caches, versions and the admin API.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo() -> Arc<[u8]> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/wasm32-wasip2/plugin/echo.wasm"
        );
        std::fs::read(path)
            .unwrap_or_else(|e| panic!("{path}: {e}; build the plugins first with `make plugins`"))
            .into()
    }

    fn engine(settings: EngineSettings) -> Arc<PluginEngine> {
        Arc::new(PluginEngine::new(&settings).expect("engine"))
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("portico-cache-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Compile `wasm` with a fresh engine on `dir` (a restart); the cache file.
    fn compile_once(dir: &std::path::Path, wasm: &[u8]) -> PathBuf {
        let e = engine(EngineSettings {
            cache_dir: Some(dir.to_owned()),
            ..EngineSettings::default()
        });
        let sha = sha256_hex(wasm);
        e.compile(wasm, &sha).expect("compiles");
        e.cache_path(&sha).unwrap()
    }

    #[test]
    fn a_damaged_or_cut_short_artifact_is_recompiled_and_rewritten() {
        let dir = scratch("damaged");
        let wasm = echo();
        let path = compile_once(&dir, &wasm);
        let good = std::fs::read(&path).unwrap();
        assert!(checked_artifact(&good).is_some());

        // Cut short, as a crash between write and sync would leave it.
        std::fs::write(&path, &good[..good.len() / 2]).unwrap();
        assert_eq!(compile_once(&dir, &wasm), path);
        assert_eq!(std::fs::read(&path).unwrap(), good, "rewritten whole");

        // One byte flipped in the middle: wasmtime's own checks would not see it.
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x40;
        std::fs::write(&path, &flipped).unwrap();
        compile_once(&dir, &wasm);
        assert_eq!(std::fs::read(&path).unwrap(), good, "rewritten whole");

        // An artifact of the old format (no header) is recompiled too.
        std::fs::write(&path, &good[ARTIFACT_HEADER..]).unwrap();
        compile_once(&dir, &wasm);
        assert_eq!(std::fs::read(&path).unwrap(), good);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_start_removes_temporary_files_left_in_the_cache() {
        let dir = scratch("leftover");
        let leftover = dir.join("abc-0123.tmp4242");
        std::fs::write(&leftover, b"half an artifact").unwrap();
        engine(EngineSettings {
            cache_dir: Some(dir.clone()),
            ..EngineSettings::default()
        });
        assert!(!leftover.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_compile_waits_for_a_turn_and_gives_up_at_its_timeout() {
        let e = engine(EngineSettings {
            max_concurrent_compiles: 1,
            compile_timeout: Duration::from_millis(200),
            ..EngineSettings::default()
        });
        let wasm = echo();
        let sha = sha256_hex(&wasm);
        // Another compile holds the only turn.
        let turn = e.compiles.clone().acquire_owned().await.unwrap();
        let started = std::time::Instant::now();
        let err = e
            .compile_bounded(wasm.clone(), sha.clone())
            .await
            .expect_err("no turn within the timeout");
        assert!(matches!(err, LoadError::CompileTimeout(200)), "{err:?}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(e.compile_timeouts(), 1);
        drop(turn);
        assert_eq!(e.compiles.available_permits(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_compile_over_its_timeout_fails_and_keeps_its_turn_until_done() {
        let e = engine(EngineSettings {
            compile_timeout: Duration::from_millis(1),
            max_concurrent_compiles: 1,
            ..EngineSettings::default()
        });
        let wasm = echo();
        let err = e
            .compile_bounded(wasm.clone(), sha256_hex(&wasm))
            .await
            .expect_err("echo does not compile in 1 ms");
        assert!(matches!(err, LoadError::CompileTimeout(1)), "{err:?}");
        // The abandoned compile still runs and holds the one turn.
        assert_eq!(e.compiles.available_permits(), 0);
        let turn = tokio::time::timeout(Duration::from_secs(60), e.compiles.acquire())
            .await
            .expect("the abandoned compile ends");
        drop(turn);
    }
}
