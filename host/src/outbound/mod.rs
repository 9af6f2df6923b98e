//! Outbound HTTP for plugins: requests to the origins the operator allowed
//! for a plugin (`[plugins.<name>] outbound = [...]`; none by default).
//!
//! Per request: a timeout, a response-size cap, redirects followed by the
//! host and only within the allowed origins, and every resolved address
//! checked against the [`Policy`] (no private address unless listed), so a
//! plugin reaches nothing else. Per plugin: a cap on requests in flight.
//! Requests run on blocking threads (ureq), never on a tokio worker.

mod client;
mod error;
mod policy;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use error::{OutboundError, PolicyError};
pub use policy::{Origin, Policy};

use crate::plugins::Histogram;

/// How a plugin may use outbound HTTP.
#[derive(Debug, Clone)]
pub struct OutboundSettings {
    pub policy: Policy,
    /// The longest a request may take (a plugin may ask for less).
    pub timeout: Duration,
    pub max_response_bytes: u64,
    pub max_in_flight: u32,
    pub max_redirects: u32,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            timeout: Duration::from_secs(5),
            max_response_bytes: 1 << 20,
            max_in_flight: 16,
            max_redirects: 5,
        }
    }
}

/// A request as the plugin makes it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Option<Duration>,
}

/// The whole response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Counters of one origin (a denied origin is counted under its own name).
#[derive(Default)]
pub struct OriginStats {
    pub requests: AtomicU64,
    /// Failed requests by [`OutboundError::kind`].
    pub errors: Mutex<BTreeMap<&'static str, u64>>,
    pub latency: Histogram,
}

/// One plugin's outbound HTTP.
pub struct Outbound {
    settings: OutboundSettings,
    agent: Option<ureq::Agent>,
    in_flight: Arc<tokio::sync::Semaphore>,
    stats: Mutex<BTreeMap<String, Arc<OriginStats>>>,
}

impl Outbound {
    pub fn new(settings: OutboundSettings) -> Self {
        let agent = (!settings.policy.is_empty()).then(|| client::agent(&settings));
        Self {
            in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight as usize)),
            agent,
            settings,
            stats: Mutex::default(),
        }
    }

    /// No origin allowed (the default).
    pub fn none() -> Self {
        Self::new(OutboundSettings::default())
    }

    /// Counters by origin, for `/metrics`.
    pub fn stats(&self) -> Vec<(String, Arc<OriginStats>)> {
        let stats = self.stats.lock().unwrap();
        stats.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn stats_for(&self, origin: &str) -> Arc<OriginStats> {
        let mut stats = self.stats.lock().unwrap();
        // A plugin choosing URLs must not grow this without bound.
        if !stats.contains_key(origin) && stats.len() >= 64 {
            return stats.entry("other".into()).or_default().clone();
        }
        stats.entry(origin.to_owned()).or_default().clone()
    }

    /// Send `req`, following allowed redirects, and read the whole response.
    pub async fn fetch(&self, req: Request) -> Result<Response, OutboundError> {
        let started = std::time::Instant::now();
        let url = url::Url::parse(&req.url)
            .map_err(|e| OutboundError::Invalid(format!("url {:?}: {e}", req.url)))?;
        let origin = Origin::of(&url)
            .ok_or_else(|| OutboundError::Invalid("only absolute http(s) URLs".into()))?;
        let stats = self.stats_for(origin.as_str());
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let result = self.run(origin, url, req).await;
        stats.latency.record(started.elapsed());
        if let Err(e) = &result {
            *stats.errors.lock().unwrap().entry(e.kind()).or_default() += 1;
        }
        result
    }

    async fn run(
        &self,
        origin: Origin,
        url: url::Url,
        req: Request,
    ) -> Result<Response, OutboundError> {
        let (Some(agent), true) = (&self.agent, self.settings.policy.allows(&origin)) else {
            return Err(OutboundError::Forbidden(origin.as_str().to_owned()));
        };
        let max = self.settings.max_in_flight;
        let _permit = self
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| OutboundError::Busy(max))?;
        let timeout = req
            .timeout
            .map_or(self.settings.timeout, |t| t.min(self.settings.timeout));
        let job = client::Job {
            agent: agent.clone(),
            settings: self.settings.clone(),
            url,
            req,
            timeout,
        };
        let ms = timeout.as_millis() as u32;
        // The blocking thread honours the same deadline; this one only keeps
        // a stuck resolver from holding the plugin call past it.
        match tokio::time::timeout(
            timeout + Duration::from_millis(250),
            tokio::task::spawn_blocking(move || job.run()),
        )
        .await
        {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(OutboundError::Failed(format!("request task: {e}"))),
            Err(_) => Err(OutboundError::Timeout(ms)),
        }
    }
}
