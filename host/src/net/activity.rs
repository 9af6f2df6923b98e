//! What a connection's watchdog looks at: when a byte last moved, and
//! whether a first request has arrived. [`Tracked`] wraps the TCP stream
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
}

/// Why a watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// No complete first request (or TLS handshake) within the header timeout.
    Header,
    /// No byte either way for the idle timeout.
    Idle,
}

impl Activity {
    pub fn new() -> Self {
        Self {
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = self.since.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// A request head was parsed: the header timeout no longer applies here.
    pub fn served(&self) {
        if !self.served.load(Ordering::Relaxed) {
            self.served.store(true, Ordering::Relaxed);
        }
        self.touch();
    }

    /// Resolves when the connection has broken one of the two timeouts.
    pub async fn expired(&self, header: Duration, idle: Duration) -> Expired {
        loop {
            let last = self.since + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let idle_at = last + idle;
            let header_at = self.since + header;
            let served = self.served.load(Ordering::Relaxed);
            let now = Instant::now();
            if !served && now >= header_at {
                return Expired::Header;
            }
            if now >= idle_at {
                return Expired::Idle;
            }
            let wake = if served {
                idle_at
            } else {
                idle_at.min(header_at)
            };
            tokio::time::sleep_until(wake).await;
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
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
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

    #[tokio::test]
    async fn header_timeout_until_served_then_idle_timeout() {
        let a = Activity::new();
        let t0 = Instant::now();
        assert_eq!(a.expired(30 * MS, 500 * MS).await, Expired::Header);
        assert!(t0.elapsed() < 400 * MS);
        let a = Activity::new();
        a.served();
        let t0 = Instant::now();
        assert_eq!(a.expired(10 * MS, 60 * MS).await, Expired::Idle);
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
            why = a.expired(MS, idle) => assert_eq!(why, Expired::Idle),
            () = traffic => unreachable!(),
        }
        assert!(t0.elapsed() >= 300 * MS + idle, "{:?}", t0.elapsed());
    }
}
