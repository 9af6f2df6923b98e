//! The admin API client behind `portico plugin push|ls|versions|rollback|promote|rm`.
//! Blocking (`ureq`): the CLI does one request and exits.

use std::time::Duration;

use serde_json::Value;

/// A request to the admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer, or one that is not JSON.
    #[error("{0}")]
    Transport(String),
}

/// Talks to one node's admin API.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// `url` is the node's base URL, e.g. `http://127.0.0.1:8080`.
    pub fn new(url: &str, token: Option<String>) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build();
        Self {
            base: url.trim_end_matches('/').to_owned(),
            token,
            agent: ureq::Agent::new_with_config(config),
        }
    }

    fn url(&self, path: &str, query: &[(String, String)]) -> String {
        let mut url = format!("{}/admin/v1{path}", self.base);
        if !query.is_empty() {
            let q = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish();
            url.push('?');
            url.push_str(&q);
        }
        url
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Value, ClientError> {
        let url = self.url(path, query);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let result = match body {
            Some(bytes) => {
                let req = req
                    .header("content-type", "application/wasm")
                    .body(bytes)
                    .map_err(|e| ClientError::Transport(format!("{url}: {e}")))?;
                self.agent.run(req)
            }
            None => {
                let req = req
                    .body(())
                    .map_err(|e| ClientError::Transport(format!("{url}: {e}")))?;
                self.agent.run(req)
            }
        };
        let mut resp = result.map_err(|e| ClientError::Transport(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Transport(format!("{url}: reading the answer: {e}")))?;
        let json: Value = serde_json::from_str(&text).map_err(|_| {
            ClientError::Transport(format!(
                "{url}: HTTP {status} with a non-JSON body: {}",
                text.chars().take(200).collect::<String>()
            ))
        })?;
        if status >= 400 {
            let e = &json["error"];
            return Err(ClientError::Api {
                status,
                code: e["code"].as_str().unwrap_or("unknown").to_owned(),
                message: e["message"].as_str().unwrap_or("request failed").to_owned(),
            });
        }
        Ok(json)
    }

    pub fn list(&self) -> Result<Value, ClientError> {
        self.send("GET", "/plugins", &[], None)
    }

    /// Upload `wasm` as `name`; `query` carries `config.KEY`, `canary`, limits.
    pub fn push(
        &self,
        name: &str,
        wasm: Vec<u8>,
        query: &[(String, String)],
    ) -> Result<Value, ClientError> {
        self.send("PUT", &format!("/plugins/{name}"), query, Some(wasm))
    }

    pub fn versions(&self, name: &str) -> Result<Value, ClientError> {
        self.send("GET", &format!("/plugins/{name}/versions"), &[], None)
    }

    pub fn rollback(&self, name: &str, to: Option<&str>) -> Result<Value, ClientError> {
        let query: Vec<_> = to
            .map(|t| ("to".to_owned(), t.to_owned()))
            .into_iter()
            .collect();
        self.send("POST", &format!("/plugins/{name}/rollback"), &query, None)
    }

    pub fn promote(&self, name: &str) -> Result<Value, ClientError> {
        self.send("POST", &format!("/plugins/{name}/promote"), &[], None)
    }

    pub fn remove(&self, name: &str) -> Result<Value, ClientError> {
        self.send("DELETE", &format!("/plugins/{name}"), &[], None)
    }
}

/// One line about a plugin, for humans.
pub fn describe_plugin(p: &Value) -> String {
    let mut line = format!(
        "{} {} (revision {}, sha256 {}, {} bytes) on {}",
        p["name"].as_str().unwrap_or("?"),
        p["version"].as_str().unwrap_or("?"),
        p["revision"],
        p["sha256"].as_str().unwrap_or("").get(..12).unwrap_or(""),
        p["size"],
        p["mount"].as_str().unwrap_or("?"),
    );
    if let Some(c) = p["canary"].as_object() {
        line.push_str(&format!(
            "; canary {} (revision {}) on {} % of new connections",
            c["version"].as_str().unwrap_or("?"),
            c["revision"],
            c["percent"]
        ));
    }
    line
}

/// A JSON value as text that width formatting applies to.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The plugin table of `portico plugin ls`.
pub fn plugin_table(list: &Value) -> String {
    let mut out = format!(
        "{:<16} {:<12} {:>4} {:<14} {:>6} {:>9} {:>7} {:>6} {:>9} {:>9}  {}\n",
        "NAME",
        "VERSION",
        "REV",
        "SHA256",
        "CONNS",
        "EVENTS",
        "ERRORS",
        "TRAPS",
        "P50_US",
        "P99_US",
        "MOUNT"
    );
    let empty = vec![];
    for p in list["plugins"].as_array().unwrap_or(&empty) {
        let c = &p["counters"];
        let us = |v: &Value| v.as_f64().map_or("-".to_owned(), |f| format!("{f:.1}"));
        out.push_str(&format!(
            "{:<16} {:<12} {:>4} {:<14} {:>6} {:>9} {:>7} {:>6} {:>9} {:>9}  {}{}\n",
            p["name"].as_str().unwrap_or("?"),
            p["version"].as_str().unwrap_or("?"),
            cell(&p["revision"]),
            p["sha256"].as_str().unwrap_or("").get(..12).unwrap_or(""),
            cell(&p["connections"]),
            cell(&c["events"]),
            cell(&c["errors"]),
            cell(&c["traps"]),
            us(&c["p50_us"]),
            us(&c["p99_us"]),
            p["mount"].as_str().unwrap_or("?"),
            p["canary"]
                .as_object()
                .map(|k| format!(
                    "  (canary {} at {} %)",
                    k["version"].as_str().unwrap_or("?"),
                    k["percent"]
                ))
                .unwrap_or_default(),
        ));
    }
    out
}

/// The revision table of `portico plugin versions`.
pub fn versions_table(v: &Value) -> String {
    let mut out = format!(
        "{:>4} {:<12} {:<14} {:>9}  {}\n",
        "REV", "VERSION", "SHA256", "BYTES", "STATE"
    );
    let empty = vec![];
    for r in v["revisions"].as_array().unwrap_or(&empty) {
        let state = match (r["active"].as_bool(), r["canary"].as_bool()) {
            (Some(true), _) => "active",
            (_, Some(true)) => "canary",
            _ => "",
        };
        out.push_str(&format!(
            "{:>4} {:<12} {:<14} {:>9}  {}\n",
            cell(&r["revision"]),
            r["version"].as_str().unwrap_or("?"),
            r["sha256"].as_str().unwrap_or("").get(..12).unwrap_or(""),
            cell(&r["size"]),
            state
        ));
    }
    out
}
