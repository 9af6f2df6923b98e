//! The set of mounted plugins. Each plugin has a slot whose active version is
//! swapped atomically: calls in flight finish on the version they started with.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;

use super::engine::PluginEngine;
use super::error::LoadError;
use super::kv::KvStore;
use super::version::{Limits, LoadSpec, PluginVersion};

/// A mounted plugin: its name, where it is mounted, and its active version.
pub struct PluginSlot {
    pub name: String,
    /// Socket.IO namespace (and SSE stream name) it serves, e.g. `/chat`.
    pub mount: String,
    active: ArcSwap<PluginVersion>,
}

impl PluginSlot {
    /// The version new calls go to.
    pub fn active(&self) -> Arc<PluginVersion> {
        self.active.load_full()
    }
}

/// What the operator configured for a plugin.
#[derive(Debug, Clone, Default)]
pub struct PluginSettings {
    pub mount: Option<String>,
    pub limits: Limits,
    pub config: HashMap<String, String>,
}

/// Every plugin this node serves.
pub struct Registry {
    engine: Arc<PluginEngine>,
    kv: KvStore,
    slots: RwLock<BTreeMap<String, Arc<PluginSlot>>>,
}

/// Whether an install mounted a new plugin or replaced a running one.
pub enum Installed {
    New(Arc<PluginSlot>),
    Replaced(Arc<PluginSlot>),
}

impl Registry {
    pub fn new(engine: Arc<PluginEngine>, kv: KvStore) -> Self {
        Self {
            engine,
            kv,
            slots: RwLock::default(),
        }
    }

    /// Compile and validate `wasm`, then make it the active version of `name`.
    /// On any error nothing changes.
    pub async fn install(
        &self,
        name: &str,
        wasm: Arc<[u8]>,
        settings: PluginSettings,
    ) -> Result<Installed, LoadError> {
        let spec = LoadSpec {
            name: name.to_owned(),
            limits: settings.limits,
            config: settings.config,
            kv: self.kv.space(name),
        };
        let version = PluginVersion::load(self.engine.clone(), wasm, spec).await?;
        if version.manifest.name != name {
            tracing::warn!(plugin = name, manifest = %version.manifest.name, "plugin is served under its file name, not its manifest name");
        }
        let mut slots = self.slots.write().unwrap();
        if let Some(slot) = slots.get(name) {
            slot.active.store(version);
            return Ok(Installed::Replaced(slot.clone()));
        }
        let mount = settings.mount.unwrap_or_else(|| format!("/{name}"));
        let slot = Arc::new(PluginSlot {
            name: name.to_owned(),
            mount,
            active: ArcSwap::new(version),
        });
        slots.insert(name.to_owned(), slot.clone());
        Ok(Installed::New(slot))
    }

    pub fn get(&self, name: &str) -> Option<Arc<PluginSlot>> {
        self.slots.read().unwrap().get(name).cloned()
    }

    pub fn list(&self) -> Vec<Arc<PluginSlot>> {
        self.slots.read().unwrap().values().cloned().collect()
    }
}
