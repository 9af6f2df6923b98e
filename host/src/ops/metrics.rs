//! `/metrics` in the Prometheus text format (`prometheus-client`).
//!
//! Two kinds of numbers. What only the gateway sees (events, acks, drops,
//! auth failures) are counters whose handles each namespace caches in its
//! `Mount`, so the per-event cost is one relaxed atomic add. Everything that
//! already lives somewhere (plugin counters, connections, SSE subscribers,
//! cross-node stats) is read at scrape time by [`Snapshot`], a collector, and
//! costs nothing between scrapes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry as Prom;

use crate::channels::Hub;
use crate::gateway::{AdapterDriver, Io};
use crate::plugins::{PluginVersion, Registry};
use crate::state::AppState;

type Labels = Vec<(&'static str, String)>;

/// Bounds of the plugin call-time histogram, in seconds: 10 µs to 1 s.
const CALL_BUCKETS: [f64; 11] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025, 0.1, 1.0,
];

/// The node's metrics registry.
pub struct Metrics {
    prom: Prom,
    events_in: Family<Labels, Counter>,
    events_out: Family<Labels, Counter>,
    acks: Family<Labels, Counter>,
    rate_limited: Family<Labels, Counter>,
    dropped: Family<Labels, Counter>,
    send_waits: Family<Labels, Counter>,
    auth_failures: Family<Labels, Counter>,
    recovered: Family<Labels, Counter>,
    overloaded: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
}

/// Counter handles of one namespace, cached by its mount.
#[derive(Clone, Default)]
pub struct NsMetrics {
    pub events_in: Counter,
    pub events_out: Counter,
    pub acks_ok: Counter,
    pub acks_error: Counter,
    pub rate_limited: Counter,
    /// Packets socketioxide refused because the socket's buffer was full.
    pub dropped: Counter,
    /// Answers that waited for room in their socket's send buffer.
    pub send_waits: Counter,
    /// Sockets that reconnected with their session restored.
    pub recovered: Counter,
    /// Publications refused with `overloaded` (the outbox to Redis was full).
    pub overloaded: Counter,
}

/// What the scrape-time collector reads.
pub struct Sources {
    pub registry: Arc<Registry>,
    pub hub: Arc<Hub>,
    pub io: Io,
    pub cluster: AdapterDriver,
    pub upstream: Option<Arc<dyn super::Upstream>>,
}

impl Metrics {
    pub fn new(sources: Sources) -> Self {
        let mut prom = Prom::with_prefix("portico");
        let events_in = Family::<Labels, Counter>::default();
        let events_out = Family::<Labels, Counter>::default();
        let acks = Family::<Labels, Counter>::default();
        let rate_limited = Family::<Labels, Counter>::default();
        let dropped = Family::<Labels, Counter>::default();
        let send_waits = Family::<Labels, Counter>::default();
        let auth_failures = Family::<Labels, Counter>::default();
        let recovered = Family::<Labels, Counter>::default();
        let overloaded = Family::<Labels, Counter>::default();
        prom.register(
            "publish_overloaded",
            "Socket.IO publications refused with the error ack `overloaded` (outbox to Redis full)",
            overloaded.clone(),
        );
        prom.register(
            "recovered_sessions",
            "Socket.IO reconnects whose session was restored (connection state recovery)",
            recovered.clone(),
        );
        let refused = Family::<Labels, Counter>::default();
        prom.register(
            "refused",
            "Connections, sessions, streams and calls refused or closed by a limit, by limit (README: Hardening)",
            refused.clone(),
        );
        prom.register(
            "events_in",
            "Socket.IO events received from clients",
            events_in.clone(),
        );
        prom.register(
            "events_out",
            "Socket.IO events sent: emits, send-tos and channel publishes from plugins or the publish API (one per publish)",
            events_out.clone(),
        );
        prom.register("acks", "Acks sent to clients, by result", acks.clone());
        prom.register(
            "rate_limited_events",
            "Events refused by the per-socket rate limit",
            rate_limited.clone(),
        );
        prom.register(
            "dropped_packets",
            "Packets dropped because a socket's send buffer was full (slow consumer)",
            dropped.clone(),
        );
        prom.register(
            "send_waits",
            "Answers (acks, emits) that waited for room in their socket's send buffer: a client reading slower than it sends",
            send_waits.clone(),
        );
        prom.register(
            "auth_failures",
            "Refused credentials, by transport (socketio, sse) and error code",
            auth_failures.clone(),
        );
        prom.register_collector(Box::new(Snapshot(sources)));
        Self {
            prom,
            events_in,
            events_out,
            acks,
            rate_limited,
            dropped,
            send_waits,
            auth_failures,
            recovered,
            overloaded,
            refused,
        }
    }

    /// The counter of what limit `limit` refused (look it up once, keep the handle).
    pub fn limit(&self, limit: &'static str) -> Counter {
        self.refused
            .get_or_create_owned(&vec![("limit", limit.to_owned())])
    }

    /// The counters of namespace `ns`: look them up once, then clone the handles.
    pub fn namespace(&self, ns: &str) -> NsMetrics {
        let l = |extra: Option<(&'static str, &str)>| {
            let mut l: Labels = vec![("namespace", ns.to_owned())];
            l.extend(extra.map(|(k, v)| (k, v.to_owned())));
            l
        };
        NsMetrics {
            events_in: self.events_in.get_or_create_owned(&l(None)),
            events_out: self.events_out.get_or_create_owned(&l(None)),
            acks_ok: self.acks.get_or_create_owned(&l(Some(("result", "ok")))),
            acks_error: self.acks.get_or_create_owned(&l(Some(("result", "error")))),
            rate_limited: self.rate_limited.get_or_create_owned(&l(None)),
            dropped: self.dropped.get_or_create_owned(&l(None)),
            send_waits: self.send_waits.get_or_create_owned(&l(None)),
            recovered: self.recovered.get_or_create_owned(&l(None)),
            overloaded: self.overloaded.get_or_create_owned(&l(None)),
        }
    }

    /// Count refused credentials (rare: the label lookup is fine here).
    pub fn auth_failure(&self, transport: &'static str, code: &'static str) {
        self.auth_failures
            .get_or_create(&vec![
                ("transport", transport.to_owned()),
                ("code", code.to_owned()),
            ])
            .inc();
    }

    /// The whole registry as Prometheus text (format 0.0.4).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.prom)?;
        Ok(out)
    }
}

/// `GET /metrics`.
pub async fn handler(State(state): State<AppState>) -> impl IntoResponse {
    match state.metrics.encode() {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "cannot encode metrics".to_owned(),
        ),
    }
}

/// Reads the numbers that already exist elsewhere, at each scrape.
struct Snapshot(Sources);

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshot")
    }
}

/// One metric family written by hand from (labels, value) rows.
fn family<M: EncodeMetric + TypedMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, M)],
) -> std::fmt::Result {
    let mut e = enc.encode_descriptor(name, help, None, M::TYPE)?;
    for (labels, metric) in rows {
        metric.encode(e.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: i64) -> ConstGauge<i64> {
    ConstGauge::new(v)
}

/// The versions of a plugin that take calls now: the active one, and a canary.
fn live_versions(slot: &crate::plugins::PluginSlot) -> Vec<(&'static str, Arc<PluginVersion>)> {
    let mut v = vec![("active", slot.active())];
    if let Some(c) = slot.canary() {
        v.push(("canary", c.version.clone()));
    }
    v
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        let slots = s.registry.list();

        family(
            &mut enc,
            "plugin_compile_timeouts",
            "Plugin compiles given up at runtime.compile_timeout_ms (the upload or load failed, nothing changed)",
            &[(Vec::new(), counter(s.registry.compile_timeouts()))],
        )?;
        let conns = connection_gauges(&s.io, &slots);
        family(
            &mut enc,
            "connections",
            "Open Socket.IO connections on this node",
            &conns,
        )?;

        self.channels(&mut enc)?;
        self.plugins(&mut enc, &slots)?;
        capabilities(&mut enc, &slots)?;
        let kv_refused: Vec<_> = slots
            .iter()
            .flat_map(|slot| {
                let refused = s.registry.kv().refused(&slot.name);
                refused.counts().map(|(limit, n)| {
                    (
                        vec![("plugin", slot.name.clone()), ("limit", limit.to_owned())],
                        counter(n),
                    )
                })
            })
            .collect();
        family(
            &mut enc,
            "plugin_kv_refused",
            "KV writes refused by a limit: keys (runtime.kv_max_keys), bytes (runtime.kv_max_bytes), size (key or value too large)",
            &kv_refused,
        )?;

        self.cluster(&mut enc)
    }
}

impl Snapshot {
    /// SSE streams, cut-offs and slow-consumer disconnects, per plugin.
    fn channels(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let spaces = self.0.hub.spaces();
        let streams: Vec<_> = spaces
            .iter()
            .map(|sp| {
                (
                    vec![("plugin", sp.plugin().to_owned())],
                    gauge(sp.subscriber_count() as i64),
                )
            })
            .collect();
        family(enc, "sse_streams", "Open SSE streams", &streams)?;
        let cut: Vec<_> = spaces
            .iter()
            .map(|sp| {
                (
                    vec![("plugin", sp.plugin().to_owned())],
                    counter(sp.cut_off.load(Ordering::Relaxed)),
                )
            })
            .collect();
        family(
            enc,
            "sse_cut_off",
            "SSE streams ended because the reader fell too far behind",
            &cut,
        )?;
        // One rule for both transports: a full buffer ends the connection
        // with reason `slow_consumer`, and the client resumes from history.
        let slow: Vec<_> = spaces
            .iter()
            .flat_map(|sp| {
                let plugin = sp.plugin().to_owned();
                [
                    ("socketio", sp.slow_sockets.load(Ordering::Relaxed)),
                    ("sse", sp.cut_off.load(Ordering::Relaxed)),
                ]
                .map(|(t, n)| {
                    (
                        vec![("plugin", plugin.clone()), ("transport", t.to_owned())],
                        counter(n),
                    )
                })
            })
            .collect();
        family(
            enc,
            "slow_consumer_disconnects",
            "Connections ended with reason slow_consumer because their send buffer was full",
            &slow,
        )?;

        Ok(())
    }

    /// The cross-node paths and the shared backend (cluster mode).
    fn cluster(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        // Publications reach other nodes through the channels' shared log.
        let log = s.hub.log_stats().unwrap_or_default();
        if let Some(d) = s.cluster.stats() {
            family(
                enc,
                "cluster_published",
                "Messages published to other nodes",
                &[(vec![], counter(d.published + log.published))],
            )?;
            family(
                enc,
                "cluster_dropped",
                "Cross-node messages lost (outbox full or Redis unreachable)",
                &[(vec![], counter(d.dropped))],
            )?;
            family(
                enc,
                "cluster_overloaded",
                "Publications refused (error `overloaded`) because the outbox to Redis was full",
                &[(vec![], counter(log.overloaded))],
            )?;
            family(
                enc,
                "cluster_stream_gaps",
                "Times this node fell further behind a plugin's stream than its length: its readers and sockets were cut off to resume (resync / recovered false)",
                &[(vec![], counter(log.gaps))],
            )?;
        }
        if let Some(r) = &s.upstream {
            family(
                enc,
                "redis_up",
                "1 when the last Redis command succeeded",
                &[(vec![], gauge(i64::from(r.healthy())))],
            )?;
            let refused: Vec<_> = r
                .refused()
                .into_iter()
                .map(|(kind, n)| (vec![("kind", kind.to_owned())], counter(n)))
                .collect();
            family(
                enc,
                "redis_refused",
                "Entries read from Redis and refused (garbage or out of bounds), by kind: plugin_record, plugin_blob, plugin_generation, presence_entry",
                &refused,
            )?;
        }
        Ok(())
    }
}

/// Connections by namespace and transport, counted from socketioxide's own
/// socket list (a polling socket that upgraded counts as websocket).
fn connection_gauges(
    io: &Io,
    slots: &[Arc<crate::plugins::PluginSlot>],
) -> Vec<(Labels, ConstGauge)> {
    let mut conns = Vec::new();
    for slot in slots {
        let (mut ws, mut polling) = (0i64, 0i64);
        if let Some(ns) = io.of(&slot.mount) {
            for socket in ns.sockets() {
                match socket.transport_type() {
                    socketioxide::TransportType::Websocket => ws += 1,
                    socketioxide::TransportType::Polling => polling += 1,
                }
            }
        }
        for (t, n) in [("websocket", ws), ("polling", polling)] {
            conns.push((
                vec![("namespace", slot.mount.clone()), ("transport", t.into())],
                gauge(n),
            ));
        }
    }
    conns
}

impl Snapshot {
    fn plugins(
        &self,
        enc: &mut DescriptorEncoder,
        slots: &[Arc<crate::plugins::PluginSlot>],
    ) -> std::fmt::Result {
        let versions = labelled_versions(slots);
        let rows = |f: &dyn Fn(&PluginVersion) -> u64| -> Vec<(Labels, ConstCounter<u64>)> {
            versions
                .iter()
                .map(|(l, v)| (l.clone(), counter(f(v))))
                .collect()
        };
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);

        family(
            enc,
            "plugin_active_version",
            "1 for each plugin version taking calls (role: active or canary)",
            &versions
                .iter()
                .map(|(l, _)| (l.clone(), gauge(1)))
                .collect::<Vec<_>>(),
        )?;
        family(
            enc,
            "plugin_calls",
            "Plugin calls",
            &rows(&|v| load(&v.counters.calls)),
        )?;
        family(
            enc,
            "plugin_events",
            "Client events handled by the plugin",
            &rows(&|v| load(&v.counters.events)),
        )?;
        family(
            enc,
            "plugin_errors",
            "Failed plugin calls (every kind)",
            &rows(&|v| load(&v.counters.errors)),
        )?;
        let failures = stopped_calls(&versions);
        family(
            enc,
            "plugin_traps",
            "Plugin calls stopped, by kind: trap (panic, fault), timeout (CPU budget), wall_timeout (wall-clock deadline, host calls included), memory_limit (memory cap hit)",
            &failures,
        )?;
        family(
            enc,
            "plugin_busy",
            "Plugin calls refused at once because the plugin had max_instances instances alive",
            &rows(&|v| load(&v.counters.busy)),
        )?;
        let alive: Vec<_> = slots
            .iter()
            .map(|slot| {
                let n = slot.active().instances_alive() as i64;
                (vec![("plugin", slot.name.clone())], gauge(n))
            })
            .collect();
        family(
            enc,
            "plugin_instances",
            "Instances of the plugin alive now (every version, warm or in a call), against its max_instances",
            &alive,
        )?;
        call_durations(enc, &versions)
    }
}

/// Every version taking calls, with its `plugin`, `version` and `role` labels.
fn labelled_versions(
    slots: &[Arc<crate::plugins::PluginSlot>],
) -> Vec<(Labels, Arc<PluginVersion>)> {
    slots
        .iter()
        .flat_map(|slot| {
            live_versions(slot).into_iter().map(|(role, v)| {
                (
                    vec![
                        ("plugin", slot.name.clone()),
                        ("version", v.manifest.version.clone()),
                        ("role", role.to_owned()),
                    ],
                    v,
                )
            })
        })
        .collect()
}

/// Calls stopped, per version and kind.
fn stopped_calls(versions: &[(Labels, Arc<PluginVersion>)]) -> Vec<(Labels, ConstCounter<u64>)> {
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut failures = Vec::new();
    for (l, v) in versions {
        let c = &v.counters;
        for (kind, n) in [
            ("trap", load(&c.traps)),
            ("timeout", load(&c.timeouts)),
            ("wall_timeout", load(&c.wall_timeouts)),
            ("memory_limit", load(&c.memory_limit_hits)),
        ] {
            let mut l = l.clone();
            l.push(("kind", kind.to_owned()));
            failures.push((l, counter(n)));
        }
    }
    failures
}

/// The call-time histogram of every version.
fn call_durations(
    enc: &mut DescriptorEncoder,
    versions: &[(Labels, Arc<PluginVersion>)],
) -> std::fmt::Result {
    let bounds = CALL_BUCKETS.map(Duration::from_secs_f64);
    let mut e = enc.encode_descriptor(
        "plugin_call_duration_seconds",
        "Wall time of plugin calls, instantiation included",
        None,
        MetricType::Histogram,
    )?;
    for (l, v) in versions {
        histogram(&mut e, l, &v.counters.call_time, &bounds)?;
    }
    Ok(())
}

fn histogram(
    e: &mut prometheus_client::encoding::MetricEncoder,
    labels: &Labels,
    h: &crate::plugins::Histogram,
    bounds: &[Duration],
) -> std::fmt::Result {
    let cumulative = h.cumulative(bounds);
    let mut buckets: Vec<(f64, u64)> = CALL_BUCKETS.into_iter().zip(cumulative).collect();
    let count = h.count();
    buckets.push((f64::INFINITY, count));
    // prometheus-client takes per-bucket counts and accumulates them.
    let mut prev = 0;
    for b in &mut buckets {
        let c = b.1;
        b.1 = c.saturating_sub(prev);
        prev = c;
    }
    e.encode_family(labels)?.encode_histogram::<Labels>(
        h.sum().as_secs_f64(),
        count,
        &buckets,
        None,
    )
}

/// Timers, connection state and outbound HTTP, per plugin (shared by its versions).
fn capabilities(
    enc: &mut DescriptorEncoder,
    slots: &[Arc<crate::plugins::PluginSlot>],
) -> std::fmt::Result {
    let active: Vec<_> = slots.iter().map(|s| (s.name.clone(), s.active())).collect();
    let by_plugin = |f: &dyn Fn(&PluginVersion) -> u64| -> Vec<(Labels, ConstCounter<u64>)> {
        active
            .iter()
            .map(|(n, v)| (vec![("plugin", n.clone())], counter(f(v))))
            .collect()
    };
    let pending: Vec<_> = active
        .iter()
        .map(|(n, v)| {
            (
                vec![("plugin", n.clone())],
                gauge(v.timers().pending() as i64),
            )
        })
        .collect();
    family(
        enc,
        "plugin_timers_pending",
        "Timers set and not yet fired",
        &pending,
    )?;
    family(
        enc,
        "plugin_timers_set",
        "Timers set",
        &by_plugin(&|v| v.timers().counts().0),
    )?;
    family(
        enc,
        "plugin_timers_fired",
        "Timers fired",
        &by_plugin(&|v| v.timers().counts().1),
    )?;
    family(
        enc,
        "plugin_timers_refused",
        "Timers refused by a limit (count, delay, size)",
        &by_plugin(&|v| v.timers().counts().2),
    )?;
    family(
        enc,
        "plugin_connection_state_refused",
        "Connection-state writes refused by a limit (size, keys, bytes)",
        &by_plugin(&|v| v.connections().refused()),
    )?;
    outbound(enc, &active)
}

/// Outbound HTTP by plugin and origin.
fn outbound(
    enc: &mut DescriptorEncoder,
    active: &[(String, Arc<PluginVersion>)],
) -> std::fmt::Result {
    let (mut requests, mut errors, mut latency) = (Vec::new(), Vec::new(), Vec::new());
    for (name, v) in active {
        for (origin, st) in v.outbound().stats() {
            let l: Labels = vec![("plugin", name.clone()), ("origin", origin)];
            requests.push((l.clone(), counter(st.requests.load(Ordering::Relaxed))));
            for (kind, n) in st.errors.lock().unwrap().iter() {
                let mut l = l.clone();
                l.push(("kind", (*kind).to_owned()));
                errors.push((l, counter(*n)));
            }
            latency.push((l, st));
        }
    }
    family(
        enc,
        "plugin_outbound_requests",
        "Outbound HTTP requests, by plugin and origin",
        &requests,
    )?;
    family(
        enc,
        "plugin_outbound_errors",
        "Outbound HTTP requests refused or failed, by kind (forbidden, blocked_address, timeout, too_large, busy, invalid, failed)",
        &errors,
    )?;
    let bounds = CALL_BUCKETS.map(Duration::from_secs_f64);
    let mut e = enc.encode_descriptor(
        "plugin_outbound_duration_seconds",
        "Wall time of outbound HTTP requests, redirects included",
        None,
        MetricType::Histogram,
    )?;
    for (l, st) in &latency {
        histogram(&mut e, l, &st.latency, &bounds)?;
    }
    Ok(())
}
