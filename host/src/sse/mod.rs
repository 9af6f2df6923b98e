//! Server-Sent Events: `GET /sse/<plugin>?channel=a&channel=b` streams the
//! plugin's channels as `text/event-stream`.
//!
//! The token comes from `Authorization: Bearer` or `access_token` (browsers'
//! EventSource cannot set headers), checked with the plugin's auth mode; the
//! plugin's `on-subscribe` then authorizes each channel. Refusals happen
//! before the stream starts, as JSON errors. Events carry `id`, `event` and
//! JSON `data`; `Last-Event-ID` resumes (see [`crate::channels`]).

mod error;
mod handler;
mod request;
mod stream;

use axum::Router;
use axum::routing::get;

pub use error::SseError;
pub use stream::RESYNC_EVENT;

use crate::server::AppState;

/// The SSE routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/sse/{plugin}", get(handler::subscribe))
        .with_state(state)
}
