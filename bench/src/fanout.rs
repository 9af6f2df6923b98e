//! `fanout`: M subscribers join a chat room; one publisher keeps K acked `message`s in
//! flight, each carrying its send time. Deliveries/s and delivery latency at the
//! subscribers. The subscribers can be Socket.IO sockets or SSE streams ([`Readers`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::conns::{self, Sink};
use crate::run::{Control, Phase, histogram, latency_json, reached, record, token};
use crate::sio::{self, Namespace, Ws};

pub struct FanoutArgs {
    /// Where the publisher connects.
    pub addr: String,
    /// Where the Socket.IO subscribers connect (another node, for cross-node runs).
    pub sub_addr: String,
    pub ns: String,
    pub room: String,
    pub secret: String,
    pub subscribers: usize,
    pub inflight: usize,
    /// Publications per second on a clock; 0: closed loop (next on each ack).
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub grace: Duration,
    pub concurrency: usize,
}

/// Who receives the publications.
pub enum Readers {
    /// Socket.IO sockets in the room.
    Sockets,
    /// SSE streams on this URL (which must deliver the room's messages).
    Sse { url: String },
}

/// Counters every reader adds to.
#[derive(Default)]
pub struct Deliveries {
    pub total: AtomicU64,
}

pub async fn run(a: FanoutArgs, readers: Readers) -> anyhow::Result<Value> {
    let ns = Namespace::new(&a.ns);
    let ctl = Control::new();
    let deliveries = Arc::new(Deliveries::default());

    // Subscribers first, all in the room before the first publication.
    let (tasks, connect_errors) = match &readers {
        Readers::Sockets => subscribe_sockets(&a, &ns, &ctl, &deliveries).await,
        Readers::Sse { url } => crate::sse::open_readers(&a, url, &ctl, &deliveries).await,
    };
    let joined = tasks.len() as u64;

    let publisher_ws = {
        let token = token(&a.secret, "bench-pub")?;
        let mut ws = sio::connect(&a.addr, &ns, &token).await?;
        join(&mut ws, &ns, &a.room).await?;
        ws
    };
    let published = Arc::new(AtomicU64::new(0));
    let outstanding = Arc::new(AtomicU64::new(0));
    let publisher = tokio::spawn(publish(
        publisher_ws,
        ns.clone(),
        a.room.clone(),
        Pace {
            inflight: a.inflight,
            rate: a.rate,
        },
        ctl.clone(),
        published.clone(),
        outstanding.clone(),
    ));

    let (p, o, d) = (published.clone(), outstanding.clone(), deliveries.clone());
    let measured = crate::run::drive(&ctl, a.warmup, a.duration, a.grace, move || {
        o.load(Relaxed) == 0 && d.total.load(Relaxed) >= p.load(Relaxed) * joined
    })
    .await;

    let (pub_hist, pub_tally) = publisher.await?;
    let mut hist = histogram();
    let mut measured_deliveries = 0u64;
    for task in tasks {
        let (h, n) = task.await?;
        hist.add(&h)?;
        measured_deliveries += n;
    }
    let secs = measured.as_secs_f64();
    let published_ok = published.load(Relaxed);
    let total = deliveries.total.load(Relaxed);
    Ok(json!({
        "mode": match readers { Readers::Sockets => "fanout", Readers::Sse { .. } => "sse" },
        "subscribers": a.subscribers,
        "joined": joined,
        "connect_errors": connect_errors.len(),
        "connect_error_samples": conns::sample_errors(&connect_errors),
        "inflight": a.inflight,
        "rate": a.rate,
        "duration_s": secs,
        "deliveries": measured_deliveries,
        "throughput": measured_deliveries as f64 / secs,
        "latency": latency_json(&hist),
        "published_ok": published_ok,
        "publish_error_acks": pub_tally.error_acks,
        "publish_ack_latency": latency_json(&pub_hist),
        "deliveries_total": total,
        "lost_deliveries": (published_ok * joined).saturating_sub(total),
        "lost_acks": pub_tally.lost,
        "publish_skipped": pub_tally.skipped,
    }))
}

type Reader = tokio::task::JoinHandle<(Histogram<u64>, u64)>;

async fn subscribe_sockets(
    a: &FanoutArgs,
    ns: &Namespace,
    ctl: &Arc<Control>,
    deliveries: &Arc<Deliveries>,
) -> (Vec<Reader>, Vec<String>) {
    let opened = conns::open(
        &a.sub_addr,
        ns,
        &a.secret,
        "sub",
        a.subscribers,
        a.concurrency,
    )
    .await;
    let mut errors = opened.errors;
    let joins: Vec<_> = futures::stream::iter(opened.conns)
        .map(|mut ws| async move {
            join(&mut ws, ns, &a.room).await?;
            anyhow::Ok(ws)
        })
        .buffer_unordered(a.concurrency.max(1))
        .collect()
        .await;
    let mut tasks = vec![];
    for j in joins {
        match j {
            Ok(ws) => tasks.push(tokio::spawn(subscriber(
                ws,
                ns.clone(),
                ctl.clone(),
                deliveries.clone(),
            ))),
            Err(e) => errors.push(format!("join: {e:#}")),
        }
    }
    (tasks, errors)
}

/// Join `room` with an acked `join` event (id 0 is never used by the loops).
async fn join(ws: &mut Ws, ns: &Namespace, room: &str) -> anyhow::Result<()> {
    let args = json!({ "room": room }).to_string();
    ws.send(ns.emit_with_ack(0, "join", &args)).await?;
    while let Some(m) = ws.next().await {
        let Message::Text(t) = m? else { continue };
        if t.as_str() == sio::PING {
            ws.send(Message::text(sio::PONG)).await?;
        } else if let Some((0, body)) = ns.read_ack(t.as_str()) {
            anyhow::ensure!(!sio::is_error_ack(body), "join refused: {body}");
            return Ok(());
        }
    }
    anyhow::bail!("closed while joining")
}

async fn subscriber(
    ws: Ws,
    ns: Namespace,
    ctl: Arc<Control>,
    deliveries: Arc<Deliveries>,
) -> (Histogram<u64>, u64) {
    let (mut tx, mut rx) = ws.split();
    let mut hist = histogram();
    let mut measured = 0u64;
    let mut phase_rx = ctl.watch();
    loop {
        let msg = tokio::select! {
            m = rx.next() => m,
            _ = reached(&mut phase_rx, Phase::Abort) => break,
        };
        let Some(Ok(first)) = msg else { break };
        let (frames, closed) = conns::ready_frames(&mut rx, first);
        let mut answered = false;
        for m in frames {
            let Message::Text(text) = m else { continue };
            let text = text.as_str();
            if conns::answer_ping(&mut tx, text).await {
                answered = true;
            } else if text.starts_with(ns.event.as_str())
                && let Some(ts) = sio::text_timestamp(text)
            {
                count(&ctl, &deliveries, &mut hist, &mut measured, ts);
            }
        }
        if (answered && tx.flush().await.is_err()) || closed {
            break;
        }
    }
    (hist, measured)
}

/// Count one delivery sent at `ts` (µs on the run's clock).
pub fn count(
    ctl: &Control,
    deliveries: &Deliveries,
    hist: &mut Histogram<u64>,
    measured: &mut u64,
    ts: u64,
) {
    deliveries.total.fetch_add(1, Relaxed);
    if ctl.measuring() {
        *measured += 1;
        record(hist, ctl.now_us().saturating_sub(ts));
    }
}

/// How the publisher sends: at most `inflight` unacked, and `rate` per
/// second on a clock (0: the next one on each ack).
struct Pace {
    inflight: usize,
    rate: f64,
}

#[derive(Default)]
struct PubTally {
    error_acks: u64,
    lost: u64,
    /// Paced: publications due while `inflight` were unacked, not sent.
    skipped: u64,
}

async fn publish(
    ws: Ws,
    ns: Namespace,
    room: String,
    Pace { inflight, rate }: Pace,
    ctl: Arc<Control>,
    published: Arc<AtomicU64>,
    outstanding: Arc<AtomicU64>,
) -> (Histogram<u64>, PubTally) {
    let (mut tx, mut rx) = ws.split();
    let mut hist = histogram();
    let mut t = PubTally::default();
    let mut pending: HashMap<u64, Instant> = HashMap::new();
    let mut next_id = 1u64;
    let mut phase_rx = ctl.watch();
    let room_json = serde_json::to_string(&room).unwrap_or_default();

    let send = async |tx: &mut Sink, id: u64| {
        let args = format!("{{\"room\":{room_json},\"text\":\"{}\"}}", ctl.now_us());
        tx.feed(ns.emit_with_ack(id, "message", &args)).await
    };
    let paced = rate > 0.0;
    // Paced: what the clock says is due since `started`; a tick that finds
    // `inflight` unacked skips (the server is behind: it shows in `t.skipped`).
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    if !paced {
        for _ in 0..inflight {
            if send(&mut tx, next_id).await.is_err() {
                break;
            }
            pending.insert(next_id, Instant::now());
            outstanding.fetch_add(1, Relaxed);
            next_id += 1;
        }
        let _ = tx.flush().await;
    }
    loop {
        let phase = ctl.phase();
        if phase == Phase::Abort || (phase >= Phase::Drain && pending.is_empty()) {
            break;
        }
        let msg = tokio::select! {
            m = rx.next() => m,
            _ = phase_rx.changed() => continue,
            _ = ticker.tick(), if paced && phase < Phase::Drain => {
                let due = (started.elapsed().as_secs_f64() * rate) as u64;
                while sent < due {
                    sent += 1;
                    if pending.len() >= inflight {
                        t.skipped += 1;
                        continue;
                    }
                    if send(&mut tx, next_id).await.is_err() {
                        break;
                    }
                    pending.insert(next_id, Instant::now());
                    outstanding.fetch_add(1, Relaxed);
                    next_id += 1;
                }
                if tx.flush().await.is_err() {
                    break;
                }
                continue;
            }
        };
        let Some(Ok(first)) = msg else { break };
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
            if sio::is_error_ack(body) {
                t.error_acks += 1;
            } else {
                published.fetch_add(1, Relaxed);
            }
            outstanding.fetch_sub(1, Relaxed);
            if ctl.measuring() {
                record(&mut hist, sent_at.elapsed().as_micros() as u64);
            }
            if !paced && ctl.phase() < Phase::Drain && send(&mut tx, next_id).await.is_ok() {
                pending.insert(next_id, Instant::now());
                outstanding.fetch_add(1, Relaxed);
                next_id += 1;
            }
        }
        if tx.flush().await.is_err() || closed {
            break;
        }
    }
    t.lost = pending.len() as u64;
    outstanding.fetch_sub(t.lost, Relaxed);
    (hist, t)
}
