//! Wiring: pick the backends once (`Backends`: memory, or Redis in
//! cluster mode), build the engine, the channel hub and the control
//! service, load the plugin set through it, mount it, and serve HTTP.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use socketioxide::SocketIo;
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};

use socketioxide::layer::SocketIoLayer;

use crate::admin::{Admin, PluginRecords, RecordsUnavailable};
use crate::auth::{AuthMode, Verifier};
use crate::channels::{ChannelLog, HistoryLimits, Hub, HubSettings};
use crate::cluster::{
    COMMAND_TIMEOUT, ClusterError, Redis, RedisDriver, RedisKv, RedisPluginStore, RedisPresence,
    RedisSessions, Streams,
};
use crate::config::Config;
use crate::control::{CanaryWatch, Origin, PluginControl};
use crate::gateway::{
    self, Adapter, AdapterDriver, Gateway, Io, MemorySessions, Recovery, SessionStore,
};
use crate::ops::{self, Upstream};
use crate::plugins::{EngineSettings, KvStore, PluginEngine, Registry, Rollout};
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
    #[error("cluster: {0}")]
    Records(RecordsUnavailable),
    #[error(transparent)]
    Mount(crate::control::NamespaceError),
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

pub use crate::state::AppState;

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
    /// Build every part of the node, load its plugin set and bind its
    /// listeners; nothing is served until [`Server::run`].
    pub async fn bind(mut config: Config) -> Result<Self, StartError> {
        if config.cache_dir.is_none()
            && let Some(data) = &config.data_dir
        {
            config.cache_dir = Some(data.join("cache"));
        }
        let admin = Arc::new(Admin::new(&config)?);
        let verifier = verifier(&config)?;
        let engine = engine(&config)?;
        let backends = Backends::choose(&config).await?;
        let (call_default, call_by_name) = config.call_policies();
        let registry = Arc::new(
            Registry::new(Arc::new(engine), backends.kv.clone())
                .with_presence(backends.presence.clone())
                .with_outbound(config.outbound_settings())
                .with_call_policy(call_default, call_by_name),
        );
        let channels = channels(&config, &backends).await?;
        let recovery = recovery(&config, &backends, &channels);
        let (layer, io) = socketio(&config, backends.driver.clone(), &recovery);
        let tls = crate::tls::server_config(config.tls.cert.as_deref(), config.tls.key.as_deref())?;
        let control = PluginControl::new(registry.clone(), canary_watch(&config));
        admin.persist_changes(&control);
        load_plugin_set(&control, &admin, &config, &backends).await?;
        let config = Arc::new(config);
        let metrics = Arc::new(ops::Metrics::new(ops::Sources {
            registry: registry.clone(),
            hub: channels.clone(),
            io: io.clone(),
            cluster: backends.driver.clone(),
            upstream: backends.upstream(),
        }));
        let sessions = session_gate(&config, &metrics);
        let gateway = Arc::new(
            Gateway::new(
                io.clone(),
                verifier.clone(),
                channels.clone(),
                config.clone(),
                metrics.clone(),
                recovery,
            )
            .with_presence(backends.presence.clone())
            .with_pending_sessions(sessions.pending.clone()),
        );
        control
            .attach_namespaces(gateway.clone())
            .await
            .map_err(StartError::Mount)?;
        let cors = cors_layer(&config.cors)?;
        let net = crate::net::Plan::new(&config.net, &metrics);
        let listener = bind_listener(&net, config.listen, tls.clone(), false).await?;
        let state = AppState {
            config,
            registry,
            gateway,
            verifier,
            io,
            upstream: backends.upstream(),
            channels,
            admin,
            control,
            metrics,
        };
        if let Some(r) = state.admin.replicator() {
            crate::admin::replicate::spawn(state.control.clone(), r.clone());
        }
        let admin = admin_listener(&net, &state).await?;
        let router = http_router(&state, admin.is_none(), layer, cors, sessions);
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

/// The capabilities that differ between one node and a cluster, chosen once.
struct Backends {
    driver: AdapterDriver,
    kv: KvStore,
    presence: Arc<Presence>,
    /// Cluster mode: the SSE channels' shared log.
    streams: Option<Arc<Streams>>,
    /// Cluster mode: the cluster's plugin set.
    records: Option<Arc<dyn PluginRecords>>,
    /// Socket.IO sessions waiting to be recovered.
    sessions: Arc<dyn SessionStore>,
    redis: Option<Redis>,
}

impl Backends {
    /// The shared backend whose health the node reports.
    fn upstream(&self) -> Option<Arc<dyn Upstream>> {
        self.redis.clone().map(|r| Arc::new(r) as Arc<dyn Upstream>)
    }

    /// In memory without `cluster.redis_url`, else over Redis.
    async fn choose(config: &Config) -> Result<Self, StartError> {
        let node = config.node_id();
        let Some(url) = &config.cluster.redis_url else {
            return Ok(Self {
                driver: AdapterDriver::Local,
                kv: KvStore::new(KvStore::memory_backend()).with_policy(config.kv_policy()),
                presence: Presence::memory(node),
                streams: None,
                records: None,
                sessions: Arc::new(MemorySessions::default()),
                redis: None,
            });
        };
        let wait = Duration::from_secs(config.cluster.connect_wait_secs);
        let redis = Redis::connect(url, wait)
            .await
            .map_err(StartError::Cluster)?;
        tracing::info!(node = %node, "cluster mode over {url}");
        let ttl = Duration::from_millis(config.cluster.node_ttl_ms);
        let store = RedisPresence::new(redis.clone(), node.clone(), ttl);
        let presence = Presence::new(node, Arc::new(store));
        presence.spawn_heartbeat();
        let streams = Streams::new(
            redis.clone(),
            config.cluster_stream_length(),
            config.cluster.outbox,
        );
        Ok(Self {
            driver: AdapterDriver::Remote(RedisDriver::new(redis.clone())),
            kv: KvStore::new(Arc::new(RedisKv::new(redis.clone()))).with_policy(config.kv_policy()),
            presence,
            streams: Some(streams),
            records: Some(Arc::new(RedisPluginStore::new(
                redis.clone(),
                crate::admin::RecordBounds::of(config),
            ))),
            sessions: Arc::new(RedisSessions::new(redis.clone())),
            redis: Some(redis),
        })
    }
}

/// The JWT verifier; refuses to start when auth is required without a key.
fn verifier(config: &Config) -> Result<Arc<Verifier>, StartError> {
    let verifier =
        Verifier::from_config(&config.auth).map_err(|e| StartError::Auth(e.to_string()))?;
    let needs_key = config.auth.mode == AuthMode::Required
        || config
            .plugins
            .values()
            .any(|p| p.auth == Some(AuthMode::Required));
    if needs_key && !verifier.has_keys() {
        return Err(StartError::NoAuthKey);
    }
    Ok(Arc::new(verifier))
}

/// The wasm engine, sized for the largest memory limit configured.
fn engine(config: &Config) -> Result<PluginEngine, StartError> {
    let largest_mb = config
        .plugins
        .values()
        .filter_map(|p| p.memory_limit_mb)
        .max()
        .unwrap_or(0);
    PluginEngine::new(&EngineSettings {
        max_instances: config.runtime.max_instances,
        max_memory_bytes: (config.runtime.memory_limit_mb << 20).max(largest_mb << 20),
        cache_dir: config.cache_dir.clone(),
        max_concurrent_compiles: config.runtime.max_concurrent_compiles,
        compile_timeout: Duration::from_millis(config.runtime.compile_timeout_ms),
        ..EngineSettings::default()
    })
    .map_err(|e| StartError::Engine(format!("{e:#}")))
}

/// The Socket.IO layer and server, over `driver`.
fn socketio(
    config: &Config,
    driver: AdapterDriver,
    recovery: &Arc<Recovery>,
) -> (SocketIoLayer<Adapter>, Io) {
    let adapter = RedisAdapterCtr::new_with_driver(
        driver,
        RedisAdapterConfig::new()
            .with_prefix("portico")
            .with_request_timeout(COMMAND_TIMEOUT),
    );
    let s = &config.socketio;
    SocketIo::builder()
        .with_adapter::<Adapter>(adapter)
        .with_restore_hook(recovery.hook())
        .max_payload(s.max_payload)
        // The same cap on WebSocket messages (engine.io applies max_payload to polling only).
        .ws_max_message_size(s.max_payload as usize)
        .ws_max_frame_size(s.max_payload as usize)
        .max_buffer_size(s.max_buffer_size)
        .ws_read_buffer_size(s.ws_read_buffer_size)
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
        .build_layer()
}

/// The channel hub; in cluster mode it publishes through, and reads back
/// from, one Redis Stream per plugin.
async fn channels(config: &Config, backends: &Backends) -> Result<Arc<Hub>, StartError> {
    let settings = HubSettings {
        history: HistoryLimits {
            size: config.sse.history_size,
            max_bytes: config.sse.history_max_bytes,
            max_age: Duration::from_secs(config.sse.history_max_age_secs),
        },
        buffer: config.sse.buffer,
        socket_lag_bytes: config.socketio.max_lag_bytes,
    };
    let log = backends.streams.clone().map(|s| s as Arc<dyn ChannelLog>);
    let hub = Arc::new(Hub::with_log(settings, log).with_stream_caps(
        config.sse.max_streams_per_ip,
        config.sse.max_streams_per_subject,
    ));
    if let (Some(streams), Some(url)) = (&backends.streams, &config.cluster.redis_url) {
        streams
            .clone()
            .spawn_reader(url, Arc::downgrade(&hub))
            .await
            .map_err(StartError::Cluster)?;
    }
    hub.spawn_sweeper(Duration::from_secs(
        config.sse.history_max_age_secs.clamp(1, 60),
    ));
    Ok(hub)
}

/// Connection state recovery, its sessions in `backends`' store.
fn recovery(config: &Config, backends: &Backends, channels: &Arc<Hub>) -> Arc<Recovery> {
    let recovery = Recovery::new(
        Duration::from_secs(config.socketio.recovery_window_secs),
        // A killed node counts as dead once its heartbeat expired.
        Duration::from_millis(config.cluster.node_ttl_ms + 1000),
        config.node_id(),
        backends.sessions.clone(),
        channels.clone(),
    );
    recovery.spawn_refresher();
    recovery
}

/// Bounds the Engine.IO sessions that have not connected a namespace yet.
fn session_gate(config: &Config, metrics: &ops::Metrics) -> crate::net::SessionGate {
    let s = &config.socketio;
    crate::net::SessionGate::new(
        crate::net::PendingSessions::new(
            s.max_pending_sessions,
            s.max_pending_sessions_per_ip,
            // socketioxide starts its clock a little later (after the upgrade).
            Duration::from_millis(s.connect_timeout_ms) + Duration::from_secs(1),
        ),
        metrics,
    )
}

fn canary_watch(config: &Config) -> CanaryWatch {
    CanaryWatch {
        policy: config.canary.policy(),
        every: Duration::from_millis(config.canary.check_interval_ms.max(10)),
    }
}

/// The plugin set at start, each source through the control service: the
/// data directory first (its state wins for the names it has), then
/// `--plugins`, then in cluster mode the cluster's set (it wins over both).
async fn load_plugin_set(
    control: &PluginControl,
    admin: &Admin,
    config: &Config,
    backends: &Backends,
) -> Result<(), StartError> {
    if let Some(store) = admin.data_dir() {
        let restored = store.restore(control).await?;
        tracing::info!(dir = %store.root().display(), plugins = restored.slots.len(), "restored the plugin set");
    }
    load_plugin_dir(control, config).await?;
    if let Some(records) = &backends.records {
        admin
            .join_cluster(records.clone(), config.node_id(), control)
            .await
            .map_err(StartError::Records)?;
    }
    Ok(())
}

/// The admin API's own listener and routes, when `[admin] listen` is set.
async fn admin_listener(
    net: &crate::net::Plan,
    state: &AppState,
) -> Result<Option<(crate::net::Listener, Router)>, StartError> {
    let Some(addr) = state.config.admin.listen else {
        return Ok(None);
    };
    let router = crate::admin::router(state.clone())
        .layer(axum::middleware::from_fn(crate::http_error::log_errors));
    Ok(Some((bind_listener(net, addr, None, true).await?, router)))
}

async fn bind_listener(
    net: &crate::net::Plan,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    admin: bool,
) -> Result<crate::net::Listener, StartError> {
    net.bind(addr, tls, admin)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// The node's HTTP service: every route (the admin API too, unless it has its
/// own listener), Socket.IO as a layer, CORS and request tracing.
fn http_router(
    state: &AppState,
    with_admin: bool,
    socketio: SocketIoLayer<Adapter>,
    cors: tower_http::cors::CorsLayer,
    sessions: crate::net::SessionGate,
) -> Router {
    let mut router = router(state.clone());
    if with_admin {
        router = router.merge(crate::admin::router(state.clone()));
    }
    router
        .layer(axum::middleware::from_fn(crate::http_error::log_errors))
        .layer(socketio)
        // Engine.IO sessions not yet in a namespace are capped before socketioxide sees them.
        .layer(axum::middleware::from_fn_with_state(
            sessions,
            crate::net::admit_sessions,
        ))
        // Outside socketioxide's layer, so the request it keeps is the copy.
        .layer(axum::middleware::map_request(gateway::detach_handshake))
        .layer(cors)
        // Per-request spans and events at debug level (`PORTICO_LOG=tower_http=debug`).
        .layer(tower_http::trace::TraceLayer::new_for_http())
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
async fn load_plugin_dir(control: &PluginControl, config: &Config) -> Result<(), StartError> {
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
    let removed = control.removed_names().await;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    files.sort();
    for path in files {
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        if control.registry().get(&name).is_some() {
            tracing::info!(file = %path.display(), "plugin {name} comes from the data directory; file not loaded");
            continue;
        }
        if removed.contains(&name) {
            tracing::info!(file = %path.display(), "plugin {name} was removed through the admin API; file not loaded");
            continue;
        }
        match load_one(control, config, &name, &path).await {
            Ok(()) => {}
            Err(reason) => {
                tracing::error!(file = %path.display(), "skipping plugin {name}: {reason}")
            }
        }
    }
    Ok(())
}

async fn load_one(
    control: &PluginControl,
    config: &Config,
    name: &str,
    path: &Path,
) -> Result<(), LoadFailure> {
    let bytes = tokio::fs::read(path).await.map_err(LoadFailure::Read)?;
    let limit = config.runtime.max_plugin_bytes;
    if bytes.len() > limit {
        return Err(LoadFailure::TooLarge(bytes.len(), limit));
    }
    let settings = config.plugin_settings(name);
    let deployed = control
        .deploy(name, bytes.into(), &settings, Rollout::Now, Origin::Startup)
        .await?;
    let v = &deployed.revision.version;
    tracing::info!(plugin = name, version = %v.manifest.version, sha256 = %&v.sha256[..12], bytes = v.size, "loaded");
    Ok(())
}

/// Why a file of the plugin directory was skipped.
#[derive(Debug, thiserror::Error)]
enum LoadFailure {
    #[error("{0}")]
    Read(std::io::Error),
    #[error("{0} bytes is over the limit of {1}")]
    TooLarge(usize, usize),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
}
