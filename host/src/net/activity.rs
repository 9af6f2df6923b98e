//! What a connection's watchdog looks at: when a byte last moved, whether
//! a first request has arrived, and since when a write has been waiting for
//! a peer that does not read. [`Tracked`] wraps the TCP stream
//! (below TLS), so the TLS handshake, HTTP/1.1, HTTP/2 and the bytes of a
//! stream all count.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// One connection's activity clock.
pub struct Activity {
    since: Instant,
    /// Milliseconds after `since` of the last byte read or written.
    last_ms: AtomicU64,
    served: AtomicBool,
    /// Milliseconds after `since`, plus one, of the first write the socket
    /// refused (its send buffer full) since bytes last went out; 0: none.
    blocked_ms: AtomicU64,
    /// Wakes the watchdog when a write starts waiting.
    blocked: tokio::sync::Notify,
}

/// Why a watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// No complete first request (or TLS handshake) within the header timeout.
    Header,
    /// No byte either way for the idle timeout.
    Idle,
    /// A write waited the write timeout for a peer that reads nothing.
    Write,
}

/// The watchdog's three bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header: Duration,
    pub idle: Duration,
    pub write: Duration,
}

impl Activity {
    pub fn new() -> Self {
        Self {
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
            blocked_ms: AtomicU64::new(0),
            blocked: tokio::sync::Notify::new(),
        }
    }

    fn touch(&self) {
        let ms = self.since.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn wrote(&self) {
        self.touch();
        self.blocked_ms.store(0, Ordering::Relaxed);
    }

    /// A write found the socket's send buffer full.
    fn write_blocked(&self) {
        if self.blocked_ms.load(Ordering::Relaxed) == 0 {
            let ms = self.since.elapsed().as_millis() as u64 + 1;
            self.blocked_ms.store(ms, Ordering::Relaxed);
            self.blocked.notify_one();
        }
    }

    /// A request head was parsed: the header timeout no longer applies here.
    pub fn served(&self) {
        if !self.served.load(Ordering::Relaxed) {
            self.served.store(true, Ordering::Relaxed);
        }
        self.touch();
    }

    /// Resolves when the connection has broken one of its timeouts.
    pub async fn expired(&self, limits: Limits) -> Expired {
        loop {
            let at = |ms: u64| self.since + Duration::from_millis(ms);
            let idle_at = at(self.last_ms.load(Ordering::Relaxed)) + limits.idle;
            let header_at = self.since + limits.header;
            let served = self.served.load(Ordering::Relaxed);
            let blocked = self.blocked_ms.load(Ordering::Relaxed);
            let write_at = (blocked > 0).then(|| at(blocked - 1) + limits.write);
            let now = Instant::now();
            if !served && now >= header_at {
                return Expired::Header;
            }
            if now >= idle_at {
                return Expired::Idle;
            }
            if write_at.is_some_and(|w| now >= w) {
                return Expired::Write;
            }
            let mut wake = idle_at;
            if !served {
                wake = wake.min(header_at);
            }
            if let Some(w) = write_at {
                wake = wake.min(w);
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = self.blocked.notified() => {}
            }
        }
    }
}

/// A stream that reports every byte it moves to its [`Activity`].
pub struct Tracked<T> {
    inner: T,
    activity: std::sync::Arc<Activity>,
}

impl<T> Tracked<T> {
    pub fn new(inner: T, activity: std::sync::Arc<Activity>) -> Self {
        Self { inner, activity }
    }

    fn wrote(&self, res: &Poll<io::Result<usize>>) {
        match res {
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.wrote(),
            Poll::Pending => self.activity.write_blocked(),
            _ => {}
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&res);
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&res);
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const MS: Duration = Duration::from_millis(1);

    fn limits(header: u32, idle: u32, write: u32) -> Limits {
        Limits {
            header: header * MS,
            idle: idle * MS,
            write: write * MS,
        }
    }

    #[tokio::test]
    async fn a_write_that_waits_for_a_peer_reading_nothing_times_out() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // 64 bytes of buffer; the peer reads once, then stops.
        let (mut client, server) = tokio::io::duplex(64);
        let a = Arc::new(Activity::new());
        a.served();
        let mut tracked = Tracked::new(server, a.clone());
        let t0 = Instant::now();
        let writer = async {
            tracked.write_all(&[0u8; 64]).await.unwrap();
            let mut b = [0u8; 64];
            client.read_exact(&mut b).await.unwrap();
            // Keeps the connection busy (so never idle) until its buffer fills.
            tokio::time::sleep(100 * MS).await;
            tracked.write_all(&[0u8; 1024]).await.unwrap();
            unreachable!("the peer reads nothing more");
        };
        tokio::select! {
            why = a.expired(limits(10, 10_000, 200)) => assert_eq!(why, Expired::Write),
            () = writer => {}
        }
        let took = t0.elapsed();
        assert!(took >= 300 * MS && took < 2_000 * MS, "{took:?}");
    }

    #[tokio::test]
    async fn header_timeout_until_served_then_idle_timeout() {
        let a = Activity::new();
        let t0 = Instant::now();
        assert_eq!(a.expired(limits(30, 500, 500)).await, Expired::Header);
        assert!(t0.elapsed() < 400 * MS);
        let a = Activity::new();
        a.served();
        let t0 = Instant::now();
        assert_eq!(a.expired(limits(10, 60, 500)).await, Expired::Idle);
        assert!(t0.elapsed() >= 60 * MS);
    }

    #[tokio::test]
    async fn bytes_keep_a_connection_alive() {
        let (mut client, server) = tokio::io::duplex(64);
        let a = Arc::new(Activity::new());
        a.served();
        let mut tracked = Tracked::new(server, a.clone());
        let idle = 150 * MS;
        let t0 = Instant::now();
        let traffic = async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut b = [0u8; 1];
            // Six bytes 50 ms apart: 300 ms with no gap as long as the idle timeout.
            for _ in 0..6 {
                tokio::time::sleep(50 * MS).await;
                client.write_all(b"x").await.unwrap();
                tracked.read_exact(&mut b).await.unwrap();
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            why = a.expired(Limits { header: MS, idle, write: idle }) => assert_eq!(why, Expired::Idle),
            () = traffic => unreachable!(),
        }
        assert!(t0.elapsed() >= 300 * MS + idle, "{:?}", t0.elapsed());
    }
}
