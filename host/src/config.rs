//! Configuration: one TOML file, every key overridable by environment
//! variables (`PORTICO_SECTION__KEY=value`) and the main ones by CLI flags.
//! Unknown keys are errors, so a typo fails at start instead of being ignored.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::AuthMode;
use crate::plugins::{Isolation, Limits, PluginSettings};

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
    /// Per-plugin settings, by plugin name.
    pub plugins: BTreeMap<String, PluginConfig>,
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
            plugins: BTreeMap::new(),
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
    /// KV keys one plugin may hold (memory backend).
    pub kv_max_keys: usize,
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
            kv_max_keys: 100_000,
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
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        Self {
            max_payload: 100_000,
            max_buffer_size: 128,
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            connect_timeout_ms: 45_000,
        }
    }
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
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self { redis_url: None, node_id: None, connect_wait_secs: 30 }
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
    /// Auth mode for this plugin's namespace; default `auth.mode`.
    pub auth: Option<AuthMode>,
    /// Values the plugin reads with `config::get`. Numbers and booleans are
    /// accepted and handed over as text (`max_text = 500` or `"500"`).
    #[serde(deserialize_with = "scalars_as_strings")]
    pub config: HashMap<String, String>,
}

impl Config {
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
        toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))
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
