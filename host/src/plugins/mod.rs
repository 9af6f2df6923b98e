//! The WebAssembly plugin runtime.
//!
//! One [`PluginEngine`] per process (pooling allocator, epoch-driven CPU
//! deadlines, compiled-artifact cache). Each plugin version is compiled once
//! into an `InstancePre`; calls take a warm instance from its pool, and an
//! instance that trapped is dropped, never reused. The [`Registry`] maps
//! plugin names to slots whose active version swaps atomically; only
//! [`crate::control`] changes it. Plugin KV sits on the [`KvBackend`]
//! capability (memory, or Redis in cluster mode).

mod bindings;
mod canary;
mod engine;
mod error;
mod host_impl;
mod host_v2;
mod kv;
mod packed;
mod registry;
mod stats;
mod types;
mod version;

pub use canary::{Canary, CanaryPolicy};
pub use engine::{EngineSettings, PluginEngine, sha256_hex};
pub use error::{CallError, LoadError, RegistryError};
pub use kv::{
    KvBackend, KvError, KvFull, KvPolicy, KvQuota, KvRefused, KvResult, KvSpace, KvStore,
    entry_bytes,
};
pub use registry::{
    ConnectionGuard, Installed, MAX_REVISIONS, PluginSettings, PluginSlot, Registry, Revision,
    Rollout, SlotEvent, SlotState,
};
pub use stats::Histogram;
pub use types::{
    Action, Connection, Event, EventSpec, JsonArray, Manifest, Payload, Principal, Rejection, Text,
    TimerEvent, Transport,
};
pub use version::{Answer, CallPolicy, Counters, Isolation, Limits, PluginVersion};
