//! Errors of the plugin runtime.

use super::types::Rejection;

/// Loading a plugin failed; the plugin is not served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a WebAssembly component (a core module, or garbage).
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// The component implements no `portico:plugin/plugin` world this host supports (0.1.0-0.3.0).
    #[error(
        "does not implement a portico:plugin world this host serves (0.3.0, 0.2.0, 0.1.0): {0}"
    )]
    WrongWorld(String),
    /// `describe()` failed or returned nonsense.
    #[error("describe() failed: {0}")]
    Describe(String),
    /// The plugin is larger than allowed.
    #[error("plugin is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The plugin is valid but cannot be put in service (mount taken, ...).
    #[error("cannot be mounted: {0}")]
    Registry(#[from] RegistryError),
    /// Compiling took longer than `runtime.compile_timeout_ms` (its wait for a turn included).
    #[error(
        "compiling the plugin took over {0} ms (runtime.compile_timeout_ms); nothing was changed"
    )]
    CompileTimeout(u64),
    /// The compiler task died (a bug or the runtime shutting down), not the plugin's fault.
    #[error("the compiler task failed: {0}")]
    Compiler(#[from] tokio::task::JoinError),
    /// Reading the file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// One call into a plugin failed. The host and other calls are unaffected.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The call ran past its CPU deadline and was interrupted.
    #[error("plugin call exceeded its {0} ms deadline")]
    Timeout(u64),
    /// The call (host calls and instantiation included) ran past its wall-clock deadline.
    #[error("plugin call exceeded its {0} ms wall-clock deadline")]
    WallTimeout(u64),
    /// The plugin has as many instances alive as it may (`max_instances`); refused at once.
    #[error("the plugin is busy: all its {0} instances are in use")]
    Busy(usize),
    /// The plugin tried to grow its memory past its cap.
    #[error("plugin exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    /// The plugin trapped (a panic, an `unreachable`, an out-of-bounds access...).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// No instance could be created (pool exhausted, instantiation trap).
    #[error("plugin instance unavailable: {0}")]
    Unavailable(String),
}

impl CallError {
    /// The stable code a client sees for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout(_) | Self::WallTimeout(_) => "plugin_timeout",
            Self::Busy(_) => "plugin_busy",
            Self::MemoryLimit(_) => "plugin_memory_limit",
            Self::Trap(_) => "plugin_error",
            Self::Unavailable(_) => "plugin_unavailable",
        }
    }

    /// A metric/log label for the kind of failure.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::WallTimeout(_) => "wall_timeout",
            Self::Busy(_) => "busy",
            Self::MemoryLimit(_) => "memory",
            Self::Trap(_) => "trap",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// What the client is told: the code and a message without host internals.
    pub fn to_rejection(&self) -> Rejection {
        let message = match self {
            Self::Trap(_) => "the plugin failed while handling this message".to_owned(),
            Self::Unavailable(_) => "the plugin cannot take this message right now".to_owned(),
            other => other.to_string(),
        };
        Rejection::new(self.code(), message)
    }
}

/// A registry operation (rollback, promote, deploy) cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// There is no revision before the active one.
    #[error("there is no earlier revision to roll back to")]
    NoPrevious,
    /// No kept revision matches the selector.
    #[error("no revision matches {0:?} (use a revision number, a version or a sha256 prefix)")]
    NoSuchRevision(String),
    /// Promote was asked while no canary runs.
    #[error("no canary is running")]
    NoCanary,
    /// A canary needs an active version to share connections with.
    #[error(
        "plugin {0:?} is not mounted: a canary needs an active version, upload it without `canary` first"
    )]
    CanaryNeedsActive(String),
    /// A plugin's mount cannot change while it is mounted.
    #[error("plugin is mounted on {current}; remove it before mounting it on {mount}")]
    MountChange { mount: String, current: String },
    /// Another plugin serves that namespace.
    #[error("namespace {mount} is served by plugin {by:?}")]
    MountTaken { mount: String, by: String },
}
