//! `chat`: rooms, nicknames and messages for signed-in users.
//!
//! Connecting needs a principal with a subject (`unauthorized` otherwise). Events, each acked
//! with `{"ok": true, "v": <version>}` or refused with `{"ok": false, "code", "message"}`:
//!
//! - `join {room}` / `leave {room}`: enter or leave a room (the channel named `room`);
//! - `nick {name}`: set the name shown on this connection's messages;
//! - `message {room, text}`: publish `message {from, room, text}` to the room's other
//!   members (`not_member` if the sender has not joined it);
//! - `who {room}`: who is in the room, on every node: acked with
//!   `{"ok": true, "v", "members": [{socket, subject, node}]}` (`presence_unavailable` when
//!   the cluster's record cannot be read).
//!
//! Malformed arguments give `bad_request` (`text` longer than config `max_text`, default 2000
//! characters, included); an unknown event gives `unknown_event`. SSE readers may subscribe to
//! any room when signed in. Config `version` overrides the version reported in the manifest
//! and acks (to deploy "the same plugin as a new version" in tests).
//!
//! State lives in the key-value store, per connection: `nick:{conn}`, `member:{conn}:{room}`
//! and `rooms:{conn}` (the list of joined rooms, so a disconnect can clean up).

use portico_sdk::prelude::*;
use serde::Deserialize;

/// The chat plugin.
pub struct Chat;

/// Default for config `max_text`, in characters.
pub const DEFAULT_MAX_TEXT: usize = 2000;
const MAX_ROOM: usize = 128;
const MAX_NICK: usize = 64;

#[derive(Deserialize)]
struct RoomArgs {
    room: String,
}

#[derive(Deserialize)]
struct NickArgs {
    name: String,
}

#[derive(Deserialize)]
struct MessageArgs {
    room: String,
    text: String,
}

fn version() -> String {
    config::get_or("version", env!("CARGO_PKG_VERSION"))
}

fn ok() -> Action {
    Action::ack(&json!({ "ok": true, "v": version() }))
}

fn check_len(what: &str, value: &str, max: usize) -> Result<(), Rejection> {
    if value.is_empty() {
        return Err(Rejection::bad_request(format!("{what} is empty")));
    }
    let len = value.chars().count();
    if len > max {
        return Err(Rejection::bad_request(format!(
            "{what} is {len} characters long, the limit is {max}"
        )));
    }
    Ok(())
}

fn nick_key(conn: &Connection) -> String {
    format!("nick:{}", conn.id())
}

fn member_key(conn: &Connection, room: &str) -> String {
    format!("member:{}:{room}", conn.id())
}

fn rooms_key(conn: &Connection) -> String {
    format!("rooms:{}", conn.id())
}

fn rooms(conn: &Connection) -> Result<Vec<String>, Rejection> {
    Ok(kv::get_json(&rooms_key(conn))?.unwrap_or_default())
}

fn join(conn: &Connection, room: &str) -> Result<(), Rejection> {
    if kv::get(&member_key(conn, room))?.is_none() {
        kv::set(&member_key(conn, room), "1")?;
        let mut joined = rooms(conn)?;
        joined.push(room.to_owned());
        kv::set_json(&rooms_key(conn), &joined)?;
    }
    Ok(())
}

fn leave(conn: &Connection, room: &str) -> Result<(), Rejection> {
    if kv::delete(&member_key(conn, room))? {
        let mut joined = rooms(conn)?;
        joined.retain(|r| r != room);
        kv::set_json(&rooms_key(conn), &joined)?;
    }
    Ok(())
}

fn signed_in(conn: &Connection) -> Result<&str, Rejection> {
    conn.subject()
        .ok_or_else(|| Rejection::new("unauthorized", "chat needs a signed-in user"))
}

fn room_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": { "room": { "type": "string", "minLength": 1, "maxLength": MAX_ROOM } },
        "required": ["room"]
    })
}

impl Plugin for Chat {
    fn manifest() -> Manifest {
        Manifest::new("chat", version())
            .description("Rooms, nicknames and messages for signed-in users")
            .event(EventSpec::incoming("join", "Join a room").schema(room_schema()))
            .event(EventSpec::incoming("leave", "Leave a room").schema(room_schema()))
            .event(
                EventSpec::incoming("nick", "Set this connection's nickname").schema(json!({
                    "type": "object",
                    "properties": { "name": { "type": "string", "minLength": 1, "maxLength": MAX_NICK } },
                    "required": ["name"]
                })),
            )
            .event(
                EventSpec::incoming("message", "Send a message to a joined room").schema(json!({
                    "type": "object",
                    "properties": {
                        "room": { "type": "string", "minLength": 1, "maxLength": MAX_ROOM },
                        "text": { "type": "string", "minLength": 1, "maxLength": DEFAULT_MAX_TEXT }
                    },
                    "required": ["room", "text"]
                })),
            )
            .event(
                EventSpec::incoming("who", "List the members of a room, on every node")
                    .schema(room_schema()),
            )
            .event(
                EventSpec::outgoing("message", "A message from another member of the room")
                    .schema(json!({
                        "type": "object",
                        "properties": {
                            "from": { "type": "string" },
                            "room": { "type": "string" },
                            "text": { "type": "string" }
                        },
                        "required": ["from", "room", "text"]
                    })),
            )
    }

    fn on_connect(conn: &Connection) -> Result<Actions, Rejection> {
        signed_in(conn)?;
        Ok(vec![])
    }

    fn on_event(conn: &Connection, event: &Event) -> Result<Actions, Rejection> {
        let subject = signed_in(conn)?;
        match event.name() {
            "join" => {
                let RoomArgs { room } = event.arg()?;
                check_len("room", &room, MAX_ROOM)?;
                join(conn, &room)?;
                Ok(vec![Action::join(room), ok()])
            }
            "leave" => {
                let RoomArgs { room } = event.arg()?;
                check_len("room", &room, MAX_ROOM)?;
                leave(conn, &room)?;
                Ok(vec![Action::leave(room), ok()])
            }
            "nick" => {
                let NickArgs { name } = event.arg()?;
                check_len("name", &name, MAX_NICK)?;
                kv::set(&nick_key(conn), &name)?;
                Ok(vec![ok()])
            }
            "message" => {
                let MessageArgs { room, text } = event.arg()?;
                check_len("room", &room, MAX_ROOM)?;
                let max_text = config::get_parsed_or("max_text", DEFAULT_MAX_TEXT)?;
                check_len("text", &text, max_text)?;
                if kv::get(&member_key(conn, &room))?.is_none() {
                    return Err(Rejection::new(
                        "not_member",
                        format!("join room `{room}` before sending to it"),
                    ));
                }
                let from = kv::get_string(&nick_key(conn))?.unwrap_or_else(|| subject.to_owned());
                let message = json!({ "from": from, "room": room, "text": text });
                Ok(vec![Action::publish(&room, "message", &message), ok()])
            }
            "who" => {
                let RoomArgs { room } = event.arg()?;
                check_len("room", &room, MAX_ROOM)?;
                let members = presence::list(&room)?;
                Ok(vec![Action::ack(
                    &json!({ "ok": true, "v": version(), "members": members }),
                )])
            }
            other => Err(Rejection::new(
                "unknown_event",
                format!("chat has no event `{other}`"),
            )),
        }
    }

    fn on_disconnect(conn: &Connection, _reason: &str) -> Actions {
        let cleanup = || -> Result<(), Rejection> {
            for room in rooms(conn)? {
                kv::delete(&member_key(conn, &room))?;
            }
            kv::delete(&rooms_key(conn))?;
            kv::delete(&nick_key(conn))?;
            Ok(())
        };
        if let Err(e) = cleanup() {
            log::warn(&format!("chat: cleanup of {} failed: {e}", conn.id()));
        }
        vec![]
    }

    fn on_subscribe(conn: &Connection, _channel: &str) -> Result<(), Rejection> {
        signed_in(conn).map(|_| ())
    }
}

portico_sdk::export!(Chat);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::TestHost;

    const V: &str = env!("CARGO_PKG_VERSION");

    fn ok_ack() -> serde_json::Value {
        json!({ "ok": true, "v": V })
    }

    #[test]
    fn connect_and_subscribe_need_a_subject() {
        let host = TestHost::<Chat>::new();
        let anon = host.anonymous();
        let err = host.connect(&anon).unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            ("unauthorized", "chat needs a signed-in user")
        );
        assert_eq!(
            host.subscribe(&anon, "lobby").unwrap_err().code(),
            "unauthorized"
        );
        let no_sub = host.principal(json!({ "role": "guest" }));
        assert!(host.connect(&no_sub).is_err());

        let alice = host.user("alice");
        assert_eq!(host.connect(&alice), Ok(vec![]));
        assert_eq!(host.subscribe(&alice, "lobby"), Ok(()));
    }

    #[test]
    fn join_message_leave() {
        let host = TestHost::<Chat>::new();
        let alice = host.user("alice");
        assert_eq!(
            host.event_with_ack(&alice, "join", json!({ "room": "a" })),
            Ok(vec![Action::join("a"), Action::ack(&ok_ack())])
        );
        assert_eq!(
            host.event_with_ack(&alice, "message", json!({ "room": "a", "text": "hi" })),
            Ok(vec![
                Action::publish(
                    "a",
                    "message",
                    &json!({ "from": "alice", "room": "a", "text": "hi" })
                ),
                Action::ack(&ok_ack()),
            ])
        );
        assert_eq!(
            host.event_with_ack(&alice, "leave", json!({ "room": "a" })),
            Ok(vec![Action::leave("a"), Action::ack(&ok_ack())])
        );
        assert_eq!(
            host.ack(&alice, "message", json!({ "room": "a", "text": "hi" }))["code"],
            json!("not_member")
        );
        assert!(host.kv_keys().iter().all(|k| !k.starts_with("member:")));
    }

    #[test]
    fn who_lists_the_members_of_a_room() {
        let host = TestHost::<Chat>::new();
        let (alice, bob) = (host.user("alice"), host.user("bob"));
        host.event_with_ack(&alice, "join", json!({ "room": "a" }))
            .unwrap();
        host.event_with_ack(&bob, "join", json!({ "room": "a" }))
            .unwrap();
        host.add_member(
            "a",
            portico_sdk::presence::Member {
                socket: "zz-remote".into(),
                subject: Some("carol".into()),
                node: "node-b".into(),
            },
        );
        let who = host.ack(&bob, "who", json!({ "room": "a" }));
        let subjects: Vec<_> = who["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["subject"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(subjects, ["alice", "bob", "carol"]);
        assert_eq!(who["members"][2]["node"], "node-b");
        assert_eq!(who["ok"], true);

        host.event_with_ack(&alice, "leave", json!({ "room": "a" }))
            .unwrap();
        host.disconnect(&bob, "transport close");
        let who = host.ack(&alice, "who", json!({ "room": "a" }));
        assert_eq!(who["members"].as_array().unwrap().len(), 1);
        assert_eq!(host.ack(&alice, "who", json!({}))["code"], "bad_request");
    }

    #[test]
    fn non_members_cannot_post() {
        let host = TestHost::<Chat>::new();
        let alice = host.user("alice");
        let bob = host.user("bob");
        host.ack(&alice, "join", json!({ "room": "a" }));
        let ack = host.ack(&bob, "message", json!({ "room": "a", "text": "let me in" }));
        assert_eq!(ack["ok"], json!(false));
        assert_eq!(ack["code"], json!("not_member"));
        assert_eq!(
            ack.as_object().unwrap().len(),
            3,
            "error acks are ok/code/message only: {ack}"
        );
    }

    #[test]
    fn nickname_is_used_and_forgotten_on_disconnect() {
        let host = TestHost::<Chat>::new();
        let alice = host.user("alice");
        assert_eq!(host.ack(&alice, "nick", json!({ "name": "Al" })), ok_ack());
        host.ack(&alice, "join", json!({ "room": "a" }));
        host.ack(&alice, "join", json!({ "room": "b" }));
        let actions = host
            .event(&alice, "message", json!({ "room": "b", "text": "yo" }))
            .unwrap();
        assert_eq!(
            actions[0],
            Action::publish(
                "b",
                "message",
                &json!({ "from": "Al", "room": "b", "text": "yo" })
            )
        );
        assert_eq!(host.kv_keys().len(), 4, "{:?}", host.kv_keys());
        assert_eq!(host.disconnect(&alice, "transport close"), vec![]);
        assert!(host.kv_keys().is_empty(), "{:?}", host.kv_keys());
    }

    #[test]
    fn state_is_per_connection() {
        let host = TestHost::<Chat>::new();
        let tab1 = host.user("alice");
        let tab2 = host.user("alice");
        host.ack(&tab1, "join", json!({ "room": "a" }));
        host.ack(&tab1, "nick", json!({ "name": "A1" }));
        assert_eq!(
            host.ack(&tab2, "message", json!({ "room": "a", "text": "x" }))["code"],
            json!("not_member")
        );
        host.ack(&tab2, "join", json!({ "room": "a" }));
        let actions = host
            .event(&tab2, "message", json!({ "room": "a", "text": "x" }))
            .unwrap();
        assert!(
            matches!(&actions[0], Action::Publish { data_json, .. } if data_json.contains(r#""from":"alice""#))
        );
        host.disconnect(&tab1, "gone");
        assert!(
            host.ack(&tab2, "message", json!({ "room": "a", "text": "x" }))["ok"] == json!(true)
        );
    }

    #[test]
    fn malformed_args_are_bad_requests() {
        let host = TestHost::<Chat>::new().with_config("max_text", "5");
        let alice = host.user("alice");
        host.ack(&alice, "join", json!({ "room": "a" }));
        for (event, args) in [
            ("join", json!({})),
            ("join", json!({ "room": "" })),
            ("join", json!({ "room": 7 })),
            ("join", json!("a")),
            ("leave", json!(null)),
            ("nick", json!({ "name": "" })),
            ("message", json!({ "room": "a" })),
            ("message", json!({ "room": "a", "text": 1 })),
            ("message", json!({ "room": "a", "text": "123456" })),
            ("message", json!({ "room": "", "text": "hi" })),
        ] {
            let ack = host.ack(&alice, event, args.clone());
            assert_eq!(ack["code"], json!("bad_request"), "{event} {args} -> {ack}");
        }
        assert_eq!(
            host.ack(&alice, "message", json!({ "room": "a", "text": "12345" }))["ok"],
            json!(true)
        );
        assert_eq!(
            host.ack(&alice, "shout", json!({}))["code"],
            json!("unknown_event")
        );
    }

    #[test]
    fn text_limit_defaults_to_2000_characters() {
        let host = TestHost::<Chat>::new();
        let alice = host.user("alice");
        host.ack(&alice, "join", json!({ "room": "a" }));
        let fits = "é".repeat(DEFAULT_MAX_TEXT);
        assert_eq!(
            host.ack(&alice, "message", json!({ "room": "a", "text": fits }))["ok"],
            json!(true)
        );
        let long = "x".repeat(DEFAULT_MAX_TEXT + 1);
        assert_eq!(
            host.ack(&alice, "message", json!({ "room": "a", "text": long }))["code"],
            json!("bad_request")
        );
    }

    #[test]
    fn version_can_be_overridden() {
        let host = TestHost::<Chat>::new();
        let alice = host.user("alice");
        assert_eq!(
            host.ack(&alice, "nick", json!({ "name": "a" }))["v"],
            json!(V)
        );
        host.set_config("version", "9.9.9");
        assert_eq!(
            host.ack(&alice, "nick", json!({ "name": "a" }))["v"],
            json!("9.9.9")
        );
        assert_eq!(host.manifest().version(), "9.9.9");
    }

    #[test]
    fn manifest_declares_events_with_schemas() {
        let m = TestHost::<Chat>::new().manifest();
        let names: Vec<_> = m
            .events()
            .iter()
            .map(|e| (e.name(), e.is_outgoing()))
            .collect();
        assert_eq!(
            names,
            [
                ("join", false),
                ("leave", false),
                ("nick", false),
                ("message", false),
                ("who", false),
                ("message", true)
            ]
        );
        assert!(m.events().iter().all(|e| e.schema_json().is_some()));
    }
}
