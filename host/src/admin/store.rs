//! The data directory: every revision's component (by sha256), its config and
//! limits, and which revision is active, so a restart serves exactly what was
//! active. Layout:
//!
//! ```text
//! <data_dir>/state.json          plugins, revisions, active revision, removed names
//! <data_dir>/blobs/<sha256>.wasm components
//! <data_dir>/cache/              compiled artifacts (default cache dir)
//! ```
//!
//! Every file is written to a temporary name, synced, renamed into place and
//! its directory synced, so a crash or a power loss leaves the old or the new
//! file, never half of one; temporary files left by a crash are removed at
//! start ([`crate::durable`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::StoreError;
use crate::control::PluginControl;
use crate::plugins::{
    Isolation, Limits, PluginSettings, PluginSlot, Registry, Revision, sha256_hex,
};

type Result<T, E = StoreError> = std::result::Result<T, E>;

const STATE: &str = "state.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    format: u32,
    plugins: BTreeMap<String, SavedPlugin>,
    /// Plugins removed through the API: a `--plugins` directory copy of them
    /// is not loaded again.
    removed: BTreeSet<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedPlugin {
    mount: String,
    active: u64,
    revisions: Vec<SavedRevision>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedRevision {
    id: u64,
    sha256: String,
    /// The manifest version, for people reading the file.
    version: String,
    installed_at_ms: u64,
    config: BTreeMap<String, String>,
    limits: SavedLimits,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedLimits {
    call_timeout_ms: u64,
    memory_bytes: usize,
    isolation: Isolation,
    max_warm: usize,
}

/// What one save writes: taken from the registry under the admin lock.
pub struct Snapshot {
    plugins: Vec<(String, String, u64, Vec<Revision>)>,
    removed: BTreeSet<String>,
}

impl Snapshot {
    pub fn of(registry: &Registry, removed: BTreeSet<String>) -> Self {
        let plugins = registry
            .list()
            .into_iter()
            .map(|slot| {
                let (revisions, active) = slot.revisions();
                (slot.name.clone(), slot.mount.clone(), active, revisions)
            })
            .collect();
        Self { plugins, removed }
    }
}

/// A plugin set read back from the data directory.
pub struct Restored {
    pub slots: Vec<Arc<PluginSlot>>,
    pub removed: BTreeSet<String>,
}

pub struct DataDir {
    root: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Write `bytes` to `path` so that a crash or power loss leaves the old file
/// or the new one (see [`crate::durable`]).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::durable::write_atomic(path, bytes).map_err(io_err(path))
}

impl DataDir {
    /// Open (creating) the directory, and remove the temporary files of
    /// writes a crash interrupted.
    pub fn open(root: &Path) -> Result<Self> {
        let blobs = root.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        for dir in [root, blobs.as_path()] {
            crate::durable::remove_leftovers(dir).map_err(io_err(dir))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{sha256}.wasm"))
    }

    fn read_state(&self) -> Result<State> {
        let path = self.root.join(STATE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                path: path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Write every revision's blob that is not there yet, then the state,
    /// then delete blobs no revision uses. Blocking: call off the runtime.
    pub fn save(&self, snapshot: &Snapshot) -> Result<()> {
        let mut state = State {
            format: 1,
            plugins: BTreeMap::new(),
            removed: snapshot.removed.clone(),
        };
        let mut used = BTreeSet::new();
        for (name, mount, active, revisions) in &snapshot.plugins {
            let mut saved = Vec::new();
            for r in revisions {
                let v = &r.version;
                let path = self.blob_path(&v.sha256);
                if !path.exists() {
                    write_atomic(&path, &v.wasm)?;
                }
                used.insert(format!("{}.wasm", v.sha256));
                saved.push(SavedRevision {
                    id: r.id,
                    sha256: v.sha256.clone(),
                    version: v.manifest.version.clone(),
                    installed_at_ms: millis(r.installed_at),
                    config: v
                        .config
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    limits: SavedLimits {
                        call_timeout_ms: v.limits.call_timeout.as_millis() as u64,
                        memory_bytes: v.limits.memory_bytes,
                        isolation: v.limits.isolation,
                        max_warm: v.limits.max_warm,
                    },
                });
            }
            state.plugins.insert(
                name.clone(),
                SavedPlugin {
                    mount: mount.clone(),
                    active: *active,
                    revisions: saved,
                },
            );
        }
        let json = serde_json::to_vec_pretty(&state).expect("state serializes");
        write_atomic(&self.root.join(STATE), &json)?;
        let blobs = self.root.join("blobs");
        for entry in std::fs::read_dir(&blobs).map_err(io_err(&blobs))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".wasm") && !used.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Load the saved plugin set through `control` (before any client is
    /// accepted). A revision that no longer loads is skipped with a warning;
    /// a plugin whose active revision does not load is not restored.
    pub async fn restore(&self, control: &PluginControl) -> Result<Restored> {
        let state = self.read_state()?;
        let mut loaded = Vec::new();
        for (name, saved) in state.plugins {
            let mut revisions = Vec::new();
            for r in saved.revisions {
                match self.load_revision(control, &name, &saved.mount, &r).await {
                    Ok(rev) => revisions.push(rev),
                    Err(reason) => {
                        tracing::warn!(plugin = %name, revision = r.id, "saved revision not restored: {reason}")
                    }
                }
            }
            if !revisions.iter().any(|r| r.id == saved.active) {
                tracing::error!(plugin = %name, revision = saved.active, "the active revision could not be restored; plugin not mounted from the data directory");
                continue;
            }
            loaded.push((name, saved.mount, revisions, saved.active));
        }
        let mut tx = control.transaction().await;
        let slots = loaded
            .into_iter()
            .filter_map(|(name, mount, revisions, active)| {
                tx.restore(&name, mount, revisions, active)
            })
            .collect();
        for name in &state.removed {
            tx.mark_removed(name);
        }
        Ok(Restored {
            slots,
            removed: state.removed,
        })
    }

    async fn load_revision(
        &self,
        control: &PluginControl,
        name: &str,
        mount: &str,
        r: &SavedRevision,
    ) -> std::result::Result<Revision, String> {
        let path = self.blob_path(&r.sha256);
        let wasm = tokio::fs::read(&path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if sha256_hex(&wasm) != r.sha256 {
            return Err(StoreError::BadBlob(r.sha256.clone()).to_string());
        }
        let config_map: HashMap<String, String> = r.config.clone().into_iter().collect();
        let settings = PluginSettings {
            mount: Some(mount.to_owned()),
            limits: Limits {
                call_timeout: Duration::from_millis(r.limits.call_timeout_ms),
                memory_bytes: r.limits.memory_bytes,
                isolation: r.limits.isolation,
                max_warm: r.limits.max_warm,
            },
            config: config_map,
        };
        let version = control
            .prepare(name, wasm.into(), &settings)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Revision {
            id: r.id,
            version,
            installed_at: UNIX_EPOCH + Duration::from_millis(r.installed_at_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_removes_the_temporary_files_of_interrupted_writes() {
        let root = std::env::temp_dir().join(format!("portico-datadir-{}-tmp", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("blobs")).unwrap();
        let leftovers = [root.join("state.tmp77"), root.join("blobs/ab12.tmp77")];
        for path in &leftovers {
            std::fs::write(path, b"half").unwrap();
        }
        std::fs::write(root.join(STATE), b"{}").unwrap();
        DataDir::open(&root).unwrap();
        for path in &leftovers {
            assert!(!path.exists(), "{} is left", path.display());
        }
        assert!(root.join(STATE).exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
