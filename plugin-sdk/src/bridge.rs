//! Between the generated bindings and the SDK types: conversions and the functions the
//! [`export!`](crate::export) macro calls. Nothing here is public API.

use crate::action::Action;
use crate::timers::Timer;
use crate::types::{Connection, Details, Manifest, Payload, Principal, Rejection, Transport};
use crate::wit::portico::plugin0_2_0::types as w;
use crate::{Plugin, rt};

pub use crate::wit::exports::portico::plugin0_3_0::handler::Guest;
pub use w::{
    Action as WitAction, Connection as WitConnection, Manifest as WitManifest,
    Rejection as WitRejection, TimerEvent as WitTimerEvent,
};

type WitResult = Result<Vec<WitAction>, WitRejection>;

/// `describe`, with the panic hook installed first: the plugin's manifest
/// plus the events its typed handlers declare.
pub fn describe<P: Plugin>() -> WitManifest {
    rt::init();
    crate::router::manifest_of::<P>().into()
}

/// `on-connect`: the one call that carries the whole record; it is cached
/// for the calls that follow (which carry the id only).
pub fn on_connect<P: Plugin>(conn: WitConnection) -> WitResult {
    rt::init();
    let conn: Connection = conn.into();
    crate::host::remember(&conn);
    lower_result(P::on_connect(&conn))
}

/// `on-events`: the events and their answers as 0.3.0's buffers ([`crate::packed`]),
/// one answer per event, in order.
pub fn on_events<P: Plugin>(conn: String, events: Vec<u8>) -> Vec<u8> {
    rt::init();
    let conn = crate::host::connection(conn);
    let mut events = crate::packed::Events::new(&events);
    let mut answers = crate::packed::Answers::new(events.count());
    while let Some(e) = events.next() {
        answers.push(P::on_event(&conn, e));
    }
    answers.into_bytes()
}

/// `on-disconnect`.
pub fn on_disconnect<P: Plugin>(conn: String, reason: String) -> Vec<WitAction> {
    rt::init();
    let conn = crate::host::connection(conn);
    let actions = P::on_disconnect(&conn, &reason);
    crate::host::forget(conn.id());
    lower_actions(actions)
}

/// `on-subscribe`.
pub fn on_subscribe<P: Plugin>(conn: WitConnection, channel: String) -> Result<(), WitRejection> {
    rt::init();
    P::on_subscribe(&conn.into(), &channel).map_err(Into::into)
}

/// `on-timer`.
pub fn on_timer<P: Plugin>(timer: WitTimerEvent) -> Vec<WitAction> {
    rt::init();
    let conn = timer.conn.map(crate::host::connection);
    let timer = Timer {
        id: timer.id,
        name: timer.name,
        data_json: timer.data_json,
    };
    lower_actions(P::on_timer(&timer, conn.as_ref()))
}

fn lower_result(result: Result<Vec<Action>, Rejection>) -> WitResult {
    result.map(lower_actions).map_err(Into::into)
}

fn lower_actions(actions: Vec<Action>) -> Vec<WitAction> {
    actions.into_iter().map(Into::into).collect()
}

impl From<w::Transport> for Transport {
    fn from(t: w::Transport) -> Self {
        match t {
            w::Transport::Websocket => Self::WebSocket,
            w::Transport::Polling => Self::Polling,
            w::Transport::Sse => Self::Sse,
        }
    }
}

impl From<w::Principal> for Principal {
    fn from(p: w::Principal) -> Self {
        Self {
            subject: p.subject,
            claims_json: p.claims_json,
        }
    }
}

impl From<WitConnection> for Connection {
    fn from(c: WitConnection) -> Self {
        Self::from_parts(
            c.id,
            details(
                c.namespace,
                c.transport,
                c.remote_addr,
                c.principal,
                c.query,
                c.auth_json,
            ),
        )
    }
}

/// The record's fields besides its id.
pub(crate) fn details(
    namespace: String,
    transport: w::Transport,
    remote_addr: Option<String>,
    principal: Option<w::Principal>,
    query: Vec<(String, String)>,
    auth_json: String,
) -> Details {
    Details {
        namespace,
        transport: transport.into(),
        remote_addr,
        principal: principal.map(Into::into),
        query,
        auth_json,
    }
}

impl From<Payload> for w::Payload {
    fn from(p: Payload) -> Self {
        Self {
            args_json: p.args_json,
            binary: p.binary,
        }
    }
}

impl From<Action> for WitAction {
    fn from(a: Action) -> Self {
        match a {
            Action::Emit { event, payload } => Self::Emit(w::Message {
                event,
                payload: payload.into(),
            }),
            Action::Ack(payload) => Self::Ack(payload.into()),
            Action::Publish {
                channel,
                event,
                data_json,
                include_sender,
            } => Self::Publish(w::Publication {
                channel,
                event,
                data_json,
                include_sender,
            }),
            Action::SendTo {
                socket,
                event,
                payload,
            } => Self::SendTo(w::Direct {
                socket,
                message: w::Message {
                    event,
                    payload: payload.into(),
                },
            }),
            Action::Join(channel) => Self::Join(channel),
            Action::Leave(channel) => Self::Leave(channel),
            Action::Disconnect(reason) => Self::Disconnect(reason),
        }
    }
}

impl From<Rejection> for WitRejection {
    fn from(r: Rejection) -> Self {
        Self {
            code: r.code,
            message: r.message,
        }
    }
}

impl From<Manifest> for WitManifest {
    fn from(m: Manifest) -> Self {
        Self {
            events: m
                .events
                .iter()
                .map(|e| w::EventSpec {
                    name: e.name.clone(),
                    description: e.description.clone(),
                    schema_json: e.schema_json(),
                })
                .collect(),
            name: m.name,
            version: m.version,
            description: m.description,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, EventSpec, Manifest};
    use serde_json::json;

    struct Probe;
    impl Plugin for Probe {
        fn manifest() -> Manifest {
            Manifest::new("probe", "9.9.9")
                .event(EventSpec::outgoing("out", "").schema(json!({ "type": "object" })))
        }
        fn on_event(conn: &Connection, event: &Event) -> Result<Vec<Action>, Rejection> {
            match event.name() {
                "fail" => Err(Rejection::new("nope", "no")),
                _ => Ok(vec![
                    Action::send_to(conn.subject().unwrap_or("?"), "x", &1),
                    Action::publish("c", "e", &json!({ "a": 1 })).include_sender(),
                    Action::ack_payload(event.payload()),
                ]),
            }
        }
    }

    fn wit_conn() -> WitConnection {
        WitConnection {
            id: "s1".into(),
            namespace: "/p".into(),
            transport: w::Transport::Sse,
            remote_addr: None,
            principal: Some(w::Principal {
                subject: Some("ann".into()),
                claims_json: r#"{"sub":"ann"}"#.into(),
            }),
            query: vec![("a".into(), "b".into())],
            auth_json: "{}".into(),
        }
    }

    #[test]
    fn calls_cross_the_generated_types_and_the_packed_buffers() {
        let m = describe::<Probe>();
        assert_eq!(
            m.events[0].schema_json.as_deref(),
            Some(r#"{"type":"object","x-portico-direction":"out"}"#)
        );
        on_connect::<Probe>(wit_conn()).unwrap();
        // Two events in one call, packed as the host packs them: `e` (acked, one
        // attachment) and `fail`.
        let mut events = Vec::new();
        events.extend(2u32.to_le_bytes());
        for (flags, name, args, binary) in [(1u8, "e", "[1]", &[7u8][..]), (0, "fail", "[]", &[])] {
            events.push(flags);
            for s in [name, args] {
                events.extend((s.len() as u32).to_le_bytes());
                events.extend(s.as_bytes());
            }
            let attachments = u32::from(!binary.is_empty());
            events.extend(attachments.to_le_bytes());
            if attachments == 1 {
                events.extend((binary.len() as u32).to_le_bytes());
                events.extend(binary);
            }
        }
        let mut expected = crate::packed::Answers::new(2);
        expected.push(Ok(vec![
            Action::send_to("ann", "x", &1),
            Action::publish("c", "e", &json!({ "a": 1 })).include_sender(),
            Action::Ack(Payload::from_raw("[1]", vec![vec![7]])),
        ]));
        expected.push(Err(Rejection::new("nope", "no")));
        assert_eq!(
            on_events::<Probe>("s1".into(), events),
            expected.into_bytes(),
            "the subject came from the record on-connect cached"
        );
        assert!(on_subscribe::<Probe>(wit_conn(), "c".into()).is_ok());
    }
}
