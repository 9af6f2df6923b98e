//! Reading an SSE request: channels, token and the id to resume after.

use axum::http::HeaderMap;

use super::error::SseError;
use crate::channels::EventId;

/// What a `GET /sse/<plugin>` asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SseRequest {
    /// Requested channels, deduplicated, in request order.
    pub channels: Vec<String>,
    pub token: Option<String>,
    pub last_event_id: Option<EventId>,
    /// Query parameters the plugin sees (without the token).
    pub query: Vec<(String, String)>,
}

/// Token: `Authorization: Bearer`, else `access_token` (EventSource cannot
/// set headers). Resume point: the `Last-Event-ID` header (what a browser
/// sends when it reconnects), else `lastEventId` (a first connect that resumes;
/// it stays in the URL on reconnects, so the header must win).
pub(super) fn parse(headers: &HeaderMap, query: Option<&str>) -> Result<SseRequest, SseError> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut channels: Vec<String> = Vec::new();
    for (k, v) in &pairs {
        if k == "channel" && !channels.contains(v) {
            channels.push(v.clone());
        }
    }
    let query_value = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    let token = crate::auth::bearer(headers)
        .map(str::to_owned)
        .or_else(|| query_value("access_token"))
        .filter(|t| !t.is_empty());
    let last = headers
        .get("last-event-id")
        .and_then(|h| h.to_str().ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| query_value("lastEventId").filter(|v| !v.is_empty()));
    let last_event_id = last.map(|id| id.parse()).transpose()?;
    Ok(SseRequest {
        channels,
        token,
        last_event_id,
        query: pairs
            .into_iter()
            .filter(|(k, _)| k != "access_token")
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn channels_token_and_resume_point() {
        let r = parse(
            &HeaderMap::new(),
            Some("channel=a&channel=b%20c&channel=a&access_token=t&lastEventId=5-1"),
        )
        .unwrap();
        assert_eq!(r.channels, ["a", "b c"]);
        assert_eq!(r.token.as_deref(), Some("t"));
        assert_eq!(r.last_event_id, Some(EventId::new(5, 1)));
        assert!(r.query.iter().all(|(k, _)| k != "access_token"));
    }

    #[test]
    fn headers_win_over_the_query() {
        let h = headers(&[("authorization", "Bearer hdr"), ("last-event-id", "9-0")]);
        let r = parse(&h, Some("channel=a&access_token=q&lastEventId=5-1")).unwrap();
        assert_eq!(r.token.as_deref(), Some("hdr"));
        assert_eq!(r.last_event_id, Some(EventId::new(9, 0)));
        let empty = headers(&[("last-event-id", "")]);
        assert_eq!(
            parse(&empty, Some("channel=a")).unwrap().last_event_id,
            None
        );
    }

    #[test]
    fn malformed_resume_ids_are_refused() {
        let h = headers(&[("last-event-id", "yesterday")]);
        assert!(matches!(
            parse(&h, Some("channel=a")),
            Err(SseError::BadLastEventId(_))
        ));
        assert!(parse(&HeaderMap::new(), Some("lastEventId=1")).is_err());
        assert!(parse(&HeaderMap::new(), None).unwrap().channels.is_empty());
    }
}
