//! Errors of outbound HTTP.

/// An outbound request was refused or failed. Each maps to one
/// `outbound.http-error` case the plugin sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The origin (of the URL or of a redirect) is not allowed for the plugin.
    #[error("origin {0} is not allowed for this plugin")]
    Forbidden(String),
    /// The name resolved to an address the plugin may not reach.
    #[error("{0}")]
    BlockedAddress(String),
    /// No complete response in time (milliseconds).
    #[error("no response within {0} ms")]
    Timeout(u32),
    /// The response body is over the cap (bytes).
    #[error("response body over {0} bytes")]
    TooLarge(u64),
    /// The plugin's concurrent requests are all in flight.
    #[error("{0} requests of this plugin are already in flight")]
    Busy(u32),
    /// A malformed request.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Connecting or the exchange failed.
    #[error("request failed: {0}")]
    Failed(String),
}

impl OutboundError {
    /// A metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Forbidden(_) => "forbidden",
            Self::BlockedAddress(_) => "blocked_address",
            Self::Timeout(_) => "timeout",
            Self::TooLarge(_) => "too_large",
            Self::Busy(_) => "busy",
            Self::Invalid(_) => "invalid",
            Self::Failed(_) => "failed",
        }
    }
}

/// A configured origin or address range is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("outbound setting {value:?}: {reason}")]
pub struct PolicyError {
    pub value: String,
    pub reason: String,
}
