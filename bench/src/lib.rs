//! Portico's load generator: speaks Engine.IO v4 / Socket.IO v5 over WebSocket itself (and
//! reads SSE), so it stays cheap enough to measure a server on one core from another.
//!
//! Modes: [`echo`] (acked echo), [`interactive`] (emit + ack round trips at low load), [`fanout`] (one publisher, M room subscribers, or M SSE
//! streams), [`idle`] (N held connections). Each run prints one JSON line; the runner
//! (`portico-bench`) also reads the `{"phase":...}` lines printed as the run goes.

pub mod conns;
pub mod echo;
pub mod fanout;
pub mod idle;
pub mod interactive;
pub mod run;
pub mod sio;
pub mod sse;
