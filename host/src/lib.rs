//! Portico: a real-time edge host. It owns Socket.IO and SSE connections,
//! verifies JWTs, and hands every message to a sandboxed WebAssembly plugin.
//!
//! - [`gateway`]: Socket.IO namespaces, one per plugin; the publisher of a
//!   channel publication on both transports.
//! - [`plugins`]: the wasm runtime and the registry of mounted plugins.
//! - [`control`]: the plugin control service, the only way the plugin set changes.
//! - [`admin`]: the admin API, the data directory, the replicator and the plugin CLI.
//! - [`auth`]: JWT verification and Bearer credentials.
//! - [`config`]: the configuration file, environment and flags.
//! - [`sse`]: Server-Sent Events streams of a plugin's channels.
//! - [`channels`]: ids, history and SSE subscribers of channels.
//! - [`publish`]: the server publish API.
//! - [`presence`]: who is in a channel, on this node or across the cluster.
//! - [`connstate`]: plugins' connection records and per-connection state.
//! - [`timers`]: plugin timers.
//! - [`outbound`]: plugins' HTTP requests to allowed origins.
//! - [`cluster`]: the Redis implementations of the domains' capabilities.
//! - [`ops`]: health probes, metrics, the AsyncAPI document, shutdown.
//! - [`demo`]: the demo page (`--demo`).
//! - [`http_error`]: the one HTTP error shape and its logging middleware.
//! - [`durable`]: files written so they survive a crash or a power loss.
//! - [`tls`]: HTTPS with HTTP/2.
//! - [`state`]: what every route shares.
//! - [`server`]: wiring it together.

pub mod admin;
pub mod auth;
pub mod channels;
pub mod cluster;
pub mod config;
pub mod connstate;
pub mod control;
pub mod demo;
pub mod durable;
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
