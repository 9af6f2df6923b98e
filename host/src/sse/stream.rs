//! A subscription as an SSE body: `retry:`, the backlog, a `resync` event if
//! needed, then live events with keep-alive comments, until the subscriber is
//! cut off or the node shuts down.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, stream};
use serde_json::json;

use crate::channels::{Entry, Subscription};

/// Event sent when a channel cannot be resumed: the client should reload the
/// channel's state. Its `data` is `{"channels": [...]}`.
pub const RESYNC_EVENT: &str = "resync";

pub(super) struct StreamSettings {
    pub retry: Duration,
    pub keep_alive: Duration,
    /// The token's `exp` (seconds since the epoch): the stream ends then, so
    /// a stream never outlives its credential; the client reconnects with a
    /// fresh token (and `lastEventId`) and loses nothing.
    pub expires_at: Option<u64>,
    /// Flips to `true` when the plugin is removed: its streams end cleanly.
    pub unmounted: tokio::sync::watch::Receiver<bool>,
}

pub(super) fn respond(mut sub: Subscription, settings: &StreamSettings) -> Response {
    let mut first = vec![Event::default().retry(settings.retry)];
    first.extend(std::mem::take(&mut sub.backlog).iter().map(|e| event(e)));
    if let Some(resync) = sub.resync.take() {
        first.push(
            Event::default()
                .id(resync.id.to_string())
                .event(RESYNC_EVENT)
                .data(json!({ "channels": resync.channels }).to_string()),
        );
    }
    let mut closing = sub.closing.clone();
    let mut unmounted = settings.unmounted.clone();
    let expiry = settings.expires_at.map(|exp| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Duration::from_secs(exp).saturating_sub(now)
    });
    let shutdown = async move {
        let expired = async {
            match expiry {
                Some(left) => tokio::time::sleep(left).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = closing.wait_for(|c| *c) => {}
            _ = unmounted.wait_for(|u| *u) => {}
            () = expired => {}
        }
    };
    // The subscription lives inside the stream: dropping the body unsubscribes.
    // The queue closes only when the reader was cut off for being too slow:
    // it is told so (the same reason a Socket.IO client gets), then the
    // stream ends and the client resumes with its Last-Event-ID.
    let live = stream::unfold(Some(sub), |sub| async move {
        let mut sub = sub?;
        match sub.live.recv().await {
            Some(entry) => Some((event(&entry), Some(sub))),
            None => Some((slow_consumer(), None)),
        }
    });
    let events: std::pin::Pin<Box<dyn Stream<Item = Event> + Send>> =
        Box::pin(stream::iter(first).chain(live).take_until(shutdown));
    let body = Sse::new(events.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(settings.keep_alive));
    // Ask buffering proxies (nginx) to pass events through at once.
    ([("x-accel-buffering", "no")], body).into_response()
}

/// The last event of a stream cut off because its reader fell behind.
fn slow_consumer() -> Event {
    Event::default()
        .event(crate::gateway::DISCONNECT_EVENT)
        .data(json!({ "reason": crate::gateway::SLOW_CONSUMER }).to_string())
}

/// Names were checked when published (no newlines), and `data` is compact JSON.
fn event(e: &Entry) -> Event {
    Event::default()
        .id(e.id.to_string())
        .event(&e.event)
        .data(&e.data)
}
