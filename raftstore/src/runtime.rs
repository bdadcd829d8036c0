//! The threaded runtime: the store's handlers driven by threads of their own (the cluster test
//! harness and the benchmarks run stores this way; `tinykv-server` runs the same
//! [`StoreDriver`] as a task of its gRPC runtime, with the same worker threads).
//!
//! - a **poller** thread owns the `Store`; it blocks on a crossbeam-channel mailbox, drains up to
//!   `MAX_BATCH` messages at a time, runs the handlers, then the round for the whole batch
//!   (`Store::round`: its first half; leaders' appends and early answers carried out; its second
//!   half, with one synced raft write per round: group commit), and carries out the round's
//!   effects;
//! - the poller also keeps the base tick, from the wall clock (the handlers never read it);
//! - with `Config::async_raft_sync`, a **raft-sync** thread syncs the raft engine after the
//!   rounds that left their write unsynced (one sync for every request queued meanwhile: group
//!   commit again) and reports `StoreMsg::RaftSynced`, so the poller goes on with new rounds
//!   while the fsync is under way;
//! - a **region worker** thread generates and applies snapshots, and a **log-GC worker** thread
//!   deletes compacted raft logs, so neither stalls the poller (which keeps serving every other
//!   region while a snapshot is installed). Their results come back as `StoreMsg::TaskFinished`
//!   in the store's mailbox, handled like any other event.
//!
//! Raft messages leave through a `Transport`, region heartbeats through a `SchedulerClient`;
//! callbacks are called on the poller thread (they should only send on a channel).
//!
//! The poller's work between two waits for its mailbox is [`StoreDriver`]: handle a message,
//! then a round with its effects carried out, then (when nothing else waits) the round's sync
//! in place. `start_store` runs it on a thread of its own; a driver with an event loop of its own
//! can run it there instead (kvserver runs it as a task of its gRPC runtime, so that a message
//! from the network reaches the store, and the store's answer the network, without a thread
//! switch). Its workers report through a [`Mailbox`].
//!
//! # Snapshots and the transport
//!
//! A MsgSnapshot (`snap::is_snapshot_msg`) carries only the snapshot's metadata; its data is in
//! files of the sending store's [`SnapManager`]. A transport must, for such a message:
//! 1. stream the files with `SnapManager::chunk_reader(&msg)` on the sender's manager (bounded
//!    chunks), apart from the ordinary message stream;
//! 2. on the receiving store, feed them to `SnapManager::receiver(&msg)` of the receiver's manager
//!    and call `finish()`, which checks every file's size and checksum;
//! 3. only then deliver the message to the receiving store (`StoreMsg::Raft`);
//! 4. report the outcome to the *sending* store: `StoreMsg::ReportSnapshot` with
//!    `SnapshotStatus::Finish` once delivered, `Failure` on any error (unreachable, corrupt,
//!    truncated): raft waits for that report before it replicates to that peer again, and after a
//!    failure it sends a new snapshot later. Failures should be logged.
//!
//! `snap::copy_snapshot` does 1–2 when both managers are in one process.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use proto::raft_cmdpb::RaftCmdRequest;
use proto::raft_serverpb::RaftMessage;
use proto::schedulerpb::RegionHeartbeatResponse;
use raft::SnapshotStatus;
use slog::{error, info, warn, Logger};

use crate::callback::{Callback, CmdResponse};
use crate::config::Config;
use crate::context::StoreContext;
use crate::engine::{Engine, EngineError, Engines};
use crate::errors::{Error, Result};
use crate::metrics;
use crate::scheduler::{run_scheduler_task, SchedulerTask};
use crate::snap::SnapManager;
use crate::store::Store;
use crate::task::{Task, TaskResult};
use crate::worker::run_task;

/// Most messages handled in one round.
pub const MAX_BATCH: usize = 4096;

/// Where a store's raft messages go. Sending must not block for long; a message that cannot be
/// delivered may be dropped (raft retries). A MsgSnapshot must be carried with its files and its
/// outcome reported, as the module documentation says.
pub trait Transport: Send + 'static {
    /// Sends a message to the store named by `msg.to_peer.store_id`.
    fn send(&mut self, msg: RaftMessage) -> Result<()>;
    /// Called at the end of each round, after the round's sends: a chance to flush buffers.
    fn flush(&mut self) {}
}

pub use crate::scheduler::{NoScheduler, SchedulerClient};

/// A message to a running store.
pub enum StoreMsg {
    /// A raft message from another store.
    Raft(RaftMessage),
    /// A command for one of its regions.
    Command(RaftCmdRequest, Callback),
    /// The transport's report on a MsgSnapshot this store sent (see the module documentation).
    ReportSnapshot {
        /// The region of the snapshot.
        region_id: u64,
        /// The peer it was sent to.
        to_peer_id: u64,
        /// Whether it was delivered (`Finish`) or not (`Failure`).
        status: SnapshotStatus,
    },
    /// The scheduler's answer to a region heartbeat of this store (delivered by the scheduler
    /// client): an operator to carry out, if it holds one.
    SchedulerResponse(RegionHeartbeatResponse),
    /// A background task of this store finished (sent by its workers).
    TaskFinished(TaskResult),
    /// The raft-sync thread synced the raft engine after the unsynced write with this number,
    /// or failed to.
    RaftSynced(std::result::Result<u64, EngineError>),
    /// Stop the store.
    Stop,
}

/// A handle to a running store: send it messages and commands, stop it.
pub struct StoreHandle {
    /// The store's id.
    pub store_id: u64,
    sender: Sender<StoreMsg>,
    poller: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl StoreHandle {
    /// A sender for the store's mailbox (for transports and clients).
    pub fn sender(&self) -> Sender<StoreMsg> {
        self.sender.clone()
    }

    /// Delivers a raft message.
    pub fn send_raft_message(&self, msg: RaftMessage) -> Result<()> {
        self.sender
            .send(StoreMsg::Raft(msg))
            .map_err(|_| Error::StoreStopped(self.store_id))
    }

    /// Sends a command; `cb` gets the result (or is dropped if the store stops first).
    pub fn send_command(&self, req: RaftCmdRequest, cb: Callback) -> Result<()> {
        self.sender
            .send(StoreMsg::Command(req, cb))
            .map_err(|_| Error::StoreStopped(self.store_id))
    }

    /// Stops the store and waits for its threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.sender.send(StoreMsg::Stop);
        if let Some(p) = self.poller.take() {
            let _ = p.join();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for StoreHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Opens the store on bootstrapped `engines`, with its snapshot files in `snap_mgr`, and starts
/// its threads.
pub fn start_store<K, R, T, S>(
    cfg: Config,
    engines: Engines<K, R>,
    snap_mgr: SnapManager,
    transport: T,
    scheduler: S,
    logger: &Logger,
) -> Result<StoreHandle>
where
    K: Engine,
    R: Engine,
    T: Transport,
    S: SchedulerClient,
{
    let (tx, rx) = crossbeam_channel::unbounded();
    start_store_with_mailbox(cfg, engines, snap_mgr, transport, scheduler, logger, tx, rx)
}

/// Like `start_store`, with a mailbox made beforehand (so a transport can hold its sender before
/// the store exists, e.g. to report snapshots).
#[allow(clippy::too_many_arguments)]
pub fn start_store_with_mailbox<K, R, T, S>(
    cfg: Config,
    engines: Engines<K, R>,
    snap_mgr: SnapManager,
    transport: T,
    scheduler: S,
    logger: &Logger,
    tx: Sender<StoreMsg>,
    rx: Receiver<StoreMsg>,
) -> Result<StoreHandle>
where
    K: Engine,
    R: Engine,
    T: Transport,
    S: SchedulerClient,
{
    let (mut driver, workers) = StoreDriver::new(
        cfg,
        engines,
        snap_mgr,
        transport,
        scheduler,
        logger,
        tx.clone(),
    )?;
    let store_id = driver.store_id();
    let poller = std::thread::Builder::new()
        .name(format!("store-{store_id}-poller"))
        .spawn(move || driver.run_blocking(&rx))
        .map_err(|source| Error::Spawn {
            thread: "poller",
            source,
        })?;
    Ok(StoreHandle {
        store_id,
        sender: tx,
        poller: Some(poller),
        workers,
    })
}

/// Starts the scheduler worker of store `store_id`: it owns the scheduler client and runs the
/// store's scheduler tasks with it (a call may be a network round trip, so not on the poller);
/// the Split command an ask-split leads to goes to the store's `mailbox`.
fn spawn_scheduler_worker<S: SchedulerClient, M: Mailbox>(
    store_id: u64,
    mut client: S,
    mailbox: M,
    logger: &Logger,
) -> Result<(Sender<SchedulerTask>, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::unbounded::<SchedulerTask>();
    let logger = logger.clone();
    let handle = std::thread::Builder::new()
        .name(format!("store-{store_id}-scheduler"))
        .spawn(move || {
            for task in rx {
                let (kind, id) = task.summary();
                match run_scheduler_task(&mut client, task) {
                    Ok(Some(cmd)) => {
                        let log = logger.clone();
                        let cb: Callback = Box::new(move |r: CmdResponse| {
                            if let Some(e) = r.region_error() {
                                info!(log, "split not applied"; "err" => &e.message);
                            }
                        });
                        if !mailbox.deliver(StoreMsg::Command(cmd, cb)) {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => warn!(logger, "scheduler task failed"; "task" => kind, "id" => id,
                        "err" => %e),
                }
            }
        })
        .map_err(|source| Error::Spawn {
            thread: "scheduler",
            source,
        })?;
    Ok((tx, handle))
}

/// Where a store's worker threads send what they finished: the store's own mailbox, whatever
/// channel carries it.
pub trait Mailbox: Clone + Send + 'static {
    /// Delivers `msg`; false when the store is gone.
    fn deliver(&self, msg: StoreMsg) -> bool;
}

impl Mailbox for Sender<StoreMsg> {
    fn deliver(&self, msg: StoreMsg) -> bool {
        self.send(msg).is_ok()
    }
}

/// A running store between two waits for its mailbox: the store, its transport and scheduler
/// client, the senders to its worker threads, and its base tick. The loop that owns it waits for
/// a message (at most [`StoreDriver::wait`]), hands it and whatever else is in the mailbox to
/// [`StoreDriver::handle_batch`], then calls [`StoreDriver::round`], and, when that returns a sync to
/// make, [`StoreDriver::sync_inline`] (after letting the round's messages leave, if its sends
/// only queue them on the same thread).
pub struct StoreDriver<K: Engine, R: Engine, T> {
    store: Store<K, R>,
    ctx: StoreContext,
    out: Outlets<T>,
    tick: Duration,
    next_tick: Instant,
    logger: Logger,
}

/// Where a running store's effects go: its transport and the senders to its worker threads.
struct Outlets<T> {
    transport: T,
    /// The scheduler worker, which owns the scheduler client.
    scheduler_tx: Sender<SchedulerTask>,
    /// The region worker (snapshot generation and application).
    region_tx: Sender<Task>,
    /// The split-check worker.
    split_tx: Sender<Task>,
    /// The log-GC worker.
    gc_tx: Sender<Task>,
    /// The raft-sync thread (dropped when the driver stops, which ends that thread).
    sync_tx: Option<Sender<u64>>,
    logger: Logger,
}

impl<K: Engine, R: Engine, T: Transport> StoreDriver<K, R, T> {
    /// Opens the store on bootstrapped `engines` and starts its worker threads (region worker,
    /// log-GC worker, raft-sync thread), which report to `mailbox`. Returns the driver and the
    /// threads' handles: they end once the driver is dropped.
    pub fn new<M: Mailbox, S: SchedulerClient>(
        cfg: Config,
        engines: Engines<K, R>,
        snap_mgr: SnapManager,
        transport: T,
        scheduler: S,
        logger: &Logger,
        mailbox: M,
    ) -> Result<(Self, Vec<JoinHandle<()>>)> {
        let tick = cfg.raft_base_tick_interval;
        let store = Store::new(cfg, engines.clone(), snap_mgr.clone(), logger)?;
        let store_id = store.store_id;
        let mut workers = Vec::new();
        let mut spawn_worker = |name: &'static str| -> Result<Sender<Task>> {
            let (task_tx, task_rx) = crossbeam_channel::unbounded::<Task>();
            let (engines, snap_mgr, mailbox) = (engines.clone(), snap_mgr.clone(), mailbox.clone());
            let wlogger = logger.clone();
            let handle = std::thread::Builder::new()
                .name(format!("store-{store_id}-{name}"))
                .spawn(move || {
                    for task in task_rx {
                        let desc = format!("{task:?}");
                        match run_task(&engines, &snap_mgr, task) {
                            // The store may have stopped meanwhile; then nobody needs the result.
                            Ok(Some(r)) => drop(mailbox.deliver(StoreMsg::TaskFinished(r))),
                            Ok(None) => {}
                            Err(e) => {
                                error!(wlogger, "background task failed"; "task" => desc, "err" => %e)
                            }
                        }
                    }
                })
                .map_err(|source| Error::Spawn {
                    thread: name,
                    source,
                })?;
            workers.push(handle);
            Ok(task_tx)
        };
        let region_tx = spawn_worker("region")?;
        let gc_tx = spawn_worker("raftlog-gc")?;
        let split_tx = spawn_worker("split-check")?;
        let scheduler_tx = spawn_scheduler_worker(store_id, scheduler, mailbox.clone(), logger)?;
        workers.push(scheduler_tx.1);
        let scheduler_tx = scheduler_tx.0;
        let (sync_tx, sync_rx) = crossbeam_channel::unbounded::<u64>();
        {
            let raft = engines.raft.clone();
            let handle = std::thread::Builder::new()
                .name(format!("store-{store_id}-raft-sync"))
                .spawn(move || {
                    while let Ok(mut seq) = sync_rx.recv() {
                        // Every write numbered up to the newest request is in the engine already.
                        seq = sync_rx.try_iter().fold(seq, u64::max);
                        let result = raft.sync().map(|()| seq);
                        if !mailbox.deliver(StoreMsg::RaftSynced(result)) {
                            break;
                        }
                    }
                })
                .map_err(|source| Error::Spawn {
                    thread: "raft-sync",
                    source,
                })?;
            workers.push(handle);
        }
        info!(logger, "store running"; "store_id" => store_id);
        let driver = StoreDriver {
            store,
            ctx: StoreContext::default(),
            out: Outlets {
                transport,
                scheduler_tx,
                region_tx,
                gc_tx,
                split_tx,
                sync_tx: Some(sync_tx),
                logger: logger.clone(),
            },
            tick,
            next_tick: Instant::now() + tick,
            logger: logger.clone(),
        };
        Ok((driver, workers))
    }

    /// The store's id.
    pub fn store_id(&self) -> u64 {
        self.store.store_id
    }

    /// How long the loop may wait for the next message: zero while a replica has work, else
    /// until the next base tick.
    pub fn wait(&self) -> Duration {
        if self.store.has_ready() {
            Duration::ZERO
        } else {
            self.next_tick.saturating_duration_since(Instant::now())
        }
    }

    /// The loop of `start_store`'s poller thread: waits on `rx`, drains up to `MAX_BATCH`
    /// messages at a time, runs the round, syncs in place when the mailbox is empty.
    fn run_blocking(&mut self, rx: &Receiver<StoreMsg>) {
        loop {
            let step = (|| -> Result<bool> {
                match rx.recv_timeout(self.wait()) {
                    Ok(msg) => {
                        if self.handle_batch(msg, rx.try_iter())? {
                            return Ok(true);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Ok(true),
                }
                if let Some(seq) = self.round(rx.is_empty())? {
                    self.sync_inline(seq)?;
                }
                Ok(false)
            })();
            match step {
                Ok(false) => {}
                Ok(true) => break,
                Err(e) => {
                    self.fail(e, rx.try_iter());
                    return;
                }
            }
        }
        self.stop();
    }

    /// Stops the store: ends the raft-sync thread (the workers end when the driver is dropped).
    pub fn stop(&mut self) {
        info!(self.logger, "store stopping"; "store_id" => self.store.store_id);
        self.out.sync_tx = None;
    }

    /// After an engine failure (from `handle`, `round` or `sync_inline`): the store cannot keep
    /// its promises any more. Answers the round's pending responses, fails the commands still in
    /// the mailbox (`rest`), and stops.
    pub fn fail(&mut self, e: Error, rest: impl IntoIterator<Item = StoreMsg>) {
        error!(self.logger, "store round failed; stopping the store"; "err" => %e);
        for (cb, resp) in self.ctx.responses.drain(..) {
            cb(resp);
        }
        for msg in rest {
            if let StoreMsg::Command(_, cb) = msg {
                cb(CmdResponse::error(
                    Error::StoreStopped(self.store.store_id),
                    0,
                ));
            }
        }
        self.out.sync_tx = None;
    }

    /// The round after a batch of messages: the base tick when it is due, both halves of the
    /// round with their effects carried out (the leaders' appends between them). With `idle`
    /// (nothing else in the mailbox) a sync the round asked for is returned, for the loop to do
    /// in place with [`StoreDriver::sync_inline`] once the round's messages have left: handing
    /// it to the raft-sync thread would only add two thread wake-ups to the wait. Otherwise the
    /// raft-sync thread gets it. Its duration goes to `metrics::ROUND_DURATION`.
    pub fn round(&mut self, idle: bool) -> Result<Option<u64>> {
        let now = Instant::now();
        if now >= self.next_tick {
            self.store.on_tick(&mut self.ctx);
            self.next_tick += self.tick;
            if self.next_tick < now {
                // Far behind (a long round or a paused process): do not tick in a burst.
                self.next_tick = now + self.tick;
            }
        }
        // Leaders' appends and the answers that need no fsync of this round leave between the
        // two halves, while the raft write of the round is under way elsewhere.
        let out = &mut self.out;
        self.store.round(&mut self.ctx, |ctx| out.carry_out(ctx))?;
        let inline = if idle {
            self.ctx.sync_request.take()
        } else {
            None
        };
        self.carry_out();
        metrics::ROUND_DURATION.observe(metrics::seconds_since(now));
        Ok(inline)
    }

    /// Syncs the raft engine here and now for the unsynced write numbered `seq` (from
    /// [`StoreDriver::round`]), and carries out what waited for it.
    pub fn sync_inline(&mut self, seq: u64) -> Result<()> {
        self.store.sync_raft(&mut self.ctx, seq)?;
        self.carry_out();
        Ok(())
    }

    /// Handles `first` and then what `more` yields (what else is in the mailbox), `MAX_BATCH`
    /// messages at most, for one round; true on Stop. An error is an engine failure: call
    /// [`StoreDriver::fail`].
    pub fn handle_batch(
        &mut self,
        first: StoreMsg,
        more: impl Iterator<Item = StoreMsg>,
    ) -> Result<bool> {
        for msg in std::iter::once(first).chain(more.take(MAX_BATCH - 1)) {
            if self.handle(msg)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Handles one message; true on Stop.
    fn handle(&mut self, msg: StoreMsg) -> Result<bool> {
        let ctx = &mut self.ctx;
        match msg {
            StoreMsg::RaftSynced(result) => {
                let seq = result?;
                self.store.on_synced(ctx, seq)?;
            }
            StoreMsg::Raft(m) => self.store.on_raft_message(ctx, m),
            StoreMsg::Command(req, cb) => self.store.on_command(ctx, req, cb),
            StoreMsg::ReportSnapshot {
                region_id,
                to_peer_id,
                status,
            } => self
                .store
                .on_snapshot_status(ctx, region_id, to_peer_id, status),
            StoreMsg::TaskFinished(r) => self.store.on_task_result(ctx, r),
            StoreMsg::SchedulerResponse(resp) => self.store.on_scheduler_response(ctx, resp),
            StoreMsg::Stop => return Ok(true),
        }
        Ok(false)
    }

    fn carry_out(&mut self) {
        self.out.carry_out(&mut self.ctx);
    }
}

impl<T: Transport> Outlets<T> {
    /// Carries out what `ctx` holds: sends, the sync request, tasks, heartbeats, answers.
    fn carry_out(&mut self, ctx: &mut StoreContext) {
        for m in ctx.messages.drain(..) {
            if let Err(e) = self.transport.send(m) {
                warn!(self.logger, "cannot send raft message"; "err" => %e);
            }
        }
        self.transport.flush();
        if let (Some(seq), Some(sync_tx)) = (ctx.sync_request.take(), &self.sync_tx) {
            let _ = sync_tx.send(seq);
        }
        for t in ctx.tasks.drain(..) {
            let worker = match t {
                Task::RaftLogGc { .. } => &self.gc_tx,
                Task::GenSnapshot { .. } | Task::ApplySnapshot { .. } => &self.region_tx,
                Task::SplitCheck { .. } => &self.split_tx,
            };
            let _ = worker.send(t);
        }
        for t in ctx.scheduler_tasks.drain(..) {
            let _ = self.scheduler_tx.send(t);
        }
        for (cb, resp) in ctx.responses.drain(..) {
            cb(resp);
        }
    }
}
