//! The Socket.IO gateway: each mounted plugin serves one namespace. The
//! gateway only moves messages; what they mean is up to the plugin.

mod actions;
mod detach;
mod mount;
mod session;
mod wire;

pub use actions::DISCONNECT_EVENT;
pub use detach::detach_handshake;
pub use mount::{Mount, Refusal, mount};
