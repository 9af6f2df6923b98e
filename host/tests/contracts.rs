//! Both contract versions are served side by side: a component built against the frozen
//! `portico:plugin@0.1.0` (committed in `tests/fixtures/echo-0.1.0.wasm`, today's echo
//! before the SDK moved to 0.2.0) loads and answers next to 0.2.0 plugins.

mod common;

use std::sync::Arc;

use common::{conn, event, install, registry};
use portico::plugins::{Action, PluginSettings};

fn fixture(name: &str) -> Arc<[u8]> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_0_plugin_serves_next_to_0_2_0_plugins() {
    let r = registry();
    r.install(
        "old-echo",
        fixture("echo-0.1.0.wasm"),
        PluginSettings::default(),
    )
    .await
    .expect("the 0.1.0 component loads");
    install(&r, "echo", PluginSettings::default()).await;
    install(&r, "chat", PluginSettings::default()).await;
    let old = r.get("old-echo").unwrap().active();
    let new = r.get("echo").unwrap().active();
    assert_eq!(old.contract(), "0.1.0");
    assert_eq!(new.contract(), "0.2.0");
    assert_eq!(r.get("chat").unwrap().active().contract(), "0.2.0");
    assert_eq!(old.manifest.name, "echo");

    for version in [&old, &new] {
        let c = conn("s1");
        version.connections().register(Arc::new(c.clone()));
        assert!(version.on_connect(&c).await.unwrap().is_ok());
        let answers = version
            .on_events(&c, vec![event("a", "[1]"), event("b", r#"[{"x":2}]"#)])
            .await
            .unwrap();
        let acked: Vec<_> = answers
            .iter()
            .map(|a| match a.as_deref() {
                Ok([Action::Ack(p)]) => p.args_json.clone(),
                other => panic!("{} answered {other:?}", version.contract()),
            })
            .collect();
        assert_eq!(acked, ["[1]", r#"[{"x":2}]"#], "{}", version.contract());
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
