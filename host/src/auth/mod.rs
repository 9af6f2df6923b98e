//! Authentication: JWT verification shared by the Socket.IO handshake and SSE.

mod bearer;
mod error;
mod jwks;
mod keys;
mod redact;
mod token;
mod verifier;

pub use bearer::{Bearer, Secret, bearer};
pub use error::AuthError;
pub use redact::{REDACTED, Redacting, redact};
pub use token::mint;
pub use verifier::{Verified, Verifier};

use serde::Deserialize;

/// Whether a namespace or stream needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A valid token is needed to connect.
    Required,
    /// A token is verified when present; anonymous clients may connect.
    Optional,
    /// Tokens are ignored.
    None,
}
