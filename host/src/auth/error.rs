//! Why a token was refused. Each variant has a stable code clients can match.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in `auth.token`, the `Authorization` header or the query.
    #[error("a token is required")]
    Missing,
    /// Not three base64url parts of JSON.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// The header names an algorithm no configured key accepts (including `none`).
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    /// The header's `kid` matches no configured key.
    #[error("no key with id {0:?}")]
    UnknownKey(String),
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    /// A claim the configuration requires (such as `exp`) is absent.
    #[error("the token lacks the required claim {0:?}")]
    MissingClaim(String),
    /// A configured key cannot be used.
    #[error("unusable verification key: {0}")]
    BadKey(String),
    /// Auth is required but no key is configured.
    #[error("no verification key is configured")]
    NotConfigured,
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "token_missing",
            Self::Malformed(_) => "token_malformed",
            Self::Algorithm(_) => "token_algorithm",
            Self::UnknownKey(_) => "token_unknown_key",
            Self::BadSignature => "token_bad_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongIssuer => "token_wrong_issuer",
            Self::WrongAudience => "token_wrong_audience",
            Self::MissingClaim(_) => "token_missing_claim",
            Self::BadKey(_) | Self::NotConfigured => "auth_not_configured",
        }
    }
}
