//! The README's "Writing a plugin" example, kept compiling and tested.
//!
//! Run with: `cargo build -p hello-plugin --target wasm32-wasip2 --release`, then copy
//! `target/wasm32-wasip2/release/hello_plugin.wasm` to the plugin directory as `hello.wasm`.

use portico_sdk::prelude::*;
use serde::Deserialize;

pub struct Hello;

#[derive(Deserialize)]
struct Greet {
    name: String,
}

impl Plugin for Hello {
    fn manifest() -> Manifest {
        Manifest::new("hello", env!("CARGO_PKG_VERSION")).description("Says hello")
    }

    fn on_event(_conn: &Connection, event: &Event) -> Result<Actions, Rejection> {
        match event.name() {
            "greet" => {
                let Greet { name } = event.arg()?; // bad_request on malformed args
                let visits = kv::incr(&format!("visits:{name}"), 1)?;
                Ok(vec![Action::ack(
                    &json!({ "ok": true, "hello": name, "visits": visits }),
                )])
            }
            _ => Err(Rejection::new("unknown_event", "hello only knows `greet`")),
        }
    }
}

portico_sdk::export!(Hello);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_and_counts_visits() {
        let host = portico_sdk::testing::TestHost::<Hello>::new();
        let alice = host.user("alice");
        assert_eq!(
            host.ack(&alice, "greet", json!({ "name": "bob" }))["visits"],
            1
        );
        assert_eq!(
            host.ack(&alice, "greet", json!({ "name": "bob" }))["visits"],
            2
        );
        assert_eq!(host.ack(&alice, "greet", json!({}))["code"], "bad_request");
    }
}
