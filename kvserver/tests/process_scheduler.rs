//! `tinykv-server --scheduler` as processes against an in-process scheduler
//! (`scheduler::server::RunningScheduler`): three stores register and get their ids from the
//! scheduler, one of them bootstraps the cluster's first region, the scheduler's replica checker
//! brings it to three peers (its operators reach the stores through the heartbeat stream, the
//! stores find each other through the scheduler), and a put through the client reads back.
//! A data dir of another cluster is refused with one line; so are a malformed scheduler address,
//! the static flags alongside `--scheduler`, and a scheduler that cannot be reached.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_addrs, start_scheduler, ServerProc, SERVER};
use kvserver::client::Client;
use kvserver::scheduler_client::SchedulerConn;

/// The longest wait for anything the cluster does by itself.
const PATIENCE: Duration = Duration::from_secs(90);

fn discard() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// A config file with fast ticks and heartbeats, so the test does not wait on defaults.
fn fast_config(root: &Path) -> String {
    let path = root.join("fast.toml");
    std::fs::write(
        &path,
        "raft-base-tick-ms = 50\n\
         raft-wal-preallocate-mb = 0\n\
         scheduler-heartbeat-tick-interval = \"200ms\"\n\
         scheduler-store-heartbeat-tick-interval = \"500ms\"\n",
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

fn store(addr: &str, dir: &Path, scheduler: &str, config: &str) -> ServerProc {
    ServerProc::new(
        addr,
        dir,
        vec![
            "--scheduler".into(),
            scheduler.into(),
            "--config".into(),
            config.into(),
        ],
    )
}

/// Polls `check` every 100 ms until it returns Some; panics with `what` after [`PATIENCE`].
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Exactly one non-empty line.
fn one_line(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes).to_string();
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got {s:?}");
    lines[0].to_string()
}

/// Runs the server with `args` (logging off) to its end; it must fail at start.
fn refused(args: &[&str]) -> String {
    let out = Command::new(SERVER)
        .args(args)
        .args(["--log-level", "off"])
        .output()
        .expect("run tinykv-server");
    assert!(!out.status.success(), "{args:?} was accepted");
    one_line(&out.stderr)
}

#[test]
fn test_three_stores_register_bootstrap_replicate_and_serve() {
    let root = tempfile::tempdir().unwrap();
    let sched = start_scheduler(&root.path().join("scheduler"));
    let sched_addr = sched.addr().to_string();
    let config = fast_config(root.path());
    let addrs = free_addrs(3);
    let mut procs: Vec<ServerProc> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let dir = root.path().join(format!("store-{i}"));
            store(a, &dir, &sched_addr, &config)
        })
        .collect();
    for p in &mut procs {
        p.start();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let conn = rt
        .block_on(SchedulerConn::connect(
            &sched_addr,
            Duration::from_secs(10),
            &discard(),
        ))
        .expect("the test reaches the scheduler");

    // Every store registered, with an id of its own and its address.
    let stores = wait_for("three stores registered", || {
        let stores = rt.block_on(conn.get_all_stores()).ok()?;
        (stores.len() == 3).then_some(stores)
    });
    let mut registered: Vec<String> = stores.iter().map(|s| s.address.clone()).collect();
    registered.sort();
    let mut expected = addrs.clone();
    expected.sort();
    assert_eq!(registered, expected);
    let mut ids: Vec<u64> = stores.iter().map(|s| s.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "distinct store ids: {stores:?}");
    assert!(ids.iter().all(|&id| id > 0));

    // The first region, the whole key space, known to the scheduler from its heartbeats.
    let first = wait_for("the first region at the scheduler", || {
        rt.block_on(conn.get_region(b"")).ok()?.0
    });
    assert!(
        first.start_key.is_empty() && first.end_key.is_empty(),
        "{first:?}"
    );
    assert!(!first.peers.is_empty());
    assert!(first.peers.iter().all(|p| ids.contains(&p.store_id)));

    let client = Client::new(addrs.clone(), Duration::from_secs(30)).unwrap();
    rt.block_on(async {
        client.put("", b"k1", b"v1").await.expect("put");
        let got = client.get("", b"k1").await.expect("get");
        assert_eq!(got.as_deref(), Some(&b"v1"[..]));
    });

    // The replica checker adds a peer on each other store (operators down the heartbeat
    // stream; the new peers' stores found through the scheduler).
    let replicated = wait_for("the first region on three stores", || {
        let (region, _) = rt.block_on(conn.get_region(b"")).ok()?;
        region.filter(|r| r.peers.len() == 3)
    });
    let mut on: Vec<u64> = replicated.peers.iter().map(|p| p.store_id).collect();
    on.sort_unstable();
    assert_eq!(on, ids, "one peer on every store");
    rt.block_on(async {
        client
            .put("", b"k2", b"v2")
            .await
            .expect("put after replication");
        assert_eq!(
            client.get("", b"k1").await.expect("get").as_deref(),
            Some(&b"v1"[..])
        );
        assert_eq!(
            client.get("", b"k2").await.expect("get").as_deref(),
            Some(&b"v2"[..])
        );
    });

    // A restart keeps each store's id (from its data dir) and its registration.
    procs[1].terminate();
    procs[1].start();
    rt.block_on(async {
        client
            .put("", b"k3", b"v3")
            .await
            .expect("put after a restart");
    });
    let stores = rt.block_on(conn.get_all_stores()).unwrap();
    assert_eq!(
        stores.len(),
        3,
        "no new store id at the restart: {stores:?}"
    );
    for p in &mut procs {
        p.terminate();
    }
    sched.stop().unwrap();
}

#[test]
fn test_a_data_dir_of_another_cluster_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let config = fast_config(root.path());
    let addr = free_addrs(1).remove(0);
    let dir = root.path().join("store");
    let rt = tokio::runtime::Runtime::new().unwrap();

    let a = start_scheduler(&root.path().join("scheduler-a"));
    let a_addr = a.addr().to_string();
    let mut s = store(&addr, &dir, &a_addr, &config);
    s.start();
    let conn_a = rt
        .block_on(SchedulerConn::connect(
            &a_addr,
            Duration::from_secs(10),
            &discard(),
        ))
        .unwrap();
    wait_for("the store registered at scheduler A", || {
        let stores = rt.block_on(conn_a.get_all_stores()).ok()?;
        (stores.len() == 1).then_some(())
    });
    s.terminate();
    a.stop().unwrap();

    let b = start_scheduler(&root.path().join("scheduler-b"));
    let b_addr = b.addr().to_string();
    let conn_b = rt
        .block_on(SchedulerConn::connect(
            &b_addr,
            Duration::from_secs(10),
            &discard(),
        ))
        .unwrap();
    assert_ne!(conn_a.cluster_id(), conn_b.cluster_id(), "two clusters");
    let line = refused(&[
        "--scheduler",
        &b_addr,
        "--addr",
        &addr,
        "--data-dir",
        dir.to_str().unwrap(),
        "--config",
        &config,
    ]);
    let want = format!(
        "data dir {} belongs to cluster {}, the scheduler at {b_addr} runs cluster {}",
        dir.display(),
        conn_a.cluster_id(),
        conn_b.cluster_id()
    );
    assert!(line.contains(&want), "{line}");
    // Nothing registered at B (a cluster never bootstrapped may refuse the question).
    match rt.block_on(conn_b.get_all_stores()) {
        Ok(stores) => assert!(stores.is_empty(), "nothing registered at B: {stores:?}"),
        Err(e) => assert_eq!(
            e.kind(),
            Some(proto::schedulerpb::ErrorType::NotBootstrapped),
            "{e}"
        ),
    }
    assert!(!rt.block_on(conn_b.is_bootstrapped()).unwrap());
    b.stop().unwrap();
}

#[test]
fn test_bad_scheduler_settings_are_one_line_refusals() {
    let root = tempfile::tempdir().unwrap();
    let addr = free_addrs(1).remove(0);
    let dir = root.path().join("store");
    let d = dir.to_str().unwrap();
    let line = refused(&["--scheduler", "nohost", "--addr", &addr, "--data-dir", d]);
    assert!(line.contains("is not HOST:PORT"), "{line}");
    let line = refused(&[
        "--scheduler",
        "127.0.0.1:1",
        "--store-id",
        "1",
        "--addr",
        &addr,
        "--data-dir",
        d,
    ]);
    assert!(
        line.contains("--store-id is not used with --scheduler"),
        "{line}"
    );
    let line = refused(&[
        "--scheduler",
        "127.0.0.1:1",
        "--region-max-size",
        "12QB",
        "--addr",
        &addr,
        "--data-dir",
        d,
    ]);
    assert!(line.contains("is not a size"), "{line}");
    assert!(
        !dir.exists(),
        "nothing is created for a refused configuration"
    );
    // Nothing listens at the scheduler's address: retried, then one line.
    let nobody = free_addrs(1).remove(0);
    let line = refused(&[
        "--scheduler",
        &nobody,
        "--scheduler-connect-timeout",
        "1s",
        "--addr",
        &addr,
        "--data-dir",
        d,
    ]);
    assert!(
        line.contains(&format!("cannot reach the scheduler at {nobody}")),
        "{line}"
    );
}
