//! The one place that sees `bindgen!` output. Everything else in the host uses
//! the types in [`super::types`]; conversions live here.

mod generated {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit",
        // KV and presence may be backed by Redis: their calls await I/O. The rest are plain calls.
        imports: { "portico:plugin/kv": async, "portico:plugin/presence": async },
        exports: { default: async },
    });
}

pub(super) use generated::Plugin as PluginBindings;
pub(super) use generated::PluginPre as PluginBindingsPre;
pub(super) use generated::portico::plugin::{config, host, kv, presence, types as wit};

use super::types::{
    Action, Connection, Event, EventSpec, Manifest, Payload, Principal, Rejection, Transport,
};

impl From<Transport> for wit::Transport {
    fn from(t: Transport) -> Self {
        match t {
            Transport::WebSocket => Self::Websocket,
            Transport::Polling => Self::Polling,
            Transport::Sse => Self::Sse,
        }
    }
}

pub(super) fn connection(c: &Connection) -> wit::Connection {
    wit::Connection {
        id: c.id.clone(),
        namespace: c.namespace.clone(),
        transport: c.transport.into(),
        remote_addr: c.remote_addr.clone(),
        principal: c.principal.as_ref().map(|p: &Principal| wit::Principal {
            subject: p.subject.clone(),
            claims_json: p.claims_json.clone(),
        }),
        query: c.query.clone(),
        auth_json: c.auth_json.clone(),
    }
}

pub(super) fn event(e: Event) -> wit::Event {
    wit::Event {
        name: e.name,
        args_json: e.args_json,
        binary: e.binary,
        wants_ack: e.wants_ack,
    }
}

fn payload(p: wit::Payload) -> Payload {
    Payload {
        args_json: p.args_json,
        binary: p.binary,
    }
}

pub(super) fn actions(list: Vec<wit::Action>) -> Vec<Action> {
    list.into_iter()
        .map(|a| match a {
            wit::Action::Emit(m) => Action::Emit {
                event: m.event,
                payload: payload(m.payload),
            },
            wit::Action::Ack(p) => Action::Ack(payload(p)),
            wit::Action::Publish(p) => Action::Publish {
                channel: p.channel,
                event: p.event,
                data_json: p.data_json,
                include_sender: p.include_sender,
            },
            wit::Action::SendTo(d) => Action::SendTo {
                socket: d.socket,
                event: d.message.event,
                payload: payload(d.message.payload),
            },
            wit::Action::Join(c) => Action::Join(c),
            wit::Action::Leave(c) => Action::Leave(c),
            wit::Action::Disconnect(r) => Action::Disconnect(r),
        })
        .collect()
}

pub(super) fn rejection(r: wit::Rejection) -> Rejection {
    Rejection {
        code: r.code,
        message: r.message,
    }
}

pub(super) fn manifest(m: wit::Manifest) -> Manifest {
    Manifest {
        name: m.name,
        version: m.version,
        description: m.description,
        events: m
            .events
            .into_iter()
            .map(|e| EventSpec {
                name: e.name,
                description: e.description,
                schema_json: e.schema_json,
            })
            .collect(),
    }
}
