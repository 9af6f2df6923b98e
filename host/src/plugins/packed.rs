//! The buffers of `portico:plugin@0.3.0`'s `on-events`: the host writes the
//! events, the plugin writes the answers. The encoding is specified in
//! `wit/0.3.0/handler.wit`; the SDK holds the other half.
//!
//! A plugin's answer is untrusted input: every length is checked against
//! what is left, lists are preallocated a little at most and grow as their
//! items decode, the actions of one call are capped at [`MAX_ACTIONS`], and
//! anything that does not decode is an error, never a panic.

use bytes::Bytes;

use super::types::{Action, Event, Payload, Rejection, Text};
use super::version::Answer;

/// Actions one `on-events` answer may hold, all its events together. A
/// decoded action takes ~100 bytes of host memory for as few as 5 in the
/// buffer: without a cap a plugin's answer could make the host allocate ~20
/// times the plugin's own memory. A plugin that reaches many sockets
/// publishes to a channel (one action).
pub(super) const MAX_ACTIONS: usize = 100_000;

/// What a list is preallocated at most; longer ones grow as they decode.
const PREALLOCATED: usize = 64;

/// The fewest bytes an encoded action and an encoded attachment take.
const MIN_ACTION: usize = 5;
const MIN_ATTACHMENT: usize = 4;

/// The events of one call, as `on-events` takes them.
pub(super) fn encode_events(events: &[Event]) -> Vec<u8> {
    let size: usize = events
        .iter()
        .map(|e| {
            13 + e.name.len()
                + e.args.json_len()
                + e.binary.iter().map(|b| 4 + b.len()).sum::<usize>()
        })
        .sum();
    let mut out = Vec::with_capacity(4 + size);
    put_len(&mut out, events.len());
    for e in events {
        out.push(u8::from(e.wants_ack));
        put_bytes(&mut out, e.name.as_bytes());
        let args = e.args.text_after_bracket().as_bytes();
        put_len(&mut out, 1 + args.len());
        out.push(b'[');
        out.extend_from_slice(args);
        put_len(&mut out, e.binary.len());
        for b in &e.binary {
            put_bytes(&mut out, b);
        }
    }
    out
}

/// Why a plugin's answer buffer is not a valid answer; `at` is a byte offset in it.
#[derive(Debug, thiserror::Error)]
pub(super) enum AnswerError {
    #[error("{answers} answers for {events} events")]
    Count { answers: usize, events: usize },
    #[error("truncated: {wanted} bytes wanted at byte {at}")]
    Truncated { wanted: usize, at: usize },
    #[error("a count of {count} with fewer bytes left at byte {at}")]
    CountTooLarge { count: usize, at: usize },
    #[error("over {MAX_ACTIONS} actions in one answer at byte {at}")]
    TooManyActions { at: usize },
    #[error("unknown answer tag {tag} at byte {at}")]
    AnswerTag { tag: u8, at: usize },
    #[error("unknown action tag {tag} at byte {at}")]
    ActionTag { tag: u8, at: usize },
    #[error("{byte} is not a bool at byte {at}")]
    NotABool { byte: u8, at: usize },
    #[error("invalid UTF-8 in a string at byte {at}: {source}")]
    Utf8 {
        at: usize,
        source: std::str::Utf8Error,
    },
    #[error("{left} bytes after the last answer at byte {at}")]
    Trailing { left: usize, at: usize },
}

/// A plugin's answers to `events` events, or why they are not a valid answer.
/// An ack's or an emit's arguments stay in `buf`, shared, not copied.
pub(super) fn decode_answers(buf: Bytes, events: usize) -> Result<Vec<Answer>, AnswerError> {
    let mut r = Reader { buf: &buf, at: 0 };
    // Checked against the events (a host figure) first: it bounds the answers' allocation.
    let count = r.u32()?;
    if count != events {
        return Err(AnswerError::Count {
            answers: count,
            events,
        });
    }
    let mut answers = Vec::with_capacity(count);
    let mut total = 0;
    for _ in 0..count {
        answers.push(match r.u8()? {
            0 => {
                let n = r.count(MIN_ACTION)?;
                total += n;
                if total > MAX_ACTIONS {
                    return Err(AnswerError::TooManyActions { at: r.at - 4 });
                }
                let mut actions = Vec::with_capacity(n.min(PREALLOCATED));
                for _ in 0..n {
                    actions.push(r.action()?);
                }
                Ok(actions)
            }
            1 => Err(Rejection {
                code: r.string()?,
                message: r.string()?,
            }),
            tag => return Err(AnswerError::AnswerTag { tag, at: r.at - 1 }),
        });
    }
    if r.at != buf.len() {
        return Err(AnswerError::Trailing {
            left: buf.len() - r.at,
            at: r.at,
        });
    }
    Ok(answers)
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // A call's buffer is far below 4 GiB: the wire carries at most a few MB per event.
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

/// Reads the answers buffer front to back.
struct Reader<'a> {
    buf: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], AnswerError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(AnswerError::Truncated {
                wanted: n,
                at: self.at,
            })?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, AnswerError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<usize, AnswerError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    /// A list's length, each item taking at least `min` bytes: a count that
    /// what is left cannot hold is refused before anything is allocated.
    fn count(&mut self, min: usize) -> Result<usize, AnswerError> {
        let n = self.u32()?;
        if n > (self.buf.len() - self.at) / min {
            return Err(AnswerError::CountTooLarge {
                count: n,
                at: self.at - 4,
            });
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, AnswerError> {
        let n = self.u32()?;
        Ok(self.take(n)?.to_vec())
    }

    fn string(&mut self) -> Result<String, AnswerError> {
        let n = self.u32()?;
        let at = self.at;
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(source) => Err(AnswerError::Utf8 { at, source }),
        }
    }

    /// A string, shared with the buffer.
    fn text(&mut self) -> Result<Text, AnswerError> {
        let n = self.u32()?;
        let at = self.at;
        self.take(n)?;
        Text::from_utf8(self.buf.slice(at..at + n))
            .map_err(|source| AnswerError::Utf8 { at, source })
    }

    fn bool(&mut self) -> Result<bool, AnswerError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(AnswerError::NotABool {
                byte,
                at: self.at - 1,
            }),
        }
    }

    fn payload(&mut self) -> Result<Payload, AnswerError> {
        let args_json = self.text()?;
        let n = self.count(MIN_ATTACHMENT)?;
        let mut binary = Vec::with_capacity(n.min(PREALLOCATED));
        for _ in 0..n {
            binary.push(self.bytes()?);
        }
        Ok(Payload { args_json, binary })
    }

    fn action(&mut self) -> Result<Action, AnswerError> {
        Ok(match self.u8()? {
            0 => Action::Emit {
                event: self.string()?,
                payload: self.payload()?,
            },
            1 => Action::Ack(self.payload()?),
            2 => Action::Publish {
                channel: self.string()?,
                event: self.string()?,
                data_json: self.string()?,
                include_sender: self.bool()?,
            },
            3 => Action::SendTo {
                socket: self.string()?,
                event: self.string()?,
                payload: self.payload()?,
            },
            4 => Action::Join(self.string()?),
            5 => Action::Leave(self.string()?),
            6 => Action::Disconnect(self.string()?),
            tag => {
                return Err(AnswerError::ActionTag {
                    tag,
                    at: self.at - 1,
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, args: &str, binary: Vec<Vec<u8>>, wants_ack: bool) -> Event {
        Event::new(name, args, binary, wants_ack)
    }

    /// Writes answers the way the SDK does, so the decoder can be tested alone.
    #[derive(Default)]
    struct Writer(Vec<u8>);

    impl Writer {
        fn u8(mut self, b: u8) -> Self {
            self.0.push(b);
            self
        }
        fn u32(mut self, n: u32) -> Self {
            self.0.extend_from_slice(&n.to_le_bytes());
            self
        }
        fn str(self, s: &str) -> Self {
            self.bytes(s.as_bytes())
        }
        fn bytes(self, b: &[u8]) -> Self {
            let mut w = self.u32(b.len() as u32);
            w.0.extend_from_slice(b);
            w
        }
    }

    #[test]
    fn events_are_written_as_the_contract_says() {
        let buf = encode_events(&[
            event("a", "[1]", vec![], true),
            event("bé", "[]", vec![vec![7, 8], vec![]], false),
        ]);
        let expected = Writer::default()
            .u32(2)
            .u8(1)
            .str("a")
            .str("[1]")
            .u32(0)
            .u8(0)
            .str("bé")
            .str("[]")
            .u32(2)
            .bytes(&[7, 8])
            .bytes(&[])
            .0;
        assert_eq!(buf, expected);
        assert_eq!(buf.capacity(), buf.len(), "the size estimate is exact");
    }

    #[test]
    fn every_action_and_a_rejection_decode() {
        let buf = Writer::default()
            .u32(2)
            .u8(0)
            .u32(7)
            .u8(0)
            .str("e")
            .str("[1]")
            .u32(1)
            .bytes(&[9])
            .u8(1)
            .str("[2]")
            .u32(0)
            .u8(2)
            .str("room")
            .str("said")
            .str("{}")
            .u8(1)
            .u8(3)
            .str("s2")
            .str("dm")
            .str("[]")
            .u32(0)
            .u8(4)
            .str("j")
            .u8(5)
            .str("l")
            .u8(6)
            .str("bye")
            .u8(1)
            .str("not_member")
            .str("join first")
            .0;
        let answers = decode_answers(buf.into(), 2).unwrap();
        let payload = |args: &str, binary: Vec<Vec<u8>>| Payload {
            args_json: args.into(),
            binary,
        };
        assert_eq!(
            answers[0].as_ref().unwrap(),
            &[
                Action::Emit {
                    event: "e".into(),
                    payload: payload("[1]", vec![vec![9]]),
                },
                Action::Ack(payload("[2]", vec![])),
                Action::Publish {
                    channel: "room".into(),
                    event: "said".into(),
                    data_json: "{}".into(),
                    include_sender: true,
                },
                Action::SendTo {
                    socket: "s2".into(),
                    event: "dm".into(),
                    payload: payload("[]", vec![]),
                },
                Action::Join("j".into()),
                Action::Leave("l".into()),
                Action::Disconnect("bye".into()),
            ]
        );
        assert_eq!(
            answers[1].as_ref().unwrap_err(),
            &Rejection::new("not_member", "join first")
        );
    }

    #[test]
    fn a_malformed_answer_is_an_error_that_says_where() {
        let ack = |args: &str| Writer::default().u32(1).u8(0).u32(1).u8(1).str(args).u32(0);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "truncated: 4 bytes wanted at byte 0"),
            (Writer::default().u32(2).0, "2 answers for 1 events"),
            (
                Writer::default().u32(1).u8(2).0,
                "unknown answer tag 2 at byte 4",
            ),
            (
                Writer::default().u32(1).u8(0).u32(1).u8(7).u32(0).0,
                "unknown action tag 7 at byte 9",
            ),
            (
                ack("[1]").u8(0).0,
                "1 bytes after the last answer at byte 21",
            ),
            (
                Writer::default().u32(1).u8(0).u32(1).u8(1).u32(99).0,
                "truncated: 99 bytes wanted at byte 14",
            ),
            (
                Writer::default()
                    .u32(1)
                    .u8(0)
                    .u32(1)
                    .u8(1)
                    .bytes(&[0xff])
                    .u32(0)
                    .0,
                "invalid UTF-8 in a string at byte 14",
            ),
            (
                Writer::default().u32(1).u8(0).u32(u32::MAX).0,
                "a count of 4294967295 with fewer bytes left at byte 5",
            ),
            (
                Writer::default()
                    .u32(1)
                    .u8(0)
                    .u32(1)
                    .u8(2)
                    .str("c")
                    .str("e")
                    .str("1")
                    .u8(2)
                    .0,
                "2 is not a bool at byte 25",
            ),
        ];
        for (buf, expected) in cases {
            let err = decode_answers(buf.into(), 1).unwrap_err().to_string();
            assert!(
                err.starts_with(expected),
                "{err:?} should start with {expected:?}"
            );
        }
        // Counts are checked against the fewest bytes an item takes: 5 for an action.
        let mut nine = Writer::default().u32(1).u8(0).u32(2);
        nine.0.extend([4, 0, 0, 0, 0, 4, 0, 0, 0]);
        assert!(
            decode_answers(nine.0.into(), 1)
                .unwrap_err()
                .to_string()
                .starts_with("a count of 2 with fewer bytes left at byte 5")
        );
        // As many empty joins as the cap allows decode; one more is refused.
        let joins = |n: u32| {
            let mut w = Writer::default().u32(1).u8(0).u32(n);
            for _ in 0..n {
                w = w.u8(4).str("");
            }
            w.0
        };
        let cap = MAX_ACTIONS as u32;
        assert_eq!(
            decode_answers(joins(cap).into(), 1).unwrap()[0]
                .as_ref()
                .unwrap()
                .len(),
            MAX_ACTIONS
        );
        assert!(
            decode_answers(joins(cap + 1).into(), 1)
                .unwrap_err()
                .to_string()
                .starts_with("over 100000 actions in one answer at byte 5")
        );
        assert_eq!(
            decode_answers(ack("[1]").0.into(), 1).unwrap()[0]
                .as_ref()
                .unwrap(),
            &[Action::Ack(Payload {
                args_json: "[1]".into(),
                binary: vec![],
            })]
        );
    }
}
