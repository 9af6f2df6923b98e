//! The experiment's guest: `n` GETs of one URL, each timed inside the component with
//! `wasi:clocks/monotonic-clock`, through the Portico import or through `wasi:http`.
//! Built with `cargo build --release --target wasm32-wasip2` (see ../README.md).

wit_bindgen::generate!({
    inline: r#"
        package bench:cost;

        world bench {
            import portico:plugin/outbound@0.2.0;
            /// `n` GETs of `http://{authority}{path}`; nanoseconds per call.
            /// `via`: 0 the Portico import, 1 `wasi:http/outgoing-handler`.
            export run: func(via: u8, authority: string, path: string, n: u32) -> result<list<u64>, string>;
        }
    "#,
    // The host's WIT, unchanged.
    path: ["../../../wit/0.2.0"],
    generate_all,
});

use portico::plugin::outbound;
use wasip2::clocks::monotonic_clock;
use wasip2::http::{outgoing_handler, types};

struct Bench;

impl Guest for Bench {
    fn run(via: u8, authority: String, path: String, n: u32) -> Result<Vec<u64>, String> {
        let url = format!("http://{authority}{path}");
        let mut took = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let started = monotonic_clock::now();
            let body = match via {
                0 => portico(&url)?,
                _ => wasi_http(&authority, &path)?,
            };
            took.push(monotonic_clock::now() - started);
            if body != b"ok" {
                return Err(format!("unexpected body {body:?}"));
            }
        }
        Ok(took)
    }
}

fn portico(url: &str) -> Result<Vec<u8>, String> {
    let req = outbound::Request {
        method: "GET".into(),
        url: url.into(),
        headers: vec![],
        body: vec![],
        timeout_ms: None,
    };
    let res = outbound::fetch(&req).map_err(|e| format!("portico: {e:?}"))?;
    Ok(res.body)
}

fn wasi_http(authority: &str, path: &str) -> Result<Vec<u8>, String> {
    let req = types::OutgoingRequest::new(types::Fields::new());
    req.set_method(&types::Method::Get).map_err(|()| "method")?;
    req.set_scheme(Some(&types::Scheme::Http))
        .map_err(|()| "scheme")?;
    req.set_authority(Some(authority))
        .map_err(|()| "authority")?;
    req.set_path_with_query(Some(path)).map_err(|()| "path")?;
    // An empty body, finished at once (as a GET sends it).
    let body = req.body().map_err(|()| "body")?;
    types::OutgoingBody::finish(body, None).map_err(|e| format!("finish: {e:?}"))?;
    let future = outgoing_handler::handle(req, None).map_err(|e| format!("handle: {e:?}"))?;
    future.subscribe().block();
    let res = future
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken")?
        .map_err(|e| format!("wasi:http: {e:?}"))?;
    let incoming = res.consume().map_err(|()| "consume")?;
    let stream = incoming.stream().map_err(|()| "stream")?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(wasip2::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(format!("read: {e:?}")),
        }
    }
    drop(stream);
    types::IncomingBody::finish(incoming);
    Ok(body)
}

export!(Bench);
