//! `bridge`: put Portico in front of an existing HTTP service without writing wasm.
//!
//! Every event a client sends is POSTed as JSON to the backend URL (config `url`, an origin the
//! operator allowed with `outbound`), with the verified principal; the backend answers with the
//! actions to perform. With config `connect = "forward"`, connections are forwarded too (as
//! event `$connect`) and the backend may refuse them.
//!
//! Request body:
//!
//! ```json
//! { "event": "order", "args": [{"item": 7}], "socket": "Zx3...", "namespace": "/bridge",
//!   "subject": "alice", "claims": {"sub": "alice", "role": "buyer"}, "wants_ack": true }
//! ```
//!
//! Response body (every field optional):
//!
//! ```json
//! { "ack": {"ok": true, "id": 42},
//!   "actions": [
//!     {"type": "emit", "event": "status", "data": "queued"},
//!     {"type": "publish", "channel": "orders", "event": "new", "data": {"id": 42}},
//!     {"type": "send_to", "socket": "Ab1...", "event": "ping", "data": 1},
//!     {"type": "join", "channel": "orders"}, {"type": "leave", "channel": "orders"},
//!     {"type": "disconnect", "reason": "bye"} ] }
//! ```
//!
//! or `{"error": {"code": "out_of_stock", "message": "..."}}`, which becomes the error ack
//! (or refuses a `$connect`). A backend that answers a non-2xx status or something else than
//! this JSON gives `backend_error`; an unreachable or slow one gives the `outbound_*` codes.

use portico_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The bridge plugin.
pub struct Bridge;

#[derive(Serialize)]
struct Forward<'a> {
    event: &'a str,
    args: Value,
    socket: &'a str,
    namespace: &'a str,
    subject: Option<&'a str>,
    claims: Value,
    wants_ack: bool,
}

/// What the backend answers.
#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Answer {
    /// The ack's argument.
    pub ack: Option<Value>,
    /// Actions, performed in order before the ack.
    pub actions: Vec<Do>,
    /// A refusal: the error ack, or a refused connection.
    pub error: Option<Refusal>,
}

/// A refusal from the backend.
#[derive(Deserialize, Debug, PartialEq)]
pub struct Refusal {
    code: String,
    message: String,
}

/// One action the backend asks for.
#[derive(Deserialize, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Do {
    /// Emit to the sender.
    Emit { event: String, data: Value },
    /// Publish to a channel (Socket.IO room and SSE).
    Publish {
        channel: String,
        event: String,
        data: Value,
        #[serde(default)]
        include_sender: bool,
    },
    /// Emit to one socket of the namespace.
    SendTo {
        socket: String,
        event: String,
        data: Value,
    },
    /// Join a channel.
    Join { channel: String },
    /// Leave a channel.
    Leave { channel: String },
    /// Close the sender's connection.
    Disconnect { reason: String },
}

impl From<Do> for Action {
    fn from(d: Do) -> Self {
        match d {
            Do::Emit { event, data } => Action::emit(event, &data),
            Do::Publish {
                channel,
                event,
                data,
                include_sender,
            } => {
                let p = Action::publish(channel, event, &data);
                if include_sender {
                    p.include_sender()
                } else {
                    p
                }
            }
            Do::SendTo {
                socket,
                event,
                data,
            } => Action::send_to(socket, event, &data),
            Do::Join { channel } => Action::join(channel),
            Do::Leave { channel } => Action::leave(channel),
            Do::Disconnect { reason } => Action::disconnect(reason),
        }
    }
}

fn backend() -> Result<String, Rejection> {
    config::get("url").ok_or_else(|| {
        Rejection::new(
            "backend_error",
            "the bridge has no backend: set its config `url`",
        )
    })
}

/// POST one event to the backend and read its answer.
fn forward(
    conn: &Connection,
    event: &str,
    args: Value,
    wants_ack: bool,
) -> Result<Answer, Rejection> {
    let claims = conn
        .principal()
        .and_then(|p| serde_json::from_str(p.claims_json()).ok())
        .unwrap_or(Value::Null);
    let body = Forward {
        event,
        args,
        socket: conn.id(),
        namespace: conn.namespace(),
        subject: conn.subject(),
        claims,
        wants_ack,
    };
    let res = http::Request::post(&backend()?).json(&body).send()?;
    if !res.is_success() {
        return Err(Rejection::new(
            "backend_error",
            format!("the backend answered {}", res.status()),
        ));
    }
    res.json()
        .map_err(|e| Rejection::new("backend_error", format!("the backend's answer: {e}")))
}

fn perform(answer: Answer) -> Result<Actions, Rejection> {
    if let Some(Refusal { code, message }) = answer.error {
        return Err(Rejection::new(code, message));
    }
    let mut actions: Actions = answer.actions.into_iter().map(Action::from).collect();
    if let Some(ack) = answer.ack {
        actions.push(Action::ack(&ack));
    }
    Ok(actions)
}

impl Plugin for Bridge {
    fn manifest() -> Manifest {
        Manifest::new("bridge", env!("CARGO_PKG_VERSION")).description(
            "Forwards every event to an HTTP backend and performs the actions it answers with",
        )
    }

    fn on_connect(conn: &Connection) -> Result<Actions, Rejection> {
        if config::get("connect").as_deref() != Some("forward") {
            return Ok(vec![]);
        }
        perform(forward(conn, "$connect", Value::Array(vec![]), false)?)
    }

    fn on_event(conn: &Connection, event: &Event) -> Result<Actions, Rejection> {
        let args: Value = event.args()?;
        perform(forward(conn, event.name(), args, event.wants_ack())?)
    }
}

portico_sdk::export!(Bridge);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::http::{Request, Response};
    use portico_sdk::testing::TestHost;

    fn host(answer: Value) -> TestHost<Bridge> {
        TestHost::<Bridge>::new()
            .with_config("url", "http://backend.test/portico")
            .with_backend(move |req: &Request| {
                assert_eq!(
                    (req.method(), req.url()),
                    ("POST", "http://backend.test/portico")
                );
                Ok(Response::json_body(&answer))
            })
    }

    #[test]
    fn forwards_the_event_with_the_principal_and_performs_the_answer() {
        let host = host(json!({
            "ack": { "ok": true, "id": 42 },
            "actions": [
                { "type": "join", "channel": "orders" },
                { "type": "publish", "channel": "orders", "event": "new", "data": { "id": 42 } }
            ]
        }));
        let ann = host.user_with_claims("ann", json!({ "role": "buyer" }));
        let actions = host
            .event_with_ack(&ann, "order", json!({ "item": 7 }))
            .unwrap();
        assert_eq!(
            actions,
            vec![
                Action::join("orders"),
                Action::publish("orders", "new", &json!({ "id": 42 })),
                Action::ack(&json!({ "ok": true, "id": 42 })),
            ]
        );
        let sent: Value = serde_json::from_slice(host.requests()[0].body_bytes()).unwrap();
        assert_eq!(sent["event"], "order");
        assert_eq!(sent["args"], json!([{ "item": 7 }]));
        assert_eq!(sent["subject"], "ann");
        assert_eq!(sent["claims"]["role"], "buyer");
        assert_eq!(sent["wants_ack"], true);
    }

    #[test]
    fn backend_refusals_and_bad_answers_are_error_acks() {
        let host = host(json!({ "error": { "code": "out_of_stock", "message": "none left" } }));
        let ann = host.user("ann");
        assert_eq!(host.ack(&ann, "order", json!({}))["code"], "out_of_stock");
        let host = self::host(json!({ "actions": [{ "type": "explode" }] }));
        let ann = host.user("ann");
        assert_eq!(host.ack(&ann, "order", json!({}))["code"], "backend_error");
        let none = TestHost::<Bridge>::new();
        let ann = none.user("ann");
        assert_eq!(none.ack(&ann, "order", json!({}))["code"], "backend_error");
    }

    #[test]
    fn connections_are_forwarded_when_asked() {
        let host = host(json!({ "error": { "code": "banned", "message": "no" } }));
        let ann = host.user("ann");
        assert!(host.connect(&ann).is_ok(), "not forwarded by default");
        host.set_config("connect", "forward");
        assert_eq!(host.connect(&ann).unwrap_err().code(), "banned");
    }
}
