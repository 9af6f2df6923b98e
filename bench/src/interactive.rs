//! `interactive`: a few connections, each sending one acked `emit-and-ack` event at a
//! fixed pace and waiting for both answers: the event emitted back, then the ack. The
//! round trip ends when both have arrived. At low load this is the latency a user of an
//! interactive app sees; a server that writes the two answers as two small TCP segments
//! without `TCP_NODELAY` holds the second one until the client's delayed ACK (~40 ms).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;

use crate::conns;
use crate::run::{Control, Phase, histogram, latency_json, record};
use crate::sio::{self, Namespace, Ws};

/// The event the server answers with an emit and an ack (Portico's `echo` plugin, and
/// both peers, do).
pub const EVENT: &str = "emit-and-ack";

pub struct InteractiveArgs {
    pub addr: String,
    pub ns: String,
    pub secret: String,
    pub conns: usize,
    /// Events per second per connection (one at a time: the next waits for both answers).
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub grace: Duration,
    pub concurrency: usize,
}

#[derive(Default)]
struct Tally {
    measured: u64,
    sent: u64,
    /// Sent and not fully answered when the connection gave up.
    lost: u64,
    error_acks: u64,
    disconnects: u64,
}

pub async fn run(a: InteractiveArgs) -> anyhow::Result<Value> {
    let ns = Namespace::new(&a.ns);
    let opened = conns::open(
        &a.addr,
        &ns,
        &a.secret,
        "interactive",
        a.conns,
        a.concurrency,
    )
    .await;
    let ctl = Control::new();
    let in_flight = Arc::new(AtomicU64::new(0));
    let period = Duration::from_secs_f64(1.0 / a.rate.max(0.001));
    let tasks: Vec<_> = opened
        .conns
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            let (ns, ctl, in_flight) = (ns.clone(), ctl.clone(), in_flight.clone());
            // Spread the connections' sends over the period.
            let offset = period.mul_f64(i as f64 / a.conns.max(1) as f64);
            tokio::spawn(conn(ws, ns, period, offset, ctl, in_flight))
        })
        .collect();
    let measured = crate::run::drive(&ctl, a.warmup, a.duration, a.grace, || {
        in_flight.load(Relaxed) == 0
    })
    .await;

    let (mut round_trip, mut first) = (histogram(), histogram());
    let mut t = Tally::default();
    for task in tasks {
        let (rt, f, c) = task.await?;
        round_trip.add(&rt)?;
        first.add(&f)?;
        t.measured += c.measured;
        t.sent += c.sent;
        t.lost += c.lost;
        t.error_acks += c.error_acks;
        t.disconnects += c.disconnects;
    }
    let secs = measured.as_secs_f64();
    Ok(json!({
        "mode": "interactive",
        "conns": a.conns,
        "connected": a.conns - opened.errors.len(),
        "connect_errors": opened.errors.len(),
        "connect_error_samples": conns::sample_errors(&opened.errors),
        "rate_per_conn": a.rate,
        "duration_s": secs,
        "events": t.measured,
        "throughput": t.measured as f64 / secs,
        "latency": latency_json(&round_trip),
        "first_answer_latency": latency_json(&first),
        "sent_total": t.sent,
        "lost": t.lost,
        "error_acks": t.error_acks,
        "disconnects": t.disconnects,
    }))
}

/// What has come back for the event in flight.
#[derive(Default)]
struct Waiting {
    id: u64,
    sent_at: Option<Instant>,
    emitted: bool,
    acked: bool,
    first_us: u64,
}

async fn conn(
    ws: Ws,
    ns: Namespace,
    period: Duration,
    offset: Duration,
    ctl: Arc<Control>,
    in_flight: Arc<AtomicU64>,
) -> (Histogram<u64>, Histogram<u64>, Tally) {
    let (mut tx, mut rx) = ws.split();
    let (mut round_trip, mut first) = (histogram(), histogram());
    let mut t = Tally::default();
    let mut w = Waiting::default();
    let mut phase_rx = ctl.watch();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let emitted_prefix = format!("{}[\"{EVENT}\",", ns.event);

    loop {
        let phase = ctl.phase();
        if phase == Phase::Abort || (phase >= Phase::Drain && w.sent_at.is_none()) {
            break;
        }
        tokio::select! {
            // Only one event in flight: the next tick waits for both answers.
            _ = tick.tick(), if w.sent_at.is_none() && phase < Phase::Drain => {
                // The window may have closed while this branch waited for its tick.
                if ctl.phase() >= Phase::Drain {
                    continue;
                }
                w = Waiting { id: w.id + 1, sent_at: Some(Instant::now()), ..Waiting::default() };
                // Counted before the send: the run must not see "nothing in flight" mid-send.
                in_flight.fetch_add(1, Relaxed);
                t.sent += 1;
                let args = format!("{{\"n\":{}}}", w.id);
                if tx.send(ns.emit_with_ack(w.id, EVENT, &args)).await.is_err() {
                    t.disconnects += 1;
                    break;
                }
            }
            m = rx.next() => {
                let Some(Ok(Message::Text(text))) = m else {
                    if !matches!(m, Some(Ok(_))) {
                        t.disconnects += 1;
                        break;
                    }
                    continue;
                };
                let text = text.as_str();
                if text == sio::PING {
                    let _ = tx.send(Message::text(sio::PONG)).await;
                    continue;
                }
                let Some(sent_at) = w.sent_at else { continue };
                let id = w.id;
                if text.starts_with(&emitted_prefix) && text.contains(&format!("{{\"n\":{id}}}")) {
                    w.emitted = true;
                } else if let Some((_, body)) = ns.read_ack(text).filter(|(i, _)| *i == id) {
                    w.acked = true;
                    if sio::is_error_ack(body) {
                        t.error_acks += 1;
                    }
                } else {
                    continue;
                }
                let us = sent_at.elapsed().as_micros() as u64;
                if !(w.emitted && w.acked) {
                    w.first_us = us;
                    continue;
                }
                if ctl.measuring() {
                    t.measured += 1;
                    record(&mut round_trip, us);
                    record(&mut first, w.first_us);
                }
                w.sent_at = None;
                in_flight.fetch_sub(1, Relaxed);
            }
            _ = phase_rx.changed() => {}
        }
    }
    t.lost = u64::from(w.sent_at.is_some());
    in_flight.fetch_sub(t.lost, Relaxed);
    (round_trip, first, t)
}
