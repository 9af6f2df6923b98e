//! Just enough Engine.IO v4 / Socket.IO v5 over WebSocket for a load generator: the
//! handshake, namespace connect with a token, and packet framing. One WebSocket text
//! frame carries exactly one Engine.IO packet in v4, so no payload splitting is needed.

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

pub type Ws = WebSocketStream<TcpStream>;

/// Engine.IO ping from the server; the client answers [`PONG`].
pub const PING: &str = "2";
pub const PONG: &str = "3";

/// Packet prefixes of one namespace: `42/chat,` (event) and `43/chat,` (ack).
#[derive(Clone, Debug)]
pub struct Namespace {
    pub event: String,
    pub ack: String,
    connect: String,
    error: String,
}

impl Namespace {
    pub fn new(ns: &str) -> Self {
        // The main namespace has no prefix; the others are written `/name,`.
        let p = if ns == "/" || ns.is_empty() {
            String::new()
        } else {
            format!("{ns},")
        };
        Self {
            event: format!("42{p}"),
            ack: format!("43{p}"),
            connect: format!("40{p}"),
            error: format!("44{p}"),
        }
    }

    /// `42/ns,<id>["event",<args>]`.
    pub fn emit_with_ack(&self, id: u64, event: &str, args_json: &str) -> Message {
        Message::text(format!("{}{id}[\"{event}\",{args_json}]", self.event))
    }

    /// The id of an ack packet (`43/ns,<id>[...]`) and its body.
    pub fn read_ack<'a>(&self, text: &'a str) -> Option<(u64, &'a str)> {
        let rest = text.strip_prefix(self.ack.as_str())?;
        let end = rest.find('[')?;
        Some((rest[..end].parse().ok()?, &rest[end..]))
    }
}

/// Open a WebSocket to `addr` (`host:port`), read the Engine.IO open packet and connect to
/// the namespace with `token` in the handshake `auth`.
pub async fn connect(addr: &str, ns: &Namespace, token: &str) -> anyhow::Result<Ws> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("tcp connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .context("websocket upgrade")?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
        other => bail!("expected the engine.io open packet, got {other:?}"),
    }
    let connect = format!("{}{}", ns.connect, json!({ "token": token }));
    ws.send(Message::text(connect)).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                if t.as_str() == PING {
                    ws.send(Message::text(PONG)).await?;
                } else if t.starts_with(ns.connect.as_str()) {
                    return Ok(ws);
                } else if t.starts_with(ns.error.as_str()) {
                    bail!("connect_error: {}", &t[ns.error.len()..]);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("reading the namespace connect answer"),
            None => bail!("closed before the namespace connect answer"),
        }
    }
}

/// Whether an ack body is a Portico-style error ack (`{"ok":false,...}`).
pub fn is_error_ack(body: &str) -> bool {
    body.contains("\"ok\":false")
}

/// The number in `"text":"<n>"` of a chat message: the generator's send timestamp.
pub fn text_timestamp(body: &str) -> Option<u64> {
    const KEY: &str = "\"text\":\"";
    let start = body.find(KEY)? + KEY.len();
    let rest = &body[start..];
    let end = rest.find('"')?;
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_packets() {
        let ns = Namespace::new("/echo");
        let Message::Text(t) = ns.emit_with_ack(7, "echo", r#"{"n":7}"#) else {
            panic!("text frame expected")
        };
        assert_eq!(t.as_str(), r#"42/echo,7["echo",{"n":7}]"#);
        assert_eq!(
            ns.read_ack(r#"43/echo,12[{"n":7}]"#),
            Some((12, r#"[{"n":7}]"#))
        );
        assert_eq!(ns.read_ack(r#"43/chat,12[{"n":7}]"#), None);
        assert_eq!(Namespace::new("/").event, "42");
    }

    #[test]
    fn reads_timestamps_and_error_acks() {
        let m = r#"42/chat,["message",{"from":"a","room":"r","text":"123456"}]"#;
        assert_eq!(text_timestamp(m), Some(123_456));
        assert_eq!(text_timestamp(r#"{"text":"hi"}"#), None);
        assert!(is_error_ack(r#"[{"ok":false,"code":"x"}]"#));
        assert!(!is_error_ack(r#"[{"ok":true}]"#));
    }
}
