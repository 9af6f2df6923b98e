//! Delivering a plugin's fired timers: one about a connection joins that
//! socket's queue (so it is ordered with its events and its actions apply to
//! it); one about no connection calls the plugin alone, and only its
//! publications and direct messages can be performed.

use std::sync::Arc;

use socketioxide::socket::Sid;

use super::actions;
use super::mount::Mount;
use super::session::{Session, Work};
use crate::plugins::TimerEvent;

/// Take the plugin's fired-timer channel and deliver from it until the
/// plugin is removed. Once per plugin name, like the mount itself.
pub(super) fn deliver(mount: &Arc<Mount>) {
    let Some(mut fired) = mount.slot.active().timers().take_receiver() else {
        return;
    };
    let mount = mount.clone();
    let mut unmounted = mount.slot.unmounted();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                timer = fired.recv() => match timer {
                    Some(timer) => one(&mount, timer),
                    None => return,
                },
                _ = unmounted.changed() => return,
            }
        }
    });
}

fn one(mount: &Arc<Mount>, timer: TimerEvent) {
    let Some(id) = timer.conn.clone() else {
        let mount = mount.clone();
        tokio::spawn(async move { detached(&mount, timer).await });
        return;
    };
    let socket = id
        .parse::<Sid>()
        .ok()
        .and_then(|sid| mount.io.of(&mount.slot.mount)?.get_socket(sid));
    let Some(socket) = socket else {
        // The connection went away as the timer fired; its timers are cancelled.
        return;
    };
    let Some(session) = socket.extensions.get::<Arc<Session>>() else {
        return;
    };
    session.push(Work::Timer(timer));
    tokio::spawn(async move { session.drain(&socket).await });
}

async fn detached(mount: &Mount, timer: TimerEvent) {
    let _busy = mount.in_flight.enter();
    let version = mount.slot.active();
    match version.on_timer(&timer).await {
        Ok(Some(list)) => actions::apply_detached(mount, list).await,
        Ok(None) => {}
        Err(e) => {
            tracing::debug!(plugin = %mount.slot.name, timer = timer.id, "on-timer failed: {e}")
        }
    }
}
