//! Portico: a real-time edge host. It owns Socket.IO and SSE connections,
//! verifies JWTs, and hands every message to a sandboxed WebAssembly plugin.
//!
//! - [`gateway`]: Socket.IO namespaces, one per plugin.
//! - [`plugins`]: the wasm runtime and the registry of mounted plugins.
//! - [`admin`]: the admin API, the data directory and the plugin CLI.
//! - [`auth`]: JWT verification.
//! - [`config`]: the configuration file, environment and flags.
//! - [`sse`]: Server-Sent Events streams of a plugin's channels.
//! - [`channels`]: ids, history and SSE subscribers of channels.
//! - [`publish`]: the server publish API.
//! - [`tls`]: HTTPS with HTTP/2.
//! - [`presence`]: who is in a channel, on this node or across the cluster.
//! - [`connstate`]: plugins' connection records and per-connection state.
//! - [`timers`]: plugin timers.
//! - [`outbound`]: plugins' HTTP requests to allowed origins.
//! - [`ops`]: health probes and the AsyncAPI document.
//! - [`server`]: wiring it together on one listener.

pub mod admin;
pub mod auth;
pub mod channels;
pub mod cluster;
pub mod config;
pub mod connstate;
pub mod control;
pub mod demo;
pub mod gateway;
pub mod http_error;
pub mod net;
pub mod ops;
pub mod outbound;
pub mod plugins;
pub mod presence;
pub mod publish;
pub mod server;
pub mod sse;
pub mod state;
pub mod timers;
pub mod tls;
