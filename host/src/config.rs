//! Configuration: one TOML file, every key overridable by environment
//! variables (`PORTICO_SECTION__KEY=value`) and the main ones by CLI flags.
//! Unknown keys are errors, so a typo fails at start instead of being ignored.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::AuthMode;
use crate::plugins::{CallPolicy, Isolation, Limits, PluginSettings};

/// Shortest HS256/384/512 secret accepted outside `--dev`.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to accept clients on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Every `*.wasm` here is loaded at start, named after its file.
    pub plugin_dir: PathBuf,
    /// Compiled-artifact cache; empty disables it.
    pub cache_dir: Option<PathBuf>,
    /// Serve the demo page at `/` and dev tokens at `/demo/session`. Never in production.
    pub demo: bool,
    pub auth: AuthConfig,
    pub runtime: RuntimeConfig,
    pub socketio: SocketIoConfig,
    pub cluster: ClusterConfig,
    pub throttle: ThrottleConfig,
    pub cors: CorsConfig,
    /// Per-plugin settings, by plugin name.
    pub plugins: BTreeMap<String, PluginConfig>,
    pub sse: SseConfig,
    pub api: ApiConfig,
    pub tls: TlsConfig,
    /// Where uploaded plugins, their revisions and the active set are kept
    /// across restarts; unset keeps them in memory only.
    pub data_dir: Option<PathBuf>,
    pub admin: AdminConfig,
    pub canary: CanaryConfig,
    pub shutdown: ShutdownConfig,
    pub net: NetConfig,
    /// Development settings: weak HS256 secrets and the admin API on a public
    /// main listener are accepted. Never in production.
    pub dev: bool,
}

/// Limits of the listeners (main and admin), enforced before any HTTP is parsed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetConfig {
    /// Connections open at once on a listener; 0 derives it from the
    /// open-file limit (minus a reserve for Redis, plugins and files).
    pub max_connections: usize,
    /// Connections open at once from one IP address (IPv6: one /64); 0: no cap.
    pub max_connections_per_ip: usize,
    /// New connections per second from one IP address; 0: unlimited.
    pub accept_rate_per_ip: u32,
    /// New connections one IP address may open at once above that rate.
    pub accept_burst_per_ip: u32,
    /// Time from accept to a complete first request head (TLS handshake
    /// included), and for every later HTTP/1.1 request head (keep-alive idle).
    pub header_read_timeout_ms: u64,
    /// A connection with no byte read or written this long is closed.
    pub idle_timeout_ms: u64,
    /// A connection whose peer has read nothing of a pending write for this
    /// long is closed (a stalled SSE reader, a Socket.IO client that stopped
    /// reading): what it holds is freed and it resumes when it reconnects.
    pub write_timeout_ms: u64,
    /// Soft open-file limit to set at start; 0 raises it to the hard limit.
    pub max_open_files: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            max_connections: 0,
            max_connections_per_ip: 256,
            accept_rate_per_ip: 100,
            accept_burst_per_ip: 200,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 90_000,
            write_timeout_ms: 30_000,
            max_open_files: 0,
        }
    }
}

/// Graceful shutdown on SIGTERM / Ctrl-C.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Seconds to let connections close and plugin calls finish before exiting anyway.
    pub grace_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { grace_secs: 10 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().unwrap(),
            plugin_dir: PathBuf::from("plugins"),
            cache_dir: None,
            demo: false,
            auth: AuthConfig::default(),
            runtime: RuntimeConfig::default(),
            socketio: SocketIoConfig::default(),
            cluster: ClusterConfig::default(),
            throttle: ThrottleConfig::default(),
            cors: CorsConfig::default(),
            plugins: BTreeMap::new(),
            sse: SseConfig::default(),
            api: ApiConfig::default(),
            tls: TlsConfig::default(),
            data_dir: None,
            admin: AdminConfig::default(),
            canary: CanaryConfig::default(),
            shutdown: ShutdownConfig::default(),
            net: NetConfig::default(),
            dev: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Bearer token of the admin API; unset disables the API.
    pub token: Option<String>,
    /// Serve the admin API on this address only, instead of the main listener.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanaryConfig {
    /// A canary whose failed calls / calls exceeds this (0.0-1.0) is rolled back.
    pub max_error_rate: f64,
    /// The window calls are counted over, in seconds.
    pub window_secs: u64,
    /// Calls needed within the window before the rate is judged.
    pub min_calls: u64,
    /// How often a running canary is checked, in milliseconds.
    pub check_interval_ms: u64,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        let p = crate::plugins::CanaryPolicy::default();
        Self {
            max_error_rate: p.max_error_rate,
            window_secs: p.window.as_secs(),
            min_calls: p.min_calls,
            check_interval_ms: 500,
        }
    }
}

impl CanaryConfig {
    pub fn policy(&self) -> crate::plugins::CanaryPolicy {
        crate::plugins::CanaryPolicy {
            max_error_rate: self.max_error_rate,
            window: std::time::Duration::from_secs(self.window_secs.max(1)),
            min_calls: self.min_calls,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Default for every namespace: `required`, `optional` or `none`.
    pub mode: AuthMode,
    /// HS256 shared secret.
    pub jwt_secret: Option<String>,
    /// Expected `iss`, when set.
    pub issuer: Option<String>,
    /// Expected `aud`, when set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp`/`nbf`, in seconds.
    pub leeway_secs: u64,
    /// Refuse tokens without `exp`.
    pub require_exp: bool,
    /// Public keys as a JWKS document (`{"keys": [...]}`), picked by `kid`.
    pub jwks_file: Option<PathBuf>,
    /// How often, at most, the JWKS file's modification time is checked.
    pub jwks_reload_secs: u64,
    /// More keys, each pinned to one algorithm.
    pub keys: Vec<KeyConfig>,
}

/// One verification key (`[[auth.keys]]`): a shared secret for HS*, or a
/// public key in PEM (inline or from a file) for RS*/PS*/ES*/EdDSA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Matched against the token header's `kid`; a key without one is tried
    /// for tokens without `kid`.
    pub kid: Option<String>,
    /// The only algorithm this key accepts, e.g. `HS256`, `RS256`, `ES256`.
    pub alg: String,
    pub secret: Option<String>,
    pub pem: Option<String>,
    pub pem_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Required,
            jwt_secret: None,
            issuer: None,
            audience: None,
            leeway_secs: 30,
            require_exp: true,
            jwks_file: None,
            jwks_reload_secs: 5,
            keys: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Default CPU deadline of one plugin call.
    pub call_timeout_ms: u64,
    /// Default linear-memory cap of one plugin instance.
    pub memory_limit_mb: usize,
    /// Default: `pooled` (warm instances reused) or `fresh` (an instance per call).
    pub isolation: Isolation,
    /// Idle instances kept per plugin version.
    pub max_warm_instances: usize,
    /// Instances that may exist at once across all plugins.
    pub max_instances: u32,
    /// Default wall-clock deadline of one plugin call, host calls included.
    pub call_wall_timeout_ms: u64,
    /// Default cap on one plugin's instances alive at once; 0: a quarter of `max_instances`.
    pub max_instances_per_plugin: usize,
    /// Plugins compiled at once (uploads, replication, start); more wait their turn.
    pub max_concurrent_compiles: usize,
    /// The longest one compile may take, its wait for a turn included.
    pub compile_timeout_ms: u64,
    /// KV keys one plugin may hold (both backends).
    pub kv_max_keys: usize,
    /// KV bytes (keys and values) one plugin may hold (both backends).
    pub kv_max_bytes: usize,
    /// TTL of KV keys written without one; 0: they never expire.
    pub kv_default_ttl_secs: u64,
    /// Largest plugin accepted, in bytes.
    pub max_plugin_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            call_timeout_ms: limits.call_timeout.as_millis() as u64,
            memory_limit_mb: limits.memory_bytes >> 20,
            isolation: limits.isolation,
            max_warm_instances: limits.max_warm,
            max_instances: 1000,
            call_wall_timeout_ms: CallPolicy::default().wall_timeout.as_millis() as u64,
            max_instances_per_plugin: 0,
            max_concurrent_compiles: 2,
            compile_timeout_ms: 60_000,
            kv_max_keys: crate::plugins::KvQuota::default().max_keys,
            kv_max_bytes: crate::plugins::KvQuota::default().max_bytes,
            kv_default_ttl_secs: 0,
            max_plugin_bytes: 32 << 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketIoConfig {
    /// Largest packet accepted from a client, in bytes.
    pub max_payload: u64,
    /// Packets queued per socket before new ones are dropped (slow consumers).
    pub max_buffer_size: usize,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    /// Time a client has to connect to a namespace after the handshake.
    pub connect_timeout_ms: u64,
    /// Connection state recovery: how long a disconnected socket's session
    /// is kept for the client to come back to (0 turns recovery off).
    pub recovery_window_secs: u64,
    /// Engine.IO sessions that have not asked to join a namespace yet, in total.
    pub max_pending_sessions: usize,
    /// The same, per client address.
    pub max_pending_sessions_per_ip: usize,
    /// Binary attachments one packet may announce (their total size is
    /// capped by `max_payload`).
    pub max_attachments: usize,
    /// Time a client has to send every attachment of a binary packet.
    pub attachment_timeout_ms: u64,
    /// Events one socket may have waiting for its plugin (a slow call lets
    /// them pile up); past it an event is refused with `overloaded`.
    pub max_queued_events: usize,
    /// Channel events a socket may fall behind by, in bytes, once its send
    /// buffer is full: they wait in order and go out as the buffer frees up.
    /// Past it the socket is disconnected as `slow_consumer` (and recovers).
    pub max_lag_bytes: usize,
    /// Bytes each WebSocket reads at a time, kept for the socket's lifetime: a
    /// larger buffer takes fewer reads for big messages, and costs every idle
    /// socket that much memory. It grows while a larger message arrives.
    pub ws_read_buffer_size: usize,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        Self {
            max_payload: 100_000,
            max_buffer_size: 128,
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            connect_timeout_ms: 10_000,
            recovery_window_secs: 120,
            max_pending_sessions: 256,
            max_pending_sessions_per_ip: 16,
            max_attachments: 100,
            attachment_timeout_ms: 10_000,
            max_queued_events: 128,
            max_lag_bytes: 4 * 1024 * 1024,
            ws_read_buffer_size: 1024,
        }
    }
}

/// Flood protection. A rate of 0 disables that limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Events per second one socket may send (token bucket refill rate).
    pub events_per_sec: u32,
    /// Events one socket may send at once (token bucket size).
    pub event_burst: u32,
    /// Over-limit events within `flood_window_secs` after which the socket
    /// is disconnected with reason `rate_limited`; 0 never disconnects.
    pub flood_max_rejected: u32,
    pub flood_window_secs: u64,
    /// Pause between telling a client why it is disconnected and closing it,
    /// so the acks queued before get out (closing does not flush).
    pub disconnect_grace_ms: u64,
    /// New connections per second from one IP address (all namespaces).
    pub connections_per_sec: u32,
    /// Connections one IP address may open at once.
    pub connection_burst: u32,
    /// IP addresses tracked at most; idle ones are evicted first.
    pub max_tracked_ips: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            events_per_sec: 50,
            event_burst: 100,
            flood_max_rejected: 100,
            flood_window_secs: 10,
            disconnect_grace_ms: 100,
            connections_per_sec: 20,
            connection_burst: 50,
            max_tracked_ips: 100_000,
        }
    }
}

/// Cross-origin access to the HTTP endpoints (Socket.IO long-polling).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed, e.g. `["https://app.example.com"]`; `["*"]` allows
    /// any origin (without credentials); empty (default): same origin only.
    pub allowed_origins: Vec<String>,
}

/// Server-Sent Events streams (`GET /sse/<plugin>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SseConfig {
    /// Events kept per channel for resuming.
    pub history_size: usize,
    /// Oldest event kept per channel, in seconds.
    pub history_max_age_secs: u64,
    /// Bytes of events (names and data) kept per channel.
    pub history_max_bytes: usize,
    /// Streams open at once from one IP address; 0: no cap.
    pub max_streams_per_ip: usize,
    /// Streams open at once for one token subject; 0: no cap.
    pub max_streams_per_subject: usize,
    /// Interval of keep-alive comments on an idle stream.
    pub keep_alive_ms: u64,
    /// Reconnect delay suggested to clients (`retry:`).
    pub retry_ms: u64,
    /// Events queued per stream; a reader that falls further behind is cut
    /// off and resumes from history.
    pub buffer: usize,
    /// Channels one stream may subscribe to.
    pub max_channels: usize,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            history_size: 1000,
            history_max_age_secs: 300,
            history_max_bytes: 32 << 20,
            max_streams_per_ip: 64,
            max_streams_per_subject: 32,
            keep_alive_ms: 15_000,
            retry_ms: 2_000,
            buffer: 256,
            max_channels: 32,
        }
    }
}

/// The server publish API (`POST /api/v1/publish`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Keys accepted as `Authorization: Bearer <key>`.
    pub keys: Vec<String>,
    /// A JWT whose claim `role_claim` is (or contains) this role may publish too.
    pub publish_role: Option<String>,
    /// The claim holding roles: a string or an array of strings.
    pub role_claim: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            publish_role: None,
            role_claim: "role".into(),
        }
    }
}

/// TLS on the listener: with both set, it serves HTTPS with ALPN `h2, http/1.1`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://host:port/` turns cluster mode on; without it the node runs alone, in memory.
    pub redis_url: Option<String>,
    /// This node's name in presence and metrics; default `<hostname>-<pid>`.
    pub node_id: Option<String>,
    /// How long to keep retrying Redis at start before giving up.
    pub connect_wait_secs: u64,
    /// A node counts as alive this long after its last heartbeat (sent every
    /// third of it); presence drops the members of a node gone longer.
    pub node_ttl_ms: u64,
    /// Publications that may wait for Redis at once (sent in pipelined
    /// batches); past it a publication is refused with `overloaded`.
    pub outbox: usize,
    /// Entries each plugin's Redis Stream keeps: how far a node may fall
    /// behind it (a stall of its length divided by the publication rate)
    /// before it loses its place and cuts its readers off. Default: the
    /// larger of [`DEFAULT_STREAM_LENGTH`] and `sse.history_size`.
    pub stream_length: Option<usize>,
}

/// Entries a plugin's cluster stream keeps by default: ~9 s of 1,100
/// publications/s, where 1,000 (one channel's history) was under a second.
pub const DEFAULT_STREAM_LENGTH: usize = 10_000;

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            node_id: None,
            connect_wait_secs: 30,
            node_ttl_ms: 10_000,
            outbox: 8192,
            stream_length: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// Namespace to serve; default `/<name>`.
    pub mount: Option<String>,
    pub call_timeout_ms: Option<u64>,
    pub memory_limit_mb: Option<usize>,
    pub isolation: Option<Isolation>,
    pub max_warm_instances: Option<usize>,
    /// Wall-clock deadline of one call; default `runtime.call_wall_timeout_ms`.
    pub call_wall_timeout_ms: Option<u64>,
    /// Instances of this plugin alive at once; default `runtime.max_instances_per_plugin`.
    pub max_instances: Option<usize>,
    /// KV keys this plugin may hold; default `runtime.kv_max_keys`.
    pub kv_max_keys: Option<usize>,
    /// KV bytes (keys and values) this plugin may hold; default `runtime.kv_max_bytes`.
    pub kv_max_bytes: Option<usize>,
    /// TTL of this plugin's KV keys written without one (0: never); default
    /// `runtime.kv_default_ttl_secs`.
    pub kv_default_ttl_secs: Option<u64>,
    /// Auth mode for this plugin's namespace; default `auth.mode`.
    pub auth: Option<AuthMode>,
    /// Values the plugin reads with `config::get`. Numbers and booleans are
    /// accepted and handed over as text (`max_text = 500` or `"500"`).
    #[serde(deserialize_with = "scalars_as_strings")]
    pub config: HashMap<String, String>,
    /// Per-socket event rate on this namespace; default `throttle.events_per_sec`.
    pub events_per_sec: Option<u32>,
    /// Per-socket burst on this namespace; default `throttle.event_burst`.
    pub event_burst: Option<u32>,
    /// Origins the plugin may send HTTP requests to (`https://api.internal:8443`); none by default.
    pub outbound: Vec<String>,
    /// Private address ranges (`10.0.0.0/8`) the allowed names may resolve to;
    /// none by default, so a name resolving to a private address is refused.
    pub outbound_addresses: Vec<String>,
    /// The longest one outbound request may take; default 5000.
    pub outbound_timeout_ms: Option<u64>,
    /// Largest outbound response body; default 1 MiB.
    pub outbound_max_response_bytes: Option<u64>,
    /// Outbound requests of this plugin in flight at once; default 16.
    pub outbound_max_in_flight: Option<u32>,
}

impl PluginConfig {
    /// The plugin's outbound HTTP settings; an error names a malformed origin or range.
    pub fn outbound_settings(
        &self,
    ) -> Result<crate::outbound::OutboundSettings, crate::outbound::PolicyError> {
        let d = crate::outbound::OutboundSettings::default();
        Ok(crate::outbound::OutboundSettings {
            policy: crate::outbound::Policy::new(&self.outbound, &self.outbound_addresses)?,
            timeout: self
                .outbound_timeout_ms
                .map_or(d.timeout, std::time::Duration::from_millis),
            max_response_bytes: self
                .outbound_max_response_bytes
                .unwrap_or(d.max_response_bytes),
            max_in_flight: self.outbound_max_in_flight.unwrap_or(d.max_in_flight),
            max_redirects: d.max_redirects,
        })
    }
}

impl Config {
    /// This node's name: configured, else `<hostname>-<pid>`.
    pub fn node_id(&self) -> String {
        self.cluster.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map_or_else(|_| "node".into(), |h| h.trim().to_owned());
            format!("{host}-{}", std::process::id())
        })
    }

    /// Read the file (if any), then apply `PORTICO_A__B=value` environment overrides.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut doc = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", p.display())))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            if let Some(path) = name.strip_prefix("PORTICO_").filter(|p| p.contains("__")) {
                set_path(&mut doc, path, &value)
                    .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
            }
        }
        let config: Self = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        for (name, p) in &config.plugins {
            p.outbound_settings()
                .map_err(|e| ConfigError::Invalid(format!("plugins.{name}: {e}")))?;
        }
        Ok(config)
    }

    /// The settings a plugin is installed with: its own, else the defaults.
    pub fn plugin_settings(&self, name: &str) -> PluginSettings {
        let p = self.plugins.get(name).cloned().unwrap_or_default();
        let r = &self.runtime;
        PluginSettings {
            mount: p.mount,
            limits: Limits {
                call_timeout: std::time::Duration::from_millis(
                    p.call_timeout_ms.unwrap_or(r.call_timeout_ms),
                ),
                memory_bytes: p.memory_limit_mb.unwrap_or(r.memory_limit_mb) << 20,
                isolation: p.isolation.unwrap_or(r.isolation),
                max_warm: p.max_warm_instances.unwrap_or(r.max_warm_instances),
            },
            config: p.config,
        }
    }

    /// Entries each plugin's cluster stream keeps (`cluster.stream_length`).
    pub fn cluster_stream_length(&self) -> usize {
        self.cluster
            .stream_length
            .unwrap_or(DEFAULT_STREAM_LENGTH.max(self.sse.history_size))
    }

    /// The call bounds of plugins without a `[plugins.<name>]` entry, and of those with one.
    pub fn call_policies(&self) -> (CallPolicy, HashMap<String, CallPolicy>) {
        let r = &self.runtime;
        let default = CallPolicy {
            wall_timeout: std::time::Duration::from_millis(r.call_wall_timeout_ms),
            max_instances: match r.max_instances_per_plugin {
                0 => (r.max_instances as usize / 4).max(1),
                n => n,
            },
        };
        let by_name = self
            .plugins
            .iter()
            .map(|(name, p)| {
                let policy = CallPolicy {
                    wall_timeout: p
                        .call_wall_timeout_ms
                        .map_or(default.wall_timeout, std::time::Duration::from_millis),
                    max_instances: p.max_instances.unwrap_or(default.max_instances),
                };
                (name.clone(), policy)
            })
            .collect();
        (default, by_name)
    }

    /// Every plugin's KV quota: `runtime.kv_*`, and the plugins' own overrides.
    pub fn kv_policy(&self) -> crate::plugins::KvPolicy {
        let r = &self.runtime;
        let ttl = |secs: u64| (secs > 0).then(|| std::time::Duration::from_secs(secs));
        let default = crate::plugins::KvQuota {
            max_keys: r.kv_max_keys,
            max_bytes: r.kv_max_bytes,
            default_ttl: ttl(r.kv_default_ttl_secs),
        };
        let plugins = self
            .plugins
            .iter()
            .map(|(name, p)| {
                let q = crate::plugins::KvQuota {
                    max_keys: p.kv_max_keys.unwrap_or(default.max_keys),
                    max_bytes: p.kv_max_bytes.unwrap_or(default.max_bytes),
                    default_ttl: p.kv_default_ttl_secs.map_or(default.default_ttl, ttl),
                };
                (name.clone(), q)
            })
            .collect();
        crate::plugins::KvPolicy { default, plugins }
    }

    /// Every configured plugin's outbound HTTP settings (checked when the config was loaded).
    pub fn outbound_settings(&self) -> HashMap<String, crate::outbound::OutboundSettings> {
        self.plugins
            .iter()
            .filter_map(|(name, p)| Some((name.clone(), p.outbound_settings().ok()?)))
            .collect()
    }

    /// The event rate and burst of a plugin's sockets.
    pub fn event_limit(&self, plugin: &str) -> (u32, u32) {
        let p = self.plugins.get(plugin);
        (
            p.and_then(|p| p.events_per_sec)
                .unwrap_or(self.throttle.events_per_sec),
            p.and_then(|p| p.event_burst)
                .unwrap_or(self.throttle.event_burst),
        )
    }

    /// Refuse settings that are only safe on a developer's machine, unless
    /// `dev` is set: HS* secrets shorter than [`MIN_SECRET_BYTES`] (guessable
    /// offline from one token), and the admin API on a main listener that is
    /// not loopback. `demo` (it hands the admin token to anyone who asks) is
    /// refused on a non-loopback address whatever `dev` says.
    pub fn check_safety(&self) -> Result<(), ConfigError> {
        let loopback = self.listen.ip().is_loopback();
        if self.demo && !loopback {
            return Err(ConfigError::Invalid(format!(
                "--demo serves the admin token to anyone: it only runs on a loopback address, not {}",
                self.listen
            )));
        }
        if self.dev {
            return Ok(());
        }
        let secrets = self
            .auth
            .jwt_secret
            .iter()
            .map(|s| ("jwt_secret", s))
            .chain(
                self.auth
                    .keys
                    .iter()
                    .filter(|k| k.alg.to_ascii_uppercase().starts_with("HS"))
                    .filter_map(|k| {
                        k.secret
                            .as_ref()
                            .map(|s| (k.kid.as_deref().unwrap_or("auth.keys"), s))
                    }),
            );
        for (name, secret) in secrets {
            if secret.len() < MIN_SECRET_BYTES {
                return Err(ConfigError::Invalid(format!(
                    "{name}: an HMAC secret of {} bytes can be guessed; use at least {MIN_SECRET_BYTES} random bytes (or --dev on a development machine)",
                    secret.len()
                )));
            }
        }
        if self.admin.token.is_some() && self.admin.listen.is_none() && !loopback {
            return Err(ConfigError::Invalid(format!(
                "the admin API would be served on the public listener {}: set admin.listen (--admin-listen) to a private address, or --dev",
                self.listen
            )));
        }
        Ok(())
    }

    /// The auth mode of a plugin's namespace.
    pub fn auth_mode(&self, plugin: &str) -> AuthMode {
        self.plugins
            .get(plugin)
            .and_then(|p| p.auth)
            .unwrap_or(self.auth.mode)
    }
}

fn scalars_as_strings<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<HashMap<String, String>, D::Error> {
    use serde::de::Error;
    let raw = HashMap::<String, toml::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => Ok((k, s)),
            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                Ok((k, v.to_string()))
            }
            other => Err(D::Error::custom(format!(
                "config value {k:?} must be a string, number or boolean, not {}",
                other.type_str()
            ))),
        })
        .collect()
}

/// `RUNTIME__CALL_TIMEOUT_MS` + `50` sets `runtime.call_timeout_ms = 50`. The
/// value is read as a TOML value when it parses as one, else as a string.
fn set_path(doc: &mut toml::Table, path: &str, value: &str) -> Result<(), String> {
    let keys: Vec<String> = path.split("__").map(str::to_lowercase).collect();
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    let mut table = doc;
    for key in parents {
        table = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("{key} is not a table"))?;
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    table.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_stream_keeps_at_least_a_channel_history_and_may_be_set() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.cluster_stream_length(), DEFAULT_STREAM_LENGTH);
        let c = Config::load(None, env(&[("PORTICO_SSE__HISTORY_SIZE", "50000")])).unwrap();
        assert_eq!(c.cluster_stream_length(), 50_000);
        let c = Config::load(None, env(&[("PORTICO_CLUSTER__STREAM_LENGTH", "500")])).unwrap();
        assert_eq!(c.cluster_stream_length(), 500);
    }

    #[test]
    fn call_bounds_default_to_the_runtime_and_a_plugin_may_set_its_own() {
        let c = Config::load(
            None,
            env(&[
                ("PORTICO_RUNTIME__MAX_INSTANCES", "400"),
                ("PORTICO_PLUGINS__SLOW__CALL_WALL_TIMEOUT_MS", "250"),
                ("PORTICO_PLUGINS__SMALL__MAX_INSTANCES", "3"),
            ]),
        )
        .unwrap();
        let (default, by_name) = c.call_policies();
        assert_eq!(default.max_instances, 100, "a quarter of max_instances");
        assert_eq!(default.wall_timeout, std::time::Duration::from_secs(10));
        assert_eq!(by_name["slow"].wall_timeout.as_millis(), 250);
        assert_eq!(by_name["slow"].max_instances, 100);
        assert_eq!(by_name["small"].max_instances, 3);
        assert_eq!(by_name["small"].wall_timeout, default.wall_timeout);
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_nested_keys_and_typos_fail() {
        let c = Config::load(
            None,
            env(&[
                ("PORTICO_RUNTIME__CALL_TIMEOUT_MS", "50"),
                ("PORTICO_PLUGINS__CHAT__CONFIG__MAX_TEXT", "10"),
            ]),
        )
        .unwrap();
        assert_eq!(c.runtime.call_timeout_ms, 50);
        assert_eq!(c.plugins["chat"].config["max_text"], "10");
        let err = Config::load(None, env(&[("PORTICO_RUNTIME__CALL_TIMEOUT", "50")])).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn kv_quota_defaults_and_per_plugin_overrides() {
        let c = Config::load(
            None,
            env(&[
                ("PORTICO_RUNTIME__KV_DEFAULT_TTL_SECS", "60"),
                ("PORTICO_PLUGINS__CHAT__KV_MAX_BYTES", "1000"),
                ("PORTICO_PLUGINS__FEED__KV_DEFAULT_TTL_SECS", "0"),
            ]),
        )
        .unwrap();
        let p = c.kv_policy();
        let minute = Some(std::time::Duration::from_secs(60));
        assert_eq!(p.quota("echo").max_bytes, 64 << 20);
        assert_eq!(p.quota("echo").max_keys, 100_000);
        assert_eq!(p.quota("echo").default_ttl, minute);
        assert_eq!(p.quota("chat").max_bytes, 1000);
        assert_eq!(p.quota("chat").default_ttl, minute);
        assert_eq!(p.quota("feed").default_ttl, None);
    }

    #[test]
    fn unsafe_settings_are_refused_outside_dev() {
        let mut c = Config::default();
        c.auth.jwt_secret = Some("change-me".into());
        assert!(
            c.check_safety()
                .unwrap_err()
                .to_string()
                .contains("9 bytes")
        );
        c.dev = true;
        c.check_safety().unwrap();
        c.dev = false;
        c.auth.jwt_secret = Some("x".repeat(MIN_SECRET_BYTES));
        c.admin.token = Some("t".into());
        c.check_safety().unwrap(); // loopback: the admin API may share the listener
        c.listen = "0.0.0.0:8080".parse().unwrap();
        assert!(
            c.check_safety()
                .unwrap_err()
                .to_string()
                .contains("admin.listen")
        );
        c.admin.listen = Some("10.0.0.1:9000".parse().unwrap());
        c.check_safety().unwrap();
        c.demo = true;
        c.dev = true;
        assert!(c.check_safety().unwrap_err().to_string().contains("--demo"));
    }

    #[test]
    fn file_typo_is_an_error() {
        let dir = std::env::temp_dir().join(format!("portico-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:0\"\n[runtime]\ncall_timeout = 5\n",
        )
        .unwrap();
        assert!(Config::load(Some(&path), vec![]).is_err());
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:0\"\n[plugins.chat]\nisolation = \"fresh\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), vec![]).unwrap();
        assert_eq!(c.plugin_settings("chat").limits.isolation, Isolation::Fresh);
        assert_eq!(
            c.plugin_settings("echo").limits.isolation,
            Isolation::Pooled
        );
    }
}
