//! Caps on open SSE streams, per client address and per token subject. A
//! stream holds a queue, a backlog and a connection slot for as long as the
//! client keeps it open, so one client (or one leaked token) must not be able
//! to open them without bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Which cap refused a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRefused {
    /// `sse.max_streams_per_ip`.
    PerIp,
    /// `sse.max_streams_per_subject`.
    PerSubject,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Ip(IpAddr),
    Subject(String),
}

/// Open streams by address and by subject.
#[derive(Default)]
pub struct StreamCaps {
    per_ip: usize,
    per_subject: usize,
    open: Mutex<HashMap<Key, usize>>,
}

/// One open stream's slots; dropping it (the stream ends) frees them.
pub struct StreamPermit {
    caps: Arc<StreamCaps>,
    keys: Vec<Key>,
}

impl StreamCaps {
    /// Caps of 0 mean no cap.
    pub fn new(per_ip: usize, per_subject: usize) -> Arc<Self> {
        let cap = |n: usize| if n == 0 { usize::MAX } else { n };
        Arc::new(Self {
            per_ip: cap(per_ip),
            per_subject: cap(per_subject),
            open: Mutex::default(),
        })
    }

    /// Slots for a stream from `ip` (if known) for `subject` (if any).
    pub fn admit(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        subject: Option<&str>,
    ) -> Result<StreamPermit, StreamRefused> {
        let ip = ip.map(crate::net::client_key).map(Key::Ip);
        let subject = subject.map(|s| Key::Subject(s.to_owned()));
        let mut open = self.open.lock().unwrap();
        let count = |k: &Option<Key>| k.as_ref().and_then(|k| open.get(k)).copied();
        if count(&ip).unwrap_or(0) >= self.per_ip {
            return Err(StreamRefused::PerIp);
        }
        if count(&subject).unwrap_or(0) >= self.per_subject {
            return Err(StreamRefused::PerSubject);
        }
        let keys: Vec<Key> = ip.into_iter().chain(subject).collect();
        for k in &keys {
            *open.entry(k.clone()).or_default() += 1;
        }
        Ok(StreamPermit {
            caps: self.clone(),
            keys,
        })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap();
        for k in &self.keys {
            if let Some(n) = open.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    open.remove(k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_and_per_subject() {
        let caps = StreamCaps::new(2, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let alice = caps.admit(Some(a), Some("alice")).unwrap();
        assert_eq!(
            caps.admit(Some(b), Some("alice")).err(),
            Some(StreamRefused::PerSubject)
        );
        let _anon = caps.admit(Some(a), None).unwrap();
        assert_eq!(caps.admit(Some(a), None).err(), Some(StreamRefused::PerIp));
        drop(alice);
        assert!(caps.admit(Some(b), Some("alice")).is_ok());
        assert!(caps.admit(Some(a), None).is_ok());
    }
}
