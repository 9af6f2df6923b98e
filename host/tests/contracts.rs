//! Every contract version is served side by side: components built against the frozen
//! `portico:plugin@0.1.0` and `@0.2.0` (committed in `tests/fixtures/echo-0.1.0.wasm` and
//! `echo-0.2.0.wasm`: today's echo before the SDK moved to the next version) load and answer
//! next to the SDK's 0.3.0 plugins.

mod common;

use std::sync::Arc;

use common::{conn, event, install, registry};
use portico::plugins::{Action, Event, Payload, PluginSettings};

fn fixture(name: &str) -> Arc<[u8]> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_of_every_contract_version_serve_side_by_side() {
    let r = registry();
    for (name, file) in [("echo-1", "echo-0.1.0.wasm"), ("echo-2", "echo-0.2.0.wasm")] {
        r.install(name, fixture(file), PluginSettings::default())
            .await
            .unwrap_or_else(|e| panic!("{file} loads: {e}"));
    }
    install(&r, "echo", PluginSettings::default()).await;
    install(&r, "chat", PluginSettings::default()).await;
    let versions = ["echo-1", "echo-2", "echo"].map(|n| r.get(n).unwrap().active());
    let contracts = versions.each_ref().map(|v| v.contract());
    assert_eq!(contracts, ["0.1.0", "0.2.0", "0.3.0"]);
    assert_eq!(r.get("chat").unwrap().active().contract(), "0.3.0");

    // An attachment and a non-ASCII name cross every version's encoding unchanged.
    let file = Event::new(
        "fïle",
        r#"[{"_placeholder":true,"num":0}]"#,
        vec![vec![0, 255, 7]],
        true,
    );
    for version in &versions {
        assert_eq!(version.manifest.name, "echo");
        let c = conn("s1");
        version.connections().register(Arc::new(c.clone()));
        assert!(version.on_connect(&c).await.unwrap().is_ok());
        let answers = version
            .on_events(
                &c,
                vec![event("a", "[1]"), event("b", r#"[{"x":2}]"#), file.clone()],
            )
            .await
            .unwrap();
        let acked: Vec<_> = answers
            .iter()
            .map(|a| match a.as_deref() {
                Ok([Action::Ack(p)]) => p.clone(),
                other => panic!("{} answered {other:?}", version.contract()),
            })
            .collect();
        let payload = |args: &str, binary: Vec<Vec<u8>>| Payload {
            args_json: args.into(),
            binary,
        };
        assert_eq!(
            acked,
            [
                payload("[1]", vec![]),
                payload(r#"[{"x":2}]"#, vec![]),
                payload(&file.args.to_json(), file.binary.clone()),
            ],
            "{}",
            version.contract()
        );
        assert!(version.on_disconnect(&c, "transport close").await.is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_state_lives_as_long_as_the_connection() {
    let r = registry();
    install(&r, "chat", PluginSettings::default()).await;
    let chat = r.get("chat").unwrap().active();
    let mut c = conn("s9");
    c.principal = Some(portico::plugins::Principal {
        subject: Some("ann".into()),
        claims_json: r#"{"sub":"ann"}"#.into(),
    });
    chat.connections().register(Arc::new(c.clone()));
    chat.on_connect(&c).await.unwrap().unwrap();
    let ack = chat
        .on_event(&c, event("nick", r#"[{"name":"Al"}]"#))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ack.as_slice(), [Action::Ack(_)]), "{ack:?}");
    // The event carried the connection id only; chat read its subject through `connections.info`.
    assert_eq!(
        chat.connections().get("s9", "nick").unwrap(),
        Some(b"Al".to_vec())
    );
    chat.on_disconnect(&c, "transport close").await.unwrap();
    chat.connections().end("s9");
    assert!(chat.connections().get("s9", "nick").is_err());
    assert!(chat.connections().is_empty());
}
