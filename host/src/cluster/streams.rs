//! SSE channels across nodes: one Redis Stream per plugin.
//!
//! A publication is `XADD`ed to `portico:sse:<plugin>`; Redis assigns its id
//! (`<ms>-<seq>`, the same format as local ids), so ids are ordered cluster
//! wide. Every node, the publisher included, reads the streams back with one
//! `XREAD BLOCK` loop on a connection of its own (a blocking read would stall
//! the shared connection) and delivers the entries into its local channel
//! hub: histories are the same on every node, so a client that reconnects to
//! another node resumes with its `Last-Event-ID` and misses nothing. A node
//! that starts, or comes back after Redis was away, reads on from where it
//! was: Streams keep what was published meanwhile (up to their length).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::error::{ClusterError, Result};
use super::redis_conn::{Redis, resp3_url};
use futures::future::BoxFuture;

use crate::channels::{ChannelLog, Delivery, EventId, Hub, LogError, LogStats};

/// How long one `XREAD` waits for new entries before looking for new plugins.
const BLOCK: Duration = Duration::from_millis(1000);
/// Entries one `XREAD` brings per stream at most.
const READ_COUNT: usize = 1000;

/// The Redis side of the channel hub.
pub struct Streams {
    /// Entries kept per stream (`XADD ... MAXLEN ~`): the cluster-wide history.
    max_len: usize,
    /// Appends waiting for Redis, sent in pipelined batches.
    outbox: mpsc::Sender<Append>,
    /// Publications appended (they reach every node).
    published: AtomicU64,
    /// Publications refused because the outbox was full.
    overloaded: AtomicU64,
    /// Reads that found entries trimmed before this node read them.
    gaps: AtomicU64,
}

/// One `XADD` waiting in the outbox, with where its id goes.
struct Append {
    cmd: redis::Cmd,
    reply: oneshot::Sender<Result<EventId>>,
}

/// Appends sent per round trip at most.
const BATCH: usize = 256;

fn key(plugin: &str) -> String {
    format!("portico:sse:{plugin}")
}

impl Streams {
    /// `outbox`: appends that may wait for Redis; past it, publications are
    /// refused with [`ClusterError::Overloaded`].
    pub fn new(redis: Redis, max_len: usize, outbox: usize) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(outbox.max(1));
        let streams = Arc::new(Self {
            max_len: max_len.max(1),
            outbox: tx,
            published: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
        });
        tokio::spawn(send_batches(redis, rx, Arc::downgrade(&streams)));
        streams
    }

    /// Append a publication; Redis assigns its id. Local subscribers get it
    /// from the reader, like every other node's. Refused at once, never
    /// queued without bound, when the outbox is full.
    pub async fn append(
        &self,
        plugin: &str,
        channel: &str,
        event: &str,
        data: &str,
        except: Option<&str>,
    ) -> Result<EventId> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(key(plugin))
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_len)
            .arg("*")
            .arg("c")
            .arg(channel)
            .arg("e")
            .arg(event)
            .arg("d")
            .arg(data);
        if let Some(socket) = except {
            cmd.arg("x").arg(socket);
        }
        let (reply, id) = oneshot::channel();
        if self.outbox.try_send(Append { cmd, reply }).is_err() {
            self.overloaded.fetch_add(1, Ordering::Relaxed);
            return Err(ClusterError::Overloaded);
        }
        id.await
            .unwrap_or(Err(ClusterError::Redis("the stream writer stopped".into())))
    }

    /// Read every plugin's stream into `hub` until the hub is gone.
    ///
    /// `hub` must publish through these streams (see [`Hub::with_log`]).
    pub async fn spawn_reader(self: Arc<Self>, url: &str, hub: Weak<Hub>) -> Result<()> {
        let client =
            redis::Client::open(resp3_url(url)?).map_err(|e| ClusterError::Url(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(BLOCK + Duration::from_secs(2)))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        tokio::spawn(read_loop(self, conn, hub));
        Ok(())
    }
}

impl ChannelLog for Streams {
    fn append<'a>(
        &'a self,
        plugin: &'a str,
        channel: &'a str,
        event: &'a str,
        data: &'a str,
        except: Option<&'a str>,
    ) -> BoxFuture<'a, std::result::Result<EventId, LogError>> {
        Box::pin(async move {
            Streams::append(self, plugin, channel, event, data, except)
                .await
                .map_err(|e| match e {
                    ClusterError::Overloaded => LogError::Overloaded,
                    e => LogError::Unavailable(e.to_string()),
                })
        })
    }

    fn stats(&self) -> LogStats {
        LogStats {
            published: self.published.load(Ordering::Relaxed),
            overloaded: self.overloaded.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
        }
    }
}

/// Send the outbox in pipelined batches: one round trip for up to [`BATCH`]
/// appends, each told its id (or the error).
async fn send_batches(redis: Redis, mut rx: mpsc::Receiver<Append>, streams: Weak<Streams>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for a in &batch {
            pipe.add_command(a.cmd.clone());
        }
        let ids: Result<Vec<String>> = redis.run_pipe(&pipe).await;
        if let (Ok(ids), Some(s)) = (&ids, streams.upgrade()) {
            s.published.fetch_add(ids.len() as u64, Ordering::Relaxed);
        }
        let mut ids = ids.map(Vec::into_iter);
        for a in batch.drain(..) {
            let id = match &mut ids {
                Ok(ids) => ids.next().map_or_else(
                    || Err(ClusterError::Redis("XADD gave no id".into())),
                    |id| {
                        id.parse()
                            .map_err(|_| ClusterError::Redis(format!("XADD returned {id:?}")))
                    },
                ),
                Err(e) => Err(e.clone()),
            };
            let _ = a.reply.send(id);
        }
    }
}

/// Per plugin, the last id delivered (`None`: not started yet).
type Cursors = HashMap<String, String>;

async fn read_loop(streams: Arc<Streams>, mut conn: ConnectionManager, hub: Weak<Hub>) {
    let mut cursors = Cursors::new();
    let mut failing = false;
    loop {
        let Some(hub) = hub.upgrade() else { return };
        let result = read_once(&streams, &mut conn, &hub, &mut cursors).await;
        drop(hub);
        match result {
            Ok(()) if failing => {
                tracing::info!("SSE stream reader caught up with Redis again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!("SSE stream reader: {e}; retrying");
                    failing = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

async fn read_once(
    streams: &Streams,
    conn: &mut ConnectionManager,
    hub: &Hub,
    cursors: &mut Cursors,
) -> Result<()> {
    // Plugins met for the first time start from the stream's tail history,
    // so this node can resume clients right away.
    for plugin in hub.plugins() {
        if let std::collections::hash_map::Entry::Vacant(slot) = cursors.entry(plugin) {
            let cursor = backfill(streams, conn, hub, slot.key()).await?;
            slot.insert(cursor);
        }
    }
    if cursors.is_empty() {
        // No plugin yet: look again soon, so a new one's history loads early.
        tokio::time::sleep(Duration::from_millis(50)).await;
        return Ok(());
    }
    let (plugins, ids): (Vec<&String>, Vec<&String>) = cursors.iter().unzip();
    let keys: Vec<String> = plugins.iter().map(|p| key(p)).collect();
    let opts = StreamReadOptions::default()
        .block(BLOCK.as_millis() as usize)
        .count(READ_COUNT);
    let reply: Option<StreamReadReply> =
        redis::AsyncCommands::xread_options(conn, &keys, &ids, &opts).await?;
    for stream in reply.map(|r| r.keys).unwrap_or_default() {
        let Some(plugin) = stream.key.strip_prefix("portico:sse:").map(str::to_owned) else {
            continue;
        };
        let space = hub.space(&plugin);
        // A full read means this node is behind: entries after its cursor may
        // have been trimmed before it got to them (only possible when it is
        // more than the stream's length behind).
        if stream.ids.len() >= READ_COUNT.min(streams.max_len)
            && let Some(cursor) = cursors.get(&plugin)
            && let Some(floor) = trimmed_past(conn, &stream.key, cursor).await?
        {
            streams.gaps.fetch_add(1, Ordering::Relaxed);
            space.stream_gap(floor);
        }
        space.deliver(stream.ids.iter().filter_map(delivery));
        if let Some(last) = stream.ids.last() {
            cursors.insert(plugin, last.id.clone());
        }
    }
    Ok(())
}

/// Whether entries after `cursor` were trimmed before this node read them;
/// if so, the id before the oldest entry the stream still holds (the new
/// floor). The stream trims from its oldest end, so a cursor at or after its
/// first entry misses nothing; one before it may have missed entries (if only
/// the cursor's own entry went, nothing was missed, but that cannot be told
/// apart: it counts as a gap, to be safe). A node that read nothing yet
/// (`0-0`) missed entries if any were ever trimmed.
async fn trimmed_past(
    conn: &mut ConnectionManager,
    key: &str,
    cursor: &str,
) -> Result<Option<EventId>> {
    let mut info: HashMap<String, redis::Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .query_async(conn)
        .await?;
    let first = match info.remove("first-entry") {
        Some(redis::Value::Array(entry)) => entry
            .into_iter()
            .next()
            .and_then(|id| redis::from_redis_value::<String>(id).ok())
            .and_then(|id| id.parse::<EventId>().ok()),
        _ => None,
    };
    let Some(first) = first else {
        return Ok(None);
    };
    let missed = if cursor == "0-0" {
        let count = |v: Option<redis::Value>| {
            v.and_then(|v| redis::from_redis_value::<u64>(v).ok())
                .unwrap_or(0)
        };
        count(info.remove("entries-added")) > count(info.remove("length"))
    } else {
        cursor.parse::<EventId>().is_ok_and(|c| c < first)
    };
    Ok(missed.then(|| first.predecessor()))
}

/// Load the newest `max_len` entries of a plugin's stream into its history;
/// returns the id to read on from.
async fn backfill(
    streams: &Streams,
    conn: &mut ConnectionManager,
    hub: &Hub,
    plugin: &str,
) -> Result<String> {
    let reply: StreamRangeReply =
        redis::AsyncCommands::xrevrange_count(conn, key(plugin), "+", "-", streams.max_len).await?;
    let space = hub.space(plugin);
    let mut entries = reply.ids;
    entries.reverse();
    // A stream shorter than its cap was never trimmed: this node now knows
    // everything ever published. Otherwise a client resuming from before the
    // oldest entry held gets an explicit resync.
    let first = entries.first().and_then(|e| e.id.parse::<EventId>().ok());
    let floor = match first {
        Some(first) if entries.len() >= streams.max_len => first.predecessor(),
        _ => EventId::new(0, 0),
    };
    space.lower_floor(floor);
    space.deliver(entries.iter().filter_map(delivery));
    Ok(entries
        .last()
        .map_or_else(|| "0-0".to_owned(), |e| e.id.clone()))
}

/// A stream entry as the hub takes it; `None` (and a warning) if malformed.
fn delivery(entry: &StreamId) -> Option<Delivery> {
    let (Ok(id), Some(channel), Some(event), Some(data)) = (
        entry.id.parse::<EventId>(),
        entry.get::<String>("c"),
        entry.get::<String>("e"),
        entry.get::<String>("d"),
    ) else {
        tracing::warn!(id = %entry.id, "skipping a malformed SSE stream entry");
        return None;
    };
    Some(Delivery {
        id,
        channel,
        event,
        data,
        except: entry.get::<String>("x"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::{HistoryLimits, HubSettings};
    use crate::cluster::test_redis::TestRedis;

    async fn xadd(conn: &mut ConnectionManager, text: &str) -> String {
        redis::cmd("XADD")
            .arg(key("p"))
            .arg("MAXLEN")
            .arg(2)
            .arg("*")
            .arg("c")
            .arg("room")
            .arg("e")
            .arg("message")
            .arg("d")
            .arg(format!("{text:?}"))
            .query_async(conn)
            .await
            .expect("XADD")
    }

    /// A node's side of the cluster stream (MAXLEN 2): its streams, a
    /// connection of its own to read them, and a hub whose plugin `p` has a
    /// reader of channel `room`.
    struct Node {
        _redis: TestRedis,
        streams: Arc<Streams>,
        conn: ConnectionManager,
        hub: Hub,
        space: Arc<crate::channels::Space>,
        reader: crate::channels::Subscription,
    }

    async fn node() -> Node {
        let redis = TestRedis::start();
        let streams = Streams::new(redis.connect().await, 2, 16);
        let client = redis::Client::open(resp3_url(&redis.url).unwrap()).unwrap();
        let conn = ConnectionManager::new(client).await.unwrap();
        let settings = HubSettings {
            history: HistoryLimits {
                size: 100,
                max_age: Duration::from_secs(60),
                max_bytes: usize::MAX,
            },
            buffer: 100,
            socket_lag_bytes: 1 << 20,
        };
        let log: Arc<dyn ChannelLog> = streams.clone();
        let hub = Hub::with_log(settings, Some(log));
        let space = hub.space("p");
        let reader = space.subscribe(&["room".to_owned()], None).unwrap();
        Node {
            _redis: redis,
            streams,
            conn,
            hub,
            space,
            reader,
        }
    }

    #[tokio::test]
    async fn a_node_behind_a_trimmed_stream_cuts_its_readers_off_instead_of_skipping_silently() {
        let Node {
            _redis,
            streams,
            mut conn,
            hub,
            space,
            mut reader,
        } = node().await;
        // This node read up to `first`; five more are added, of which the
        // stream (MAXLEN 2) keeps the last two.
        let first = xadd(&mut conn, "0").await;
        let mut cursors = Cursors::from([("p".to_owned(), first)]);
        for i in 1..=5 {
            xadd(&mut conn, &i.to_string()).await;
        }
        read_once(&streams, &mut conn, &hub, &mut cursors)
            .await
            .unwrap();
        assert_eq!(streams.stats().gaps, 1);
        // The reader was cut off (it resumes and is told `resync`), not fed
        // entries 4 and 5 as if 1-3 had never existed.
        assert!(reader.live.recv().await.is_none());
        assert_eq!(space.cut_off.load(Ordering::Relaxed), 1);
        // Caught up now: the next read finds no gap.
        xadd(&mut conn, "6").await;
        read_once(&streams, &mut conn, &hub, &mut cursors)
            .await
            .unwrap();
        assert_eq!(streams.stats().gaps, 1);
    }

    #[tokio::test]
    async fn a_node_that_keeps_up_sees_no_gap_however_much_the_stream_trims() {
        let Node {
            _redis,
            streams,
            mut conn,
            hub,
            mut reader,
            ..
        } = node().await;
        let first = xadd(&mut conn, "0").await;
        let mut cursors = Cursors::from([("p".to_owned(), first)]);
        for i in 1..=6 {
            xadd(&mut conn, &i.to_string()).await;
            read_once(&streams, &mut conn, &hub, &mut cursors)
                .await
                .unwrap();
        }
        assert_eq!(streams.stats().gaps, 0);
        for i in 1..=6 {
            assert_eq!(reader.live.recv().await.unwrap().data, format!("\"{i}\""));
        }
    }
}
