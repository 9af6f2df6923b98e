//! Opening many authenticated connections, a bounded number of handshakes at a time, and
//! the per-connection loop pieces every Socket.IO mode shares.

use std::time::Instant;

use futures::stream::{SplitSink, StreamExt};
use futures::{FutureExt, SinkExt};
use hdrhistogram::Histogram;
use tokio_tungstenite::tungstenite::Message;

use crate::run::{histogram, record, token};
use crate::sio::{self, Namespace, Ws};

/// Connections that made it, the handshake latency of each, and why the others failed.
pub struct Opened {
    pub conns: Vec<Ws>,
    pub handshake: Histogram<u64>,
    pub errors: Vec<String>,
}

/// Open `n` connections to `ns`, each with its own token (`sub = <prefix>-<i>`).
pub async fn open(
    addr: &str,
    ns: &Namespace,
    secret: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> Opened {
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|i| async move {
            let started = Instant::now();
            let token = token(secret, &format!("{prefix}-{i}"))?;
            let ws = sio::connect(addr, ns, &token).await?;
            anyhow::Ok((ws, started.elapsed()))
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut opened = Opened {
        conns: Vec::with_capacity(n),
        handshake: histogram(),
        errors: vec![],
    };
    for r in results {
        match r {
            Ok((ws, took)) => {
                record(&mut opened.handshake, took.as_micros() as u64);
                opened.conns.push(ws);
            }
            Err(e) => opened.errors.push(format!("{e:#}")),
        }
    }
    opened
}

/// The first few distinct errors, for the report.
pub fn sample_errors(errors: &[String]) -> Vec<String> {
    let mut seen: Vec<String> = vec![];
    for e in errors {
        if !seen.contains(e) {
            seen.push(e.clone());
        }
        if seen.len() == 3 {
            break;
        }
    }
    seen
}

pub type Sink = SplitSink<Ws, Message>;

/// Text of every frame already received, without waiting: lets a loop handle a burst and
/// flush its answers once.
pub fn ready_frames(
    rx: &mut futures::stream::SplitStream<Ws>,
    first: Message,
) -> (Vec<Message>, bool) {
    let mut frames = vec![first];
    let mut closed = false;
    while let Some(next) = rx.next().now_or_never() {
        match next {
            Some(Ok(m)) => frames.push(m),
            _ => {
                closed = true;
                break;
            }
        }
    }
    (frames, closed)
}

/// Answer an Engine.IO ping; true if `text` was one.
pub async fn answer_ping(tx: &mut Sink, text: &str) -> bool {
    if text == sio::PING {
        let _ = tx.feed(Message::text(sio::PONG)).await;
        true
    } else {
        false
    }
}
