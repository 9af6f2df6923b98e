//! The channel hub: per plugin, one id clock, the channels' histories and the
//! SSE subscribers, all behind one lock.
//!
//! Publishing assigns the id and hands the event to every subscriber's queue
//! under that lock, so each subscriber receives its events in id order, even
//! across channels. Subscribing registers the queue and snapshots the history
//! under the same lock, so the backlog and the live events neither overlap nor
//! leave a gap. Queues are bounded: a subscriber whose queue is full is cut
//! off (its queue closes) instead of slowing the publisher; it reconnects and
//! resumes from history.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};

use super::error::{ChannelError, Result};
use super::history::{Entry, History, HistoryLimits, Since};
use super::id::{EventId, IdClock};
use super::log::{ChannelLog, LogError, LogStats};
use super::sockets::{Catchup, Gap, Offer, Progress, Rooms, SinkError, SocketSink, SocketSub};

/// Limits shared by every plugin's channels.
#[derive(Debug, Clone, Copy)]
pub struct HubSettings {
    pub history: HistoryLimits,
    /// Events queued per subscriber before it is cut off as too slow.
    pub buffer: usize,
    /// Bytes of channel events a socket with a full send buffer may fall
    /// behind by before it is dropped as a slow consumer.
    pub socket_lag_bytes: usize,
}

/// Events of one stream read delivered under one hold of a space's lock:
/// enough that each socket visit carries many (the cost of a visit is per
/// socket, not per event), few enough that with a thousand sockets the lock
/// is held for milliseconds.
const DELIVER_SLICE: usize = 64;

/// Every plugin's channels on this node.
pub struct Hub {
    settings: HubSettings,
    /// Cluster mode: publications go through the shared log.
    log: Option<Arc<dyn ChannelLog>>,
    spaces: Mutex<HashMap<String, Arc<Space>>>,
    closing: watch::Sender<bool>,
    /// Open SSE streams per address and per subject.
    caps: Arc<super::StreamCaps>,
}

impl Hub {
    pub fn new(settings: HubSettings) -> Self {
        Self::with_log(settings, None)
    }

    /// A hub whose publications go through a shared log (cluster mode).
    pub fn with_log(settings: HubSettings, log: Option<Arc<dyn ChannelLog>>) -> Self {
        Self {
            settings,
            log,
            spaces: Mutex::default(),
            closing: watch::Sender::new(false),
            caps: super::StreamCaps::new(0, 0),
        }
    }

    /// Cap open streams per address and per subject (0: no cap).
    pub fn with_stream_caps(mut self, per_ip: usize, per_subject: usize) -> Self {
        self.caps = super::StreamCaps::new(per_ip, per_subject);
        self
    }

    /// The caps every new SSE stream must pass.
    pub fn stream_caps(&self) -> &Arc<super::StreamCaps> {
        &self.caps
    }

    /// The channels of `plugin`; created on first use.
    pub fn space(&self, plugin: &str) -> Arc<Space> {
        let mut spaces = self.spaces.lock().unwrap();
        spaces
            .entry(plugin.to_owned())
            .or_insert_with(|| {
                Arc::new_cyclic(|me| {
                    let mut space =
                        Space::new(plugin, self.settings, self.closing.subscribe(), now_ms());
                    if self.log.is_some() {
                        space.join_cluster();
                    }
                    space.log = self.log.clone();
                    space.me = me.clone();
                    space
                })
            })
            .clone()
    }

    /// What the shared log did so far (cluster mode; for `/metrics`).
    pub fn log_stats(&self) -> Option<LogStats> {
        self.log.as_ref().map(|log| log.stats())
    }

    /// The plugins with channels on this node.
    pub fn plugins(&self) -> Vec<String> {
        self.spaces.lock().unwrap().keys().cloned().collect()
    }

    /// Every plugin's channels created so far (for metrics).
    pub fn spaces(&self) -> Vec<Arc<Space>> {
        self.spaces.lock().unwrap().values().cloned().collect()
    }

    /// End every subscription (their streams finish) and refuse new ones.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`close`](Hub::close) was called.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// Expire old history and forget idle channels.
    pub fn sweep(&self) {
        let spaces: Vec<_> = self.spaces.lock().unwrap().values().cloned().collect();
        let now = now_ms();
        for space in spaces {
            space.sweep(now);
        }
    }

    /// Sweep every `every` while the hub is alive.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) {
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match hub.upgrade() {
                    Some(hub) => hub.sweep(),
                    None => return,
                }
            }
        });
    }
}

/// One plugin's channels.
pub struct Space {
    plugin: String,
    settings: HubSettings,
    inner: Mutex<Inner>,
    closing: watch::Receiver<bool>,
    /// SSE subscribers cut off because their queue was full.
    pub cut_off: AtomicU64,
    /// Socket.IO sockets disconnected because their send buffer was full.
    pub slow_sockets: AtomicU64,
    /// Cluster mode: publications go through the shared log.
    log: Option<Arc<dyn ChannelLog>>,
    /// Cluster mode: `false` until the stream's history was loaded.
    ready: watch::Sender<bool>,
    /// Itself, for the task that sends lagging sockets what they are owed.
    me: std::sync::Weak<Space>,
}

struct Inner {
    clock: IdClock,
    /// Nothing before this id is known here (the space started, or channels
    /// holding later ids were forgotten): a reader behind it must resync.
    floor: EventId,
    channels: HashMap<Arc<str>, Channel>,
    subscribers: HashMap<u64, Subscriber>,
    next_subscriber: u64,
    /// Socket.IO sockets, by socket id.
    sockets: HashMap<Arc<str>, SocketSub>,
    /// Cluster mode: the newest stream id delivered. Entries at or below it
    /// were seen already; the local clock plays no part, so neither the
    /// node's start time nor its clock skew can hide an entry.
    stream_last: Option<EventId>,
    /// Sockets whose send buffer filled up, catching up from their queue.
    lagging: HashSet<Arc<str>>,
    /// A task is sending lagging sockets what they are owed.
    draining: bool,
}

#[derive(Default)]
struct Channel {
    history: History,
    subscribers: HashSet<u64>,
    sockets: HashSet<Arc<str>>,
}

struct Subscriber {
    tx: mpsc::Sender<Arc<Entry>>,
    channels: Vec<Arc<str>>,
}

/// An event whose id was assigned elsewhere (the cluster's stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: EventId,
    pub channel: String,
    pub event: String,
    /// One JSON value, compact.
    pub data: String,
    /// The Socket.IO socket that published it without wanting it back.
    pub except: Option<String>,
}

/// The channels a reader resuming from an id cannot be served from history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resync {
    /// A fresh id: after the backlog, before every live event.
    pub id: EventId,
    pub channels: Vec<String>,
}

/// A live subscription. Dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    space: Arc<Space>,
    /// Missed events, in id order, to send before anything live.
    pub backlog: Vec<Arc<Entry>>,
    /// Set when some channel cannot be resumed.
    pub resync: Option<Resync>,
    /// Live events, in id order. Closes when the subscriber is cut off.
    pub live: mpsc::Receiver<Arc<Entry>>,
    /// Resolves when the node shuts down.
    pub closing: watch::Receiver<bool>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.space.unsubscribe(self.id);
    }
}

impl Space {
    fn new(
        plugin: &str,
        settings: HubSettings,
        closing: watch::Receiver<bool>,
        now_ms: u64,
    ) -> Self {
        let floor = EventId::new(now_ms, 0);
        Self {
            plugin: plugin.to_owned(),
            settings,
            inner: Mutex::new(Inner {
                clock: IdClock::starting_after(floor),
                floor,
                channels: HashMap::new(),
                subscribers: HashMap::new(),
                next_subscriber: 0,
                sockets: HashMap::new(),
                stream_last: None,
                lagging: HashSet::new(),
                draining: false,
            }),
            closing,
            cut_off: AtomicU64::new(0),
            slow_sockets: AtomicU64::new(0),
            log: None,
            ready: watch::Sender::new(true),
            me: std::sync::Weak::new(),
        }
    }

    /// Ids come from the cluster's stream: deduplicate on the stream's ids.
    fn join_cluster(&mut self) {
        self.inner.get_mut().unwrap().stream_last = Some(EventId::new(0, 0));
        self.ready.send_replace(false);
    }

    /// Wait, up to `max`, until this node holds the channels' history (in
    /// cluster mode it is loaded from the stream once the space exists): a
    /// reader resuming on a node that just started is served, not resynced.
    pub async fn wait_ready(&self, max: std::time::Duration) {
        let mut ready = self.ready.subscribe();
        let _ = tokio::time::timeout(max, ready.wait_for(|r| *r)).await;
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Publish `event` with `data` to `channel`'s subscribers and history.
    ///
    /// In cluster mode the event goes to the plugin's Redis Stream, which
    /// assigns its id, and comes back to every node (this one included)
    /// through the stream reader. While Redis is away it is delivered here
    /// only, with a local id: local readers keep getting events.
    pub async fn publish(
        &self,
        channel: &str,
        event: &str,
        data: &serde_json::Value,
        except: Option<&str>,
    ) -> Result<EventId> {
        if let Some(log) = &self.log {
            check_publication(channel, event)?;
            if *self.closing.borrow() {
                return Err(ChannelError::Closed);
            }
            match log
                .append(&self.plugin, channel, event, &data.to_string(), except)
                .await
            {
                Ok(id) => return Ok(id),
                // Refused, not delayed: the sender learns it.
                Err(LogError::Overloaded) => return Err(ChannelError::Overloaded),
                Err(e) => {
                    tracing::warn!(plugin = %self.plugin, channel, "SSE publish stays on this node: {e}")
                }
            }
        }
        self.publish_at(now_ms(), channel, event, data, except)
    }

    /// Deliver events whose ids were assigned elsewhere (one read of the
    /// cluster's stream), in id order. Ids already seen are ignored, so
    /// overlapping reads are harmless.
    ///
    /// Consecutive events of one channel reach each socket together: the
    /// socket is looked up once and gets them all before the next socket,
    /// instead of a thousand sockets being visited once per event. A node
    /// that fell behind reads hundreds of entries at once, so its catching
    /// up costs less per event, not more. The lock is let go every
    /// [`DELIVER_SLICE`] events, so a join or a subscription on another
    /// worker waits for a slice, not for the whole read.
    pub fn deliver(&self, batch: impl IntoIterator<Item = Delivery>) {
        let mut batch = batch.into_iter().peekable();
        while batch.peek().is_some() {
            let now = now_ms();
            let mut guard = self.inner.lock().unwrap();
            let inner = &mut *guard;
            let mut run: Vec<Arc<Entry>> = Vec::new();
            for d in batch.by_ref().take(DELIVER_SLICE) {
                match &mut inner.stream_last {
                    Some(last) if d.id <= *last => continue,
                    Some(last) => *last = d.id,
                    None if d.id <= inner.clock.last() => continue,
                    None => {}
                }
                inner.clock.observe(d.id);
                let except = d.except.map(Arc::from);
                let entry = self.record(inner, now, d.id, &d.channel, &d.event, d.data, except);
                if run.last().is_some_and(|last| last.channel != entry.channel) {
                    self.push_to_sockets(inner, &run);
                    run.clear();
                }
                run.push(entry);
            }
            self.push_to_sockets(inner, &run);
        }
    }

    /// The cluster's stream dropped entries up to `upto` before this node
    /// read them (it fell further behind than the stream's length). Nobody
    /// may resume here from before `upto`, and every reader and socket may
    /// have missed events it cannot be told about one by one: each is cut
    /// off to resume, so the loss is seen (SSE: `resync`; Socket.IO:
    /// `recovered` false), never silent.
    pub fn stream_gap(&self, upto: EventId) {
        let mut guard = self.inner.lock().unwrap();
        let inner = &mut *guard;
        inner.floor = inner.floor.max(upto);
        let readers: Vec<u64> = inner.subscribers.keys().copied().collect();
        for id in readers {
            inner.remove_subscriber(id);
            self.cut_off.fetch_add(1, Ordering::Relaxed);
        }
        let sockets: Vec<Arc<str>> = inner
            .sockets
            .iter()
            .filter(|(_, s)| !s.stalled && !s.channels.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        for id in sockets {
            self.drop_slow_socket(inner, &id);
        }
        tracing::warn!(plugin = %self.plugin, upto = %upto, "this node fell behind the cluster stream: its readers were cut off to resume");
    }

    /// Let readers resume from as far back as `floor` (the cluster stream
    /// holds history from before this node started).
    pub fn lower_floor(&self, floor: EventId) {
        let mut inner = self.inner.lock().unwrap();
        inner.floor = inner.floor.min(floor);
        drop(inner);
        self.ready.send_replace(true);
    }

    /// Store an event in its channel's history and hand it to the channel's
    /// SSE subscribers; a subscriber whose queue is full is cut off.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        inner: &mut Inner,
        now_ms: u64,
        id: EventId,
        channel: &str,
        event: &str,
        data: String,
        except: Option<Arc<str>>,
    ) -> Arc<Entry> {
        let limits = self.settings.history;
        let (name, ch) = match inner.channels.get_key_value(channel) {
            Some((name, _)) => {
                let name = name.clone();
                let ch = inner.channels.get_mut(channel).unwrap();
                (name, ch)
            }
            None => {
                let name: Arc<str> = Arc::from(channel);
                (name.clone(), inner.channels.entry(name).or_default())
            }
        };
        let entry = Arc::new(Entry {
            id,
            channel: name,
            event: event.to_owned(),
            data,
            at_ms: now_ms,
            except,
            encoded: Default::default(),
        });
        ch.history.expire(now_ms, limits);
        ch.history.push(entry.clone(), limits);
        let mut too_slow = Vec::new();
        for sub in &ch.subscribers {
            if let Some(s) = inner.subscribers.get(sub)
                && let Err(mpsc::error::TrySendError::Full(_)) = s.tx.try_send(entry.clone())
            {
                too_slow.push(*sub);
            }
        }
        for sub in too_slow {
            // Dropping the sender closes the queue: the reader drains what it
            // has, its stream ends, and it resumes from history.
            inner.remove_subscriber(sub);
            self.cut_off.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(plugin = %self.plugin, subscriber = sub, "slow SSE reader cut off");
        }
        entry
    }

    /// Hand `run`, consecutive events of one channel in id order, to the
    /// sockets in that channel, each socket all of them in a row. A socket
    /// whose buffer is full catches up from a queue of its own (bursts, a
    /// reader briefly behind); past `socket_lag_bytes` it is dropped from
    /// every channel and told to go (`slow_consumer`): nothing is skipped
    /// silently, and it resumes from history.
    fn push_to_sockets(&self, inner: &mut Inner, run: &[Arc<Entry>]) {
        let Some(channel) = run.first().map(|e| &e.channel) else {
            return;
        };
        let Some(ch) = inner.channels.get(channel) else {
            return;
        };
        let (mut slow, mut gone, mut lagging) = (Vec::new(), Vec::new(), Vec::new());
        for id in &ch.sockets {
            let Some(sub) = inner.sockets.get_mut(id) else {
                continue;
            };
            let Some(after) = sub.due_after(channel) else {
                continue;
            };
            for entry in run {
                if entry.id <= after || entry.except.as_deref() == Some(&**id) {
                    continue;
                }
                match sub.offer(entry, self.settings.socket_lag_bytes) {
                    Offer::Taken => {}
                    Offer::Lagging => lagging.push(id.clone()),
                    Offer::Slow => {
                        slow.push(id.clone());
                        break;
                    }
                    Offer::Closed => {
                        gone.push(id.clone());
                        break;
                    }
                }
            }
        }
        if !lagging.is_empty() {
            inner.lagging.extend(lagging);
            self.start_draining(inner);
        }
        for id in slow {
            self.drop_slow_socket(inner, &id);
        }
        for id in gone {
            inner.socket_closed(&id);
        }
    }

    /// Start the task that sends lagging sockets what they are owed, unless
    /// it runs (outside a runtime, in unit tests, [`replay`](Space::replay)
    /// does the same for one socket).
    fn start_draining(&self, inner: &mut Inner) {
        if inner.draining {
            return;
        }
        if let (Ok(rt), Some(me)) = (tokio::runtime::Handle::try_current(), self.me.upgrade()) {
            inner.draining = true;
            rt.spawn(me.drain_lagging());
        }
    }

    /// Every millisecond, send each lagging socket what its buffer has room
    /// for; ends when no socket lags. One task per space, not per socket:
    /// a thousand sockets behind a burst cost one wake-up per round.
    async fn drain_lagging(self: Arc<Self>) {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let mut guard = self.inner.lock().unwrap();
            let inner = &mut *guard;
            let ids: Vec<Arc<str>> = inner.lagging.iter().cloned().collect();
            for id in ids {
                if inner.catch_up(&id) == Progress::Done {
                    inner.lagging.remove(&id);
                }
            }
            if inner.lagging.is_empty() {
                inner.draining = false;
                return;
            }
        }
    }

    fn drop_slow_socket(&self, inner: &mut Inner, id: &str) {
        if let Some(sub) = inner.sockets.get_mut(id) {
            sub.stalled = true;
            sub.replay = None;
            self.slow_sockets.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(plugin = %self.plugin, socket = id, "slow Socket.IO consumer dropped");
            sub.sink.slow_consumer();
        }
    }

    /// Register a socket (no channels yet). Returns the space's position:
    /// every later event sorts after it.
    pub fn attach(&self, id: &str, sink: Arc<dyn SocketSink>) -> EventId {
        let mut inner = self.inner.lock().unwrap();
        let position = inner.position();
        inner.sockets.insert(
            Arc::from(id),
            SocketSub {
                sink,
                channels: HashMap::new(),
                replay: None,
                stalled: false,
            },
        );
        position
    }

    /// The socket joins `channel`: it gets the channel's events from now on.
    pub fn join(&self, id: &str, channel: &str) {
        let mut guard = self.inner.lock().unwrap();
        let inner = &mut *guard;
        let position = inner.position();
        let Some(key) = inner.sockets.get_key_value(id).map(|(k, _)| k.clone()) else {
            return;
        };
        let name = match inner.channels.get_key_value(channel) {
            Some((name, _)) => name.clone(),
            None => Arc::from(channel),
        };
        if let Some(sub) = inner.sockets.get_mut(id) {
            sub.channels.entry(name.clone()).or_insert(position);
        }
        inner.channels.entry(name).or_default().sockets.insert(key);
    }

    pub fn leave(&self, id: &str, channel: &str) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(sub) = inner.sockets.get_mut(id) {
            sub.channels.remove(channel);
        }
        if let Some(ch) = inner.channels.get_mut(channel) {
            ch.sockets.remove(id);
        }
    }

    /// Unregister a socket; returns its channels with the id each had
    /// everything up to, for a later [`restore`](Space::restore).
    pub fn detach(&self, id: &str) -> Option<Rooms> {
        let sub = self.inner.lock().unwrap().remove_socket(id)?;
        Some(
            sub.channels
                .into_iter()
                .map(|(c, after)| (c.to_string(), after))
                .collect(),
        )
    }

    /// A socket's channels, each with the id it is due events after.
    pub fn rooms(&self, id: &str) -> Rooms {
        let inner = self.inner.lock().unwrap();
        inner.sockets.get(id).map_or_else(Vec::new, |sub| {
            sub.channels
                .iter()
                .map(|(c, after)| (c.to_string(), *after))
                .collect()
        })
    }

    /// Whether [`restore`](Space::restore) could serve these rooms now.
    pub fn can_restore(&self, rooms: &Rooms, offset: Option<EventId>) -> Result<(), Gap> {
        let now = now_ms();
        let mut inner = self.inner.lock().unwrap();
        inner.backlog(now, self.settings.history, rooms, offset, None)?;
        Ok(())
    }

    /// Register a socket restoring a previous session: it rejoins `rooms`,
    /// and every event of them after `offset` (or after it joined, when the
    /// client had no offset) is queued for it before any new one. Call
    /// [`replay`](Space::replay) to send them.
    pub fn restore(
        &self,
        id: &str,
        sink: Arc<dyn SocketSink>,
        rooms: &Rooms,
        offset: Option<EventId>,
    ) -> Result<(), Gap> {
        let now = now_ms();
        let mut guard = self.inner.lock().unwrap();
        let inner = &mut *guard;
        let backlog = inner.backlog(now, self.settings.history, rooms, offset, Some(id))?;
        let key: Arc<str> = Arc::from(id);
        // Its queue is sent by `replay`, after the CONNECT reply, not by the drainer.
        inner.lagging.remove(id);
        let mut channels = HashMap::new();
        for (room, after) in rooms {
            let after = offset.map_or(*after, |o| o.max(*after));
            let name = match inner.channels.get_key_value(room.as_str()) {
                Some((name, _)) => name.clone(),
                None => Arc::from(room.as_str()),
            };
            inner
                .channels
                .entry(name.clone())
                .or_default()
                .sockets
                .insert(key.clone());
            channels.insert(name, after);
        }
        let sub = SocketSub {
            sink,
            channels,
            replay: Some(Catchup::new(backlog, self.settings.socket_lag_bytes)),
            stalled: false,
        };
        inner.sockets.insert(key, sub);
        Ok(())
    }

    /// Send a restored socket what it missed, then switch it to live
    /// delivery. Waits while its buffer is full (the backlog may be larger
    /// than the buffer), up to the replay limit.
    pub async fn replay(&self, id: &str) {
        while self.inner.lock().unwrap().catch_up(id) == Progress::Pending {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    fn publish_at(
        &self,
        now_ms: u64,
        channel: &str,
        event: &str,
        data: &serde_json::Value,
        except: Option<&str>,
    ) -> Result<EventId> {
        check_publication(channel, event)?;
        let data = data.to_string();
        let mut guard = self.inner.lock().unwrap();
        let inner = &mut *guard;
        let id = inner.clock.next(now_ms);
        let except = except.map(Arc::from);
        let entry = self.record(inner, now_ms, id, channel, event, data, except);
        self.push_to_sockets(inner, std::slice::from_ref(&entry));
        Ok(id)
    }

    /// Subscribe to `channels`; with `last`, get the events after it first.
    pub fn subscribe(
        self: &Arc<Self>,
        channels: &[String],
        last: Option<EventId>,
    ) -> Result<Subscription> {
        self.subscribe_at(now_ms(), channels, last)
    }

    fn subscribe_at(
        self: &Arc<Self>,
        now_ms: u64,
        channels: &[String],
        last: Option<EventId>,
    ) -> Result<Subscription> {
        for c in channels {
            check_channel(c)?;
        }
        if *self.closing.borrow() {
            return Err(ChannelError::Closed);
        }
        let limits = self.settings.history;
        let (tx, live) = mpsc::channel(self.settings.buffer.max(1));
        let mut guard = self.inner.lock().unwrap();
        let inner = &mut *guard;
        let id = inner.next_subscriber;
        inner.next_subscriber += 1;
        let mut names = Vec::with_capacity(channels.len());
        let mut backlog = Vec::new();
        let mut gaps = Vec::new();
        for c in channels {
            let name = match inner.channels.get_key_value(c.as_str()) {
                Some((name, _)) => name.clone(),
                None => Arc::from(c.as_str()),
            };
            if names.contains(&name) {
                continue;
            }
            let ch = inner.channels.entry(name.clone()).or_default();
            ch.subscribers.insert(id);
            if let Some(last) = last {
                ch.history.expire(now_ms, limits);
                match ch.history.since(last) {
                    _ if last < inner.floor => gaps.push(c.clone()),
                    Since::Gap => gaps.push(c.clone()),
                    Since::Events(events) => backlog.extend(events),
                }
            }
            names.push(name);
        }
        // One stream carries several channels: merge their backlogs by id.
        backlog.sort_by_key(|e| e.id);
        let resync = (!gaps.is_empty()).then(|| Resync {
            // In cluster mode a local id could sort after later stream ids
            // (a clock ahead of Redis's) and make the reader skip them.
            id: match inner.stream_last {
                Some(last) => last.max(inner.floor),
                None => inner.clock.next(now_ms),
            },
            channels: gaps,
        });
        inner.subscribers.insert(
            id,
            Subscriber {
                tx,
                channels: names,
            },
        );
        drop(guard);
        Ok(Subscription {
            id,
            space: self.clone(),
            backlog,
            resync,
            live,
            closing: self.closing.clone(),
        })
    }

    fn unsubscribe(&self, id: u64) {
        self.inner.lock().unwrap().remove_subscriber(id);
    }

    fn sweep(&self, now_ms: u64) {
        let limits = self.settings.history;
        let mut guard = self.inner.lock().unwrap();
        let inner = &mut *guard;
        let mut floor = inner.floor;
        inner.channels.retain(|_, ch| {
            ch.history.expire(now_ms, limits);
            let idle = ch.history.is_empty() && ch.subscribers.is_empty() && ch.sockets.is_empty();
            if idle && let Some(d) = ch.history.dropped_upto() {
                floor = floor.max(d);
            }
            !idle
        });
        inner.floor = floor;
    }

    /// Channels currently known (with history or subscribers).
    pub fn channel_count(&self) -> usize {
        self.inner.lock().unwrap().channels.len()
    }

    /// Subscribers currently registered.
    pub fn subscriber_count(&self) -> usize {
        self.inner.lock().unwrap().subscribers.len()
    }
}

impl Inner {
    /// Every later event sorts after this id.
    fn position(&self) -> EventId {
        self.stream_last.unwrap_or(self.clock.last())
    }

    /// A socket's transport closed under a delivery: it gets nothing more,
    /// but it stays registered with its channels until the gateway detaches
    /// it (its disconnect handler runs next), so the session saved for its
    /// recovery still names them. Removing it here lost them: the client
    /// came back "recovered" into no channel at all.
    fn socket_closed(&mut self, id: &str) {
        if let Some(sub) = self.sockets.get_mut(id) {
            sub.stalled = true;
            sub.replay = None;
        }
    }

    /// Send a catching-up socket what its buffer has room for, in order.
    fn catch_up(&mut self, id: &str) -> Progress {
        let Some(sub) = self.sockets.get_mut(id) else {
            return Progress::Done;
        };
        let Some(queue) = &mut sub.replay else {
            return Progress::Done;
        };
        while let Some(entry) = queue.front() {
            match sub.sink.deliver(entry) {
                Ok(()) => queue.pop(),
                Err(SinkError::Full) => return Progress::Pending,
                Err(SinkError::Closed) => {
                    // As `socket_closed`: kept with its channels until detached.
                    sub.stalled = true;
                    sub.replay = None;
                    return Progress::Done;
                }
            }
        }
        sub.replay = None;
        Progress::Done
    }

    fn remove_socket(&mut self, id: &str) -> Option<SocketSub> {
        self.lagging.remove(id);
        let sub = self.sockets.remove(id)?;
        for name in sub.channels.keys() {
            if let Some(ch) = self.channels.get_mut(name) {
                ch.sockets.remove(id);
            }
        }
        Some(sub)
    }

    /// What a socket restoring `rooms` from `offset` missed, merged in id
    /// order, or the first room history cannot serve.
    fn backlog(
        &mut self,
        now_ms: u64,
        limits: HistoryLimits,
        rooms: &Rooms,
        offset: Option<EventId>,
        socket: Option<&str>,
    ) -> std::result::Result<Vec<Arc<Entry>>, Gap> {
        let mut backlog = Vec::new();
        for (room, after) in rooms {
            let after = offset.map_or(*after, |o| o.max(*after));
            if after < self.floor {
                return Err(Gap(room.clone()));
            }
            let Some(ch) = self.channels.get_mut(room.as_str()) else {
                continue;
            };
            ch.history.expire(now_ms, limits);
            match ch.history.since(after) {
                Since::Gap => return Err(Gap(room.clone())),
                Since::Events(events) => backlog.extend(
                    events
                        .into_iter()
                        .filter(|e| socket.is_none() || e.except.as_deref() != socket),
                ),
            }
        }
        backlog.sort_by_key(|e| e.id);
        Ok(backlog)
    }

    fn remove_subscriber(&mut self, id: u64) {
        if let Some(sub) = self.subscribers.remove(&id) {
            for name in sub.channels {
                if let Some(ch) = self.channels.get_mut(&name) {
                    ch.subscribers.remove(&id);
                }
            }
        }
    }
}

fn check_name(name: &str, max: usize) -> std::result::Result<(), ()> {
    if name.is_empty() || name.len() > max || name.chars().any(char::is_control) {
        Err(())
    } else {
        Ok(())
    }
}

fn check_publication(channel: &str, event: &str) -> Result<()> {
    check_channel(channel)?;
    check_name(event, 128).map_err(|_| ChannelError::BadEvent(event.to_owned()))
}

fn check_channel(channel: &str) -> Result<()> {
    check_name(channel, 256).map_err(|_| ChannelError::BadChannel(channel.to_owned()))
}

/// Wall-clock time in ms since the epoch (0 before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: u64 = 1_700_000_000_000;

    fn space(size: usize, buffer: usize) -> Arc<Space> {
        let settings = HubSettings {
            history: HistoryLimits {
                max_bytes: usize::MAX,
                size,
                max_age: Duration::from_secs(60),
            },
            buffer,
            // No lag: a full socket buffer makes a slow consumer at once.
            socket_lag_bytes: 0,
        };
        lagging_space(settings, false)
    }

    /// `cluster`: its events come from the cluster's stream ([`Space::deliver`]).
    fn lagging_space(settings: HubSettings, cluster: bool) -> Arc<Space> {
        Arc::new_cyclic(|me| {
            let mut space = Space::new("p", settings, watch::Sender::new(false).subscribe(), T0);
            if cluster {
                space.join_cluster();
            }
            space.me = me.clone();
            space
        })
    }

    fn delivery(id: EventId, channel: &str, data: &str) -> Delivery {
        Delivery {
            id,
            channel: channel.into(),
            event: "e".into(),
            data: data.into(),
            except: None,
        }
    }

    fn chans(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn drain(sub: &mut Subscription) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(e) = sub.live.try_recv() {
            out.push(format!("{}:{}", e.channel, e.data));
        }
        out
    }

    #[test]
    fn live_events_reach_subscribers_of_their_channel_only() {
        let s = space(10, 10);
        let mut a = s.subscribe_at(T0, &chans(&["a"]), None).unwrap();
        let mut ab = s.subscribe_at(T0, &chans(&["a", "b"]), None).unwrap();
        assert!(a.backlog.is_empty() && a.resync.is_none());
        s.publish_at(T0, "a", "e", &json!(1), None).unwrap();
        s.publish_at(T0, "b", "e", &json!(2), None).unwrap();
        s.publish_at(T0, "c", "e", &json!(3), None).unwrap();
        assert_eq!(drain(&mut a), ["a:1"]);
        assert_eq!(drain(&mut ab), ["a:1", "b:2"]);
        drop(ab);
        assert_eq!(s.subscriber_count(), 1);
    }

    #[test]
    fn one_last_event_id_resumes_every_channel_without_duplicates() {
        let s = space(100, 100);
        let mut first = s.subscribe_at(T0, &chans(&["a", "b"]), None).unwrap();
        let mut seen = Vec::new();
        for i in 0..6 {
            let ch = if i % 2 == 0 { "a" } else { "b" };
            s.publish_at(T0 + i / 3, ch, "e", &json!(i), None).unwrap();
        }
        // The reader got four events, then its connection dropped.
        for _ in 0..4 {
            seen.push(first.live.try_recv().unwrap());
        }
        drop(first);
        let last = seen.last().unwrap().id;
        s.publish_at(T0 + 5, "b", "e", &json!(6), None).unwrap();
        let mut again = s
            .subscribe_at(T0 + 5, &chans(&["a", "b"]), Some(last))
            .unwrap();
        assert!(again.resync.is_none());
        let backlog: Vec<_> = again.backlog.iter().map(|e| e.data.clone()).collect();
        assert_eq!(backlog, ["4", "5", "6"]);
        assert!(again.backlog.windows(2).all(|w| w[0].id < w[1].id));
        assert!(again.backlog[0].id > last);
        s.publish_at(T0 + 6, "a", "e", &json!(7), None).unwrap();
        assert_eq!(drain(&mut again), ["a:7"]);
    }

    #[test]
    fn an_id_older_than_history_asks_for_a_resync_after_the_backlog() {
        let s = space(2, 10);
        let first = s.publish_at(T0, "a", "e", &json!(0), None).unwrap();
        for i in 1..4 {
            s.publish_at(T0, "a", "e", &json!(i), None).unwrap();
        }
        s.publish_at(T0, "b", "e", &json!("b"), None).unwrap();
        let sub = s
            .subscribe_at(T0, &chans(&["a", "b"]), Some(first))
            .unwrap();
        let resync = sub.resync.clone().unwrap();
        assert_eq!(resync.channels, ["a"]);
        // Channel b is resumed; channel a is not replayed.
        let backlog: Vec<_> = sub.backlog.iter().map(|e| e.data.clone()).collect();
        assert_eq!(backlog, ["\"b\""]);
        assert!(resync.id > sub.backlog[0].id);
        assert!(s.publish_at(T0, "a", "e", &json!(9), None).unwrap() > resync.id);
    }

    #[test]
    fn an_id_from_before_this_node_started_asks_for_a_resync() {
        let s = space(10, 10);
        let sub = s
            .subscribe_at(T0, &chans(&["a"]), Some(EventId::new(T0 - 1, 0)))
            .unwrap();
        assert_eq!(sub.resync.as_ref().unwrap().channels, ["a"]);
        let ok = s
            .subscribe_at(T0, &chans(&["a"]), Some(EventId::new(T0, 0)))
            .unwrap();
        assert!(ok.resync.is_none());
    }

    #[test]
    fn a_full_queue_cuts_the_slow_reader_off_without_blocking() {
        let s = space(100, 2);
        let mut slow = s.subscribe_at(T0, &chans(&["a"]), None).unwrap();
        let mut fast = s.subscribe_at(T0, &chans(&["a"]), None).unwrap();
        let mut fast_got = 0;
        for i in 0..5 {
            s.publish_at(T0, "a", "e", &json!(i), None).unwrap();
            fast_got += drain(&mut fast).len();
        }
        assert_eq!(fast_got, 5);
        assert_eq!(s.cut_off.load(Ordering::Relaxed), 1);
        // The slow reader keeps what was queued, then its queue ends.
        assert_eq!(drain(&mut slow), ["a:0", "a:1"]);
        assert!(matches!(
            slow.live.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        // It resumes from history with exactly what it missed.
        let again = s
            .subscribe_at(T0, &chans(&["a"]), Some(EventId::new(T0, 2)))
            .unwrap();
        let missed: Vec<_> = again.backlog.iter().map(|e| e.data.clone()).collect();
        assert_eq!(missed, ["2", "3", "4"]);
    }

    /// A socket sink that takes `room` events and then reports full, or
    /// closed once `closed` is set.
    struct FakeSocket {
        got: Mutex<Vec<String>>,
        room: std::sync::atomic::AtomicUsize,
        told_slow: AtomicU64,
        closed: std::sync::atomic::AtomicBool,
        delivered: tokio::sync::Notify,
    }

    impl SocketSink for FakeSocket {
        fn deliver(&self, e: &Entry) -> std::result::Result<(), SinkError> {
            if self.closed.load(Ordering::Relaxed) {
                return Err(SinkError::Closed);
            }
            let mut got = self.got.lock().unwrap();
            if got.len() >= self.room.load(Ordering::Relaxed) {
                return Err(SinkError::Full);
            }
            got.push(e.data.clone());
            self.delivered.notify_one();
            Ok(())
        }
        fn slow_consumer(&self) {
            self.told_slow.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl FakeSocket {
        /// Wait, up to 5 s, until it was sent `n` events in all.
        async fn received(&self, n: usize) {
            let enough = async {
                while self.got.lock().unwrap().len() < n {
                    self.delivered.notified().await;
                }
            };
            tokio::time::timeout(Duration::from_secs(5), enough)
                .await
                .expect("the lagging socket was sent its queue");
        }
    }

    fn fake(room: usize) -> Arc<FakeSocket> {
        Arc::new(FakeSocket {
            got: Mutex::default(),
            room: room.into(),
            told_slow: AtomicU64::new(0),
            closed: Default::default(),
            delivered: Default::default(),
        })
    }

    /// What one event named `e` with a one-character payload weighs.
    const ONE: usize = std::mem::size_of::<Entry>() + 2;

    fn lag_settings(lag_bytes: usize) -> HubSettings {
        HubSettings {
            history: HistoryLimits {
                max_bytes: usize::MAX,
                size: 100,
                max_age: Duration::from_secs(60),
            },
            buffer: 10,
            socket_lag_bytes: lag_bytes,
        }
    }

    fn space_with_lag(lag_bytes: usize) -> Arc<Space> {
        lagging_space(lag_settings(lag_bytes), false)
    }

    /// A space fed by the cluster's stream whose sockets may lag `lag_bytes`.
    fn cluster_lagging_space(lag_bytes: usize) -> Arc<Space> {
        lagging_space(lag_settings(lag_bytes), true)
    }

    #[test]
    fn a_gap_in_the_cluster_stream_cuts_every_reader_and_socket_off_and_refuses_older_resumes() {
        let t = now_ms();
        let s = space(100, 10);
        let sock = fake(100);
        s.attach("s1", sock.clone());
        s.join("s1", "a");
        let before = s.publish_at(t, "a", "e", &json!(0), None).unwrap();
        let mut reader = s.subscribe_at(t, &chans(&["a"]), None).unwrap();
        let rooms = s.rooms("s1");
        let trimmed = EventId::new(t + 10, 0);
        s.stream_gap(trimmed);
        assert_eq!(sock.told_slow.load(Ordering::Relaxed), 1);
        assert!(matches!(
            reader.live.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        // Resuming from before the gap is refused: the client is told.
        assert!(s.can_restore(&rooms, Some(before)).is_err());
        let again = s.subscribe_at(t, &chans(&["a"]), Some(before)).unwrap();
        assert!(again.resync.is_some());
    }

    #[tokio::test]
    async fn a_socket_with_a_full_buffer_catches_up_in_order_and_is_slow_only_past_its_lag() {
        let t = now_ms();
        let s = space_with_lag(3 * ONE);
        let sock = fake(2);
        s.attach("s1", sock.clone());
        s.join("s1", "a");
        for i in 0..5 {
            s.publish_at(t, "a", "e", &json!(i), None).unwrap();
        }
        // Two fit its buffer; three wait in its queue, within the lag.
        assert_eq!(*sock.got.lock().unwrap(), ["0", "1"]);
        assert_eq!(sock.told_slow.load(Ordering::Relaxed), 0);
        // Room again: the space's drainer sends them, in order.
        sock.room.store(100, Ordering::Relaxed);
        sock.received(5).await;
        // Live again: the next one goes straight out.
        s.publish_at(t, "a", "e", &json!(5), None).unwrap();
        assert_eq!(*sock.got.lock().unwrap(), ["0", "1", "2", "3", "4", "5"]);
        // Full for good: three more wait, the fourth is past the lag.
        sock.room.store(6, Ordering::Relaxed);
        for i in 6..9 {
            s.publish_at(t, "a", "e", &json!(i), None).unwrap();
        }
        assert_eq!(sock.told_slow.load(Ordering::Relaxed), 0);
        s.publish_at(t, "a", "e", &json!(9), None).unwrap();
        assert_eq!(sock.told_slow.load(Ordering::Relaxed), 1);
        assert_eq!(s.slow_sockets.load(Ordering::Relaxed), 1);
        // Dropped: nothing more, even with room.
        sock.room.store(100, Ordering::Relaxed);
        s.publish_at(t, "a", "e", &json!(10), None).unwrap();
        assert_eq!(sock.got.lock().unwrap().len(), 6);
    }

    #[tokio::test]
    async fn a_socket_closing_under_a_delivery_keeps_its_rooms_for_its_session() {
        let t = now_ms();
        let s = space(100, 10);
        let first = fake(100);
        s.attach("s1", first.clone());
        s.join("s1", "a");
        s.join("s1", "b");
        s.publish_at(t, "a", "e", &json!(0), None).unwrap();
        // The transport goes; a publication meets it before the gateway's
        // disconnect handler detaches the socket.
        first.closed.store(true, Ordering::Relaxed);
        s.publish_at(t, "a", "e", &json!(1), None).unwrap();
        let mut rooms = s.detach("s1").expect("still registered");
        rooms.sort();
        let names: Vec<_> = rooms.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(first.told_slow.load(Ordering::Relaxed), 0);
        // The same while catching up after a restore.
        let again = fake(100);
        s.restore("s1", again.clone(), &rooms, None).unwrap();
        again.closed.store(true, Ordering::Relaxed);
        s.replay("s1").await;
        let mut back = s.detach("s1").expect("still registered");
        back.sort();
        assert_eq!(back.len(), 2);
    }

    #[tokio::test]
    async fn a_restored_socket_gets_what_it_missed_in_its_rooms_then_live_events() {
        // Real time: restoring expires history by the wall clock.
        let t = now_ms();
        // Room to lag by two events, not three.
        let s = space_with_lag(2 * ONE + ONE / 2);
        let first = fake(2);
        s.attach("s1", first.clone());
        s.join("s1", "a");
        s.publish_at(t, "a", "e", &json!(0), None).unwrap();
        s.publish_at(t, "a", "e", &json!(1), None).unwrap();
        // Its buffer is full: two wait, the third makes it a slow consumer,
        // told once, rooms kept.
        let offset = s.publish_at(t, "a", "e", &json!(2), None).unwrap();
        s.publish_at(t, "a", "e", &json!(3), None).unwrap();
        assert_eq!(first.told_slow.load(Ordering::Relaxed), 0);
        s.publish_at(t, "a", "e", &json!(4), None).unwrap();
        assert_eq!(first.told_slow.load(Ordering::Relaxed), 1);
        assert_eq!(s.slow_sockets.load(Ordering::Relaxed), 1);
        let rooms = s.detach("s1").unwrap();
        assert_eq!(rooms.len(), 1);
        // Missed meanwhile: one in its room, one it sent itself, one elsewhere.
        s.publish_at(t, "a", "e", &json!(5), None).unwrap();
        s.publish_at(t, "a", "e", &json!("own"), Some("s1"))
            .unwrap();
        s.publish_at(t, "b", "e", &json!("other"), None).unwrap();
        // The client had received 0 and 1; its offset is the id of 1.
        let had = offset.predecessor();
        let again = fake(100);
        s.restore("s1", again.clone(), &rooms, Some(had)).unwrap();
        // Live events wait behind the replay.
        s.publish_at(t, "a", "e", &json!(6), None).unwrap();
        assert!(again.got.lock().unwrap().is_empty());
        s.replay("s1").await;
        s.publish_at(t, "a", "e", &json!(7), None).unwrap();
        assert_eq!(*again.got.lock().unwrap(), ["2", "3", "4", "5", "6", "7"]);
    }

    #[test]
    fn a_socket_behind_trimmed_history_cannot_be_restored() {
        let t = now_ms();
        let s = space(2, 10);
        s.attach("s1", fake(100));
        s.join("s1", "a");
        let rooms = s.detach("s1").unwrap();
        for i in 0..3 {
            s.publish_at(t, "a", "e", &json!(i), None).unwrap();
        }
        assert!(s.can_restore(&rooms, None).is_err());
        assert!(s.restore("s1", fake(100), &rooms, None).is_err());
        assert_eq!(s.rooms("s1"), Vec::new());
    }

    /// A cluster space on a node whose clock is `skew_ms` off Redis's.
    fn cluster_space(skew_ms: i64) -> Arc<Space> {
        let mut s = Arc::try_unwrap(space(100, 100)).ok().unwrap();
        s.join_cluster();
        let started = now_ms().saturating_add_signed(skew_ms);
        s.inner.get_mut().unwrap().floor = EventId::new(started, 0);
        Arc::new(s)
    }

    #[tokio::test]
    async fn a_stream_read_reaches_each_socket_in_id_order_across_channels_and_past_a_full_buffer()
    {
        let s = cluster_lagging_space(100 * ONE);
        let (both, only_a) = (fake(3), fake(100));
        s.attach("both", both.clone());
        s.join("both", "a");
        s.join("both", "b");
        s.attach("only_a", only_a.clone());
        s.join("only_a", "a");
        let t = now_ms();
        let read: Vec<Delivery> = ["a", "a", "b", "a", "a", "b"]
            .iter()
            .enumerate()
            .map(|(i, ch)| Delivery {
                except: (i == 3).then(|| "both".to_owned()),
                ..delivery(EventId::new(t, i as u64), ch, &i.to_string())
            })
            .collect();
        s.deliver(read.clone());
        assert_eq!(*only_a.got.lock().unwrap(), ["0", "1", "3", "4"]);
        // Three fit; the rest wait in order, whichever channel they are of.
        assert_eq!(*both.got.lock().unwrap(), ["0", "1", "2"]);
        both.room.store(100, Ordering::Relaxed);
        both.received(5).await;
        assert_eq!(*both.got.lock().unwrap(), ["0", "1", "2", "4", "5"]);
        // An overlapping read delivers nothing twice.
        s.deliver(read);
        assert_eq!(both.got.lock().unwrap().len(), 5);
        assert_eq!(only_a.got.lock().unwrap().len(), 4);
        assert_eq!(s.slow_sockets.load(Ordering::Relaxed), 0);
    }

    /// A sink that encodes each event as the gateway's does (through the
    /// entry's slot, before sending), counting the encodings made.
    struct Encoding {
        socket: Arc<FakeSocket>,
        made: Arc<AtomicU64>,
    }

    impl SocketSink for Encoding {
        fn deliver(&self, e: &Entry) -> std::result::Result<(), SinkError> {
            e.encoded.get_or_make(1, || {
                self.made.fetch_add(1, Ordering::Relaxed);
                Some(format!("42[{:?},{}]", e.event, e.data))
            });
            self.socket.deliver(e)
        }
        fn slow_consumer(&self) {
            self.socket.slow_consumer();
        }
    }

    #[tokio::test]
    async fn sockets_catching_up_one_after_another_get_every_event_in_order_from_one_encoding() {
        let s = cluster_lagging_space(1 << 20);
        let made = Arc::new(AtomicU64::new(0));
        let sockets: Vec<Arc<FakeSocket>> = (0..50).map(|_| fake(2)).collect();
        for (i, socket) in sockets.iter().enumerate() {
            let sink = Encoding {
                socket: socket.clone(),
                made: made.clone(),
            };
            s.attach(&i.to_string(), Arc::new(sink));
            s.join(&i.to_string(), "a");
        }
        // One read of more entries than one hold of the lock delivers.
        let t = now_ms();
        let read = 2 * DELIVER_SLICE + 22;
        s.deliver((0..read as u64).map(|i| delivery(EventId::new(t, i), "a", &i.to_string())));
        // Two each went out; the rest wait, and go out socket by socket.
        for socket in &sockets {
            socket.room.store(1000, Ordering::Relaxed);
        }
        let all: Vec<String> = (0..read).map(|i| i.to_string()).collect();
        for socket in &sockets {
            socket.received(read).await;
            assert_eq!(*socket.got.lock().unwrap(), all);
        }
        // 50 x 150 deliveries, 150 encodings.
        assert_eq!(made.load(Ordering::Relaxed), read as u64);
        assert_eq!(s.slow_sockets.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_node_started_late_or_with_a_skewed_clock_keeps_every_stream_entry() {
        // Stream ids come from Redis's clock, an hour behind or ahead of this node's.
        for skew in [3_600_000, -3_600_000] {
            let s = cluster_space(skew);
            let redis_now = now_ms();
            // Backfill of a stream that was never trimmed: it holds everything.
            s.lower_floor(EventId::new(0, 0));
            let ids: Vec<_> = (0..5)
                .map(|i| EventId::new(redis_now - 1000 + i, 0))
                .collect();
            for (i, id) in ids.iter().enumerate() {
                s.deliver([delivery(*id, "a", &i.to_string())]);
            }
            // A duplicate read (overlapping XREAD) is ignored.
            s.deliver([delivery(ids[2], "a", "dup")]);
            let sub = s
                .subscribe_at(now_ms(), &chans(&["a"]), Some(ids[1]))
                .unwrap();
            assert!(sub.resync.is_none(), "skew {skew}");
            let got: Vec<_> = sub.backlog.iter().map(|e| e.data.clone()).collect();
            assert_eq!(got, ["2", "3", "4"], "skew {skew}");
            // A live entry right after is delivered too, whatever the node's clock says.
            let mut sub = sub;
            s.deliver([delivery(EventId::new(redis_now + 1, 0), "a", "5")]);
            assert_eq!(drain(&mut sub), ["a:5"]);
            // A resync id never runs ahead of the stream (it would skip entries).
            let behind = s
                .subscribe_at(now_ms(), &chans(&["b"]), Some(EventId::new(1, 0)))
                .unwrap();
            assert!(behind.resync.is_none());
        }
    }

    #[test]
    fn bad_names_are_refused_and_sweeping_forgets_idle_channels() {
        let s = space(10, 10);
        for bad in ["", "a\nb", "\r", &"x".repeat(257)] {
            assert!(matches!(
                s.publish_at(T0, bad, "e", &json!(1), None),
                Err(ChannelError::BadChannel(_))
            ));
            assert!(s.subscribe_at(T0, &chans(&[bad]), None).is_err());
        }
        assert!(matches!(
            s.publish_at(T0, "a", "e\n", &json!(1), None),
            Err(ChannelError::BadEvent(_))
        ));
        let last = s.publish_at(T0, "a", "e", &json!(1), None).unwrap();
        assert_eq!(s.channel_count(), 1);
        s.sweep(T0 + 60_001);
        assert_eq!(s.channel_count(), 0);
        // The channel's history is gone, but a reader behind it still learns so.
        let sub = s
            .subscribe_at(T0, &chans(&["a"]), Some(EventId::new(T0, 0)))
            .unwrap();
        assert!(sub.resync.is_some());
        let sub = s.subscribe_at(T0, &chans(&["a"]), Some(last)).unwrap();
        assert!(sub.resync.is_none());
    }
}
