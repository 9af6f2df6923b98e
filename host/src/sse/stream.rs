//! A subscription as an SSE body: `retry:`, the backlog, a `resync` event if
//! needed, then live events with keep-alive comments, until the subscriber is
//! cut off or the node shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, stream};
use serde_json::json;

use crate::channels::{Entry, StreamPermit, Subscription};

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
    /// This stream's slots under the per-address and per-subject caps.
    pub permit: StreamPermit,
}

pub(super) fn respond(mut sub: Subscription, settings: StreamSettings) -> Response {
    // The backlog is encoded as the body is read, not up front: a reader that
    // resumes many channels and never reads pins only the entries (shared
    // with history), not an encoded copy of them all.
    let backlog = std::mem::take(&mut sub.backlog);
    let resync = sub.resync.take().map(|resync| {
        Event::default()
            .id(resync.id.to_string())
            .event(RESYNC_EVENT)
            .data(json!({ "channels": resync.channels }).to_string())
    });
    let first = stream::iter([Event::default().retry(settings.retry)])
        .chain(paced(backlog))
        .chain(stream::iter(resync));
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
    // The subscription (and the permit) live inside the stream: dropping the
    // body unsubscribes and frees the slots. The queue closes only when the
    // reader was cut off for being too slow: it is told so (the same reason
    // a Socket.IO client gets), then the stream ends and the client resumes
    // with its Last-Event-ID.
    let live = stream::unfold(Some((sub, settings.permit)), |held| async move {
        let (mut sub, permit) = held?;
        match sub.live.recv().await {
            Some(entry) => Some((event(&entry), Some((sub, permit)))),
            None => Some((Some(slow_consumer()), None)),
        }
    })
    .filter_map(std::future::ready);
    let events: std::pin::Pin<Box<dyn Stream<Item = Event> + Send>> =
        Box::pin(first.chain(live).take_until(shutdown));
    let body = Sse::new(events.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(settings.keep_alive));
    // Ask buffering proxies (nginx) to pass events through at once.
    ([("x-accel-buffering", "no")], body).into_response()
}

/// Bytes of backlog encoded between two yields to the runtime.
const BACKLOG_SLICE: usize = 64 << 10;

/// The backlog as events, yielding to other tasks after every
/// [`BACKLOG_SLICE`] bytes: a reader resuming a large history on a fast
/// socket would otherwise hold a worker thread until its socket is full.
fn paced(backlog: Vec<Arc<Entry>>) -> impl Stream<Item = Event> + Send {
    stream::unfold(
        (backlog.into_iter(), 0usize),
        |(mut rest, mut bytes)| async move {
            loop {
                let e = rest.next()?;
                bytes += e.data.len() + e.event.len();
                if bytes >= BACKLOG_SLICE {
                    bytes = 0;
                    tokio::task::yield_now().await;
                }
                if let Some(ev) = event(&e) {
                    return Some((ev, (rest, bytes)));
                }
            }
        },
    )
}

/// The last event of a stream cut off because its reader fell behind.
fn slow_consumer() -> Event {
    Event::default()
        .event(crate::gateway::DISCONNECT_EVENT)
        .data(json!({ "reason": crate::gateway::SLOW_CONSUMER }).to_string())
}

/// The entry as an SSE event, or `None` when it cannot be one. Names are
/// checked when published here, but entries also come from Redis: a name with
/// a line break would make axum panic and kill the stream (on HTTP/2, every
/// stream of the connection), so such an entry is skipped and logged.
fn event(e: &Entry) -> Option<Event> {
    if e.event.contains(['\n', '\r']) {
        tracing::warn!(id = %e.id, channel = %e.channel, "skipping an event whose name has a line break");
        return None;
    }
    Some(
        Event::default()
            .id(e.id.to_string())
            .event(&e.event)
            .data(&e.data),
    )
}
