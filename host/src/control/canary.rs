//! Watching a canary: a task per canary judges its failure rate every
//! interval and, when it is too high, aborts it through the control service
//! (so the abort is saved and shared like any change).

use std::sync::Arc;
use std::time::Instant;

use super::PluginControl;
use crate::plugins::PluginSlot;

/// Watch `slot`'s canary `revision` until it is promoted, rolled back,
/// replaced or the plugin removed.
pub(super) fn watch(control: Arc<PluginControl>, slot: Arc<PluginSlot>, revision: u64) {
    let super::CanaryWatch { policy, every } = control.canary;
    // The watcher must not keep the control service alive on its own.
    let control = Arc::downgrade(&control);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if slot.is_unmounted() {
                return;
            }
            let canary = match slot.canary() {
                Some(c) if c.revision == revision => c,
                _ => return,
            };
            let Some(reason) = canary.check(&policy, Instant::now()) else {
                continue;
            };
            let Some(control) = control.upgrade() else {
                return;
            };
            if control.abort_canary(&slot, revision, &reason).await {
                tracing::warn!(plugin = %slot.name, revision, version = %canary.version.manifest.version, "canary rolled back automatically: {reason}");
            }
            return;
        }
    });
}
