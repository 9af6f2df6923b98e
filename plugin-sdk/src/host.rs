//! The one place that calls host imports: the WIT imports on wasm32, the in-memory test host
//! (`crate::testing`) everywhere else.

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::kv::KvError;
    use crate::log::Level;
    use crate::presence::{Member, PresenceError};
    use crate::wit::portico::plugin::{config, host, kv, presence};

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
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub use crate::testing::state::{
        config_get, kv_delete, kv_get, kv_incr, kv_set, log, now_ms, presence_list,
    };
}

pub(crate) use imp::*;
