//! The gateway in process, no network: socketioxide's test harness plays the
//! client (raw Socket.IO packets over channels) against a node built by
//! [`Server::bind`]. What the gateway is built around, checked directly:
//! one socket's events are handled, and answered, in the order they were
//! sent, while other sockets' events interleave freely; and the packets one
//! event's answer is made of leave in the order the plugin returned them;
//! and answers wait for a client that reads slowly instead of being dropped.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use engineioxide::Packet;
use portico::auth::AuthMode;
use portico::config::{AuthConfig, Config, ThrottleConfig};
use portico::server::Server;
use tokio::sync::mpsc;

/// A node serving `plugins` (auth off, no event throttle), not listening yet.
async fn node(plugins: &[&str]) -> Server {
    node_with(plugins, |_| {}).await
}

/// The same, with `tweak` applied to its configuration.
async fn node_with(plugins: &[&str], tweak: impl FnOnce(&mut Config)) -> Server {
    let dir = scratch_dir();
    for p in plugins {
        let wasm = format!("{p}.wasm");
        std::fs::copy(common::plugin_dir().join(&wasm), dir.join(&wasm))
            .unwrap_or_else(|e| panic!("{wasm}: {e}; build the plugins first with `make plugins`"));
    }
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        plugin_dir: dir,
        auth: AuthConfig {
            mode: AuthMode::None,
            ..AuthConfig::default()
        },
        throttle: ThrottleConfig {
            events_per_sec: 0,
            ..ThrottleConfig::default()
        },
        ..Config::default()
    };
    tweak(&mut config);
    Server::bind(config).await.expect("the node starts")
}

fn scratch_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "portico-gateway-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One client socket on namespace `ns`, speaking Socket.IO packets.
struct Client {
    ns: &'static str,
    tx: mpsc::Sender<Packet>,
    rx: mpsc::Receiver<Packet>,
}

impl Client {
    async fn connect(server: &Server, ns: &'static str) -> Self {
        let (tx, rx) = server
            .state
            .io
            .new_dummy_sock(ns, serde_json::json!({}))
            .await;
        let mut c = Self { ns, tx, rx };
        let reply = c.next().await;
        assert!(
            reply.starts_with(&format!("0{ns},")),
            "CONNECT reply: {reply}"
        );
        c
    }

    /// Send an event packet with ack `id` whose data is `data`, as it is.
    async fn send_raw(&self, id: u64, data: &str) {
        let packet = format!("2{},{id}{data}", self.ns);
        self.tx.send(Packet::Message(packet.into())).await.unwrap();
    }

    /// Send event `name` with `arg`, asking for ack `id`.
    async fn emit_acked(&self, id: u64, name: &str, arg: serde_json::Value) {
        let packet = format!("2{},{id}{}", self.ns, serde_json::json!([name, arg]));
        self.tx.send(Packet::Message(packet.into())).await.unwrap();
    }

    /// The next Socket.IO packet the server sent, as text.
    async fn next(&mut self) -> String {
        loop {
            let packet = tokio::time::timeout(Duration::from_secs(20), self.rx.recv())
                .await
                .expect("an answer within 20 s")
                .expect("the socket is open");
            if let Packet::Message(m) = packet {
                return String::from(m);
            }
        }
    }

    /// The next ack: its id and its first argument.
    async fn next_ack(&mut self) -> (u64, serde_json::Value) {
        let packet = self.next().await;
        let body = packet
            .strip_prefix(&format!("3{},", self.ns))
            .unwrap_or_else(|| panic!("expected an ack, got {packet}"));
        let split = body.find('[').expect("ack arguments");
        let id = body[..split].parse().expect("ack id");
        let args: Vec<serde_json::Value> = serde_json::from_str(&body[split..]).unwrap();
        (id, args.into_iter().next().unwrap_or_default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sockets_events_are_answered_in_the_order_sent() {
    let server = node(&["echo"]).await;
    let mut c = Client::connect(&server, "/echo").await;
    // Sent back to back: the gateway queues them while earlier calls run.
    for n in 1..=200 {
        c.emit_acked(n, "e", serde_json::json!({ "n": n })).await;
    }
    for n in 1..=200 {
        let (id, arg) = c.next_ack().await;
        assert_eq!((id, arg), (n, serde_json::json!({ "n": n })));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_interleave_and_each_keeps_its_order() {
    let server = node(&["echo"]).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(Client::connect(&server, "/echo").await);
    }
    for n in 1..=50 {
        for (i, c) in clients.iter().enumerate() {
            c.emit_acked(n, "e", serde_json::json!({ "from": i, "n": n }))
                .await;
        }
    }
    for (i, c) in clients.iter_mut().enumerate() {
        for n in 1..=50 {
            let (id, arg) = c.next_ack().await;
            assert_eq!((id, arg), (n, serde_json::json!({ "from": i, "n": n })));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_leaves_in_the_order_the_plugin_returned_it() {
    let server = node(&["echo"]).await;
    let mut c = Client::connect(&server, "/echo").await;
    // echo answers `emit-and-ack` with an emit, then the ack.
    for n in 1..=20 {
        c.emit_acked(n, "emit-and-ack", serde_json::json!(n)).await;
    }
    for n in 1..=20 {
        let emitted = c.next().await;
        assert_eq!(emitted, format!("2/echo,[\"emit-and-ack\",{n}]"));
        assert_eq!(c.next_ack().await, (n, serde_json::json!(n)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_wait_for_a_full_send_buffer_instead_of_being_dropped() {
    // A send buffer of 4 packets (plus the harness's own pipe of 4): the
    // client's 40 acks cannot all fit while it is not reading.
    let server = node_with(&["echo"], |c| c.socketio.max_buffer_size = 4).await;
    let mut c = Client::connect(&server, "/echo").await;
    for n in 1..=40 {
        c.emit_acked(n, "e", serde_json::json!(n)).await;
    }
    // Not reading until the gateway has met the full buffer.
    let stats = server.state.metrics.namespace("/echo");
    tokio::time::timeout(Duration::from_secs(20), async {
        while stats.send_waits.get() == 0 && stats.dropped.get() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the buffer fills while the client does not read");
    assert_eq!(stats.dropped.get(), 0, "no answer was dropped");
    for n in 1..=40 {
        assert_eq!(c.next_ack().await, (n, serde_json::json!(n)));
    }
    // Counted once its send returned, which can be just after the client read it.
    let counted = tokio::time::timeout(Duration::from_secs(5), async {
        while stats.acks_ok.get() < 40 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(counted.is_ok(), "acks counted: {}", stats.acks_ok.get());
    assert_eq!(stats.acks_ok.get(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_event_is_answered_bad_request_and_the_socket_goes_on() {
    let server = node(&["echo"]).await;
    let mut c = Client::connect(&server, "/echo").await;
    // Each is an event packet socketioxide hands over unread: the gateway's
    // own parse is the only one, so it must refuse them all.
    let malformed = [
        "[1]",
        r#"[{"a":"b"}]"#,
        r#"{"not":"an array"}"#,
        "[]",
        r#"["e",{"b":}]"#,
        r#"["e"] trailing"#,
    ];
    for (n, data) in malformed.iter().enumerate() {
        c.send_raw(n as u64 + 1, data).await;
    }
    c.emit_acked(99, "e", serde_json::json!("still here")).await;
    for (n, data) in malformed.iter().enumerate() {
        let (id, answer) = c.next_ack().await;
        assert_eq!(id, n as u64 + 1, "{data}");
        assert_eq!(answer["ok"], false, "{data}: {answer}");
        assert_eq!(answer["code"], "bad_request", "{data}: {answer}");
    }
    assert_eq!(c.next_ack().await, (99, serde_json::json!("still here")));
    let metrics = server.state.metrics.encode().unwrap();
    let line = format!(
        "portico_refused_total{{limit=\"malformed_event\"}} {}",
        malformed.len()
    );
    assert!(metrics.contains(&line), "{line} in:\n{metrics}");
}
