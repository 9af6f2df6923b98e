//! Wall-clock deadlines and per-plugin instance quotas: a call stuck in a
//! host call (here an outbound request to a server that never answers) fails
//! at its wall-clock deadline, and a plugin whose instances are all stuck is
//! refused fast while other plugins keep answering.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{conn, event, install};
use portico::outbound::{OutboundSettings, Policy};
use portico::plugins::{
    Action, CallError, CallPolicy, EngineSettings, KvStore, PluginEngine, PluginSettings, Registry,
};

/// A TCP server that accepts and never answers; its URL.
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

/// `probe` may call `url` (with a 30 s outbound timeout) and has `policy`;
/// `echo` has the defaults.
async fn setup(url: &str, policy: CallPolicy) -> Registry {
    let engine = PluginEngine::new(&EngineSettings::default()).expect("engine");
    let outbound = OutboundSettings {
        policy: Policy::new(&[url.to_owned()], &["127.0.0.0/8".to_owned()]).unwrap(),
        timeout: Duration::from_secs(30),
        ..OutboundSettings::default()
    };
    let r = Registry::new(Arc::new(engine), KvStore::memory(10_000))
        .with_outbound(HashMap::from([("probe".to_owned(), outbound)]))
        .with_call_policy(
            CallPolicy::default(),
            HashMap::from([("probe".to_owned(), policy)]),
        );
    install(&r, "probe", PluginSettings::default()).await;
    install(&r, "echo", PluginSettings::default()).await;
    r
}

fn fetch(url: &str) -> portico::plugins::Event {
    event("fetch", &format!(r#"[{{"url":"{url}/"}}]"#))
}

async fn echo_answers(r: &Registry) {
    let echo = r.get("echo").unwrap().active();
    let acked = echo
        .on_event(&conn("e"), event("hi", "[1]"))
        .await
        .expect("echo answers")
        .expect("not rejected");
    assert!(matches!(acked.as_slice(), [Action::Ack(_)]), "{acked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_on_a_host_call_ends_at_its_wall_clock_deadline() {
    let (url, _server) = silent_server().await;
    let policy = CallPolicy {
        wall_timeout: Duration::from_millis(300),
        ..CallPolicy::default()
    };
    let r = setup(&url, policy).await;
    let probe = r.get("probe").unwrap().active();
    // A good call leaves one warm instance in the pool.
    let warmed = probe.on_event(&conn("s1"), event("tune", "[null]")).await;
    assert!(matches!(warmed, Ok(Ok(_))), "{warmed:?}");
    assert_eq!(probe.warm_instances(), 1);
    let created = probe
        .counters
        .instances_created
        .load(std::sync::atomic::Ordering::Relaxed);

    let started = Instant::now();
    let err = probe
        .on_event(&conn("s1"), fetch(&url))
        .await
        .expect_err("the call must fail at its wall-clock deadline");
    let took = started.elapsed();
    assert!(matches!(err, CallError::WallTimeout(300)), "{err:?}");
    assert_eq!(err.to_rejection().code, "plugin_timeout");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert_eq!(
        probe
            .counters
            .wall_timeouts
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(probe.warm_instances(), 0, "the stuck instance is not kept");

    // The next call gets a new instance (the timed-out one is gone) and works.
    let ok = probe
        .on_event(&conn("s1"), event("tune", "[null]"))
        .await
        .expect("next call works");
    assert!(ok.is_ok(), "{ok:?}");
    let now = probe
        .counters
        .instances_created
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(now, created + 1, "the timed-out instance was replaced");
    echo_answers(&r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_with_every_instance_stuck_is_refused_fast_and_others_answer() {
    let (url, _server) = silent_server().await;
    let policy = CallPolicy {
        wall_timeout: Duration::from_secs(20),
        max_instances: 2,
    };
    let r = setup(&url, policy).await;
    let probe = r.get("probe").unwrap().active();

    // Two calls hang in their outbound request and hold both instances.
    let mut stuck = Vec::new();
    for i in 0..2 {
        let (p, u) = (probe.clone(), url.clone());
        stuck.push(tokio::spawn(async move {
            p.on_event(&conn(&format!("s{i}")), fetch(&u)).await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe.instances_alive() < 2 || probe.warm_instances() > 0 {
        assert!(Instant::now() < deadline, "the calls never got stuck");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let started = Instant::now();
    let err = probe
        .on_event(&conn("s9"), event("tune", "[null]"))
        .await
        .expect_err("a third call finds no instance");
    assert!(matches!(err, CallError::Busy(2)), "{err:?}");
    assert_eq!(err.to_rejection().code, "plugin_busy");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(
        probe
            .counters
            .busy
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    echo_answers(&r).await;
    // A fixed version can still be deployed: validating it takes no slot of the quota.
    install(&r, "probe", PluginSettings::default()).await;
    for t in stuck {
        t.abort();
    }
}
