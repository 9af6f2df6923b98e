//! The one place that sees `bindgen!` output. Everything else in the host uses
//! the types in [`super::types`]; conversions live here.
//!
//! The host links every contract version in `wit/`: `portico:plugin@0.1.0`,
//! `@0.2.0` (both frozen) and `@0.3.0`. A component is served by the version
//! whose handler it exports; [`Instance`] hides which one from the callers.
//! 0.3.0 imports 0.2.0's interfaces and uses its types, so the two share
//! every generated type and import implementation (`with` below).

mod generated {
    pub mod v1 {
        wasmtime::component::bindgen!({
            world: "plugin",
            path: "../wit/0.1.0",
            // KV and presence may be backed by Redis: their calls await I/O. The rest are plain calls.
            imports: { "portico:plugin/kv": async, "portico:plugin/presence": async },
            exports: { default: async },
        });
    }
    pub mod v2 {
        wasmtime::component::bindgen!({
            world: "plugin",
            path: "../wit/0.2.0",
            // KV, presence and outbound HTTP await I/O; connections and timers are in memory.
            imports: {
                "portico:plugin/kv": async,
                "portico:plugin/presence": async,
                "portico:plugin/outbound": async,
            },
            exports: { default: async },
        });
    }
    pub mod v3 {
        wasmtime::component::bindgen!({
            world: "portico:plugin/plugin@0.3.0",
            path: "../wit/0.3.0",
            exports: { default: async },
            // Only the handler is new: everything else is 0.2.0's, already
            // generated (and linked) above.
            with: {
                "portico:plugin/types@0.2.0": super::v2::portico::plugin::types,
                "portico:plugin/host@0.2.0": super::v2::portico::plugin::host,
                "portico:plugin/kv@0.2.0": super::v2::portico::plugin::kv,
                "portico:plugin/config@0.2.0": super::v2::portico::plugin::config,
                "portico:plugin/presence@0.2.0": super::v2::portico::plugin::presence,
                "portico:plugin/connections@0.2.0": super::v2::portico::plugin::connections,
                "portico:plugin/timers@0.2.0": super::v2::portico::plugin::timers,
                "portico:plugin/outbound@0.2.0": super::v2::portico::plugin::outbound,
            },
        });
    }
}

use generated::{v1, v2, v3};
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre, Linker};

pub(super) use v1::portico::plugin::{
    config as config_v1, host as host_v1, kv as kv_v1, presence as presence_v1, types as types_v1,
};
pub(super) use v2::portico::plugin::{
    config, connections, host, kv, outbound, presence, timers, types as wit2,
};

use super::host_impl::HostState;
use super::packed;
use super::types::{
    Action, Connection, Event, EventSpec, Manifest, Payload, Principal, Rejection, TimerEvent,
    Transport,
};

/// Every contract version's imports, on one linker (0.3.0 has none of its own).
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    v1::Plugin::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    v2::Plugin::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    Ok(())
}

/// A compiled plugin, ready to instantiate, of either contract version.
pub(super) enum Pre {
    V1(v1::PluginPre<HostState>),
    V2(v2::PluginPre<HostState>),
    V3(v3::PluginPre<HostState>),
}

impl Pre {
    /// Pick the contract by the handler the component exports; one that
    /// exports several is served by the newest.
    pub(super) fn new(
        engine: &wasmtime::Engine,
        component: &Component,
        pre: InstancePre<HostState>,
    ) -> wasmtime::Result<Self> {
        let exports = |version: &str| {
            let name = format!("portico:plugin/handler@{version}");
            component
                .component_type()
                .exports(engine)
                .any(|(n, _)| n == name)
        };
        if exports("0.3.0") {
            Ok(Self::V3(v3::PluginPre::new(pre)?))
        } else if exports("0.2.0") {
            Ok(Self::V2(v2::PluginPre::new(pre)?))
        } else if exports("0.1.0") {
            Ok(Self::V1(v1::PluginPre::new(pre)?))
        } else {
            wasmtime::bail!(
                "exports no portico:plugin/handler of version 0.3.0, 0.2.0 or 0.1.0 (build it with portico-sdk)"
            )
        }
    }

    /// The contract version the plugin was built against.
    pub(super) fn contract(&self) -> &'static str {
        match self {
            Self::V1(_) => "0.1.0",
            Self::V2(_) => "0.2.0",
            Self::V3(_) => "0.3.0",
        }
    }

    pub(super) async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Instance> {
        Ok(match self {
            Self::V1(pre) => Instance::V1(pre.instantiate_async(store).await?),
            Self::V2(pre) => Instance::V2(pre.instantiate_async(store).await?),
            Self::V3(pre) => Instance::V3(pre.instantiate_async(store).await?),
        })
    }
}

/// One instance of a plugin, of either contract version.
pub(super) enum Instance {
    V1(v1::Plugin),
    V2(v2::Plugin),
    V3(v3::Plugin),
}

/// One call, by contract: `$v1` for a 0.1.0 instance (`$p` bound to it), `$later`
/// for 0.2.0 and 0.3.0 (`$h` bound to its handler), whose calls other than
/// `on-events` are the same.
macro_rules! per_contract {
    ($instance:expr, v1($p:ident) => $v1:expr, handler($h:ident) => $later:expr $(,)?) => {
        match $instance {
            Instance::V1($p) => $v1,
            Instance::V2(p) => {
                let $h = p.portico_plugin_handler();
                $later
            }
            Instance::V3(p) => {
                let $h = p.portico_plugin0_3_0_handler();
                $later
            }
        }
    };
}

type Answer = Result<Vec<Action>, Rejection>;

impl Instance {
    pub(super) async fn describe(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Manifest> {
        Ok(per_contract!(self,
            v1(p) => manifest1(p.portico_plugin_handler().call_describe(store).await?),
            handler(h) => manifest2(h.call_describe(store).await?),
        ))
    }

    pub(super) async fn on_connect(
        &self,
        store: &mut Store<HostState>,
        conn: &Connection,
    ) -> wasmtime::Result<Answer> {
        Ok(per_contract!(self,
            v1(p) => {
                let c = connection1(conn);
                let r = p.portico_plugin_handler().call_on_connect(store, &c).await?;
                r.map(actions1).map_err(rejection1)
            },
            handler(h) => {
                let r = h.call_on_connect(store, &connection2(conn)).await?;
                r.map(actions2).map_err(rejection2)
            },
        ))
    }

    /// Events of one connection in order; one answer per event. A 0.1.0
    /// plugin gets one `on-event` call per event (its contract has no list);
    /// a 0.3.0 plugin gets them in one buffer and answers in another.
    pub(super) async fn on_events(
        &self,
        store: &mut Store<HostState>,
        conn: &Connection,
        events: Vec<Event>,
    ) -> wasmtime::Result<Vec<Answer>> {
        match self {
            Self::V1(p) => {
                let c = connection1(conn);
                let mut answers = Vec::with_capacity(events.len());
                for e in events {
                    let e = event1(e);
                    let r = p
                        .portico_plugin_handler()
                        .call_on_event(&mut *store, &c, &e)
                        .await?;
                    answers.push(r.map(actions1).map_err(rejection1));
                }
                Ok(answers)
            }
            Self::V2(p) => {
                let events: Vec<_> = events.into_iter().map(event2).collect();
                let list = p
                    .portico_plugin_handler()
                    .call_on_events(store, &conn.id, &events)
                    .await?;
                if list.len() != events.len() {
                    wasmtime::bail!(
                        "on-events answered {} results for {} events",
                        list.len(),
                        events.len()
                    );
                }
                Ok(list
                    .into_iter()
                    .map(|r| r.map(actions2).map_err(rejection2))
                    .collect())
            }
            Self::V3(p) => {
                let buf = packed::encode_events(&events);
                let answers = p
                    .portico_plugin0_3_0_handler()
                    .call_on_events(store, &conn.id, &buf)
                    .await?;
                packed::decode_answers(answers.into(), events.len())
                    .map_err(|e| wasmtime::Error::msg(format!("on-events answer: {e}")))
            }
        }
    }

    pub(super) async fn on_disconnect(
        &self,
        store: &mut Store<HostState>,
        conn: &Connection,
        reason: &str,
    ) -> wasmtime::Result<Vec<Action>> {
        Ok(per_contract!(self,
            v1(p) => {
                let c = connection1(conn);
                let list = p.portico_plugin_handler().call_on_disconnect(store, &c, reason);
                actions1(list.await?)
            },
            handler(h) => actions2(h.call_on_disconnect(store, &conn.id, reason).await?),
        ))
    }

    pub(super) async fn on_subscribe(
        &self,
        store: &mut Store<HostState>,
        conn: &Connection,
        channel: &str,
    ) -> wasmtime::Result<Result<(), Rejection>> {
        Ok(per_contract!(self,
            v1(p) => {
                let c = connection1(conn);
                let r = p.portico_plugin_handler().call_on_subscribe(store, &c, channel);
                r.await?.map_err(rejection1)
            },
            handler(h) => {
                let c = connection2(conn);
                h.call_on_subscribe(store, &c, channel).await?.map_err(rejection2)
            },
        ))
    }

    /// `None` for a 0.1.0 plugin, which cannot have set a timer.
    pub(super) async fn on_timer(
        &self,
        store: &mut Store<HostState>,
        timer: &TimerEvent,
    ) -> wasmtime::Result<Option<Vec<Action>>> {
        Ok(per_contract!(self,
            v1(_p) => None,
            handler(h) => {
                let t = wit2::TimerEvent {
                    id: timer.id,
                    name: timer.name.clone(),
                    data_json: timer.data_json.clone(),
                    conn: timer.conn.clone(),
                };
                Some(actions2(h.call_on_timer(store, &t).await?))
            },
        ))
    }
}

/// Conversions between the host's types and one version's generated types.
/// The two versions' records are identical in shape, so one macro writes both.
macro_rules! conversions {
    ($w:ident, $connection:ident, $event:ident, $actions:ident, $rejection:ident, $manifest:ident) => {
        pub(super) fn $connection(c: &Connection) -> $w::Connection {
            use $w as w;
            w::Connection {
                id: c.id.clone(),
                namespace: c.namespace.clone(),
                transport: match c.transport {
                    Transport::WebSocket => w::Transport::Websocket,
                    Transport::Polling => w::Transport::Polling,
                    Transport::Sse => w::Transport::Sse,
                },
                remote_addr: c.remote_addr.clone(),
                principal: c.principal.as_ref().map(|p: &Principal| w::Principal {
                    subject: p.subject.clone(),
                    claims_json: p.claims_json.clone(),
                }),
                query: c.query.clone(),
                auth_json: c.auth_json.clone(),
            }
        }

        fn $event(e: Event) -> $w::Event {
            use $w as w;
            w::Event {
                name: e.name.into(),
                args_json: e.args.to_json(),
                binary: e.binary,
                wants_ack: e.wants_ack,
            }
        }

        fn $actions(list: Vec<$w::Action>) -> Vec<Action> {
            use $w as w;
            let payload = |p: w::Payload| Payload {
                args_json: p.args_json.into(),
                binary: p.binary,
            };
            list.into_iter()
                .map(|a| match a {
                    w::Action::Emit(m) => Action::Emit {
                        event: m.event,
                        payload: payload(m.payload),
                    },
                    w::Action::Ack(p) => Action::Ack(payload(p)),
                    w::Action::Publish(p) => Action::Publish {
                        channel: p.channel,
                        event: p.event,
                        data_json: p.data_json,
                        include_sender: p.include_sender,
                    },
                    w::Action::SendTo(d) => Action::SendTo {
                        socket: d.socket,
                        event: d.message.event,
                        payload: payload(d.message.payload),
                    },
                    w::Action::Join(c) => Action::Join(c),
                    w::Action::Leave(c) => Action::Leave(c),
                    w::Action::Disconnect(r) => Action::Disconnect(r),
                })
                .collect()
        }

        fn $rejection(r: $w::Rejection) -> Rejection {
            Rejection {
                code: r.code,
                message: r.message,
            }
        }

        fn $manifest(m: $w::Manifest) -> Manifest {
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
    };
}

use v1::portico::plugin::types as types1;
use v2::portico::plugin::types as types2;

conversions!(types1, connection1, event1, actions1, rejection1, manifest1);
conversions!(types2, connection2, event2, actions2, rejection2, manifest2);
