//! Wiring: build the engine, load plugins, mount them, and serve HTTP.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use socketioxide::SocketIo;
use tokio::net::TcpListener;

use crate::auth::{AuthMode, Verifier};
use crate::config::Config;
use crate::gateway;
use crate::plugins::{EngineSettings, Installed, KvStore, PluginEngine, Registry};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the wasm engine: {0}")]
    Engine(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read plugin directory {path}: {source}")]
    PluginDir {
        path: String,
        source: std::io::Error,
    },
    #[error("auth configuration: {0}")]
    Auth(String),
    #[error(
        "auth mode is `required` but no verification key is configured: set --jwt-secret (PORTICO_JWT_SECRET) or use --auth none"
    )]
    NoAuthKey,
}

/// What every part of the node shares. Each responsibility (gateway, SSE,
/// admin, ...) gets its routes from [`router`] with this state.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
    pub verifier: Arc<Verifier>,
    pub io: SocketIo,
}

/// A bound, ready server. [`Server::run`] serves until shutdown.
pub struct Server {
    listener: TcpListener,
    router: Router,
    pub state: AppState,
}

impl Server {
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let verifier = Arc::new(
            Verifier::from_config(&config.auth).map_err(|e| StartError::Auth(e.to_string()))?,
        );
        let needs_key = config.auth.mode == AuthMode::Required
            || config
                .plugins
                .values()
                .any(|p| p.auth == Some(AuthMode::Required));
        if needs_key && !verifier.has_keys() {
            return Err(StartError::NoAuthKey);
        }
        let engine = PluginEngine::new(&EngineSettings {
            max_instances: config.runtime.max_instances,
            max_memory_bytes: (config.runtime.memory_limit_mb << 20).max(
                config
                    .plugins
                    .values()
                    .filter_map(|p| p.memory_limit_mb)
                    .max()
                    .unwrap_or(0)
                    << 20,
            ),
            cache_dir: config.cache_dir.clone(),
            ..EngineSettings::default()
        })
        .map_err(|e| StartError::Engine(format!("{e:#}")))?;
        let registry = Arc::new(Registry::new(
            Arc::new(engine),
            KvStore::memory(config.runtime.kv_max_keys),
        ));

        let s = &config.socketio;
        let (layer, io) = SocketIo::builder()
            .max_payload(s.max_payload)
            .max_buffer_size(s.max_buffer_size)
            .ping_interval(Duration::from_millis(s.ping_interval_ms))
            .ping_timeout(Duration::from_millis(s.ping_timeout_ms))
            .connect_timeout(Duration::from_millis(s.connect_timeout_ms))
            .build_layer();

        load_plugin_dir(&registry, &config).await?;
        for slot in registry.list() {
            let mode = config.auth_mode(&slot.name);
            tracing::info!(plugin = %slot.name, namespace = %slot.mount, version = %slot.active().manifest.version, auth = ?mode, "mounted");
            gateway::mount(&io, slot, mode, verifier.clone());
        }

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let state = AppState {
            config: Arc::new(config),
            registry,
            verifier,
            io,
        };
        let router = router(state.clone())
            .layer(layer)
            // Outside socketioxide's layer, so the request it keeps is the copy.
            .layer(axum::middleware::map_request(gateway::detach_handshake));
        Ok(Self {
            listener,
            router,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serve until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Every HTTP route of the node except Socket.IO (which is a layer).
fn router(_state: AppState) -> Router {
    Router::new().route("/healthz", get(async || "ok"))
}

/// Load every `*.wasm` of the plugin directory. A bad file is reported by name
/// and skipped; the others still load.
async fn load_plugin_dir(registry: &Registry, config: &Config) -> Result<(), StartError> {
    let dir = &config.plugin_dir;
    let read_err = |source| StartError::PluginDir {
        path: dir.display().to_string(),
        source,
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    files.sort();
    for path in files {
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        match load_one(registry, config, &name, &path).await {
            Ok(()) => {}
            Err(reason) => {
                tracing::error!(file = %path.display(), "skipping plugin {name}: {reason}")
            }
        }
    }
    Ok(())
}

async fn load_one(
    registry: &Registry,
    config: &Config,
    name: &str,
    path: &Path,
) -> Result<(), String> {
    let bytes = tokio::fs::read(path).await.map_err(|e| e.to_string())?;
    if bytes.len() > config.runtime.max_plugin_bytes {
        return Err(format!(
            "{} bytes is over the limit of {}",
            bytes.len(),
            config.runtime.max_plugin_bytes
        ));
    }
    match registry
        .install(name, bytes.into(), config.plugin_settings(name))
        .await
        .map_err(|e| e.to_string())?
    {
        Installed::New(slot) | Installed::Replaced(slot) => {
            let v = slot.active();
            tracing::info!(plugin = name, version = %v.manifest.version, sha256 = %&v.sha256[..12], bytes = v.size, "loaded");
        }
    }
    Ok(())
}
