//! What the control service announces, and who listens.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::error::NamespaceError;
use crate::plugins::{PluginSlot, Registry, Revision, Rollout};

/// Where a change comes from; consumers decide on it (a change applied from
/// the cluster is saved but not announced again; a start-up load is neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Loaded before serving: the data directory, `--plugins`, the cluster's set.
    Startup,
    /// This node's admin API or its canary watcher.
    Local,
    /// Another node's change, applied here.
    Cluster,
}

/// One change to the plugin set, after it happened.
#[derive(Clone)]
pub enum Change {
    /// A new plugin name is mounted with its first revision.
    Mounted {
        slot: Arc<PluginSlot>,
        revision: Revision,
    },
    /// A new revision of a mounted plugin: active now, or a canary.
    Deployed {
        slot: Arc<PluginSlot>,
        revision: Revision,
        rollout: Rollout,
    },
    /// An earlier revision is active again (or a canary was ended by hand).
    RolledBack {
        slot: Arc<PluginSlot>,
        revision: Revision,
    },
    /// The canary is active for every connection.
    Promoted {
        slot: Arc<PluginSlot>,
        revision: Revision,
    },
    /// The canary watcher ended a failing canary.
    CanaryAborted {
        slot: Arc<PluginSlot>,
        revision: u64,
        reason: String,
    },
    /// The plugin is out of service; `disconnected` sockets were closed.
    Removed {
        slot: Arc<PluginSlot>,
        disconnected: usize,
    },
}

impl Change {
    pub fn slot(&self) -> &Arc<PluginSlot> {
        match self {
            Self::Mounted { slot, .. }
            | Self::Deployed { slot, .. }
            | Self::RolledBack { slot, .. }
            | Self::Promoted { slot, .. }
            | Self::CanaryAborted { slot, .. }
            | Self::Removed { slot, .. } => slot,
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.slot().name
    }
}

/// A change and where it came from, as broadcast.
#[derive(Clone)]
pub struct ChangeEvent {
    pub origin: Origin,
    pub change: Change,
}

/// The plugin set as a sink sees it, under the control lock.
pub struct PluginSet<'a> {
    pub registry: &'a Registry,
    /// Names removed through the API or by the cluster (and not deployed since).
    pub removed: &'a BTreeSet<String>,
}

/// Serves plugins on their namespaces (the Socket.IO gateway). Mounting is
/// part of a change: an upload answers once clients can connect, a removal
/// reports how many sockets it closed.
pub trait Namespaces: Send + Sync {
    fn mount(&self, slot: Arc<PluginSlot>) -> BoxFuture<'_, Result<(), NamespaceError>>;
    /// Close the namespace's sockets; returns how many.
    fn unmount(&self, slot: &PluginSlot) -> usize;
}

/// Reacts to every change, in order, under the control lock (the data
/// directory saves, the replicator announces). A change is answered once
/// every sink ran, so "201 Created" means saved and shared too. A sink that
/// fails ([`SinkError`]) undoes the change: the later sinks do not run, the
/// plugin set is put back as it was and the caller gets
/// [`super::ControlError::NotSaved`].
pub trait ChangeSink: Send + Sync {
    fn on_change<'a>(
        &'a self,
        event: &'a ChangeEvent,
        set: PluginSet<'a>,
    ) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// A sink could not make a change durable (the data directory cannot be written).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);
