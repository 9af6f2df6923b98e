//! The imports only `portico:plugin@0.2.0` has: `connections` (records and
//! per-connection state), `timers` and `outbound` HTTP.

use std::time::Duration;

use super::bindings::{self, connections, outbound, timers};
use super::host_impl::HostState;
use crate::connstate::StateError;
use crate::outbound::{self as out, OutboundError};
use crate::timers::TimerError;

impl From<StateError> for connections::StateError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Gone => Self::Gone,
            StateError::TooLarge { .. } => Self::TooLarge,
            StateError::Full(m) => Self::Full(m),
        }
    }
}

impl connections::Host for HostState {
    fn info(&mut self, conn: String) -> Option<connections::Connection> {
        self.conns.info(&conn).map(|c| bindings::connection2(&c))
    }

    fn get(
        &mut self,
        conn: String,
        key: String,
    ) -> Result<Option<Vec<u8>>, connections::StateError> {
        Ok(self.conns.get(&conn, &key)?)
    }

    fn set(
        &mut self,
        conn: String,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), connections::StateError> {
        Ok(self.conns.set(&conn, &key, value)?)
    }

    fn delete(&mut self, conn: String, key: String) -> Result<bool, connections::StateError> {
        Ok(self.conns.delete(&conn, &key)?)
    }
}

impl From<TimerError> for timers::TimerError {
    fn from(e: TimerError) -> Self {
        match e {
            TimerError::TooMany(n) => Self::TooMany(n),
            TimerError::Gone => Self::Gone,
            TimerError::Invalid(m) => Self::Invalid(m),
        }
    }
}

impl timers::Host for HostState {
    fn set(
        &mut self,
        delay_ms: u64,
        name: String,
        data_json: String,
        conn: Option<String>,
    ) -> Result<u64, timers::TimerError> {
        if let Some(id) = &conn
            && !self.conns.contains(id)
        {
            return Err(timers::TimerError::Gone);
        }
        let delay = Duration::from_millis(delay_ms);
        Ok(self.timers.set(delay, name, data_json, conn)?)
    }

    fn cancel(&mut self, id: u64) -> bool {
        self.timers.cancel(id)
    }
}

impl From<OutboundError> for outbound::HttpError {
    fn from(e: OutboundError) -> Self {
        match e {
            OutboundError::Forbidden(m) => Self::Forbidden(m),
            OutboundError::BlockedAddress(m) => Self::BlockedAddress(m),
            OutboundError::Timeout(ms) => Self::Timeout(ms),
            OutboundError::TooLarge(n) => Self::TooLarge(n),
            OutboundError::Busy(n) => Self::Busy(n),
            OutboundError::Invalid(m) => Self::Invalid(m),
            OutboundError::Failed(m) => Self::Failed(m),
        }
    }
}

impl outbound::Host for HostState {
    async fn fetch(
        &mut self,
        req: outbound::Request,
    ) -> Result<outbound::Response, outbound::HttpError> {
        let req = out::Request {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
            timeout: req.timeout_ms.map(|ms| Duration::from_millis(ms.into())),
        };
        let response = self.outbound.fetch(req).await?;
        Ok(outbound::Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }
}
