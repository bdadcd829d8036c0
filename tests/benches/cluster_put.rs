//! Cluster put benchmark (issue "raftstore 2B"): numbers, not pass/fail.
//!
//! A 3-store cluster on the threaded runtime (`raftstore::runtime`), each store with its kv and
//! raft engines on RocksDB in a temp directory, one region replicated on all three stores, an
//! in-process transport over the stores' crossbeam mailboxes, and a scheduler that learns the
//! leader from region heartbeats. `P` proposer threads each loop: one Put of a distinct key with a
//! `V`-byte value, sent to the leader's mailbox, waiting for the applied response (timeout 5 s),
//! following NotLeader hints. Every proposer count runs on a fresh cluster.
//!
//! Reported per proposer count, over the measured window (after a warm-up):
//! - puts/s, and p50/p99/max latency of a put (first send to applied response, retries included);
//! - raft-engine fsyncs per second on the leader's store, and puts per leader fsync (how well the
//!   store's group commit batches concurrent proposals: one synced raft write per poll round);
//! - raft-engine fsyncs per second summed over the three stores, and kv-engine fsyncs.
//!
//! Fsyncs are counted by `RocksEngine::sync_count` (synced writes plus explicit syncs).
//!
//! Run: `cargo bench -p test_raftstore --bench cluster_put [-- OPTIONS]`, options (or environment):
//! - `--proposers 1,64` (`CLUSTER_PUT_PROPOSERS`): proposer counts to run, comma-separated;
//! - `--seconds 10` (`CLUSTER_PUT_SECONDS`): measured seconds per run;
//! - `--value-size 256` (`CLUSTER_PUT_VALUE_SIZE`): bytes per value;
//! - `--warmup 1` (`CLUSTER_PUT_WARMUP`): seconds of load before measuring.
//!
//! `TINYKV_LOG=info` (or another level) shows the stores' logs on stderr.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use proto::metapb::{Peer, Region};
use raftstore::bootstrap::{bootstrap_store, first_region, prepare_bootstrap_region};
use raftstore::engine::rocks::RocksEngine;
use raftstore::engine::{Engine, Engines, ALL_CFS, CF_DEFAULT};
use raftstore::runtime::{start_store_with_mailbox, StoreHandle, StoreMsg};
use raftstore::snap::SnapManager;
use raftstore::{CmdResponse, Config};
use test_raftstore::cluster::{new_put_cf_cmd, new_request};
use test_raftstore::scheduler::MockScheduler;
use test_raftstore::threaded::{ChannelTransport, Endpoint, Router, SchedulerHandle};

const STORES: u64 = 3;
const REGION_ID: u64 = 1;
/// How long a proposer waits for one response before trying again.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the cluster may take to elect its first leader.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);

type RocksEngines = Engines<RocksEngine, RocksEngine>;

/// What the benchmark runs.
#[derive(Clone, Debug)]
struct Options {
    proposers: Vec<usize>,
    seconds: f64,
    value_size: usize,
    warmup: f64,
}

impl Options {
    fn parse() -> Options {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut proposers = env("CLUSTER_PUT_PROPOSERS").unwrap_or_else(|| "1,64".into());
        let mut seconds = env("CLUSTER_PUT_SECONDS").unwrap_or_else(|| "10".into());
        let mut value_size = env("CLUSTER_PUT_VALUE_SIZE").unwrap_or_else(|| "256".into());
        let mut warmup = env("CLUSTER_PUT_WARMUP").unwrap_or_else(|| "1".into());
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            let slot = match name.as_str() {
                "--proposers" | "-p" => &mut proposers,
                "--seconds" | "-s" => &mut seconds,
                "--value-size" | "-v" => &mut value_size,
                "--warmup" | "-w" => &mut warmup,
                // `cargo bench` passes `--bench` to every bench target.
                "--bench" => continue,
                "--help" | "-h" => {
                    println!(
                        "usage: cluster_put [--proposers 1,64] [--seconds 10] \
                         [--value-size 256] [--warmup 1]"
                    );
                    std::process::exit(0);
                }
                _ => {
                    eprintln!("cluster_put: ignoring unknown argument {arg:?}");
                    continue;
                }
            };
            match inline.or_else(|| args.next()) {
                Some(v) => *slot = v,
                None => fail(&format!("{name} needs a value")),
            }
        }
        let proposers: Vec<usize> = proposers
            .split(',')
            .map(|p| match p.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => fail(&format!("bad proposer count {p:?}")),
            })
            .collect();
        let number = |what: &str, v: &str| match v.parse::<f64>() {
            Ok(x) if x >= 0.0 && x.is_finite() => x,
            _ => fail(&format!("bad {what} {v:?}")),
        };
        let seconds = number("seconds", &seconds);
        if seconds <= 0.0 {
            fail("seconds must be positive");
        }
        Options {
            proposers,
            seconds,
            value_size: value_size
                .parse()
                .unwrap_or_else(|_| fail(&format!("bad value size {value_size:?}"))),
            warmup: number("warmup", &warmup),
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("cluster_put: {msg}");
    std::process::exit(2)
}

/// A running 3-store cluster.
struct BenchCluster {
    engines: BTreeMap<u64, RocksEngines>,
    handles: BTreeMap<u64, StoreHandle>,
    senders: BTreeMap<u64, Sender<StoreMsg>>,
    router: Router,
    scheduler: Arc<Mutex<MockScheduler>>,
    region: Region,
}

impl BenchCluster {
    fn start(dir: &Path, logger: &slog::Logger) -> BenchCluster {
        let ids: Vec<u64> = (1..=STORES).collect();
        let region = first_region(REGION_ID, &ids);
        let router: Router = Arc::new(RwLock::new(BTreeMap::new()));
        let scheduler = Arc::new(Mutex::new(MockScheduler::new(
            vec![region.clone()],
            STORES + 1,
        )));
        let mut engines = BTreeMap::new();
        let mut mailboxes = BTreeMap::new();
        for &id in &ids {
            let base = dir.join(format!("store-{id}"));
            let kv = RocksEngine::open(base.join("kv"), &ALL_CFS).expect("open kv engine");
            let raft =
                RocksEngine::open(base.join("raft"), &[CF_DEFAULT]).expect("open raft engine");
            let e = Engines::new(kv, raft);
            bootstrap_store(&e, 0, id).expect("bootstrap store");
            prepare_bootstrap_region(&e, &region).expect("bootstrap region");
            engines.insert(id, e);
            let (tx, rx) = crossbeam_channel::unbounded();
            let snap_mgr = SnapManager::new(base.join("snap")).expect("snap dir");
            router.write().unwrap().insert(
                id,
                Endpoint {
                    mailbox: tx.clone(),
                    snap_mgr: snap_mgr.clone(),
                },
            );
            mailboxes.insert(id, (tx, rx, snap_mgr));
        }
        let mut handles = BTreeMap::new();
        let mut senders = BTreeMap::new();
        for (id, (tx, rx, snap_mgr)) in mailboxes {
            let handle = start_store_with_mailbox(
                Config::default(),
                engines[&id].clone(),
                snap_mgr,
                // No filters: every message is delivered.
                ChannelTransport::new(router.clone(), Default::default(), id),
                SchedulerHandle::new(scheduler.clone(), router.clone()),
                logger,
                tx.clone(),
                rx,
            )
            .unwrap_or_else(|e| panic!("store {id} cannot start: {e}"));
            handles.insert(id, handle);
            senders.insert(id, tx);
        }
        BenchCluster {
            engines,
            handles,
            senders,
            router,
            scheduler,
            region,
        }
    }

    fn leader(&self) -> Option<Peer> {
        self.scheduler.lock().unwrap().leader_of(REGION_ID)
    }

    fn wait_leader(&self) -> Peer {
        let deadline = Instant::now() + ELECTION_TIMEOUT;
        loop {
            if let Some(p) = self.leader() {
                return p;
            }
            if Instant::now() > deadline {
                panic!("no leader elected in {ELECTION_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Raft-engine and kv-engine sync counts of every store.
    fn sync_counts(&self) -> BTreeMap<u64, (u64, u64)> {
        self.engines
            .iter()
            .map(|(&id, e)| (id, (e.raft.sync_count(), e.kv.sync_count())))
            .collect()
    }

    fn stop(mut self) {
        self.router.write().unwrap().clear();
        for (_, h) in std::mem::take(&mut self.handles) {
            h.stop();
        }
    }
}

/// What one proposer saw.
#[derive(Default)]
struct ProposerResult {
    /// (completion time since the run's start, latency) of every successful put.
    done: Vec<(Duration, Duration)>,
    /// Attempts answered with NotLeader.
    not_leader: u64,
    /// Attempts that got no answer within `REQUEST_TIMEOUT`.
    timeouts: u64,
    /// Attempts answered with another error.
    errors: u64,
    /// The last key put, for a sanity check.
    last_key: Option<Vec<u8>>,
}

struct Shared {
    senders: BTreeMap<u64, Sender<StoreMsg>>,
    region: Region,
    scheduler: Arc<Mutex<MockScheduler>>,
    /// The leader's store id as the proposers last learned it.
    leader: AtomicU64,
    stop: AtomicBool,
    start: Instant,
    value: Vec<u8>,
}

fn proposer(shared: &Shared, idx: usize) -> ProposerResult {
    let mut res = ProposerResult::default();
    let mut seq = 0u64;
    let mut rotate = 0usize;
    while !shared.stop.load(Ordering::Relaxed) {
        let key = format!("k{idx:04}-{seq:012}").into_bytes();
        let first_sent = Instant::now();
        // Retries of this key until it is applied (or the run ends).
        while !shared.stop.load(Ordering::Relaxed) {
            let leader_id = shared.leader.load(Ordering::Relaxed);
            let peer = shared
                .region
                .peers
                .iter()
                .find(|p| p.store_id == leader_id)
                .copied()
                .unwrap_or(shared.region.peers[0]);
            let req = new_request(
                &shared.region,
                Some(peer),
                vec![new_put_cf_cmd(CF_DEFAULT, &key, &shared.value)],
            );
            let (tx, rx) = crossbeam_channel::bounded::<CmdResponse>(1);
            let cb = Box::new(move |r: CmdResponse| {
                let _ = tx.send(r);
            });
            if shared.senders[&peer.store_id]
                .send(StoreMsg::Command(req, cb))
                .is_err()
            {
                return res;
            }
            let resp = match rx.recv_timeout(REQUEST_TIMEOUT) {
                Ok(resp) => resp,
                Err(_) => {
                    res.timeouts += 1;
                    // Ask the scheduler, or else try the next store.
                    let next = shared
                        .scheduler
                        .lock()
                        .unwrap()
                        .leader_of(REGION_ID)
                        .map(|p| p.store_id)
                        .filter(|&s| s != peer.store_id)
                        .unwrap_or_else(|| {
                            rotate += 1;
                            shared.region.peers[rotate % shared.region.peers.len()].store_id
                        });
                    shared.leader.store(next, Ordering::Relaxed);
                    continue;
                }
            };
            let Some(err) = resp.region_error() else {
                res.done
                    .push((shared.start.elapsed(), first_sent.elapsed()));
                res.last_key = Some(key);
                break;
            };
            if let Some(nl) = &err.not_leader {
                res.not_leader += 1;
                match &nl.leader {
                    Some(l) => shared.leader.store(l.store_id, Ordering::Relaxed),
                    None => thread::sleep(Duration::from_millis(10)),
                }
            } else {
                // StaleCommand (a leader change overtook the proposal) or anything else: retry.
                res.errors += 1;
                thread::sleep(Duration::from_millis(1));
            }
        }
        seq += 1;
    }
    res
}

/// The figures of one run.
struct Report {
    proposers: usize,
    secs: f64,
    puts: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    leader: u64,
    leader_changed: bool,
    /// Raft-engine syncs in the window, by store.
    raft_syncs: BTreeMap<u64, u64>,
    kv_syncs: u64,
    not_leader: u64,
    timeouts: u64,
    errors: u64,
}

fn run(opts: &Options, proposers: usize, logger: &slog::Logger) -> Report {
    let dir = tempfile::Builder::new()
        .prefix("cluster-put")
        .tempdir()
        .expect("temp dir");
    let cluster = BenchCluster::start(dir.path(), logger);
    let leader = cluster.wait_leader();
    let shared = Arc::new(Shared {
        senders: cluster.senders.clone(),
        region: cluster.region.clone(),
        scheduler: cluster.scheduler.clone(),
        leader: AtomicU64::new(leader.store_id),
        stop: AtomicBool::new(false),
        start: Instant::now(),
        value: vec![b'v'; opts.value_size],
    });
    let threads: Vec<_> = (0..proposers)
        .map(|i| {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("proposer-{i}"))
                .spawn(move || proposer(&shared, i))
                .expect("spawn proposer")
        })
        .collect();

    thread::sleep(Duration::from_secs_f64(opts.warmup));
    let leader_before = cluster.leader();
    let syncs_before = cluster.sync_counts();
    let from = shared.start.elapsed();
    thread::sleep(Duration::from_secs_f64(opts.seconds));
    let syncs_after = cluster.sync_counts();
    let to = shared.start.elapsed();
    let leader_after = cluster.leader();
    shared.stop.store(true, Ordering::Relaxed);
    let results: Vec<ProposerResult> = threads
        .into_iter()
        .map(|t| t.join().expect("proposer panicked"))
        .collect();

    // Sanity: the last put of each proposer is in the leader's kv engine.
    let leader_id = leader_after
        .as_ref()
        .map_or(leader.store_id, |p| p.store_id);
    for r in &results {
        if let Some(k) = &r.last_key {
            let v = cluster.engines[&leader_id]
                .kv
                .get_cf(CF_DEFAULT, k)
                .expect("kv read");
            assert_eq!(
                v.as_deref(),
                Some(shared.value.as_slice()),
                "an applied put is missing"
            );
        }
    }
    cluster.stop();

    let mut lat: Vec<Duration> = results
        .iter()
        .flat_map(|r| r.done.iter())
        .filter(|(at, _)| *at >= from && *at < to)
        .map(|(_, l)| *l)
        .collect();
    lat.sort_unstable();
    let pct = |p: f64| -> Duration {
        if lat.is_empty() {
            return Duration::ZERO;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i]
    };
    let raft_syncs = syncs_after
        .iter()
        .map(|(id, (r, _))| (*id, r - syncs_before[id].0))
        .collect();
    let kv_syncs = syncs_after
        .iter()
        .map(|(id, (_, k))| k - syncs_before[id].1)
        .sum();
    Report {
        proposers,
        secs: (to - from).as_secs_f64(),
        puts: lat.len(),
        p50: pct(0.50),
        p99: pct(0.99),
        max: lat.last().copied().unwrap_or_default(),
        leader: leader_id,
        leader_changed: leader_before.map(|p| p.store_id) != Some(leader_id),
        raft_syncs,
        kv_syncs,
        not_leader: results.iter().map(|r| r.not_leader).sum(),
        timeouts: results.iter().map(|r| r.timeouts).sum(),
        errors: results.iter().map(|r| r.errors).sum(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let opts = Options::parse();
    let logger = raft::default_logger();
    println!(
        "cluster_put: {STORES} stores on the threaded runtime, RocksDB in {}, one region, \
         value {} B, {} s measured after {} s warm-up",
        std::env::temp_dir().display(),
        opts.value_size,
        opts.seconds,
        opts.warmup
    );
    let mut reports = Vec::new();
    for &p in &opts.proposers {
        println!("running {p} proposer(s)...");
        let r = run(&opts, p, &logger);
        let per_store: Vec<String> = r
            .raft_syncs
            .iter()
            .map(|(id, n)| format!("store {id}: {n}"))
            .collect();
        println!(
            "  {} puts in {:.2} s; leader store {}{}; raft fsyncs {}; kv fsyncs {}; \
             retries: {} not-leader, {} timeouts, {} other errors",
            r.puts,
            r.secs,
            r.leader,
            if r.leader_changed {
                " (the leader changed during the window)"
            } else {
                ""
            },
            per_store.join(", "),
            r.kv_syncs,
            r.not_leader,
            r.timeouts,
            r.errors
        );
        reports.push(r);
    }
    println!();
    println!(
        "| proposers |   puts/s | p50 ms | p99 ms | max ms | leader fsyncs/s | puts/leader fsync \
         | raft fsyncs/s (all stores) | kv fsyncs/s |"
    );
    println!(
        "|----------:|---------:|-------:|-------:|-------:|----------------:|------------------:\
         |---------------------------:|------------:|"
    );
    for r in &reports {
        let leader_syncs = r.raft_syncs.get(&r.leader).copied().unwrap_or(0);
        let all_syncs: u64 = r.raft_syncs.values().sum();
        let per_fsync = if leader_syncs == 0 {
            0.0
        } else {
            r.puts as f64 / leader_syncs as f64
        };
        println!(
            "| {:>9} | {:>8.0} | {:>6.2} | {:>6.2} | {:>6.2} | {:>15.0} | {:>17.1} | {:>26.0} | {:>11.1} |",
            r.proposers,
            r.puts as f64 / r.secs,
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            leader_syncs as f64 / r.secs,
            per_fsync,
            all_syncs as f64 / r.secs,
            r.kv_syncs as f64 / r.secs,
        );
    }
}
