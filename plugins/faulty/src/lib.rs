//! `faulty`: a **test plugin** for the host's runtime tests. It is not an example: it
//! misbehaves on request.
//!
//! Events: `loop` (spins forever), `alloc` (allocates 1 MiB blocks until memory runs out),
//! `panic` (panics with "faulty plugin panicked on purpose"), `error` (rejects with code
//! `teapot`), `ok` (acks `{"ok": true}`), `log` (logs a line at info and acks); and to
//! exercise the gateway's actions: `whoami` (acks `{"id", "sub"}`), `send-to {socket,
//! event, data}` (emits `event` with `data` to that socket of the namespace, then acks) and
//! `kick {reason}` (disconnects the sender with that reason), `flood N` (answers with N
//! `leave` actions, to test the host's cap on actions per answer).
//!
//! Config: `describe` = `panic` | `loop` makes `describe` trap or spin (upload validation
//! tests); `connect` = `reject` makes `on_connect` reject with code `forbidden`.

use portico_sdk::prelude::*;

#[derive(serde::Deserialize)]
struct SendTo {
    socket: String,
    event: String,
    data: serde_json::Value,
}

/// The faulty test plugin.
pub struct Faulty;

/// The panic message of the `panic` event.
pub const PANIC_MESSAGE: &str = "faulty plugin panicked on purpose";

impl Plugin for Faulty {
    fn manifest() -> Manifest {
        match config::get("describe").as_deref() {
            Some("panic") => panic!("faulty plugin panicked in describe"),
            Some("loop") => spin(),
            _ => Manifest::new("faulty", env!("CARGO_PKG_VERSION"))
                .description("Test plugin that misbehaves on request; not an example"),
        }
    }

    fn on_connect(_conn: &Connection) -> Result<Actions, Rejection> {
        if config::get("connect").as_deref() == Some("reject") {
            return Err(Rejection::new("forbidden", "faulty refuses connections"));
        }
        Ok(vec![])
    }

    fn on_event(conn: &Connection, event: &Event) -> Result<Actions, Rejection> {
        match event.name() {
            "loop" => spin(),
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("{PANIC_MESSAGE}"),
            "error" => Err(Rejection::new("teapot", "faulty is a teapot")),
            "ok" => Ok(vec![Action::ack(&json!({ "ok": true }))]),
            "flood" => {
                let n: usize = event.arg()?;
                let mut actions = Vec::with_capacity(n);
                actions.extend((0..n).map(|i| Action::Leave(format!("c{i}"))));
                Ok(actions)
            }
            // std's HashMap seeds itself from `wasi:random/insecure-seed`.
            "hashmap" => {
                let mut m = std::collections::HashMap::new();
                m.insert("k", 1);
                Ok(vec![Action::ack(&json!({ "ok": true, "len": m.len() }))])
            }
            "whoami" => Ok(vec![Action::ack(
                &json!({ "id": conn.id(), "sub": conn.subject() }),
            )]),
            "send-to" => {
                let to: SendTo = event.arg()?;
                Ok(vec![
                    Action::send_to(to.socket, to.event, &to.data),
                    Action::ack(&json!({ "ok": true })),
                ])
            }
            "kick" => {
                let args: serde_json::Value = event.arg()?;
                let reason = args["reason"].as_str().unwrap_or("kicked").to_owned();
                Ok(vec![Action::disconnect(reason)])
            }
            "log" => {
                log::info("faulty logs a line");
                Ok(vec![Action::ack(&json!({ "ok": true }))])
            }
            // Rooms without any KV: delivery tests that must not depend on the store.
            "join" => {
                let room: String = event.arg()?;
                Ok(vec![
                    Action::join(room),
                    Action::ack(&json!({ "ok": true })),
                ])
            }
            "shout" => {
                let (room, text): (String, String) = event.args()?;
                Ok(vec![
                    Action::publish(room, "shout", &json!({ "text": text })),
                    Action::ack(&json!({ "ok": true })),
                ])
            }
            other => Err(Rejection::new(
                "unknown_event",
                format!("faulty has no event `{other}`"),
            )),
        }
    }
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

portico_sdk::export!(Faulty);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::TestHost;

    #[test]
    fn well_behaved_events() {
        let host = TestHost::<Faulty>::new();
        let c = host.anonymous();
        assert_eq!(host.ack(&c, "ok", ()), json!({ "ok": true }));
        assert_eq!(host.ack(&c, "log", ()), json!({ "ok": true }));
        assert_eq!(host.log_messages(), vec!["faulty logs a line"]);
        assert_eq!(host.event(&c, "error", ()).unwrap_err().code(), "teapot");
        assert_eq!(host.manifest().name(), "faulty");
    }

    #[test]
    fn gateway_actions_on_request() {
        let host = TestHost::<Faulty>::new();
        let c = host.user("alice");
        assert_eq!(host.ack(&c, "whoami", ())["sub"], json!("alice"));
        let sent = host
            .event(
                &c,
                "send-to",
                json!({ "socket": "s2", "event": "dm", "data": 1 }),
            )
            .unwrap();
        assert_eq!(sent[0], Action::send_to("s2", "dm", &1));
        assert_eq!(
            host.event(&c, "kick", json!({ "reason": "bye" })).unwrap(),
            vec![Action::disconnect("bye")]
        );
        assert_eq!(
            host.event(&c, "send-to", json!({ "socket": 1 }))
                .unwrap_err()
                .code(),
            "bad_request"
        );
    }

    #[test]
    #[should_panic(expected = "faulty plugin panicked on purpose")]
    fn panics_on_purpose() {
        let host = TestHost::<Faulty>::new();
        let _ = host.event(&host.anonymous(), "panic", ());
    }

    #[test]
    #[should_panic(expected = "in describe")]
    fn describe_can_panic() {
        TestHost::<Faulty>::new()
            .with_config("describe", "panic")
            .manifest();
    }

    #[test]
    fn connect_can_reject() {
        let host = TestHost::<Faulty>::new();
        assert!(host.connect(&host.anonymous()).is_ok());
        host.set_config("connect", "reject");
        assert_eq!(
            host.connect(&host.anonymous()).unwrap_err().code(),
            "forbidden"
        );
    }
}
