//! Portico: a real-time edge host. It owns Socket.IO and SSE connections,
//! verifies JWTs, and hands every message to a sandboxed WebAssembly plugin.
//!
//! - [`gateway`]: Socket.IO namespaces, one per plugin.
//! - [`plugins`]: the wasm runtime and the registry of mounted plugins.
//! - [`auth`]: JWT verification.
//! - [`config`]: the configuration file, environment and flags.
//! - [`ops`]: health probes and the AsyncAPI document.
//! - [`server`]: wiring it together on one listener.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod ops;
pub mod plugins;
pub mod server;
