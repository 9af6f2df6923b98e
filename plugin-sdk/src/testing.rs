//! Test plugins natively with plain `cargo test`: an in-memory host.
//!
//! Off `wasm32`, [`kv`](crate::kv), [`config`](crate::config), [`log`](crate::log),
//! [`presence`](crate::presence) and [`time`](crate::time) are backed by thread-local state that a [`TestHost`] controls: the
//! store honours TTLs against a clock that only moves when you [`advance`](TestHost::advance)
//! it, and log lines are captured. `cargo test` runs each test on its own thread, so tests do
//! not see each other's state; [`TestHost::new`] starts from a clean slate.
//!
//! ```
//! use portico_sdk::prelude::*;
//! use portico_sdk::testing::TestHost;
//!
//! struct Counter;
//! impl Plugin for Counter {
//!     fn manifest() -> Manifest { Manifest::new("counter", "0.1.0") }
//!     fn on_event(_: &Connection, _: &Event) -> Result<Actions, Rejection> {
//!         let step = config::get_parsed_or("step", 1)?;
//!         let value = kv::incr("hits", step)?;
//!         Ok(vec![Action::ack(&json!({ "ok": true, "value": value }))])
//!     }
//! }
//!
//! let host = TestHost::<Counter>::new().with_config("step", "5");
//! let alice = host.user("alice");
//! assert_eq!(host.ack(&alice, "hit", json!({})), json!({ "ok": true, "value": 5 }));
//! assert_eq!(host.kv_string("hits").as_deref(), Some("5"));
//! ```

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::http::{HttpError, Request, Response};
use crate::kv::KvError;
use crate::log::Level;
use crate::presence::{Member, PresenceError};
use crate::state::StateError;
use crate::timers::{Timer, TimerError};
use crate::{Action, Connection, Event, Manifest, Payload, Plugin, Principal, Rejection};

/// The host's limits, mirrored so a test that passes here does not fail on a node.
pub mod limits {
    /// Largest KV key, in bytes.
    pub const KV_MAX_KEY_BYTES: usize = 1024;
    /// Largest KV value, in bytes.
    pub const KV_MAX_VALUE_BYTES: usize = 1024 * 1024;
    /// Keys per plugin (the host's default `runtime.kv_max_keys`).
    pub const KV_MAX_KEYS: usize = 100_000;
    /// Bytes per plugin, keys and values together (the host's default `runtime.kv_max_bytes`).
    pub const KV_MAX_BYTES: usize = 64 << 20;
    /// Largest connection-state key, in bytes.
    pub const STATE_MAX_KEY_BYTES: usize = 256;
    /// Largest connection-state value, in bytes.
    pub const STATE_MAX_VALUE_BYTES: usize = 64 << 10;
    /// Keys per connection.
    pub const STATE_MAX_KEYS: usize = 64;
    /// Keys and values of one connection together, in bytes.
    pub const STATE_MAX_BYTES: usize = 256 << 10;
    /// Timers pending per plugin.
    pub const TIMERS_MAX_PENDING: usize = 1000;
    /// Longest timer delay, in milliseconds (24 h).
    pub const TIMER_MAX_DELAY_MS: u64 = 24 * 3600 * 1000;
    /// A timer's name and data together, in bytes.
    pub const TIMER_MAX_BYTES: usize = 16 << 10;
}

/// A fake backend: answers the plugin's outbound requests in tests.
type Backend = std::rc::Rc<dyn Fn(&Request) -> Result<Response, HttpError>>;

/// A pending timer in the test host.
#[derive(Clone)]
pub(crate) struct PendingTimer {
    pub(crate) due_ms: u64,
    pub(crate) timer: Timer,
    pub(crate) conn: Option<String>,
}

/// The node name of members the [`TestHost`] records.
pub const TEST_NODE: &str = "test-node";

/// Where the test clock starts: 2024-01-01T00:00:00Z, in milliseconds.
pub const START_MS: u64 = 1_704_067_200_000;

/// One captured log line.
///
/// ```
/// # use portico_sdk::testing::LogLine;
/// # use portico_sdk::log::Level;
/// let line = LogLine { level: Level::Info, message: "hi".into() };
/// assert_eq!(line.level, Level::Info);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Level it was logged at.
    pub level: Level,
    /// The message.
    pub message: String,
}

/// The thread-local host state behind the SDK's host modules off wasm32.
pub(crate) mod state {
    use super::*;

    pub(crate) struct State {
        pub now_ms: u64,
        pub config: BTreeMap<String, String>,
        /// value and expiry time (ms)
        pub kv: BTreeMap<String, (Vec<u8>, Option<u64>)>,
        pub logs: Vec<LogLine>,
        /// channel -> members
        pub presence: BTreeMap<String, Vec<Member>>,
        /// Connected connections: the record and its state.
        pub conns: BTreeMap<String, (Connection, BTreeMap<String, Vec<u8>>)>,
        /// Connections that ended (they are not connected again by a later call).
        pub ended: std::collections::BTreeSet<String>,
        pub timers: BTreeMap<u64, PendingTimer>,
        pub next_timer: u64,
        pub backend: Option<Backend>,
        pub requests: Vec<Request>,
        pub kv_max_keys: usize,
        pub kv_max_bytes: usize,
    }

    impl Default for State {
        fn default() -> Self {
            Self {
                now_ms: START_MS,
                config: BTreeMap::new(),
                kv: BTreeMap::new(),
                logs: Vec::new(),
                presence: BTreeMap::new(),
                conns: BTreeMap::new(),
                ended: std::collections::BTreeSet::new(),
                timers: BTreeMap::new(),
                next_timer: 1,
                backend: None,
                requests: Vec::new(),
                kv_max_keys: limits::KV_MAX_KEYS,
                kv_max_bytes: limits::KV_MAX_BYTES,
            }
        }
    }

    impl State {
        pub fn live(&mut self, key: &str) -> Option<&mut (Vec<u8>, Option<u64>)> {
            let now = self.now_ms;
            if matches!(self.kv.get(key), Some((_, Some(expiry))) if *expiry <= now) {
                self.kv.remove(key);
            }
            self.kv.get_mut(key)
        }
    }

    thread_local! {
        static STATE: RefCell<State> = RefCell::new(State::default());
    }

    pub(crate) fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
        STATE.with(|s| f(&mut s.borrow_mut()))
    }

    pub(crate) fn reset() {
        with(|s| *s = State::default());
    }

    pub fn log(level: Level, message: &str) {
        eprintln!("[{level:?}] {message}");
        with(|s| {
            s.logs.push(LogLine {
                level,
                message: message.to_owned(),
            })
        });
    }

    pub fn now_ms() -> u64 {
        with(|s| s.now_ms)
    }

    pub fn config_get(key: &str) -> Option<String> {
        with(|s| s.config.get(key).cloned())
    }

    pub fn presence_list(channel: &str) -> Result<Vec<Member>, PresenceError> {
        Ok(with(|s| {
            s.presence.get(channel).cloned().unwrap_or_default()
        }))
    }

    /// Record what the host would for `conn`'s `join`/`leave` actions.
    pub(crate) fn track(conn: &Connection, actions: &[Action]) {
        with(|s| {
            for action in actions {
                match action {
                    Action::Join(channel) => {
                        let members = s.presence.entry(channel.clone()).or_default();
                        if !members.iter().any(|m| m.socket == conn.id()) {
                            members.push(Member {
                                socket: conn.id().to_owned(),
                                subject: conn.subject().map(str::to_owned),
                                node: TEST_NODE.to_owned(),
                            });
                            members.sort_by(|a, b| a.socket.cmp(&b.socket));
                        }
                    }
                    Action::Leave(channel) => {
                        if let Some(members) = s.presence.get_mut(channel) {
                            members.retain(|m| m.socket != conn.id());
                        }
                    }
                    _ => {}
                }
            }
        });
    }

    /// The connection is connected (unless it already ended).
    pub(crate) fn connected(conn: &Connection) {
        with(|s| {
            if !s.ended.contains(conn.id()) && !s.conns.contains_key(conn.id()) {
                s.conns
                    .insert(conn.id().to_owned(), (conn.clone(), BTreeMap::new()));
            }
        });
    }

    /// The connection ended: its state and timers go, as on a node.
    pub(crate) fn ended(id: &str) {
        with(|s| {
            s.conns.remove(id);
            s.ended.insert(id.to_owned());
            s.timers.retain(|_, t| t.conn.as_deref() != Some(id));
        });
    }

    pub fn connection_info(id: &str) -> Option<crate::types::Details> {
        with(|s| s.conns.get(id).map(|(c, _)| c.details().clone()))
    }

    pub fn state_get(conn: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        with(|s| {
            let (_, values) = s.conns.get(conn).ok_or(StateError::Gone)?;
            Ok(values.get(key).cloned())
        })
    }

    pub fn state_set(conn: &str, key: &str, value: &[u8]) -> Result<(), StateError> {
        with(|s| {
            let (_, values) = s.conns.get_mut(conn).ok_or(StateError::Gone)?;
            if key.len() > limits::STATE_MAX_KEY_BYTES
                || value.len() > limits::STATE_MAX_VALUE_BYTES
            {
                return Err(StateError::TooLarge);
            }
            if !values.contains_key(key) && values.len() >= limits::STATE_MAX_KEYS {
                return Err(StateError::Full(format!(
                    "at most {} keys",
                    limits::STATE_MAX_KEYS
                )));
            }
            let others: usize = values
                .iter()
                .filter(|(k, _)| k.as_str() != key)
                .map(|(k, v)| k.len() + v.len())
                .sum();
            if others + key.len() + value.len() > limits::STATE_MAX_BYTES {
                return Err(StateError::Full(format!(
                    "at most {} bytes",
                    limits::STATE_MAX_BYTES
                )));
            }
            values.insert(key.to_owned(), value.to_vec());
            Ok(())
        })
    }

    pub fn state_delete(conn: &str, key: &str) -> Result<bool, StateError> {
        with(|s| {
            let (_, values) = s.conns.get_mut(conn).ok_or(StateError::Gone)?;
            Ok(values.remove(key).is_some())
        })
    }

    pub fn timer_set(
        delay_ms: u64,
        name: &str,
        data_json: &str,
        conn: Option<&str>,
    ) -> Result<u64, TimerError> {
        with(|s| {
            if let Some(id) = conn
                && !s.conns.contains_key(id)
            {
                return Err(TimerError::Gone);
            }
            if delay_ms > limits::TIMER_MAX_DELAY_MS {
                return Err(TimerError::Invalid(
                    "delay over the maximum of 86400 s".into(),
                ));
            }
            if name.len() + data_json.len() > limits::TIMER_MAX_BYTES {
                return Err(TimerError::Invalid(format!(
                    "name and data over {} bytes",
                    limits::TIMER_MAX_BYTES
                )));
            }
            if s.timers.len() >= limits::TIMERS_MAX_PENDING {
                return Err(TimerError::TooMany(limits::TIMERS_MAX_PENDING as u32));
            }
            let id = s.next_timer;
            s.next_timer += 1;
            let timer = Timer {
                id,
                name: name.to_owned(),
                data_json: data_json.to_owned(),
            };
            let due_ms = s.now_ms.saturating_add(delay_ms);
            s.timers.insert(
                id,
                PendingTimer {
                    due_ms,
                    timer,
                    conn: conn.map(str::to_owned),
                },
            );
            Ok(id)
        })
    }

    pub fn timer_cancel(id: u64) -> bool {
        with(|s| s.timers.remove(&id).is_some())
    }

    pub fn http_send(req: &Request) -> Result<Response, HttpError> {
        let backend = with(|s| {
            s.requests.push(req.clone());
            s.backend.clone()
        });
        match backend {
            Some(backend) => backend(req),
            None => Err(HttpError::Forbidden(format!(
                "{}: no outbound origin is allowed (give the TestHost a backend with `with_backend`)",
                req.url()
            ))),
        }
    }

    pub(crate) fn forget(socket: &str) {
        with(|s| {
            for members in s.presence.values_mut() {
                members.retain(|m| m.socket != socket);
            }
        });
    }

    fn kv_check(key: &str, value: Option<&[u8]>) -> Result<(), KvError> {
        if key.len() > limits::KV_MAX_KEY_BYTES
            || value.is_some_and(|v| v.len() > limits::KV_MAX_VALUE_BYTES)
        {
            return Err(KvError::TooLarge);
        }
        Ok(())
    }

    /// Room for `value` at `key`, as the host counts (keys, then bytes of keys
    /// and values): expired keys are swept first when there is none.
    fn kv_room(s: &mut State, key: &str, value_len: usize) -> Result<(), KvError> {
        let fits = |s: &mut State| {
            let old = s.live(key).map(|(v, _)| key.len() + v.len());
            if old.is_none() && s.kv.len() >= s.kv_max_keys {
                return Err(KvError::Full(format!(
                    "at most {} keys per plugin",
                    s.kv_max_keys
                )));
            }
            let used: usize = s.kv.iter().map(|(k, (v, _))| k.len() + v.len()).sum();
            if used - old.unwrap_or(0) + key.len() + value_len > s.kv_max_bytes {
                return Err(KvError::Full(format!(
                    "at most {} bytes (keys and values) per plugin",
                    s.kv_max_bytes
                )));
            }
            Ok(())
        };
        if fits(s).is_ok() {
            return Ok(());
        }
        let now = s.now_ms;
        s.kv.retain(|_, (_, expiry)| expiry.is_none_or(|e| e > now));
        fits(s)
    }

    pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        kv_check(key, None)?;
        Ok(with(|s| s.live(key).map(|(v, _)| v.clone())))
    }

    pub fn kv_set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), KvError> {
        kv_check(key, Some(value))?;
        with(|s| {
            kv_room(s, key, value.len())?;
            let expiry = ttl_ms.map(|ttl| s.now_ms.saturating_add(ttl));
            s.kv.insert(key.to_owned(), (value.to_vec(), expiry));
            Ok(())
        })
    }

    pub fn kv_delete(key: &str) -> Result<bool, KvError> {
        kv_check(key, None)?;
        Ok(with(|s| {
            let existed = s.live(key).is_some();
            s.kv.remove(key);
            existed
        }))
    }

    pub fn kv_incr(key: &str, by: i64) -> Result<i64, KvError> {
        kv_check(key, None)?;
        with(|s| {
            let (current, expiry) = match s.live(key) {
                None => (0, None),
                Some((bytes, expiry)) => {
                    let n = std::str::from_utf8(bytes)
                        .ok()
                        .and_then(|t| t.parse::<i64>().ok())
                        .ok_or(KvError::NotANumber)?;
                    (n, *expiry)
                }
            };
            let next = current
                .checked_add(by)
                .ok_or_else(|| KvError::Other("integer overflow".into()))?;
            let text = next.to_string().into_bytes();
            kv_room(s, key, text.len())?;
            s.kv.insert(key.to_owned(), (text, expiry));
            Ok(next)
        })
    }
}

/// An in-memory host for one plugin type: config, connections, calls, store, logs and clock.
///
/// Creating one resets the thread's host state (config, store, logs, clock at [`START_MS`]).
/// Use one `TestHost` per test.
///
/// ```
/// use portico_sdk::prelude::*;
/// use portico_sdk::testing::TestHost;
///
/// struct Greeter;
/// impl Plugin for Greeter {
///     fn manifest() -> Manifest { Manifest::new("greeter", "0.1.0") }
///     fn on_connect(conn: &Connection) -> Result<Actions, Rejection> {
///         conn.subject().ok_or_else(|| Rejection::new("unauthorized", "sign in"))?;
///         Ok(vec![])
///     }
///     fn on_event(conn: &Connection, _: &Event) -> Result<Actions, Rejection> {
///         log::info("greeting");
///         Ok(vec![Action::emit("hello", &conn.subject())])
///     }
/// }
///
/// let host = TestHost::<Greeter>::new();
/// let anon = host.anonymous();
/// assert_eq!(host.connect(&anon).unwrap_err().code(), "unauthorized");
///
/// let bob = host.user("bob");
/// assert!(host.connect(&bob).unwrap().is_empty());
/// assert_eq!(host.event(&bob, "hi", ()).unwrap(), vec![Action::emit("hello", &"bob")]);
/// assert_eq!(host.log_messages(), vec!["greeting"]);
/// ```
pub struct TestHost<P: Plugin> {
    next_id: Cell<u64>,
    _plugin: PhantomData<fn() -> P>,
}

impl<P: Plugin> Default for TestHost<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Plugin> TestHost<P> {
    /// A host with empty config, store and logs, and the clock at [`START_MS`].
    ///
    /// ```
    /// # use portico_sdk::testing::TestHost;
    /// # struct P;
    /// # impl portico_sdk::Plugin for P {
    /// #     fn manifest() -> portico_sdk::Manifest { portico_sdk::Manifest::new("p", "1") }
    /// #     fn on_event(_: &portico_sdk::Connection, _: &portico_sdk::Event) -> Result<portico_sdk::Actions, portico_sdk::Rejection> { Ok(vec![]) }
    /// # }
    /// let host = TestHost::<P>::new();
    /// assert_eq!(host.now_ms(), portico_sdk::testing::START_MS);
    /// ```
    pub fn new() -> Self {
        state::reset();
        Self {
            next_id: Cell::new(0),
            _plugin: PhantomData,
        }
    }

    /// Sets a config value (builder style).
    ///
    /// ```
    /// # use portico_sdk::testing::TestHost;
    /// # struct P;
    /// # impl portico_sdk::Plugin for P {
    /// #     fn manifest() -> portico_sdk::Manifest { portico_sdk::Manifest::new("p", "1") }
    /// #     fn on_event(_: &portico_sdk::Connection, _: &portico_sdk::Event) -> Result<portico_sdk::Actions, portico_sdk::Rejection> { Ok(vec![]) }
    /// # }
    /// let host = TestHost::<P>::new().with_config("max_text", "10");
    /// assert_eq!(portico_sdk::config::get("max_text").as_deref(), Some("10"));
    /// ```
    pub fn with_config(self, key: &str, value: &str) -> Self {
        self.set_config(key, value);
        self
    }

    /// Sets a config value; later calls see it.
    ///
    /// ```
    /// # use portico_sdk::testing::TestHost;
    /// # struct P;
    /// # impl portico_sdk::Plugin for P {
    /// #     fn manifest() -> portico_sdk::Manifest { portico_sdk::Manifest::new("p", "1") }
    /// #     fn on_event(_: &portico_sdk::Connection, _: &portico_sdk::Event) -> Result<portico_sdk::Actions, portico_sdk::Rejection> { Ok(vec![]) }
    /// # }
    /// let host = TestHost::<P>::new();
    /// host.set_config("step", "2");
    /// ```
    pub fn set_config(&self, key: &str, value: &str) {
        state::with(|s| s.config.insert(key.to_owned(), value.to_owned()));
    }

    /// Removes a config value.
    ///
    /// ```
    /// # use portico_sdk::testing::TestHost;
    /// # struct P;
    /// # impl portico_sdk::Plugin for P {
    /// #     fn manifest() -> portico_sdk::Manifest { portico_sdk::Manifest::new("p", "1") }
    /// #     fn on_event(_: &portico_sdk::Connection, _: &portico_sdk::Event) -> Result<portico_sdk::Actions, portico_sdk::Rejection> { Ok(vec![]) }
    /// # }
    /// let host = TestHost::<P>::new().with_config("k", "v");
    /// host.unset_config("k");
    /// assert_eq!(portico_sdk::config::get("k"), None);
    /// ```
    pub fn unset_config(&self, key: &str) {
        state::with(|s| s.config.remove(key));
    }

    /// The plugin's manifest, with the events of its typed handlers, as the host sees it.
    ///
    /// ```
    /// # use portico_sdk::testing::TestHost;
    /// # struct P;
    /// # impl portico_sdk::Plugin for P {
    /// #     fn manifest() -> portico_sdk::Manifest { portico_sdk::Manifest::new("p", "1") }
    /// #     fn on_event(_: &portico_sdk::Connection, _: &portico_sdk::Event) -> Result<portico_sdk::Actions, portico_sdk::Rejection> { Ok(vec![]) }
    /// # }
    /// assert_eq!(TestHost::<P>::new().manifest().name(), "p");
    /// ```
    pub fn manifest(&self) -> Manifest {
        crate::router::manifest_of::<P>()
    }

    fn fresh_id(&self) -> String {
        let n = self.next_id.get() + 1;
        self.next_id.set(n);
        format!("sock-{n}")
    }

    /// A new anonymous connection (no principal) with a fresh id (`sock-1`, `sock-2`, ...).
    ///
    /// ```
    /// # use portico_sdk::testing::TestHost;
    /// # struct P;
    /// # impl portico_sdk::Plugin for P {
    /// #     fn manifest() -> portico_sdk::Manifest { portico_sdk::Manifest::new("p", "1") }
    /// #     fn on_event(_: &portico_sdk::Connection, _: &portico_sdk::Event) -> Result<portico_sdk::Actions, portico_sdk::Rejection> { Ok(vec![]) }
    /// # }
    /// let host = TestHost::<P>::new();
    /// assert_eq!(host.anonymous().id(), "sock-1");
    /// ```
    pub fn anonymous(&self) -> Connection {
        Connection::new(self.fresh_id())
    }

    /// A new connection signed in as `subject` (claims `{"sub": subject}`).
    ///
    /// ```
    /// # use portico_sdk::testing::TestHost;
    /// # struct P;
    /// # impl portico_sdk::Plugin for P {
    /// #     fn manifest() -> portico_sdk::Manifest { portico_sdk::Manifest::new("p", "1") }
    /// #     fn on_event(_: &portico_sdk::Connection, _: &portico_sdk::Event) -> Result<portico_sdk::Actions, portico_sdk::Rejection> { Ok(vec![]) }
    /// # }
    /// let host = TestHost::<P>::new();
    /// assert_eq!(host.user("alice").subject(), Some("alice"));
    /// ```
    pub fn user(&self, subject: &str) -> Connection {
        self.user_with_claims(subject, serde_json::json!({ "sub": subject }))
    }

    /// A new connection with a principal holding `claims` (a JSON object); its subject is the
    /// `sub` claim when it is a string.
    ///
    /// ```
    /// # use portico_sdk::testing::TestHost;
    /// # use serde_json::json;
    /// # struct P;
    /// # impl portico_sdk::Plugin for P {
    /// #     fn manifest() -> portico_sdk::Manifest { portico_sdk::Manifest::new("p", "1") }
    /// #     fn on_event(_: &portico_sdk::Connection, _: &portico_sdk::Event) -> Result<portico_sdk::Actions, portico_sdk::Rejection> { Ok(vec![]) }
    /// # }
    /// let host = TestHost::<P>::new();
    /// let admin = host.principal(json!({ "sub": "root", "role": "admin" }));
    /// assert_eq!(admin.principal().unwrap().claim("role"), Some(json!("admin")));
    /// let nobody = host.principal(json!({ "role": "guest" }));
    /// assert_eq!(nobody.subject(), None);
    /// ```
    pub fn principal(&self, claims: Value) -> Connection {
        let subject = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
        Connection::new(self.fresh_id()).with_principal(Principal::new(subject, claims))
    }

    /// Like [`user`](TestHost::user) with extra claims; `sub` is set to `subject`.
    ///
    /// ```
    /// # use portico_sdk::testing::TestHost;
    /// # use serde_json::json;
    /// # struct P;
    /// # impl portico_sdk::Plugin for P {
    /// #     fn manifest() -> portico_sdk::Manifest { portico_sdk::Manifest::new("p", "1") }
    /// #     fn on_event(_: &portico_sdk::Connection, _: &portico_sdk::Event) -> Result<portico_sdk::Actions, portico_sdk::Rejection> { Ok(vec![]) }
    /// # }
    /// let host = TestHost::<P>::new();
    /// let ann = host.user_with_claims("ann", json!({ "tenant": "acme" }));
    /// assert_eq!(ann.principal().unwrap().claim("sub"), Some(json!("ann")));
    /// ```
    pub fn user_with_claims(&self, subject: &str, claims: Value) -> Connection {
        let mut claims = match claims {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        claims.insert("sub".into(), Value::from(subject));
        self.principal(Value::Object(claims))
    }

    /// Calls `on_connect`.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// let alice = host.user("alice");
    /// host.connect(&alice).expect("alice may connect");
    /// # }
    /// ```
    pub fn connect(&self, conn: &Connection) -> Result<Vec<Action>, Rejection> {
        // As on a node: registered first (on-connect may set state and timers), gone if refused.
        state::connected(conn);
        let result = P::on_connect(conn);
        match &result {
            Ok(actions) => state::track(conn, actions),
            Err(_) => state::ended(conn.id()),
        }
        result
    }

    /// Calls `on_event` with one JSON argument, without asking for an ack.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// # use serde_json::json;
    /// let alice = host.user("alice");
    /// let actions = host.event(&alice, "join", json!({ "room": "a" }));
    /// # }
    /// ```
    pub fn event(
        &self,
        conn: &Connection,
        name: &str,
        arg: impl Serialize,
    ) -> Result<Vec<Action>, Rejection> {
        self.send(conn, Event::new(name, &arg))
    }

    /// Calls `on_event` with one JSON argument, asking for an ack.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// # use serde_json::json;
    /// let alice = host.user("alice");
    /// let actions = host.event_with_ack(&alice, "join", json!({ "room": "a" }));
    /// # }
    /// ```
    pub fn event_with_ack(
        &self,
        conn: &Connection,
        name: &str,
        arg: impl Serialize,
    ) -> Result<Vec<Action>, Rejection> {
        self.send(conn, Event::new(name, &arg).with_ack())
    }

    /// Calls `on_event` with any [`Event`]: several arguments, binary attachments, raw JSON.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// use portico_sdk::prelude::*;
    /// let alice = host.user("alice");
    /// let upload = Event::from_payload(
    ///     "upload",
    ///     Payload::with_binary(&json!({ "file": Payload::placeholder(0) }), vec![vec![1, 2, 3]]),
    /// )
    /// .with_ack();
    /// let actions = host.send(&alice, upload);
    /// # }
    /// ```
    pub fn send(&self, conn: &Connection, event: Event) -> Result<Vec<Action>, Rejection> {
        // A test may send without connecting first; the connection counts as connected.
        state::connected(conn);
        let result = P::on_event(conn, &event);
        if let Ok(actions) = &result {
            state::track(conn, actions);
        }
        result
    }

    /// Sends an event asking for an ack and returns what the client would receive as the ack's
    /// argument: the plugin's ack, or the error object `{"ok": false, "code", "message"}`
    /// for a rejection (as the host renders it).
    ///
    /// # Panics
    ///
    /// If the plugin returned actions without an ack.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// # use serde_json::json;
    /// let alice = host.user("alice");
    /// assert_eq!(host.ack(&alice, "join", json!({ "room": "a" }))["ok"], json!(true));
    /// # }
    /// ```
    pub fn ack(&self, conn: &Connection, name: &str, arg: impl Serialize) -> Value {
        let event = Event::new(name, &arg).with_ack();
        ack_of(&self.send(conn, event)).unwrap_or_else(|| panic!("`{name}` returned no ack action"))
    }

    /// Calls `on_disconnect`.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// let alice = host.user("alice");
    /// host.disconnect(&alice, "transport close");
    /// # }
    /// ```
    pub fn disconnect(&self, conn: &Connection, reason: &str) -> Vec<Action> {
        state::connected(conn);
        let actions = P::on_disconnect(conn, reason);
        state::forget(conn.id());
        // After on-disconnect, as on a node: its state and timers are gone.
        state::ended(conn.id());
        actions
    }

    /// The connection state of `conn` (what [`state`](crate::state) holds for it), sorted;
    /// empty once it disconnected.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// let alice = host.user("alice");
    /// host.disconnect(&alice, "transport close");
    /// assert!(host.state_keys(&alice).is_empty());
    /// # }
    /// ```
    pub fn state_keys(&self, conn: &Connection) -> Vec<String> {
        state::with(|s| {
            s.conns
                .get(conn.id())
                .map(|(_, v)| v.keys().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// Answer the plugin's outbound HTTP requests with `backend` (builder style). Without
    /// one, every request fails with [`HttpError::Forbidden`], as on a node with no
    /// `outbound` origins.
    ///
    /// ```
    /// use portico_sdk::prelude::*;
    /// use portico_sdk::http::{Request, Response};
    /// use portico_sdk::testing::TestHost;
    ///
    /// struct Quote;
    /// impl Plugin for Quote {
    ///     fn manifest() -> Manifest { Manifest::new("quote", "1") }
    ///     fn on_event(_: &Connection, _: &Event) -> Result<Actions, Rejection> {
    ///         let price: f64 = Request::get("http://prices.internal/acme").send()?.json()?;
    ///         Ok(vec![Action::ack(&json!({ "ok": true, "price": price }))])
    ///     }
    /// }
    ///
    /// let host = TestHost::<Quote>::new().with_backend(|req: &Request| {
    ///     assert_eq!(req.url(), "http://prices.internal/acme");
    ///     Ok(Response::json_body(&12.5))
    /// });
    /// let ann = host.user("ann");
    /// assert_eq!(host.ack(&ann, "price", ()), json!({ "ok": true, "price": 12.5 }));
    /// assert_eq!(host.requests().len(), 1);
    /// ```
    pub fn with_backend(
        self,
        backend: impl Fn(&Request) -> Result<Response, HttpError> + 'static,
    ) -> Self {
        state::with(|s| s.backend = Some(std::rc::Rc::new(backend)));
        self
    }

    /// The outbound requests the plugin made, oldest first.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// assert!(host.requests().is_empty());
    /// # }
    /// ```
    pub fn requests(&self) -> Vec<Request> {
        state::with(|s| s.requests.clone())
    }

    /// Caps the plugin's KV keys (the host's `runtime.kv_max_keys`; default 100,000).
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// let host = host.with_kv_max_keys(10);
    /// # }
    /// ```
    pub fn with_kv_max_keys(self, max: usize) -> Self {
        state::with(|s| s.kv_max_keys = max);
        self
    }

    /// Caps the plugin's KV bytes, keys and values together (the host's
    /// `runtime.kv_max_bytes`; default 64 MiB).
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// let host = host.with_kv_max_bytes(1024);
    /// # }
    /// ```
    pub fn with_kv_max_bytes(self, max: usize) -> Self {
        state::with(|s| s.kv_max_bytes = max);
        self
    }

    /// The pending timers: `(id, name, due time in ms)`, in id order.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// assert!(host.timers().is_empty());
    /// # }
    /// ```
    pub fn timers(&self) -> Vec<(u64, String, u64)> {
        state::with(|s| {
            s.timers
                .values()
                .map(|t| (t.timer.id, t.timer.name.clone(), t.due_ms))
                .collect()
        })
    }

    /// The members of `channel`: what the `join`/`leave` actions returned by this host's
    /// calls (and its disconnects) left there, plus members added with
    /// [`add_member`](TestHost::add_member).
    ///
    /// ```
    /// use portico_sdk::prelude::*;
    /// use portico_sdk::testing::TestHost;
    ///
    /// struct Rooms;
    /// impl Plugin for Rooms {
    ///     fn manifest() -> Manifest { Manifest::new("rooms", "0.1.0") }
    ///     fn on_event(_: &Connection, e: &Event) -> Result<Actions, Rejection> {
    ///         Ok(vec![Action::join(e.name())])
    ///     }
    /// }
    ///
    /// let host = TestHost::<Rooms>::new();
    /// let ann = host.user("ann");
    /// host.event(&ann, "lobby", ()).unwrap();
    /// assert_eq!(host.presence("lobby")[0].subject.as_deref(), Some("ann"));
    /// host.disconnect(&ann, "transport close");
    /// assert!(host.presence("lobby").is_empty());
    /// ```
    pub fn presence(&self, channel: &str) -> Vec<Member> {
        state::presence_list(channel).unwrap_or_default()
    }

    /// Adds a member to `channel` as if it had joined on another node.
    ///
    /// ```
    /// # use portico_sdk::testing::TestHost;
    /// # use portico_sdk::presence::Member;
    /// # struct P;
    /// # impl portico_sdk::Plugin for P {
    /// #     fn manifest() -> portico_sdk::Manifest { portico_sdk::Manifest::new("p", "1") }
    /// #     fn on_event(_: &portico_sdk::Connection, _: &portico_sdk::Event) -> Result<portico_sdk::Actions, portico_sdk::Rejection> { Ok(vec![]) }
    /// # }
    /// let host = TestHost::<P>::new();
    /// host.add_member("lobby", Member { socket: "x1".into(), subject: Some("zoe".into()), node: "b".into() });
    /// assert_eq!(portico_sdk::presence::list("lobby").unwrap().len(), 1);
    /// ```
    pub fn add_member(&self, channel: &str, member: Member) {
        state::with(|s| {
            let members = s.presence.entry(channel.to_owned()).or_default();
            members.retain(|m| m.socket != member.socket);
            members.push(member);
            members.sort_by(|a, b| a.socket.cmp(&b.socket));
        });
    }

    /// Calls `on_subscribe`.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// let reader = host.user("reader");
    /// assert!(host.subscribe(&reader, "room:a").is_ok());
    /// # }
    /// ```
    pub fn subscribe(&self, conn: &Connection, channel: &str) -> Result<(), Rejection> {
        P::on_subscribe(conn, channel)
    }

    /// The bytes stored at `key` (expired keys are gone).
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// assert_eq!(host.kv("missing"), None);
    /// # }
    /// ```
    pub fn kv(&self, key: &str) -> Option<Vec<u8>> {
        state::with(|s| s.live(key).map(|(v, _)| v.clone()))
    }

    /// The string stored at `key` (lossy UTF-8).
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// assert_eq!(host.kv_string("hits").as_deref(), Some("3"));
    /// # }
    /// ```
    pub fn kv_string(&self, key: &str) -> Option<String> {
        self.kv(key)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// Every live key, sorted.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// assert!(host.kv_keys().is_empty());
    /// # }
    /// ```
    pub fn kv_keys(&self) -> Vec<String> {
        state::with(|s| {
            let now = s.now_ms;
            s.kv.retain(|_, (_, expiry)| expiry.is_none_or(|e| e > now));
            s.kv.keys().cloned().collect()
        })
    }

    /// Stores a value directly (no expiry), e.g. to prepare state.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// host.set_kv("hits", "41");
    /// # }
    /// ```
    pub fn set_kv(&self, key: &str, value: impl AsRef<[u8]>) {
        let _ = state::kv_set(key, value.as_ref(), None);
    }

    /// Every captured log line, oldest first.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// use portico_sdk::log::Level;
    /// assert!(host.logs().iter().all(|l| l.level < Level::Error));
    /// # }
    /// ```
    pub fn logs(&self) -> Vec<LogLine> {
        state::with(|s| s.logs.clone())
    }

    /// The captured log messages, oldest first.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// assert_eq!(host.log_messages(), vec!["started"]);
    /// # }
    /// ```
    pub fn log_messages(&self) -> Vec<String> {
        state::with(|s| s.logs.iter().map(|l| l.message.clone()).collect())
    }

    /// Forgets the captured log lines.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// host.clear_logs();
    /// assert!(host.logs().is_empty());
    /// # }
    /// ```
    pub fn clear_logs(&self) {
        state::with(|s| s.logs.clear());
    }

    /// The test clock, in milliseconds since the epoch.
    ///
    /// ```no_run
    /// # fn t<P: portico_sdk::Plugin>(host: portico_sdk::testing::TestHost<P>) {
    /// assert_eq!(host.now_ms(), portico_sdk::time::now_ms());
    /// # }
    /// ```
    pub fn now_ms(&self) -> u64 {
        state::now_ms()
    }

    /// Moves the clock forward: keys whose TTL ran out disappear, and the timers that come due
    /// fire in order (each at its due time), calling `on_timer`. Returns the actions they
    /// returned, in order.
    ///
    /// ```
    /// use portico_sdk::prelude::*;
    /// use portico_sdk::testing::TestHost;
    /// use std::time::Duration;
    ///
    /// struct Remind;
    /// impl Plugin for Remind {
    ///     fn manifest() -> Manifest { Manifest::new("remind", "1") }
    ///     fn on_event(conn: &Connection, _: &Event) -> Result<Actions, Rejection> {
    ///         timers::after_for(conn, Duration::from_secs(5), "remind", &"stand up")?;
    ///         Ok(vec![])
    ///     }
    ///     fn on_timer(t: &Timer, _conn: Option<&Connection>) -> Actions {
    ///         vec![Action::emit("remind", &t.data::<String>().unwrap_or_default())]
    ///     }
    /// }
    ///
    /// let host = TestHost::<Remind>::new();
    /// let ann = host.user("ann");
    /// host.event(&ann, "later", ()).unwrap();
    /// assert!(host.advance(Duration::from_secs(4)).is_empty());
    /// assert_eq!(host.advance(Duration::from_secs(1)), vec![Action::emit("remind", &"stand up")]);
    /// ```
    pub fn advance(&self, by: Duration) -> Vec<Action> {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let until = state::with(|s| s.now_ms.saturating_add(ms));
        let mut actions = Vec::new();
        loop {
            let due = state::with(|s| {
                let next = s
                    .timers
                    .values()
                    .filter(|t| t.due_ms <= until)
                    .min_by_key(|t| (t.due_ms, t.timer.id))
                    .cloned()?;
                s.timers.remove(&next.timer.id);
                s.now_ms = s.now_ms.max(next.due_ms);
                let conn = next
                    .conn
                    .as_ref()
                    .and_then(|id| s.conns.get(id))
                    .map(|(c, _)| c.clone());
                Some((next.timer, conn))
            });
            let Some((timer, conn)) = due else { break };
            let fired = P::on_timer(&timer, conn.as_ref());
            if let Some(conn) = &conn {
                state::track(conn, &fired);
            }
            actions.extend(fired);
        }
        state::with(|s| s.now_ms = until);
        actions
    }
}

/// The ack argument a client would receive from a call's result: the first [`Action::Ack`]'s
/// first argument, or the error object for a rejection (`None` if there is no ack).
///
/// ```
/// use portico_sdk::prelude::*;
/// use portico_sdk::testing::ack_of;
/// assert_eq!(ack_of(&Ok(vec![Action::ack(&1)])), Some(json!(1)));
/// assert_eq!(ack_of(&Err(Rejection::new("x", "y"))).unwrap()["code"], json!("x"));
/// ```
pub fn ack_of(result: &Result<Vec<Action>, Rejection>) -> Option<Value> {
    match result {
        Ok(actions) => actions.iter().find_map(|a| match a {
            Action::Ack(payload) => Some(payload.first_arg().unwrap_or(Value::Null)),
            _ => None,
        }),
        Err(rejection) => Some(rejection.to_json()),
    }
}

/// The payload of the first [`Action::Ack`] in `actions`, with its binary attachments.
///
/// ```
/// use portico_sdk::prelude::*;
/// use portico_sdk::testing::ack_payload;
/// let p = Payload::json(&1);
/// assert_eq!(ack_payload(&[Action::ack_payload(p.clone())]), Some(p));
/// ```
pub fn ack_payload(actions: &[Action]) -> Option<Payload> {
    actions.iter().find_map(|a| match a {
        Action::Ack(payload) => Some(payload.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{kv, time};

    struct Nop;
    impl Plugin for Nop {
        fn manifest() -> Manifest {
            Manifest::new("nop", "0")
        }
        fn on_event(_: &Connection, _: &Event) -> Result<Vec<Action>, Rejection> {
            Ok(vec![])
        }
    }

    #[test]
    fn kv_honours_ttl_against_the_test_clock() {
        let host = TestHost::<Nop>::new();
        kv::set_with_ttl("k", "v", Duration::from_secs(10)).unwrap();
        kv::set("forever", "x").unwrap();
        host.advance(Duration::from_millis(9_999));
        assert_eq!(kv::get_string("k").unwrap().as_deref(), Some("v"));
        host.advance(Duration::from_millis(1));
        assert_eq!(kv::get("k").unwrap(), None);
        assert_eq!(host.kv_keys(), vec!["forever"]);
        assert_eq!(time::now_ms(), START_MS + 10_000);
    }

    #[test]
    fn incr_counts_from_zero_and_refuses_text() {
        let host = TestHost::<Nop>::new();
        assert_eq!(kv::incr("n", 3).unwrap(), 3);
        assert_eq!(kv::incr("n", -5).unwrap(), -2);
        host.set_kv("t", "abc");
        assert_eq!(kv::incr("t", 1), Err(KvError::NotANumber));
        assert!(kv::delete("n").unwrap());
        assert!(!kv::delete("n").unwrap());
        let r: Rejection = KvError::NotANumber.into();
        assert_eq!(r.code(), "kv_error");
    }

    #[test]
    fn kv_byte_budget_counts_keys_and_values_as_the_host_does() {
        let host = TestHost::<Nop>::new().with_kv_max_bytes(10);
        kv::set("ab", "cdef").unwrap(); // 6
        let full = kv::set("gh", "ijk").unwrap_err(); // 11
        assert_eq!(Rejection::from(full).code(), "kv_full");
        kv::set("ab", "cdefghij").unwrap(); // replacing counts the difference: 10
        assert!(kv::incr("n", 1).is_err());
        kv::delete("ab").unwrap();
        kv::set_with_ttl("gh", "ijk", Duration::from_secs(1)).unwrap();
        host.advance(Duration::from_secs(1));
        kv::set("xy", "12345678").unwrap(); // the expired key made room
        assert_eq!(host.kv_keys(), vec!["xy"]);
    }

    #[test]
    fn each_host_starts_fresh() {
        let host = TestHost::<Nop>::new().with_config("a", "1");
        kv::set("k", "v").unwrap();
        crate::log::info("x");
        assert_eq!(host.logs().len(), 1);
        let host = TestHost::<Nop>::new();
        assert!(host.kv_keys().is_empty() && host.logs().is_empty());
        assert_eq!(crate::config::get("a"), None);
    }

    #[test]
    fn config_parse_errors_are_reported() {
        let _host = TestHost::<Nop>::new().with_config("n", "seven");
        let err = crate::config::get_parsed::<u32>("n").unwrap_err();
        assert_eq!(err.key(), "n");
        let r: Rejection = err.into();
        assert_eq!(r.code(), "config_error");
        assert_eq!(crate::config::get_parsed_or("missing", 4u32), Ok(4));
    }
}
