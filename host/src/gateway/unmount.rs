//! Taking a plugin's namespace down when the plugin is removed.

use super::Io;
use serde_json::json;

use super::actions::DISCONNECT_EVENT;
use crate::plugins::PluginSlot;

/// The `reason` connected clients get when their plugin is removed.
pub const PLUGIN_REMOVED: &str = "plugin_removed";

/// Disconnect every socket of `slot`'s namespace, each told
/// `portico:disconnect {reason: "plugin_removed"}` first, then delete the
/// namespace so new connections get "Invalid namespace". Returns how many
/// sockets were disconnected. The slot must already be out of the registry
/// (its handshakes then refuse with `plugin_removed`).
pub fn unmount(io: &Io, slot: &PluginSlot) -> usize {
    let mut closed = 0;
    if let Some(ns) = io.of(&slot.mount) {
        for socket in ns.sockets() {
            // Queued before the disconnect packet, so it arrives first.
            let _ = socket.emit(DISCONNECT_EVENT, &json!({ "reason": PLUGIN_REMOVED }));
            if socket.disconnect().is_ok() {
                closed += 1;
            }
        }
    }
    io.delete_ns(&slot.mount);
    closed
}
