//! A JWKS file, re-read when it changes: its modification time is checked at
//! most every `jwks_reload_secs`, on the handshake path (no task, no timer).
//! A file that fails to load keeps the previous keys in service.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::Jwk;

use super::error::AuthError;
use super::keys::Key;

pub(super) struct Jwks {
    path: PathBuf,
    every: Duration,
    state: Mutex<State>,
}

struct State {
    checked: Instant,
    modified: Option<SystemTime>,
    keys: Arc<Vec<Key>>,
}

impl Jwks {
    /// Load `path` now; a missing or invalid file is a start-up error.
    pub(super) fn open(path: PathBuf, every: Duration) -> Result<Self, AuthError> {
        let modified = modified(&path);
        let keys = Arc::new(load(&path)?);
        Ok(Self {
            path,
            every,
            state: Mutex::new(State {
                checked: Instant::now(),
                modified,
                keys,
            }),
        })
    }

    /// The current keys, re-reading the file first if it changed.
    pub(super) fn keys(&self) -> Arc<Vec<Key>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.checked.elapsed() >= self.every {
            s.checked = Instant::now();
            let now = modified(&self.path);
            if now != s.modified {
                match load(&self.path) {
                    Ok(keys) => {
                        tracing::info!(file = %self.path.display(), keys = keys.len(), "JWKS reloaded");
                        s.keys = Arc::new(keys);
                        s.modified = now;
                    }
                    // Keep serving with the old keys; retry at the next check.
                    Err(e) => tracing::warn!(file = %self.path.display(), "JWKS not reloaded: {e}"),
                }
            }
        }
        s.keys.clone()
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Parse the document; an entry that cannot be used (an encryption key, an
/// unsupported type) is skipped with a warning rather than failing the set.
fn load(path: &std::path::Path) -> Result<Vec<Key>, AuthError> {
    let text = std::fs::read(path)
        .map_err(|e| AuthError::BadKey(format!("cannot read {}: {e}", path.display())))?;
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_slice(&text).map_err(|e| {
        AuthError::BadKey(format!("{} is not a JWKS document: {e}", path.display()))
    })?;
    let mut keys = Vec::new();
    for value in doc.keys {
        if value.get("use").and_then(|u| u.as_str()) == Some("enc") {
            continue;
        }
        match serde_json::from_value::<Jwk>(value)
            .map_err(|e| AuthError::BadKey(format!("JWKS entry: {e}")))
            .and_then(|jwk| Key::from_jwk(&jwk))
        {
            Ok(k) => keys.push(k),
            Err(e) => tracing::warn!(file = %path.display(), "JWKS entry skipped: {e}"),
        }
    }
    Ok(keys)
}
