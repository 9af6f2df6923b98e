//! `echo`: sends every event back to its sender, unchanged.
//!
//! An event that asks for an ack is acked with exactly its own arguments and binary
//! attachments; any other event is emitted back under the same name. An acked
//! [`EMIT_AND_ACK`] event gets both: emitted back, then acked (an answer in two packets,
//! the benchmarks' interactive scenario).

use portico_sdk::prelude::*;

/// The echo plugin.
pub struct Echo;

/// An acked event of this name is emitted back and then acked.
pub const EMIT_AND_ACK: &str = "emit-and-ack";

impl Plugin for Echo {
    fn manifest() -> Manifest {
        Manifest::new("echo", env!("CARGO_PKG_VERSION"))
            .description("Sends every event back to its sender: as the ack when one is asked for, else as the same event; an acked `emit-and-ack` both ways")
    }

    fn on_event(_conn: &Connection, event: &Event) -> Result<Actions, Rejection> {
        let emit = || Action::emit_payload(event.name(), event.payload());
        Ok(match (event.wants_ack(), event.name()) {
            (true, EMIT_AND_ACK) => vec![emit(), Action::ack_payload(event.payload())],
            (true, _) => vec![Action::ack_payload(event.payload())],
            (false, _) => vec![emit()],
        })
    }
}

portico_sdk::export!(Echo);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::TestHost;

    #[test]
    fn acks_with_the_same_args() {
        let host = TestHost::<Echo>::new();
        let alice = host.anonymous();
        let actions = host.event_with_ack(&alice, "anything", json!({ "a": [1, 2] }));
        assert_eq!(actions, Ok(vec![Action::ack(&json!({ "a": [1, 2] }))]));
    }

    #[test]
    fn acks_raw_args_and_binary_unchanged() {
        let host = TestHost::<Echo>::new();
        let alice = host.user("alice");
        let payload = Payload::from_raw(
            r#"["x",{"_placeholder":true,"num":0},{"b":1,"a":2}]"#,
            vec![vec![0, 159, 146, 150], vec![]],
        );
        let actions = host
            .send(
                &alice,
                Event::from_payload("file", payload.clone()).with_ack(),
            )
            .unwrap();
        let [Action::Ack(acked)] = actions.as_slice() else {
            panic!("expected one ack, got {actions:?}");
        };
        assert_eq!(acked.args_json(), payload.args_json(), "byte-for-byte");
        assert_eq!(acked.binary(), payload.binary());
    }

    #[test]
    fn emits_back_without_ack() {
        let host = TestHost::<Echo>::new();
        let alice = host.anonymous();
        let payload = Payload::with_binary(&Payload::placeholder(0), vec![vec![1, 2, 3]]);
        let actions = host.send(&alice, Event::from_payload("blob", payload.clone()));
        assert_eq!(actions, Ok(vec![Action::emit_payload("blob", payload)]));
    }

    #[test]
    fn emit_and_ack_answers_twice_in_order() {
        let host = TestHost::<Echo>::new();
        let alice = host.anonymous();
        let event = Event::new(EMIT_AND_ACK, &json!({ "n": 1 })).with_ack();
        let payload = event.payload();
        assert_eq!(
            host.send(&alice, event),
            Ok(vec![
                Action::emit_payload(EMIT_AND_ACK, payload.clone()),
                Action::ack_payload(payload),
            ])
        );
    }

    #[test]
    fn manifest_names_the_plugin() {
        let m = TestHost::<Echo>::new().manifest();
        assert_eq!((m.name(), m.version()), ("echo", env!("CARGO_PKG_VERSION")));
    }
}
