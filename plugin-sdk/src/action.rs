//! What a plugin asks the host to do.

use serde::Serialize;

use crate::types::{Payload, json_text_eq, to_value};

/// The actions a call returns; the host performs them in order.
///
/// ```
/// # use portico_sdk::prelude::*;
/// let actions: Actions = vec![Action::join("lobby"), Action::ack(&json!({ "ok": true }))];
/// # let _ = actions;
/// ```
pub type Actions = Vec<Action>;

/// One thing for the host to do after a call. A plugin never touches a socket itself.
///
/// Build actions with the constructors ([`Action::ack`], [`Action::publish`], ...); match on
/// the variants in tests. Equality compares JSON values, not their text.
///
/// ```
/// # use portico_sdk::prelude::*;
/// let publish = Action::publish("room:a", "message", &json!({ "text": "hi" }));
/// assert!(matches!(&publish, Action::Publish { include_sender: false, .. }));
/// assert!(matches!(publish.include_sender(), Action::Publish { include_sender: true, .. }));
/// ```
#[derive(Debug, Clone)]
pub enum Action {
    /// Emit an event to the connection that caused the call.
    Emit {
        /// Event name.
        event: String,
        /// Arguments.
        payload: Payload,
    },
    /// Answer the client's acknowledgement (ignored when none was asked for).
    Ack(Payload),
    /// Publish to every subscriber of a channel, over Socket.IO and SSE alike.
    Publish {
        /// Channel (Socket.IO room, SSE channel).
        channel: String,
        /// Event name.
        event: String,
        /// One JSON value: the single Socket.IO argument and the SSE `data` field.
        data_json: String,
        /// Whether the sending socket receives its own publication.
        include_sender: bool,
    },
    /// Emit an event to one socket of this namespace.
    SendTo {
        /// Target socket id.
        socket: String,
        /// Event name.
        event: String,
        /// Arguments.
        payload: Payload,
    },
    /// Add the connection to a channel (a Socket.IO room).
    Join(String),
    /// Remove the connection from a channel.
    Leave(String),
    /// Close the connection; the string is the reason the client sees.
    Disconnect(String),
}

impl Action {
    /// Emit `event` with one argument to the sender.
    ///
    /// # Panics
    ///
    /// If `T`'s `Serialize` implementation fails, like [`json!`](crate::json).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let a = Action::emit("welcome", &json!({ "motd": "hi" }));
    /// # let _ = a;
    /// ```
    pub fn emit<T: Serialize + ?Sized>(event: impl Into<String>, arg: &T) -> Self {
        Self::emit_payload(event, Payload::json(arg))
    }

    /// Emit `event` with any payload (several arguments, binary attachments) to the sender.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let a = Action::emit_payload("pair", Payload::args(&("a", "b")));
    /// # let _ = a;
    /// ```
    pub fn emit_payload(event: impl Into<String>, payload: Payload) -> Self {
        Self::Emit {
            event: event.into(),
            payload,
        }
    }

    /// Acknowledge with one argument, conventionally `{"ok": true, ...}`.
    ///
    /// # Panics
    ///
    /// If `T`'s `Serialize` implementation fails, like [`json!`](crate::json).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let a = Action::ack(&json!({ "ok": true, "id": 7 }));
    /// assert_eq!(a.ack_value(), Some(json!({ "ok": true, "id": 7 })));
    /// ```
    pub fn ack<T: Serialize + ?Sized>(arg: &T) -> Self {
        Self::Ack(Payload::json(arg))
    }

    /// Acknowledge with any payload, e.g. the event's own to echo it.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let event = Event::new("e", &1);
    /// let a = Action::ack_payload(event.payload());
    /// # let _ = a;
    /// ```
    pub fn ack_payload(payload: Payload) -> Self {
        Self::Ack(payload)
    }

    /// Acknowledge with the error object `{"ok": false, "code": ..., "message": ...}`.
    ///
    /// Returning `Err(rejection)` from [`Plugin::on_event`](crate::Plugin::on_event) gives the
    /// same ack; use this when other actions must still happen.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let a = Action::ack_error("not_member", "join the room first");
    /// assert_eq!(a.ack_value().unwrap()["code"], json!("not_member"));
    /// ```
    pub fn ack_error(code: impl Into<String>, message: impl Into<String>) -> Self {
        crate::Rejection::new(code, message).into_ack()
    }

    /// Publish `event` with one JSON value to every subscriber of `channel` but the sender
    /// (chain [`include_sender`](Action::include_sender) to include it).
    ///
    /// # Panics
    ///
    /// If `T`'s `Serialize` implementation fails, like [`json!`](crate::json).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let a = Action::publish("room:lobby", "message", &json!({ "text": "hi" }));
    /// # let _ = a;
    /// ```
    pub fn publish<T: Serialize + ?Sized>(
        channel: impl Into<String>,
        event: impl Into<String>,
        data: &T,
    ) -> Self {
        Self::Publish {
            channel: channel.into(),
            event: event.into(),
            data_json: to_value(data).to_string(),
            include_sender: false,
        }
    }

    /// Makes a [`Publish`](Action::Publish) reach the sender too; other actions are unchanged.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let a = Action::publish("c", "e", &1).include_sender();
    /// assert!(matches!(a, Action::Publish { include_sender: true, .. }));
    /// ```
    pub fn include_sender(self) -> Self {
        match self {
            Self::Publish {
                channel,
                event,
                data_json,
                ..
            } => Self::Publish {
                channel,
                event,
                data_json,
                include_sender: true,
            },
            other => other,
        }
    }

    /// Emit `event` with one argument to another socket of this namespace.
    ///
    /// # Panics
    ///
    /// If `T`'s `Serialize` implementation fails, like [`json!`](crate::json).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let a = Action::send_to("sock-42", "dm", &json!({ "text": "psst" }));
    /// # let _ = a;
    /// ```
    pub fn send_to<T: Serialize + ?Sized>(
        socket: impl Into<String>,
        event: impl Into<String>,
        arg: &T,
    ) -> Self {
        Self::send_payload_to(socket, event, Payload::json(arg))
    }

    /// Emit `event` with any payload to another socket of this namespace.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let a = Action::send_payload_to("sock-42", "file", Payload::with_binary(&Payload::placeholder(0), vec![vec![1, 2]]));
    /// # let _ = a;
    /// ```
    pub fn send_payload_to(
        socket: impl Into<String>,
        event: impl Into<String>,
        payload: Payload,
    ) -> Self {
        Self::SendTo {
            socket: socket.into(),
            event: event.into(),
            payload,
        }
    }

    /// Add the connection to a channel.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Action::join("lobby"), Action::Join("lobby".into()));
    /// ```
    pub fn join(channel: impl Into<String>) -> Self {
        Self::Join(channel.into())
    }

    /// Remove the connection from a channel.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Action::leave("lobby"), Action::Leave("lobby".into()));
    /// ```
    pub fn leave(channel: impl Into<String>) -> Self {
        Self::Leave(channel.into())
    }

    /// Close the connection with a reason the client sees.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let a = Action::disconnect("kicked");
    /// # let _ = a;
    /// ```
    pub fn disconnect(reason: impl Into<String>) -> Self {
        Self::Disconnect(reason.into())
    }

    /// For an [`Ack`](Action::Ack), its first argument parsed. Handy in tests.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert_eq!(Action::ack(&1).ack_value(), Some(json!(1)));
    /// assert_eq!(Action::join("x").ack_value(), None);
    /// ```
    pub fn ack_value(&self) -> Option<serde_json::Value> {
        match self {
            Self::Ack(payload) => payload.first_arg(),
            _ => None,
        }
    }
}

impl PartialEq for Action {
    fn eq(&self, other: &Self) -> bool {
        use Action::*;
        match (self, other) {
            (
                Emit { event, payload },
                Emit {
                    event: e2,
                    payload: p2,
                },
            ) => event == e2 && payload == p2,
            (Ack(a), Ack(b)) => a == b,
            (
                Publish {
                    channel,
                    event,
                    data_json,
                    include_sender,
                },
                Publish {
                    channel: c2,
                    event: e2,
                    data_json: d2,
                    include_sender: i2,
                },
            ) => {
                channel == c2 && event == e2 && include_sender == i2 && json_text_eq(data_json, d2)
            }
            (
                SendTo {
                    socket,
                    event,
                    payload,
                },
                SendTo {
                    socket: s2,
                    event: e2,
                    payload: p2,
                },
            ) => socket == s2 && event == e2 && payload == p2,
            (Join(a), Join(b)) | (Leave(a), Leave(b)) | (Disconnect(a), Disconnect(b)) => a == b,
            _ => false,
        }
    }
}
