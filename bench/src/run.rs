//! What every mode shares: the run's phases, the clock, tokens, latency histograms and
//! the lines printed for the runner.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::watch;

/// Phases of a run. Connections watch it: they stop sending at `Drain` and give up
/// waiting at `Abort`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(u8)]
pub enum Phase {
    Warmup = 0,
    Measure = 1,
    Drain = 2,
    Abort = 3,
}

/// The run's shared control: phase (readable without awaiting) and a clock origin for
/// timestamps carried in payloads.
pub struct Control {
    phase: AtomicU8,
    tx: watch::Sender<Phase>,
    origin: Instant,
}

impl Control {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            phase: AtomicU8::new(Phase::Warmup as u8),
            tx: watch::channel(Phase::Warmup).0,
            origin: Instant::now(),
        })
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Warmup,
            1 => Phase::Measure,
            2 => Phase::Drain,
            _ => Phase::Abort,
        }
    }

    pub fn measuring(&self) -> bool {
        self.phase() == Phase::Measure
    }

    pub fn set(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Relaxed);
        self.tx.send_replace(p);
        match p {
            Phase::Measure => emit_line(&json!({ "phase": "measure-start" })),
            Phase::Drain => emit_line(&json!({ "phase": "measure-end" })),
            _ => {}
        }
    }

    pub fn watch(&self) -> watch::Receiver<Phase> {
        self.tx.subscribe()
    }

    /// Microseconds since the run started (payload timestamps; one process, one clock).
    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }
}

/// Wait until the phase is at least `p` (or the control is gone).
pub async fn reached(rx: &mut watch::Receiver<Phase>, p: Phase) {
    let _ = rx.wait_for(|now| *now >= p).await;
}

/// A latency histogram in microseconds, 1 µs to 100 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.max(1));
}

/// p50/p90/p99/max in milliseconds (fractional).
pub fn latency_json(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return json!({ "samples": 0 });
    }
    json!({
        "samples": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    })
}

/// One JSON line on stdout, flushed: the runner reads them as they come.
pub fn emit_line(v: &Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// An HS256 token for `sub`, valid for an hour.
pub fn token(secret: &str, sub: &str) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = json!({ "sub": sub, "iat": now, "exp": now + 3600 });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())?,
    )?)
}

/// Drive the phases: warm-up, measurement, then drain until `drained` says so or `grace`
/// passes, then abort. Returns the measured duration.
pub async fn drive(
    ctl: &Control,
    warmup: Duration,
    duration: Duration,
    grace: Duration,
    drained: impl Fn() -> bool,
) -> Duration {
    tokio::time::sleep(warmup).await;
    let start = Instant::now();
    ctl.set(Phase::Measure);
    tokio::time::sleep(duration).await;
    ctl.set(Phase::Drain);
    let measured = start.elapsed();
    let deadline = Instant::now() + grace;
    while !drained() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ctl.set(Phase::Abort);
    measured
}
