//! The wasm runtime contains failures: a plugin that loops, allocates without
//! bound or panics fails that one call; the next call and other plugins work.

mod common;

use std::time::{Duration, Instant};

use common::{conn, event, install, registry, rss_bytes};
use portico::plugins::{
    Action, CallError, Isolation, Limits, PluginSettings, PluginVersion, Registry,
};

fn settings(timeout_ms: u64, memory_mb: usize, isolation: Isolation) -> PluginSettings {
    PluginSettings {
        limits: Limits {
            call_timeout: Duration::from_millis(timeout_ms),
            memory_bytes: memory_mb << 20,
            isolation,
            ..Limits::default()
        },
        ..PluginSettings::default()
    }
}

async fn setup(isolation: Isolation) -> Registry {
    let r = registry();
    install(&r, "faulty", settings(50, 16, isolation)).await;
    install(&r, "echo", PluginSettings::default()).await;
    r
}

/// The call `name` on faulty fails with this error, then `ok` works on faulty
/// and echo still answers.
async fn fails_then_recovers(r: &Registry, name: &str) -> CallError {
    let faulty = r.get("faulty").unwrap().active();
    let err = faulty
        .on_event(&conn("s1"), event(name, "[]"))
        .await
        .expect_err("the call must fail");
    next_call_works(&faulty).await;
    let echo = r.get("echo").unwrap().active();
    let acked = echo
        .on_event(&conn("s2"), event("hi", "[1]"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(acked.as_slice(), [Action::Ack(p)] if p.args_json == "[1]"),
        "{acked:?}"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_stopped_at_the_deadline() {
    for isolation in [Isolation::Pooled, Isolation::Fresh] {
        let r = setup(isolation).await;
        let started = Instant::now();
        let err = fails_then_recovers(&r, "loop").await;
        assert!(matches!(err, CallError::Timeout(50)), "{err:?}");
        assert_eq!(err.code(), "plugin_timeout");
        // 50 ms deadline; the bound only guards against "never stopped".
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_hits_the_memory_cap() {
    let r = setup(Isolation::Pooled).await;
    let err = fails_then_recovers(&r, "alloc").await;
    assert!(
        matches!(err, CallError::MemoryLimit(n) if n == 16 << 20),
        "{err:?}"
    );
    assert_eq!(err.code(), "plugin_memory_limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_fails_only_that_call() {
    let r = setup(Isolation::Pooled).await;
    let err = fails_then_recovers(&r, "panic").await;
    assert!(matches!(err, CallError::Trap(_)), "{err:?}");
    let rejection = err.to_rejection();
    assert_eq!(rejection.code, "plugin_error");
    assert!(
        !rejection.message.contains("wasm"),
        "no host internals in {:?}",
        rejection.message
    );
    let counters = &r.get("faulty").unwrap().active().counters;
    assert_eq!(counters.traps.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_error_is_a_rejection_not_a_failure() {
    let r = setup(Isolation::Pooled).await;
    let faulty = r.get("faulty").unwrap().active();
    let rejected = faulty
        .on_event(&conn("s"), event("error", "[]"))
        .await
        .expect("the call itself succeeds");
    assert_eq!(rejected.unwrap_err().code, "teapot");
}

/// Failing calls drop their instance and make a new one; nothing accumulates.
/// Bound: after warm-up, 10,000 trapping calls grow RSS by less than 64 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_failing_calls_do_not_grow_memory() {
    let r = setup(Isolation::Pooled).await;
    let faulty = r.get("faulty").unwrap().active();
    let c = conn("s");
    for _ in 0..500 {
        let _ = faulty.on_event(&c, event("panic", "[]")).await;
    }
    let before = rss_bytes();
    for _ in 0..10_000 {
        let err = faulty
            .on_event(&c, event("panic", "[]"))
            .await
            .expect_err("panics");
        assert!(matches!(err, CallError::Trap(_)));
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "RSS grew by {} KiB over 10,000 failing calls",
        grown >> 10
    );
    assert!(
        faulty.warm_instances() <= 1,
        "trapped instances are never pooled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pool_reuses_instances_and_fresh_mode_does_not() {
    for (isolation, expect_created) in [(Isolation::Pooled, 1), (Isolation::Fresh, 20)] {
        let r = setup(isolation).await;
        let faulty = r.get("faulty").unwrap().active();
        let created = |v: &portico::plugins::PluginVersion| {
            v.counters
                .instances_created
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let start = created(&faulty);
        for _ in 0..20 {
            faulty
                .on_event(&conn("s"), event("ok", "[]"))
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(created(&faulty) - start, expect_created, "{isolation:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_the_action_cap_fails_its_call_only() {
    let r = registry();
    install(&r, "faulty", settings(2_000, 64, Isolation::Pooled)).await;
    let faulty = r.get("faulty").unwrap().active();
    assert_eq!(faulty.contract(), "0.3.0");
    // 100,000 actions in one answer are taken, one more fails the call like a trap.
    let at_cap = faulty
        .on_event(&conn("s1"), event("flood", "[100000]"))
        .await
        .expect("at the cap")
        .expect("not rejected");
    assert_eq!(at_cap.len(), 100_000);
    assert!(matches!(&at_cap[99_999], Action::Leave(c) if c == "c99999"));
    let err = faulty
        .on_event(&conn("s1"), event("flood", "[100001]"))
        .await
        .expect_err("over the cap");
    assert!(
        matches!(&err, CallError::Trap(m) if m.contains("over 100000 actions in one answer")),
        "{err:?}"
    );
    assert_eq!(err.code(), "plugin_error");
    assert_eq!(
        faulty
            .counters
            .traps
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    next_call_works(&faulty).await;
}

/// `ok` on faulty is acked: a failed call left the plugin usable.
async fn next_call_works(faulty: &PluginVersion) {
    let ok = faulty
        .on_event(&conn("s1"), event("ok", "[]"))
        .await
        .expect("the next call works")
        .expect("not rejected");
    assert!(matches!(ok.as_slice(), [Action::Ack(_)]), "{ok:?}");
}
