//! Credentials out of log lines. socketioxide logs CONNECT payloads (the
//! token in `auth`) at debug level and HTTP tracing logs URIs with `?token=`
//! or `?access_token=`; every line the node writes goes through [`redact`].

use std::borrow::Cow;

/// What a credential is replaced with.
pub const REDACTED: &str = "[redacted]";

/// `line` with JWTs (`eyJ...`), `token=` / `access_token=` values and
/// `Bearer` credentials replaced by [`REDACTED`].
pub fn redact(line: &str) -> Cow<'_, str> {
    if !(line.contains("eyJ") || line.contains("token=") || line.contains("Bearer ")) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while !rest.is_empty() {
        let next = [
            rest.find("eyJ"),
            rest.find("token=").map(|i| i + "token=".len()),
            rest.find("Bearer ").map(|i| i + "Bearer ".len()),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(at) = next else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let len = if tail.starts_with("eyJ") {
            jwt_len(tail)
        } else {
            tail.find(is_delimiter).unwrap_or(tail.len())
        };
        if len == 0 {
            // `eyJ` that is not a JWT: keep it and move on.
            let step = tail.chars().next().map_or(1, char::len_utf8);
            out.push_str(&tail[..step]);
            rest = &tail[step..];
            continue;
        }
        out.push_str(REDACTED);
        rest = &tail[len..];
    }
    Cow::Owned(out)
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '&' | '"' | '\'' | '\\' | ')' | ']' | '}' | ',' | ';')
}

/// Length of a JWT (`header.payload[.signature]`) at the start of `s`, or 0.
fn jwt_len(s: &str) -> usize {
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'=';
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut dots = 0;
    while i < bytes.len() && (b64(bytes[i]) || (bytes[i] == b'.' && dots < 2)) {
        if bytes[i] == b'.' {
            dots += 1;
        }
        i += 1;
    }
    if dots >= 1 { i } else { 0 }
}

/// A writer that redacts every line it forwards (the log writer).
pub struct Redacting<W>(pub W);

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(redact(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";

    #[test]
    fn credentials_are_replaced_wherever_they_appear() {
        let lines = [
            format!("GET /socket.io/?EIO=4&token={JWT}&transport=websocket HTTP/1.1"),
            "GET /sse/feed?channel=a&access_token=opaque-key-123 x".to_string(),
            format!(r#"packet Connect(Some("{{\"token\":\"{JWT}\"}}"))"#),
            "authorization: Bearer s3cret-admin".to_string(),
            format!("{{\"auth\":{{\"token\":\"{JWT}\"}}}}"),
        ];
        for line in &lines {
            let out = redact(line);
            assert!(
                !out.contains(JWT) && !out.contains("opaque-key-123") && !out.contains("s3cret"),
                "{out}"
            );
            assert!(out.contains(REDACTED), "{out}");
        }
        assert_eq!(redact("channel=a&x=eyJ"), "channel=a&x=eyJ");
        assert_eq!(redact("plain line"), "plain line");
        assert!(redact(&lines[0]).ends_with("&transport=websocket HTTP/1.1"));
    }
}
