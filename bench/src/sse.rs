//! SSE readers for the fan-out mode: plain HTTP/1.1 over TCP (chunked or not), counting
//! `data:` lines that carry the generator's timestamp (`"text":"<µs>"`, as the chat plugin
//! publishes them).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fanout::{Deliveries, FanoutArgs, count};
use crate::run::{Control, Phase, histogram, reached, token};
use crate::sio;

type Reader = tokio::task::JoinHandle<(Histogram<u64>, u64)>;

/// Open `a.subscribers` SSE streams on `url` (each with its own Bearer token) and start
/// reading them.
pub async fn open_readers(
    a: &FanoutArgs,
    url: &str,
    ctl: &Arc<Control>,
    deliveries: &Arc<Deliveries>,
) -> (Vec<Reader>, Vec<String>) {
    let opened: Vec<_> = futures::stream::iter(0..a.subscribers)
        .map(|i| async move {
            let token = token(&a.secret, &format!("sse-{i}"))?;
            open(url, &token).await
        })
        .buffer_unordered(a.concurrency.max(1))
        .collect()
        .await;
    let (mut tasks, mut errors) = (vec![], vec![]);
    for o in opened {
        match o {
            Ok(stream) => tasks.push(tokio::spawn(read(stream, ctl.clone(), deliveries.clone()))),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    (tasks, errors)
}

/// An open SSE response: the socket, bytes already read past the headers, and whether the
/// body is chunked.
pub struct Stream {
    tcp: TcpStream,
    buffered: Vec<u8>,
    chunked: bool,
}

/// `GET url` with `Accept: text/event-stream`; fails unless the answer is `200` with an
/// event-stream content type.
pub async fn open(url: &str, token: &str) -> anyhow::Result<Stream> {
    let rest = url
        .strip_prefix("http://")
        .context("SSE url must start with http://")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut tcp = TcpStream::connect(host)
        .await
        .with_context(|| format!("tcp connect to {host}"))?;
    tcp.set_nodelay(true)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(4096);
    let end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk))
            .await
            .context("timed out waiting for SSE response headers")??;
        if n == 0 {
            bail!("closed before the SSE response headers");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status = head.lines().next().unwrap_or_default().to_owned();
    if !status.contains(" 200") {
        bail!("SSE request answered `{status}`");
    }
    if !head.contains("content-type: text/event-stream") {
        bail!("SSE response is not text/event-stream");
    }
    Ok(Stream {
        chunked: head.contains("transfer-encoding: chunked"),
        buffered: buf[end + 4..].to_vec(),
        tcp,
    })
}

async fn read(
    mut s: Stream,
    ctl: Arc<Control>,
    deliveries: Arc<Deliveries>,
) -> (Histogram<u64>, u64) {
    let mut hist = histogram();
    let mut measured = 0u64;
    let mut raw = std::mem::take(&mut s.buffered);
    let mut body = Vec::<u8>::new();
    let mut dechunk = Dechunk::default();
    let mut phase_rx = ctl.watch();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        if s.chunked {
            dechunk.feed(&mut raw, &mut body);
        } else {
            body.append(&mut raw);
        }
        // Complete lines only; a partial line waits for more bytes.
        let mut start = 0;
        while let Some(nl) = body[start..].iter().position(|&b| b == b'\n') {
            let line = &body[start..start + nl];
            if let Some(data) = line.strip_prefix(b"data:")
                && let Some(ts) = sio::text_timestamp(&String::from_utf8_lossy(data))
            {
                count(&ctl, &deliveries, &mut hist, &mut measured, ts);
            }
            start += nl + 1;
        }
        body.drain(..start);
        let n = tokio::select! {
            n = s.tcp.read(&mut chunk) => n,
            _ = reached(&mut phase_rx, Phase::Abort) => break,
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
    (hist, measured)
}

/// Incremental `Transfer-Encoding: chunked` decoder.
#[derive(Default)]
struct Dechunk {
    state: Chunk,
}

#[derive(Default, Clone, Copy)]
enum Chunk {
    /// Waiting for a `<hex size>[;ext]\r\n` line.
    #[default]
    Size,
    /// This many data bytes to go.
    Data(usize),
    /// The CRLF after a chunk's data.
    Crlf,
}

impl Dechunk {
    /// Move decoded bytes from `raw` to `out`, leaving what is incomplete in `raw`.
    fn feed(&mut self, raw: &mut Vec<u8>, out: &mut Vec<u8>) {
        let mut pos = 0;
        loop {
            match self.state {
                Chunk::Size => {
                    let Some(nl) = find(&raw[pos..], b"\r\n") else {
                        break;
                    };
                    let line = String::from_utf8_lossy(&raw[pos..pos + nl]);
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(hex, 16).unwrap_or(0);
                    pos += nl + 2;
                    if size > 0 {
                        self.state = Chunk::Data(size);
                    }
                }
                Chunk::Data(n) => {
                    let take = n.min(raw.len() - pos);
                    if take == 0 {
                        break;
                    }
                    out.extend_from_slice(&raw[pos..pos + take]);
                    pos += take;
                    self.state = if take == n {
                        Chunk::Crlf
                    } else {
                        Chunk::Data(n - take)
                    };
                }
                Chunk::Crlf => {
                    if raw.len() - pos < 2 {
                        break;
                    }
                    pos += 2;
                    self.state = Chunk::Size;
                }
            }
        }
        raw.drain(..pos);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_across_arbitrary_splits() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let mut d = Dechunk::default();
            let (mut raw, mut out) = (wire[..split].to_vec(), vec![]);
            d.feed(&mut raw, &mut out);
            raw.extend_from_slice(&wire[split..]);
            d.feed(&mut raw, &mut out);
            assert_eq!(out, b"hello, world", "split at {split}");
        }
    }
}
