//! `counter`: named counters in the key-value store.
//!
//! - `hit {name?}` adds config `step` (default 1) to counter `name` (default `hits`) and acks
//!   `{"ok": true, "name", "value"}`; with config `broadcast` = `true` it also publishes
//!   `count {name, value}` to channel `counters`.
//! - `get {name?}` acks the current value (0 when never hit).

use portico_sdk::prelude::*;
use serde::Deserialize;

/// The counter plugin.
pub struct Counter;

/// Channel that receives `count` events when `broadcast` is on.
pub const CHANNEL: &str = "counters";

#[derive(Deserialize, Default)]
struct Args {
    name: Option<String>,
}

fn counter_name(event: &Event) -> Result<String, Rejection> {
    let args: Option<Args> = event.arg()?;
    let name = args
        .unwrap_or_default()
        .name
        .unwrap_or_else(|| "hits".into());
    if name.is_empty() || name.len() > 64 {
        return Err(Rejection::bad_request("name must be 1 to 64 bytes"));
    }
    Ok(name)
}

fn key(name: &str) -> String {
    format!("count:{name}")
}

impl Plugin for Counter {
    fn manifest() -> Manifest {
        let args = json!({
            "type": "object",
            "properties": { "name": { "type": "string", "minLength": 1, "maxLength": 64 } }
        });
        Manifest::new("counter", env!("CARGO_PKG_VERSION"))
            .description("Named counters in the key-value store")
            .event(EventSpec::incoming("hit", "Add `step` to a counter").schema(args.clone()))
            .event(EventSpec::incoming("get", "Read a counter").schema(args))
            .event(
                EventSpec::outgoing("count", "A counter changed (channel `counters`)").schema(
                    json!({
                        "type": "object",
                        "properties": { "name": { "type": "string" }, "value": { "type": "integer" } },
                        "required": ["name", "value"]
                    }),
                ),
            )
    }

    fn on_event(_conn: &Connection, event: &Event) -> Result<Actions, Rejection> {
        match event.name() {
            "hit" => {
                let name = counter_name(event)?;
                let step: i64 = config::get_parsed_or("step", 1)?;
                let value = kv::incr(&key(&name), step)?;
                let mut actions = vec![Action::ack(
                    &json!({ "ok": true, "name": name, "value": value }),
                )];
                if config::get_parsed_or("broadcast", false)? {
                    actions.push(Action::publish(
                        CHANNEL,
                        "count",
                        &json!({ "name": name, "value": value }),
                    ));
                }
                Ok(actions)
            }
            "get" => {
                let name = counter_name(event)?;
                let value = match kv::get_string(&key(&name))? {
                    Some(text) => text
                        .parse::<i64>()
                        .map_err(|_| Rejection::new("kv_error", "counter is not a number"))?,
                    None => 0,
                };
                Ok(vec![Action::ack(
                    &json!({ "ok": true, "name": name, "value": value }),
                )])
            }
            other => Err(Rejection::new(
                "unknown_event",
                format!("counter has no event `{other}`"),
            )),
        }
    }
}

portico_sdk::export!(Counter);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::TestHost;

    #[test]
    fn hit_counts_by_step() {
        let host = TestHost::<Counter>::new();
        let c = host.anonymous();
        assert_eq!(host.ack(&c, "hit", ())["value"], json!(1));
        assert_eq!(host.ack(&c, "hit", json!({}))["value"], json!(2));
        host.set_config("step", "10");
        assert_eq!(
            host.ack(&c, "hit", json!({ "name": "hits" })),
            json!({ "ok": true, "name": "hits", "value": 12 })
        );
        assert_eq!(host.kv_string("count:hits").as_deref(), Some("12"));
        assert_eq!(host.ack(&c, "get", ())["value"], json!(12));
    }

    #[test]
    fn counters_are_independent_and_start_at_zero() {
        let host = TestHost::<Counter>::new();
        let c = host.anonymous();
        host.ack(&c, "hit", json!({ "name": "a" }));
        assert_eq!(
            host.ack(&c, "get", json!({ "name": "a" }))["value"],
            json!(1)
        );
        assert_eq!(
            host.ack(&c, "get", json!({ "name": "b" }))["value"],
            json!(0)
        );
    }

    #[test]
    fn broadcasts_when_configured() {
        let host = TestHost::<Counter>::new();
        let c = host.anonymous();
        let quiet = host.event(&c, "hit", ()).unwrap();
        assert_eq!(quiet.len(), 1);
        host.set_config("broadcast", "true");
        let loud = host.event(&c, "hit", json!({ "name": "x" })).unwrap();
        assert_eq!(
            loud[1],
            Action::publish(CHANNEL, "count", &json!({ "name": "x", "value": 1 }))
        );
    }

    #[test]
    fn bad_input_and_config_are_rejected() {
        let host = TestHost::<Counter>::new();
        let c = host.anonymous();
        assert_eq!(
            host.ack(&c, "hit", json!({ "name": 3 }))["code"],
            json!("bad_request")
        );
        assert_eq!(
            host.ack(&c, "hit", json!({ "name": "" }))["code"],
            json!("bad_request")
        );
        host.set_config("step", "lots");
        assert_eq!(host.ack(&c, "hit", ())["code"], json!("config_error"));
        host.set_kv("count:hits", "x");
        assert_eq!(host.ack(&c, "get", ())["code"], json!("kv_error"));
        assert_eq!(host.ack(&c, "nope", ())["code"], json!("unknown_event"));
    }
}
