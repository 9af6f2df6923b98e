//! The one place that calls host imports: the WIT imports on wasm32, the in-memory test host
//! (`crate::testing`) everywhere else. Also the instance's cache of connection records.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::types::{Connection, Details};

/// Records kept per instance at most; past it the cache starts over (a record
/// missing from it is fetched from the host again, so this bounds memory only).
const MAX_CACHED: usize = 512;

thread_local! {
    static CONNECTIONS: RefCell<HashMap<String, Arc<Details>>> = RefCell::new(HashMap::new());
}

fn cache(id: &str, details: Arc<Details>) {
    CONNECTIONS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= MAX_CACHED {
            c.clear();
        }
        c.insert(id.to_owned(), details);
    });
}

/// `on-connect` passed the whole record: keep it for the calls that carry only the id.
pub(crate) fn remember(conn: &Connection) {
    if let Some(details) = conn.details.get() {
        cache(&conn.id, details.clone());
    }
}

/// The connection ended.
pub(crate) fn forget(id: &str) {
    CONNECTIONS.with(|c| c.borrow_mut().remove(id));
}

/// A connection known by id; its record is read when first needed.
pub(crate) fn connection(id: String) -> Connection {
    Connection::by_id(id)
}

/// The record of connection `id`: cached, else asked of the host (defaults
/// if the host no longer knows it).
pub(crate) fn details(id: &str) -> Arc<Details> {
    if let Some(d) = CONNECTIONS.with(|c| c.borrow().get(id).cloned()) {
        return d;
    }
    let details = Arc::new(imp::connection_info(id).unwrap_or_default());
    cache(id, details.clone());
    details
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::http::{HttpError, Request, Response};
    use crate::kv::KvError;
    use crate::log::Level;
    use crate::presence::{Member, PresenceError};
    use crate::state::StateError;
    use crate::timers::TimerError;
    use crate::types::Details;
    use crate::wit::portico::plugin0_2_0::{
        config, connections, host, kv, outbound, presence, timers,
    };

    pub fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        host::log(level, message);
    }

    pub fn now_ms() -> u64 {
        host::now_ms()
    }

    pub fn config_get(key: &str) -> Option<String> {
        config::get(key)
    }

    fn kv_error(e: kv::KvError) -> KvError {
        match e {
            kv::KvError::Unavailable(m) => KvError::Unavailable(m),
            kv::KvError::NotANumber => KvError::NotANumber,
            kv::KvError::TooLarge => KvError::TooLarge,
            kv::KvError::Full(m) => KvError::Full(m),
            kv::KvError::Other(m) => KvError::Other(m),
        }
    }

    pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        kv::get(key).map_err(kv_error)
    }

    pub fn kv_set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), KvError> {
        kv::set(key, value, ttl_ms).map_err(kv_error)
    }

    pub fn kv_delete(key: &str) -> Result<bool, KvError> {
        kv::delete(key).map_err(kv_error)
    }

    pub fn kv_incr(key: &str, by: i64) -> Result<i64, KvError> {
        kv::incr(key, by).map_err(kv_error)
    }

    pub fn presence_list(channel: &str) -> Result<Vec<Member>, PresenceError> {
        match presence::list(channel) {
            Ok(members) => Ok(members
                .into_iter()
                .map(|m| Member {
                    socket: m.socket,
                    subject: m.subject,
                    node: m.node,
                })
                .collect()),
            Err(presence::PresenceError::Unavailable(m)) => Err(PresenceError::Unavailable(m)),
        }
    }

    pub fn connection_info(id: &str) -> Option<Details> {
        let c = connections::info(id)?;
        Some(crate::bridge::details(
            c.namespace,
            c.transport,
            c.remote_addr,
            c.principal,
            c.query,
            c.auth_json,
        ))
    }

    fn state_error(e: connections::StateError) -> StateError {
        match e {
            connections::StateError::Gone => StateError::Gone,
            connections::StateError::TooLarge => StateError::TooLarge,
            connections::StateError::Full(m) => StateError::Full(m),
            connections::StateError::Other(m) => StateError::Other(m),
        }
    }

    pub fn state_get(conn: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        connections::get(conn, key).map_err(state_error)
    }

    pub fn state_set(conn: &str, key: &str, value: &[u8]) -> Result<(), StateError> {
        connections::set(conn, key, value).map_err(state_error)
    }

    pub fn state_delete(conn: &str, key: &str) -> Result<bool, StateError> {
        connections::delete(conn, key).map_err(state_error)
    }

    pub fn timer_set(
        delay_ms: u64,
        name: &str,
        data_json: &str,
        conn: Option<&str>,
    ) -> Result<u64, TimerError> {
        timers::set(delay_ms, name, data_json, conn).map_err(|e| match e {
            timers::TimerError::TooMany(n) => TimerError::TooMany(n),
            timers::TimerError::Gone => TimerError::Gone,
            timers::TimerError::Invalid(m) => TimerError::Invalid(m),
            timers::TimerError::Other(m) => TimerError::Other(m),
        })
    }

    pub fn timer_cancel(id: u64) -> bool {
        timers::cancel(id)
    }

    pub fn http_send(req: &Request) -> Result<Response, HttpError> {
        let wire = outbound::Request {
            method: req.method.clone(),
            url: req.url.clone(),
            headers: req.headers.clone(),
            body: req.body.clone(),
            timeout_ms: req.timeout_ms,
        };
        match outbound::fetch(&wire) {
            Ok(r) => Ok(Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(e) => Err(match e {
                outbound::HttpError::Forbidden(m) => HttpError::Forbidden(m),
                outbound::HttpError::BlockedAddress(m) => HttpError::BlockedAddress(m),
                outbound::HttpError::Timeout(ms) => HttpError::Timeout(ms),
                outbound::HttpError::TooLarge(n) => HttpError::TooLarge(n),
                outbound::HttpError::Busy(n) => HttpError::Busy(n),
                outbound::HttpError::Invalid(m) => HttpError::Invalid(m),
                outbound::HttpError::Failed(m) => HttpError::Failed(m),
                outbound::HttpError::Other(m) => HttpError::Other(m),
            }),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub use crate::testing::state::{
        config_get, connection_info, http_send, kv_delete, kv_get, kv_incr, kv_set, log, now_ms,
        presence_list, state_delete, state_get, state_set, timer_cancel, timer_set,
    };
}

pub(crate) use imp::{
    config_get, http_send, kv_delete, kv_get, kv_incr, kv_set, log, now_ms, presence_list,
    state_delete, state_get, state_set, timer_cancel, timer_set,
};
