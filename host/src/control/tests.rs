use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;

use super::*;
use crate::plugins::{EngineSettings, KvStore, PluginEngine};

fn plugin(name: &str) -> Arc<[u8]> {
    let dir = std::env::var_os("PORTICO_PLUGIN_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/plugin"),
        PathBuf::from,
    );
    std::fs::read(dir.join(format!("{name}.wasm")))
        .expect("build the plugins first with `make plugins`")
        .into()
}

fn control() -> Arc<PluginControl> {
    let engine = PluginEngine::new(&EngineSettings::default()).unwrap();
    let registry = Arc::new(Registry::new(Arc::new(engine), KvStore::memory(10)));
    PluginControl::new(
        registry,
        CanaryWatch {
            policy: CanaryPolicy::default(),
            every: Duration::from_secs(3600),
        },
    )
}

/// What a sink was told: origin, kind, plugin, and the removed names it saw.
type Seen = (Origin, &'static str, String, Vec<String>);

#[derive(Default)]
struct Log(Mutex<Vec<Seen>>);

impl ChangeSink for Log {
    fn on_change<'a>(
        &'a self,
        e: &'a ChangeEvent,
        set: PluginSet<'a>,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        let kind = match &e.change {
            Change::Mounted { .. } => "mounted",
            Change::Deployed { .. } => "deployed",
            Change::RolledBack { .. } => "rolled_back",
            Change::Promoted { .. } => "promoted",
            Change::CanaryAborted { .. } => "canary_aborted",
            Change::Removed { .. } => "removed",
        };
        let removed = set.removed.iter().cloned().collect();
        self.0
            .lock()
            .unwrap()
            .push((e.origin, kind, e.change.name().to_owned(), removed));
        Box::pin(async { Ok(()) })
    }
}

#[derive(Default)]
struct Ns(AtomicUsize, AtomicUsize);

impl Namespaces for Ns {
    fn mount(&self, _: Arc<PluginSlot>) -> BoxFuture<'_, Result<(), NamespaceError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
    fn unmount(&self, _: &PluginSlot) -> usize {
        self.1.fetch_add(1, Ordering::SeqCst);
        7
    }
}

#[tokio::test]
async fn every_change_mounts_runs_the_sinks_in_order_and_is_broadcast() {
    let c = control();
    let (log, ns) = (Arc::new(Log::default()), Arc::new(Ns::default()));
    c.add_sink(log.clone());
    c.attach_namespaces(ns.clone()).await.unwrap();
    let mut events = c.subscribe();
    let s = PluginSettings::default();
    let echo = plugin("echo");
    c.deploy("echo", echo.clone(), &s, Rollout::Now, Origin::Local)
        .await
        .unwrap();
    c.deploy("echo", echo.clone(), &s, Rollout::Canary(50), Origin::Local)
        .await
        .unwrap();
    c.promote("echo").await.unwrap();
    c.rollback("echo", None).await.unwrap();
    let (_, closed) = c.remove("echo").await.unwrap();
    assert_eq!(closed, 7, "the namespace's answer is the removal's");
    assert!(matches!(
        c.remove("echo").await,
        Err(ControlError::NotFound(_))
    ));
    let seen: Vec<_> = log.0.lock().unwrap().iter().map(|e| e.1).collect();
    assert_eq!(
        seen,
        ["mounted", "deployed", "promoted", "rolled_back", "removed"]
    );
    // The sink saw the removed names as they were after each change.
    assert!(log.0.lock().unwrap()[3].3.is_empty());
    assert_eq!(log.0.lock().unwrap()[4].3, ["echo"]);
    assert_eq!(
        (ns.0.load(Ordering::SeqCst), ns.1.load(Ordering::SeqCst)),
        (1, 1)
    );
    for kind in seen {
        let e = events.try_recv().unwrap();
        assert_eq!(e.origin, Origin::Local, "{kind}");
    }
    assert_eq!(
        c.removed_names().await.into_iter().collect::<Vec<_>>(),
        ["echo"]
    );
    // Deploying the name again takes it off the removed list.
    c.deploy("echo", echo, &s, Rollout::Now, Origin::Cluster)
        .await
        .unwrap();
    assert!(c.removed_names().await.is_empty());
}

#[tokio::test]
async fn removed_names_wait_for_a_change_in_progress_instead_of_coming_back_empty() {
    let c = control();
    let mut tx = c.transaction().await;
    tx.mark_removed("gone");
    let reader = tokio::spawn({
        let c = c.clone();
        async move { c.removed_names().await }
    });
    tokio::task::yield_now().await;
    assert!(!reader.is_finished(), "the lock is held");
    drop(tx);
    assert_eq!(
        reader.await.unwrap().into_iter().collect::<Vec<_>>(),
        ["gone"]
    );
}

#[tokio::test]
async fn a_canary_abort_is_a_change_like_the_others() {
    let c = control();
    let log = Arc::new(Log::default());
    c.add_sink(log.clone());
    let s = PluginSettings::default();
    let echo = plugin("echo");
    c.deploy("echo", echo.clone(), &s, Rollout::Now, Origin::Local)
        .await
        .unwrap();
    let canary = c
        .deploy("echo", echo, &s, Rollout::Canary(10), Origin::Local)
        .await
        .unwrap();
    let slot = canary.installed.slot().clone();
    let rev = canary.revision.id;
    assert!(c.abort_canary(&slot, rev, "too many failures").await);
    assert!(slot.canary().is_none());
    // Once only.
    assert!(!c.abort_canary(&slot, rev, "again").await);
    let last = log.0.lock().unwrap().last().cloned().unwrap();
    assert_eq!((last.0, last.1), (Origin::Local, "canary_aborted"));
}

/// Fails every change while `.0` is set, like a data directory that cannot be written.
#[derive(Default)]
struct Failing(std::sync::atomic::AtomicBool);

impl ChangeSink for Failing {
    fn on_change<'a>(
        &'a self,
        _: &'a ChangeEvent,
        _: PluginSet<'a>,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        let fail = self.0.load(Ordering::SeqCst);
        Box::pin(async move {
            match fail {
                true => Err(SinkError("disk full".into())),
                false => Ok(()),
            }
        })
    }
}

#[tokio::test]
async fn a_change_that_cannot_be_saved_is_undone_and_not_announced() {
    let c = control();
    let (failing, log, ns) = (
        Arc::new(Failing::default()),
        Arc::new(Log::default()),
        Arc::new(Ns::default()),
    );
    c.add_sink(failing.clone());
    c.add_sink(log.clone());
    c.attach_namespaces(ns.clone()).await.unwrap();
    let s = PluginSettings::default();
    let echo = plugin("echo");
    for rollout in [Rollout::Now, Rollout::Now, Rollout::Canary(50)] {
        c.deploy("echo", echo.clone(), &s, rollout, Origin::Local)
            .await
            .unwrap();
    }
    let slot = c.registry().get("echo").unwrap();
    let revisions = |slot: &PluginSlot| {
        let (revs, active) = slot.revisions();
        (revs.iter().map(|r| r.id).collect::<Vec<_>>(), active)
    };
    assert_eq!(revisions(&slot), (vec![1, 2, 3], 2));
    let mut events = c.subscribe();
    let logged = log.0.lock().unwrap().len();

    failing.0.store(true, Ordering::SeqCst);
    let not_saved =
        |r: Result<(), ControlError>| assert!(matches!(r, Err(ControlError::NotSaved(_))), "{r:?}");
    not_saved(
        c.deploy("echo", echo.clone(), &s, Rollout::Now, Origin::Local)
            .await
            .map(|_| ()),
    );
    not_saved(c.rollback("echo", Some("1")).await.map(|_| ()));
    not_saved(c.promote("echo").await.map(|_| ()));
    not_saved(c.remove("echo").await.map(|_| ()));
    not_saved(
        c.deploy("other", echo.clone(), &s, Rollout::Now, Origin::Local)
            .await
            .map(|_| ()),
    );

    // Nothing changed: the same revisions, active one and canary; still mounted.
    let now = c.registry().get("echo").expect("still served");
    assert!(Arc::ptr_eq(&now, &slot));
    assert_eq!(revisions(&slot), (vec![1, 2, 3], 2));
    assert_eq!(slot.canary().map(|c| c.revision), Some(3));
    assert!(Arc::ptr_eq(&slot.active(), &slot.active_revision().version));
    assert!(!slot.is_unmounted());
    assert!(c.registry().get("other").is_none());
    assert!(c.removed_names().await.is_empty());
    // "other" was mounted then unmounted; "echo" was never unmounted.
    assert_eq!(
        (ns.0.load(Ordering::SeqCst), ns.1.load(Ordering::SeqCst)),
        (2, 1)
    );
    assert_eq!(
        log.0.lock().unwrap().len(),
        logged,
        "later sinks did not run"
    );
    assert!(events.try_recv().is_err(), "nothing was announced");

    // Once saving works again, so do changes.
    failing.0.store(false, Ordering::SeqCst);
    c.promote("echo").await.unwrap();
    assert_eq!(revisions(&slot), (vec![1, 2, 3], 3));
}
