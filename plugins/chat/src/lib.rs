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
//! Each event is a typed handler: the payload and ack types below give the manifest's JSON
//! Schemas (and so AsyncAPI). A connection's nickname and rooms are its connection state
//! (`state`), which the host drops when it disconnects: no cleanup code.

use portico_sdk::prelude::*;
use portico_sdk::presence::Member;
use serde::{Deserialize, Serialize};

/// The chat plugin.
pub struct Chat;

/// Default for config `max_text`, in characters.
pub const DEFAULT_MAX_TEXT: usize = 2000;
const MAX_ROOM: usize = 128;
const MAX_NICK: usize = 64;

/// `join`, `leave`, `who`.
#[derive(Deserialize, JsonSchema)]
struct RoomArgs {
    #[schemars(length(min = 1, max = 128))]
    room: String,
}

/// `nick`.
#[derive(Deserialize, JsonSchema)]
struct NickArgs {
    #[schemars(length(min = 1, max = 64))]
    name: String,
}

/// `message`.
#[derive(Deserialize, JsonSchema)]
struct MessageArgs {
    #[schemars(length(min = 1, max = 128))]
    room: String,
    /// At most config `max_text` characters (default 2000).
    #[schemars(length(min = 1, max = 2000))]
    text: String,
}

/// The ack of `join`, `leave`, `nick` and `message`.
#[derive(Serialize, JsonSchema)]
struct Done {
    ok: bool,
    /// The plugin version that answered.
    v: String,
}

/// The ack of `who`.
#[derive(Serialize, JsonSchema)]
struct Members {
    ok: bool,
    v: String,
    members: Vec<Member>,
}

/// What the other members of the room receive.
#[derive(Serialize, JsonSchema)]
struct Message {
    from: String,
    room: String,
    text: String,
}

fn version() -> String {
    config::get_or("version", env!("CARGO_PKG_VERSION"))
}

fn done() -> Done {
    Done {
        ok: true,
        v: version(),
    }
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

/// The rooms this connection joined (its connection state).
fn rooms(conn: &Connection) -> Result<Vec<String>, Rejection> {
    Ok(state::get_json(conn, "rooms")?.unwrap_or_default())
}

fn signed_in(conn: &Connection) -> Result<&str, Rejection> {
    conn.subject()
        .ok_or_else(|| Rejection::new("unauthorized", "chat needs a signed-in user"))
}

fn room(conn: &Connection, RoomArgs { room }: RoomArgs) -> Result<String, Rejection> {
    signed_in(conn)?;
    check_len("room", &room, MAX_ROOM)?;
    Ok(room)
}

fn join(conn: &Connection, args: RoomArgs) -> Result<Reply<Done>, Rejection> {
    let room = room(conn, args)?;
    let mut joined = rooms(conn)?;
    if !joined.contains(&room) {
        joined.push(room.clone());
        state::set_json(conn, "rooms", &joined)?;
    }
    Ok(Reply::ack(done()).with(Action::join(room)))
}

fn leave(conn: &Connection, args: RoomArgs) -> Result<Reply<Done>, Rejection> {
    let room = room(conn, args)?;
    let mut joined = rooms(conn)?;
    if joined.contains(&room) {
        joined.retain(|r| *r != room);
        state::set_json(conn, "rooms", &joined)?;
    }
    Ok(Reply::ack(done()).with(Action::leave(room)))
}

fn nick(conn: &Connection, NickArgs { name }: NickArgs) -> Result<Reply<Done>, Rejection> {
    signed_in(conn)?;
    check_len("name", &name, MAX_NICK)?;
    state::set(conn, "nick", &name)?;
    Ok(Reply::ack(done()))
}

fn message(conn: &Connection, args: MessageArgs) -> Result<Reply<Done>, Rejection> {
    let subject = signed_in(conn)?;
    let MessageArgs { room, text } = args;
    check_len("room", &room, MAX_ROOM)?;
    let max_text = config::get_parsed_or("max_text", DEFAULT_MAX_TEXT)?;
    check_len("text", &text, max_text)?;
    if !rooms(conn)?.contains(&room) {
        return Err(Rejection::new(
            "not_member",
            format!("join room `{room}` before sending to it"),
        ));
    }
    let from = state::get_string(conn, "nick")?.unwrap_or_else(|| subject.to_owned());
    let message = Message {
        from,
        room: room.clone(),
        text,
    };
    Ok(Reply::ack(done()).with(Action::publish(&room, "message", &message)))
}

fn who(conn: &Connection, args: RoomArgs) -> Result<Reply<Members>, Rejection> {
    let room = room(conn, args)?;
    let members = presence::list(&room)?;
    Ok(Reply::ack(Members {
        ok: true,
        v: version(),
        members,
    }))
}

impl Plugin for Chat {
    fn manifest() -> Manifest {
        Manifest::new("chat", version())
            .description("Rooms, nicknames and messages for signed-in users")
    }

    fn router() -> Router {
        Router::new()
            .on("join", "Join a room", join)
            .on("leave", "Leave a room", leave)
            .on("nick", "Set this connection's nickname", nick)
            .on("message", "Send a message to a joined room", message)
            .on("who", "List the members of a room, on every node", who)
            .emits::<Message>("message", "A message from another member of the room")
    }

    fn on_connect(conn: &Connection) -> Result<Actions, Rejection> {
        signed_in(conn)?;
        Ok(vec![])
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
        assert_eq!(host.state_keys(&alice), ["rooms"]);
        assert!(
            host.kv_keys().is_empty(),
            "chat keeps no KV: {:?}",
            host.kv_keys()
        );
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
        assert_eq!(host.state_keys(&alice), ["nick", "rooms"]);
        assert_eq!(host.disconnect(&alice, "transport close"), vec![]);
        // The host dropped the connection's state; chat had nothing to clean up.
        assert!(host.state_keys(&alice).is_empty());
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
    fn schemas_come_from_the_types() {
        let m = TestHost::<Chat>::new().manifest();
        let schema = |name: &str, outgoing: bool| {
            m.events()
                .iter()
                .find(|e| e.name() == name && e.is_outgoing() == outgoing)
                .and_then(|e| e.schema_value().cloned())
                .unwrap_or_else(|| panic!("no schema for {name}"))
        };
        let message = schema("message", false);
        assert_eq!(message["type"], "object");
        assert_eq!(message["required"], json!(["room", "text"]));
        assert_eq!(message["properties"]["room"]["maxLength"], MAX_ROOM);
        assert_eq!(message["properties"]["text"]["maxLength"], DEFAULT_MAX_TEXT);
        assert_eq!(message["x-portico-ack"]["required"], json!(["ok", "v"]));
        let who = schema("who", false);
        let member = &who["x-portico-ack"]["properties"]["members"]["items"];
        assert_eq!(member["required"], json!(["socket", "node"]));
        assert_eq!(
            schema("message", true)["required"],
            json!(["from", "room", "text"])
        );
        assert_eq!(
            schema("nick", false)["properties"]["name"]["maxLength"],
            MAX_NICK
        );
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
