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
use super::log::ChannelLog;

/// Limits shared by every plugin's channels.
#[derive(Debug, Clone, Copy)]
pub struct HubSettings {
    pub history: HistoryLimits,
    /// Events queued per subscriber before it is cut off as too slow.
    pub buffer: usize,
}

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
                let mut space =
                    Space::new(plugin, self.settings, self.closing.subscribe(), now_ms());
                space.log = self.log.clone();
                Arc::new(space)
            })
            .clone()
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
    /// Subscribers cut off because their queue was full.
    pub cut_off: AtomicU64,
    log: Option<Arc<dyn ChannelLog>>,
    /// Cluster mode: ids of publications on this node, minted before Redis
    /// assigns the SSE id (see [`Space::mint`]).
    offsets: Mutex<IdClock>,
}

struct Inner {
    clock: IdClock,
    /// Nothing before this id is known here (the space started, or channels
    /// holding later ids were forgotten): a reader behind it must resync.
    floor: EventId,
    channels: HashMap<Arc<str>, Channel>,
    subscribers: HashMap<u64, Subscriber>,
    next_subscriber: u64,
}

#[derive(Default)]
struct Channel {
    history: History,
    subscribers: HashSet<u64>,
}

struct Subscriber {
    tx: mpsc::Sender<Arc<Entry>>,
    channels: Vec<Arc<str>>,
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
            }),
            closing,
            cut_off: AtomicU64::new(0),
            log: None,
            offsets: Mutex::new(IdClock::starting_after(floor)),
        }
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
    ) -> Result<EventId> {
        if self.log.is_none() {
            return self.publish_local(channel, event, data);
        }
        self.check(channel, event)?;
        self.append(channel, event, data).await
    }

    /// Whether publications go through the cluster's stream (Redis assigns ids).
    pub fn clustered(&self) -> bool {
        self.log.is_some()
    }

    /// Refuse a publication before anything is sent: a bad name, or (cluster
    /// mode) a node that is shutting down.
    pub fn check(&self, channel: &str, event: &str) -> Result<()> {
        check_publication(channel, event)?;
        if self.log.is_some() && *self.closing.borrow() {
            return Err(ChannelError::Closed);
        }
        Ok(())
    }

    /// One node: assign the id and hand the event to subscribers and history.
    pub fn publish_local(
        &self,
        channel: &str,
        event: &str,
        data: &serde_json::Value,
    ) -> Result<EventId> {
        self.publish_at(now_ms(), channel, event, data)
    }

    /// Cluster mode: an id for a publication of this node, increasing, in the
    /// same format as SSE ids, available before Redis assigns the SSE id.
    pub fn mint(&self) -> EventId {
        self.offsets.lock().unwrap().next(now_ms())
    }

    /// Cluster mode: append to the plugin's stream (see [`Space::publish`]).
    pub async fn append(
        &self,
        channel: &str,
        event: &str,
        data: &serde_json::Value,
    ) -> Result<EventId> {
        if let Some(log) = &self.log {
            match log
                .append(&self.plugin, channel, event, &data.to_string())
                .await
            {
                Ok(id) => return Ok(id),
                Err(e) => {
                    tracing::warn!(plugin = %self.plugin, channel, "SSE publish stays on this node: {e}")
                }
            }
        }
        self.publish_at(now_ms(), channel, event, data)
    }

    /// Deliver an event whose id was assigned elsewhere (the cluster's
    /// stream). Ids already seen are ignored, so overlapping reads are harmless.
    pub fn deliver(&self, id: EventId, channel: &str, event: &str, data: String) {
        let now = now_ms();
        let mut guard = self.inner.lock().unwrap();
        let inner = &mut *guard;
        if id <= inner.clock.last() {
            return;
        }
        inner.clock.observe(id);
        self.push(inner, now, id, channel, event, data);
    }

    /// Let readers resume from as far back as `floor` (the cluster stream
    /// holds history from before this node started).
    pub fn lower_floor(&self, floor: EventId) {
        let mut inner = self.inner.lock().unwrap();
        inner.floor = inner.floor.min(floor);
    }

    /// Store an event in its channel's history and hand it to the channel's
    /// subscribers; a subscriber whose queue is full is cut off.
    fn push(
        &self,
        inner: &mut Inner,
        now_ms: u64,
        id: EventId,
        channel: &str,
        event: &str,
        data: String,
    ) {
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
    }

    fn publish_at(
        &self,
        now_ms: u64,
        channel: &str,
        event: &str,
        data: &serde_json::Value,
    ) -> Result<EventId> {
        check_publication(channel, event)?;
        let data = data.to_string();
        let mut guard = self.inner.lock().unwrap();
        let inner = &mut *guard;
        let id = inner.clock.next(now_ms);
        self.push(inner, now_ms, id, channel, event, data);
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
            id: inner.clock.next(now_ms),
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
            let idle = ch.history.is_empty() && ch.subscribers.is_empty();
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

fn now_ms() -> u64 {
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
        };
        Arc::new(Space::new(
            "p",
            settings,
            watch::Sender::new(false).subscribe(),
            T0,
        ))
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
        s.publish_at(T0, "a", "e", &json!(1)).unwrap();
        s.publish_at(T0, "b", "e", &json!(2)).unwrap();
        s.publish_at(T0, "c", "e", &json!(3)).unwrap();
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
            s.publish_at(T0 + i / 3, ch, "e", &json!(i)).unwrap();
        }
        // The reader got four events, then its connection dropped.
        for _ in 0..4 {
            seen.push(first.live.try_recv().unwrap());
        }
        drop(first);
        let last = seen.last().unwrap().id;
        s.publish_at(T0 + 5, "b", "e", &json!(6)).unwrap();
        let mut again = s
            .subscribe_at(T0 + 5, &chans(&["a", "b"]), Some(last))
            .unwrap();
        assert!(again.resync.is_none());
        let backlog: Vec<_> = again.backlog.iter().map(|e| e.data.clone()).collect();
        assert_eq!(backlog, ["4", "5", "6"]);
        assert!(again.backlog.windows(2).all(|w| w[0].id < w[1].id));
        assert!(again.backlog[0].id > last);
        s.publish_at(T0 + 6, "a", "e", &json!(7)).unwrap();
        assert_eq!(drain(&mut again), ["a:7"]);
    }

    #[test]
    fn an_id_older_than_history_asks_for_a_resync_after_the_backlog() {
        let s = space(2, 10);
        let first = s.publish_at(T0, "a", "e", &json!(0)).unwrap();
        for i in 1..4 {
            s.publish_at(T0, "a", "e", &json!(i)).unwrap();
        }
        s.publish_at(T0, "b", "e", &json!("b")).unwrap();
        let sub = s
            .subscribe_at(T0, &chans(&["a", "b"]), Some(first))
            .unwrap();
        let resync = sub.resync.clone().unwrap();
        assert_eq!(resync.channels, ["a"]);
        // Channel b is resumed; channel a is not replayed.
        let backlog: Vec<_> = sub.backlog.iter().map(|e| e.data.clone()).collect();
        assert_eq!(backlog, ["\"b\""]);
        assert!(resync.id > sub.backlog[0].id);
        assert!(s.publish_at(T0, "a", "e", &json!(9)).unwrap() > resync.id);
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
            s.publish_at(T0, "a", "e", &json!(i)).unwrap();
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

    #[test]
    fn bad_names_are_refused_and_sweeping_forgets_idle_channels() {
        let s = space(10, 10);
        for bad in ["", "a\nb", "\r", &"x".repeat(257)] {
            assert!(matches!(
                s.publish_at(T0, bad, "e", &json!(1)),
                Err(ChannelError::BadChannel(_))
            ));
            assert!(s.subscribe_at(T0, &chans(&[bad]), None).is_err());
        }
        assert!(matches!(
            s.publish_at(T0, "a", "e\n", &json!(1)),
            Err(ChannelError::BadEvent(_))
        ));
        let last = s.publish_at(T0, "a", "e", &json!(1)).unwrap();
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
