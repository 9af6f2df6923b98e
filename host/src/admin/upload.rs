//! Reading an upload: the name, the content type, and the query parameters
//! that carry per-plugin config, limits and the rollout:
//!
//! `PUT /admin/v1/plugins/chat?config.version=2.0.0&call_timeout_ms=50&canary=10`

use std::time::Duration;

use axum::http::{HeaderMap, header};

use super::error::{AdminError, Result};
use crate::config::Config;
use crate::plugins::{Isolation, PluginSettings, Rollout};

/// Longest CPU deadline an upload may ask for.
pub const MAX_CALL_TIMEOUT_MS: u64 = 60_000;

/// Plugin names: what a namespace and a file name can both carry.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AdminError::BadRequest(format!(
            "plugin name {name:?} must be 1-64 characters of a-z, 0-9, '-' or '_'"
        )))
    }
}

/// Namespaces: `/` and a name, printable, at most 256 bytes.
pub fn check_mount(mount: &str) -> Result<()> {
    let ok = mount.starts_with('/')
        && (2..=256).contains(&mount.len())
        && !mount.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(AdminError::BadRequest(format!(
            "mount={mount:?}: a namespace starts with '/', e.g. /chat (at most 256 bytes, no spaces)"
        )))
    }
}

/// The body must be declared as wasm (or raw bytes); a missing type is
/// accepted, a form or JSON type is a mistake worth naming.
pub fn check_content_type(headers: &HeaderMap) -> Result<()> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = value.to_str().unwrap_or("?");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/wasm" | "application/octet-stream" => Ok(()),
        _ => Err(AdminError::UnsupportedMediaType(ct.to_owned())),
    }
}

/// What an upload asks for besides its bytes.
pub struct Upload {
    pub settings: PluginSettings,
    pub rollout: Rollout,
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
    value.parse().map_err(|_| {
        AdminError::BadRequest(format!("query parameter {key}={value:?} is not a number"))
    })
}

/// Parse the query over the plugin's configured settings: `config.KEY` values
/// are added to (and override) the config file's, limits replace them.
pub fn parse(name: &str, query: Option<&str>, config: &Config) -> Result<Upload> {
    let mut settings = config.plugin_settings(name);
    let mut rollout = Rollout::Now;
    let pairs = url::form_urlencoded::parse(query.unwrap_or("").as_bytes());
    for (key, value) in pairs {
        let (key, value) = (key.as_ref(), value.as_ref());
        if let Some(k) = key.strip_prefix("config.") {
            if k.is_empty() {
                return Err(AdminError::BadRequest(
                    "config. needs a key: config.KEY=VALUE".into(),
                ));
            }
            settings.config.insert(k.to_owned(), value.to_owned());
            continue;
        }
        let limits = &mut settings.limits;
        match key {
            "canary" => {
                let pct: u8 = number(key, value)?;
                if !(1..=100).contains(&pct) {
                    return Err(AdminError::BadRequest(format!(
                        "canary={pct}: the percentage must be 1-100"
                    )));
                }
                rollout = Rollout::Canary(pct);
            }
            "mount" => {
                check_mount(value)?;
                settings.mount = Some(value.to_owned());
            }
            "call_timeout_ms" => {
                let ms: u64 = number(key, value)?;
                if !(1..=MAX_CALL_TIMEOUT_MS).contains(&ms) {
                    return Err(AdminError::BadRequest(format!(
                        "call_timeout_ms={ms}: must be 1-{MAX_CALL_TIMEOUT_MS}"
                    )));
                }
                limits.call_timeout = Duration::from_millis(ms);
            }
            "memory_limit_mb" => limits.memory_bytes = memory_limit(value, config)?,
            "isolation" => {
                limits.isolation = match value {
                    "pooled" => Isolation::Pooled,
                    "fresh" => Isolation::Fresh,
                    _ => {
                        return Err(AdminError::BadRequest(format!(
                            "isolation={value:?}: use pooled or fresh"
                        )));
                    }
                }
            }
            "max_warm_instances" => {
                let n: usize = number(key, value)?;
                let max = config.runtime.max_instances as usize;
                if n > max {
                    return Err(AdminError::BadRequest(format!(
                        "max_warm_instances={n}: at most runtime.max_instances ({max})"
                    )));
                }
                limits.max_warm = n;
            }
            other => {
                return Err(AdminError::BadRequest(format!(
                    "unknown query parameter {other:?} (known: config.KEY, canary, mount, call_timeout_ms, memory_limit_mb, isolation, max_warm_instances)"
                )));
            }
        }
    }
    Ok(Upload { settings, rollout })
}

/// The largest memory the engine was sized for, in MiB.
pub fn max_memory_mb(config: &Config) -> usize {
    config.runtime.memory_limit_mb.max(
        config
            .plugins
            .values()
            .filter_map(|p| p.memory_limit_mb)
            .max()
            .unwrap_or(0),
    )
}

/// `memory_limit_mb`, within what the engine was sized for.
fn memory_limit(value: &str, config: &Config) -> Result<usize> {
    let mb: usize = number("memory_limit_mb", value)?;
    let max = max_memory_mb(config);
    if !(1..=max).contains(&mb) {
        return Err(AdminError::BadRequest(format!(
            "memory_limit_mb={mb}: must be 1-{max} (the engine's largest memory)"
        )));
    }
    Ok(mb << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_sets_config_limits_and_canary() {
        let c = Config::default();
        let u = parse(
            "chat",
            Some("config.version=2.0.0&config.max_text=5&call_timeout_ms=50&isolation=fresh&canary=10"),
            &c,
        )
        .unwrap();
        assert_eq!(u.settings.config["version"], "2.0.0");
        assert_eq!(u.settings.config["max_text"], "5");
        assert_eq!(u.settings.limits.call_timeout, Duration::from_millis(50));
        assert_eq!(u.settings.limits.isolation, Isolation::Fresh);
        assert_eq!(u.rollout, Rollout::Canary(10));
        assert_eq!(parse("chat", None, &c).unwrap().rollout, Rollout::Now);
    }

    #[test]
    fn bad_queries_are_named() {
        let c = Config::default();
        for (q, needle) in [
            ("canary=0", "1-100"),
            ("canary=x", "not a number"),
            ("timeout=5", "unknown query parameter"),
            ("isolation=none", "pooled or fresh"),
            ("memory_limit_mb=100000", "largest memory"),
            ("mount=chat", "starts with '/'"),
            ("mount=/a%20b", "no spaces"),
            ("max_warm_instances=1000000", "runtime.max_instances"),
        ] {
            let err = parse("chat", Some(q), &c).err().unwrap().to_string();
            assert!(err.contains(needle), "{q}: {err}");
        }
        assert!(check_name("Chat").is_err());
        assert!(check_name("chat-2").is_ok());
    }
}
