//! The Socket.IO gateway: each mounted plugin serves one namespace. The
//! gateway only moves messages; what they mean is up to the plugin.

mod actions;
mod mount;
mod namespaces;
mod session;
mod throttle;
mod unmount;
mod wire;

pub use actions::DISCONNECT_EVENT;
pub use mount::{Mount, Refusal};
pub use namespaces::Gateway;
pub use throttle::{ConnectionLimiter, EventLimits};
pub use unmount::{PLUGIN_REMOVED, unmount};
