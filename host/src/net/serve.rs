//! The accept loop and the life of one connection: caps at accept,
//! `TCP_NODELAY`, an optional TLS handshake, HTTP/1.1 or HTTP/2 (detected
//! from the first bytes, so h2c with prior knowledge works), and a watchdog
//! for the header and idle timeouts. hyper gets a timer, so its own HTTP/1.1
//! header read timeout works too (`axum::serve` installs none).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::activity::{Activity, Expired, Limits, Tracked};
use super::gate::{Gate, Permit};
use super::stats::NetStats;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Timeouts of every connection of a listener.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Accept to a complete first request head (TLS handshake included);
    /// also each later HTTP/1.1 head, so it bounds keep-alive idling too.
    pub header_read: Duration,
    /// No byte either way for this long closes the connection.
    pub idle: Duration,
    /// A write waiting this long for a peer that reads nothing closes it.
    pub write: Duration,
}

/// One listener: where it accepts, what it serves, and its limits.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub gate: Arc<Gate>,
    pub timeouts: Timeouts,
    pub stats: NetStats,
}

struct Shared {
    router: Router,
    tls: Option<TlsAcceptor>,
    http: auto::Builder<TokioExecutor>,
    timeouts: Timeouts,
    stats: NetStats,
}

impl Listener {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Serve `router` until `shutdown` resolves; then stop accepting, ask every
    /// connection to finish (HTTP/1.1 after its response, HTTP/2 with GOAWAY)
    /// and return once they have.
    pub async fn serve(self, router: Router, shutdown: impl Future<Output = ()>) {
        let shared = Arc::new(Shared {
            router,
            tls: self.tls.map(TlsAcceptor::from),
            http: http_builder(self.timeouts.header_read),
            timeouts: self.timeouts,
            stats: self.stats,
        });
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        accept_failed(&e).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let permit = match self.gate.admit(peer.ip()) {
                Ok(p) => p,
                Err(why) => {
                    shared.stats.refused(why);
                    continue; // dropping the stream closes it unread
                }
            };
            // Two writes per answer (an emit, then its ack) otherwise wait
            // ~40 ms for the peer's delayed ACK (Nagle).
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move { connection(shared, stream, peer, permit, watcher).await });
        }
        drop(self.tcp);
        graceful.shutdown().await;
    }
}

/// Request heads larger than this are refused (`431` on HTTP/1.1); hyper's
/// defaults are ~400 KB (HTTP/1.1) and 16 MB (HTTP/2).
const MAX_HEAD_BYTES: usize = 64 << 10;

fn http_builder(header_read: Duration) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    b
}

/// `EMFILE` and friends: the connection stays in the backlog, so pause
/// instead of spinning on it.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
        return;
    }
    tracing::warn!(error = %e, "accept failed; pausing 50 ms");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    permit: Permit,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let activity = Arc::new(Activity::new());
    let io = super::linger::Lingering::new(Tracked::new(stream, activity.clone()));
    let t = shared.timeouts;
    let serve = async {
        let svc = service(shared.router.clone(), peer, activity.clone());
        match &shared.tls {
            None => {
                let conn = shared
                    .http
                    .serve_connection_with_upgrades(TokioIo::new(io), svc);
                watcher.watch(conn).await
            }
            Some(acceptor) => {
                let tls = match acceptor.accept(io).await {
                    Ok(tls) => tls,
                    Err(e) => return Err::<(), BoxError>(Box::new(e)),
                };
                let conn = shared
                    .http
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc);
                watcher.watch(conn).await
            }
        }
    };
    tokio::select! {
        res = serve => if let Err(e) = res {
            if is_header_timeout(&*e) {
                shared.stats.expired(Expired::Header);
            }
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        },
        why = activity.expired(Limits { header: t.header_read, idle: t.idle, write: t.write }) => {
            shared.stats.expired(why);
            tracing::debug!(%peer, ?why, "connection timed out");
        }
    }
    drop(permit);
}

fn is_header_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_timeout)
}

/// The router as a hyper service that tells handlers the peer address
/// (`ConnectInfo`) and the watchdog that a request arrived.
fn service(
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Future<Output = Result<axum::response::Response, Infallible>> + Send + 'static,
> + Clone {
    hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        activity.served();
        req.extensions_mut().insert(ConnectInfo(peer));
        tower::ServiceExt::oneshot(router.clone(), req)
    })
}
