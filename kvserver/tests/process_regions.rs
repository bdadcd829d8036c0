//! The client of a multi-region cluster, end to end: an in-process scheduler
//! (`scheduler::server::RunningScheduler`) and three `tinykv-server --scheduler` processes with a
//! small region size. Writes through `Client::with_scheduler` split the key space into many
//! regions whose leaders the scheduler spreads over the stores; every key reads back (through the
//! client whose cache the splits and leader moves made stale, and through a fresh one), a scan of
//! everything comes back whole and in order, a scan with a limit stops there across regions, and
//! after the store leading the first region is killed every key still reads back. `tinykv-ctl`
//! and `tinykv-bench` take `--scheduler` instead of `--endpoints`; `tinykv-ctl regions`/`stores`
//! print the scheduler's tables; the two flags together, `regions` without a scheduler, or an
//! unreachable scheduler fail with one line.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_addrs, run, ServerProc, BENCH, CTL};
use kvserver::client::Client;
use kvserver::region_cache::SchedulerSource;
use scheduler::server::{RunningScheduler, ServerConfig as SchedulerConfig};

/// The longest wait for anything the cluster does by itself (registration, splits).
const PATIENCE: Duration = Duration::from_secs(120);

/// Keys written: with 1 KiB values, about 600 KiB, some ten regions of at most 64 KiB.
const KEYS: usize = 600;

fn key(i: usize) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("value{i:05}-").into_bytes();
    v.resize(1024, b'.');
    v
}

/// A store config: fast ticks and heartbeats, and regions split past 64 KiB.
fn config(root: &Path) -> String {
    let path = root.join("small-regions.toml");
    std::fs::write(
        &path,
        "raft-base-tick-ms = 50\n\
         raft-wal-preallocate-mb = 0\n\
         scheduler-heartbeat-tick-interval = \"200ms\"\n\
         scheduler-store-heartbeat-tick-interval = \"500ms\"\n\
         region-max-size = \"64KiB\"\n\
         region-split-size = \"48KiB\"\n\
         split-region-check-tick-interval = \"200ms\"\n",
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// Polls `check` every 200 ms until it returns Some; panics with `what` after [`PATIENCE`].
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The output failed with exactly one line on stderr and exit code `code`.
fn failed_with_one_line(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err:?}");
    lines[0].to_string()
}

/// Writes keys `range` through `client`, 16 at a time.
fn write_keys(rt: &tokio::runtime::Runtime, client: &Client, range: std::ops::Range<usize>) {
    rt.block_on(async {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(range.start));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (client, next, end) = (client.clone(), next.clone(), range.end);
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= end {
                        return;
                    }
                    client.put("", &key(i), &value(i)).await.expect("put");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn test_a_client_reads_writes_and_scans_across_regions() {
    let root = tempfile::tempdir().unwrap();
    let sched = RunningScheduler::start(
        SchedulerConfig {
            addr: "127.0.0.1:0".into(),
            data_dir: root.path().join("scheduler"),
            ..Default::default()
        },
        slog::Logger::root(slog::Discard, slog::o!()),
    )
    .expect("start a scheduler");
    let sched_addr = sched.addr().to_string();
    let config = config(root.path());
    let mut procs: Vec<ServerProc> = free_addrs(3)
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let args = vec![
                "--scheduler".to_string(),
                sched_addr.clone(),
                "--config".into(),
                config.clone(),
            ];
            ServerProc::new(a, &root.path().join(format!("store-{i}")), args)
        })
        .collect();
    for p in &mut procs {
        p.start();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let source = SchedulerSource::new(&sched_addr).unwrap();
    wait_for("three stores registered", || {
        let stores = rt.block_on(source.all_stores()).ok()?;
        (stores.len() == 3).then_some(())
    });
    let client = Client::with_scheduler(sched_addr.clone(), Duration::from_secs(60)).unwrap();

    // The first half, then wait for splits, then the second half: the later writes meet a
    // cache that the splits made stale (EpochNotMatch, new regions to ask the scheduler for).
    write_keys(&rt, &client, 0..KEYS / 2);
    wait_for("the first splits", || {
        let regions = rt.block_on(source.all_regions()).ok()?;
        (regions.len() >= 3).then_some(())
    });
    write_keys(&rt, &client, KEYS / 2..KEYS);
    // The data splits into many regions, and the scheduler's balance-leader spreads their
    // leaders over the stores, so the cache built so far goes stale both ways.
    let regions = wait_for("several regions led from more than one store", || {
        let regions = rt.block_on(source.all_regions()).ok()?;
        let mut leaders: Vec<u64> = regions
            .iter()
            .filter_map(|(_, l)| l.map(|l| l.store_id))
            .collect();
        leaders.sort_unstable();
        leaders.dedup();
        (regions.len() >= 8 && leaders.len() >= 2).then_some(regions)
    });
    // The regions tile the key space in order.
    assert!(regions[0].0.start_key.is_empty());
    assert!(regions.last().unwrap().0.end_key.is_empty());
    for w in regions.windows(2) {
        assert_eq!(w[0].0.end_key, w[1].0.start_key, "{regions:?}");
    }

    rt.block_on(async {
        // Every key reads back, through a fresh client too (an empty cache).
        let fresh = Client::with_scheduler(sched_addr.clone(), Duration::from_secs(60)).unwrap();
        for i in 0..KEYS {
            assert_eq!(
                client.get("", &key(i)).await.unwrap(),
                Some(value(i)),
                "key {i}"
            );
        }
        for i in (0..KEYS).step_by(7) {
            assert_eq!(
                fresh.get("", &key(i)).await.unwrap(),
                Some(value(i)),
                "key {i}"
            );
        }
        assert_eq!(client.get("", b"key99999").await.unwrap(), None);

        // One scan of everything: whole and in order, across every region.
        let all = fresh.scan("", b"", KEYS as u32 + 10).await.unwrap();
        let keys: Vec<Vec<u8>> = all.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, (0..KEYS).map(key).collect::<Vec<_>>());
        assert!(all.iter().enumerate().all(|(i, (_, v))| *v == value(i)));

        // A scan from the middle with a limit spanning regions stops at the limit.
        let part = client.scan("", &key(100), 350).await.unwrap();
        let keys: Vec<Vec<u8>> = part.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, (100..450).map(key).collect::<Vec<_>>());

        // Deletes route like puts.
        client.delete("", &key(5)).await.unwrap();
        assert_eq!(client.get("", &key(5)).await.unwrap(), None);
    });

    // tinykv-ctl through the scheduler.
    let ctl = |args: &[&str]| {
        let mut all = vec!["--scheduler", sched_addr.as_str()];
        all.extend_from_slice(args);
        run(CTL, &all)
    };
    let out = ctl(&["get", "key00042"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).trim_end().as_bytes(), value(42));
    let out = ctl(&["scan", "key00290", "--limit", "20"]);
    assert!(out.status.success(), "{out:?}");
    let scanned: Vec<String> = stdout(&out)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (290..310).map(|i| format!("key{i:05}")).collect();
    assert_eq!(scanned, expected);

    let out = ctl(&["regions"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let now = rt.block_on(source.all_regions()).unwrap();
    assert_eq!(lines.len(), now.len() + 1, "{text}");
    assert!(lines[0].starts_with("ID"), "{text}");
    for col in ["START", "END", "PEERS", "LEADER"] {
        assert!(lines[0].contains(col), "{text}");
    }
    assert!(lines[1].contains("(min)"), "{text}");
    assert!(lines.last().unwrap().contains("(max)"), "{text}");
    assert!(
        text.contains("key"),
        "split keys are printed readably: {text}"
    );

    let out = ctl(&["stores"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for line in &lines[1..] {
        assert!(line.contains("Up"), "{text}");
    }
    for p in &procs {
        assert!(text.contains(&p.addr), "{text}");
    }

    // tinykv-bench through the scheduler.
    let out = run(
        BENCH,
        &[
            "--scheduler",
            &sched_addr,
            "--ops",
            "200",
            "--clients",
            "4",
            "--keys",
            "100",
            "--value-size",
            "16",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("ops=200 errors=0"),
        "{}",
        stdout(&out)
    );

    // Usage errors and a missing scheduler: one line each.
    let line = failed_with_one_line(&run(CTL, &["regions"]), 1);
    assert!(line.contains("--scheduler"), "{line}");
    let line = failed_with_one_line(
        &run(
            CTL,
            &[
                "--scheduler",
                &sched_addr,
                "--endpoints",
                "127.0.0.1:1",
                "get",
                "k",
            ],
        ),
        2,
    );
    assert!(
        line.contains("--endpoints") || line.contains("--scheduler"),
        "{line}"
    );
    let dead = free_addrs(1).remove(0);
    let line = failed_with_one_line(
        &run(CTL, &["--scheduler", &dead, "--timeout", "2", "stores"]),
        1,
    );
    assert!(line.contains(&dead), "{line}");

    // The store leading key 0's region dies: the client drops what that store led, asks the
    // scheduler again, tries the other peers, and every key still reads back and takes writes.
    let (_, leader) = rt.block_on(source.all_regions()).unwrap().remove(0);
    let leader = leader.expect("the first region has a leader");
    let (store, _) = rt.block_on(source.store(leader.store_id)).unwrap();
    let victim = procs
        .iter()
        .position(|p| p.addr == store.address)
        .expect("the leader is one of the test's stores");
    procs[victim].kill();
    rt.block_on(async {
        for i in (0..KEYS).filter(|&i| i != 5) {
            assert_eq!(
                client.get("", &key(i)).await.unwrap(),
                Some(value(i)),
                "key {i} after store {} died",
                leader.store_id
            );
        }
        client.put("", &key(0), b"after").await.unwrap();
        assert_eq!(
            client.get("", &key(0)).await.unwrap().as_deref(),
            Some(&b"after"[..])
        );
    });

    for p in &mut procs {
        p.terminate();
    }
    sched.stop().expect("stop the scheduler");
}
