//! Host-side values exchanged with plugins, independent of the generated bindings.

use serde::Serialize;

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

/// An event from a client.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    /// JSON array of the arguments after the event name.
    pub args_json: String,
    pub binary: Vec<Vec<u8>>,
    pub wants_ack: bool,
}

/// Socket.IO arguments: a JSON array plus binary attachments referenced by placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub args_json: String,
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
