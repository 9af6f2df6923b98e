//! Typed handlers: one handler per event, with its payload type and its ack type.
//!
//! The SDK deserializes the event's (first) argument into the payload type (a malformed one
//! is answered with `bad_request` before the handler runs), serializes the ack, and derives
//! each event's JSON Schema from the types (with `schemars`) into the manifest, so AsyncAPI
//! documents the plugin with no hand-written schema.
//!
//! ```
//! use portico_sdk::prelude::*;
//!
//! #[derive(serde::Deserialize, JsonSchema)]
//! struct Greet { name: String }
//!
//! #[derive(serde::Serialize, JsonSchema)]
//! struct Greeting { ok: bool, text: String }
//!
//! struct Hello;
//! impl Plugin for Hello {
//!     fn manifest() -> Manifest { Manifest::new("hello", "1.0.0") }
//!     fn router() -> Router {
//!         Router::new().on("greet", "Say hello", |_conn, Greet { name }| {
//!             Ok(Reply::ack(Greeting { ok: true, text: format!("Hello, {name}!") }))
//!         })
//!     }
//! }
//!
//! let host = portico_sdk::testing::TestHost::<Hello>::new();
//! let ann = host.user("ann");
//! assert_eq!(host.ack(&ann, "greet", json!({ "name": "Bo" }))["text"], "Hello, Bo!");
//! assert_eq!(host.ack(&ann, "greet", json!({ "nom": "Bo" }))["code"], "bad_request");
//! let manifest = host.manifest();
//! assert_eq!(manifest.events()[0].schema_value().unwrap()["required"], json!(["name"]));
//! ```

use std::any::TypeId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Action, Actions, Connection, Event, EventSpec, Manifest, Plugin, Rejection};

/// What a typed handler answers: an optional ack (conventionally `{"ok": true, ...}`) and the
/// actions to perform before it.
///
/// ```
/// use portico_sdk::prelude::*;
/// let r: Reply<serde_json::Value> = Reply::ack(json!({ "ok": true })).with(Action::join("lobby"));
/// # let _ = r;
/// ```
#[derive(Debug, Clone)]
pub struct Reply<A> {
    ack: Option<A>,
    actions: Actions,
}

impl<A> Reply<A> {
    /// Acknowledge with `value`.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let r = Reply::ack(json!({ "ok": true }));
    /// # let _ = r;
    /// ```
    pub fn ack(value: A) -> Self {
        Self {
            ack: Some(value),
            actions: Actions::new(),
        }
    }

    /// No ack (the client asked for none, or gets an emit instead).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let r: Reply<()> = Reply::none().with(Action::emit("pong", &1));
    /// # let _ = r;
    /// ```
    pub fn none() -> Self {
        Self {
            ack: None,
            actions: Actions::new(),
        }
    }

    /// Adds an action, performed before the ack (in the order added).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let r = Reply::ack(json!({ "ok": true })).with(Action::leave("a")).with(Action::join("b"));
    /// # let _ = r;
    /// ```
    pub fn with(mut self, action: Action) -> Self {
        self.actions.push(action);
        self
    }
}

type Handle = Box<dyn Fn(&Connection, &Event) -> Result<Actions, Rejection>>;

struct Route {
    name: String,
    description: String,
    spec: fn(&str, &str) -> EventSpec,
    handle: Handle,
}

/// The typed handlers of a plugin, and the events it emits. Return one from
/// [`Plugin::router`]; the default [`Plugin::on_event`] dispatches to it.
///
/// ```
/// use portico_sdk::prelude::*;
/// #[derive(serde::Deserialize, JsonSchema)]
/// struct Room { room: String }
/// let router = Router::new()
///     .on("join", "Join a room", |_conn, Room { room }| {
///         Ok(Reply::ack(json!({ "ok": true })).with(Action::join(room)))
///     })
///     .emits::<Room>("joined", "Someone joined");
/// assert_eq!(router.specs().len(), 2);
/// ```
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
    emits: Vec<EventSpec>,
}

impl Router {
    /// No handlers.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// assert!(Router::new().specs().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Handle event `name`: its first argument deserializes into `T`, the handler's ack
    /// serializes from `A`. Both types' JSON Schemas go into the manifest (the ack's as the
    /// payload schema's `x-portico-ack`).
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let r = Router::new().on("ping", "Ping", |_, (): ()| Ok(Reply::ack(json!({ "ok": true }))));
    /// # let _ = r;
    /// ```
    pub fn on<T, A, F>(mut self, name: &str, description: &str, handler: F) -> Self
    where
        T: DeserializeOwned + JsonSchema + 'static,
        A: Serialize + JsonSchema + 'static,
        F: Fn(&Connection, T) -> Result<Reply<A>, Rejection> + 'static,
    {
        let handle = move |conn: &Connection, event: &Event| {
            let arg: T = event.arg()?;
            let Reply { ack, mut actions } = handler(conn, arg)?;
            if let Some(ack) = ack {
                actions.push(Action::ack(&ack));
            }
            Ok(actions)
        };
        self.routes.push(Route {
            name: name.to_owned(),
            description: description.to_owned(),
            spec: incoming_spec::<T, A>,
            handle: Box::new(handle),
        });
        self
    }

    /// Declare an event the plugin sends to clients, with its payload type.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let r = Router::new().emits::<String>("notice", "A notice");
    /// assert!(r.specs()[0].is_outgoing());
    /// ```
    pub fn emits<T: JsonSchema>(mut self, name: &str, description: &str) -> Self {
        self.emits
            .push(EventSpec::outgoing(name, description).schema(schema_of::<T>()));
        self
    }

    /// Run the handler of `event`; `unknown_event` if there is none.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let err = Router::new().dispatch(&Connection::new("c"), &Event::new("x", &1)).unwrap_err();
    /// assert_eq!(err.code(), "unknown_event");
    /// ```
    pub fn dispatch(&self, conn: &Connection, event: &Event) -> Result<Actions, Rejection> {
        match self.routes.iter().find(|r| r.name == event.name()) {
            Some(route) => (route.handle)(conn, event),
            None => Err(Rejection::new(
                "unknown_event",
                format!("no event `{}`", event.name()),
            )),
        }
    }

    /// The events handled and emitted, with their schemas.
    ///
    /// ```
    /// # use portico_sdk::prelude::*;
    /// let r = Router::new().on("e", "An event", |_, n: u32| Ok(Reply::ack(n)));
    /// assert_eq!(r.specs()[0].schema_value().unwrap()["type"], "integer");
    /// ```
    pub fn specs(&self) -> Vec<EventSpec> {
        let incoming = self
            .routes
            .iter()
            .map(|r| (r.spec)(&r.name, &r.description));
        incoming.chain(self.emits.iter().cloned()).collect()
    }
}

fn incoming_spec<T: JsonSchema, A: JsonSchema>(name: &str, description: &str) -> EventSpec {
    let mut schema = schema_of::<T>();
    if let Value::Object(map) = &mut schema {
        map.insert("x-portico-ack".into(), schema_of::<A>());
    }
    EventSpec::incoming(name, description).schema(schema)
}

/// `T`'s JSON Schema (draft 7, subschemas inlined: AsyncAPI resolves `$ref`s
/// against its own document, so the payload schema must stand alone).
pub(crate) fn schema_of<T: JsonSchema>() -> Value {
    let mut settings = schemars::generate::SchemaSettings::draft07();
    settings.inline_subschemas = true;
    let mut schema = settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    if let Value::Object(map) = &mut schema {
        map.remove("$schema");
    }
    schema
}

thread_local! {
    static ROUTERS: RefCell<HashMap<TypeId, Rc<Router>>> = RefCell::new(HashMap::new());
}

/// `P`'s router, built once per instance.
fn router_of<P: Plugin + 'static>() -> Rc<Router> {
    let key = TypeId::of::<P>();
    if let Some(r) = ROUTERS.with(|m| m.borrow().get(&key).cloned()) {
        return r;
    }
    let router = Rc::new(P::router());
    ROUTERS.with(|m| m.borrow_mut().insert(key, router.clone()));
    router
}

/// What the default [`Plugin::on_event`] does: dispatch to [`Plugin::router`].
pub(crate) fn dispatch<P: Plugin + 'static>(
    conn: &Connection,
    event: &Event,
) -> Result<Actions, Rejection> {
    router_of::<P>().dispatch(conn, event)
}

/// `P`'s manifest with the events of its router added (those it does not declare itself).
pub(crate) fn manifest_of<P: Plugin + 'static>() -> Manifest {
    let mut manifest = P::manifest();
    for spec in router_of::<P>().specs() {
        let declared = manifest
            .events
            .iter()
            .any(|e| e.name == spec.name && e.outgoing == spec.outgoing);
        if !declared {
            manifest.events.push(spec);
        }
    }
    manifest
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Move {
        x: i32,
        /// Optional label.
        label: Option<Inner>,
    }

    #[derive(Deserialize, Serialize, JsonSchema)]
    struct Inner {
        text: String,
    }

    #[derive(Serialize, JsonSchema)]
    struct Moved {
        ok: bool,
        x: i32,
    }

    fn router() -> Router {
        Router::new()
            .on("move", "Move", |_conn, m: Move| {
                if m.x < 0 {
                    return Err(Rejection::new("out_of_bounds", "x < 0"));
                }
                Ok(Reply::ack(Moved { ok: true, x: m.x }).with(Action::join("board")))
            })
            .emits::<Inner>("note", "A note")
    }

    #[test]
    fn dispatches_and_turns_malformed_payloads_into_bad_request() {
        let r = router();
        let c = Connection::new("c");
        let ok = r
            .dispatch(&c, &Event::new("move", &json!({ "x": 3 })).with_ack())
            .unwrap();
        assert_eq!(
            ok,
            vec![
                Action::join("board"),
                Action::ack(&json!({ "ok": true, "x": 3 }))
            ]
        );
        for bad in [
            json!({ "x": "3" }),
            json!({}),
            json!([1]),
            json!({ "x": 1, "label": 5 }),
        ] {
            let err = r.dispatch(&c, &Event::new("move", &bad)).unwrap_err();
            assert_eq!(err.code(), "bad_request", "{bad}");
        }
        let none = Event::from_payload("move", crate::Payload::empty());
        assert!(
            r.dispatch(&c, &none)
                .unwrap_err()
                .message()
                .contains("needs an argument")
        );
        assert_eq!(
            r.dispatch(&c, &Event::new("move", &json!({ "x": -1 })))
                .unwrap_err()
                .code(),
            "out_of_bounds"
        );
        assert_eq!(
            r.dispatch(&c, &Event::new("jump", &1)).unwrap_err().code(),
            "unknown_event"
        );
    }

    #[test]
    fn schemas_come_from_the_types_and_stand_alone() {
        let specs = router().specs();
        let incoming = specs[0].schema_value().unwrap();
        assert_eq!(incoming["type"], "object");
        assert_eq!(incoming["required"], json!(["x"]));
        assert_eq!(incoming["properties"]["x"]["type"], "integer");
        // The nested type is inlined, not a `$ref` into definitions AsyncAPI would not have.
        let text = incoming.to_string();
        assert!(
            !text.contains("$ref") && !text.contains("$schema"),
            "{text}"
        );
        assert_eq!(
            incoming["properties"]["label"]["description"],
            "Optional label."
        );
        assert_eq!(incoming["x-portico-ack"]["required"], json!(["ok", "x"]));
        assert!(specs[1].is_outgoing());
        assert_eq!(
            specs[1].schema_value().unwrap()["required"],
            json!(["text"])
        );
    }
}
