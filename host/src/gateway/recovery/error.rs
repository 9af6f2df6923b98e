//! Why a session could not be saved or read.

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The shared session store did not answer.
    #[error("session store: {0}")]
    Store(String),
    /// A stored record is not a session.
    #[error("stored session is malformed: {0}")]
    Corrupt(String),
}

pub type Result<T, E = RecoveryError> = std::result::Result<T, E>;
