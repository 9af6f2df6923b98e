//! An entry's encoding for a transport, made once and shared.
//!
//! One publication reaches a thousand sockets, live, from a catch-up queue,
//! or replayed to a restored socket, in whatever order the hub visits them.
//! Each of them needs the same packet, so the first delivery encodes it and
//! keeps it here, with the entry, for every later one: the cost of encoding
//! stays per publication, not per socket. The hub does not know what a
//! transport's packet is; it only keeps the slot.

use std::any::Any;
use std::sync::{Arc, OnceLock};

/// One encoding of an entry, by whoever made it first.
#[derive(Clone, Default)]
pub struct Encoded(OnceLock<(u64, Arc<dyn Any + Send + Sync>)>);

impl Encoded {
    /// The entry as encoded by the encoder `key` (a number unique to it), made
    /// by `make` the first time. An entry keeps one encoding: another encoder
    /// (a namespace mounted anew) encodes it again each time, still right.
    pub fn get_or_make<T>(&self, key: u64, make: impl FnOnce() -> Option<T>) -> Option<T>
    where
        T: Any + Clone + Send + Sync,
    {
        if let Some((owner, made)) = self.0.get() {
            return match made.downcast_ref::<T>() {
                Some(made) if *owner == key => Some(made.clone()),
                _ => make(),
            };
        }
        let made = make()?;
        let _ = self.0.set((key, Arc::new(made.clone())));
        Some(made)
    }
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Encoded(made)"
        } else {
            "Encoded(none)"
        })
    }
}

/// A cache: two entries are the same whether or not they were encoded yet.
impl PartialEq for Encoded {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Encoded {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn an_entry_is_encoded_once_per_encoder_and_never_confused_with_another() {
        let slot = Encoded::default();
        let calls = Cell::new(0);
        let make = |s: &str| {
            calls.set(calls.get() + 1);
            Some(s.to_owned())
        };
        assert_eq!(slot.get_or_make(1, || make("a")).as_deref(), Some("a"));
        assert_eq!(slot.get_or_make(1, || make("x")).as_deref(), Some("a"));
        assert_eq!(calls.get(), 1);
        // Another encoder gets its own encoding, every time, and the first stays.
        assert_eq!(slot.get_or_make(2, || make("b")).as_deref(), Some("b"));
        assert_eq!(slot.get_or_make(2, || make("b")).as_deref(), Some("b"));
        assert_eq!(slot.get_or_make(1, || make("x")).as_deref(), Some("a"));
        assert_eq!(calls.get(), 3);
        // Nothing is kept when encoding fails.
        let empty = Encoded::default();
        assert_eq!(empty.get_or_make::<String>(1, || None), None);
        assert_eq!(empty.get_or_make(1, || make("c")).as_deref(), Some("c"));
    }
}
