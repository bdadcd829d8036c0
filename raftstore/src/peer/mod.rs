//! `Peer`: one replica of one region — a `RawNode` over its `PeerStorage`, the proposals waiting
//! for their entries to be applied, and the handlers for raft messages, commands and ticks.
//!
//! Handlers never perform I/O beyond the engines and never send anything themselves: outgoing
//! messages, callbacks, background tasks and scheduler heartbeats go into the `StoreContext`,
//! which the driver (threaded runtime or simulator) drains.
//!
//! This file holds the peer itself (its state, its creation, its accessors) and its ticks with
//! the log GC they start; the peer's operations each have a file of their own, every one an
//! `impl Peer` block:
//! - [`propose`]: checking commands and proposing them, a round's worth in one raft proposal;
//! - [`read`]: read-only commands served through ReadIndex, without writing the log;
//! - [`ready`]: the peer's part of a round — raft messages in, the `Ready` out (persisted,
//!   sent, applied) and what waits for a sync of the raft engine;
//! - [`apply`]: committed entries applied to the kv engine, and their callbacks answered;
//! - [`snapshot`]: snapshots generated for followers and received snapshots installed.

mod apply;
mod propose;
mod read;
mod ready;
mod snapshot;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use proto::eraftpb;
use proto::metapb::{self, Region};
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, CompactLogRequest, RaftCmdRequest, RaftRequestHeader,
};
use proto::schedulerpb::RegionHeartbeatRequest;
use raft::{RawNode, StateRole, INVALID_ID};
use slog::{debug, info, o, Logger};

use crate::callback::Callback;
use crate::config::Config;
use crate::context::StoreContext;
use crate::engine::{Engine, Engines, WriteBatch};
use crate::errors::{Error, Result};
use crate::peer_storage::PeerStorage;
use crate::read_queue::ReadQueue;
use crate::scheduler::SchedulerTask;
use crate::snap::{SnapKey, SnapManager};
use crate::task::Task;
use crate::util::find_peer;

/// A proposal waiting for its entry: answered when the entry at (`index`, `term`) is applied, or
/// with StaleCommand when another entry takes that place.
struct Proposal {
    index: u64,
    term: u64,
    cb: Callback,
}

/// Key ranges `[start, end)` whose old data a snapshot install clears first.
type KeyRanges = Vec<(Vec<u8>, Vec<u8>)>;

/// Frozen ticks before a failed snapshot install is tried again; the wait doubles after each
/// failure up to [`INSTALL_RETRY_MAX_TICKS`].
pub const INSTALL_RETRY_MIN_TICKS: u64 = 10;
/// Longest wait, in ticks, between two attempts to install a snapshot.
pub const INSTALL_RETRY_MAX_TICKS: u64 = 600;

/// A received snapshot being installed by a worker, with what a new attempt needs.
struct Install {
    key: SnapKey,
    region: Region,
    /// Ranges whose old data the install clears first (so an attempt can simply be redone).
    clear: KeyRanges,
    /// Attempts that failed so far.
    failures: u32,
    /// After a failure: frozen ticks left before the next attempt is queued (`None` while an
    /// attempt is under way).
    retry_in: Option<u64>,
}

impl Install {
    /// The wait before the next attempt: the minimum, doubled for each earlier failure.
    fn backoff(&self) -> u64 {
        let doublings = self.failures.saturating_sub(1).min(16);
        (INSTALL_RETRY_MIN_TICKS << doublings).min(INSTALL_RETRY_MAX_TICKS)
    }
}

/// What applying an admin command did that the store must carry out once the apply's kv write
/// is made: the store owns the range map and the set of peers.
#[derive(Debug)]
pub(crate) enum ApplyResult {
    /// This peer was removed from its region: the store destroys it.
    RemovedSelf,
    /// The region split: this peer's region is now `left`; the store registers `right` and
    /// creates its peer here (campaigning at once when `was_leader`).
    Split {
        /// This peer's region after the split.
        left: Box<Region>,
        /// The new region.
        right: Box<Region>,
        /// Whether this peer led the region when it applied the split.
        was_leader: bool,
    },
}

/// One replica of a region.
pub struct Peer<K: Engine, R: Engine> {
    /// The region's id.
    pub region_id: u64,
    /// This replica's peer (id and store).
    pub meta: metapb::Peer,
    /// The raft node.
    pub raft_group: RawNode<PeerStorage<K, R>>,
    proposals: VecDeque<Proposal>,
    /// Commands checked and encoded this round, proposed together by `flush_proposals`.
    batched: Vec<(Vec<u8>, Callback)>,
    /// Committed entries not applied yet, in order: applied once synced locally (at once when
    /// every raft write is synced in its round).
    committed: VecDeque<eraftpb::Entry>,
    /// Unsynced raft writes of this replica (`Config::async_raft_sync`): the write's number and
    /// the first log index it wrote. Entries from the smallest such index on are not durable.
    unsynced: VecDeque<(u64, u64)>,
    /// Messages that leave once the write of that number is synced: a follower's acks and
    /// votes, and anything sent from a Ready that changed the term or the vote.
    deferred_msgs: Vec<(u64, eraftpb::Message)>,
    /// Follower acks past this leader's synced log: raft would count the leader's own unsynced
    /// entries toward the quorum with them, so they are stepped only once those are synced.
    held_acks: Vec<eraftpb::Message>,
    /// Read-only commands served through ReadIndex.
    reads: ReadQueue,
    /// Peers of the region seen so far (from the region and from messages), by peer id.
    peer_cache: BTreeMap<u64, metapb::Peer>,
    /// The `conf_ver` at which each peer was added (while this replica runs): a message from
    /// that peer id carrying an older, non-zero epoch comes from an earlier incarnation of it (a
    /// peer removed and added again with the same id, as TinyKV's tests do), whose acks must
    /// not count for the new one.
    added_at: BTreeMap<u64, u64>,
    /// Raft-log entries before this index were handed to the log-GC worker.
    last_compacted_idx: u64,
    /// The store's snapshot files.
    snap_mgr: SnapManager,
    /// The received snapshot being installed by the worker: until it is done the peer is frozen
    /// (no tick, no message stepped, no `Ready` taken), so it neither applies nor serves anything.
    applying: Option<Install>,
    /// Whether a snapshot generation task is in flight.
    generating: bool,
    /// The last snapshot generated here (its files are kept until a newer one replaces them).
    last_generated: Option<SnapKey>,
    /// Tasks to hand to the driver at the end of the round.
    pub(crate) pending_tasks: Vec<Task>,
    /// What applied admin commands left for the store to do.
    pub(crate) apply_results: Vec<ApplyResult>,
    /// Set when this peer applied its own removal: it applies nothing more and is destroyed.
    pub(crate) pending_remove: bool,
    /// Bytes written to the region since its last split check (TinyKV's `SizeDiffHint`).
    size_diff_hint: u64,
    /// The region's size as the last split check measured it.
    approximate_size: Option<u64>,
    /// Whether a split check is in flight.
    split_checking: bool,
    ticks: u64,
    cfg: Arc<Config>,
    logger: Logger,
}

impl<K: Engine, R: Engine> Peer<K, R> {
    /// The replica of `region` on `store_id` (the region must list a peer on that store).
    pub fn create(
        store_id: u64,
        cfg: Arc<Config>,
        engines: Engines<K, R>,
        snap_mgr: SnapManager,
        region: Region,
        logger: &Logger,
    ) -> Result<Self> {
        let meta = find_peer(&region, store_id).cloned().ok_or_else(|| {
            Error::Other(format!(
                "region {} has no peer on store {store_id}",
                region.id
            ))
        })?;
        Self::new(cfg, engines, snap_mgr, region, meta, logger)
    }

    /// A replica created by a message from a peer: it knows only its own peer and the region id,
    /// and waits for a snapshot.
    pub fn replicate(
        cfg: Arc<Config>,
        engines: Engines<K, R>,
        snap_mgr: SnapManager,
        region_id: u64,
        meta: metapb::Peer,
        logger: &Logger,
    ) -> Result<Self> {
        // A zero epoch (not none): its messages carry it, and the leader that added it, whose
        // region lists it, takes them (TinyKV's `replicatePeer`).
        let region = Region {
            id: region_id,
            region_epoch: Some(metapb::RegionEpoch::default()),
            ..Default::default()
        };
        Self::new(cfg, engines, snap_mgr, region, meta, logger)
    }

    fn new(
        cfg: Arc<Config>,
        engines: Engines<K, R>,
        snap_mgr: SnapManager,
        region: Region,
        meta: metapb::Peer,
        logger: &Logger,
    ) -> Result<Self> {
        let region_id = region.id;
        let logger = logger.new(o!("region_id" => region_id, "peer_id" => meta.id));
        let storage = PeerStorage::new(engines, region.clone())?;
        let applied = storage.applied_index();
        let last_compacted_idx = storage.truncated_index() + 1;
        let interrupted = storage.interrupted_snapshot();
        let raft_cfg = raft::Config {
            id: meta.id,
            election_tick: cfg.raft_election_timeout_ticks,
            heartbeat_tick: cfg.raft_heartbeat_ticks,
            applied,
            seed: cfg
                .seed
                .wrapping_add(region_id.wrapping_mul(0x9E37_79B9))
                .wrapping_add(meta.id),
            max_size_per_msg: cfg.raft_max_size_per_msg,
            max_inflight_msgs: cfg.raft_max_inflight_msgs,
            pre_vote: cfg.raft_pre_vote,
            check_quorum: cfg.raft_check_quorum,
            ..Default::default()
        };
        let raft_group = RawNode::new(&raft_cfg, storage, &logger)?;
        let mut peer_cache = BTreeMap::new();
        for p in &region.peers {
            peer_cache.insert(p.id, *p);
        }
        let mut peer = Peer {
            region_id,
            meta,
            raft_group,
            proposals: VecDeque::new(),
            batched: Vec::new(),
            committed: VecDeque::new(),
            unsynced: VecDeque::new(),
            deferred_msgs: Vec::new(),
            held_acks: Vec::new(),
            reads: ReadQueue::default(),
            peer_cache,
            added_at: BTreeMap::new(),
            last_compacted_idx,
            snap_mgr,
            applying: None,
            generating: false,
            last_generated: None,
            pending_tasks: Vec::new(),
            apply_results: Vec::new(),
            pending_remove: false,
            size_diff_hint: 0,
            approximate_size: None,
            split_checking: false,
            ticks: 0,
            cfg,
            logger,
        };
        if let Some(key) = interrupted {
            // A crash interrupted the install of this snapshot: redo it from the files.
            info!(peer.logger, "resuming an interrupted snapshot application"; "snapshot" => %key);
            let clear = vec![(region.start_key.clone(), region.end_key.clone())];
            peer.start_install(key, region.clone(), clear);
        }
        // A region with a single replica needs no election timeout to elect it.
        if region.peers.len() == 1 && region.peers[0].id == peer.meta.id {
            peer.raft_group.campaign()?;
        }
        info!(peer.logger, "peer created"; "applied" => applied,
            "initialized" => peer.storage().is_initialized());
        Ok(peer)
    }

    /// The replica's storage.
    pub fn storage(&self) -> &PeerStorage<K, R> {
        &self.raft_group.raft.raft_log.store
    }

    fn storage_mut(&mut self) -> &mut PeerStorage<K, R> {
        &mut self.raft_group.raft.raft_log.store
    }

    /// The replica's raft state machine, read-only (for observers such as the simulator's
    /// trace: role, term, vote, log and commit index).
    pub fn raft(&self) -> &raft::Raft<PeerStorage<K, R>> {
        &self.raft_group.raft
    }

    /// The region as this replica knows it.
    pub fn region(&self) -> &Region {
        &self.storage().region
    }

    /// Whether this replica leads its region.
    pub fn is_leader(&self) -> bool {
        self.raft_group.raft.state == StateRole::Leader
    }

    /// The current raft term.
    pub fn term(&self) -> u64 {
        self.raft_group.raft.term
    }

    /// The leader this replica knows of.
    pub fn leader(&self) -> Option<metapb::Peer> {
        match self.raft_group.raft.lead {
            INVALID_ID => None,
            id => self.peer_cache.get(&id).cloned(),
        }
    }

    fn engines(&self) -> &Engines<K, R> {
        &self.storage().engines
    }

    /// The snapshot this replica is installing, if any (it is frozen meanwhile).
    pub fn applying_snapshot(&self) -> Option<SnapKey> {
        self.applying.as_ref().map(|i| i.key)
    }

    /// The snapshot restored by raft and not yet persisted, or else the one being installed.
    pub fn pending_snapshot(&self) -> Option<SnapKey> {
        self.applying_snapshot().or_else(|| {
            let unstable = self.raft_group.raft.raft_log.unstable.snapshot.as_ref();
            unstable.map(|s| SnapKey::from_snapshot(self.region_id, s))
        })
    }

    /// Whether a snapshot is pending: restored by raft and not yet persisted, or being installed.
    /// A frozen replica takes no tick and steps no message (raft retries them later).
    fn is_frozen(&self) -> bool {
        self.applying.is_some() || self.raft_group.raft.raft_log.unstable.snapshot.is_some()
    }

    /// One base tick: raft's clock, and the periodic log-GC and scheduler-heartbeat checks.
    pub fn tick(&mut self, ctx: &mut StoreContext) {
        if self.is_frozen() {
            // Only a failed install's back-off counts frozen ticks.
            if let Some(install) = self.applying.as_mut() {
                match install.retry_in {
                    Some(left) if left > 1 => install.retry_in = Some(left - 1),
                    Some(_) => {
                        install.retry_in = None;
                        info!(self.logger, "retrying a snapshot application";
                            "snapshot" => %install.key, "failures" => install.failures);
                        self.queue_install();
                    }
                    None => {}
                }
            }
            return;
        }
        self.raft_group.tick();
        self.ticks += 1;
        if self.ticks % self.cfg.raft_log_gc_tick_ticks as u64 == 0 {
            self.on_raft_log_gc_tick(ctx);
        }
        if self.ticks % self.cfg.scheduler_heartbeat_ticks as u64 == 0 && self.is_leader() {
            self.heartbeat_scheduler(ctx);
        }
        if self.ticks % self.cfg.split_region_check_ticks as u64 == 0 {
            self.on_split_check_tick(ctx);
        }
    }

    /// A leader queues a split check of its region when none is in flight and the region was
    /// never measured, grew by an eighth of the split size since the last check (TinyKV's
    /// `SizeDiffHint` rule), or may now be past the maximum (its last size plus what was written
    /// since): a region a little under the maximum that gets a few more writes is not left
    /// unsplit until an eighth of the split size more arrives.
    fn on_split_check_tick(&mut self, ctx: &mut StoreContext) {
        if !self.is_leader() || self.split_checking || !self.storage().is_initialized() {
            return;
        }
        if let Some(size) = self.approximate_size {
            let grew = self.size_diff_hint >= self.cfg.region_split_size / 8;
            let maybe_past_max =
                size.saturating_add(self.size_diff_hint) > self.cfg.region_max_size;
            if !grew && !maybe_past_max {
                return;
            }
        }
        self.split_checking = true;
        self.size_diff_hint = 0;
        ctx.tasks.push(Task::SplitCheck {
            region: self.region().clone(),
            snap: Arc::new(self.engines().kv.snapshot()),
            max_size: self.cfg.region_max_size,
            split_size: self.cfg.region_split_size,
        });
    }

    /// A split check finished: the size is recorded, and a leader whose region has not changed
    /// since asks the scheduler for the ids of the split.
    pub(crate) fn on_split_checked(
        &mut self,
        ctx: &mut StoreContext,
        region: &Region,
        size: u64,
        split_key: Option<Vec<u8>>,
    ) {
        self.split_checking = false;
        self.approximate_size = Some(size);
        let Some(split_key) = split_key else {
            return;
        };
        let (was, now) = (
            region.region_epoch.unwrap_or_default(),
            self.region().region_epoch.unwrap_or_default(),
        );
        if !self.is_leader() || was.version != now.version {
            debug!(self.logger, "split check outdated"; "checked_version" => was.version,
                "version" => now.version, "leader" => self.is_leader());
            return;
        }
        info!(self.logger, "asking to split"; "size" => size, "split_key" => ?split_key);
        ctx.scheduler_tasks.push(SchedulerTask::AskSplit {
            region: self.region().clone(),
            split_key,
            peer: self.meta,
        });
    }

    /// Destroys this replica (it was removed from its region, or a newer peer of the region
    /// replaces it): its raft state and log go into `raft_wb`; its apply state is deleted and a
    /// `Tombstone` region state with its last region written into `kv_wb`, with the deletion of
    /// its data when it was initialized, so that the kv write (made first, synced) is the point
    /// where the replica is gone. Every waiting command is answered RegionNotFound.
    pub(crate) fn destroy(
        &mut self,
        ctx: &mut StoreContext,
        kv_wb: &mut WriteBatch,
        raft_wb: &mut WriteBatch,
    ) {
        let region = self.region().clone();
        info!(self.logger, "destroying the replica"; "initialized" => self.storage().is_initialized(),
            "epoch" => ?region.region_epoch);
        crate::peer_storage::destroy_writes(
            &region,
            self.storage().is_initialized(),
            kv_wb,
            raft_wb,
        );
        let term = self.term();
        let gone = || Error::RegionNotFound(self.region_id);
        let waiting = std::mem::take(&mut self.proposals)
            .into_iter()
            .map(|p| p.cb)
            .chain(
                std::mem::take(&mut self.batched)
                    .into_iter()
                    .map(|(_, cb)| cb),
            )
            .chain(self.reads.take_lost(false, term).into_iter().map(|r| r.cb));
        let answers: Vec<_> = waiting
            .map(|cb| (cb, crate::callback::CmdResponse::error(gone(), term)))
            .collect();
        ctx.responses.extend(answers);
        if let Some(key) = self.last_generated.take() {
            self.snap_mgr.delete_generated(key);
        }
        if let Some(key) = self.pending_snapshot() {
            self.snap_mgr.delete_received(key);
        }
    }

    /// Counts bytes written to the region toward the next split check.
    pub(super) fn add_size_diff(&mut self, bytes: u64) {
        self.size_diff_hint = self.size_diff_hint.saturating_add(bytes);
    }

    /// The follower a leader hands over to (before its own removal in a two-peer region, or as
    /// its successor once it removed itself): the most caught-up one, ties to the lowest id.
    pub(crate) fn most_caught_up_follower(&self) -> Option<u64> {
        self.raft_group
            .raft
            .prs
            .iter()
            .filter(|(&id, _)| id != self.meta.id)
            .max_by_key(|(&id, pr)| (pr.matched, std::cmp::Reverse(id)))
            .map(|(&id, _)| id)
    }

    /// Whether follower `id` is known to hold every entry of this leader's log.
    pub(crate) fn has_every_entry(&self, id: u64) -> bool {
        let last = self.raft_group.raft.raft_log.last_index();
        self.raft_group
            .raft
            .prs
            .get(&id)
            .is_some_and(|pr| pr.matched >= last)
    }

    /// Reports the region to the scheduler: its metadata, this leader, the followers that need
    /// a snapshot, and the approximate size when known.
    pub(crate) fn heartbeat_scheduler(&self, ctx: &mut StoreContext) {
        ctx.scheduler_tasks
            .push(SchedulerTask::RegionHeartbeat(RegionHeartbeatRequest {
                header: None,
                region: Some(self.region().clone()),
                leader: Some(self.meta),
                pending_peers: self.collect_pending_peers(),
                approximate_size: self.approximate_size.unwrap_or(0),
            }));
    }

    /// The followers whose log ends before this leader's first entry: they need a snapshot
    /// (TinyKV's `CollectPendingPeers`).
    fn collect_pending_peers(&self) -> Vec<metapb::Peer> {
        let truncated = self.storage().truncated_index();
        let prs = &self.raft_group.raft.prs;
        self.region()
            .peers
            .iter()
            .filter(|p| p.id != self.meta.id)
            .filter(|p| prs.get(&p.id).is_some_and(|pr| pr.matched < truncated))
            .copied()
            .collect()
    }

    /// A leader proposes to compact the log once enough applied entries accumulated.
    fn on_raft_log_gc_tick(&mut self, ctx: &mut StoreContext) {
        if !self.is_leader() {
            return;
        }
        let applied = self.storage().applied_index();
        let first = self.storage().truncated_index() + 1;
        if applied <= first || applied - first < self.cfg.raft_log_gc_count_limit {
            return;
        }
        // Keep the last applied entry, so its term stays readable.
        let compact_index = applied - 1;
        let Ok(compact_term) = self.raft_group.raft.raft_log.term(compact_index) else {
            return;
        };
        let req = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: self.region_id,
                peer: Some(self.meta),
                ..Default::default()
            }),
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::CompactLog as i32,
                compact_log: Some(CompactLogRequest {
                    compact_index,
                    compact_term,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        debug!(self.logger, "proposing log compaction"; "compact_index" => compact_index);
        let logger = self.logger.clone();
        self.propose(
            ctx,
            req,
            Box::new(move |r| {
                if let Some(e) = r.region_error() {
                    debug!(logger, "log compaction not applied"; "error" => &e.message);
                }
            }),
        );
    }
}
