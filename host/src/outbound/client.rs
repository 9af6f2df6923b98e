//! The blocking HTTP exchange (ureq) with the policy enforced at name
//! resolution and on every redirect.

use std::io;
use std::time::{Duration, Instant};

use ureq::http;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::policy::{Origin, Policy};
use super::{OutboundError, OutboundSettings, Request, Response};

/// Resolves like ureq does, then drops the request if any address is not
/// allowed for the origin (checked on the addresses actually connected to).
#[derive(Debug)]
struct CheckedResolver {
    policy: Policy,
}

/// Carried inside ureq's error to tell a blocked address from an I/O failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Blocked(String);

impl Resolver for CheckedResolver {
    fn resolve(
        &self,
        uri: &http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let addrs = DefaultResolver::default().resolve(uri, config, timeout)?;
        let origin = url::Url::parse(&uri.to_string())
            .ok()
            .and_then(|u| Origin::of(&u))
            .ok_or(ureq::Error::BadUri(uri.to_string()))?;
        if let Some(bad) = addrs
            .iter()
            .find(|a| !self.policy.may_connect(&origin, a.ip()))
        {
            let message = format!(
                "{} resolves to {}, which this plugin may not reach (list the range in outbound_addresses)",
                origin.as_str(),
                bad.ip()
            );
            return Err(ureq::Error::Io(io::Error::other(Blocked(message))));
        }
        Ok(addrs)
    }
}

pub(super) fn agent(settings: &OutboundSettings) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        // Redirects are followed here, each checked against the allow-list.
        .max_redirects(0)
        .http_status_as_error(false)
        // Never through a proxy from the environment: it would bypass the policy.
        .proxy(None)
        .timeout_global(Some(settings.timeout))
        .build();
    let resolver = CheckedResolver {
        policy: settings.policy.clone(),
    };
    ureq::Agent::with_parts(config, DefaultConnector::default(), resolver)
}

pub(super) struct Job {
    pub(super) agent: ureq::Agent,
    pub(super) settings: OutboundSettings,
    pub(super) url: url::Url,
    pub(super) req: Request,
    pub(super) timeout: Duration,
}

impl Job {
    pub(super) fn run(mut self) -> Result<Response, OutboundError> {
        let deadline = Instant::now() + self.timeout;
        let (mut url, mut method) = (self.url.clone(), self.req.method.clone());
        let mut body = std::mem::take(&mut self.req.body);
        for _ in 0..=self.settings.max_redirects {
            let left = deadline.saturating_duration_since(Instant::now());
            let response = self.exchange(&url, &method, &body, left)?;
            let Some(next) = redirect(&url, &response) else {
                return Ok(response);
            };
            let origin = Origin::of(&next)
                .ok_or_else(|| OutboundError::Forbidden(format!("redirect to {next}")))?;
            if !self.settings.policy.allows(&origin) {
                return Err(OutboundError::Forbidden(format!(
                    "{} (redirected to {next})",
                    origin.as_str()
                )));
            }
            // 307/308 repeat the request; the others become a GET without body.
            if !matches!(response.status, 307 | 308) {
                method = "GET".into();
                body = Vec::new();
            }
            url = next;
        }
        Err(OutboundError::Failed(format!(
            "more than {} redirects",
            self.settings.max_redirects
        )))
    }

    fn exchange(
        &self,
        url: &url::Url,
        method: &str,
        body: &[u8],
        left: Duration,
    ) -> Result<Response, OutboundError> {
        let ms = self.timeout.as_millis() as u32;
        if left.is_zero() {
            return Err(OutboundError::Timeout(ms));
        }
        let method = http::Method::from_bytes(method.as_bytes())
            .map_err(|_| OutboundError::Invalid(format!("method {method:?}")))?;
        let mut builder = http::Request::builder().method(method).uri(url.as_str());
        for (name, value) in &self.req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(body.to_vec())
            .map_err(|e| OutboundError::Invalid(e.to_string()))?;
        use ureq::RequestExt;
        let mut response = request
            .with_agent(&self.agent)
            .configure()
            .timeout_global(Some(left))
            .run()
            .map_err(|e| error(e, ms, self.settings.max_response_bytes))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let max = self.settings.max_response_bytes;
        let body = response
            .body_mut()
            .with_config()
            .limit(max)
            .read_to_vec()
            .map_err(|e| error(e, ms, max))?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn redirect(from: &url::Url, response: &Response) -> Option<url::Url> {
    if !matches!(response.status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = response
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("location"))?;
    from.join(&location.1).ok()
}

fn error(e: ureq::Error, timeout_ms: u32, max: u64) -> OutboundError {
    match e {
        ureq::Error::Timeout(_) => OutboundError::Timeout(timeout_ms),
        ureq::Error::BodyExceedsLimit(_) => OutboundError::TooLarge(max),
        ureq::Error::Io(io) => match io.get_ref().and_then(|i| i.downcast_ref::<Blocked>()) {
            Some(Blocked(m)) => OutboundError::BlockedAddress(m.clone()),
            None if io.kind() == io::ErrorKind::TimedOut => OutboundError::Timeout(timeout_ms),
            None => OutboundError::Failed(io.to_string()),
        },
        ureq::Error::BadUri(m) => OutboundError::Invalid(m),
        other => OutboundError::Failed(other.to_string()),
    }
}
