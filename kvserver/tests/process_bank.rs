//! The bank: transactions under crashes (issue: Project 4 and a transactional client that
//! survives them). Accounts with a known total live in a 3-store cluster run by a scheduler,
//! split over several regions. While writer tasks move money between random accounts:
//!
//! - a reader takes snapshots of every account: each must hold every account and add up to the
//!   total (a read that saw half a transfer would not);
//! - writers are killed mid-transaction (their task aborted at whatever await it was at:
//!   between prewrite and commit, or between the primary's commit and the secondaries'), and
//!   two clients die at chosen points (after prewriting, and after committing only the
//!   primary): the locks they leave are resolved by whoever meets them;
//! - stores are SIGKILLed and restarted.
//!
//! At the end each account must hold exactly what the committed transfers make it: the
//! acknowledged ones, and of the interrupted ones those whose primary says committed (asked at
//! the end, which also rolls back what never finished). No committed transfer lost, no
//! uncommitted one applied.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{start_scheduled_stores, start_scheduler};
use kvserver::client::txn::{TxnClient, TxnClientError, TxnStatus};
use proto::kvrpcpb::{CommitRequest, Mutation, Op, PrewriteRequest};
use rand::{Rng, SeedableRng};

/// Accounts, and what each holds at first.
const ACCOUNTS: u64 = 24;
const INITIAL: i64 = 1000;
/// How long the writers run.
const RUN: Duration = Duration::from_secs(20);
/// Concurrent writers.
const WRITERS: usize = 4;
/// Every request's (and lock resolution's) patience.
const TIMEOUT: Duration = Duration::from_secs(60);

fn account(i: u64) -> Vec<u8> {
    // Long keys, so that the accounts soon fill several small regions.
    format!("account{i:04}-{}", "x".repeat(200)).into_bytes()
}

fn amount(v: &[u8]) -> i64 {
    String::from_utf8_lossy(v)
        .trim_end_matches('.')
        .parse()
        .expect("a balance")
}

/// A balance padded with dots (trimmed when read), so the values make the regions split.
fn stored(n: i64) -> Vec<u8> {
    format!("{n:.<512}").into_bytes()
}

/// A transfer: from, to, how much.
type Transfer = (u64, u64, i64);

/// What the writers did: transfers acknowledged as committed, and those whose outcome only the
/// primary knows (the writer was killed, or the commit's answer was lost), by start timestamp.
#[derive(Default)]
struct Ledger {
    committed: Vec<Transfer>,
    unknown: Vec<(u64, Transfer)>,
    conflicts: u64,
}

/// One writer: transfers until `stop`; the transfer in flight is in `inflight` while it commits,
/// so that whoever kills the writer knows what to ask about later.
async fn writer(
    client: TxnClient,
    seed: u64,
    ledger: Arc<Mutex<Ledger>>,
    inflight: Arc<Mutex<Option<(u64, Transfer)>>>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    while !stop.load(Ordering::Relaxed) {
        let a = rng.random_range(0..ACCOUNTS);
        let b = (a + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
        let n = rng.random_range(1..50);
        let Ok(mut t) = client.begin().await else {
            continue;
        };
        let (Ok(Some(va)), Ok(Some(vb))) = (t.get(&account(a)).await, t.get(&account(b)).await)
        else {
            continue;
        };
        t.put(account(a), stored(amount(&va) - n));
        t.put(account(b), stored(amount(&vb) + n));
        let start_ts = t.start_ts();
        *inflight.lock().unwrap() = Some((start_ts, (a, b, n)));
        let outcome = t.commit().await;
        inflight.lock().unwrap().take();
        let mut l = ledger.lock().unwrap();
        match outcome {
            Ok(_) => l.committed.push((a, b, n)),
            Err(e) if e.is_retryable() => l.conflicts += 1,
            // Undetermined, or a store away longer than the timeout: the primary decides.
            Err(_) => l.unknown.push((start_ts, (a, b, n))),
        }
    }
}

/// A client that dies mid-commit: it reads `a` and `b`, prewrites a transfer of `n` with a short
/// TTL, commits the primary if `commit_primary`, and is gone. Its start timestamp; None when a
/// prewrite met another transaction (then it died before its commit: nothing to commit).
async fn die_mid_commit(
    client: &TxnClient,
    a: u64,
    b: u64,
    n: i64,
    commit_primary: bool,
) -> Option<u64> {
    let t = client.begin().await.unwrap();
    let va = amount(&t.get(&account(a)).await.unwrap().unwrap());
    let vb = amount(&t.get(&account(b)).await.unwrap().unwrap());
    let start = t.start_ts();
    drop(t);
    let (ka, kb) = (account(a), account(b));
    let primary = ka.clone().min(kb.clone());
    for (k, v) in [(ka, va - n), (kb, vb + n)] {
        let r = client
            .send_prewrite(PrewriteRequest {
                context: None,
                mutations: vec![Mutation {
                    op: Op::Put as i32,
                    key: k,
                    value: stored(v),
                }],
                primary_lock: primary.clone(),
                start_version: start,
                lock_ttl: 300,
            })
            .await
            .unwrap();
        if !r.errors.is_empty() {
            // A writer holds the key, or wrote it since: this attempt dies here (what it locked
            // is rolled back by the next reader: its primary never commits).
            return None;
        }
    }
    if commit_primary {
        let commit = client.timestamp().await.unwrap();
        let r = client
            .send_commit(CommitRequest {
                context: None,
                start_version: start,
                keys: vec![primary],
                commit_version: commit,
            })
            .await
            .unwrap();
        assert!(r.error.is_none(), "{r:?}");
    }
    Some(start)
}

/// [`die_mid_commit`] until one attempt prewrote both keys; its start timestamp.
async fn die_mid_commit_surely(client: &TxnClient, a: u64, b: u64, n: i64, commit: bool) -> u64 {
    loop {
        if let Some(start) = die_mid_commit(client, a, b, n, commit).await {
            return start;
        }
    }
}

/// Every account of one snapshot: they must all be there and add up.
async fn audit(client: &TxnClient) -> Result<BTreeMap<u64, i64>, TxnClientError> {
    let t = client.begin().await?;
    let pairs = t
        .scan(&account(0), &account(ACCOUNTS), ACCOUNTS as usize + 1)
        .await?;
    let balances: BTreeMap<u64, i64> = pairs
        .iter()
        .map(|(k, v)| {
            let i: u64 = String::from_utf8_lossy(&k[7..11]).parse().unwrap();
            (i, amount(v))
        })
        .collect();
    assert_eq!(
        balances.len() as u64,
        ACCOUNTS,
        "a snapshot lost accounts: {balances:?}"
    );
    let total: i64 = balances.values().sum();
    assert_eq!(
        total,
        ACCOUNTS as i64 * INITIAL,
        "a snapshot at {} saw part of a transfer: {balances:?}",
        t.start_ts()
    );
    Ok(balances)
}

#[test]
fn test_bank_transfers_survive_crashed_clients_and_stores() {
    let root = tempfile::tempdir().unwrap();
    let sched = start_scheduler(&root.path().join("scheduler"));
    let addr = sched.addr().to_string();
    let mut procs = start_scheduled_stores(root.path(), &addr, "");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = TxnClient::new(addr.clone(), TIMEOUT).unwrap();
    let dying = TxnClient::new(addr.clone(), TIMEOUT).unwrap();
    rt.block_on(async {
        let mut t = client.begin().await.unwrap();
        for i in 0..ACCOUNTS {
            t.put(account(i), stored(INITIAL));
        }
        t.commit().await.unwrap();
    });

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let audits = Arc::new(AtomicU64::new(0));
    let reader = {
        let (client, stop, audits) = (client.clone(), stop.clone(), audits.clone());
        rt.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A store down longer than the timeout fails an audit; that is no wrong answer.
                if audit(&client).await.is_ok() {
                    audits.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let spawn_writer = |seed: u64| {
        let inflight = Arc::new(Mutex::new(None));
        let task = rt.spawn(writer(
            client.clone(),
            seed,
            ledger.clone(),
            inflight.clone(),
            stop.clone(),
        ));
        (task, inflight)
    };
    let mut writers: Vec<_> = (0..WRITERS as u64).map(spawn_writer).collect();
    let mut next_seed = WRITERS as u64;
    let mut killed_writers = 0;
    let mut dead_clients = Vec::new();
    let start = Instant::now();
    let mut store_kills = 0;
    let mut step = 0;
    while start.elapsed() < RUN {
        std::thread::sleep(Duration::from_millis(700));
        step += 1;
        // A writer killed wherever it is; its transfer in flight, if any, is asked about later.
        let victim = step % WRITERS;
        let (task, inflight) = std::mem::replace(&mut writers[victim], spawn_writer(next_seed));
        next_seed += 1;
        task.abort();
        // Stopped for good (an abort takes effect at the task's next await): what it had in
        // flight is what it left behind.
        let _ = rt.block_on(task);
        if let Some(t) = inflight.lock().unwrap().take() {
            ledger.lock().unwrap().unknown.push(t);
        }
        killed_writers += 1;
        match step {
            4 => dead_clients.push(rt.block_on(die_mid_commit_surely(&dying, 1, 2, 7, false))),
            6 => dead_clients.push(rt.block_on(die_mid_commit_surely(&dying, 3, 4, 11, true))),
            // Store 0 is down from step 7 to 11, store 1 from 17 to 21.
            7 | 17 => {
                procs[usize::from(step > 14)].kill();
                store_kills += 1;
            }
            11 | 21 => procs[usize::from(step > 14)].start(),
            _ => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    for (task, _) in writers {
        rt.block_on(task).unwrap();
    }
    rt.block_on(reader).unwrap();
    for p in &mut procs {
        if !p.running() {
            p.start();
        }
    }

    // The interrupted transfers: their primaries decide.
    let (mut committed, conflicts, unknown) = {
        let l = ledger.lock().unwrap();
        (l.committed.clone(), l.conflicts, l.unknown.clone())
    };
    let acknowledged = committed.len();
    let (mut late_commits, mut rolled_back) = (0, 0);
    rt.block_on(async {
        for (start_ts, (a, b, n)) in &unknown {
            let primary = account(*a).min(account(*b));
            let status = loop {
                match client.txn_status(&primary, *start_ts).await.unwrap() {
                    // The lock of a killed writer expires within its TTL.
                    TxnStatus::Locked(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    s => break s,
                }
            };
            match status {
                TxnStatus::Committed(_) => {
                    committed.push((*a, *b, *n));
                    late_commits += 1;
                }
                _ => rolled_back += 1,
            }
        }
    });
    // The dying client that committed its primary moved 11 from 3 to 4; the other moved nothing.
    committed.push((3, 4, 11));
    let mut expected: HashMap<u64, i64> = (0..ACCOUNTS).map(|i| (i, INITIAL)).collect();
    for (a, b, n) in &committed {
        *expected.get_mut(a).unwrap() -= n;
        *expected.get_mut(b).unwrap() += n;
    }
    let fin = rt.block_on(audit(&client)).unwrap();
    for i in 0..ACCOUNTS {
        assert_eq!(
            fin[&i], expected[&i],
            "account {i}: what the committed transfers make it (all: {fin:?})"
        );
    }
    let stats = client.stats();
    let dying_stats = dying.stats();
    eprintln!(
        "{acknowledged} transfers acknowledged, {late_commits} more committed by their primary \
         after their writer died, {rolled_back} rolled back; {conflicts} conflicts; \
         {killed_writers} writers killed, {} clients died mid-commit, {store_kills} stores \
         SIGKILLed; {} audits; locks resolved: {} committed, {} rolled back; {} lock waits",
        dead_clients.len(),
        audits.load(Ordering::Relaxed),
        stats.resolved_committed.load(Ordering::Relaxed)
            + dying_stats.resolved_committed.load(Ordering::Relaxed),
        stats.resolved_rolled_back.load(Ordering::Relaxed)
            + dying_stats.resolved_rolled_back.load(Ordering::Relaxed),
        stats.lock_waits.load(Ordering::Relaxed),
    );
    assert!(acknowledged > 20, "the cluster kept committing transfers");
    assert!(
        audits.load(Ordering::Relaxed) > 5,
        "snapshots of every account were taken throughout"
    );
    assert!(
        stats.resolved() >= 2,
        "the dead clients' locks were resolved by the others"
    );
}
