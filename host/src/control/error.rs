//! Errors of the plugin control service.

use crate::plugins::{LoadError, RegistryError};

/// A change to the plugin set was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No plugin by that name is mounted.
    #[error("no plugin named {0:?}")]
    NotFound(String),
    /// The component did not compile or validate.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The registry cannot do that (mount taken, no earlier revision, ...).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The change could not be saved (the data directory); it was undone.
    #[error("the change could not be saved, nothing changed: {0}")]
    NotSaved(#[from] super::change::SinkError),
}

pub type Result<T, E = ControlError> = std::result::Result<T, E>;

/// A namespace could not be served or taken down by whoever serves them.
pub type NamespaceError = Box<dyn std::error::Error + Send + Sync>;
