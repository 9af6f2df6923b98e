//! The buffers of `portico:plugin@0.3.0`'s `on-events`: the host writes the
//! events, the plugin writes the answers. The encoding is specified in
//! `wit/0.3.0/handler.wit`; the host holds the other half.

use crate::action::Action;
use crate::types::{Event, Payload, Rejection};

/// The events of one call, read one at a time into the same [`Event`]:
/// handlers only borrow it, so its strings keep their room from one event to
/// the next instead of being allocated for each. The host wrote the buffer,
/// so one that does not decode is a host bug: the call traps with the reason.
pub(crate) struct Events<'a> {
    r: Reader<'a>,
    left: usize,
    count: usize,
    event: Event,
}

impl<'a> Events<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        let mut r = Reader { buf, at: 0 };
        let count = r.u32();
        let event = Event {
            name: String::new(),
            payload: Payload {
                args_json: String::new(),
                binary: Vec::new(),
            },
            wants_ack: false,
        };
        Self {
            r,
            left: count,
            count,
            event,
        }
    }

    /// How many events the call carries.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The next event, or `None` after the last (then the whole buffer was read).
    pub(crate) fn next(&mut self) -> Option<&Event> {
        if self.left == 0 {
            assert_eq!(
                self.r.at,
                self.r.buf.len(),
                "on-events: bytes after the last event"
            );
            return None;
        }
        self.left -= 1;
        let e = &mut self.event;
        e.wants_ack = self.r.u8() & 1 == 1;
        self.r.string_into(&mut e.name);
        self.r.string_into(&mut e.payload.args_json);
        self.r.binary_into(&mut e.payload.binary);
        Some(&self.event)
    }
}

/// Answers, appended one event at a time.
pub(crate) struct Answers(Vec<u8>);

impl Answers {
    pub(crate) fn new(events: usize) -> Self {
        // Room for an ack of a short payload per event; the buffer grows if needed.
        let mut out = Vec::with_capacity(4 + events * 48);
        put_len(&mut out, events);
        Self(out)
    }

    pub(crate) fn push(&mut self, answer: Result<Vec<Action>, Rejection>) {
        let out = &mut self.0;
        match answer {
            Ok(actions) => {
                out.push(0);
                put_len(out, actions.len());
                for a in &actions {
                    put_action(out, a);
                }
            }
            Err(r) => {
                out.push(1);
                put_str(out, &r.code);
                put_str(out, &r.message);
            }
        }
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

fn put_action(out: &mut Vec<u8>, a: &Action) {
    match a {
        Action::Emit { event, payload } => {
            out.push(0);
            put_str(out, event);
            put_payload(out, payload);
        }
        Action::Ack(payload) => {
            out.push(1);
            put_payload(out, payload);
        }
        Action::Publish {
            channel,
            event,
            data_json,
            include_sender,
        } => {
            out.push(2);
            put_str(out, channel);
            put_str(out, event);
            put_str(out, data_json);
            out.push(u8::from(*include_sender));
        }
        Action::SendTo {
            socket,
            event,
            payload,
        } => {
            out.push(3);
            put_str(out, socket);
            put_str(out, event);
            put_payload(out, payload);
        }
        Action::Join(channel) => {
            out.push(4);
            put_str(out, channel);
        }
        Action::Leave(channel) => {
            out.push(5);
            put_str(out, channel);
        }
        Action::Disconnect(reason) => {
            out.push(6);
            put_str(out, reason);
        }
    }
}

fn put_payload(out: &mut Vec<u8>, p: &Payload) {
    put_str(out, &p.args_json);
    put_len(out, p.binary.len());
    for b in &p.binary {
        put_len(out, b.len());
        out.extend_from_slice(b);
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("on-events: an answer part over 4 GiB");
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    #[inline]
    fn take(&mut self, n: usize) -> &[u8] {
        match self.buf.get(self.at..).and_then(|rest| rest.get(..n)) {
            Some(bytes) => {
                self.at += n;
                bytes
            }
            None => truncated(self.at),
        }
    }

    #[inline]
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }

    #[inline]
    fn u32(&mut self) -> usize {
        let b = self.take(4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
    }

    #[inline]
    fn string_into(&mut self, s: &mut String) {
        let n = self.u32();
        let at = self.at;
        s.clear();
        match std::str::from_utf8(self.take(n)) {
            Ok(text) => s.push_str(text),
            Err(e) => panic!("on-events: invalid UTF-8 at byte {at}: {e}"),
        }
    }

    #[inline]
    fn binary_into(&mut self, list: &mut Vec<Vec<u8>>) {
        let n = self.u32();
        list.clear();
        for _ in 0..n {
            let len = self.u32();
            list.push(self.take(len).to_vec());
        }
    }
}

#[cold]
#[inline(never)]
fn truncated(at: usize) -> ! {
    panic!("on-events: events truncated at byte {at}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(n: u32) -> [u8; 4] {
        n.to_le_bytes()
    }

    #[test]
    fn events_decode_as_the_contract_says() {
        let mut buf = Vec::new();
        buf.extend(le(2));
        buf.push(1);
        buf.extend(le(1));
        buf.extend(b"a");
        buf.extend(le(3));
        buf.extend(b"[1]");
        buf.extend(le(0));
        buf.push(0);
        buf.extend(le(3));
        buf.extend("bé".as_bytes());
        buf.extend(le(2));
        buf.extend(b"[]");
        buf.extend(le(2));
        buf.extend(le(2));
        buf.extend([7, 8]);
        buf.extend(le(0));
        let mut events = Events::new(&buf);
        assert_eq!(events.count(), 2);
        let a = events.next().unwrap();
        assert_eq!((a.name(), a.args_json(), a.wants_ack()), ("a", "[1]", true));
        assert!(a.binary().is_empty());
        let b = events.next().unwrap();
        assert_eq!(
            (b.name(), b.args_json(), b.wants_ack()),
            ("bé", "[]", false)
        );
        assert_eq!(b.binary(), [vec![7, 8], vec![]]);
        assert!(events.next().is_none());
    }

    #[test]
    #[should_panic(expected = "on-events: events truncated at byte 9")]
    fn a_truncated_event_list_traps_with_where() {
        let mut buf = Vec::new();
        buf.extend(le(1));
        buf.push(0);
        buf.extend(le(5));
        Events::new(&buf).next();
    }

    #[test]
    fn answers_encode_as_the_contract_says() {
        let mut answers = Answers::new(2);
        answers.push(Ok(vec![
            Action::Ack(Payload::from_raw("[1]", vec![vec![9]])),
            Action::Publish {
                channel: "c".into(),
                event: "e".into(),
                data_json: "{}".into(),
                include_sender: true,
            },
            Action::Join("j".into()),
        ]));
        answers.push(Err(Rejection::new("no", "never")));
        let mut expected = Vec::new();
        expected.extend(le(2));
        expected.push(0);
        expected.extend(le(3));
        expected.push(1);
        expected.extend(le(3));
        expected.extend(b"[1]");
        expected.extend(le(1));
        expected.extend(le(1));
        expected.push(9);
        expected.push(2);
        for s in ["c", "e", "{}"] {
            expected.extend(le(s.len() as u32));
            expected.extend(s.as_bytes());
        }
        expected.push(1);
        expected.push(4);
        expected.extend(le(1));
        expected.extend(b"j");
        expected.push(1);
        expected.extend(le(2));
        expected.extend(b"no");
        expected.extend(le(5));
        expected.extend(b"never");
        assert_eq!(answers.into_bytes(), expected);
    }
}
