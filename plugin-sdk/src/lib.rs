//! `portico-sdk` is how you write a Portico plugin: business logic for one
//! Socket.IO namespace (and its SSE stream), compiled to a `wasm32-wasip2` WebAssembly component
//! that the Portico gateway loads, sandboxes and hot-swaps.
//!
//! A plugin is a type implementing [`Plugin`] plus one [`export!`] line. The host calls the
//! plugin when a client connects, sends an event, subscribes to a channel or goes away; the
//! plugin answers with a list of [`Action`]s (ack, emit, publish to a channel, join, ...) that
//! the host performs. State lives in the host's [`kv`] store, settings in [`config`], and
//! [`presence`] says who is in a channel.
//!
//! ```
//! use portico_sdk::prelude::*;
//!
//! /// Answers `hello` with a greeting.
//! pub struct Hello;
//!
//! impl Plugin for Hello {
//!     fn manifest() -> Manifest {
//!         Manifest::new("hello", "0.1.0").description("Says hello")
//!     }
//!
//!     fn on_event(conn: &Connection, event: &Event) -> Result<Actions, Rejection> {
//!         match event.name() {
//!             "hello" => {
//!                 let name: String = event.arg()?;
//!                 log::info(&format!("{} said hello", conn.id()));
//!                 Ok(vec![Action::ack(&json!({ "ok": true, "greeting": format!("Hello, {name}!") }))])
//!             }
//!             other => Err(Rejection::new("unknown_event", format!("no event `{other}`"))),
//!         }
//!     }
//! }
//!
//! portico_sdk::export!(Hello);
//!
//! // Plain `cargo test` runs the plugin natively against an in-memory host:
//! let host = portico_sdk::testing::TestHost::<Hello>::new();
//! let alice = host.user("alice");
//! assert_eq!(
//!     host.ack(&alice, "hello", "Alice"),
//!     json!({ "ok": true, "greeting": "Hello, Alice!" })
//! );
//! ```
//!
//! Build it with `crate-type = ["cdylib", "rlib"]` and
//! `cargo build --target wasm32-wasip2 --release`: the `.wasm` file is the component
//! (`opt-level = 3`, `lto = true`, `codegen-units = 1` and `panic = "abort"` in
//! `[profile.release]` make it fast and keep it small).
//!
//! # Conventions
//!
//! - Acks carry one JSON object. Success acks look like `{"ok": true, ...}`; error acks are
//!   exactly `{"ok": false, "code": "...", "message": "..."}` (see [`Rejection::to_json`]). A
//!   [`Rejection`] returned from [`Plugin::on_event`] becomes such an error ack in the host.
//! - Binary attachments follow Socket.IO: the JSON keeps `{"_placeholder":true,"num":N}` where
//!   `N` indexes into the binary list (see [`Payload::placeholder`]).
//!
//! # In the sandbox
//!
//! On `wasm32` the SDK installs, on the first call into the plugin, a panic hook that reports
//! the panic message and location through the host log at error level (the plugin has no
//! stderr), and a global allocator that logs and traps cleanly when memory runs out.
#![warn(missing_docs)]

mod action;
mod bridge;
pub mod config;
mod host;
pub mod http;
pub mod kv;
pub mod log;
mod packed;
pub mod presence;
mod router;
mod rt;
#[cfg(any(target_arch = "wasm32", test))]
mod small_blocks;
pub mod state;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod time;
pub mod timers;
mod types;

pub use action::{Action, Actions};
pub use router::{Reply, Router};
pub use schemars::JsonSchema;
pub use serde_json::json;
pub use types::{Connection, Event, EventSpec, Manifest, Payload, Principal, Rejection, Transport};

/// The generated WebAssembly bindings. Not part of the API: use the SDK types instead.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit/0.3.0",
        world: "portico:plugin/plugin@0.3.0",
        pub_export_macro: true,
        export_macro_name: "__export_portico_plugin",
        default_bindings_module: "portico_sdk::wit",
        generate_all,
    });
}

/// Glue used by [`export!`]. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bridge::*;
}

/// Everything a plugin usually needs: `use portico_sdk::prelude::*;`.
///
/// ```
/// use portico_sdk::prelude::*;
/// let ack = Action::ack(&json!({ "ok": true }));
/// # let _ = ack;
/// ```
pub mod prelude {
    pub use crate::timers::Timer;
    pub use crate::{
        Action, Actions, Connection, Event, EventSpec, JsonSchema, Manifest, Payload, Plugin,
        Principal, Rejection, Reply, Router, Transport, config, http, json, kv, log, presence,
        state, time, timers,
    };
}

/// A Portico plugin: what happens when clients connect, send events, subscribe or leave.
///
/// All functions are associated functions (no `self`): a plugin instance may be recycled or
/// replaced between calls, so anything that must survive a call goes to [`kv`] (or to
/// [`state`], per connection). Only [`manifest`](Plugin::manifest) is required; events are
/// handled either by typed handlers ([`router`](Plugin::router)) or by overriding
/// [`on_event`](Plugin::on_event) and matching on the event name.
///
/// ```
/// use portico_sdk::prelude::*;
///
/// pub struct Ping;
///
/// impl Plugin for Ping {
///     fn manifest() -> Manifest {
///         Manifest::new("ping", "1.0.0")
///     }
///     fn on_event(_conn: &Connection, _event: &Event) -> Result<Actions, Rejection> {
///         Ok(vec![Action::ack(&json!({ "ok": true, "pong": time::now_ms() }))])
///     }
/// }
/// portico_sdk::export!(Ping);
/// ```
pub trait Plugin: Sized + 'static {
    /// Name, version, description and events of the plugin. Called once when it is loaded.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let manifest = Manifest::new("echo", env!("CARGO_PKG_VERSION")).description("Echoes events");
    /// # let _ = manifest;
    /// ```
    fn manifest() -> Manifest;

    /// A client connects. Returning an error refuses the connection: the client gets a
    /// `connect_error` with the rejection. The default accepts everyone and does nothing.
    ///
    /// ```no_run
    /// # use portico_sdk::prelude::*;
    /// fn on_connect(conn: &Connection) -> Result<Actions, Rejection> {
    ///     conn.subject().ok_or_else(|| Rejection::new("unauthorized", "sign in first"))?;
    ///     Ok(vec![Action::join("lobby")])
    /// }
    /// ```
    fn on_connect(conn: &Connection) -> Result<Actions, Rejection> {
        let _ = conn;
        Ok(Actions::new())
    }

    /// The typed handlers: one per event, with its payload and ack types (see [`Router`]).
    /// Their events and schemas are added to the manifest. The default has none.
    ///
    /// ```no_run
    /// # use portico_sdk::prelude::*;
    /// #[derive(serde::Deserialize, JsonSchema)]
    /// struct Room { room: String }
    /// fn router() -> Router {
    ///     Router::new().on("join", "Join a room", |_conn, Room { room }| {
    ///         Ok(Reply::ack(json!({ "ok": true })).with(Action::join(room)))
    ///     })
    /// }
    /// ```
    fn router() -> Router {
        Router::new()
    }

    /// A client sent an event. An error becomes the error ack
    /// `{"ok": false, "code": ..., "message": ...}` when the client asked for an ack.
    /// The default dispatches to the typed handlers of [`router`](Plugin::router).
    ///
    /// ```no_run
    /// # use portico_sdk::prelude::*;
    /// fn on_event(_conn: &Connection, event: &Event) -> Result<Actions, Rejection> {
    ///     Ok(vec![Action::emit_payload(event.name(), event.payload())])
    /// }
    /// ```
    fn on_event(conn: &Connection, event: &Event) -> Result<Actions, Rejection> {
        router::dispatch::<Self>(conn, event)
    }

    /// A timer set with [`timers::after`] (`conn` is `None`) or [`timers::after_for`] fired.
    /// Actions that address "the connection" apply to `conn`; without one, only publications
    /// and direct messages are performed. The default does nothing.
    ///
    /// ```no_run
    /// # use portico_sdk::prelude::*;
    /// fn on_timer(timer: &Timer, conn: Option<&Connection>) -> Actions {
    ///     match conn {
    ///         Some(_) => vec![Action::emit("reminder", &timer.name())],
    ///         None => vec![Action::publish("lobby", "tick", &timer.id())],
    ///     }
    /// }
    /// ```
    fn on_timer(timer: &timers::Timer, conn: Option<&Connection>) -> Actions {
        let _ = (timer, conn);
        Actions::new()
    }

    /// A client is gone; `reason` says why (`client namespace disconnect`, `transport close`,
    /// ...). Its [`state`] is still readable here and removed right after; its timers are
    /// cancelled. The default does nothing.
    ///
    /// ```no_run
    /// # use portico_sdk::prelude::*;
    /// fn on_disconnect(conn: &Connection, _reason: &str) -> Actions {
    ///     log::info(&format!("{} left after {:?}", conn.id(), state::get_string(conn, "nick")));
    ///     Actions::new()
    /// }
    /// ```
    fn on_disconnect(conn: &Connection, reason: &str) -> Actions {
        let _ = (conn, reason);
        Actions::new()
    }

    /// A client asks to receive `channel` over SSE. An error refuses it. The default allows
    /// every channel.
    ///
    /// ```no_run
    /// # use portico_sdk::prelude::*;
    /// fn on_subscribe(conn: &Connection, _channel: &str) -> Result<(), Rejection> {
    ///     conn.subject().map(|_| ()).ok_or_else(|| Rejection::new("unauthorized", "sign in first"))
    /// }
    /// ```
    fn on_subscribe(conn: &Connection, channel: &str) -> Result<(), Rejection> {
        let _ = (conn, channel);
        Ok(())
    }
}

/// Exports a [`Plugin`] implementation as the component's `handler`.
///
/// Write it once per plugin crate, at the top level. It expands to nothing unless compiling
/// for `wasm32`, so the crate also builds and tests natively (see [`testing`](crate::testing)).
///
/// ```
/// use portico_sdk::prelude::*;
///
/// pub struct Quiet;
/// impl Plugin for Quiet {
///     fn manifest() -> Manifest { Manifest::new("quiet", "0.1.0") }
///     fn on_event(_: &Connection, _: &Event) -> Result<Actions, Rejection> { Ok(vec![]) }
/// }
///
/// portico_sdk::export!(Quiet);
/// ```
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        const _: () = {
            struct __PorticoExport;

            impl $crate::__private::Guest for __PorticoExport {
                fn describe() -> $crate::__private::WitManifest {
                    $crate::__private::describe::<$plugin>()
                }
                fn on_connect(
                    conn: $crate::__private::WitConnection,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::__private::WitAction>,
                    $crate::__private::WitRejection,
                > {
                    $crate::__private::on_connect::<$plugin>(conn)
                }
                fn on_events(
                    conn: ::std::string::String,
                    events: ::std::vec::Vec<u8>,
                ) -> ::std::vec::Vec<u8> {
                    $crate::__private::on_events::<$plugin>(conn, events)
                }
                fn on_disconnect(
                    conn: ::std::string::String,
                    reason: ::std::string::String,
                ) -> ::std::vec::Vec<$crate::__private::WitAction> {
                    $crate::__private::on_disconnect::<$plugin>(conn, reason)
                }
                fn on_subscribe(
                    conn: $crate::__private::WitConnection,
                    channel: ::std::string::String,
                ) -> ::core::result::Result<(), $crate::__private::WitRejection> {
                    $crate::__private::on_subscribe::<$plugin>(conn, channel)
                }
                fn on_timer(
                    timer: $crate::__private::WitTimerEvent,
                ) -> ::std::vec::Vec<$crate::__private::WitAction> {
                    $crate::__private::on_timer::<$plugin>(timer)
                }
            }

    $crate::wit::__export_portico_plugin!(__PorticoExport with_types_in $crate::wit);
        };
    };
}
