//! Host-side values exchanged with plugins, independent of the generated bindings.

use bytes::Bytes;
use serde::Serialize;
use socketioxide_core::Str;

/// How a client is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    WebSocket,
    Polling,
    Sse,
}

/// The verified identity behind a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: Option<String>,
    /// All claims, as a JSON object.
    pub claims_json: String,
}

/// A client connection, built once when it connects and passed on every call.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: String,
    pub namespace: String,
    pub transport: Transport,
    pub remote_addr: Option<String>,
    pub principal: Option<Principal>,
    pub query: Vec<(String, String)>,
    /// The handshake `auth` object without its token, as JSON.
    pub auth_json: String,
}

/// UTF-8 text that shares the buffer it was read from (a client's packet, a
/// plugin's answer) instead of being copied out of it: cloning or slicing it
/// counts a reference, and the gateway sends it on as it is.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Text(Str);

impl Text {
    /// `bytes` if they are UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        // SAFETY: checked just above; `Str` only requires its bytes to be UTF-8.
        #[allow(unsafe_code)]
        Ok(Self(unsafe { Str::from_bytes_unchecked(bytes) }))
    }

    /// `s`, not copied.
    pub fn from_static(s: &'static str) -> Self {
        Self(Str::from(s))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The part of this text at `range` (byte offsets on character boundaries), shared.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Self {
        Self(self.0.slice(range))
    }

    /// The same text as socketioxide's string type, shared.
    pub fn into_str(self) -> Str {
        self.0
    }
}

impl From<Str> for Text {
    fn from(s: Str) -> Self {
        Self(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Self(s.into())
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Self(Str::copy_from_slice(s))
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.0.into()
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An event from a client.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: Text,
    /// The arguments after the name, as a JSON array.
    pub args: JsonArray,
    pub binary: Vec<Vec<u8>>,
    pub wants_ack: bool,
}

impl Event {
    /// An event named `name` with the JSON array `args_json`.
    pub fn new(
        name: &str,
        args_json: impl Into<String>,
        binary: Vec<Vec<u8>>,
        wants_ack: bool,
    ) -> Self {
        Self {
            name: name.into(),
            args: JsonArray::new(args_json.into()),
            binary,
            wants_ack,
        }
    }
}

/// A JSON array kept as the text after its opening bracket (`1,2]` for
/// `[1,2]`): an event's arguments are then a slice of its packet
/// (`["name",1,2]`), with nothing copied or allocated.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonArray {
    after_bracket: Text,
}

impl JsonArray {
    /// `json`, a JSON array (it starts with `[`).
    pub fn new(json: String) -> Self {
        debug_assert!(json.starts_with('['), "not a JSON array: {json}");
        let text = Text::from(json);
        Self::after_bracket(text.slice(1.min(text.len())..text.len()))
    }

    /// The array whose text after its `[` is `text`.
    pub fn after_bracket(text: Text) -> Self {
        Self {
            after_bracket: text,
        }
    }

    /// The array's text is `[` followed by this.
    pub fn text_after_bracket(&self) -> &str {
        &self.after_bracket
    }

    /// Length of the array's text in bytes.
    pub fn json_len(&self) -> usize {
        1 + self.after_bracket.len()
    }

    /// The array's text, copied.
    pub fn to_json(&self) -> String {
        let mut json = String::with_capacity(self.json_len());
        json.push('[');
        json.push_str(&self.after_bracket);
        json
    }
}

impl std::fmt::Debug for JsonArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_json().fmt(f)
    }
}

/// Socket.IO arguments: a JSON array plus binary attachments referenced by placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub args_json: Text,
    pub binary: Vec<Vec<u8>>,
}

/// What a plugin asks the host to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Emit {
        event: String,
        payload: Payload,
    },
    Ack(Payload),
    Publish {
        channel: String,
        event: String,
        data_json: String,
        include_sender: bool,
    },
    SendTo {
        socket: String,
        event: String,
        payload: Payload,
    },
    Join(String),
    Leave(String),
    Disconnect(String),
}

/// A refusal the client sees as `{code, message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub code: String,
    pub message: String,
}

impl Rejection {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// What a plugin says about itself (`describe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: String,
    pub events: Vec<EventSpec>,
}

/// One event of a plugin's contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the payload, as text.
    pub schema_json: Option<String>,
}

/// A plugin's timer fired (see `crate::timers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerEvent {
    pub id: u64,
    pub name: String,
    pub data_json: String,
    /// The connection it is about, if it was set for one.
    pub conn: Option<String>,
}
