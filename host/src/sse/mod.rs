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
use axum::http::Method;
use axum::http::header::{AUTHORIZATION, HeaderName};
use axum::routing::get;
use tower_http::cors::{Any, CorsLayer};

pub use error::SseError;
pub use stream::RESYNC_EVENT;

use crate::state::AppState;

/// The SSE routes. Any origin may open a stream: credentials travel in the
/// `access_token` parameter or the `Authorization` header, never in cookies.
pub fn router() -> Router<AppState> {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET])
        .allow_headers([AUTHORIZATION, HeaderName::from_static("last-event-id")]);
    Router::new()
        .route("/sse/{plugin}", get(handler::subscribe))
        .layer(cors)
}
