//! Between Socket.IO packets and plugin values: incoming events become
//! [`Event`]s with their args as JSON text; outgoing [`Payload`]s become
//! serializable argument lists with binary attachments restored.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, SerializeTuple, Serializer};
use serde_json::value::RawValue;

use socketioxide_core::Str;

use crate::plugins::{Event, JsonArray, Payload, Text};

/// Read an event packet (`["name", ...args]` plus attachments), in one pass:
/// the whole array is checked, and the name and the arguments are slices of
/// the packet (the arguments are its text after the name), nothing copied.
pub(super) fn read_event(
    packet: Str,
    binary: Vec<Vec<u8>>,
    wants_ack: bool,
) -> Result<Event, EventError> {
    let text = packet.as_str();
    let raw_name = first_of_array(text)
        .map_err(EventError::NotAnArray)?
        .ok_or(EventError::NoName)?
        .get();
    // `raw_name` is a slice of `text`: what follows it is `, arg, ...]` or `]`.
    let name_at = (raw_name.as_ptr() as usize)
        .checked_sub(text.as_ptr() as usize)
        .filter(|at| text.get(*at..at + raw_name.len()).is_some())
        .ok_or(EventError::NameOutsidePacket)?;
    let after_name = name_at + raw_name.len();
    let rest = &text[after_name..];
    let args = rest.trim_start().strip_prefix(',').map(|args| {
        let start = text.len() - args.len();
        start..start + args.trim_end().len()
    });
    let decoded = match raw_name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        // The common case: no escapes, the name is the text between the quotes.
        Some(plain) if !plain.contains('\\') => None,
        _ => {
            Some(serde_json::from_str::<String>(raw_name).map_err(|_| EventError::NameNotAString)?)
        }
    };
    let packet = Text::from(packet);
    let name = match decoded {
        Some(name) => name.into(),
        None => packet.slice(name_at + 1..after_name - 1),
    };
    let args = match args {
        Some(range) => JsonArray::after_bracket(packet.slice(range)),
        None => JsonArray::after_bracket(Text::from_static("]")),
    };
    Ok(Event {
        name,
        args,
        binary,
        wants_ack,
    })
}

/// Why an event packet cannot be read (the client gets it in a `bad_request` ack).
#[derive(Debug, thiserror::Error)]
pub(super) enum EventError {
    #[error("event is not a JSON array: {0}")]
    NotAnArray(serde_json::Error),
    #[error("event has no name")]
    NoName,
    #[error("event name is not part of the packet")]
    NameOutsidePacket,
    #[error("event name is not a string")]
    NameNotAString,
    #[error("unexpected binary packet")]
    Binary,
}

/// `text` checked to be one JSON array, without building its values; its
/// first element, raw and borrowed from `text`, if it has one.
fn first_of_array(text: &str) -> Result<Option<&RawValue>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let first = serde::Deserializer::deserialize_seq(&mut de, Split)?;
    de.end()?;
    Ok(first)
}

/// Visits an array: its first element raw, then the rest without building anything.
struct Split;

impl<'de> serde::de::Visitor<'de> for Split {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let name = seq.next_element::<&RawValue>()?;
        if name.is_some() {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        }
        Ok(name)
    }
}

/// A payload as Socket.IO arguments, borrowed from the plugin's answer.
/// Serialized as a tuple so socketioxide sends each element as its own
/// argument; placeholders become binary attachments again.
pub(super) enum Args<'a> {
    /// No attachments and no placeholders: each argument is passed through as raw JSON
    /// text, never parsed into a tree nor copied (the common case, and the hot path of
    /// every ack).
    Raw(Vec<&'a RawValue>),
    WithBinary {
        items: Vec<serde_json::Value>,
        binary: &'a [Vec<u8>],
    },
}

/// An ack's arguments, ready for socketioxide.
pub(super) enum AckArgs {
    /// The plugin's JSON array, checked and sent as it is: neither parsed into
    /// values nor serialized again (the common case, and the hot path of every ack).
    AsIs(socketioxide::handler::Value),
    /// Attachments or placeholders: sent through [`Args`].
    WithBinary(Payload),
}

impl AckArgs {
    pub(super) fn new(p: Payload) -> Result<Self, PayloadError> {
        let text = p.args_json.as_str();
        // Text around the brackets (spacing) would go out as well: `Args`
        // sends the same arguments without it.
        if !p.binary.is_empty()
            || !text.starts_with('[')
            || !text.ends_with(']')
            || mentions_placeholder(text)
        {
            return Ok(Self::WithBinary(p));
        }
        first_of_array(text).map_err(PayloadError::NotAnArray)?;
        Ok(Self::AsIs(socketioxide::handler::Value::Str(
            p.args_json.into_str(),
            None,
        )))
    }
}

/// Why a plugin's payload cannot be sent.
#[derive(Debug, thiserror::Error)]
pub(super) enum PayloadError {
    #[error("payload args are not a JSON array: {0}")]
    NotAnArray(serde_json::Error),
    #[error("placeholder {placeholder} has no attachment ({given} given)")]
    NoAttachment { placeholder: usize, given: usize },
    #[error("publication data is not JSON: {0}")]
    NotJson(serde_json::Error),
}

impl<'a> Args<'a> {
    pub(super) fn new(p: &'a Payload) -> Result<Self, PayloadError> {
        if p.binary.is_empty() && !mentions_placeholder(&p.args_json) {
            return serde_json::from_str(&p.args_json)
                .map(Self::Raw)
                .map_err(PayloadError::NotAnArray);
        }
        let items: Vec<serde_json::Value> =
            serde_json::from_str(&p.args_json).map_err(PayloadError::NotAnArray)?;
        if let Some(placeholder) = max_placeholder(&items)
            && placeholder >= p.binary.len()
        {
            return Err(PayloadError::NoAttachment {
                placeholder,
                given: p.binary.len(),
            });
        }
        Ok(Self::WithBinary {
            items,
            binary: &p.binary,
        })
    }
}

/// Whether the text may hold a `"_placeholder"` key (then it is parsed to find out).
fn mentions_placeholder(json: &str) -> bool {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"_placeholder\""));
    FINDER.find(json.as_bytes()).is_some()
}

fn max_placeholder(items: &[serde_json::Value]) -> Option<usize> {
    fn walk(v: &serde_json::Value, max: &mut Option<usize>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(n) = placeholder(m) {
                    *max = Some(max.map_or(n, |x: usize| x.max(n)));
                } else {
                    m.values().for_each(|v| walk(v, max));
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, max)),
            _ => {}
        }
    }
    let mut max = None;
    items.iter().for_each(|v| walk(v, &mut max));
    max
}

fn placeholder(m: &serde_json::Map<String, serde_json::Value>) -> Option<usize> {
    if m.len() == 2 && m.get("_placeholder") == Some(&serde_json::Value::Bool(true)) {
        m.get("num")?.as_u64().map(|n| n as usize)
    } else {
        None
    }
}

impl Serialize for Args<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Args::Raw(items) => {
                let mut t = s.serialize_tuple(items.len())?;
                for item in items {
                    t.serialize_element(item)?;
                }
                t.end()
            }
            Args::WithBinary { items, binary } => {
                let mut t = s.serialize_tuple(items.len())?;
                for item in items {
                    t.serialize_element(&WithBinary(item, binary))?;
                }
                t.end()
            }
        }
    }
}

/// A JSON value whose placeholders serialize as bytes.
struct WithBinary<'a>(&'a serde_json::Value, &'a [Vec<u8>]);

impl Serialize for WithBinary<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            serde_json::Value::Object(m) => match placeholder(m) {
                Some(n) => s.serialize_bytes(&self.1[n]),
                None => {
                    let mut map = s.serialize_map(Some(m.len()))?;
                    for (k, v) in m {
                        map.serialize_entry(k, &WithBinary(v, self.1))?;
                    }
                    map.end()
                }
            },
            serde_json::Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(&WithBinary(v, self.1))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// One JSON value sent as a single argument (publications).
pub(super) fn single(data_json: &str) -> Result<serde_json::Value, PayloadError> {
    serde_json::from_str(data_json).map_err(PayloadError::NotJson)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, wants_ack: bool) -> Result<Event, EventError> {
        read_event(Str::copy_from_slice(text), vec![], wants_ack)
    }

    #[test]
    fn event_args_are_split_from_the_name() {
        let e = read(r#"["message",{"room":"a"},2]"#, true).unwrap();
        assert_eq!(e.name, "message");
        assert_eq!(e.args.to_json(), r#"[{"room":"a"},2]"#);
        assert!(e.wants_ack);
        assert_eq!(read(r#"["ping"]"#, false).unwrap().args.to_json(), "[]");
        let why = |text: &str| read(text, false).unwrap_err().to_string();
        assert_eq!(why("[]"), "event has no name");
        assert_eq!(why("[1]"), "event name is not a string");
        assert_eq!(why(r#"[{"a":"b"}]"#), "event name is not a string");
        assert!(why(r#"{"a":1}"#).starts_with("event is not a JSON array"));
        assert!(why(r#"["a",{"b":}]"#).starts_with("event is not a JSON array"));
        assert!(why(r#"["a"] x"#).starts_with("event is not a JSON array"));
        assert!(why("").starts_with("event is not a JSON array"));
        // The arguments' text is kept as the client sent it, spacing included.
        let e = read(r#" [ "m" , {"a": [1, 2]} , 3 ] "#, false).unwrap();
        assert_eq!(
            (e.name.as_str(), e.args.to_json().as_str()),
            ("m", r#"[ {"a": [1, 2]} , 3 ]"#)
        );
        // An escaped name is decoded; the arguments stay as they came.
        let e = read(r#"["m\u00e9\"",[1,"]"]]"#, false).unwrap();
        assert_eq!(
            (e.name.as_str(), e.args.to_json().as_str()),
            ("mé\"", r#"[[1,"]"]]"#)
        );
        let e = read(r#"["é",{"ü":"ß"}]"#, false).unwrap();
        assert_eq!(
            (e.name.as_str(), e.args.to_json().as_str()),
            ("é", r#"[{"ü":"ß"}]"#)
        );
        assert_eq!(read(r#"[ "m" ]"#, false).unwrap().args.to_json(), "[]");
    }

    #[test]
    fn payload_placeholders_must_have_attachments() {
        let p = |json: &str, n| Payload {
            args_json: json.into(),
            binary: vec![vec![1]; n],
        };
        assert!(Args::new(&p(r#"[{"_placeholder":true,"num":0}]"#, 1)).is_ok());
        assert!(Args::new(&p(r#"[{"_placeholder":true,"num":1}]"#, 1)).is_err());
        assert!(Args::new(&p(r#"{"not":"an array"}"#, 0)).is_err());
        assert!(Args::new(&p(r#"[{"_placeholder":true,"num":0}]"#, 0)).is_err());
    }

    #[test]
    fn an_ack_goes_out_as_the_plugins_text_once_checked() {
        let p = |json: &str, n| Payload {
            args_json: json.into(),
            binary: vec![vec![1]; n],
        };
        let as_is = |json: &str| match AckArgs::new(p(json, 0)) {
            Ok(AckArgs::AsIs(socketioxide::handler::Value::Str(text, None))) => {
                Some(text.as_str().to_owned())
            }
            Ok(_) => None,
            Err(e) => panic!("{json}: {e}"),
        };
        // Byte for byte, spacing and number spelling included.
        let text = r#"[{"b":1,"a":[2, 3]}, "é\u00e9", 1.50]"#;
        assert_eq!(as_is(text).as_deref(), Some(text));
        assert_eq!(as_is("[]").as_deref(), Some("[]"));
        // Spacing around the array, a placeholder or attachments: through `Args`.
        assert_eq!(as_is(" [1]"), None);
        assert_eq!(as_is(r#"[{"_placeholder":true,"num":0}]"#), None);
        assert!(matches!(
            AckArgs::new(p("[1]", 1)),
            Ok(AckArgs::WithBinary(_))
        ));
        // Not one JSON array: refused, never sent.
        for bad in ["[1,]", "[1] [2]", "[[1]", "[}]", r#"["a"]]"#] {
            assert!(
                matches!(AckArgs::new(p(bad, 0)), Err(PayloadError::NotAnArray(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn plain_args_serialize_as_a_tuple_of_their_raw_text() {
        let payload = Payload {
            args_json: r#"[{"b":1,"a":[2, 3]}, "x", 1.50]"#.into(),
            binary: vec![],
        };
        let args = Args::new(&payload).unwrap();
        assert!(matches!(args, Args::Raw(_)));
        // Raw text is kept byte for byte (key order, spacing, number spelling).
        assert_eq!(
            serde_json::to_string(&args).unwrap(),
            r#"[{"b":1,"a":[2, 3]},"x",1.50]"#
        );
    }
}
