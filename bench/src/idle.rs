//! `idle`: open N authenticated connections, say so, and hold them (answering pings)
//! until stdin closes or the hold time passes. The runner samples the server's memory
//! between the two.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use crate::conns;
use crate::run::{Control, Phase, emit_line, latency_json, reached};
use crate::sio::{self, Namespace};

pub struct IdleArgs {
    pub addr: String,
    pub ns: String,
    pub secret: String,
    pub conns: usize,
    pub hold: Duration,
    pub concurrency: usize,
}

pub async fn run(a: IdleArgs) -> anyhow::Result<Value> {
    let ns = Namespace::new(&a.ns);
    let started = Instant::now();
    let opened = conns::open(&a.addr, &ns, &a.secret, "idle", a.conns, a.concurrency).await;
    let connect_secs = started.elapsed().as_secs_f64();
    let connected = opened.conns.len();
    emit_line(&json!({ "phase": "connected", "connected": connected }));

    let ctl = Control::new();
    let holders: Vec<_> = opened
        .conns
        .into_iter()
        .map(|ws| {
            let mut phase = ctl.watch();
            tokio::spawn(async move {
                let (mut tx, mut rx) = ws.split();
                loop {
                    let m = tokio::select! {
                        m = rx.next() => m,
                        _ = reached(&mut phase, Phase::Abort) => return true,
                    };
                    match m {
                        Some(Ok(Message::Text(t))) if t.as_str() == sio::PING => {
                            use futures::SinkExt;
                            let _ = tx.send(Message::text(sio::PONG)).await;
                        }
                        Some(Ok(_)) => {}
                        _ => return false,
                    }
                }
            })
        })
        .collect();

    // Hold until the runner closes our stdin (it has sampled memory) or time is up.
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(a.hold, async {
        while matches!(stdin.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    ctl.set(Phase::Abort);
    let mut dropped = 0;
    for h in holders {
        if !h.await? {
            dropped += 1;
        }
    }
    Ok(json!({
        "mode": "idle",
        "conns": a.conns,
        "connected": connected,
        "connect_errors": opened.errors.len(),
        "connect_error_samples": conns::sample_errors(&opened.errors),
        "connect_s": connect_secs,
        "handshake_latency": latency_json(&opened.handshake),
        "dropped_while_idle": dropped,
    }))
}
