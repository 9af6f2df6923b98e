//! Why an SSE request was refused before its stream started.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;
use crate::channels::{BadId, ChannelError};
use crate::http_error::ApiError;
use crate::plugins::Rejection;

#[derive(Debug, thiserror::Error)]
pub enum SseError {
    /// No plugin of that name is mounted.
    #[error("no plugin named {0:?}")]
    UnknownPlugin(String),
    /// The request names no `channel`.
    #[error("name at least one channel: /sse/<plugin>?channel=<name>")]
    NoChannel,
    /// More channels than `sse.max_channels`.
    #[error("{0} channels requested, the limit is {1}")]
    TooManyChannels(usize, usize),
    /// A channel name is not acceptable.
    #[error(transparent)]
    BadChannel(ChannelError),
    /// `Last-Event-ID` (or `lastEventId`) is not an id this server issues.
    #[error("Last-Event-ID: {0}")]
    BadLastEventId(#[from] BadId),
    /// The token is missing or invalid.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The plugin's `on-subscribe` refused a channel.
    #[error("channel {channel:?}: {}", rejection.message)]
    Refused {
        channel: String,
        rejection: Rejection,
    },
    /// The plugin failed while deciding.
    #[error("the plugin failed: {}", .0.message)]
    Plugin(Rejection),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Closed,
    /// Too many streams are open from this address or for this subject.
    #[error("too many streams are open {0}: close one first")]
    TooManyStreams(&'static str),
}

impl From<SseError> for ApiError {
    fn from(e: SseError) -> Self {
        let message = e.to_string();
        let (status, code) = match &e {
            SseError::UnknownPlugin(_) => (StatusCode::NOT_FOUND, "unknown_plugin".to_owned()),
            SseError::NoChannel | SseError::TooManyChannels(..) | SseError::BadChannel(_) => {
                (StatusCode::BAD_REQUEST, "bad_request".to_owned())
            }
            SseError::BadLastEventId(_) => {
                (StatusCode::BAD_REQUEST, "bad_last_event_id".to_owned())
            }
            SseError::Auth(a) => (StatusCode::UNAUTHORIZED, a.code().to_owned()),
            SseError::Refused { rejection, .. } => (StatusCode::FORBIDDEN, rejection.code.clone()),
            SseError::Plugin(r) => (StatusCode::BAD_GATEWAY, r.code.clone()),
            SseError::Closed => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down".to_owned()),
            SseError::TooManyStreams(_) => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_streams".to_owned())
            }
        };
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for SseError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
