//! The plugin control service: the only way the plugin set changes.
//!
//! Deploy, roll back, promote, remove, a change applied from another node,
//! a canary the watcher aborts, and the start-up loads all go through
//! [`PluginControl`]. It compiles outside its lock, then, under the lock,
//! changes the [`Registry`], mounts or unmounts the namespace
//! ([`Namespaces`]), runs the [`ChangeSink`]s (the data directory saves, the
//! replicator announces) and broadcasts a [`ChangeEvent`]. Admin handlers,
//! start-up, the canary watcher and cluster sync are thin callers.

mod canary;
mod change;
mod error;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::{MutexGuard, broadcast};

pub use change::{Change, ChangeEvent, ChangeSink, Namespaces, Origin, PluginSet, SinkError};
pub use error::{ControlError, NamespaceError, Result};

use crate::plugins::{
    CanaryPolicy, Installed, PluginSettings, PluginSlot, PluginVersion, Registry, Revision,
    Rollout, SlotState,
};

/// Change events kept for a slow observer before it lags.
const EVENTS: usize = 64;

/// When the canary watcher judges a canary.
#[derive(Debug, Clone, Copy)]
pub struct CanaryWatch {
    pub policy: CanaryPolicy,
    pub every: Duration,
}

/// Owner of the plugin set. See the module docs.
pub struct PluginControl {
    registry: Arc<Registry>,
    /// Serializes changes (and their reactions); holds the removed names.
    removed: tokio::sync::Mutex<BTreeSet<String>>,
    namespaces: OnceLock<Arc<dyn Namespaces>>,
    sinks: Mutex<Vec<Arc<dyn ChangeSink>>>,
    events: broadcast::Sender<ChangeEvent>,
    canary: CanaryWatch,
    /// For the canary watchers this spawns.
    this: Weak<PluginControl>,
}

/// What a deploy did.
pub struct Deployed {
    pub installed: Installed,
    pub revision: Revision,
}

impl PluginControl {
    pub fn new(registry: Arc<Registry>, canary: CanaryWatch) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            registry,
            removed: tokio::sync::Mutex::default(),
            namespaces: OnceLock::new(),
            sinks: Mutex::default(),
            events: broadcast::channel(EVENTS).0,
            canary,
            this: this.clone(),
        })
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Serve every plugin loaded so far on its namespace, and every later one
    /// as it comes. Once, at start.
    pub async fn attach_namespaces(
        &self,
        namespaces: Arc<dyn Namespaces>,
    ) -> Result<(), NamespaceError> {
        let _lock = self.removed.lock().await;
        for slot in self.registry.list() {
            namespaces.mount(slot).await?;
        }
        let _ = self.namespaces.set(namespaces);
        Ok(())
    }

    /// Run `sink` after every later change.
    pub fn add_sink(&self, sink: Arc<dyn ChangeSink>) {
        self.sinks.lock().unwrap().push(sink);
    }

    /// Every change from now on (after its sinks ran).
    pub fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.events.subscribe()
    }

    /// Names removed through the API or by the cluster (and not deployed since).
    pub async fn removed_names(&self) -> BTreeSet<String> {
        self.removed.lock().await.clone()
    }

    /// Compile and validate without changing anything (no lock held).
    pub async fn prepare(
        &self,
        name: &str,
        wasm: Arc<[u8]>,
        settings: &PluginSettings,
    ) -> Result<Arc<PluginVersion>> {
        Ok(self.registry.prepare(name, wasm, settings).await?)
    }

    /// Take the lock: changes made through the returned [`Txn`] are serialized.
    pub async fn transaction(&self) -> Txn<'_> {
        Txn {
            control: self,
            removed: self.removed.lock().await,
        }
    }

    /// Compile `wasm` (outside the lock), then put it in service.
    pub async fn deploy(
        &self,
        name: &str,
        wasm: Arc<[u8]>,
        settings: &PluginSettings,
        rollout: Rollout,
        origin: Origin,
    ) -> Result<Deployed> {
        let version = self.prepare(name, wasm, settings).await?;
        let mount = settings.mount.clone();
        self.transaction()
            .await
            .install(name, mount, version, rollout, origin)
            .await
    }

    pub async fn rollback(
        &self,
        name: &str,
        to: Option<&str>,
    ) -> Result<(Arc<PluginSlot>, Revision)> {
        let mut tx = self.transaction().await;
        tx.rollback(name, to, Origin::Local).await
    }

    pub async fn promote(&self, name: &str) -> Result<(Arc<PluginSlot>, Revision)> {
        self.transaction().await.promote(name, Origin::Local).await
    }

    /// Take `name` out of service; returns its slot and the sockets closed.
    pub async fn remove(&self, name: &str) -> Result<(Arc<PluginSlot>, usize)> {
        self.transaction().await.remove(name, Origin::Local).await
    }

    /// End a failing canary (the watcher); `false` if it already ended.
    pub async fn abort_canary(&self, slot: &Arc<PluginSlot>, revision: u64, reason: &str) -> bool {
        self.transaction()
            .await
            .abort_canary(slot, revision, reason)
            .await
    }
}

/// The control lock, held: every change of the plugin set happens here.
pub struct Txn<'a> {
    control: &'a PluginControl,
    removed: MutexGuard<'a, BTreeSet<String>>,
}

impl Txn<'_> {
    pub fn registry(&self) -> &Registry {
        &self.control.registry
    }

    fn find(&self, name: &str) -> Result<Arc<PluginSlot>> {
        self.registry()
            .get(name)
            .ok_or_else(|| ControlError::NotFound(name.to_owned()))
    }

    /// Put a compiled version in service as a new revision of `name`.
    pub async fn install(
        &mut self,
        name: &str,
        mount: Option<String>,
        version: Arc<PluginVersion>,
        rollout: Rollout,
        origin: Origin,
    ) -> Result<Deployed> {
        let before = self.registry().get(name).map(|s| s.state());
        let (installed, revision) = self.registry().deploy(name, mount, version, rollout)?;
        let was_removed = self.removed.remove(name);
        let slot = installed.slot().clone();
        let change = match &installed {
            Installed::New(_) => {
                if let Some(ns) = self.control.namespaces.get()
                    && let Err(e) = ns.mount(slot.clone()).await
                {
                    tracing::error!(plugin = %name, "{e}");
                }
                Change::Mounted {
                    slot: slot.clone(),
                    revision: revision.clone(),
                }
            }
            Installed::Replaced(_) => Change::Deployed {
                slot: slot.clone(),
                revision: revision.clone(),
                rollout,
            },
        };
        if let Err(e) = self.react(origin, change).await {
            match before {
                Some(state) => slot.put_back(state),
                None => {
                    self.registry().remove(name);
                    if let Some(ns) = self.control.namespaces.get() {
                        ns.unmount(&slot);
                    }
                }
            }
            if was_removed {
                self.removed.insert(name.to_owned());
            }
            return Err(e.into());
        }
        if let (Rollout::Canary(_), Some(control)) = (rollout, self.control.this.upgrade()) {
            canary::watch(control, slot, revision.id);
        }
        Ok(Deployed {
            installed,
            revision,
        })
    }

    /// Make an earlier revision active (see [`PluginSlot::rollback`]).
    pub async fn rollback(
        &mut self,
        name: &str,
        to: Option<&str>,
        origin: Origin,
    ) -> Result<(Arc<PluginSlot>, Revision)> {
        let slot = self.find(name)?;
        let before = slot.state();
        let revision = slot.rollback(to)?;
        let change = Change::RolledBack {
            slot: slot.clone(),
            revision: revision.clone(),
        };
        self.react_or_put_back(origin, change, &slot, before)
            .await?;
        Ok((slot, revision))
    }

    /// Make the running canary active for every connection.
    pub async fn promote(
        &mut self,
        name: &str,
        origin: Origin,
    ) -> Result<(Arc<PluginSlot>, Revision)> {
        let slot = self.find(name)?;
        let before = slot.state();
        let revision = slot.promote()?;
        let change = Change::Promoted {
            slot: slot.clone(),
            revision: revision.clone(),
        };
        self.react_or_put_back(origin, change, &slot, before)
            .await?;
        Ok((slot, revision))
    }

    /// Take `name` out of service and close its namespace. The sinks run
    /// (the removal is saved) before any socket is closed, so a removal that
    /// cannot be saved leaves the plugin serving its clients.
    pub async fn remove(&mut self, name: &str, origin: Origin) -> Result<(Arc<PluginSlot>, usize)> {
        let slot = self
            .registry()
            .detach(name)
            .ok_or_else(|| ControlError::NotFound(name.to_owned()))?;
        let was_removed = !self.removed.insert(name.to_owned());
        let event = ChangeEvent {
            origin,
            change: Change::Removed {
                slot: slot.clone(),
                disconnected: slot.connections().0 as usize,
            },
        };
        if let Err(e) = self.run_sinks(&event).await {
            self.registry().reattach(slot);
            if !was_removed {
                self.removed.remove(name);
            }
            return Err(e.into());
        }
        self.registry().close(&slot);
        let disconnected = self
            .control
            .namespaces
            .get()
            .map_or(0, |ns| ns.unmount(&slot));
        let change = Change::Removed {
            slot: slot.clone(),
            disconnected,
        };
        // No observer is fine.
        let _ = self.control.events.send(ChangeEvent { origin, change });
        Ok((slot, disconnected))
    }

    async fn abort_canary(&mut self, slot: &Arc<PluginSlot>, revision: u64, reason: &str) -> bool {
        // Only while `slot` is still the one serving its name.
        let current = self.registry().get(&slot.name);
        if !current.is_some_and(|c| Arc::ptr_eq(&c, slot)) || !slot.abort_canary(revision, reason) {
            return false;
        }
        let change = Change::CanaryAborted {
            slot: slot.clone(),
            revision,
            reason: reason.to_owned(),
        };
        // The canary ends on this node even if that cannot be saved: it failed.
        if let Err(e) = self.react(Origin::Local, change).await {
            tracing::error!(plugin = %slot.name, "the canary was ended but that could not be saved: {e}");
        }
        true
    }

    /// Recreate a saved slot (start-up, from the data directory).
    pub fn restore(
        &mut self,
        name: &str,
        mount: String,
        revisions: Vec<Revision>,
        active: u64,
    ) -> Option<Arc<PluginSlot>> {
        self.registry().restore(name, mount, revisions, active)
    }

    /// Remember `name` as removed although it is not mounted here (a removal
    /// saved before a restart, or one the cluster recorded).
    pub fn mark_removed(&mut self, name: &str) {
        self.removed.insert(name.to_owned());
    }

    /// Run the sinks, in order, then tell the observers. A failed sink
    /// stops there: the caller undoes the change and nobody is told.
    async fn react(&mut self, origin: Origin, change: Change) -> Result<(), SinkError> {
        let event = ChangeEvent { origin, change };
        self.run_sinks(&event).await?;
        // No observer is fine.
        let _ = self.control.events.send(event);
        Ok(())
    }

    /// [`react`](Self::react), and on a failed sink put `slot` back as `before`.
    async fn react_or_put_back(
        &mut self,
        origin: Origin,
        change: Change,
        slot: &PluginSlot,
        before: SlotState,
    ) -> Result<(), SinkError> {
        self.react(origin, change)
            .await
            .inspect_err(|_| slot.put_back(before))
    }

    async fn run_sinks(&mut self, event: &ChangeEvent) -> Result<(), SinkError> {
        let sinks = self.control.sinks.lock().unwrap().clone();
        for sink in sinks {
            let set = PluginSet {
                registry: &self.control.registry,
                removed: &self.removed,
            };
            sink.on_change(event, set).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
