//! HTTP requests to the backend services the operator allowed for this plugin
//! (`[plugins.<name>] outbound = ["https://api.internal:8443"]`; none by default).
//!
//! The host enforces a timeout, a response-size cap, redirects only within the allowed
//! origins, no private address unless listed, and a cap on requests in flight. A call blocks
//! the plugin until the whole response is in (the host does not block a thread meanwhile).
//!
//! ```no_run
//! use portico_sdk::prelude::*;
//! # fn f() -> Result<(), Rejection> {
//! let reply = http::Request::post("http://127.0.0.1:9000/orders")
//!     .json(&json!({ "item": 7 }))
//!     .send()?;
//! let order: serde_json::Value = reply.json()?;
//! # let _ = order; Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Rejection;

/// An outgoing request.
///
/// ```
/// use portico_sdk::http::Request;
/// let req = Request::get("https://api.example.com/v1/me").header("accept", "application/json");
/// assert_eq!(req.method(), "GET");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) timeout_ms: Option<u32>,
}

impl Request {
    /// A request with any method.
    ///
    /// ```
    /// # use portico_sdk::http::Request;
    /// assert_eq!(Request::new("PUT", "http://a/").method(), "PUT");
    /// ```
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: None,
        }
    }

    /// A `GET`.
    ///
    /// ```
    /// # use portico_sdk::http::Request;
    /// assert_eq!(Request::get("http://a/").url(), "http://a/");
    /// ```
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// A `POST`.
    ///
    /// ```
    /// # use portico_sdk::http::Request;
    /// assert_eq!(Request::post("http://a/").method(), "POST");
    /// ```
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    /// Adds a header.
    ///
    /// ```
    /// # use portico_sdk::http::Request;
    /// let r = Request::get("http://a/").header("x-a", "1");
    /// assert_eq!(r.headers(), &[("x-a".to_string(), "1".to_string())]);
    /// ```
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    ///
    /// ```
    /// # use portico_sdk::http::Request;
    /// assert_eq!(Request::post("http://a/").body("hi").body_bytes(), b"hi");
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    ///
    /// # Panics
    ///
    /// If `T`'s `Serialize` implementation fails, like [`json!`](crate::json).
    ///
    /// ```
    /// # use portico_sdk::http::Request;
    /// let r = Request::post("http://a/").json(&serde_json::json!({ "a": 1 }));
    /// assert_eq!(r.body_bytes(), br#"{"a":1}"#);
    /// ```
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        let body = crate::types::to_value(value).to_string();
        self.header("content-type", "application/json").body(body)
    }

    /// A timeout shorter than the host's.
    ///
    /// ```
    /// # use portico_sdk::http::Request;
    /// let r = Request::get("http://a/").timeout(std::time::Duration::from_millis(250));
    /// # let _ = r;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
        self
    }

    /// The method.
    ///
    /// ```
    /// # use portico_sdk::http::Request;
    /// assert_eq!(Request::get("http://a/").method(), "GET");
    /// ```
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The URL.
    ///
    /// ```
    /// # use portico_sdk::http::Request;
    /// assert_eq!(Request::get("http://a/b").url(), "http://a/b");
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The headers, in order.
    ///
    /// ```
    /// # use portico_sdk::http::Request;
    /// assert!(Request::get("http://a/").headers().is_empty());
    /// ```
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    ///
    /// ```
    /// # use portico_sdk::http::Request;
    /// assert!(Request::get("http://a/").body_bytes().is_empty());
    /// ```
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Sends it and waits for the whole response (see [`send`]).
    ///
    /// ```no_run
    /// # use portico_sdk::http::Request;
    /// let status = Request::get("http://127.0.0.1:9000/health").send()?.status();
    /// # let _ = status;
    /// # Ok::<(), portico_sdk::http::HttpError>(())
    /// ```
    pub fn send(&self) -> Result<Response, HttpError> {
        send(self)
    }
}

/// A whole response.
///
/// ```
/// use portico_sdk::http::Response;
/// let r = Response::new(200, r#"{"ok":true}"#);
/// assert!(r.is_success());
/// assert_eq!(r.json::<serde_json::Value>().unwrap()["ok"], true);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// A response (for fake backends in tests).
    ///
    /// ```
    /// # use portico_sdk::http::Response;
    /// assert_eq!(Response::new(404, "").status(), 404);
    /// ```
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A `200` with a JSON body.
    ///
    /// ```
    /// # use portico_sdk::http::Response;
    /// assert_eq!(Response::json_body(&serde_json::json!([1])).text(), "[1]");
    /// ```
    pub fn json_body<T: Serialize + ?Sized>(value: &T) -> Self {
        let body = crate::types::to_value(value).to_string();
        Self::new(200, body).with_header("content-type", "application/json")
    }

    /// Adds a header.
    ///
    /// ```
    /// # use portico_sdk::http::Response;
    /// assert_eq!(Response::new(200, "").with_header("a", "b").header("A"), Some("b"));
    /// ```
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The status code.
    ///
    /// ```
    /// # use portico_sdk::http::Response;
    /// assert_eq!(Response::new(201, "").status(), 201);
    /// ```
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 2xx.
    ///
    /// ```
    /// # use portico_sdk::http::Response;
    /// assert!(!Response::new(500, "").is_success());
    /// ```
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header named `name` (case-insensitive).
    ///
    /// ```
    /// # use portico_sdk::http::Response;
    /// assert_eq!(Response::new(200, "").header("x"), None);
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body.
    ///
    /// ```
    /// # use portico_sdk::http::Response;
    /// assert_eq!(Response::new(200, "x").body(), b"x");
    /// ```
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (lossy UTF-8).
    ///
    /// ```
    /// # use portico_sdk::http::Response;
    /// assert_eq!(Response::new(200, "hi").text(), "hi");
    /// ```
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; a [`HttpError::Decode`] if it does not fit `T`.
    ///
    /// ```
    /// # use portico_sdk::http::Response;
    /// assert!(Response::new(200, "nope").json::<u32>().is_err());
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::Decode(e.to_string()))
    }
}

/// Why a request failed. Converts into a [`Rejection`] whose code names the case
/// (`outbound_forbidden`, `outbound_timeout`, ...), so `?` answers the client clearly.
///
/// ```
/// # use portico_sdk::prelude::*;
/// let r: Rejection = http::HttpError::Timeout(5000).into();
/// assert_eq!(r.code(), "outbound_timeout");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The origin (or a redirect's) is not allowed for this plugin.
    Forbidden(String),
    /// The name resolved to an address this plugin may not reach.
    BlockedAddress(String),
    /// No complete response within this many milliseconds.
    Timeout(u32),
    /// The response body is over this many bytes.
    TooLarge(u64),
    /// This many requests of the plugin are already in flight.
    Busy(u32),
    /// The request is malformed.
    Invalid(String),
    /// Connecting or the exchange failed.
    Failed(String),
    /// The response body is not the JSON expected.
    Decode(String),
    /// Any other failure reported by the host.
    Other(String),
}

impl HttpError {
    /// The rejection code for this error.
    ///
    /// ```
    /// # use portico_sdk::http::HttpError;
    /// assert_eq!(HttpError::Busy(16).code(), "outbound_busy");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Self::Forbidden(_) => "outbound_forbidden",
            Self::BlockedAddress(_) => "outbound_blocked",
            Self::Timeout(_) => "outbound_timeout",
            Self::TooLarge(_) => "outbound_too_large",
            Self::Busy(_) => "outbound_busy",
            Self::Invalid(_) => "outbound_invalid",
            Self::Failed(_) | Self::Other(_) => "outbound_failed",
            Self::Decode(_) => "outbound_bad_response",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Forbidden(m) => write!(f, "not allowed: {m}"),
            Self::BlockedAddress(m) => write!(f, "address not allowed: {m}"),
            Self::Timeout(ms) => write!(f, "no response within {ms} ms"),
            Self::TooLarge(n) => write!(f, "response body over {n} bytes"),
            Self::Busy(n) => write!(f, "{n} requests already in flight"),
            Self::Invalid(m) => write!(f, "invalid request: {m}"),
            Self::Failed(m) | Self::Other(m) => write!(f, "request failed: {m}"),
            Self::Decode(m) => write!(f, "unexpected response: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for Rejection {
    fn from(e: HttpError) -> Self {
        Rejection::new(e.code(), e.to_string())
    }
}

/// Sends `req` and waits for the whole response.
///
/// ```no_run
/// let r = portico_sdk::http::send(&portico_sdk::http::Request::get("http://127.0.0.1:9000/"))?;
/// # let _ = r;
/// # Ok::<(), portico_sdk::http::HttpError>(())
/// ```
pub fn send(req: &Request) -> Result<Response, HttpError> {
    crate::host::http_send(req)
}
