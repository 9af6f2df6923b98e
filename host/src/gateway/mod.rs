//! The Socket.IO gateway: each mounted plugin serves one namespace. The
//! gateway only moves messages; what they mean is up to the plugin.
//!
//! [`Gateway`] mounts namespaces for the control service (`mount`: handshake
//! and handlers, `session`: the per-socket ordered queue, `actions`: what a
//! plugin returned). [`publish`] owns a channel publication on both
//! transports (SSE and the Socket.IO room). The adapter's cross-node driver
//! is the [`CrossNode`] capability, local or Redis, picked at wiring.

mod actions;
mod adapter;
mod detach;
mod expiry;
mod mount;
mod namespaces;
mod publisher;
mod recovery;
mod session;
mod throttle;
mod timers;
mod unmount;
mod wire;
mod writable;

pub use actions::{DISCONNECT_EVENT, SLOW_CONSUMER};
pub use detach::detach_handshake;
pub use mount::{Mount, MountError, Refusal};
pub use namespaces::Gateway;
pub use publisher::{Audience, Channels, publish};
pub use recovery::{MemorySessions, Recovery, RecoveryError, SavedSession, SessionStore};
pub use throttle::{ConnectionLimiter, EventLimits};
pub use unmount::{PLUGIN_REMOVED, unmount};

pub use adapter::{Adapter, AdapterDriver, CrossNode, CrossNodeError, CrossNodeStats};
pub use socketioxide_redis::drivers::ChanItem;
/// The Socket.IO server and the types bound to its adapter.
pub type Io = socketioxide::SocketIo<Adapter>;
type SocketRef = socketioxide::extract::SocketRef<Adapter>;
type AckSender = socketioxide::extract::AckSender<Adapter>;
