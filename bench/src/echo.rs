//! `echo`: N connections each keep K acked events in flight; ack latency and acks/s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::conns::{self, Sink};
use crate::run::{Control, Phase, histogram, latency_json, record};
use crate::sio::{self, Namespace, Ws};

pub struct EchoArgs {
    pub addr: String,
    pub ns: String,
    pub secret: String,
    pub conns: usize,
    pub inflight: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub grace: Duration,
    pub concurrency: usize,
}

#[derive(Default)]
struct Tally {
    /// Acks received during the measurement.
    measured: u64,
    /// Every ack received.
    acks: u64,
    sent: u64,
    error_acks: u64,
    /// Sent but never acked (counted when the connection gives up).
    lost: u64,
    disconnects: u64,
}

pub async fn run(a: EchoArgs) -> anyhow::Result<Value> {
    let ns = Namespace::new(&a.ns);
    let opened = conns::open(&a.addr, &ns, &a.secret, "echo", a.conns, a.concurrency).await;
    let ctl = Control::new();
    let outstanding = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tasks: Vec<_> = opened
        .conns
        .into_iter()
        .map(|ws| {
            let (ns, ctl, out) = (ns.clone(), ctl.clone(), outstanding.clone());
            tokio::spawn(conn(ws, ns, a.inflight, ctl, out))
        })
        .collect();
    let out = outstanding.clone();
    let measured = crate::run::drive(&ctl, a.warmup, a.duration, a.grace, move || {
        out.load(std::sync::atomic::Ordering::Relaxed) == 0
    })
    .await;

    let mut hist = histogram();
    let mut t = Tally::default();
    for task in tasks {
        let (h, c) = task.await?;
        hist.add(&h)?;
        t.measured += c.measured;
        t.acks += c.acks;
        t.sent += c.sent;
        t.error_acks += c.error_acks;
        t.lost += c.lost;
        t.disconnects += c.disconnects;
    }
    let secs = measured.as_secs_f64();
    Ok(json!({
        "mode": "echo",
        "conns": a.conns,
        "connected": a.conns - opened.errors.len(),
        "connect_errors": opened.errors.len(),
        "connect_error_samples": conns::sample_errors(&opened.errors),
        "inflight": a.inflight,
        "duration_s": secs,
        "acks": t.measured,
        "throughput": t.measured as f64 / secs,
        "latency": latency_json(&hist),
        "sent_total": t.sent,
        "acked_total": t.acks,
        "error_acks": t.error_acks,
        "lost_acks": t.lost,
        "disconnects": t.disconnects,
    }))
}

async fn conn(
    ws: Ws,
    ns: Namespace,
    inflight: usize,
    ctl: Arc<Control>,
    outstanding: Arc<std::sync::atomic::AtomicU64>,
) -> (Histogram<u64>, Tally) {
    use std::sync::atomic::Ordering::Relaxed;
    let (mut tx, mut rx) = ws.split();
    let mut hist = histogram();
    let mut t = Tally::default();
    let mut pending: HashMap<u64, Instant> = HashMap::with_capacity(inflight * 2);
    let mut next_id = 0u64;
    let mut phase_rx = ctl.watch();

    let send = async |tx: &mut Sink, id: u64| {
        let args = format!("{{\"n\":{id}}}");
        tx.feed(ns.emit_with_ack(id, "echo", &args)).await
    };
    for _ in 0..inflight {
        if send(&mut tx, next_id).await.is_err() {
            break;
        }
        pending.insert(next_id, Instant::now());
        outstanding.fetch_add(1, Relaxed);
        next_id += 1;
        t.sent += 1;
    }
    let _ = tx.flush().await;

    loop {
        let phase = ctl.phase();
        if phase == Phase::Abort || (phase >= Phase::Drain && pending.is_empty()) {
            break;
        }
        let msg = tokio::select! {
            m = rx.next() => m,
            _ = phase_rx.changed() => continue,
        };
        let Some(Ok(first)) = msg else {
            t.disconnects += 1;
            break;
        };
        let (frames, closed) = conns::ready_frames(&mut rx, first);
        for m in frames {
            let Message::Text(text) = m else { continue };
            let text = text.as_str();
            if conns::answer_ping(&mut tx, text).await {
                continue;
            }
            let Some((id, body)) = ns.read_ack(text) else {
                continue;
            };
            let Some(sent_at) = pending.remove(&id) else {
                continue;
            };
            outstanding.fetch_sub(1, Relaxed);
            t.acks += 1;
            if sio::is_error_ack(body) {
                t.error_acks += 1;
            }
            if ctl.measuring() {
                t.measured += 1;
                record(&mut hist, sent_at.elapsed().as_micros() as u64);
            }
            if ctl.phase() < Phase::Drain && send(&mut tx, next_id).await.is_ok() {
                pending.insert(next_id, Instant::now());
                outstanding.fetch_add(1, Relaxed);
                next_id += 1;
                t.sent += 1;
            }
        }
        if tx.flush().await.is_err() || closed {
            t.disconnects += 1;
            break;
        }
    }
    t.lost = pending.len() as u64;
    outstanding.fetch_sub(t.lost, Relaxed);
    (hist, t)
}
