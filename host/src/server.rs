//! Wiring: build the engine, load plugins, mount them, and serve HTTP.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use socketioxide::SocketIo;
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};

use crate::admin::Admin;
use crate::auth::{AuthMode, Verifier};
use crate::channels::{HistoryLimits, Hub, HubSettings};
use crate::cluster::{
    Adapter, COMMAND_TIMEOUT, ClusterDriver, ClusterError, Redis, RedisKv, RedisPresence, Streams,
};
use crate::config::Config;
use crate::gateway::{self, Gateway, Io};
use crate::ops;
use crate::plugins::{EngineSettings, Installed, KvStore, PluginEngine, Registry};
use crate::presence::Presence;
use crate::{publish, sse};

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
    #[error("cluster: {0}")]
    Cluster(ClusterError),
    #[error(transparent)]
    Mount(crate::gateway::MountError),
    #[error("data directory: {0}")]
    DataDir(#[from] crate::admin::StoreError),
    #[error("auth configuration: {0}")]
    Auth(String),
    #[error("cors configuration: {0}")]
    Cors(String),
    #[error(
        "auth mode is `required` but no verification key is configured: set --jwt-secret (PORTICO_JWT_SECRET) or use --auth none"
    )]
    NoAuthKey,
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// What every part of the node shares. Each responsibility (gateway, SSE,
/// admin, ...) gets its routes from [`router`] with this state.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
    pub verifier: Arc<Verifier>,
    pub io: Io,
    /// The Redis connection in cluster mode.
    pub redis: Option<Redis>,
    pub gateway: Arc<Gateway>,
    /// Channels' ids, history and SSE subscribers.
    pub channels: Arc<Hub>,
    pub admin: Arc<Admin>,
    /// Prometheus metrics (`/metrics`).
    pub metrics: Arc<ops::Metrics>,
}

/// A bound, ready server. [`Server::run`] serves until shutdown.
pub struct Server {
    listener: crate::net::Listener,
    router: Router,
    /// The admin API's own listener, when `[admin] listen` is set.
    admin: Option<(crate::net::Listener, Router)>,
    pub state: AppState,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Server {
    pub async fn bind(mut config: Config) -> Result<Self, StartError> {
        if config.cache_dir.is_none()
            && let Some(data) = &config.data_dir
        {
            config.cache_dir = Some(data.join("cache"));
        }
        let admin = Arc::new(Admin::new(&config)?);
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
        let (driver, kv, redis) = match &config.cluster.redis_url {
            None => (
                ClusterDriver::Local,
                KvStore::memory(config.runtime.kv_max_keys),
                None,
            ),
            Some(url) => {
                let wait = Duration::from_secs(config.cluster.connect_wait_secs);
                let redis = Redis::connect(url, wait)
                    .await
                    .map_err(StartError::Cluster)?;
                tracing::info!(node = %node_id(&config), "cluster mode over {url}");
                let kv = KvStore::redis(RedisKv::new(redis.clone()));
                (ClusterDriver::redis(redis.clone()), kv, Some(redis))
            }
        };
        let presence = match &redis {
            None => Presence::memory(node_id(&config)),
            Some(r) => {
                let ttl = Duration::from_millis(config.cluster.node_ttl_ms);
                let p = Presence::redis(
                    node_id(&config),
                    RedisPresence::new(r.clone(), node_id(&config), ttl),
                );
                p.spawn_heartbeat();
                p
            }
        };
        let registry =
            Arc::new(Registry::new(Arc::new(engine), kv).with_presence(presence.clone()));
        let adapter = RedisAdapterCtr::new_with_driver(
            driver.clone(),
            RedisAdapterConfig::new()
                .with_prefix("portico")
                .with_request_timeout(COMMAND_TIMEOUT),
        );

        let s = &config.socketio;
        let (layer, io) = SocketIo::builder()
            .with_adapter::<Adapter>(adapter)
            .max_payload(s.max_payload)
            // The same cap on WebSocket messages (engine.io applies max_payload to polling only).
            .ws_max_message_size(s.max_payload as usize)
            .ws_max_frame_size(s.max_payload as usize)
            .max_buffer_size(s.max_buffer_size)
            .ping_interval(Duration::from_millis(s.ping_interval_ms))
            .ping_timeout(Duration::from_millis(s.ping_timeout_ms))
            .connect_timeout(Duration::from_millis(s.connect_timeout_ms))
            // socketioxide's own defaults (10 MB, 10,000 attachments, 60 s)
            // apply before any token is checked.
            .with_parser(
                socketioxide::ParserConfig::common()
                    .max_incoming_binary_buf_size(s.max_payload as usize)
                    .max_incoming_binaries(s.max_attachments)
                    .packet_completion_timeout(Duration::from_millis(s.attachment_timeout_ms)),
            )
            .build_layer();

        let tls = crate::tls::server_config(config.tls.cert.as_deref(), config.tls.key.as_deref())?;
        let hub_settings = HubSettings {
            history: HistoryLimits {
                size: config.sse.history_size,
                max_bytes: config.sse.history_max_bytes,
                max_age: Duration::from_secs(config.sse.history_max_age_secs),
            },
            buffer: config.sse.buffer,
        };
        // Cluster mode: channels go through one Redis Stream per plugin.
        let streams = redis
            .as_ref()
            .map(|r| Arc::new(Streams::new(r.clone(), config.sse.history_size)));
        let channels = Arc::new(
            Hub::with_streams(hub_settings, streams.clone()).with_stream_caps(
                config.sse.max_streams_per_ip,
                config.sse.max_streams_per_subject,
            ),
        );
        if let (Some(streams), Some(url)) = (streams, &config.cluster.redis_url) {
            streams
                .spawn_reader(url, Arc::downgrade(&channels))
                .await
                .map_err(StartError::Cluster)?;
        }

        channels.spawn_sweeper(Duration::from_secs(
            config.sse.history_max_age_secs.clamp(1, 60),
        ));

        // The data directory first: its state wins for the names it has.
        if let Some(store) = admin.data_dir() {
            let restored = store.restore(&registry).await?;
            tracing::info!(dir = %store.root().display(), plugins = restored.slots.len(), "restored the plugin set");
            admin.set_removed(restored.removed);
        }
        load_plugin_dir(&registry, &config, &admin).await?;
        // Cluster mode: the cluster's plugin set wins for the names it has.
        if let Some(redis) = &redis {
            admin
                .join_cluster(redis, node_id(&config), &registry)
                .await
                .map_err(StartError::Cluster)?;
        }
        let config = Arc::new(config);
        let metrics = Arc::new(ops::Metrics::new(ops::Sources {
            registry: registry.clone(),
            hub: channels.clone(),
            io: io.clone(),
            cluster: driver,
            redis: redis.clone(),
        }));
        let s = &config.socketio;
        let sessions = crate::net::SessionGate::new(
            crate::net::PendingSessions::new(
                s.max_pending_sessions,
                s.max_pending_sessions_per_ip,
                // socketioxide starts its clock a little later (after the upgrade).
                Duration::from_millis(s.connect_timeout_ms) + Duration::from_secs(1),
            ),
            &metrics,
        );
        let gateway = Arc::new(
            Gateway::new(
                io.clone(),
                verifier.clone(),
                channels.clone(),
                config.clone(),
                metrics.clone(),
            )
            .with_presence(presence)
            .with_pending_sessions(sessions.pending.clone()),
        );
        for slot in registry.list() {
            gateway.mount(slot).await.map_err(StartError::Mount)?;
        }
        let cors = cors_layer(&config.cors)?;

        let net = crate::net::Plan::new(&config.net, &metrics);
        let listener = net
            .bind(config.listen, tls.clone(), false)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let state = AppState {
            config,
            registry,
            gateway,
            verifier,
            io,
            redis,
            channels,
            admin,
            metrics,
        };
        crate::admin::replicate::spawn(state.clone());
        let admin = match state.config.admin.listen {
            Some(addr) => {
                let l = net
                    .bind(addr, None, true)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?;
                Some((l, crate::admin::router(state.clone())))
            }
            None => None,
        };
        let mut router = router(state.clone());
        if admin.is_none() {
            router = router.merge(crate::admin::router(state.clone()));
        }
        let router = router
            .layer(layer)
            .layer(axum::middleware::from_fn_with_state(
                sessions,
                crate::net::admit_sessions,
            ))
            // Outside socketioxide's layer, so the request it keeps is the copy.
            .layer(axum::middleware::map_request(gateway::detach_handshake))
            .layer(cors)
            // Per-request spans and events at debug level (`PORTICO_LOG=tower_http=debug`).
            .layer(tower_http::trace::TraceLayer::new_for_http());
        Ok(Self {
            listener,
            router,
            admin,
            state,
            tls,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where the admin API listens, when it has its own listener.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// `http://HOST:PORT`, or `https://` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr())
    }

    /// Serve until `shutdown` resolves, then shut down gracefully: stop
    /// accepting, end SSE streams, close every Socket.IO connection (clients
    /// see `transport close` and reconnect, to another node behind a load
    /// balancer), let queued plugin calls finish, and return once all is done
    /// or `[shutdown] grace_secs` after the signal, whichever comes first.
    ///
    /// HTTP/1.1 and HTTP/2 (h2c with prior knowledge) on a plain listener;
    /// with TLS, ALPN picks `h2` or `http/1.1` (see [`crate::net`]).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use futures::FutureExt;
        let grace = Duration::from_secs(self.state.config.shutdown.grace_secs);
        let signal = shutdown.shared();
        let state = self.state.clone();
        tokio::spawn({
            let signal = signal.clone();
            async move {
                signal.await;
                tracing::info!(
                    grace_secs = grace.as_secs(),
                    "shutting down: closing connections"
                );
                state.channels.close();
                // ClosingServer closes each transport: the official client
                // reports `transport close` and reconnects (a DISCONNECT
                // packet, `io server disconnect`, would not).
                state.io.close().await;
            }
        });
        if let Some((listener, router)) = self.admin {
            tokio::spawn(listener.serve(router, signal.clone()));
        }
        let serve = async {
            self.listener.serve(self.router, signal.clone()).await;
            std::io::Result::Ok(())
        };
        let in_flight = self.state.gateway.in_flight().clone();
        let finished = async {
            serve.await?;
            in_flight.idle().await;
            std::io::Result::Ok(())
        };
        let deadline = async {
            signal.clone().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            res = finished => {
                tracing::info!("shut down cleanly");
                res
            }
            () = deadline => {
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    plugin_work_in_flight = in_flight.count(),
                    "shutdown grace period over with work still open; exiting anyway"
                );
                Ok(())
            }
        }
    }
}

/// This node's name: configured, else `<hostname>-<pid>`.
pub fn node_id(config: &Config) -> String {
    config.cluster.node_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map_or_else(|_| "node".into(), |h| h.trim().to_owned());
        format!("{host}-{}", std::process::id())
    })
}

/// Every HTTP route of the node except Socket.IO (which is a layer).
fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .merge(ops::router())
        .merge(sse::router())
        .merge(publish::router());
    if state.config.demo {
        router = router.merge(crate::demo::router());
    }
    router.with_state(state)
}

/// CORS for every HTTP route (Socket.IO long-polling included). No origins
/// configured: no CORS headers, so browsers allow the same origin only (the
/// Socket.IO v3+ server default). `*`: any origin, without credentials. A
/// list: those origins, with credentials (`withCredentials` clients).
fn cors_layer(c: &crate::config::CorsConfig) -> Result<tower_http::cors::CorsLayer, StartError> {
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    let methods = [http::Method::GET, http::Method::POST, http::Method::OPTIONS];
    if c.allowed_origins.is_empty() {
        return Ok(CorsLayer::new());
    }
    if c.allowed_origins.iter().any(|o| o == "*") {
        return Ok(CorsLayer::new()
            .allow_origin(Any)
            .allow_methods(methods)
            .allow_headers(Any));
    }
    let origins = c
        .allowed_origins
        .iter()
        .map(|o| {
            http::HeaderValue::from_str(o.trim_end_matches('/'))
                .map_err(|_| StartError::Cors(format!("{o:?} is not a valid origin")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods(methods)
        .allow_headers([http::header::CONTENT_TYPE, http::header::AUTHORIZATION])
        .allow_credentials(true))
}

/// Load every `*.wasm` of the plugin directory. A bad file is reported by name
/// and skipped; the others still load.
///
/// With a data directory, names it holds (or had removed) are skipped: its
/// state wins, and a missing plugin directory is not an error.
async fn load_plugin_dir(
    registry: &Registry,
    config: &Config,
    admin: &Admin,
) -> Result<(), StartError> {
    let dir = &config.plugin_dir;
    let read_err = |source| StartError::PluginDir {
        path: dir.display().to_string(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && config.data_dir.is_some() => {
            tracing::info!(dir = %dir.display(), "no plugin directory; serving the data directory's plugins");
            return Ok(());
        }
        Err(e) => return Err(read_err(e)),
    };
    let removed = admin.removed_names();
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    files.sort();
    for path in files {
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        if registry.get(&name).is_some() {
            tracing::info!(file = %path.display(), "plugin {name} comes from the data directory; file not loaded");
            continue;
        }
        if removed.contains(&name) {
            tracing::info!(file = %path.display(), "plugin {name} was removed through the admin API; file not loaded");
            continue;
        }
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
