//! The threaded driver for the harness: real stores on the threaded runtime with RocksDB in temp
//! directories, an in-process transport that applies the network filters, and real time. The
//! test's async code runs on the harness executor, which blocks between wakes and timers.
//!
//! The transport carries a MsgSnapshot as the runtime's contract asks: it copies the snapshot's
//! files in chunks from the sender's snapshot directory to the receiver's (checked there), then
//! delivers the message, and reports the outcome to the sending store.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Mutex, RwLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use proto::metapb::{Peer, Region};
use proto::raft_cmdpb::RaftCmdRequest;
use proto::raft_serverpb::{RaftApplyState, RaftMessage};
use proto::schedulerpb::{AskSplitResponse, RegionHeartbeatRequest, StoreStats};
use raft::SnapshotStatus;
use raftstore::bootstrap::{bootstrap_store, first_region, prepare_bootstrap_region};
use raftstore::engine::rocks::RocksEngine;
use raftstore::engine::{Engine, Engines, ALL_CFS, CF_DEFAULT, CF_RAFT};
use raftstore::runtime::{
    start_store_with_mailbox, SchedulerClient, StoreHandle, StoreMsg, Transport,
};
use raftstore::snap::{copy_snapshot, SnapKey, SnapManager};
use raftstore::{keys, Callback, Config};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slog::Logger;

use crate::cluster::Cluster;
use crate::env::Env;
use crate::exec::Executor;
use crate::filter::{self, Filter};
use crate::scheduler::MockScheduler;

/// How to reach a running store: its mailbox and its snapshot directory.
#[derive(Clone)]
pub struct Endpoint {
    /// The store's mailbox.
    pub mailbox: Sender<StoreMsg>,
    /// The store's snapshot files.
    pub snap_mgr: SnapManager,
}

/// Store id -> how to reach the store.
pub type Router = Arc<RwLock<BTreeMap<u64, Endpoint>>>;
/// The network filters shared by every store's transport.
pub type Filters = Arc<Mutex<Vec<Box<dyn Filter>>>>;

/// An in-process transport: delivers raft messages straight into the destination store's
/// mailbox, unless a filter drops them; a snapshot's files are copied first (see the module
/// documentation).
pub struct ChannelTransport {
    router: Router,
    filters: Filters,
    rng: ChaCha8Rng,
}

impl ChannelTransport {
    /// A transport over `router`, applying `filters` with rolls drawn from `seed`.
    pub fn new(router: Router, filters: Filters, seed: u64) -> Self {
        ChannelTransport {
            router,
            filters,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Transport for ChannelTransport {
    fn send(&mut self, msg: RaftMessage) -> raftstore::Result<()> {
        let (passes, corrupt) = {
            let filters = self.filters.lock().unwrap();
            // Every filter rolls its own die, so stacked drop filters compound.
            let passes = filter::passes(&filters, &msg, &mut self.rng);
            (passes, passes && filter::corrupts(&filters, &mut self.rng))
        };
        let to = msg.to_peer.as_ref().map_or(0, |p| p.store_id);
        if let Some(key) = SnapKey::from_msg(&msg) {
            return self.send_snapshot(key, msg, passes, corrupt);
        }
        if !passes {
            return Ok(());
        }
        if let Some(ep) = self.router.read().unwrap().get(&to) {
            let _ = ep.mailbox.send(StoreMsg::Raft(msg));
        }
        Ok(())
    }
}

impl ChannelTransport {
    /// Copies the snapshot's files to the receiver, delivers the message, and reports the outcome
    /// to the sending store.
    fn send_snapshot(
        &self,
        key: SnapKey,
        msg: RaftMessage,
        passes: bool,
        corrupt: bool,
    ) -> raftstore::Result<()> {
        let from = msg.from_peer.as_ref().map_or(0, |p| p.store_id);
        let to = msg.to_peer.as_ref().map_or(0, |p| p.store_id);
        let to_peer_id = msg.to_peer.as_ref().map_or(0, |p| p.id);
        let (sender, receiver) = {
            let router = self.router.read().unwrap();
            (router.get(&from).cloned(), router.get(&to).cloned())
        };
        let Some(sender) = sender else {
            return Ok(());
        };
        let outcome = match receiver {
            _ if !passes => Err("dropped by a filter".to_string()),
            None => Err(format!("store {to} is not running")),
            Some(receiver) => {
                // An unreliable network sometimes corrupts a chunk: the receiver must catch it.
                let mut flip = |i: usize, chunk: &mut Vec<u8>| {
                    if corrupt && i == 0 && !chunk.is_empty() {
                        let at = chunk.len() / 2;
                        chunk[at] ^= 0x5a;
                    }
                };
                copy_snapshot(&sender.snap_mgr, &receiver.snap_mgr, &msg, &mut flip)
                    .map_err(|e| e.to_string())
                    .and_then(|_| {
                        receiver
                            .mailbox
                            .send(StoreMsg::Raft(msg))
                            .map_err(|_| format!("store {to} stopped"))
                    })
            }
        };
        let status = match outcome {
            Ok(()) => SnapshotStatus::Finish,
            Err(_) => SnapshotStatus::Failure,
        };
        let _ = sender.mailbox.send(StoreMsg::ReportSnapshot {
            region_id: key.region_id,
            to_peer_id,
            status,
        });
        Ok(())
    }
}

/// A store's client of the shared mock scheduler: calls it in place, and delivers a heartbeat's
/// answer to the mailbox of the leader's store, as the scheduler's stream would.
pub struct SchedulerHandle {
    scheduler: Arc<Mutex<MockScheduler>>,
    router: Router,
}

impl SchedulerHandle {
    /// A client of `scheduler` for a store reached through `router`.
    pub fn new(scheduler: Arc<Mutex<MockScheduler>>, router: Router) -> Self {
        SchedulerHandle { scheduler, router }
    }
}

impl SchedulerClient for SchedulerHandle {
    fn region_heartbeat(&mut self, req: RegionHeartbeatRequest) -> raftstore::Result<()> {
        let resp = self
            .scheduler
            .lock()
            .unwrap()
            .region_heartbeat(&req)
            .map_err(raftstore::Error::Scheduler)?;
        let store = resp.target_peer.as_ref().map_or(0, |p| p.store_id);
        if let Some(ep) = self.router.read().unwrap().get(&store) {
            let _ = ep.mailbox.send(StoreMsg::SchedulerResponse(resp));
        }
        Ok(())
    }

    fn store_heartbeat(&mut self, stats: StoreStats) -> raftstore::Result<()> {
        self.scheduler.lock().unwrap().store_heartbeat(&stats);
        Ok(())
    }

    fn ask_split(&mut self, region: &Region) -> raftstore::Result<AskSplitResponse> {
        self.scheduler
            .lock()
            .unwrap()
            .ask_split(region)
            .map_err(raftstore::Error::Scheduler)
    }

    fn alloc_id(&mut self) -> raftstore::Result<u64> {
        Ok(self.scheduler.lock().unwrap().alloc_id())
    }

    fn get_region(&mut self, key: &[u8]) -> raftstore::Result<(Region, Option<Peer>)> {
        self.scheduler
            .lock()
            .unwrap()
            .get_region(key)
            .ok_or_else(|| raftstore::Error::Scheduler(format!("no region holds {key:?}")))
    }
}

type RocksEngines = Engines<RocksEngine, RocksEngine>;

/// The threaded environment.
pub struct ThreadedEnv {
    start: Instant,
    exec: Rc<Executor>,
    timers: RefCell<BTreeMap<(Duration, u64), Waker>>,
    timer_seq: RefCell<u64>,
    engines: BTreeMap<u64, RocksEngines>,
    snap_mgrs: BTreeMap<u64, SnapManager>,
    handles: RefCell<BTreeMap<u64, StoreHandle>>,
    router: Router,
    filters: Filters,
    scheduler: Arc<Mutex<MockScheduler>>,
    rng: RefCell<ChaCha8Rng>,
    cfg: Config,
    logger: Logger,
    _dir: tempfile::TempDir,
}

impl ThreadedEnv {
    /// A cluster of `count` stores on RocksDB in a temp directory, bootstrapped and started.
    pub fn new(count: u64, cfg: Config, logger: Logger) -> Rc<ThreadedEnv> {
        let dir = tempfile::Builder::new()
            .prefix("test-raftstore")
            .tempdir()
            .expect("temp dir");
        let ids: Vec<u64> = (1..=count).collect();
        let region = first_region(1, &ids);
        let mut engines = BTreeMap::new();
        let mut snap_mgrs = BTreeMap::new();
        for &id in &ids {
            let base = dir.path().join(format!("store-{id}"));
            let kv = RocksEngine::open(base.join("kv"), &ALL_CFS).expect("open kv engine");
            let raft =
                RocksEngine::open(base.join("raft"), &[CF_DEFAULT]).expect("open raft engine");
            let e = Engines::new(kv, raft);
            bootstrap_store(&e, 0, id).expect("bootstrap store");
            prepare_bootstrap_region(&e, &region).expect("bootstrap region");
            engines.insert(id, e);
            snap_mgrs.insert(id, SnapManager::new(base.join("snap")).expect("snap dir"));
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ std::process::id() as u64;
        let env = Rc::new(ThreadedEnv {
            start: Instant::now(),
            exec: Executor::new(),
            timers: RefCell::new(BTreeMap::new()),
            timer_seq: RefCell::new(0),
            engines,
            snap_mgrs,
            handles: RefCell::new(BTreeMap::new()),
            router: Arc::new(RwLock::new(BTreeMap::new())),
            filters: Arc::new(Mutex::new(Vec::new())),
            scheduler: Arc::new(Mutex::new(MockScheduler::new(vec![region], count + 1))),
            rng: RefCell::new(ChaCha8Rng::seed_from_u64(seed)),
            cfg,
            logger,
            _dir: dir,
        });
        for id in ids {
            env.start_store(id);
        }
        env
    }

    /// Wakes the tasks whose timers are due; whether there were any.
    fn fire_due(&self) -> bool {
        let now = self.now();
        let due: Vec<Waker> = {
            let mut timers = self.timers.borrow_mut();
            let later = timers.split_off(&(now + Duration::from_nanos(1), 0));
            let due = std::mem::replace(&mut *timers, later);
            due.into_values().collect()
        };
        let fired = !due.is_empty();
        for w in due {
            w.wake();
        }
        fired
    }

    /// Fires due timers and blocks until a task is woken or the next timer is due.
    fn wait(&self) -> bool {
        if self.fire_due() {
            return true;
        }
        let next = self
            .timers
            .borrow()
            .keys()
            .next()
            .map(|(at, _)| *at)
            .unwrap_or(self.now() + Duration::from_millis(100));
        let wait = next
            .saturating_sub(self.now())
            .min(Duration::from_millis(100));
        self.exec.wake_queue().wait(wait);
        true
    }
}

impl ThreadedEnv {
    /// Stops every store and drops the test's leftover tasks.
    fn shutdown(&self) {
        self.router.write().unwrap().clear();
        let handles = std::mem::take(&mut *self.handles.borrow_mut());
        for (_, h) in handles {
            h.stop();
        }
        self.timers.borrow_mut().clear();
        self.exec.clear();
    }
}

impl Drop for ThreadedEnv {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Shuts the environment down when the run ends, normally or by a panic.
struct ShutdownGuard(Rc<ThreadedEnv>);

impl Drop for ShutdownGuard {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

impl Env for ThreadedEnv {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn register_timer(&self, at: Duration, waker: Waker) {
        let mut seq = self.timer_seq.borrow_mut();
        *seq += 1;
        self.timers.borrow_mut().insert((at, *seq), waker);
    }

    fn send_command(&self, store_id: u64, req: RaftCmdRequest, cb: Callback) -> bool {
        match self.handles.borrow().get(&store_id) {
            Some(h) => h.send_command(req, cb).is_ok(),
            None => false,
        }
    }

    fn start_store(&self, store_id: u64) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let seed = self.rng.borrow_mut().random();
        let transport = ChannelTransport::new(self.router.clone(), self.filters.clone(), seed);
        let snap_mgr = self.snap_mgrs[&store_id].clone();
        let handle = start_store_with_mailbox(
            self.cfg.clone(),
            self.engines[&store_id].clone(),
            snap_mgr.clone(),
            transport,
            SchedulerHandle::new(self.scheduler.clone(), self.router.clone()),
            &self.logger,
            tx.clone(),
            rx,
        )
        .unwrap_or_else(|e| panic!("store {store_id} cannot start: {e}"));
        self.router.write().unwrap().insert(
            store_id,
            Endpoint {
                mailbox: tx,
                snap_mgr,
            },
        );
        self.handles.borrow_mut().insert(store_id, handle);
    }

    fn stop_store(&self, store_id: u64) {
        self.router.write().unwrap().remove(&store_id);
        if let Some(h) = self.handles.borrow_mut().remove(&store_id) {
            h.stop();
        }
    }

    fn add_filter(&self, f: Box<dyn Filter>) {
        self.filters.lock().unwrap().push(f);
    }

    fn clear_filters(&self) {
        self.filters.lock().unwrap().clear();
    }

    fn store_ids(&self) -> Vec<u64> {
        self.engines.keys().copied().collect()
    }

    fn scheduler(&self) -> Arc<Mutex<MockScheduler>> {
        self.scheduler.clone()
    }

    fn engine_get(&self, store_id: u64, cf: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.engines[&store_id]
            .kv
            .get_cf(cf, key)
            .expect("engine read")
    }

    fn apply_state(&self, store_id: u64, region_id: u64) -> Option<RaftApplyState> {
        self.engines[&store_id]
            .kv
            .get_msg_cf(CF_RAFT, &keys::apply_state_key(region_id))
            .expect("engine read")
    }

    fn random(&self) -> u64 {
        self.rng.borrow_mut().random()
    }

    fn executor(&self) -> Rc<Executor> {
        self.exec.clone()
    }

    fn config(&self) -> Config {
        self.cfg.clone()
    }
}

/// Runs `test` once on a threaded cluster of `count` stores with RocksDB and real time, the raft
/// engine synced off the round as `tinykv-server` runs it (`Config::async_raft_sync`).
pub fn run<F, Fut>(count: u64, cfg: Config, test: F)
where
    F: FnOnce(Cluster) -> Fut,
    Fut: Future<Output = ()>,
{
    let cfg = Config {
        async_raft_sync: true,
        ..cfg
    };
    let env = ThreadedEnv::new(count, cfg, raft::default_logger());
    let _guard = ShutdownGuard(env.clone());
    let exec = env.exec.clone();
    let dyn_env: Rc<dyn Env> = env.clone();
    let e2 = env.clone();
    let e3 = env.clone();
    exec.block_on_fair(
        test(Cluster::new(dyn_env)),
        || {
            e3.fire_due();
        },
        || e2.wait(),
    );
}
