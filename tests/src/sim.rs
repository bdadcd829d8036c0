//! The simulator: the second driver of the store handlers. One thread, virtual time, and a
//! seeded RNG that decides message latency (and so reordering), drops through filters, the
//! timing of background tasks and the phase of each store's ticks. Every event goes through one
//! queue ordered by (virtual time, sequence number), so a seed replays bit for bit; a digest of
//! every delivered event proves it.
//!
//! Stores run on in-memory engines; stopping a store is a crash that loses every write that was
//! not synced. Snapshot files live in a temp directory per store (a crash keeps them, as a disk
//! would keep fsynced files). A MsgSnapshot travels as a transfer of its files that takes virtual
//! time in proportion to its size and goes through the filters twice (when it leaves and when it
//! arrives, so a partition installed meanwhile fails it); a failed transfer is reported back to
//! the sender, and an unreliable network (a drop filter) sometimes corrupts a chunk, which the
//! receiver's checksum catches.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

use prost::Message as _;
use proto::metapb::Region;
use proto::raft_cmdpb::RaftCmdRequest;
use proto::raft_serverpb::{PeerState, RaftApplyState, RaftMessage, RegionLocalState};
use proto::schedulerpb::RegionHeartbeatResponse;
use raft::SnapshotStatus;
use raftstore::bootstrap::{bootstrap_store, first_region, prepare_bootstrap_region};
use raftstore::engine::mem::MemEngine;
use raftstore::engine::{Engine, Engines, ALL_CFS, CF_DEFAULT, CF_RAFT, DATA_CFS};
use raftstore::scheduler::{split_command, SchedulerTask};
use raftstore::snap::{copy_snapshot, snapshot_data, SnapKey, SnapManager};
use raftstore::util::region_contains;
use raftstore::worker::run_task;
use raftstore::{keys, Callback, Config, Store, StoreContext, Task, TaskResult};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slog::Logger;

use crate::cluster::Cluster;
use crate::env::Env;
use crate::exec::Executor;
use crate::filter::{self, Filter};
use crate::scheduler::MockScheduler;
use crate::seeds::{seeds, Digest};
use crate::trace::{TraceTarget, Tracer};

/// How long a simulated run may last before it is declared stuck.
const MAX_VIRTUAL_TIME: Duration = Duration::from_secs(30 * 60);

/// Virtual bandwidth of snapshot transfers and of snapshot generation and application.
const SNAP_BYTES_PER_SEC: u64 = 100 << 20;

fn snap_time(bytes: u64) -> Duration {
    Duration::from_micros(bytes * 1_000_000 / SNAP_BYTES_PER_SEC)
}

type MemEngines = Engines<MemEngine, MemEngine>;

enum Event {
    Timer(Waker),
    /// The store's raft engine is synced after its unsynced write `seq` (async raft sync).
    Synced {
        store: u64,
        inc: u64,
        seq: u64,
    },
    Tick {
        store: u64,
        inc: u64,
    },
    Deliver {
        store: u64,
        inc: u64,
        msg: RaftMessage,
        /// The message's id in the run's trace (0 when untraced).
        id: u64,
    },
    Command {
        store: u64,
        req: RaftCmdRequest,
        cb: Callback,
    },
    /// The store's round (`Store::round`), after the events of one instant.
    Round {
        store: u64,
        inc: u64,
    },
    RunTask {
        store: u64,
        inc: u64,
        task: Task,
    },
    TaskDone {
        store: u64,
        inc: u64,
        result: TaskResult,
    },
    /// The files of a MsgSnapshot arrive at `to`; then the message is delivered.
    SnapTransfer {
        from: u64,
        from_inc: u64,
        to: u64,
        to_inc: u64,
        msg: RaftMessage,
        /// The message's id in the run's trace (0 when untraced).
        id: u64,
    },
    ReportSnapshot {
        store: u64,
        inc: u64,
        region_id: u64,
        to_peer_id: u64,
        status: SnapshotStatus,
    },
    /// The mock scheduler's answer to a region heartbeat reaches the leader's store.
    SchedulerResponse {
        store: u64,
        inc: u64,
        resp: RegionHeartbeatResponse,
    },
}

/// An event in the queue, ordered by (virtual time, sequence number) alone; boxed so that the
/// heap moves a pointer, not a message.
struct Queued(Duration, u64, Box<Event>);

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(other.0, other.1))
    }
}

struct SimStore {
    engines: MemEngines,
    snap_mgr: SnapManager,
    store: Option<Store<MemEngine, MemEngine>>,
    ctx: StoreContext,
    /// Bumped on every stop, so events of an earlier incarnation are dropped.
    inc: u64,
    round_scheduled: bool,
}

struct Inner {
    now: Duration,
    seq: u64,
    events: BinaryHeap<Reverse<Queued>>,
    rng: ChaCha8Rng,
    stores: BTreeMap<u64, SimStore>,
    filters: Vec<Box<dyn Filter>>,
    digest: Digest,
    delivered: u64,
    dropped: u64,
    snapshots_sent: u64,
    snapshots_failed: u64,
    /// Snapshots applied by a store (the region worker reported success).
    snapshots_installed: u64,
    /// The run's trace, when it is traced.
    trace: Option<Tracer>,
}

/// The simulated environment.
pub struct SimEnv {
    inner: RefCell<Inner>,
    exec: Rc<Executor>,
    scheduler: Arc<Mutex<MockScheduler>>,
    cfg: Config,
    logger: Logger,
    _snap_dir: tempfile::TempDir,
}

impl Inner {
    fn schedule(&mut self, at: Duration, ev: Event) {
        self.seq += 1;
        self.events
            .push(Reverse(Queued(at, self.seq, Box::new(ev))));
    }

    fn schedule_round(&mut self, store: u64) {
        let now = self.now;
        let s = self.stores.get_mut(&store).expect("known store");
        if s.round_scheduled {
            return;
        }
        s.round_scheduled = true;
        let inc = s.inc;
        // Same virtual time, after every event already queued for now: one round per store
        // covers everything that arrived at the same instant (group commit).
        self.schedule(now, Event::Round { store, inc });
    }
}

impl SimEnv {
    /// A cluster of `count` stores, bootstrapped with region 1 over all of them and started.
    pub fn new(seed: u64, count: u64, cfg: Config, logger: Logger) -> Rc<SimEnv> {
        SimEnv::new_traced(seed, count, cfg, logger, None)
    }

    /// Like [`SimEnv::new`], recording the run into `trace` when given.
    pub fn new_traced(
        seed: u64,
        count: u64,
        cfg: Config,
        logger: Logger,
        trace: Option<Tracer>,
    ) -> Rc<SimEnv> {
        let ids: Vec<u64> = (1..=count).collect();
        let region = first_region(1, &ids);
        let snap_dir = tempfile::Builder::new()
            .prefix("sim-snap")
            .tempdir()
            .expect("temp dir");
        let mut stores = BTreeMap::new();
        for &id in &ids {
            let engines = Engines::new(MemEngine::new(&ALL_CFS), MemEngine::new(&[CF_DEFAULT]));
            let snap_mgr = SnapManager::new(snap_dir.path().join(format!("store-{id}")))
                .expect("snap dir")
                .with_sync(false);
            bootstrap_store(&engines, 0, id).expect("bootstrap store");
            prepare_bootstrap_region(&engines, &region).expect("bootstrap region");
            stores.insert(
                id,
                SimStore {
                    engines,
                    snap_mgr,
                    store: None,
                    ctx: StoreContext::default(),
                    inc: 0,
                    round_scheduled: false,
                },
            );
        }
        let env = Rc::new(SimEnv {
            inner: RefCell::new(Inner {
                now: Duration::ZERO,
                seq: 0,
                events: BinaryHeap::new(),
                rng: ChaCha8Rng::seed_from_u64(seed),
                stores,
                filters: Vec::new(),
                digest: Digest::default(),
                delivered: 0,
                dropped: 0,
                snapshots_sent: 0,
                snapshots_failed: 0,
                snapshots_installed: 0,
                trace,
            }),
            exec: Executor::new(),
            scheduler: Arc::new(Mutex::new(MockScheduler::new(vec![region], count + 1))),
            // Odd seeds run the stores with the raft engine synced off the round.
            cfg: Config {
                seed,
                async_raft_sync: cfg.async_raft_sync || seed % 2 == 1,
                ..cfg
            },
            logger,
            _snap_dir: snap_dir,
        });
        for id in ids {
            env.start_store(id);
        }
        env
    }

    /// The digest of every event delivered so far.
    pub fn digest(&self) -> u64 {
        self.inner.borrow().digest.value()
    }

    /// Processes the next event; false when none is left.
    fn step(&self) -> bool {
        let mut inner = self.inner.borrow_mut();
        let Some(Reverse(Queued(at, _, ev))) = inner.events.pop() else {
            return false;
        };
        inner.now = at;
        VIRTUAL_NOW.with(|t| t.set(at));
        assert!(
            at <= MAX_VIRTUAL_TIME,
            "simulation ran past {MAX_VIRTUAL_TIME:?} of virtual time"
        );
        let inner = &mut *inner;
        let touched = touched_store(&ev);
        self.handle(inner, at, *ev);
        if let Some(t) = inner.trace.as_mut() {
            if let Some((store, cause)) = touched {
                if let Some(st) = inner.stores.get(&store).and_then(|s| s.store.as_ref()) {
                    t.observe(at, store, st, cause);
                }
            }
            t.drain_answers(at);
        }
        true
    }

    /// Carries out one event at `at`.
    fn handle(&self, inner: &mut Inner, at: Duration, ev: Event) {
        match ev {
            Event::Timer(w) => w.wake(),
            Event::Tick { store, inc } => {
                let tick = self.cfg.raft_base_tick_interval;
                let s = inner.stores.get_mut(&store).expect("known store");
                if s.inc != inc || s.store.is_none() {
                    return;
                }
                inner.digest.add(&[1, store as u8]);
                s.store.as_mut().unwrap().on_tick(&mut s.ctx);
                inner.schedule(at + tick, Event::Tick { store, inc });
                inner.schedule_round(store);
            }
            Event::Deliver {
                store,
                inc,
                msg,
                id,
            } => {
                let s = inner.stores.get_mut(&store).expect("known store");
                if s.inc != inc || s.store.is_none() {
                    inner.dropped += 1;
                    if let Some(t) = inner.trace.as_mut() {
                        t.drop_msg(at, id, "the receiver crashed or is down");
                    }
                    return;
                }
                if let Some(t) = inner.trace.as_mut() {
                    t.deliver(at, id);
                }
                inner.delivered += 1;
                inner.digest.add(&at.as_nanos().to_le_bytes());
                inner.digest.add(&[2, store as u8]);
                inner.digest.add(&msg.encode_to_vec());
                s.store.as_mut().unwrap().on_raft_message(&mut s.ctx, msg);
                inner.schedule_round(store);
            }
            Event::Command { store, req, cb } => {
                let s = inner.stores.get_mut(&store).expect("known store");
                let cb = match inner.trace.as_mut() {
                    Some(t) => {
                        let (id, answers) = t.command(at, store, &req);
                        if s.store.is_none() {
                            answers
                                .lock()
                                .unwrap()
                                .push((id, "the store is down".into()));
                        }
                        Box::new(move |resp: raftstore::CmdResponse| {
                            let error = resp.region_error().map_or_else(String::new, |e| {
                                crate::trace::describe_region_error(e)
                            });
                            answers.lock().unwrap().push((id, error));
                            cb(resp)
                        }) as Callback
                    }
                    None => cb,
                };
                let Some(st) = s.store.as_mut() else {
                    // The store is down: the client never hears back (it times out).
                    drop(cb);
                    return;
                };
                inner.digest.add(&[3, store as u8]);
                inner.digest.add(&req.encode_to_vec());
                st.on_command(&mut s.ctx, req, cb);
                inner.schedule_round(store);
            }
            Event::Round { store, inc } => self.round(inner, store, inc),
            Event::Synced { store, inc, seq } => {
                let s = inner.stores.get_mut(&store).expect("known store");
                if s.inc != inc || s.store.is_none() {
                    // A crash came first: the unsynced writes are lost.
                    return;
                }
                inner.digest.add(&[5, store as u8]);
                inner.digest.add(&seq.to_le_bytes());
                let st = s.store.as_mut().unwrap();
                if let Err(e) = st.sync_raft(&mut s.ctx, seq) {
                    panic!("store {store}: the sync failed: {e}");
                }
                inner.schedule_round(store);
            }
            Event::RunTask { store, inc, task } => {
                let s = inner.stores.get_mut(&store).expect("known store");
                if s.inc == inc {
                    let desc = format!("{task:?}");
                    let bytes = task_bytes(s, &task);
                    match run_task(&s.engines, &s.snap_mgr, task) {
                        Ok(Some(result)) => {
                            // Generation and application take time in proportion to the data.
                            let at = inner.now + snap_time(bytes);
                            inner.schedule(at, Event::TaskDone { store, inc, result });
                        }
                        Ok(None) => {}
                        Err(e) => panic!("store {store}: task {desc} failed: {e}"),
                    }
                }
            }
            Event::TaskDone { store, inc, result } => {
                let s = inner.stores.get_mut(&store).expect("known store");
                if s.inc != inc || s.store.is_none() {
                    return;
                }
                // Only what the result says, not its error text (which may name temp paths).
                let snapshot = match &result {
                    TaskResult::SnapshotGenerated { key, result } => Some((*key, result.is_ok())),
                    TaskResult::SnapshotApplied { key, result } => {
                        inner.snapshots_installed += result.is_ok() as u64;
                        Some((*key, result.is_ok()))
                    }
                    TaskResult::SplitChecked {
                        region,
                        size,
                        split_key,
                    } => {
                        inner.digest.add(&[8, store as u8]);
                        inner.digest.add(&region.id.to_le_bytes());
                        inner.digest.add(&size.to_le_bytes());
                        inner.digest.add(split_key.as_deref().unwrap_or_default());
                        None
                    }
                };
                if let Some((key, ok)) = snapshot {
                    inner.digest.add(&[4, store as u8, ok as u8]);
                    inner.digest.add(key.to_string().as_bytes());
                }
                if let Some(t) = inner.trace.as_mut() {
                    trace_task_result(t, at, store, &result);
                }
                s.store.as_mut().unwrap().on_task_result(&mut s.ctx, result);
                inner.schedule_round(store);
            }
            Event::SnapTransfer {
                from,
                from_inc,
                to,
                to_inc,
                msg,
                id,
            } => self.snap_transfer(inner, (from, from_inc), (to, to_inc), msg, id),
            Event::SchedulerResponse { store, inc, resp } => {
                let s = inner.stores.get_mut(&store).expect("known store");
                if s.inc != inc || s.store.is_none() {
                    return;
                }
                inner.digest.add(&[7, store as u8]);
                inner.digest.add(&resp.encode_to_vec());
                if let Some(t) = inner.trace.as_mut() {
                    let region = resp.region_id;
                    t.note(at, store, region, crate::trace::describe_operator(&resp));
                }
                s.store
                    .as_mut()
                    .unwrap()
                    .on_scheduler_response(&mut s.ctx, resp);
                inner.schedule_round(store);
            }
            Event::ReportSnapshot {
                store,
                inc,
                region_id,
                to_peer_id,
                status,
            } => {
                let s = inner.stores.get_mut(&store).expect("known store");
                if s.inc != inc || s.store.is_none() {
                    return;
                }
                inner
                    .digest
                    .add(&[5, store as u8, (status == SnapshotStatus::Finish) as u8]);
                s.store
                    .as_mut()
                    .unwrap()
                    .on_snapshot_status(&mut s.ctx, region_id, to_peer_id, status);
                inner.schedule_round(store);
            }
        }
    }

    /// The files of a MsgSnapshot arrive: copied (through the filters, perhaps corrupted) into the
    /// receiver's snapshot directory, then the message is delivered; the sender hears the outcome.
    fn snap_transfer(
        &self,
        inner: &mut Inner,
        (from, from_inc): (u64, u64),
        (to, to_inc): (u64, u64),
        msg: RaftMessage,
        id: u64,
    ) {
        let key = SnapKey::from_msg(&msg).expect("a snapshot message");
        let to_peer_id = msg.to_peer.as_ref().map_or(0, |p| p.id);
        let offset = inner.rng.random::<u64>() as usize;
        let alive = inner
            .stores
            .get(&to)
            .is_some_and(|s| s.inc == to_inc && s.store.is_some());
        let passes = filter::passes(&inner.filters, &msg, &mut inner.rng);
        let mut outcome = Err("the receiver is down or cut off".to_string());
        if alive && passes {
            let corrupt = filter::corrupts(&inner.filters, &mut inner.rng);
            let (src, dst) = (
                inner.stores[&from].snap_mgr.clone(),
                inner.stores[&to].snap_mgr.clone(),
            );
            let mut flip = |i: usize, chunk: &mut Vec<u8>| {
                if corrupt && i == 0 && !chunk.is_empty() {
                    let at = offset % chunk.len();
                    chunk[at] ^= 0x5a;
                }
            };
            outcome = copy_snapshot(&src, &dst, &msg, &mut flip).map_err(|e| e.to_string());
        }
        inner
            .digest
            .add(&[6, from as u8, to as u8, outcome.is_ok() as u8]);
        if let Some(t) = inner.trace.as_mut() {
            let what = if outcome.is_ok() {
                "transferred"
            } else {
                "transfer failed"
            };
            t.record(
                inner.now,
                tinykv_trace::record::Kind::Snapshot(tinykv_trace::record::Snapshot {
                    store: to,
                    peer_store: from,
                    region: key.region_id,
                    index: key.index,
                    term: key.term,
                    what: what.into(),
                }),
            );
            match &outcome {
                Ok(_) => t.deliver(inner.now, id),
                Err(e) => t.drop_msg(inner.now, id, e),
            }
        }
        let status = match outcome {
            Ok(_) => {
                inner.snapshots_sent += 1;
                let s = inner.stores.get_mut(&to).expect("known store");
                inner.delivered += 1;
                inner.digest.add(&msg.encode_to_vec());
                s.store.as_mut().unwrap().on_raft_message(&mut s.ctx, msg);
                inner.schedule_round(to);
                SnapshotStatus::Finish
            }
            Err(e) => {
                inner.snapshots_failed += 1;
                slog::info!(self.logger, "snapshot transfer failed";
                    "from" => from, "to" => to, "snapshot" => %key, "err" => e);
                SnapshotStatus::Failure
            }
        };
        let at = inner.now + Duration::from_micros(inner.rng.random_range(100..2000));
        inner.schedule(
            at,
            Event::ReportSnapshot {
                store: from,
                inc: from_inc,
                region_id: key.region_id,
                to_peer_id,
                status,
            },
        );
    }
}

/// The store an event is handled by, and what the trace calls it (the cause of what changed).
fn touched_store(ev: &Event) -> Option<(u64, &'static str)> {
    Some(match ev {
        Event::Timer(_) | Event::RunTask { .. } => return None,
        Event::Synced { store, .. } => (*store, "sync"),
        Event::Tick { store, .. } => (*store, "tick"),
        Event::Deliver { store, .. } => (*store, "message"),
        Event::Command { store, .. } => (*store, "command"),
        Event::Round { store, .. } => (*store, "round"),
        Event::TaskDone { store, result, .. } => match result {
            TaskResult::SnapshotApplied { .. } => (*store, "snapshot applied"),
            _ => (*store, "task"),
        },
        Event::SnapTransfer { to, .. } => (*to, "snapshot"),
        Event::ReportSnapshot { store, .. } => (*store, "snapshot report"),
        Event::SchedulerResponse { store, .. } => (*store, "scheduler"),
    })
}

/// Records a background task's result in the trace.
fn trace_task_result(t: &mut Tracer, at: Duration, store: u64, result: &TaskResult) {
    use tinykv_trace::record::{Kind, Snapshot};
    let (key, what) = match result {
        TaskResult::SnapshotGenerated { key, result } => (
            key,
            if result.is_ok() {
                "generated"
            } else {
                "generation failed"
            },
        ),
        TaskResult::SnapshotApplied { key, result } => (
            key,
            if result.is_ok() {
                "applied"
            } else {
                "apply failed"
            },
        ),
        TaskResult::SplitChecked {
            region,
            size,
            split_key,
        } => {
            let text = match split_key {
                Some(k) => format!(
                    "split check: {size} bytes, split at {}",
                    crate::trace::show_key(k)
                ),
                None => format!("split check: {size} bytes, no split"),
            };
            t.note(at, store, region.id, text);
            return;
        }
    };
    t.record(
        at,
        Kind::Snapshot(Snapshot {
            store,
            peer_store: 0,
            region: key.region_id,
            index: key.index,
            term: key.term,
            what: what.into(),
        }),
    );
}

/// The bytes a snapshot task moves (to give it a duration in virtual time).
fn task_bytes(s: &SimStore, task: &Task) -> u64 {
    match task {
        Task::ApplySnapshot { key, .. } => {
            s.snap_mgr.received_data(*key).map_or(0, |d| d.file_size)
        }
        _ => 0,
    }
}

impl SimEnv {
    /// The store's round, as the production driver runs it (`Store::round`), then its effects
    /// carried out.
    fn round(&self, inner: &mut Inner, store: u64, inc: u64) {
        let s = inner.stores.get_mut(&store).expect("known store");
        if s.inc != inc {
            return;
        }
        s.round_scheduled = false;
        let Some(st) = s.store.as_mut() else {
            return;
        };
        // A round takes no virtual time: what production carries out between the round's halves
        // (leaders' appends, early answers) leaves here at the same instant, with the rest.
        if let Err(e) = st.round(&mut s.ctx, |_| {}) {
            panic!("store {store}: round failed: {e}");
        }
        let again = st.has_ready();
        let ctx = std::mem::take(&mut s.ctx);
        let now = inner.now;
        if let Some(seq) = ctx.sync_request {
            // An fsync of 50 us to 1 ms, while the store goes on with new rounds.
            let took = Duration::from_micros(inner.rng.random_range(50..1000));
            inner.schedule(now + took, Event::Synced { store, inc, seq });
        }
        for msg in ctx.messages {
            let to = msg.to_peer.as_ref().map_or(0, |p| p.store_id);
            let id = inner.trace.as_mut().map_or(0, |t| t.send(now, &msg));
            // 0.1 to 2 ms: enough spread to reorder messages between stores.
            let latency = Duration::from_micros(inner.rng.random_range(100..2000));
            if let Some(key) = SnapKey::from_msg(&msg) {
                let to_peer_id = msg.to_peer.as_ref().map_or(0, |p| p.id);
                let to_inc = inner.stores.get(&to).map(|s| s.inc);
                if !filter::passes(&inner.filters, &msg, &mut inner.rng) || to_inc.is_none() {
                    inner.dropped += 1;
                    inner.snapshots_failed += 1;
                    if let Some(t) = inner.trace.as_mut() {
                        t.drop_msg(now, id, "a filter (partition or drop)");
                    }
                    inner.schedule(
                        now + latency,
                        Event::ReportSnapshot {
                            store,
                            inc,
                            region_id: key.region_id,
                            to_peer_id,
                            status: SnapshotStatus::Failure,
                        },
                    );
                    continue;
                }
                let size = msg
                    .message
                    .as_ref()
                    .and_then(|m| m.snapshot.as_ref())
                    .and_then(|s| snapshot_data(s).ok())
                    .map_or(0, |d| d.file_size);
                inner.schedule(
                    now + latency + snap_time(size),
                    Event::SnapTransfer {
                        from: store,
                        from_inc: inc,
                        to,
                        to_inc: to_inc.expect("checked"),
                        msg,
                        id,
                    },
                );
                continue;
            }
            if !filter::passes(&inner.filters, &msg, &mut inner.rng) {
                inner.dropped += 1;
                if let Some(t) = inner.trace.as_mut() {
                    t.drop_msg(now, id, "a filter (partition or drop)");
                }
                continue;
            }
            let Some(inc) = inner.stores.get(&to).map(|s| s.inc) else {
                if let Some(t) = inner.trace.as_mut() {
                    t.drop_msg(now, id, "no such store");
                }
                continue;
            };
            inner.schedule(
                now + latency,
                Event::Deliver {
                    store: to,
                    inc,
                    msg,
                    id,
                },
            );
        }
        for task in ctx.tasks {
            let delay = Duration::from_micros(inner.rng.random_range(0..5000));
            inner.schedule(now + delay, Event::RunTask { store, inc, task });
        }
        if !ctx.scheduler_tasks.is_empty() {
            self.scheduler_tasks(inner, store, ctx.scheduler_tasks);
        }
        for (cb, resp) in ctx.responses {
            cb(resp);
        }
        if again {
            inner.schedule_round(store);
        }
    }

    /// Runs a round's scheduler tasks on the mock scheduler, as a store's scheduler worker
    /// would: a heartbeat's answer reaches the leader's store after a hop; an ask-split's ids
    /// come back to the asking store as its Split command.
    fn scheduler_tasks(&self, inner: &mut Inner, store: u64, tasks: Vec<SchedulerTask>) {
        let mut sched = self.scheduler.lock().unwrap();
        for task in tasks {
            let latency = Duration::from_micros(inner.rng.random_range(100..2000));
            let at = inner.now + latency;
            match task {
                SchedulerTask::RegionHeartbeat(req) => {
                    // A refused heartbeat (a stale epoch) gets no answer.
                    let Ok(resp) = sched.region_heartbeat(&req) else {
                        continue;
                    };
                    let to = resp.target_peer.as_ref().map_or(0, |p| p.store_id);
                    let Some(to_inc) = inner.stores.get(&to).map(|s| s.inc) else {
                        continue;
                    };
                    let ev = Event::SchedulerResponse {
                        store: to,
                        inc: to_inc,
                        resp,
                    };
                    inner.schedule(at, ev);
                }
                SchedulerTask::StoreHeartbeat(stats) => sched.store_heartbeat(&stats),
                SchedulerTask::AskSplit {
                    region,
                    split_key,
                    peer,
                } => {
                    let Ok(ids) = sched.ask_split(&region) else {
                        continue;
                    };
                    let req = split_command(&region, split_key, peer, &ids);
                    let cb: Callback = Box::new(|_| {});
                    inner.schedule(at, Event::Command { store, req, cb });
                }
            }
        }
    }

    /// Counts of delivered and dropped messages.
    pub fn message_counts(&self) -> (u64, u64) {
        let i = self.inner.borrow();
        (i.delivered, i.dropped)
    }

    /// Counts of snapshot transfers that were delivered and that failed.
    pub fn snapshot_counts(&self) -> (u64, u64) {
        let i = self.inner.borrow();
        (i.snapshots_sent, i.snapshots_failed)
    }
}

impl Env for SimEnv {
    fn now(&self) -> Duration {
        self.inner.borrow().now
    }

    fn register_timer(&self, at: Duration, waker: Waker) {
        self.inner.borrow_mut().schedule(at, Event::Timer(waker));
    }

    fn send_command(&self, store_id: u64, req: RaftCmdRequest, cb: Callback) -> bool {
        let mut inner = self.inner.borrow_mut();
        if inner
            .stores
            .get(&store_id)
            .is_none_or(|s| s.store.is_none())
        {
            return false;
        }
        // A client's request reaches the store after a short hop too.
        let at = inner.now + Duration::from_micros(inner.rng.random_range(50..500));
        inner.schedule(
            at,
            Event::Command {
                store: store_id,
                req,
                cb,
            },
        );
        true
    }

    fn start_store(&self, store_id: u64) {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let tick = self.cfg.raft_base_tick_interval;
        let phase = Duration::from_micros(inner.rng.random_range(0..tick.as_micros() as u64));
        let now = inner.now;
        let s = inner.stores.get_mut(&store_id).expect("known store");
        assert!(s.store.is_none(), "store {store_id} is already running");
        let store = Store::new(
            self.cfg.clone(),
            s.engines.clone(),
            s.snap_mgr.clone(),
            &self.logger,
        )
        .unwrap_or_else(|e| panic!("store {store_id} cannot start: {e}"));
        check_store(store_id, &store, &s.engines);
        if let Some(t) = inner.trace.as_mut() {
            t.start(now, store_id);
            t.observe(now, store_id, &store, "start");
        }
        let s = inner.stores.get_mut(&store_id).expect("known store");
        s.store = Some(store);
        let inc = s.inc;
        inner.schedule(
            now + phase,
            Event::Tick {
                store: store_id,
                inc,
            },
        );
        inner.schedule_round(store_id);
    }

    fn stop_store(&self, store_id: u64) {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let now = inner.now;
        let s = inner.stores.get_mut(&store_id).expect("known store");
        let before = inner.trace.as_ref().and_then(|_| {
            let unsynced = s.engines.kv.unsynced_batches() + s.engines.raft.unsynced_batches();
            s.store
                .as_ref()
                .map(|st| (unsynced as u64, Tracer::before_crash(st)))
        });
        // A crash: the process is gone, and so is every write the engines had not synced.
        s.store = None;
        s.ctx = StoreContext::default();
        s.engines.kv.crash();
        s.engines.raft.crash();
        s.inc += 1;
        s.round_scheduled = false;
        if let (Some(t), Some((unsynced, lost))) = (inner.trace.as_mut(), before) {
            t.crash(now, store_id, unsynced, lost, &s.engines);
        }
    }

    fn add_filter(&self, f: Box<dyn Filter>) {
        let mut inner = self.inner.borrow_mut();
        let now = inner.now;
        if let Some(t) = inner.trace.as_mut() {
            let sides = f.sides().map_or_else(Vec::new, |(a, b)| {
                a.into_iter().chain([0]).chain(b).collect()
            });
            t.filter(now, true, f.describe(), sides);
        }
        inner.filters.push(f);
    }

    fn clear_filters(&self) {
        let mut inner = self.inner.borrow_mut();
        let now = inner.now;
        if let Some(t) = inner.trace.as_mut() {
            t.filter(now, false, "every filter removed".into(), Vec::new());
        }
        inner.filters.clear();
    }

    fn trace_client_start(&self, op: &str, key: &[u8]) -> u64 {
        let mut inner = self.inner.borrow_mut();
        let now = inner.now;
        inner
            .trace
            .as_mut()
            .map_or(0, |t| t.client_start(now, op, key))
    }

    fn trace_client_end(&self, id: u64, ok: bool, detail: String) {
        let mut inner = self.inner.borrow_mut();
        let now = inner.now;
        if let Some(t) = inner.trace.as_mut() {
            t.client_end(now, id, ok, detail);
        }
    }

    fn store_ids(&self) -> Vec<u64> {
        self.inner.borrow().stores.keys().copied().collect()
    }

    fn scheduler(&self) -> Arc<Mutex<MockScheduler>> {
        self.scheduler.clone()
    }

    fn engine_get(&self, store_id: u64, cf: &str, key: &[u8]) -> Option<Vec<u8>> {
        let inner = self.inner.borrow();
        inner.stores[&store_id]
            .engines
            .kv
            .get_cf(cf, key)
            .expect("engine read")
    }

    fn apply_state(&self, store_id: u64, region_id: u64) -> Option<RaftApplyState> {
        let inner = self.inner.borrow();
        inner.stores[&store_id]
            .engines
            .kv
            .get_msg_cf(CF_RAFT, &keys::apply_state_key(region_id))
            .expect("engine read")
    }

    fn random(&self) -> u64 {
        self.inner.borrow_mut().rng.random()
    }

    fn executor(&self) -> Rc<Executor> {
        self.exec.clone()
    }

    fn config(&self) -> Config {
        self.cfg.clone()
    }
}

thread_local! {
    /// The virtual time of the run on this thread (each run is single-threaded), for its logs.
    static VIRTUAL_NOW: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// The logger of a simulated run: `raft::default_logger`'s (silent unless `TINYKV_LOG` names a
/// level), each line stamped with the run's virtual time (`v12.345678`, seconds), not the wall
/// clock, so that a replayed seed's log reads as the run happened.
fn sim_logger() -> Logger {
    raft::util::logger_with_timestamp(|w| {
        let now = VIRTUAL_NOW.with(|t| t.get());
        write!(w, "v{:.6}", now.as_secs_f64())
    })
}

/// The live initialized replicas' regions of a store, by start key.
fn live_regions(store: &Store<MemEngine, MemEngine>) -> Vec<Region> {
    let mut regions: Vec<Region> = store
        .region_ids()
        .into_iter()
        .filter_map(|id| store.peer(id))
        .filter(|p| p.storage().is_initialized())
        .map(|p| p.region().clone())
        .collect();
    regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
    regions
}

/// What must hold on a store whenever it is between rounds (checked after each restart and at
/// the end of each run): its live replicas' ranges do not overlap and are exactly its range
/// map; every key of its kv engine's data CFs lies in the range of exactly one live replica (so
/// a removed or replaced replica left no data behind); a destroyed replica (`Tombstone`) left
/// no apply state and no raft state, unless a new, still uninitialized replica of the region
/// was created here since.
fn check_store(store_id: u64, store: &Store<MemEngine, MemEngine>, engines: &MemEngines) {
    let regions = live_regions(store);
    for w in regions.windows(2) {
        assert!(
            !w[0].end_key.is_empty() && w[0].end_key <= w[1].start_key,
            "store {store_id}: the ranges of regions {} and {} overlap: {:?} and {:?}",
            w[0].id,
            w[1].id,
            w[0],
            w[1]
        );
    }
    let registered: Vec<(Vec<u8>, Vec<u8>, u64)> = regions
        .iter()
        .map(|r| (r.start_key.clone(), r.end_key.clone(), r.id))
        .collect();
    assert_eq!(
        store.ranges(),
        registered,
        "store {store_id}: the range map is not the live replicas' ranges"
    );
    for cf in DATA_CFS {
        engines
            .kv
            .scan_cf(cf, b"", b"", &mut |k, _| {
                let i = regions.partition_point(|r| r.start_key.as_slice() <= k);
                let covered = i > 0 && region_contains(&regions[i - 1], k);
                assert!(
                    covered,
                    "store {store_id}: key {k:?} of cf {cf} lies in no live replica's range \
                     (ranges: {registered:?})"
                );
                Ok(true)
            })
            .expect("engine scan");
    }
    let mut tombstones = Vec::new();
    engines
        .kv
        .scan_cf(
            CF_RAFT,
            keys::region_meta_min_key(),
            keys::region_meta_max_key(),
            &mut |k, v| {
                if let Ok((id, keys::REGION_STATE_SUFFIX)) = keys::decode_region_meta_key(k) {
                    let st = RegionLocalState::decode(v).expect("region state");
                    if st.state() == PeerState::Tombstone {
                        tombstones.push(id);
                    }
                }
                Ok(true)
            },
        )
        .expect("engine scan");
    for id in tombstones {
        if let Some(p) = store.peer(id) {
            // A message of a newer epoch may have created a new replica since: it stays
            // uninitialized (and the region state a tombstone) until its snapshot is installed.
            assert!(
                !p.storage().is_initialized(),
                "store {store_id}: region {id} is a tombstone with an initialized replica"
            );
            continue;
        }
        assert!(
            engines
                .kv
                .get_cf(CF_RAFT, &keys::apply_state_key(id))
                .expect("engine read")
                .is_none(),
            "store {store_id}: destroyed region {id} left its apply state"
        );
        assert!(
            engines
                .raft
                .get_cf(CF_DEFAULT, &keys::raft_state_key(id))
                .expect("engine read")
                .is_none(),
            "store {store_id}: destroyed region {id} left its raft state"
        );
    }
}

impl SimEnv {
    /// The checks of the end of a run: every running store's (`check_store`), and across the
    /// cluster, the newest known version of each region (by epoch, over every live replica)
    /// tiles the whole key space: no gap, no overlap.
    fn check_cluster(&self) {
        let inner = self.inner.borrow();
        let mut newest: BTreeMap<u64, Region> = BTreeMap::new();
        for (&id, s) in &inner.stores {
            let Some(store) = s.store.as_ref() else {
                continue;
            };
            check_store(id, store, &s.engines);
            for r in live_regions(store) {
                let e = r.region_epoch.unwrap_or_default();
                let newer = newest.get(&r.id).is_none_or(|o| {
                    let oe = o.region_epoch.unwrap_or_default();
                    (e.version, e.conf_ver) > (oe.version, oe.conf_ver)
                });
                if newer {
                    newest.insert(r.id, r);
                }
            }
        }
        if newest.is_empty() {
            return;
        }
        let mut tiles: Vec<Region> = newest.into_values().collect();
        tiles.sort_by(|a, b| a.start_key.cmp(&b.start_key));
        let shown: Vec<_> = tiles
            .iter()
            .map(|r| (r.id, r.start_key.clone(), r.end_key.clone()))
            .collect();
        assert!(
            tiles[0].start_key.is_empty(),
            "the regions do not start at the first key: {shown:?}"
        );
        assert!(
            tiles.last().unwrap().end_key.is_empty(),
            "the regions do not reach the last key: {shown:?}"
        );
        for w in tiles.windows(2) {
            assert_eq!(
                w[0].end_key, w[1].start_key,
                "regions {} and {} do not meet: {shown:?}",
                w[0].id, w[1].id
            );
        }
    }
}

/// What a simulated run produced: its digest and what it did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// The digest of every delivered event.
    pub digest: u64,
    /// Requests the test's clients completed.
    pub ops: u64,
    /// Snapshot transfers that reached their receiver.
    pub snapshots_sent: u64,
    /// Snapshots a store applied.
    pub snapshots_installed: u64,
    /// The virtual time the run simulated.
    pub virtual_time: Duration,
}

/// What a scenario must show about snapshots, checked after all its seeds ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snapshots {
    /// Nothing.
    Any,
    /// Every seed sent and installed a snapshot.
    EverySeed,
    /// At least one seed of the set sent and installed one (the scenario as TinyKV wrote it does
    /// not need one on every schedule); not checked when a single seed runs (a replay).
    SomeSeed,
}

/// Runs `test` on a simulated cluster of `count` stores for every seed (10 by default; see
/// [`crate::seeds`]). Prints `seed=<n> digest=<hex>` with the run's counts for each run, and for
/// a failing run the command that replays it; panics if any seed failed.
pub fn run<F, Fut>(name: &str, count: u64, cfg: Config, test: F)
where
    F: Fn(Cluster) -> Fut + Sync,
    Fut: Future<Output = ()>,
{
    run_seeds(name, 10, count, cfg, test)
}

/// Like [`run`], with `default_seeds` seeds when no seed variable is set (for a scenario whose
/// every seed is costly).
pub fn run_seeds<F, Fut>(name: &str, default_seeds: u64, count: u64, cfg: Config, test: F)
where
    F: Fn(Cluster) -> Fut + Sync,
    Fut: Future<Output = ()>,
{
    run_scenario(name, default_seeds, count, cfg, Snapshots::Any, test)
}

/// The command that replays `seed` of the scenario `name` run by this test binary.
fn replay_command(name: &str, seed: u64) -> String {
    // A test binary is named `<target>-<hash>`.
    let target = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .and_then(|s| s.rsplit_once('-').map(|(t, _)| t.to_string()));
    let test = target.map_or(String::new(), |t| format!(" --test {t}"));
    // `--workspace`, not `-p test_raftstore`: with `-p` cargo resolves the dependencies' features
    // differently and rebuilds RocksDB's C++ before replaying.
    format!("TINYKV_SEED={seed} cargo test --workspace{test} -- {name} --exact --nocapture")
}

/// Prints one line of a scenario's report straight to the process's stdout, past the test
/// runner's capture, so that every run's seed, digest and counts show in the log of a passing
/// suite too (`cargo test` shows captured output only for a failing test).
fn report(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
}

/// How many seeds of one scenario run at once: `TINYKV_SIM_THREADS`, else the machine's cores.
pub fn sim_threads() -> usize {
    std::env::var("TINYKV_SIM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Like [`run_seeds`], and then checks what `snapshots` asks of the runs' snapshot counts.
pub fn run_scenario<F, Fut>(
    name: &str,
    default_seeds: u64,
    count: u64,
    cfg: Config,
    snapshots: Snapshots,
    test: F,
) where
    F: Fn(Cluster) -> Fut + Sync,
    Fut: Future<Output = ()>,
{
    let seeds = seeds(name, default_seeds);
    let target = TraceTarget::from_env();
    let several = seeds.len() > 1;
    // Seeds are independent runs, each on one thread of its own: they run side by side on
    // `sim_threads()` threads (a run itself stays single-threaded, so each is still a function of
    // its seed alone), and a scenario's many seeds no longer take one core for the whole suite.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let outcomes: Mutex<Vec<(u64, Option<RunStats>)>> = Mutex::new(Vec::new());
    let workers = sim_threads().min(seeds.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&seed) = seeds.get(i) else { break };
                let wall = std::time::Instant::now();
                let result = match &target {
                    TraceTarget::Always(_) => {
                        let path = target.path(name, seed, several);
                        let r = run_seed_traced(name, seed, count, cfg.clone(), &test, &path);
                        report(format_args!(
                            "{name}: seed={seed} trace: {}",
                            path.display()
                        ));
                        r
                    }
                    TraceTarget::OnFailure(_) => catch_unwind(AssertUnwindSafe(|| {
                        run_seed_stats(seed, count, cfg.clone(), &test)
                    })),
                };
                match &result {
                    Ok(st) => {
                        let virt = st.virtual_time.as_secs_f64();
                        report(format_args!(
                            "{name}: seed={seed} digest={:016x} ops={} snapshots sent={} \
                             installed={} virtual={virt:.1}s x{:.0}",
                            st.digest,
                            st.ops,
                            st.snapshots_sent,
                            st.snapshots_installed,
                            virt / wall.elapsed().as_secs_f64().max(1e-9)
                        ));
                    }
                    Err(_) => report(format_args!(
                        "{name}: seed={seed} FAILED; replay: {}",
                        replay_command(name, seed)
                    )),
                }
                outcomes.lock().unwrap().push((seed, result.ok()));
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by_key(|&(seed, _)| seed);
    let failed: Vec<u64> = outcomes
        .iter()
        .filter(|(_, st)| st.is_none())
        .map(|&(seed, _)| seed)
        .collect();
    let without_snapshot: Vec<u64> = outcomes
        .iter()
        .filter(|(_, st)| {
            st.is_some_and(|st| st.snapshots_sent == 0 || st.snapshots_installed == 0)
        })
        .map(|&(seed, _)| seed)
        .collect();
    // The first failing seed is run again, traced (one trace tells the story; the others replay
    // the same way when asked).
    if let (Some(&seed), TraceTarget::OnFailure(_)) = (failed.first(), &target) {
        trace_failed_seed(name, seed, count, cfg.clone(), &test, &target);
    }
    assert!(failed.is_empty(), "{name}: failing seeds {failed:?}");
    match snapshots {
        Snapshots::Any => {}
        Snapshots::EverySeed => {
            for &seed in &without_snapshot {
                report(format_args!(
                    "{name}: seed={seed} sent or installed no snapshot; replay: {}",
                    replay_command(name, seed)
                ));
            }
            assert!(
                without_snapshot.is_empty(),
                "{name}: seeds {without_snapshot:?} sent or installed no snapshot"
            );
        }
        Snapshots::SomeSeed => {
            assert!(
                seeds.len() < 2 || without_snapshot.len() < seeds.len(),
                "{name}: none of the seeds {seeds:?} sent and installed a snapshot"
            );
        }
    }
}

/// Runs a failing seed again, traced, into `target`'s directory, and says where the trace is
/// and how to look at it.
fn trace_failed_seed<F, Fut>(
    name: &str,
    seed: u64,
    count: u64,
    cfg: Config,
    test: &F,
    target: &TraceTarget,
) where
    F: Fn(Cluster) -> Fut,
    Fut: Future<Output = ()>,
{
    let path = target.path(name, seed, true);
    report(format_args!(
        "{name}: seed={seed} running it again, traced (the panic shows twice)"
    ));
    let again = run_seed_traced(name, seed, count, cfg, test, &path);
    let p = path.display();
    if again.is_ok() {
        report(format_args!(
            "{name}: seed={seed} the traced replay PASSED: this run is not a function of its \
             seed (a bug of the simulator or of the test); trace: {p}"
        ));
        return;
    }
    report(format_args!(
        "{name}: seed={seed} trace: {p}\n  why:  cargo run -q --bin tinykv-trace -- explain {p}\n  \
         see:  cargo run -q --bin tinykv-trace -- view {p} --out {name}-seed{seed}.html"
    ));
}

thread_local! {
    /// Where the last panic on this thread happened (`file:line:col`), for a trace's failure.
    static LAST_PANIC_AT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Wraps the process's panic hook once so that a panic's location is kept for the trace of the
/// run it ended (the previous hook still prints it).
fn keep_panic_locations() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let at = info.location().map_or_else(String::new, |l| l.to_string());
            LAST_PANIC_AT.with(|l| *l.borrow_mut() = at);
            prev(info)
        }));
    });
}

/// The message of a panic's payload.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs one seed traced, and writes its trace to `path` whether it passes or fails (a failure
/// ends the trace with its message and location).
pub fn run_seed_traced<F, Fut>(
    name: &str,
    seed: u64,
    count: u64,
    cfg: Config,
    test: &F,
    path: &std::path::Path,
) -> std::thread::Result<RunStats>
where
    F: Fn(Cluster) -> Fut,
    Fut: Future<Output = ()>,
{
    keep_panic_locations();
    let tracer = Tracer::new(
        name,
        seed,
        (1..=count).collect(),
        replay_command(name, seed),
    );
    let env = SimEnv::new_traced(seed, count, cfg, sim_logger(), Some(tracer));
    LAST_PANIC_AT.with(|l| l.borrow_mut().clear());
    let result = catch_unwind(AssertUnwindSafe(|| run_seed_on(&env, test)));
    let failure = result
        .as_ref()
        .err()
        .map(|p| tinykv_trace::record::Failure {
            message: panic_message(p.as_ref()),
            location: LAST_PANIC_AT.with(|l| l.borrow().clone()),
        });
    let tracer = env.inner.borrow_mut().trace.take().expect("a traced run");
    let bytes = tracer.finish(env.now(), env.digest(), failure);
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|_| std::fs::write(path, bytes));
    if let Err(e) = written {
        report(format_args!(
            "{name}: seed={seed} the trace was not written to {}: {e}",
            path.display()
        ));
    }
    result
}

/// Runs one seed and returns its digest and counts.
pub fn run_seed_stats<F, Fut>(seed: u64, count: u64, cfg: Config, test: &F) -> RunStats
where
    F: Fn(Cluster) -> Fut,
    Fut: Future<Output = ()>,
{
    run_seed_on(&SimEnv::new(seed, count, cfg, sim_logger()), test)
}

/// Runs `test` on `env` to its end, then the end-of-run checks.
fn run_seed_on<F, Fut>(env: &Rc<SimEnv>, test: &F) -> RunStats
where
    F: Fn(Cluster) -> Fut,
    Fut: Future<Output = ()>,
{
    let env = env.clone();
    let exec = env.exec.clone();
    let dyn_env: Rc<dyn Env> = env.clone();
    let cluster = Cluster::new(dyn_env);
    let counted = cluster.clone();
    let e2 = env.clone();
    struct Clear(Rc<Executor>);
    impl Drop for Clear {
        fn drop(&mut self) {
            self.0.clear();
        }
    }
    let _clear = Clear(exec.clone());
    exec.block_on(test(cluster), || e2.step());
    env.check_cluster();
    let inner = env.inner.borrow();
    RunStats {
        digest: inner.digest.value(),
        ops: counted.ops(),
        snapshots_sent: inner.snapshots_sent,
        snapshots_installed: inner.snapshots_installed,
        virtual_time: env.now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::DropFilter;

    /// A short run with something of everything a seed decides: latencies, drops, a crash and a
    /// restart, the round and the syncs (odd seeds sync the raft log off the round).
    async fn workload(c: Cluster) {
        for i in 0..20u32 {
            c.must_put(format!("a{i}").as_bytes(), b"v").await;
        }
        c.add_filter(DropFilter::default());
        c.stop_store(3);
        for i in 0..20u32 {
            c.must_put(format!("b{i}").as_bytes(), b"v").await;
        }
        c.clear_filters();
        c.start_store(3);
        c.must_put(b"last", b"v").await;
        c.must_get_equal(3, b"last", b"v").await;
    }

    /// A seed replays bit for bit: the same digest and counts when run again, and when two runs
    /// of it go side by side on two threads (as a scenario's seeds do), so that no state is
    /// shared between runs.
    #[test]
    fn a_seed_replays_bit_for_bit() {
        for seed in [4, 7] {
            let cfg = Config::test_config();
            let first = run_seed_stats(seed, 3, cfg.clone(), &workload);
            assert!(first.ops > 40, "the workload ran: {first:?}");
            let side_by_side: Vec<RunStats> = std::thread::scope(|s| {
                let runs: Vec<_> = (0..2)
                    .map(|_| s.spawn(|| run_seed_stats(seed, 3, cfg.clone(), &workload)))
                    .collect();
                runs.into_iter().map(|r| r.join().unwrap()).collect()
            });
            for again in side_by_side {
                assert_eq!(again, first, "seed {seed} did not replay");
            }
        }
        // And a different seed is a different run.
        let a = run_seed_stats(4, 3, Config::test_config(), &workload);
        let b = run_seed_stats(5, 3, Config::test_config(), &workload);
        assert_ne!(a.digest, b.digest);
    }

    /// A traced run is the same run (the digest of the untraced one), its trace is the same
    /// bytes on every replay and ends with that digest, it holds every kind of event the
    /// workload makes, and raft's invariants hold over it.
    #[test]
    fn a_traced_seed_replays_to_the_same_trace() {
        use tinykv_trace::record::Kind;
        let dir = tempfile::tempdir().unwrap();
        let (p1, p2) = (dir.path().join("1.trace"), dir.path().join("2.trace"));
        let plain = run_seed_stats(7, 3, Config::test_config(), &workload);
        let first = run_seed_traced("workload", 7, 3, Config::test_config(), &workload, &p1)
            .expect("the workload passes");
        run_seed_traced("workload", 7, 3, Config::test_config(), &workload, &p2).unwrap();
        assert_eq!(first, plain, "tracing changed the run");
        let bytes = std::fs::read(&p1).unwrap();
        assert!(
            bytes == std::fs::read(&p2).unwrap(),
            "a replay gave another trace"
        );
        let trace = tinykv_trace::read(&p1).unwrap();
        assert!(trace.complete);
        assert_eq!(trace.digest(), Some(plain.digest));
        let mut kinds = std::collections::BTreeSet::new();
        for r in &trace.records {
            let k = match r.kind.as_ref().unwrap() {
                Kind::Header(_) => "header",
                Kind::Send(_) => "send",
                Kind::Deliver(_) => "deliver",
                Kind::Drop(_) => "drop",
                Kind::Role(_) => "role",
                Kind::Commit(_) => "commit",
                Kind::Apply(_) => "apply",
                Kind::Command(_) => "command",
                Kind::Response(_) => "response",
                Kind::ClientStart(_) => "client start",
                Kind::ClientEnd(_) => "client end",
                Kind::Crash(_) => "crash",
                Kind::Start(_) => "start",
                Kind::Filter(_) => "filter",
                Kind::Region(_) => "region",
                Kind::Footer(_) => "footer",
                Kind::Snapshot(_) | Kind::Failure(_) | Kind::Note(_) => continue,
            };
            kinds.insert(k);
        }
        assert_eq!(kinds.len(), 16, "kinds recorded: {kinds:?}");
        let violations = tinykv_trace::check::check(&trace);
        assert!(violations.is_empty(), "{violations:?}");
    }

    /// A failing run's trace ends with the failure (its message and location), and the
    /// explanation names it and the client operation that failed.
    #[test]
    fn a_failing_run_is_traced_with_its_failure() {
        async fn fails(c: Cluster) {
            c.must_put(b"k1", b"v1").await;
            c.stop_store(1);
            c.stop_store(2);
            c.stop_store(3);
            c.must_put(b"k2", b"v2").await; // no store is up: this times out
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.trace");
        let r = run_seed_traced("fails", 3, 3, Config::test_config(), &fails, &path);
        assert!(r.is_err());
        let trace = tinykv_trace::read(&path).unwrap();
        let failure = trace
            .records
            .iter()
            .find_map(|r| match &r.kind {
                Some(tinykv_trace::record::Kind::Failure(f)) => Some(f.clone()),
                _ => None,
            })
            .expect("a failure record");
        assert!(failure.message.contains("request timeout"), "{failure:?}");
        assert!(failure.location.contains("cluster.rs"), "{failure:?}");
        let why = tinykv_trace::check::explain(&trace, 10);
        assert!(why.contains("request timeout"), "{why}");
        assert!(why.contains("client op"), "{why}");
        assert!(why.contains("CRASHED"), "{why}");
    }
}
