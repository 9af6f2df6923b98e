//! The gateway as a whole: what every namespace shares (the Socket.IO
//! instance, the verifier, the per-IP limiter, the channel hub), and mounting
//! a plugin on its namespace, at start or later (hot-load, replication).

use std::sync::Arc;

use super::Io;
use super::mount::{self, Mount, MountError};
use super::throttle::{ConnectionLimiter, EventLimits};
use crate::auth::Verifier;
use crate::channels::Hub;
use crate::config::Config;
use crate::ops::{InFlight, Metrics};
use crate::plugins::PluginSlot;
use crate::presence::Presence;

pub struct Gateway {
    io: Io,
    verifier: Arc<Verifier>,
    connections: Arc<ConnectionLimiter>,
    channels: Arc<Hub>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    /// Socket queues being drained; shutdown waits for them.
    in_flight: InFlight,
    presence: Arc<Presence>,
    recovery: Arc<super::Recovery>,
    /// Engine.IO sessions not yet joined (settled at each join attempt).
    pending: Arc<crate::net::PendingSessions>,
}

impl Gateway {
    pub fn new(
        io: Io,
        verifier: Arc<Verifier>,
        channels: Arc<Hub>,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        recovery: Arc<super::Recovery>,
    ) -> Self {
        let connections = Arc::new(ConnectionLimiter::new(&config.throttle));
        Self {
            io,
            verifier,
            connections,
            channels,
            presence: Presence::memory(config.node_id()),
            config,
            metrics,
            in_flight: InFlight::default(),
            recovery,
            pending: Arc::new(crate::net::PendingSessions::new(
                0,
                0,
                std::time::Duration::ZERO,
            )),
        }
    }

    /// Plugin work in progress on sockets (graceful shutdown waits for it).
    pub fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }

    /// Record joins, leaves and disconnects in `presence`.
    pub fn with_presence(mut self, presence: Arc<Presence>) -> Self {
        self.presence = presence;
        self
    }

    /// Settle `pending` admissions when sessions ask to join a namespace.
    pub fn with_pending_sessions(mut self, pending: Arc<crate::net::PendingSessions>) -> Self {
        self.pending = pending;
        self
    }

    pub fn io(&self) -> &Io {
        &self.io
    }

    /// Serve `slot` on its namespace with the auth mode and event limits
    /// configured for it. Later versions of the plugin are picked up by the
    /// slot itself; mounting happens once per plugin name.
    pub async fn mount(&self, slot: Arc<PluginSlot>) -> Result<(), MountError> {
        let name = slot.name.clone();
        let mount = Mount {
            auth: self.config.auth_mode(&name),
            verifier: self.verifier.clone(),
            io: self.io.clone(),
            limits: EventLimits::for_plugin(&self.config, &name),
            connections: self.connections.clone(),
            channels: self.channels.space(&name),
            stats: self.metrics.namespace(&slot.mount),
            metrics: self.metrics.clone(),
            in_flight: self.in_flight.clone(),
            presence: self.presence.clone(),
            recovery: self.recovery.clone(),
            encoder: super::recovery::Encoder::new(self.recovery.enabled()),
            expiries: super::expiry::Expiries::spawn(self.io.clone(), slot.mount.clone()),
            pending: self.pending.clone(),
            slot,
        };
        self.recovery.register(&mount.slot.mount, &name);
        tracing::info!(plugin = %name, namespace = %mount.slot.mount, version = %mount.slot.active().manifest.version, auth = ?mount.auth, "mounted");
        mount::serve(mount).await
    }
}

/// The control service mounts and unmounts namespaces through this.
impl crate::control::Namespaces for Gateway {
    fn mount(
        &self,
        slot: Arc<PluginSlot>,
    ) -> futures::future::BoxFuture<'_, Result<(), crate::control::NamespaceError>> {
        Box::pin(async move { Gateway::mount(self, slot).await.map_err(Into::into) })
    }

    fn unmount(&self, slot: &PluginSlot) -> usize {
        super::unmount(&self.io, slot)
    }
}
