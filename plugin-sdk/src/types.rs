//! The values a plugin receives and returns.

use std::cell::OnceCell;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How a client is connected.
///
/// ```
/// # use portico_sdk::prelude::*;
/// # let conn = Connection::new("c1");
/// if conn.transport() == Transport::Sse {
///     // read-only client: it cannot send events
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Socket.IO over WebSocket.
    WebSocket,
    /// Socket.IO over HTTP long-polling.
    Polling,
    /// A Server-Sent Events stream.
    Sse,
}

/// The verified identity behind a connection (the host checked the token).
///
/// ```
/// # use portico_sdk::prelude::*;
/// let p = Principal::new(Some("alice".into()), json!({ "sub": "alice", "role": "admin" }));
/// assert_eq!(p.subject(), Some("alice"));
/// assert_eq!(p.claim("role"), Some(json!("admin")));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub(crate) subject: Option<String>,
    pub(crate) claims_json: String,
}

impl Principal {
    /// A principal with a subject and the token's claims (a JSON object).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let p = Principal::new(None, json!({}));
    /// assert_eq!(p.subject(), None);
    /// ```
    pub fn new(subject: Option<String>, claims: Value) -> Self {
        Self {
            subject,
            claims_json: claims.to_string(),
        }
    }

    /// The token's `sub` claim, if it had one.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// # let p = Principal::new(Some("bob".into()), json!({"sub": "bob"}));
    /// assert_eq!(p.subject(), Some("bob"));
    /// ```
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// Every claim of the token, as JSON text.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// # let p = Principal::new(None, json!({"a": 1}));
    /// assert_eq!(p.claims_json(), r#"{"a":1}"#);
    /// ```
    pub fn claims_json(&self) -> &str {
        &self.claims_json
    }

    /// The claims deserialized into `T`; a `bad_request` rejection if they do not fit.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// #[derive(serde::Deserialize)]
    /// struct Claims { sub: String }
    /// # let p = Principal::new(Some("bob".into()), json!({"sub": "bob"}));
    /// let claims: Claims = p.claims()?;
    /// assert_eq!(claims.sub, "bob");
    /// # Ok::<(), Rejection>(())
    /// ```
    pub fn claims<T: DeserializeOwned>(&self) -> Result<T, Rejection> {
        serde_json::from_str(&self.claims_json)
            .map_err(|e| Rejection::bad_request(format!("token claims: {e}")))
    }

    /// One claim by name, if present.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// # let p = Principal::new(None, json!({"tenant": "acme"}));
    /// assert_eq!(p.claim("tenant"), Some(json!("acme")));
    /// assert_eq!(p.claim("missing"), None);
    /// ```
    pub fn claim(&self, name: &str) -> Option<Value> {
        match serde_json::from_str::<Value>(&self.claims_json) {
            Ok(Value::Object(mut map)) => map.remove(name),
            _ => None,
        }
    }
}

/// One client connection as the plugin sees it.
///
/// Built by the host; tests build their own with [`Connection::new`] and the `with_*` methods
/// (or with [`TestHost::user`](crate::testing::TestHost::user)).
///
/// ```
/// # use portico_sdk::prelude::*;
/// let conn = Connection::new("sock-1")
///     .with_namespace("/chat")
///     .with_principal(Principal::new(Some("alice".into()), json!({ "sub": "alice" })))
///     .with_query("room", "lobby");
/// assert_eq!(conn.subject(), Some("alice"));
/// assert_eq!(conn.query("room"), Some("lobby"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub(crate) id: String,
    /// Everything but the id. Calls after `on-connect` carry only the id; the
    /// rest is fetched from the host the first time it is read (and cached).
    pub(crate) details: OnceCell<Arc<Details>>,
}

/// The parts of a connection record besides its id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Details {
    pub(crate) namespace: String,
    pub(crate) transport: Transport,
    pub(crate) remote_addr: Option<String>,
    pub(crate) principal: Option<Principal>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) auth_json: String,
}

impl Default for Details {
    fn default() -> Self {
        Self {
            namespace: "/".into(),
            transport: Transport::WebSocket,
            remote_addr: None,
            principal: None,
            query: Vec::new(),
            auth_json: "{}".into(),
        }
    }
}

impl Connection {
    /// An anonymous WebSocket connection with this id on namespace `/`.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let conn = Connection::new("sock-1");
    /// assert_eq!(conn.id(), "sock-1");
    /// assert!(conn.principal().is_none());
    /// ```
    pub fn new(id: impl Into<String>) -> Self {
        Self::from_parts(id.into(), Details::default())
    }

    pub(crate) fn from_parts(id: String, details: Details) -> Self {
        Self {
            id,
            details: OnceCell::from(Arc::new(details)),
        }
    }

    /// A connection known by id only; the rest comes from the host when read.
    pub(crate) fn by_id(id: String) -> Self {
        Self {
            id,
            details: OnceCell::new(),
        }
    }

    pub(crate) fn details(&self) -> &Details {
        self.details.get_or_init(|| crate::host::details(&self.id))
    }

    fn details_mut(&mut self) -> &mut Details {
        self.details();
        Arc::make_mut(self.details.get_mut().expect("initialized above"))
    }

    /// Sets the namespace.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Connection::new("c").with_namespace("/chat").namespace(), "/chat");
    /// ```
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.details_mut().namespace = namespace.into();
        self
    }

    /// Sets the transport.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let conn = Connection::new("c").with_transport(Transport::Sse);
    /// assert_eq!(conn.transport(), Transport::Sse);
    /// ```
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.details_mut().transport = transport;
        self
    }

    /// Sets the verified principal.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let conn = Connection::new("c").with_principal(Principal::new(Some("a".into()), json!({})));
    /// assert_eq!(conn.subject(), Some("a"));
    /// ```
    pub fn with_principal(mut self, principal: Principal) -> Self {
        self.details_mut().principal = Some(principal);
        self
    }

    /// Sets the client address.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let conn = Connection::new("c").with_remote_addr("10.0.0.1:5000");
    /// assert_eq!(conn.remote_addr(), Some("10.0.0.1:5000"));
    /// ```
    pub fn with_remote_addr(mut self, addr: impl Into<String>) -> Self {
        self.details_mut().remote_addr = Some(addr.into());
        self
    }

    /// Adds a handshake query parameter.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let conn = Connection::new("c").with_query("lang", "fr");
    /// assert_eq!(conn.query("lang"), Some("fr"));
    /// ```
    pub fn with_query(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details_mut().query.push((key.into(), value.into()));
        self
    }

    /// Sets the handshake `auth` object (without its token).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let conn = Connection::new("c").with_auth(json!({ "device": "phone" }));
    /// assert_eq!(conn.auth_json(), r#"{"device":"phone"}"#);
    /// ```
    pub fn with_auth(mut self, auth: Value) -> Self {
        self.details_mut().auth_json = auth.to_string();
        self
    }

    /// Socket id (Socket.IO) or stream id (SSE); unique per connection.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let key = format!("nick:{}", Connection::new("s1").id());
    /// assert_eq!(key, "nick:s1");
    /// ```
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The namespace the plugin is mounted on, e.g. `/chat`.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Connection::new("c").namespace(), "/");
    /// ```
    pub fn namespace(&self) -> &str {
        &self.details().namespace
    }

    /// How the client is connected.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Connection::new("c").transport(), Transport::WebSocket);
    /// ```
    pub fn transport(&self) -> Transport {
        self.details().transport
    }

    /// The client's address as the host saw it.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Connection::new("c").remote_addr(), None);
    /// ```
    pub fn remote_addr(&self) -> Option<&str> {
        self.details().remote_addr.as_deref()
    }

    /// The verified principal; `None` when auth is off or optional and no token came.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert!(Connection::new("c").principal().is_none());
    /// ```
    pub fn principal(&self) -> Option<&Principal> {
        self.details().principal.as_ref()
    }

    /// Shortcut for the principal's subject (`sub` claim).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Connection::new("c").subject(), None);
    /// ```
    pub fn subject(&self) -> Option<&str> {
        self.principal().and_then(Principal::subject)
    }

    /// The first handshake query parameter named `key`.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Connection::new("c").query("x"), None);
    /// ```
    pub fn query(&self, key: &str) -> Option<&str> {
        self.details()
            .query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All handshake query parameters, in order.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert!(Connection::new("c").query_pairs().is_empty());
    /// ```
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.details().query
    }

    /// The handshake `auth` object without its token, as JSON text (`{}` for SSE).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Connection::new("c").auth_json(), "{}");
    /// ```
    pub fn auth_json(&self) -> &str {
        &self.details().auth_json
    }

    /// The handshake `auth` object deserialized into `T`; `bad_request` if it does not fit.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// #[derive(serde::Deserialize)]
    /// struct Auth { device: Option<String> }
    /// let auth: Auth = Connection::new("c").auth()?;
    /// assert!(auth.device.is_none());
    /// # Ok::<(), Rejection>(())
    /// ```
    pub fn auth<T: DeserializeOwned>(&self) -> Result<T, Rejection> {
        serde_json::from_str(self.auth_json())
            .map_err(|e| Rejection::bad_request(format!("handshake auth: {e}")))
    }
}

/// Arguments sent to a client: a JSON array of Socket.IO arguments plus binary attachments.
///
/// Equality compares the JSON values (not their text) and the attachments.
///
/// ```
/// # use portico_sdk::prelude::*;
/// let p = Payload::json(&json!({ "ok": true }));
/// assert_eq!(p.args_json(), r#"[{"ok":true}]"#);
/// assert_eq!(p.first_arg(), Some(json!({ "ok": true })));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Payload {
    pub(crate) args_json: String,
    pub(crate) binary: Vec<Vec<u8>>,
}

impl Payload {
    /// One argument.
    ///
    /// # Panics
    ///
    /// If `T`'s `Serialize` implementation fails (e.g. a map with non-string keys), like
    /// [`json!`](crate::json).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Payload::json(&"hi").args_json(), r#"["hi"]"#);
    /// ```
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        Self {
            args_json: Value::Array(vec![to_value(value)]).to_string(),
            binary: Vec::new(),
        }
    }

    /// Several arguments: `args` must serialize to a JSON array (a tuple, a `Vec`, `json!([...])`).
    ///
    /// # Panics
    ///
    /// If `args` does not serialize to an array.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Payload::args(&("a", 1)).args_json(), r#"["a",1]"#);
    /// ```
    pub fn args<T: Serialize + ?Sized>(args: &T) -> Self {
        let value = to_value(args);
        assert!(
            value.is_array(),
            "Payload::args needs a JSON array, got {value}"
        );
        Self {
            args_json: value.to_string(),
            binary: Vec::new(),
        }
    }

    /// No arguments at all.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Payload::empty().args_json(), "[]");
    /// ```
    pub fn empty() -> Self {
        Self {
            args_json: "[]".into(),
            binary: Vec::new(),
        }
    }

    /// One argument that references binary attachments with [`Payload::placeholder`].
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let p = Payload::with_binary(
    ///     &json!({ "name": "a.png", "data": Payload::placeholder(0) }),
    ///     vec![vec![0x89, 0x50]],
    /// );
    /// assert_eq!(p.binary(), &[vec![0x89, 0x50]]);
    /// ```
    pub fn with_binary<T: Serialize + ?Sized>(value: &T, binary: Vec<Vec<u8>>) -> Self {
        Self {
            binary,
            ..Self::json(value)
        }
    }

    /// Raw parts: the arguments as JSON array text, and the attachments. Nothing is checked.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let p = Payload::from_raw(r#"[1,2]"#, vec![]);
    /// assert_eq!(p.arg_values(), vec![json!(1), json!(2)]);
    /// ```
    pub fn from_raw(args_json: impl Into<String>, binary: Vec<Vec<u8>>) -> Self {
        Self {
            args_json: args_json.into(),
            binary,
        }
    }

    /// The Socket.IO placeholder `{"_placeholder":true,"num":num}` for attachment `num`.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Payload::placeholder(2), json!({ "_placeholder": true, "num": 2 }));
    /// ```
    pub fn placeholder(num: usize) -> Value {
        serde_json::json!({ "_placeholder": true, "num": num })
    }

    /// The arguments as JSON array text.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Payload::json(&1).args_json(), "[1]");
    /// ```
    pub fn args_json(&self) -> &str {
        &self.args_json
    }

    /// The binary attachments.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert!(Payload::json(&1).binary().is_empty());
    /// ```
    pub fn binary(&self) -> &[Vec<u8>] {
        &self.binary
    }

    /// The arguments parsed (empty if the text is not a JSON array). Handy in tests.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Payload::args(&json!([1, "a"])).arg_values(), vec![json!(1), json!("a")]);
    /// ```
    pub fn arg_values(&self) -> Vec<Value> {
        match serde_json::from_str(&self.args_json) {
            Ok(Value::Array(items)) => items,
            _ => Vec::new(),
        }
    }

    /// The first argument parsed, if any. Handy in tests.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Payload::json(&json!({"ok": true})).first_arg(), Some(json!({"ok": true})));
    /// ```
    pub fn first_arg(&self) -> Option<Value> {
        self.arg_values().into_iter().next()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.binary == other.binary && json_text_eq(&self.args_json, &other.args_json)
    }
}

/// Compares two JSON texts as values, falling back to the text when one does not parse.
pub(crate) fn json_text_eq(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Serializes for an outgoing message; panics like `json!` on a failing `Serialize` impl.
pub(crate) fn to_value<T: Serialize + ?Sized>(value: &T) -> Value {
    match serde_json::to_value(value) {
        Ok(value) => value,
        Err(e) => panic!("portico-sdk: cannot serialize an outgoing value to JSON: {e}"),
    }
}

/// An event a client sent: name, JSON arguments, binary attachments, ack or not.
///
/// ```
/// # use portico_sdk::prelude::*;
/// #[derive(serde::Deserialize)]
/// struct Join { room: String }
///
/// let event = Event::new("join", &json!({ "room": "lobby" })).with_ack();
/// let join: Join = event.arg()?;
/// assert_eq!((event.name(), join.room.as_str(), event.wants_ack()), ("join", "lobby", true));
/// # Ok::<(), Rejection>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub(crate) name: String,
    pub(crate) payload: Payload,
    pub(crate) wants_ack: bool,
}

impl Event {
    /// An event with one argument, no attachments, no ack (for tests).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let event = Event::new("ping", &1);
    /// assert_eq!(event.args_json(), "[1]");
    /// ```
    pub fn new<T: Serialize + ?Sized>(name: impl Into<String>, arg: &T) -> Self {
        Self::from_payload(name, Payload::json(arg))
    }

    /// An event carrying any [`Payload`] (several arguments, attachments).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let event = Event::from_payload("upload", Payload::with_binary(&Payload::placeholder(0), vec![vec![1]]));
    /// assert_eq!(event.binary(), &[vec![1]]);
    /// ```
    pub fn from_payload(name: impl Into<String>, payload: Payload) -> Self {
        Self {
            name: name.into(),
            payload,
            wants_ack: false,
        }
    }

    /// Marks the event as asking for an acknowledgement.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert!(Event::new("e", &1).with_ack().wants_ack());
    /// ```
    pub fn with_ack(mut self) -> Self {
        self.wants_ack = true;
        self
    }

    /// The Socket.IO event name.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Event::new("join", &1).name(), "join");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the client asked for an acknowledgement.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert!(!Event::new("e", &1).wants_ack());
    /// ```
    pub fn wants_ack(&self) -> bool {
        self.wants_ack
    }

    /// The arguments as JSON array text, placeholders included.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Event::new("e", "x").args_json(), r#"["x"]"#);
    /// ```
    pub fn args_json(&self) -> &str {
        &self.payload.args_json
    }

    /// The binary attachments referenced by placeholders in the arguments.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert!(Event::new("e", "x").binary().is_empty());
    /// ```
    pub fn binary(&self) -> &[Vec<u8>] {
        &self.payload.binary
    }

    /// Arguments and attachments as they came, to send back unchanged.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let event = Event::new("e", "x");
    /// let echo = Action::ack_payload(event.payload());
    /// # let _ = echo;
    /// ```
    pub fn payload(&self) -> Payload {
        self.payload.clone()
    }

    /// The first argument, deserialized: the usual case of one JSON object per event.
    ///
    /// A missing argument deserializes as `null` (so `Option<T>` accepts it). Malformed input
    /// gives a `bad_request` rejection saying what was wrong.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// #[derive(Debug, serde::Deserialize)]
    /// struct Nick { name: String }
    /// let err = Event::new("nick", &json!({ "nom": "x" })).arg::<Nick>().unwrap_err();
    /// assert_eq!(err.code(), "bad_request");
    /// assert!(err.message().contains("missing field `name`"), "{}", err.message());
    /// ```
    pub fn arg<T: DeserializeOwned>(&self) -> Result<T, Rejection> {
        let first = match self.args_value()? {
            Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
            _ => Value::Null,
        };
        let missing = first.is_null();
        serde_json::from_value(first).map_err(|e| {
            if missing {
                Rejection::bad_request(format!("`{}` needs an argument: {e}", self.name))
            } else {
                Rejection::bad_request(format!("invalid argument to `{}`: {e}", self.name))
            }
        })
    }

    /// The whole argument array, deserialized: use a tuple or a `Vec` for several arguments.
    ///
    /// Malformed input gives a `bad_request` rejection.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let event = Event::from_payload("move", Payload::args(&json!([3, 4])));
    /// let (x, y): (i32, i32) = event.args()?;
    /// assert_eq!((x, y), (3, 4));
    /// # Ok::<(), Rejection>(())
    /// ```
    pub fn args<T: DeserializeOwned>(&self) -> Result<T, Rejection> {
        serde_json::from_value(self.args_value()?).map_err(|e| {
            Rejection::bad_request(format!("invalid arguments to `{}`: {e}", self.name))
        })
    }

    fn args_value(&self) -> Result<Value, Rejection> {
        serde_json::from_str(&self.payload.args_json).map_err(|e| {
            Rejection::bad_request(format!("arguments of `{}` are not JSON: {e}", self.name))
        })
    }
}

/// A refusal the client sees as `{"ok": false, "code": ..., "message": ...}`.
///
/// `code` is stable, machine-readable snake_case (`not_member`, `bad_request`, ...); `message`
/// is for humans. Use `?` on SDK results: [`Event::arg`] and friends already return it, and
/// [`KvError`](crate::kv::KvError) converts into it.
///
/// ```
/// # use portico_sdk::prelude::*;
/// let r = Rejection::new("not_member", "join the room first");
/// assert_eq!(r.to_json(), json!({ "ok": false, "code": "not_member", "message": "join the room first" }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub(crate) code: String,
    pub(crate) message: String,
}

impl Rejection {
    /// A rejection with a code and a message.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let r = Rejection::new("forbidden", "admins only");
    /// assert_eq!(r.code(), "forbidden");
    /// ```
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// A `bad_request` rejection: the client sent something malformed.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Rejection::bad_request("room is empty").code(), "bad_request");
    /// ```
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new("bad_request", message)
    }

    /// The machine-readable code.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Rejection::new("x", "y").code(), "x");
    /// ```
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The human-readable message.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Rejection::new("x", "y").message(), "y");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error-ack object `{"ok": false, "code": ..., "message": ...}`.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Rejection::new("x", "y").to_json()["ok"], json!(false));
    /// ```
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "ok": false, "code": self.code, "message": self.message })
    }

    /// An ack action carrying this rejection as the error-ack object (see [`Rejection::to_json`]),
    /// for when a plugin answers an error but still returns other actions.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let ack = Rejection::new("x", "y").into_ack();
    /// assert_eq!(ack, Action::ack(&json!({ "ok": false, "code": "x", "message": "y" })));
    /// ```
    pub fn into_ack(self) -> crate::Action {
        crate::Action::ack(&self.to_json())
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Rejection {}

/// One event a plugin accepts or emits, for documentation (AsyncAPI).
///
/// ```
/// # use portico_sdk::prelude::*;
/// let spec = EventSpec::incoming("join", "Join a room")
///     .schema(json!({ "type": "object", "required": ["room"] }));
/// assert_eq!(spec.name(), "join");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) schema: Option<Value>,
    pub(crate) outgoing: bool,
}

impl EventSpec {
    /// An event clients send to the plugin.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert!(!EventSpec::incoming("join", "Join a room").is_outgoing());
    /// ```
    pub fn incoming(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            schema: None,
            outgoing: false,
        }
    }

    /// An event the plugin sends to clients.
    ///
    /// The WIT `event-spec` has no direction field, so the SDK marks outgoing events with the
    /// annotation `"x-portico-direction": "out"` at the top of their JSON Schema (an empty
    /// schema carrying only the annotation when none was given).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert!(EventSpec::outgoing("message", "A chat message").is_outgoing());
    /// ```
    pub fn outgoing(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            outgoing: true,
            ..Self::incoming(name, description)
        }
    }

    /// The JSON Schema of the event's (first) argument.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let spec = EventSpec::incoming("e", "").schema(json!({ "type": "string" }));
    /// assert_eq!(spec.schema_json().as_deref(), Some(r#"{"type":"string"}"#));
    /// ```
    pub fn schema(mut self, schema: Value) -> Self {
        self.schema = Some(schema);
        self
    }

    /// The JSON Schema as given (without the direction annotation).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let spec = EventSpec::outgoing("e", "").schema(json!({ "type": "string" }));
    /// assert_eq!(spec.schema_value(), Some(&json!({ "type": "string" })));
    /// ```
    pub fn schema_value(&self) -> Option<&Value> {
        self.schema.as_ref()
    }

    /// The event name.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(EventSpec::incoming("e", "").name(), "e");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The description.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(EventSpec::incoming("e", "d").description(), "d");
    /// ```
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether the plugin sends this event (rather than receives it).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert!(EventSpec::outgoing("e", "").is_outgoing());
    /// ```
    pub fn is_outgoing(&self) -> bool {
        self.outgoing
    }

    /// The schema as sent to the host, direction annotation included.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(EventSpec::incoming("e", "").schema_json(), None);
    /// assert_eq!(
    ///     EventSpec::outgoing("e", "").schema_json().as_deref(),
    ///     Some(r#"{"x-portico-direction":"out"}"#)
    /// );
    /// ```
    pub fn schema_json(&self) -> Option<String> {
        if !self.outgoing {
            return self.schema.as_ref().map(Value::to_string);
        }
        let mut schema = match &self.schema {
            Some(Value::Object(map)) => map.clone(),
            Some(other) => return Some(other.to_string()),
            None => serde_json::Map::new(),
        };
        schema.insert("x-portico-direction".into(), Value::from("out"));
        Some(Value::Object(schema).to_string())
    }
}

/// What a plugin says about itself: name, version, description and events.
///
/// ```
/// # use portico_sdk::prelude::*;
/// let m = Manifest::new("chat", "1.2.0")
///     .description("Rooms and messages")
///     .event(EventSpec::incoming("join", "Join a room"));
/// assert_eq!((m.name(), m.version(), m.events().len()), ("chat", "1.2.0", 1));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) description: String,
    pub(crate) events: Vec<EventSpec>,
}

impl Manifest {
    /// A manifest with a name and a version (usually `env!("CARGO_PKG_VERSION")`).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let m = Manifest::new("echo", env!("CARGO_PKG_VERSION"));
    /// # let _ = m;
    /// ```
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            events: Vec::new(),
        }
    }

    /// Sets the description.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Manifest::new("a", "1").description("b").description_text(), "b");
    /// ```
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Declares an event.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let m = Manifest::new("a", "1").event(EventSpec::outgoing("tick", "Every second"));
    /// assert_eq!(m.events()[0].name(), "tick");
    /// ```
    pub fn event(mut self, spec: EventSpec) -> Self {
        self.events.push(spec);
        self
    }

    /// The plugin name.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Manifest::new("a", "1").name(), "a");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin version.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Manifest::new("a", "1").version(), "1");
    /// ```
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The description text.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Manifest::new("a", "1").description_text(), "");
    /// ```
    pub fn description_text(&self) -> &str {
        &self.description
    }

    /// The declared events.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert!(Manifest::new("a", "1").events().is_empty());
    /// ```
    pub fn events(&self) -> &[EventSpec] {
        &self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Join {
        room: String,
    }

    #[test]
    fn arg_reports_wrong_types_and_missing_args() {
        let e = Event::new("join", &json!({ "room": 5 }));
        let err = e.arg::<Join>().unwrap_err();
        assert_eq!(err.code(), "bad_request");
        assert!(err.message().contains("invalid type"), "{err}");

        let none = Event::from_payload("join", Payload::empty());
        assert!(
            none.arg::<Join>()
                .unwrap_err()
                .message()
                .contains("needs an argument")
        );
        assert_eq!(none.arg::<Option<Join>>().unwrap(), None);

        let garbage = Event::from_payload("join", Payload::from_raw("not json", vec![]));
        assert!(
            garbage
                .arg::<Join>()
                .unwrap_err()
                .message()
                .contains("not JSON")
        );
    }

    #[test]
    fn payload_equality_ignores_key_order() {
        let a = Payload::from_raw(r#"[{"a":1,"b":2}]"#, vec![]);
        let b = Payload::from_raw(r#"[{"b":2,"a":1}]"#, vec![]);
        assert_eq!(a, b);
        assert_ne!(a, Payload::from_raw(r#"[{"a":1,"b":2}]"#, vec![vec![1]]));
    }

    #[test]
    fn outgoing_schema_is_annotated() {
        let spec = EventSpec::outgoing("m", "").schema(json!({ "type": "object" }));
        let schema: Value = serde_json::from_str(&spec.schema_json().unwrap()).unwrap();
        assert_eq!(
            schema,
            json!({ "type": "object", "x-portico-direction": "out" })
        );
    }
}
