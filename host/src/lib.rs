//! Portico: a real-time edge host. It owns Socket.IO and SSE connections,
//! verifies JWTs, and hands every message to a sandboxed WebAssembly plugin.
//!
//! - [`gateway`]: Socket.IO namespaces, one per plugin.
//! - [`plugins`]: the wasm runtime and the registry of mounted plugins.
//! - [`admin`]: the admin API, the data directory and the plugin CLI.
//! - [`auth`]: JWT verification.
//! - [`config`]: the configuration file, environment and flags.
//! - [`server`]: wiring it together on one listener.

pub mod admin;
pub mod auth;
pub mod config;
pub mod gateway;
pub mod plugins;
pub mod server;
