//! `probe`: a **test plugin** for the host's 0.2.0 imports (connection state, timers,
//! outbound HTTP). It is not an example. Every event is a typed handler, acked
//! `{"ok": true, "v", ...}` or refused with the SDK's error codes:
//!
//! - `remember {key, value}`: store `value` in this connection's state;
//! - `recall {key, socket?}`: read `key` of this connection's (or `socket`'s) state: acks
//!   `{value}` (`null` if unset); `state_error` once that connection is gone;
//! - `remind {delay_ms, text}`: a timer for this connection; when it fires the connection
//!   gets `reminder {text, v}` (`v` is the version serving it then). Acks `{id}`;
//! - `announce {delay_ms, channel, text}`: a timer about no connection, which publishes
//!   `announcement {text, v}` to `channel`. Acks `{id}`;
//! - `cancel {id}`: cancel a timer; acks `{cancelled}`;
//! - `fetch {url, method?, body?, timeout_ms?}`: an outbound request; acks `{status, body}`
//!   or the `outbound_*` error code;
//! - `tune {}`: joins channel `tune` (to hear announcements).
//!
//! Config `version` overrides the version (hot-swap tests deploy it as "a new version").

use std::time::Duration;

use portico_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// The probe test plugin.
pub struct Probe;

fn version() -> String {
    config::get_or("version", env!("CARGO_PKG_VERSION"))
}

#[derive(Deserialize, JsonSchema)]
struct Remember {
    key: String,
    value: String,
}

#[derive(Deserialize, JsonSchema)]
struct Recall {
    key: String,
    socket: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
struct Remind {
    delay_ms: u64,
    text: String,
}

#[derive(Deserialize, JsonSchema)]
struct Announce {
    delay_ms: u64,
    channel: String,
    text: String,
}

#[derive(Deserialize, JsonSchema)]
struct Cancel {
    id: u64,
}

#[derive(Deserialize, JsonSchema)]
struct Fetch {
    url: String,
    method: Option<String>,
    body: Option<String>,
    timeout_ms: Option<u64>,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Said {
    text: String,
    channel: Option<String>,
}

fn ok(extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({ "ok": true, "v": version() });
    if let (Some(map), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
        map.extend(extra);
    }
    v
}

type Answer = Result<Reply<serde_json::Value>, Rejection>;

fn recall(conn: &Connection, r: Recall) -> Answer {
    let target = match &r.socket {
        Some(id) => Connection::new(id.clone()),
        None => conn.clone(),
    };
    let value = state::get_string(&target, &r.key)?;
    Ok(Reply::ack(ok(json!({ "value": value }))))
}

fn fetch(_conn: &Connection, f: Fetch) -> Answer {
    let mut req = http::Request::new(f.method.as_deref().unwrap_or("GET"), &f.url);
    if let Some(body) = f.body {
        req = req.body(body);
    }
    if let Some(ms) = f.timeout_ms {
        req = req.timeout(Duration::from_millis(ms));
    }
    let res = req.send()?;
    Ok(Reply::ack(ok(
        json!({ "status": res.status(), "body": res.text() }),
    )))
}

impl Plugin for Probe {
    fn manifest() -> Manifest {
        Manifest::new("probe", version())
            .description("Test plugin for connection state, timers and outbound HTTP")
    }

    fn router() -> Router {
        Router::new()
            .on(
                "remember",
                "Store a value in this connection's state",
                |conn, r: Remember| {
                    state::set(conn, &r.key, &r.value)?;
                    Ok(Reply::ack(ok(json!({}))))
                },
            )
            .on("recall", "Read a connection's state", recall)
            .on(
                "remind",
                "Set a timer for this connection",
                |conn, r: Remind| {
                    let said = Said {
                        text: r.text,
                        channel: None,
                    };
                    let id = timers::after_for(
                        conn,
                        Duration::from_millis(r.delay_ms),
                        "remind",
                        &said,
                    )?;
                    Ok(Reply::ack(ok(json!({ "id": id }))))
                },
            )
            .on(
                "announce",
                "Set a timer that publishes",
                |_conn, a: Announce| {
                    let said = Said {
                        text: a.text,
                        channel: Some(a.channel),
                    };
                    let id = timers::after(Duration::from_millis(a.delay_ms), "announce", &said)?;
                    Ok(Reply::ack(ok(json!({ "id": id }))))
                },
            )
            .on("cancel", "Cancel a timer", |_conn, c: Cancel| {
                Ok(Reply::ack(ok(json!({ "cancelled": timers::cancel(c.id) }))))
            })
            .on("fetch", "Make an outbound HTTP request", fetch)
            .on("tune", "Hear announcements", |_conn, (): ()| {
                Ok(Reply::ack(ok(json!({}))).with(Action::join("tune")))
            })
            .emits::<Said>("reminder", "A timer of this connection fired")
            .emits::<Said>("announcement", "A timer about no connection fired")
    }

    fn on_timer(timer: &Timer, conn: Option<&Connection>) -> Actions {
        let Ok(said) = timer.data::<Said>() else {
            return vec![];
        };
        let body = json!({ "text": said.text, "v": version() });
        match (conn, said.channel) {
            (Some(_), _) => vec![Action::emit("reminder", &body)],
            (None, Some(channel)) => vec![Action::publish(channel, "announcement", &body)],
            (None, None) => vec![],
        }
    }
}

portico_sdk::export!(Probe);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::http::{HttpError, Response};
    use portico_sdk::testing::TestHost;

    #[test]
    fn state_is_per_connection_and_gone_after_disconnect() {
        let host = TestHost::<Probe>::new();
        let (ann, bob) = (host.user("ann"), host.user("bob"));
        host.connect(&ann).unwrap();
        host.connect(&bob).unwrap();
        host.ack(&ann, "remember", json!({ "key": "k", "value": "v" }));
        assert_eq!(
            host.ack(&ann, "recall", json!({ "key": "k" }))["value"],
            "v"
        );
        assert_eq!(
            host.ack(&bob, "recall", json!({ "key": "k" }))["value"],
            json!(null)
        );
        let asks_for_ann = json!({ "key": "k", "socket": ann.id() });
        assert_eq!(host.ack(&bob, "recall", asks_for_ann.clone())["value"], "v");
        host.disconnect(&ann, "transport close");
        assert_eq!(
            host.ack(&bob, "recall", asks_for_ann)["code"],
            "state_error"
        );
    }

    #[test]
    fn state_limits_match_the_host() {
        let host = TestHost::<Probe>::new();
        let ann = host.user("ann");
        let big = "x".repeat(portico_sdk::testing::limits::STATE_MAX_VALUE_BYTES + 1);
        let ack = host.ack(&ann, "remember", json!({ "key": "k", "value": big }));
        assert_eq!(ack["code"], "state_error");
    }

    #[test]
    fn timers_fire_on_the_test_clock_and_die_with_their_connection() {
        let host = TestHost::<Probe>::new();
        let (ann, bob) = (host.user("ann"), host.user("bob"));
        host.connect(&ann).unwrap();
        host.connect(&bob).unwrap();
        host.ack(&ann, "remind", json!({ "delay_ms": 1000, "text": "a" }));
        host.ack(&bob, "remind", json!({ "delay_ms": 1000, "text": "b" }));
        host.ack(
            &bob,
            "announce",
            json!({ "delay_ms": 500, "channel": "tune", "text": "c" }),
        );
        assert_eq!(host.timers().len(), 3);
        let fired = host.advance(Duration::from_millis(500));
        assert!(
            matches!(&fired[..], [Action::Publish { channel, .. }] if channel == "tune"),
            "{fired:?}"
        );
        host.disconnect(&bob, "transport close");
        let fired = host.advance(Duration::from_millis(500));
        assert_eq!(
            fired,
            vec![Action::emit(
                "reminder",
                &json!({ "text": "a", "v": version() })
            )]
        );
        assert!(host.timers().is_empty());
    }

    #[test]
    fn fetch_uses_the_fake_backend_and_reports_errors() {
        let host = TestHost::<Probe>::new().with_backend(|req: &http::Request| match req.url() {
            "http://api.test/slow" => Err(HttpError::Timeout(100)),
            url => Ok(Response::new(200, format!("hello from {url}"))),
        });
        let ann = host.user("ann");
        let ack = host.ack(&ann, "fetch", json!({ "url": "http://api.test/x" }));
        assert_eq!(
            (ack["status"].clone(), ack["body"].clone()),
            (json!(200), json!("hello from http://api.test/x"))
        );
        let ack = host.ack(&ann, "fetch", json!({ "url": "http://api.test/slow" }));
        assert_eq!(ack["code"], "outbound_timeout");
        assert_eq!(host.requests().len(), 2);
        let none = TestHost::<Probe>::new();
        let ann = none.user("ann");
        assert_eq!(
            none.ack(&ann, "fetch", json!({ "url": "http://a/" }))["code"],
            "outbound_forbidden"
        );
    }
}
