//! A lingering close. When the server closes a connection whose peer is still
//! sending (a request refused before its body or head was read: `431`, a
//! body over the limit), closing a socket with unread input makes the kernel
//! answer with a reset, and the peer may lose the response it has not read
//! yet: it sees `ECONNRESET` instead of the error. So at shutdown the write
//! side is closed first, then what the peer still sends is read and thrown
//! away until it closes too, for at most [`LINGER`] and [`LINGER_BYTES`]
//! (as web servers do; Apache's lingering close).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest a closing connection waits for its peer to stop sending.
pub const LINGER: Duration = Duration::from_secs(2);
/// Most a closing connection reads and discards.
pub const LINGER_BYTES: usize = 1 << 20;

pub struct Lingering<T> {
    inner: T,
    closing: Option<Closing>,
}

struct Closing {
    until: Pin<Box<tokio::time::Sleep>>,
    left: usize,
    write_shut: bool,
}

impl<T> Lingering<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            closing: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Lingering<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let closing = this.closing.get_or_insert_with(|| Closing {
            until: Box::pin(tokio::time::sleep(LINGER)),
            left: LINGER_BYTES,
            write_shut: false,
        });
        if !closing.write_shut {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            closing.write_shut = true;
        }
        let mut scratch = [0u8; 8192];
        loop {
            if closing.left == 0 || closing.until.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    closing.left = closing.left.saturating_sub(buf.filled().len());
                }
                // The peer is gone either way.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_closing_connection_drains_what_the_peer_still_sends_then_ends() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut ours = Lingering::new(ours);
        // The peer is still sending when the server answers and closes.
        let sender = tokio::spawn(async move {
            theirs.write_all(&[b'x'; 100_000]).await.unwrap();
            let mut answer = Vec::new();
            theirs.read_to_end(&mut answer).await.unwrap();
            theirs.shutdown().await.unwrap();
            answer
        });
        ours.write_all(b"HTTP/1.1 431\r\n\r\n").await.unwrap();
        tokio::time::timeout(LINGER / 2, ours.shutdown())
            .await
            .expect("drained as soon as the peer closed")
            .unwrap();
        assert_eq!(sender.await.unwrap(), b"HTTP/1.1 431\r\n\r\n");
    }
}
