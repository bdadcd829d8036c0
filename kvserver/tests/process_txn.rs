//! Transactions on real stores (TinyKV's Project 4 beyond its in-memory tests):
//!
//! - every `Kv*` command through a 3-store replicated cluster (`tinykv-server` processes), in the
//!   sequences the 4B/4C tests use (prewrite, locked reads, commit, scan, conflicts, rollback,
//!   check-txn-status with an expired lock, resolve-lock both ways), and the bad input the issue
//!   names (a key over the limit, an unsupported op, a commit version not after the start, a
//!   scan of limit 0); the lock keys are stored memcomparable-encoded (see
//!   `kvserver::transaction`);
//! - the transactional client against stores run by an in-process scheduler: a commit and its
//!   snapshot reads, a write conflict, and the locks a dead client leaves (before and after its
//!   primary committed) resolved by the next reader.

mod common;

use std::time::{Duration, Instant};

use common::{start_cluster, start_scheduler, ServerProc};
use kvserver::client::txn::{TxnClient, TxnClientError};
use kvserver::region_cache::SchedulerSource;
use kvserver::tinykvpb::tiny_kv_client::TinyKvClient;
use kvserver::transaction::codec::{compose_ts, encode_bytes};
use proto::kvrpcpb::{
    Action, BatchRollbackRequest, CheckTxnStatusRequest, CommitRequest, GetRequest, Mutation, Op,
    PrewriteRequest, ResolveLockRequest, ScanRequest,
};
use tonic::transport::Channel;
use tonic::Code;

/// The longest wait for anything the cluster does by itself.
const PATIENCE: Duration = Duration::from_secs(90);

fn put(key: &[u8], value: &[u8]) -> Mutation {
    Mutation {
        op: Op::Put as i32,
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

fn prewrite(mutations: Vec<Mutation>, primary: &[u8], start: u64, ttl: u64) -> PrewriteRequest {
    PrewriteRequest {
        context: None,
        mutations,
        primary_lock: primary.to_vec(),
        start_version: start,
        lock_ttl: ttl,
    }
}

fn get(key: &[u8], version: u64) -> GetRequest {
    GetRequest {
        context: None,
        key: key.to_vec(),
        version,
    }
}

/// A connection to the store that leads the cluster's one region: the first whose answer to a
/// read carries no region error.
async fn leader(procs: &[ServerProc]) -> TinyKvClient<Channel> {
    let start = Instant::now();
    loop {
        for p in procs {
            let Ok(mut c) = TinyKvClient::connect(format!("http://{}", p.addr)).await else {
                continue;
            };
            if let Ok(r) = c.kv_get(get(b"probe", 1)).await {
                if r.into_inner().region_error.is_none() {
                    return c;
                }
            }
        }
        assert!(start.elapsed() < PATIENCE, "no store leads the region");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn test_txn_commands_on_a_replicated_store() {
    let root = tempfile::tempdir().unwrap();
    let mut procs = start_cluster(root.path(), 3, &["--raft-base-tick-ms", "50"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = leader(&procs).await;

        // Prewrite: two keys locked, values written; readers after the start see the locks.
        let r = c
            .kv_prewrite(prewrite(
                vec![put(b"k1", b"v1"), put(b"k2", b"v2")],
                b"k1",
                100,
                60_000,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(r.region_error.is_none() && r.errors.is_empty(), "{r:?}");
        let r = c.kv_get(get(b"k1", 105)).await.unwrap().into_inner();
        let locked = r
            .error
            .and_then(|e| e.locked)
            .expect("k1 is locked for a read at 105");
        assert_eq!(
            (locked.primary_lock.as_slice(), locked.lock_version),
            (&b"k1"[..], 100)
        );
        let r = c.kv_get(get(b"k1", 99)).await.unwrap().into_inner();
        assert!(
            r.error.is_none() && r.not_found,
            "a read before the lock: {r:?}"
        );
        // Another transaction's prewrite meets the lock.
        let r = c
            .kv_prewrite(prewrite(vec![put(b"k1", b"other")], b"k1", 101, 60_000))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].locked.is_some(), "{r:?}");
        // A scan sees the first-write locks (keys with no committed version yet).
        let scan = |version| ScanRequest {
            context: None,
            start_key: b"k".to_vec(),
            limit: 10,
            version,
        };
        let r = c.kv_scan(scan(105)).await.unwrap().into_inner();
        let keys: Vec<_> = r
            .pairs
            .iter()
            .map(|p| (p.key.clone(), p.error.is_some()))
            .collect();
        assert_eq!(
            keys,
            [(b"k1".to_vec(), true), (b"k2".to_vec(), true)],
            "{r:?}"
        );
        // The primary is alive (a long TTL): no action.
        let r = c
            .kv_check_txn_status(CheckTxnStatusRequest {
                context: None,
                primary_key: b"k1".to_vec(),
                lock_ts: 100,
                current_ts: 104,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (r.action, r.lock_ttl),
            (Action::NoAction as i32, 60_000),
            "{r:?}"
        );

        // Commit: visible from the commit timestamp on.
        let r = c
            .kv_commit(CommitRequest {
                context: None,
                start_version: 100,
                keys: vec![b"k1".to_vec(), b"k2".to_vec()],
                commit_version: 110,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.region_error.is_none() && r.error.is_none(), "{r:?}");
        let r = c.kv_get(get(b"k2", 120)).await.unwrap().into_inner();
        assert_eq!(r.value, b"v2", "{r:?}");
        let r = c.kv_get(get(b"k2", 109)).await.unwrap().into_inner();
        assert!(r.not_found, "invisible before its commit: {r:?}");
        let r = c.kv_scan(scan(120)).await.unwrap().into_inner();
        let pairs: Vec<_> = r
            .pairs
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        assert_eq!(
            pairs,
            [
                (b"k1".to_vec(), b"v1".to_vec()),
                (b"k2".to_vec(), b"v2".to_vec())
            ]
        );
        // A transaction that started before that commit conflicts.
        let r = c
            .kv_prewrite(prewrite(vec![put(b"k1", b"late")], b"k1", 105, 60_000))
            .await
            .unwrap()
            .into_inner();
        let conflict = r.errors[0].conflict.clone().expect("a write conflict");
        assert_eq!((conflict.start_ts, conflict.conflict_ts), (105, 110));

        // Rollback leaves a record: a late prewrite of that transaction is refused.
        let r = c
            .kv_batch_rollback(BatchRollbackRequest {
                context: None,
                start_version: 130,
                keys: vec![b"k3".to_vec()],
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.error.is_none(), "{r:?}");
        let r = c
            .kv_prewrite(prewrite(vec![put(b"k3", b"x")], b"k3", 130, 60_000))
            .await
            .unwrap()
            .into_inner();
        assert!(r.errors[0].conflict.is_some(), "rolled back already: {r:?}");

        // ResolveLock commits one transaction's locks and rolls another's back.
        c.kv_prewrite(prewrite(
            vec![put(b"k4", b"4"), put(b"k5", b"5")],
            b"k4",
            140,
            60_000,
        ))
        .await
        .unwrap();
        c.kv_prewrite(prewrite(vec![put(b"k6", b"6")], b"k6", 170, 60_000))
            .await
            .unwrap();
        let resolve = |start, commit| ResolveLockRequest {
            context: None,
            start_version: start,
            commit_version: commit,
        };
        let r = c
            .kv_resolve_lock(resolve(140, 150))
            .await
            .unwrap()
            .into_inner();
        assert!(r.error.is_none() && r.region_error.is_none(), "{r:?}");
        let r = c
            .kv_resolve_lock(resolve(170, 0))
            .await
            .unwrap()
            .into_inner();
        assert!(r.error.is_none() && r.region_error.is_none(), "{r:?}");
        assert_eq!(
            c.kv_get(get(b"k5", 160)).await.unwrap().into_inner().value,
            b"5"
        );
        assert!(
            c.kv_get(get(b"k6", 180))
                .await
                .unwrap()
                .into_inner()
                .not_found
        );

        // An expired lock is rolled back by CheckTxnStatus.
        let lock_ts = compose_ts(1_000, 0);
        c.kv_prewrite(prewrite(vec![put(b"k7", b"7")], b"k7", lock_ts, 10))
            .await
            .unwrap();
        let r = c
            .kv_check_txn_status(CheckTxnStatusRequest {
                context: None,
                primary_key: b"k7".to_vec(),
                lock_ts,
                current_ts: compose_ts(5_000, 0),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.action, Action::TtlExpireRollback as i32, "{r:?}");
        // The client's keep-alive: a prewrite by the same transaction replaces its own lock with
        // a longer TTL (still alive where the first would have expired); one that arrives after
        // the commit is refused as a conflict, so it cannot bring the lock back.
        let alive_ts = compose_ts(2_000, 0);
        let status = |current_ts| CheckTxnStatusRequest {
            context: None,
            primary_key: b"k9".to_vec(),
            lock_ts: alive_ts,
            current_ts,
        };
        for ttl in [10, 60_000] {
            let r = c
                .kv_prewrite(prewrite(vec![put(b"k9", b"9")], b"k9", alive_ts, ttl))
                .await
                .unwrap()
                .into_inner();
            assert!(r.errors.is_empty(), "{r:?}");
        }
        let r = c
            .kv_check_txn_status(status(compose_ts(2_100, 0)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (r.action, r.lock_ttl),
            (Action::NoAction as i32, 60_000),
            "{r:?}"
        );
        c.kv_commit(CommitRequest {
            context: None,
            start_version: alive_ts,
            keys: vec![b"k9".to_vec()],
            commit_version: alive_ts + 1,
        })
        .await
        .unwrap();
        let r = c
            .kv_prewrite(prewrite(vec![put(b"k9", b"9")], b"k9", alive_ts, 60_000))
            .await
            .unwrap()
            .into_inner();
        assert!(r.errors[0].conflict.is_some(), "a late keep-alive: {r:?}");
        let r = c
            .kv_check_txn_status(status(compose_ts(2_100, 0)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.commit_version,
            alive_ts + 1,
            "still committed, no lock: {r:?}"
        );

        // An open lock, to find on disk below.
        c.kv_prewrite(prewrite(vec![put(b"open", b"o")], b"open", 200, 60_000))
            .await
            .unwrap();

        // Bad input: TinyKV's answers where it has them, clear refusals where it has none.
        let r = c
            .kv_commit(CommitRequest {
                context: None,
                start_version: 300,
                keys: vec![b"never".to_vec()],
                commit_version: 310,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            r.error.is_none(),
            "a commit without prewrite is no error in TinyKV: {r:?}"
        );
        let long = vec![b'x'; 5000];
        let e = c
            .kv_prewrite(prewrite(vec![put(&long, b"v")], &long, 400, 10))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("over the limit"), "{e:?}");
        let lock_op = Mutation {
            op: Op::Lock as i32,
            key: b"k8".to_vec(),
            value: Vec::new(),
        };
        let e = c
            .kv_prewrite(prewrite(vec![lock_op], b"k8", 400, 10))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        let e = c
            .kv_commit(CommitRequest {
                context: None,
                start_version: 500,
                keys: vec![b"k1".to_vec()],
                commit_version: 500,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        let r = c
            .kv_scan(ScanRequest {
                context: None,
                start_key: b"k".to_vec(),
                limit: 0,
                version: 1000,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.pairs.is_empty() && r.region_error.is_none(), "{r:?}");
        // None of the refused writes happened.
        assert!(
            c.kv_get(get(b"k8", 1000))
                .await
                .unwrap()
                .into_inner()
                .not_found
        );
        assert_eq!(
            c.kv_get(get(b"k1", 1000)).await.unwrap().into_inner().value,
            b"v1"
        );
    });
    for p in &mut procs {
        p.terminate();
    }
    // On every replica, the open lock is stored under its encoded key, none under the raw one.
    for p in &procs {
        let encoded = common::engine_get(&p.dir, "lock", &encode_bytes(b"open"));
        assert!(encoded.is_some(), "store {}: the lock of \"open\"", p.addr);
        assert_eq!(common::engine_get(&p.dir, "lock", b"open"), None);
    }
}

#[test]
fn test_txn_client_commits_conflicts_and_resolves_locks() {
    let root = tempfile::tempdir().unwrap();
    let sched = start_scheduler(&root.path().join("scheduler"));
    let addr = sched.addr().to_string();
    let _procs = common::start_scheduled_stores(root.path(), &addr, "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = TxnClient::new(addr.clone(), PATIENCE).unwrap();

        // Enough data for several regions: 200 keys of 512 bytes, 20 per transaction.
        for batch in 0..10 {
            let mut t = client.begin().await.unwrap();
            for i in 0..20 {
                let k = format!("acct{:04}", batch * 20 + i);
                t.put(k.as_bytes(), vec![b'a' + (i % 26) as u8; 512]);
            }
            t.commit().await.unwrap();
        }
        // Split into several regions (the scheduler hands out the split ids).
        let source = SchedulerSource::new(&addr).unwrap();
        let start = Instant::now();
        let regions = loop {
            let n = source
                .scan_regions(b"", b"", 0)
                .await
                .map_or(0, |r| r.len());
            if n >= 3 {
                break n;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "the data never split: {n} regions"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let t = client.begin().await.unwrap();
        let all = t.scan(b"acct", b"acct~", 1000).await.unwrap();
        eprintln!("{regions} regions; a scan read {} pairs", all.len());
        let missing: Vec<String> = (0..200)
            .map(|i| format!("acct{i:04}"))
            .filter(|k| !all.iter().any(|(have, _)| have == k.as_bytes()))
            .collect();
        assert!(
            missing.is_empty(),
            "every committed key, across the regions: {missing:?} missing"
        );
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "in key order");

        // Snapshot reads, own writes first; deletes hide.
        let mut t = client.begin().await.unwrap();
        t.put(&b"acct0003"[..], &b"mine"[..]);
        t.delete(&b"acct0004"[..]);
        assert_eq!(
            t.get(b"acct0003").await.unwrap().as_deref(),
            Some(&b"mine"[..])
        );
        assert_eq!(t.get(b"acct0004").await.unwrap(), None);
        let few = t.scan(b"acct0002", b"acct0006", 3).await.unwrap();
        let keys: Vec<_> = few.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, [&b"acct0002"[..], b"acct0003", b"acct0005"]);
        let other = client.begin().await.unwrap();
        t.commit().await.unwrap();
        assert_eq!(
            other.get(b"acct0003").await.unwrap().map(|v| v.len()),
            Some(512),
            "a snapshot taken before the commit does not see it"
        );

        // A write conflict: the second of two overlapping transactions fails, retryably.
        let mut a = client.begin().await.unwrap();
        let mut b = client.begin().await.unwrap();
        a.put(&b"acct0010"[..], &b"a"[..]);
        b.put(&b"acct0010"[..], &b"b"[..]);
        a.commit().await.unwrap();
        let e = b.commit().await.unwrap_err();
        assert!(
            matches!(e, TxnClientError::Conflict { .. }) && e.is_retryable(),
            "{e}"
        );
        let t = client.begin().await.unwrap();
        assert_eq!(
            t.get(b"acct0010").await.unwrap().as_deref(),
            Some(&b"a"[..])
        );

        // A dead client's locks: prewritten (short TTL) and never committed, they are rolled
        // back by the next reader; prewritten with the primary committed, they are committed.
        let ts = client.timestamp().await.unwrap();
        let dead = TinyKvDirect::new(&client);
        dead.prewrite(&[(b"acct0100", b"lost"), (b"acct0190", b"lost")], ts, 200)
            .await;
        let ts2 = client.timestamp().await.unwrap();
        dead.prewrite(
            &[(b"acct0050", b"kept"), (b"acct0150", b"kept")],
            ts2,
            60_000,
        )
        .await;
        let commit_ts = client.timestamp().await.unwrap();
        dead.commit(b"acct0050", ts2, commit_ts).await;

        let reader = TxnClient::new(addr.clone(), PATIENCE).unwrap();
        let t = reader.begin().await.unwrap();
        assert_eq!(
            t.get(b"acct0190").await.unwrap().map(|v| v.len()),
            Some(512)
        );
        assert_eq!(
            t.get(b"acct0150").await.unwrap().as_deref(),
            Some(&b"kept"[..])
        );
        let stats = reader.stats();
        assert!(
            stats
                .resolved_rolled_back
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 1
        );
        assert!(
            stats
                .resolved_committed
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 1
        );
        assert!(
            stats.lock_waits.load(std::sync::atomic::Ordering::Relaxed) >= 1,
            "the 200 ms lock was alive at first"
        );
        // After resolution a scan sees no lock, and the committed primary's partner.
        let t = reader.begin().await.unwrap();
        let all = t.scan(b"acct", b"acct~", 1000).await.unwrap();
        let missing: Vec<String> = (0..200)
            .map(|i| format!("acct{i:04}"))
            .filter(|k| !all.iter().any(|(have, _)| have == k.as_bytes()))
            .collect();
        assert_eq!(
            missing,
            ["acct0004"],
            "after the resolutions, all but the deleted key"
        );
        let v: std::collections::BTreeMap<_, _> = all.into_iter().collect();
        assert_eq!(v[&b"acct0050"[..]], b"kept");
        assert_eq!(v[&b"acct0100"[..]].len(), 512);
    });
}

/// Requests straight to the stores, the way a client that dies mid-commit leaves them: routed
/// with a transactional client's region cache.
struct TinyKvDirect {
    client: TxnClient,
}

impl TinyKvDirect {
    fn new(client: &TxnClient) -> TinyKvDirect {
        TinyKvDirect {
            client: client.clone(),
        }
    }

    /// Prewrites `pairs` (the first key primary) at `start` with `ttl` ms, one key at a time.
    async fn prewrite(&self, pairs: &[(&[u8], &[u8])], start: u64, ttl: u64) {
        let primary = pairs[0].0.to_vec();
        for (k, v) in pairs {
            let req = prewrite(vec![put(k, v)], &primary, start, ttl);
            let r = self.client.send_prewrite(req).await.expect("a prewrite");
            assert!(r.errors.is_empty(), "{r:?}");
        }
    }

    /// Commits `key` of the transaction started at `start`.
    async fn commit(&self, key: &[u8], start: u64, commit: u64) {
        let r = self
            .client
            .send_commit(CommitRequest {
                context: None,
                start_version: start,
                keys: vec![key.to_vec()],
                commit_version: commit,
            })
            .await
            .expect("a commit");
        assert!(r.error.is_none(), "{r:?}");
    }
}

/// `tinykv-ctl txn`: a transaction from the shell writes, reads, scans and deletes; a missing key
/// and a missing `--scheduler` are one line and exit 1.
#[test]
fn test_ctl_txn_round_trip() {
    let root = tempfile::tempdir().unwrap();
    let sched = start_scheduler(&root.path().join("scheduler"));
    let addr = sched.addr().to_string();
    let _procs = common::start_scheduled_stores(root.path(), &addr, "");
    let ctl = |args: &[&str]| {
        let mut all = vec!["--scheduler", addr.as_str(), "--timeout", "60", "txn"];
        all.extend_from_slice(args);
        common::run(common::CTL, &all)
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();

    let out = ctl(&["put", "a", "1", "b", "2", "c", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("committed at "),
        "{}",
        text(&out.stdout)
    );
    let out = ctl(&["get", "a", "b"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "a\t1\nb\t2\n");
    let out = ctl(&["delete", "b"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = ctl(&["scan", "", "--limit", "10"]);
    assert_eq!(text(&out.stdout), "a\t1\nc\t3\n", "{}", text(&out.stderr));
    let out = ctl(&["scan", "a", "--end", "c"]);
    assert_eq!(text(&out.stdout), "a\t1\n");

    let out = ctl(&["get", "a", "b"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "a\t1\n");
    assert_eq!(text(&out.stderr).trim(), "tinykv-ctl: key \"b\" not found");
    let out = ctl(&["put", "a"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a key without a value is bad usage"
    );

    let out = common::run(
        common::CTL,
        &["--endpoints", "127.0.0.1:1", "txn", "get", "a"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("needs --scheduler"), "{err}");
}

/// `tinykv-bench --workload txn`: transfers between few accounts (so they conflict) commit, and
/// one snapshot of the accounts afterwards adds up to what they started with.
#[test]
fn test_bench_txn_transfers_add_up() {
    let root = tempfile::tempdir().unwrap();
    let sched = start_scheduler(&root.path().join("scheduler"));
    let addr = sched.addr().to_string();
    let _procs = common::start_scheduled_stores(root.path(), &addr, "");
    let out = common::run(
        common::BENCH,
        &[
            "--scheduler",
            &addr,
            "--workload",
            "txn",
            "--clients",
            "8",
            "--keys",
            "10",
            "--ops",
            "200",
            "--timeout",
            "60",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].starts_with("workload=Txn"), "{stdout}");
    assert!(lines[1].starts_with("ops=200 errors=0 "), "{stdout}");
    assert!(
        lines[3].ends_with("accounts=10 total=10000 (expected 10000)"),
        "{stdout}"
    );
    // Eight clients on ten accounts: some transfers overlapped and ran again.
    let conflicts: u64 = lines[3]
        .strip_prefix("conflicts=")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a conflict count");
    assert!(conflicts > 0, "{stdout}");

    let out = common::run(common::BENCH, &["--workload", "txn", "--ops", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs --scheduler"), "{err}");
}

/// MVCC garbage collection: below a safe point set at the scheduler, only the version a read at
/// the safe point sees stays (on every replica: the deletions go through raft), reads below it
/// and transactions that started at or before it are refused, and newer versions are untouched.
#[test]
fn test_gc_keeps_only_what_the_safe_point_can_see() {
    use kvserver::transaction::codec::decode_key;
    use proto::schedulerpb::{RequestHeader, UpdateGcSafePointRequest};
    use raftstore::engine::rocks::RocksEngine;
    use raftstore::engine::{Engine, ALL_CFS};
    use scheduler::schedulerpb::scheduler_client::SchedulerClient;

    let root = tempfile::tempdir().unwrap();
    // The safe point moves only when the test says.
    let sched = scheduler::server::RunningScheduler::start(
        scheduler::server::ServerConfig {
            addr: "127.0.0.1:0".into(),
            data_dir: root.path().join("scheduler"),
            gc_life_time: Duration::ZERO,
            ..Default::default()
        },
        slog::Logger::root(slog::Discard, slog::o!()),
    )
    .unwrap();
    let addr = sched.addr().to_string();
    let mut procs =
        common::start_scheduled_stores(root.path(), &addr, "gc-tick-interval = \"200ms\"\n");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let commits = rt.block_on(async {
        let client = TxnClient::new(addr.clone(), PATIENCE).unwrap();
        // Every replica is to be checked: the region first gets its three.
        let source = SchedulerSource::new(&addr).unwrap();
        let start = Instant::now();
        loop {
            let regions = source.scan_regions(b"", b"", 0).await.unwrap_or_default();
            if !regions.is_empty() && regions.iter().all(|(r, _)| r.peers.len() == 3) {
                break;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "the region never got three replicas"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut commits = Vec::new();
        for i in 1..=5 {
            let mut t = client.begin().await.unwrap();
            t.put(&b"g"[..], format!("v{i}"));
            if i == 1 {
                t.put(&b"h"[..], &b"doomed"[..]);
            }
            if i == 2 {
                t.delete(&b"h"[..]);
            }
            commits.push(t.commit().await.unwrap());
        }
        let safe_point = commits[3]; // g = v4 is what a read there sees
        let mut sc = SchedulerClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let r = sc
            .update_gc_safe_point(UpdateGcSafePointRequest {
                header: Some(RequestHeader {
                    cluster_id: source.cluster_id().await.unwrap(),
                }),
                safe_point,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.new_safe_point, safe_point);

        // The leader learns it: an older read is refused, with a message.
        let start = Instant::now();
        loop {
            let e = GetRequest {
                context: None,
                key: b"g".to_vec(),
                version: safe_point - 1,
            };
            let r = client.send_get(e).await.unwrap();
            if let Some(err) = r.error {
                assert!(err.abort.contains("GC safe point"), "{err:?}");
                break;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "the store never learnt the safe point"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = client
            .send_prewrite(prewrite(
                vec![put(b"late", b"x")],
                b"late",
                safe_point,
                1000,
            ))
            .await
            .unwrap();
        assert!(r.errors[0].abort.contains("GC safe point"), "{r:?}");
        // What a read at or after the safe point sees is unchanged.
        let t = client.begin().await.unwrap();
        assert_eq!(t.get(b"g").await.unwrap().as_deref(), Some(&b"v5"[..]));
        assert_eq!(t.get(b"h").await.unwrap(), None);
        let r = client.send_get(get(b"g", safe_point)).await.unwrap();
        assert_eq!(r.value, b"v4", "{r:?}");
        commits
    });
    // Collected: the leader says so, and every replica applied the deletions.
    let start = Instant::now();
    while !procs
        .iter()
        .any(|p| p.log_text().contains("garbage collected"))
    {
        assert!(start.elapsed() < PATIENCE, "no store collected anything");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A follower may apply the deletions a little after the leader: stopped too early, it
    // applies them when it starts again, so a store that is not there yet gets another round.
    let on_disk = |p: &ServerProc| -> (Vec<(Vec<u8>, u64)>, usize) {
        let kv = RocksEngine::open(p.dir.join("kv"), &ALL_CFS).unwrap();
        let mut versions: Vec<(Vec<u8>, u64)> = Vec::new();
        kv.scan_cf("write", b"", &[], &mut |k, _| {
            if let Ok((user, ts)) = decode_key(k) {
                versions.push((user, ts));
            }
            Ok(true)
        })
        .unwrap();
        let mut values = 0;
        kv.scan_cf("default", b"", &[], &mut |_, _| {
            values += 1;
            Ok(true)
        })
        .unwrap();
        (versions, values)
    };
    let want = vec![(b"g".to_vec(), commits[4]), (b"g".to_vec(), commits[3])];
    for round in 0.. {
        for p in &mut procs {
            p.terminate();
        }
        let seen: Vec<_> = procs.iter().map(on_disk).collect();
        if seen.iter().all(|(v, n)| *v == want && *n == 2) {
            break;
        }
        assert!(
            round < 10,
            "every replica keeps the newest version and the one the safe point sees, and their \
             two values: {seen:?}"
        );
        for p in &mut procs {
            p.start();
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
