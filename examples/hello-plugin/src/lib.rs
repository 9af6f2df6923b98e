//! The README's "Writing a plugin" example, kept compiling and tested: a typed handler, an
//! outbound HTTP call and a timer.
//!
//! Run with: `cargo build -p hello-plugin --target wasm32-wasip2 --release`, then copy
//! `target/wasm32-wasip2/release/hello_plugin.wasm` to the plugin directory as `hello.wasm`
//! and allow its backend: `[plugins.hello] outbound = ["http://127.0.0.1:9000"]`.

use std::time::Duration;

use portico_sdk::prelude::*;
use serde::{Deserialize, Serialize};

pub struct Hello;

#[derive(Deserialize, JsonSchema)]
struct Greet {
    name: String,
}

#[derive(Serialize, JsonSchema)]
struct Greeted {
    ok: bool,
    hello: String,
    visits: i64,
}

/// `greet {name}`: a malformed payload never gets here (the SDK answers `bad_request`).
fn greet(conn: &Connection, Greet { name }: Greet) -> Result<Reply<Greeted>, Rejection> {
    let visits = kv::incr(&format!("visits:{name}"), 1)?;
    let motd = http::Request::get("http://127.0.0.1:9000/motd")
        .send()?
        .text();
    timers::after_for(conn, Duration::from_secs(30), "bye", &name)?;
    let hello = format!("{name}! {motd}");
    Ok(Reply::ack(Greeted {
        ok: true,
        hello,
        visits,
    }))
}

impl Plugin for Hello {
    fn manifest() -> Manifest {
        Manifest::new("hello", env!("CARGO_PKG_VERSION")).description("Says hello")
    }

    fn router() -> Router {
        Router::new().on("greet", "Say hello", greet)
    }

    fn on_timer(timer: &Timer, _conn: Option<&Connection>) -> Actions {
        vec![Action::emit(
            "bye",
            &timer.data::<String>().unwrap_or_default(),
        )]
    }
}

portico_sdk::export!(Hello);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::http::Response;
    use portico_sdk::testing::TestHost;

    #[test]
    fn greets_counts_calls_the_backend_and_says_bye_later() {
        let host = TestHost::<Hello>::new().with_backend(|_req| Ok(Response::new(200, "Welcome.")));
        let alice = host.user("alice");
        host.connect(&alice).unwrap();
        let ack = host.ack(&alice, "greet", json!({ "name": "bob" }));
        assert_eq!(
            ack,
            json!({ "ok": true, "hello": "bob! Welcome.", "visits": 1 })
        );
        assert_eq!(host.ack(&alice, "greet", json!({}))["code"], "bad_request");
        assert_eq!(
            host.advance(Duration::from_secs(30)),
            vec![Action::emit("bye", &"bob")]
        );
        let schema = host.manifest().events()[0].schema_value().cloned().unwrap();
        assert_eq!(schema["required"], json!(["name"]));
    }

    #[test]
    fn a_backend_failure_is_a_clear_error_ack() {
        let host = TestHost::<Hello>::new();
        let alice = host.user("alice");
        assert_eq!(
            host.ack(&alice, "greet", json!({ "name": "bob" }))["code"],
            "outbound_forbidden"
        );
    }
}
