//! Watching a canary: a task per canary judges its failure rate every
//! interval and rolls it back on its own when the rate is too high.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::plugins::{CanaryPolicy, PluginSlot};

/// Watch `slot`'s canary `revision` until it is promoted, rolled back,
/// replaced or the plugin removed.
pub fn watch(slot: Arc<PluginSlot>, revision: u64, policy: CanaryPolicy, every: Duration) {
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
            if let Some(reason) = canary.check(&policy, Instant::now()) {
                if slot.abort_canary(revision, &reason) {
                    tracing::warn!(plugin = %slot.name, revision, version = %canary.version.manifest.version, "canary rolled back automatically: {reason}");
                }
                return;
            }
        }
    });
}
