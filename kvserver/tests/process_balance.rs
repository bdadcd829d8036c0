//! Scheduling, as processes: `tinykv-server --scheduler` stores (real RocksDB in temp dirs) with
//! small regions, a scheduler, and clients routing by region, while writers keep writing and every
//! acknowledged write is recorded and read back at the end.
//!
//! - A fourth store joins three: balance-region and balance-leader move peers and leaders to it
//!   until its region and leader counts are within the scheduler's own tolerance of the others'
//!   (see [`balanced_with`] for what "even" can mean under those rules); the time it took is
//!   printed.
//! - A store of four is SIGKILLed: once it has been silent past `max-store-down-time`, the replica
//!   checker replaces its peers (taking over from balance moves towards it), and every region is
//!   back to three peers on live stores.
//! - The scheduler process is SIGKILLed: the stores keep serving the regions they have (a client
//!   whose region cache is warm keeps writing to every region), and after a restart on the same
//!   data dir and port neither ids (AllocID) nor timestamps (the Tso stream) repeat or go back;
//!   splits resume with ids from the restarted scheduler.
//!
//! The bounds are waits that fail with what they measured, never timing assertions. The tests of
//! this file run one at a time (each starts three or four stores, and the machine may be small).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{free_addrs, ServerProc, SERVER};
use kvserver::client::Client;
use kvserver::region_cache::SchedulerSource;
use proto::metapb::{Peer, Region, Store};
use proto::schedulerpb::{AllocIdRequest, GetMembersRequest, RequestHeader, TsoRequest};
use rand::{Rng, SeedableRng};
use scheduler::core::EMPTY_REGION_APPROXIMATE_SIZE;
use scheduler::schedule::ScheduleConfig;
use scheduler::schedulerpb::scheduler_client::SchedulerClient;
use scheduler::server::{RunningScheduler, ServerConfig as SchedulerConfig};
use tokio::runtime::Runtime;

/// The longest wait for the cluster to settle by itself (registration, splits, replication).
const PATIENCE: Duration = Duration::from_secs(120);

/// The longest a client call retries.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Tests of this file take turns (see the module comment).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A temp dir for a test's processes, kept (and named on stderr) if the test fails, so that the
/// stores' and the scheduler's logs can be read.
struct TestDir(Option<tempfile::TempDir>);

impl TestDir {
    fn new() -> TestDir {
        TestDir(Some(tempfile::tempdir().unwrap()))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let kept = self.0.take().unwrap().keep();
            eprintln!(
                "the test's data dirs and logs are kept in {}",
                kept.display()
            );
        }
    }
}

/// A logger writing one line per event (info and above) to `path`: the in-process scheduler's
/// log, kept with the stores' when a test fails.
fn file_logger(path: &Path) -> slog::Logger {
    use slog::Drain;
    struct FileDrain(Mutex<std::fs::File>);
    struct Line<'a>(&'a mut String);
    impl slog::Serializer for Line<'_> {
        fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
            use std::fmt::Write;
            let _ = write!(self.0, ", {key}: {val}");
            Ok(())
        }
    }
    impl slog::Drain for FileDrain {
        type Ok = ();
        type Err = slog::Never;
        fn log(&self, r: &slog::Record, kv: &slog::OwnedKVList) -> Result<(), slog::Never> {
            use std::io::Write;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let (secs, ms) = (now.as_secs() % 86_400, now.subsec_millis());
            let mut line = format!(
                "{:02}:{:02}:{:02}.{ms:03} UTC {} {}",
                secs / 3600,
                secs / 60 % 60,
                secs % 60,
                r.level().as_short_str(),
                r.msg()
            );
            let _ = slog::KV::serialize(&r.kv(), r, &mut Line(&mut line));
            let _ = slog::KV::serialize(kv, r, &mut Line(&mut line));
            let _ = writeln!(self.0.lock().unwrap(), "{line}");
            Ok(())
        }
    }
    let file = std::fs::File::create(path).expect("create the scheduler's log");
    let drain = FileDrain(Mutex::new(file))
        .filter_level(slog::Level::Info)
        .fuse();
    slog::Logger::root(drain, slog::o!())
}

/// The preloaded key `i`.
fn key(i: usize) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

/// A value of `len` bytes naming `tag`.
fn value(tag: &str, len: usize) -> Vec<u8> {
    let mut v = tag.as_bytes().to_vec();
    v.resize(len.max(v.len()), b'.');
    v
}

/// A store config: fast ticks and heartbeats, regions split past 64 KiB.
fn store_config(root: &Path) -> String {
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

fn start_stores(root: &Path, n: usize, scheduler: &str, config: &str) -> Vec<ServerProc> {
    let mut procs: Vec<ServerProc> = free_addrs(n)
        .iter()
        .enumerate()
        .map(|(i, a)| store(a, &root.join(format!("store-{i}")), scheduler, config))
        .collect();
    for p in &mut procs {
        p.start();
    }
    procs
}

fn start_scheduler(dir: &Path, schedule: ScheduleConfig) -> RunningScheduler {
    RunningScheduler::start(
        SchedulerConfig {
            addr: "127.0.0.1:0".into(),
            data_dir: dir.to_path_buf(),
            schedule,
            ..Default::default()
        },
        file_logger(&dir.with_extension("log")),
    )
    .expect("start a scheduler")
}

/// Polls `check` every 250 ms until it returns Ok; after `patience` panics with `what` and the
/// last thing `check` measured. Returns the value and how long it took.
fn wait_until<T>(
    what: &str,
    patience: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        let last = match check() {
            Ok(v) => return (v, start.elapsed()),
            Err(m) => m,
        };
        assert!(
            start.elapsed() < patience,
            "gave up after {patience:?} waiting for {what}; last measured: {last}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

// ---------------------------------------------------------------------------------------------
// The scheduler's picture of the cluster.

/// Stores and regions (with their leaders) as the scheduler has them.
struct Picture {
    stores: Vec<Store>,
    regions: Vec<(Region, Option<Peer>)>,
}

impl Picture {
    fn take(rt: &Runtime, source: &SchedulerSource) -> Result<Picture, String> {
        let stores = rt
            .block_on(source.all_stores())
            .map_err(|e| format!("GetAllStores: {e}"))?;
        let regions = rt
            .block_on(source.all_regions())
            .map_err(|e| format!("ScanRegions: {e}"))?;
        Ok(Picture { stores, regions })
    }

    /// Regions and leaders per store (every registered store, 0 for none).
    fn per_store(&self) -> BTreeMap<u64, (usize, usize)> {
        let mut counts: BTreeMap<u64, (usize, usize)> =
            self.stores.iter().map(|s| (s.id, (0, 0))).collect();
        for (region, leader) in &self.regions {
            for p in &region.peers {
                counts.entry(p.store_id).or_default().0 += 1;
            }
            if let Some(l) = leader {
                counts.entry(l.store_id).or_default().1 += 1;
            }
        }
        counts
    }

    /// One line: the region count and each store's regions and leaders.
    fn table(&self) -> String {
        let per: Vec<String> = self
            .per_store()
            .iter()
            .map(|(id, (r, l))| format!("store {id}: {r} regions, {l} leaders"))
            .collect();
        format!("{} regions; {}", self.regions.len(), per.join("; "))
    }

    /// The id of the store at `addr`.
    fn store_id(&self, addr: &str) -> Option<u64> {
        self.stores.iter().find(|s| s.address == addr).map(|s| s.id)
    }

    /// Ok if the regions tile the key space, in order, without gaps.
    fn tiles(&self) -> Result<(), String> {
        let r = &self.regions;
        if r.is_empty() {
            return Err("no regions".into());
        }
        if !r[0].0.start_key.is_empty() || !r.last().unwrap().0.end_key.is_empty() {
            return Err(format!(
                "the regions do not span the key space: {}",
                self.table()
            ));
        }
        for w in r.windows(2) {
            if w[0].0.end_key != w[1].0.start_key {
                return Err(format!(
                    "a gap or an overlap between regions {} and {}",
                    w[0].0.id, w[1].0.id
                ));
            }
        }
        Ok(())
    }

    /// Ok if every region has exactly `n` peers, each on a store of `live`, and a leader among
    /// them.
    fn all_replicated_on(&self, n: usize, live: &BTreeSet<u64>) -> Result<(), String> {
        self.tiles()?;
        for (region, leader) in &self.regions {
            let stores: Vec<u64> = region.peers.iter().map(|p| p.store_id).collect();
            if stores.len() != n || !stores.iter().all(|s| live.contains(s)) {
                return Err(format!(
                    "region {} has peers on stores {stores:?} (want {n} of {live:?}); {}",
                    region.id,
                    self.table()
                ));
            }
            match leader {
                Some(l) if stores.contains(&l.store_id) => {}
                _ => {
                    return Err(format!(
                        "region {} has no known leader among its peers ({leader:?})",
                        region.id
                    ))
                }
            }
        }
        Ok(())
    }
}

/// The index in `regions` (sorted, tiling) of the region holding `key`.
fn region_of(regions: &[(Region, Option<Peer>)], key: &[u8]) -> usize {
    let i = regions.partition_point(|(r, _)| r.start_key.as_slice() <= key);
    i.checked_sub(1)
        .expect("the first region starts at the empty key")
}

// ---------------------------------------------------------------------------------------------
// Writes.

/// Writes `keys` (with values of `len` bytes) through `client`, 16 at a time; every one must be
/// acknowledged. Returns what was written.
fn load(
    rt: &Runtime,
    client: &Client,
    keys: std::ops::Range<usize>,
    len: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    rt.block_on(async {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(keys.start));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (client, next, end) = (client.clone(), next.clone(), keys.end);
            tasks.push(tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        return done;
                    }
                    let (k, v) = (key(i), value(&format!("value{i:05}-"), len));
                    if let Err(e) = client.put("", &k, &v).await {
                        panic!("preload put of key {i}: {e}");
                    }
                    done.push((k, v));
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("a preload task"));
        }
        all
    })
}

/// A writer's keys: the key of its `seq`-th write (from 1).
type KeyGen = Box<dyn FnMut(u64) -> Vec<u8> + Send>;

/// One acknowledged write: what, and when it was sent and answered.
struct Ack {
    key: Vec<u8>,
    value: Vec<u8>,
    sent: Instant,
    done: Instant,
}

/// Writers looping until stopped, each writing fresh keys (`key{i}-{tag}{w}-{seq}`, `i` a random
/// preloaded key, so the writes land in every region) with small values, recording every
/// acknowledged write and every failed one.
struct Writers {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    errors: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(rt: &Runtime, client: &Client, n: usize, spread: usize, tag: &str) -> Writers {
        let keys = (0..n)
            .map(|w| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64 + 7);
                let tag = format!("{tag}{w}");
                Box::new(move |seq: u64| {
                    let i = rng.random_range(0..spread);
                    format!("key{i:05}-{tag}-{seq:06}").into_bytes()
                }) as KeyGen
            })
            .collect();
        Writers::spawn(rt, client, keys, tag)
    }

    /// One writer per region of `regions`, each writing fresh keys just past its region's start
    /// key (`start_key ++ 0x00 ++ {tag}-{seq}`, inside the region), so that every one of them is
    /// written whatever the others' luck.
    fn per_region(
        rt: &Runtime,
        client: &Client,
        regions: &[(Region, Option<Peer>)],
        tag: &str,
    ) -> Writers {
        let keys = regions
            .iter()
            .enumerate()
            .map(|(i, (r, _))| {
                let start = r.start_key.clone();
                let tag = format!("{tag}{i}");
                let probe = move |seq: u64| {
                    let mut k = start.clone();
                    k.push(0);
                    k.extend_from_slice(format!("{tag}-{seq:06}").as_bytes());
                    k
                };
                assert_eq!(
                    region_of(regions, &probe(0)),
                    i,
                    "a probe key in region {}",
                    r.id
                );
                Box::new(probe) as KeyGen
            })
            .collect();
        Writers::spawn(rt, client, keys, tag)
    }

    /// A writer task per key generator: puts its keys one after another (25 ms apart) until
    /// stopped.
    fn spawn(rt: &Runtime, client: &Client, keys: Vec<KeyGen>, tag: &str) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let tasks = keys
            .into_iter()
            .enumerate()
            .map(|(w, mut key)| {
                let (client, stop, acks, errors) =
                    (client.clone(), stop.clone(), acks.clone(), errors.clone());
                let tag = format!("{tag}{w}");
                rt.spawn(async move {
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        seq += 1;
                        let k = key(seq);
                        let v = value(&format!("{tag}-{seq}-"), 32);
                        let sent = Instant::now();
                        match client.put("", &k, &v).await {
                            Ok(()) => acks.lock().unwrap().push(Ack {
                                key: k,
                                value: v,
                                sent,
                                done: Instant::now(),
                            }),
                            Err(e) => errors.lock().unwrap().push(format!(
                                "put {} after {:?}: {e}",
                                String::from_utf8_lossy(&k),
                                sent.elapsed()
                            )),
                        }
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                })
            })
            .collect();
        Writers {
            stop,
            acks,
            errors,
            tasks,
        }
    }

    fn count(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    /// How many writes failed so far, and the first failure.
    fn failures(&self) -> String {
        let errors = self.errors.lock().unwrap();
        format!("{} failed, the first: {:?}", errors.len(), errors.first())
    }

    /// Waits until `more` writes beyond `from` are acknowledged.
    fn wait_for_more(&self, from: usize, more: usize, when: &str) {
        wait_until(
            &format!("{more} more acknowledged writes {when}"),
            PATIENCE,
            || {
                let n = self.count();
                if n >= from + more {
                    Ok(())
                } else {
                    Err(format!(
                        "{} of {more} acknowledged; {}",
                        n.saturating_sub(from),
                        self.failures()
                    ))
                }
            },
        );
    }

    /// Stops the writers; their acknowledged writes. Panics if any write failed (a client gives
    /// up only after [`CLIENT_TIMEOUT`] of retries: that long without service is a failure).
    fn stop(self, rt: &Runtime) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        let tasks = self.tasks;
        rt.block_on(async {
            for t in tasks {
                t.await.expect("a writer task");
            }
        });
        let errors = std::mem::take(&mut *self.errors.lock().unwrap());
        let acks = std::mem::take(&mut *self.acks.lock().unwrap());
        assert!(
            errors.is_empty(),
            "{} writes failed ({} acknowledged), the first: {:?}",
            errors.len(),
            acks.len(),
            &errors[..errors.len().min(3)]
        );
        acks
    }
}

/// Reads every pair of `acked` back through a fresh client (an empty region cache): all must be
/// there with their values.
fn assert_reads_back(rt: &Runtime, scheduler: &str, acked: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let client = Client::with_scheduler(scheduler.to_string(), CLIENT_TIMEOUT).unwrap();
    let pairs: Arc<Vec<(Vec<u8>, Vec<u8>)>> =
        Arc::new(acked.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let wrong: Vec<String> = rt.block_on(async {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (client, next, pairs) = (client.clone(), next.clone(), pairs.clone());
            tasks.push(tokio::spawn(async move {
                let mut wrong = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((k, v)) = pairs.get(i) else {
                        return wrong;
                    };
                    match client.get("", k).await {
                        Ok(Some(got)) if got == *v => {}
                        other => wrong.push(format!(
                            "{}: {:?}",
                            String::from_utf8_lossy(k),
                            other.map(|o| o.map(|g| String::from_utf8_lossy(&g).into_owned()))
                        )),
                    }
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("a reader task"));
        }
        all
    });
    assert!(
        wrong.is_empty(),
        "{} of {} acknowledged writes do not read back, e.g. {:?}",
        wrong.len(),
        acked.len(),
        &wrong[..wrong.len().min(5)]
    );
    eprintln!("all {} acknowledged writes read back", acked.len());
}

fn into_map(
    pre: Vec<(Vec<u8>, Vec<u8>)>,
    acks: impl IntoIterator<Item = Ack>,
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut m: BTreeMap<Vec<u8>, Vec<u8>> = pre.into_iter().collect();
    for a in acks {
        m.insert(a.key, a.value);
    }
    m
}

// ---------------------------------------------------------------------------------------------
// 1. A fourth store takes its share.

/// Whether the store `new` is even with the others, by the scheduler's own rules, with every
/// region at `replicas` peers (no move half done). Ok carries the figures; Err what is not even.
///
/// - balance-region moves a peer from a store to another only when their region sizes differ by
///   more than twice the region's size. Every region here is far below 1 MiB, and the scheduler
///   counts each as [`EMPTY_REGION_APPROXIMATE_SIZE`] (1 MiB), so a store's size is its region
///   count and a move needs a difference of at least 3 regions. With four stores and three
///   replicas, a region on the fullest store misses exactly one store; if the emptiest store
///   held 3 or more fewer regions than the fullest, some region of the fullest would miss it and
///   would be moved to it. So once balance-region has nothing left to do, every two stores are
///   within `2 * EMPTY_REGION_APPROXIMATE_SIZE` = 2 regions: that is "even" for regions, and the
///   new store holds at least `ceil(3N/4) - 2` of the `N` regions.
/// - balance-leader moves a leadership when the two stores' leader counts differ by at least
///   `2 * tolerant-size-ratio` (the test sets the ratio to 1: a difference of 2 moves one). A
///   move needs a region that one store leads and the other follows, which is not true of every
///   pair, so a difference of exactly the threshold may remain between two stores: "even" for
///   leaders is every difference with the new store at most `2 * tolerant-size-ratio`.
fn balanced_with(
    p: &Picture,
    new: u64,
    replicas: usize,
    leader_tolerance: usize,
) -> Result<String, String> {
    let live: BTreeSet<u64> = p.stores.iter().map(|s| s.id).collect();
    p.all_replicated_on(replicas, &live)?;
    let region_tolerance = 2 * EMPTY_REGION_APPROXIMATE_SIZE as usize;
    let per = p.per_store();
    let (nr, nl) = *per
        .get(&new)
        .ok_or_else(|| format!("store {new} unknown: {}", p.table()))?;
    for (&id, &(r, l)) in &per {
        if r.abs_diff(nr) > region_tolerance || l.abs_diff(nl) > leader_tolerance {
            return Err(format!(
                "store {id} ({r} regions, {l} leaders) vs the new store {new} ({nr}, {nl}) \
                 beyond {region_tolerance} regions / {leader_tolerance} leaders; {}",
                p.table()
            ));
        }
    }
    let n = p.regions.len();
    let floor = (3 * n).div_ceil(4).saturating_sub(region_tolerance);
    assert!(
        nr >= floor,
        "follows from the pairwise bound: {nr} >= {floor}"
    );
    Ok(p.table())
}

#[test]
fn test_fourth_store_takes_its_share() {
    let _turn = serial();
    let root = TestDir::new();
    let schedule = ScheduleConfig {
        tolerant_size_ratio: 1.0,
        ..Default::default()
    };
    let leader_tolerance = (2.0 * schedule.tolerant_size_ratio) as usize;
    let replicas = schedule.max_replicas;
    let sched = start_scheduler(&root.path().join("scheduler"), schedule);
    let sched_addr = sched.addr().to_string();
    let config = store_config(root.path());
    let mut procs = start_stores(root.path(), 3, &sched_addr, &config);
    let rt = Runtime::new().unwrap();
    let source = SchedulerSource::new(&sched_addr).unwrap();
    let client = Client::with_scheduler(sched_addr.clone(), CLIENT_TIMEOUT).unwrap();

    // About 800 KiB in regions of at most 64 KiB: a dozen regions or more, each on all three
    // stores.
    const PRELOAD: usize = 800;
    let pre = load(&rt, &client, 0..PRELOAD, 1024);
    let (before, _) = wait_until(
        "at least 12 regions, each on the three stores",
        PATIENCE,
        || {
            let p = Picture::take(&rt, &source)?;
            let live: BTreeSet<u64> = p.stores.iter().map(|s| s.id).collect();
            if live.len() != 3 || p.regions.len() < 12 {
                return Err(p.table());
            }
            p.all_replicated_on(replicas, &live)?;
            Ok(p)
        },
    );
    eprintln!("before the fourth store: {}", before.table());

    // Writes go on while regions move.
    let writers = Writers::start(&rt, &client, 4, PRELOAD, "w");
    writers.wait_for_more(0, 50, "before the fourth store");

    let addr = free_addrs(1).remove(0);
    let mut fourth = store(&addr, &root.path().join("store-3"), &sched_addr, &config);
    let joined = Instant::now();
    fourth.start();
    let (new_id, _) = wait_until("the fourth store registered", PATIENCE, || {
        let p = Picture::take(&rt, &source)?;
        p.store_id(&addr).ok_or_else(|| p.table())
    });
    let at_start = writers.count();
    let (after, _) = wait_until(
        "the fourth store to hold and lead its share of the regions",
        PATIENCE,
        || {
            let p = Picture::take(&rt, &source)?;
            balanced_with(&p, new_id, replicas, leader_tolerance)?;
            Ok(p)
        },
    );
    let took = joined.elapsed();
    eprintln!(
        "the fourth store (id {new_id}) evened out {took:.1?} after it started \
         (region tolerance {} regions, leader tolerance {leader_tolerance})",
        2 * EMPTY_REGION_APPROXIMATE_SIZE
    );
    eprintln!("after: {}", after.table());
    writers.wait_for_more(at_start, 50, "while regions moved");

    let acks = writers.stop(&rt);
    let during = acks.iter().filter(|a| a.done > joined).count();
    eprintln!(
        "{} writes acknowledged while the fourth store joined, {} in all",
        during,
        acks.len()
    );
    let acked = into_map(pre, acks);
    assert_reads_back(&rt, &sched_addr, &acked);
    // The moves did not strand anything: the picture is still whole.
    let last = Picture::take(&rt, &source).unwrap();
    eprintln!("at the end: {}", last.table());
    last.tiles().unwrap();

    fourth.terminate();
    for p in &mut procs {
        p.terminate();
    }
    sched.stop().expect("stop the scheduler");
}

// ---------------------------------------------------------------------------------------------
// 2. A dead store's replicas are replaced.

#[test]
fn test_dead_store_replicas_are_replaced() {
    let _turn = serial();
    let root = TestDir::new();
    // Stores heartbeat every 500 ms; 3 s of silence is six missed heartbeats.
    let schedule = ScheduleConfig {
        max_store_down_time: Duration::from_secs(3),
        max_replicas: 3,
        ..Default::default()
    };
    let replicas = schedule.max_replicas;
    let sched = start_scheduler(&root.path().join("scheduler"), schedule);
    let sched_addr = sched.addr().to_string();
    let config = store_config(root.path());
    let mut procs = start_stores(root.path(), 4, &sched_addr, &config);
    let rt = Runtime::new().unwrap();
    let source = SchedulerSource::new(&sched_addr).unwrap();
    let client = Client::with_scheduler(sched_addr.clone(), CLIENT_TIMEOUT).unwrap();

    const PRELOAD: usize = 400;
    let pre = load(&rt, &client, 0..PRELOAD, 1024);
    let (before, _) = wait_until(
        "at least 4 regions at three peers, every store holding some",
        PATIENCE,
        || {
            let p = Picture::take(&rt, &source)?;
            let live: BTreeSet<u64> = p.stores.iter().map(|s| s.id).collect();
            if live.len() != 4 || p.regions.len() < 4 {
                return Err(p.table());
            }
            p.all_replicated_on(replicas, &live)?;
            if p.per_store().values().any(|&(r, _)| r == 0) {
                return Err(format!("a store holds nothing yet: {}", p.table()));
            }
            Ok(p)
        },
    );
    eprintln!("before the kill: {}", before.table());
    // The victim: the store leading the most regions (ties: the lowest id). Balance moves may
    // still be under way, some towards the victim: a move whose new peer is on the victim must
    // give way to the dead peer's removal, or the region keeps it until the move times out
    // (10 minutes), which this test caught.
    let per = before.per_store();
    let (&victim, &(held, led)) = per
        .iter()
        .max_by_key(|(id, (_, l))| (*l, std::cmp::Reverse(**id)))
        .unwrap();
    let victim_addr = before
        .stores
        .iter()
        .find(|s| s.id == victim)
        .unwrap()
        .address
        .clone();
    let live: BTreeSet<u64> = per.keys().copied().filter(|&id| id != victim).collect();

    let writers = Writers::start(&rt, &client, 4, PRELOAD, "w");
    writers.wait_for_more(0, 100, "before the kill");
    let i = procs.iter().position(|p| p.addr == victim_addr).unwrap();
    let killed = Instant::now();
    procs[i].kill();
    let at_kill = writers.count();
    eprintln!("SIGKILLed store {victim} ({held} regions, {led} leaders) during writes");

    let (after, took) = wait_until(
        "every region back at three peers on the live stores",
        PATIENCE,
        || {
            let p = Picture::take(&rt, &source)?;
            p.all_replicated_on(replicas, &live)?;
            Ok(p)
        },
    );
    eprintln!(
        "every region had {replicas} peers on live stores {took:.1?} after the kill \
         (max-store-down-time 3s): {}",
        after.table()
    );
    // The scheduler still lists the dead store: stores are not forgotten, only not used.
    assert!(
        after.stores.iter().any(|s| s.id == victim),
        "{}",
        after.table()
    );
    writers.wait_for_more(at_kill, 100, "after the kill");

    let acks = writers.stop(&rt);
    let after_kill = acks.iter().filter(|a| a.sent > killed).count();
    eprintln!(
        "{after_kill} writes sent after the kill acknowledged, {} in all",
        acks.len()
    );
    let acked = into_map(pre, acks);
    assert_reads_back(&rt, &sched_addr, &acked);

    for p in &mut procs {
        p.terminate();
    }
    sched.stop().expect("stop the scheduler");
}

// ---------------------------------------------------------------------------------------------
// 3. The scheduler process dies and comes back.

/// The scheduler binary, next to `tinykv-server` in the same target dir.
fn scheduler_binary() -> PathBuf {
    let bin = Path::new(SERVER).with_file_name("tinykv-scheduler");
    assert!(
        bin.exists(),
        "{} is missing: `cargo build --workspace` builds it (the scheduler is another crate's \
         binary, so building this test alone does not)",
        bin.display()
    );
    bin
}

/// A `tinykv-scheduler` process, SIGKILLed if still running when dropped.
struct SchedulerProc {
    addr: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl SchedulerProc {
    fn new(addr: &str, dir: &Path, config: &Path) -> SchedulerProc {
        SchedulerProc {
            addr: addr.to_string(),
            args: vec![
                "--addr".into(),
                addr.into(),
                "--data-dir".into(),
                dir.to_str().unwrap().into(),
                "--config".into(),
                config.to_str().unwrap().into(),
            ],
            log: dir.with_extension("log"),
            child: None,
        }
    }

    /// Starts it and waits until it accepts connections (panics after 20 s, with its log).
    fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the scheduler's log");
        let child = Command::new(scheduler_binary())
            .args(&self.args)
            .env(
                "TINYKV_LOG",
                std::env::var("TINYKV_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tinykv-scheduler");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(&self.addr).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the scheduler exited with {status}: {}", self.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the scheduler did not start: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill the scheduler");
            c.wait().expect("wait for the scheduler");
        }
    }

    /// SIGTERM and a clean exit.
    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let status = common::signal_and_wait(&mut c, "TERM", "the scheduler");
            assert!(
                status.success(),
                "the scheduler exited with {status} on SIGTERM: {}",
                self.log_text()
            );
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SchedulerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the id and timestamp prober saw.
#[derive(Default, Debug)]
struct Probed {
    /// Ids (AllocID) and when they came, in order.
    ids: Vec<(Instant, u64)>,
    /// Timestamp batches (first, last) and when they came, in order.
    batches: Vec<(Instant, u64, u64)>,
    /// Anything that went backwards or repeated.
    violations: Vec<String>,
    /// Calls that failed (the scheduler down).
    failures: usize,
}

/// A task asking the scheduler for ids and timestamp batches, one call after another, across
/// deaths and restarts (it reconnects), checking that each id and each batch's first timestamp
/// is above everything it got before.
struct Prober {
    stop: Arc<AtomicBool>,
    probed: Arc<Mutex<Probed>>,
    task: tokio::task::JoinHandle<()>,
}

/// A timestamp as one number.
fn ts(physical: i64, logical: i64) -> u64 {
    ((physical as u64) << 18) | logical as u64
}

impl Prober {
    fn start(rt: &Runtime, addr: &str) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let probed = Arc::new(Mutex::new(Probed::default()));
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(5));
        let (stop2, probed2) = (stop.clone(), probed.clone());
        let task = rt.spawn(async move {
            let (mut max_id, mut max_ts, mut n) = (0u64, 0u64, 0u32);
            while !stop2.load(Ordering::Relaxed) {
                // One connection, one Tso stream, until something fails.
                let session = async {
                    let mut c = SchedulerClient::new(endpoint.connect().await.map_err(|_| ())?);
                    let cluster_id = c
                        .get_members(GetMembersRequest { header: None })
                        .await
                        .map_err(|_| ())?
                        .into_inner()
                        .header
                        .ok_or(())?
                        .cluster_id;
                    let header = Some(RequestHeader { cluster_id });
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    let mut tso = c
                        .tso(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
                        .await
                        .map_err(|_| ())?
                        .into_inner();
                    while !stop2.load(Ordering::Relaxed) {
                        let id = c
                            .alloc_id(AllocIdRequest { header })
                            .await
                            .map_err(|_| ())?
                            .into_inner()
                            .id;
                        n += 1;
                        let count = 1 + n % 7;
                        tx.send(TsoRequest { header, count }).map_err(|_| ())?;
                        let resp = tso.message().await.map_err(|_| ())?.ok_or(())?;
                        let t = resp.timestamp.ok_or(())?;
                        // The answer carries the LAST timestamp of the batch.
                        let last = ts(t.physical, t.logical);
                        let first = last + 1 - u64::from(count);
                        let now = Instant::now();
                        let mut p = probed2.lock().unwrap();
                        if id <= max_id {
                            p.violations
                                .push(format!("id {id} after {max_id} had been handed out"));
                        }
                        if first <= max_ts {
                            p.violations.push(format!(
                                "timestamps {first}..={last} after {max_ts} had been handed out"
                            ));
                        }
                        if resp.count != count {
                            p.violations
                                .push(format!("asked {count} timestamps, told {}", resp.count));
                        }
                        max_id = max_id.max(id);
                        max_ts = max_ts.max(last);
                        p.ids.push((now, id));
                        p.batches.push((now, first, last));
                    }
                    Ok::<(), ()>(())
                };
                if session.await.is_err() {
                    probed2.lock().unwrap().failures += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        Prober { stop, probed, task }
    }

    /// Ids got so far.
    fn ids(&self) -> usize {
        self.probed.lock().unwrap().ids.len()
    }

    fn stop(self, rt: &Runtime) -> Probed {
        self.stop.store(true, Ordering::Relaxed);
        rt.block_on(self.task).expect("the prober");
        std::mem::take(&mut *self.probed.lock().unwrap())
    }
}

#[test]
fn test_scheduler_restart_during_writes() {
    let _turn = serial();
    let root = TestDir::new();
    let sched_dir = root.path().join("scheduler");
    let sched_config = root.path().join("scheduler.toml");
    std::fs::write(&sched_config, "[schedule]\nmax-replicas = 3\n").unwrap();
    let sched_addr = free_addrs(1).remove(0);
    let mut sched = SchedulerProc::new(&sched_addr, &sched_dir, &sched_config);
    sched.start();
    let config = store_config(root.path());
    let mut procs = start_stores(root.path(), 3, &sched_addr, &config);
    let rt = Runtime::new().unwrap();
    let source = SchedulerSource::new(&sched_addr).unwrap();
    let cluster_id = rt.block_on(source.cluster_id()).expect("the cluster id");
    let client = Client::with_scheduler(sched_addr.clone(), CLIENT_TIMEOUT).unwrap();

    const PRELOAD: usize = 500;
    let pre = load(&rt, &client, 0..PRELOAD, 1024);
    let (before, _) = wait_until(
        "at least 6 regions, each on the three stores",
        PATIENCE,
        || {
            let p = Picture::take(&rt, &source)?;
            let live: BTreeSet<u64> = p.stores.iter().map(|s| s.id).collect();
            if live.len() != 3 || p.regions.len() < 6 {
                return Err(p.table());
            }
            p.all_replicated_on(3, &live)?;
            Ok(p)
        },
    );
    eprintln!("before the scheduler's death: {}", before.table());

    // A warm cache: every preloaded key read once, so the client knows every region.
    rt.block_on(async {
        for (k, v) in &pre {
            let got = client.get("", k).await.expect("a warming read");
            assert_eq!(got.as_ref(), Some(v), "{}", String::from_utf8_lossy(k));
        }
    });
    let locator = client.region_locator().unwrap();
    for (r, _) in &before.regions {
        let cached = locator.with_cache(|c| c.lookup(&r.start_key).map(|c| c.region.id));
        assert_eq!(
            cached,
            Some(r.id),
            "region {} is in the client's cache",
            r.id
        );
    }

    let prober = Prober::start(&rt, &sched_addr);
    let writers = Writers::start(&rt, &client, 4, PRELOAD, "w");
    writers.wait_for_more(0, 100, "before the scheduler's death");
    wait_until("ids and timestamps from the scheduler", PATIENCE, || {
        (prober.ids() >= 20)
            .then_some(())
            .ok_or_else(|| format!("{} ids", prober.ids()))
    });

    // The scheduler dies. For DOWN, the stores are on their own. Besides the random writers, one
    // writer per region keeps writing into it, so that every region is seen to serve.
    const DOWN: Duration = Duration::from_secs(5);
    let regions_at_kill = Picture::take(&rt, &source).unwrap().regions;
    let each = Writers::per_region(&rt, &client, &regions_at_kill, "r");
    let killed = Instant::now();
    sched.kill();
    std::thread::sleep(DOWN);
    for p in &procs {
        assert!(
            std::net::TcpStream::connect(&p.addr).is_ok(),
            "store {} still serves without the scheduler: {}",
            p.addr,
            p.log_text()
        );
    }
    let restarted = Instant::now();
    let in_window = |acks: &[Ack], from: Instant, to: Instant| -> Vec<(usize, Duration)> {
        acks.iter()
            .filter(|a| a.sent > from && a.done < to)
            .map(|a| (region_of(&regions_at_kill, &a.key), a.done - a.sent))
            .collect()
    };
    let (random_before, random_down) = {
        let acks = writers.acks.lock().unwrap();
        (
            in_window(&acks, killed.checked_sub(DOWN).unwrap_or(killed), killed),
            in_window(&acks, killed, restarted),
        )
    };
    let down = in_window(&each.acks.lock().unwrap(), killed, restarted);
    let slowest = |w: &[(usize, Duration)]| w.iter().map(|a| a.1).max().unwrap_or_default();
    eprintln!(
        "random writers: {} writes acknowledged in the {DOWN:?} before the scheduler's death \
         (slowest {:?}), {} in the {DOWN:?} it was down (slowest {:?}); per-region writers: {} \
         while it was down (slowest {:?})",
        random_before.len(),
        slowest(&random_before),
        random_down.len(),
        slowest(&random_down),
        down.len(),
        slowest(&down),
    );
    let served: BTreeSet<usize> = down.iter().chain(&random_down).map(|a| a.0).collect();
    let missed: Vec<u64> = (0..regions_at_kill.len())
        .filter(|i| !served.contains(i))
        .map(|i| regions_at_kill[i].0.id)
        .collect();
    assert!(
        missed.is_empty(),
        "regions {missed:?} of {} took no write while the scheduler was down (random writers: \
         {}; per-region writers: {})",
        regions_at_kill.len(),
        writers.failures(),
        each.failures()
    );
    let region_acks = each.stop(&rt);

    // Back on the same data dir and port: the same cluster.
    sched.start();
    eprintln!(
        "the scheduler restarted {:.1?} after its death",
        killed.elapsed()
    );
    let fresh = SchedulerSource::new(&sched_addr).unwrap();
    assert_eq!(
        rt.block_on(fresh.cluster_id())
            .expect("the restarted scheduler's cluster id"),
        cluster_id,
        "the same cluster after the restart"
    );
    let at_restart = writers.count();
    wait_until("ids and timestamps after the restart", PATIENCE, || {
        let p = prober.probed.lock().unwrap();
        let after = p.ids.iter().filter(|(t, _)| *t > restarted).count();
        (after >= 20)
            .then_some(())
            .ok_or_else(|| format!("{after} ids, {} failed calls", p.failures))
    });
    writers.wait_for_more(at_restart, 100, "after the restart");

    // Splits resume (AskSplit at the restarted scheduler): another 300 KiB of preloaded keys.
    let regions_before = regions_at_kill.len();
    let more = load(&rt, &client, PRELOAD..PRELOAD + 300, 1024);
    let (after, _) = wait_until(
        "new regions after the restart, each on the three stores",
        PATIENCE,
        || {
            let p = Picture::take(&rt, &source)?;
            let live: BTreeSet<u64> = p.stores.iter().map(|s| s.id).collect();
            if live.len() != 3 || p.regions.len() < regions_before + 3 {
                return Err(p.table());
            }
            p.all_replicated_on(3, &live)?;
            Ok(p)
        },
    );
    eprintln!("after the restart: {}", after.table());
    // Region and peer ids, some handed out before the death and some after, are all distinct.
    let mut region_ids = BTreeSet::new();
    let mut peer_ids = BTreeSet::new();
    for (r, _) in &after.regions {
        assert!(region_ids.insert(r.id), "region id {} twice", r.id);
        for p in &r.peers {
            assert!(peer_ids.insert(p.id), "peer id {} twice", p.id);
        }
    }
    assert!(
        region_ids.is_disjoint(&peer_ids),
        "a region id is also a peer id: {:?}",
        region_ids.intersection(&peer_ids).collect::<Vec<_>>()
    );

    let acks = writers.stop(&rt);
    let probed = prober.stop(&rt);
    let ids_before = probed.ids.iter().filter(|(t, _)| *t < killed).count();
    let ids_after = probed.ids.iter().filter(|(t, _)| *t > restarted).count();
    let last_before = probed
        .batches
        .iter()
        .rev()
        .find(|(t, _, _)| *t < killed)
        .map(|b| b.2);
    let first_after = probed
        .batches
        .iter()
        .find(|(t, _, _)| *t > restarted)
        .map(|b| b.1);
    eprintln!(
        "prober: {ids_before} ids before the death, {ids_after} after, {} failed calls; \
         the last timestamp before {last_before:?}, the first after {first_after:?}",
        probed.failures
    );
    assert!(ids_before > 0 && ids_after > 0, "{probed:?}");
    assert!(
        probed.violations.is_empty(),
        "ids or timestamps repeated or went back: {:?}",
        probed.violations
    );
    let after_restart = acks.iter().filter(|a| a.sent > restarted).count();
    eprintln!(
        "{after_restart} writes sent after the restart acknowledged, {} in all",
        acks.len()
    );
    let mut acked = into_map(pre, acks.into_iter().chain(region_acks));
    acked.extend(more);
    assert_reads_back(&rt, &sched_addr, &acked);

    for p in &mut procs {
        p.terminate();
    }
    sched.terminate();
}
