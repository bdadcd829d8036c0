//! `Peer`: one replica of one region — a `RawNode` over its `PeerStorage`, the proposals waiting
//! for their entries to be applied, and the handlers for raft messages, commands and ticks.
//!
//! Handlers never perform I/O beyond the engines and never send anything themselves: outgoing
//! messages, callbacks, background tasks and scheduler heartbeats go into the `StoreContext`,
//! which the driver (threaded runtime or simulator) drains.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use prost::Message as _;
use proto::eraftpb::{self, EntryType, Snapshot};
use proto::metapb::{self, Region};
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, AdminResponse, CmdType, CompactLogRequest, CompactLogResponse,
    GetResponse, RaftCmdRequest, RaftCmdResponse, RaftRequestHeader, RaftResponseHeader, Request,
    Response, SnapResponse, TransferLeaderResponse,
};
use proto::raft_serverpb::{RaftLocalState, RaftMessage};
use raft::{RawNode, Ready, StateRole, INVALID_ID};
use slog::{debug, error, info, o, warn, Logger};

use crate::callback::{Callback, CmdResponse, RegionSnapshot};
use crate::config::Config;
use crate::engine::{Engine, Engines, WriteBatch, CF_RAFT, DATA_CFS};
use crate::errors::{Error, Result};
use crate::keys;
use crate::peer_storage::PeerStorage;
use crate::read::{is_read_only, ReadQueue};
use crate::snap::{snapshot_data, SnapKey, SnapManager};
use crate::store::{RegionHeartbeat, StoreContext, Task};
use crate::util::{check_key_in_region, check_region_epoch, find_peer, is_initial_msg};

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
        let region = Region {
            id: region_id,
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
            pre_vote: true,
            check_quorum: true,
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
            last_compacted_idx,
            snap_mgr,
            applying: None,
            generating: false,
            last_generated: None,
            pending_tasks: Vec::new(),
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

    // ---- messages ---------------------------------------------------------------------------

    /// Steps a raft message from another replica. A MsgSnapshot is stepped only when its files
    /// were received; its files are deleted unless raft restores the snapshot.
    pub fn on_raft_message(&mut self, msg: RaftMessage) -> Result<()> {
        if let Some(from) = &msg.from_peer {
            self.peer_cache.insert(from.id, *from);
        }
        let snap_key = SnapKey::from_msg(&msg);
        let Some(m) = msg.message else {
            return Err(Error::InvalidRequest(
                "raft message without a message".into(),
            ));
        };
        if self.is_frozen() {
            // Keep the files of the snapshot being installed (a duplicate may bring the same).
            let pending = self.pending_snapshot();
            if let Some(key) = snap_key.filter(|&k| Some(k) != pending) {
                self.snap_mgr.delete_received(key);
            }
            debug!(self.logger, "dropping a message while a snapshot is pending";
                "msg_type" => ?m.msg_type(), "from" => m.from);
            return Ok(());
        }
        let Some(key) = snap_key else {
            if m.msg_type() == eraftpb::MessageType::MsgAppendResponse
                && !m.reject
                && m.index > self.synced_index()
                && self.is_leader()
            {
                self.held_acks.push(m);
                return Ok(());
            }
            self.raft_group.step(m)?;
            return Ok(());
        };
        if let Err(e) = self.check_snapshot(key, m.snapshot.as_ref()) {
            warn!(self.logger, "dropping a snapshot"; "snapshot" => %key, "err" => %e);
            self.snap_mgr.delete_received(key);
            return Ok(());
        }
        let stepped = self.raft_group.step(m);
        let restored = self
            .raft_group
            .raft
            .raft_log
            .unstable
            .snapshot
            .as_ref()
            .is_some_and(|s| SnapKey::from_snapshot(self.region_id, s) == key);
        if !restored {
            debug!(self.logger, "snapshot not restored by raft"; "snapshot" => %key);
            self.snap_mgr.delete_received(key);
        }
        stepped?;
        Ok(())
    }

    /// Whether a received snapshot may be stepped: its files are here, and its region is this
    /// region and lists this peer.
    fn check_snapshot(&self, key: SnapKey, snap: Option<&Snapshot>) -> Result<()> {
        if !self.snap_mgr.has_received(key) {
            return Err(Error::Other("its files were not received".into()));
        }
        let data = snapshot_data(snap.ok_or_else(|| Error::Other("no snapshot".into()))?)?;
        let region = data.region.unwrap_or_default();
        if region.id != self.region_id || !region.peers.iter().any(|p| p.id == self.meta.id) {
            return Err(Error::Other(format!(
                "its region {} does not hold peer {}",
                region.id, self.meta.id
            )));
        }
        Ok(())
    }

    // ---- snapshots --------------------------------------------------------------------------

    /// When raft asked for a snapshot to send, hands its generation to a worker, with a view of
    /// the kv engine taken now. Called at the start of a round, when the engine is exactly at the
    /// applied index.
    pub fn maybe_generate_snapshot(&mut self, ctx: &mut StoreContext) {
        if !self.storage().snapshot_requested.replace(false) || self.generating {
            return;
        }
        let applied = self.storage().applied_index();
        let term = match self.raft_group.raft.raft_log.term(applied) {
            Ok(t) => t,
            Err(e) => {
                warn!(self.logger, "cannot generate a snapshot"; "applied" => applied, "err" => %e);
                return;
            }
        };
        let key = SnapKey {
            region_id: self.region_id,
            term,
            index: applied,
        };
        info!(self.logger, "generating a snapshot"; "snapshot" => %key);
        self.generating = true;
        ctx.tasks.push(Task::GenSnapshot {
            key,
            region: self.region().clone(),
            snap: Arc::new(self.engines().kv.snapshot()),
        });
    }

    /// A snapshot generation finished: raft gets it the next time it asks.
    pub fn on_snapshot_generated(
        &mut self,
        key: SnapKey,
        result: std::result::Result<Snapshot, String>,
    ) {
        self.generating = false;
        match result {
            Ok(snap) => {
                info!(self.logger, "snapshot generated"; "snapshot" => %key,
                    "size" => snapshot_data(&snap).map_or(0, |d| d.file_size));
                if let Some(old) = self.last_generated.replace(key) {
                    if old != key {
                        self.snap_mgr.delete_generated(old);
                    }
                }
                *self.storage().generated_snapshot.borrow_mut() = Some(snap);
            }
            Err(e) => {
                warn!(self.logger, "snapshot generation failed"; "snapshot" => %key, "err" => e)
            }
        }
    }

    /// A snapshot application finished: the replica thaws, with the snapshot's data and states.
    pub fn on_snapshot_applied(&mut self, key: SnapKey, result: std::result::Result<(), String>) {
        let Some(install) = self.applying.as_mut().filter(|i| i.key == key) else {
            warn!(self.logger, "result of a snapshot application not in progress"; "snapshot" => %key);
            return;
        };
        match result {
            Ok(()) => {
                info!(self.logger, "snapshot applied"; "snapshot" => %key);
                self.applying = None;
                self.snap_mgr.delete_received(key);
            }
            // The files were verified when received: only a failing disk gets here. The replica
            // stays frozen (serving nothing stale) and the install, which starts by clearing the
            // range again, is queued anew after a back-off (and redone on restart in any case).
            Err(e) => {
                install.failures += 1;
                let wait = install.backoff();
                install.retry_in = Some(wait);
                error!(self.logger, "snapshot application failed; retrying";
                    "snapshot" => %key, "err" => e, "retry_in_ticks" => wait);
            }
        }
    }

    /// Freezes the replica while snapshot `key` of `region` is installed, and queues the install.
    fn start_install(&mut self, key: SnapKey, region: Region, clear: KeyRanges) {
        self.applying = Some(Install {
            key,
            region,
            clear,
            failures: 0,
            retry_in: None,
        });
        self.queue_install();
    }

    /// Hands an attempt at the current install to a worker (at the end of the round).
    fn queue_install(&mut self) {
        if let Some(i) = &self.applying {
            self.pending_tasks.push(Task::ApplySnapshot {
                key: i.key,
                region: i.region.clone(),
                clear: i.clear.clone(),
            });
        }
    }

    fn send_raft_message(&self, ctx: &mut StoreContext, m: eraftpb::Message) {
        let Some(to_peer) = self.peer_cache.get(&m.to).cloned() else {
            warn!(self.logger, "dropping message to an unknown peer";
                "to" => m.to, "msg_type" => ?m.msg_type());
            return;
        };
        let region = self.region();
        let mut rm = RaftMessage {
            region_id: self.region_id,
            from_peer: Some(self.meta),
            to_peer: Some(to_peer),
            region_epoch: region.region_epoch,
            ..Default::default()
        };
        if is_initial_msg(&m) {
            // Lets a store that has no replica yet check the range before creating one.
            rm.start_key = region.start_key.clone();
            rm.end_key = region.end_key.clone();
        }
        rm.message = Some(m);
        ctx.messages.push(rm);
    }

    // ---- ticks ------------------------------------------------------------------------------

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
    }

    fn heartbeat_scheduler(&self, ctx: &mut StoreContext) {
        ctx.heartbeats.push(RegionHeartbeat {
            region: self.region().clone(),
            leader: self.meta,
        });
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

    // ---- proposals --------------------------------------------------------------------------

    fn pre_propose(&self, req: &RaftCmdRequest, store_id: u64) -> Result<()> {
        let header = req
            .header
            .as_ref()
            .ok_or_else(|| Error::InvalidRequest("missing header".into()))?;
        if let Some(p) = &header.peer {
            if p.store_id != store_id {
                return Err(Error::StoreNotMatch {
                    request_store_id: p.store_id,
                    actual_store_id: store_id,
                });
            }
        }
        if !self.is_leader() {
            return Err(Error::NotLeader {
                region_id: self.region_id,
                leader: self.leader(),
            });
        }
        if let Some(p) = &header.peer {
            if p.id != self.meta.id {
                return Err(Error::InvalidRequest(format!(
                    "mismatched peer id {} != {}",
                    p.id, self.meta.id
                )));
            }
        }
        if header.term != 0 && self.term() > header.term.saturating_add(1) {
            return Err(Error::StaleCommand);
        }
        check_region_epoch(req, self.region(), true)?;
        let region = self.region();
        for r in &req.requests {
            let (cf, key) = match r.cmd_type() {
                CmdType::Get => r.get.as_ref().map(|g| (&g.cf, &g.key)),
                CmdType::Put => r.put.as_ref().map(|p| (&p.cf, &p.key)),
                CmdType::Delete => r.delete.as_ref().map(|d| (&d.cf, &d.key)),
                CmdType::Snap => continue,
                CmdType::Invalid => {
                    return Err(Error::InvalidRequest("invalid command type".into()))
                }
            }
            .ok_or_else(|| Error::InvalidRequest("request without its body".into()))?;
            if !DATA_CFS.contains(&cf.as_str()) {
                return Err(Error::InvalidRequest(format!(
                    "unknown column family {cf:?}"
                )));
            }
            check_key_in_region(key, region)?;
        }
        if req.requests.is_empty() && req.admin_request.is_none() {
            return Err(Error::InvalidRequest("empty command".into()));
        }
        Ok(())
    }

    /// Proposes a command; `cb` gets the result once it is applied (or an error now).
    pub fn propose(&mut self, ctx: &mut StoreContext, req: RaftCmdRequest, cb: Callback) {
        let term = self.term();
        let store_id = self.meta.store_id;
        if let Err(e) = self.pre_propose(&req, store_id) {
            ctx.responses.push((cb, CmdResponse::error(e, term)));
            return;
        }
        if is_read_only(&req) {
            // Not proposed: served through ReadIndex once this round's batch is confirmed.
            self.reads.push(req, cb);
            return;
        }
        if let Some(admin) = &req.admin_request {
            match admin.cmd_type() {
                AdminCmdType::TransferLeader => {
                    // Not replicated: the leader hands over directly.
                    let to = admin
                        .transfer_leader
                        .as_ref()
                        .and_then(|t| t.peer.as_ref())
                        .map(|p| p.id)
                        .unwrap_or(INVALID_ID);
                    // The writes taken before it this round go first, as they would unbatched.
                    self.flush_proposals(ctx);
                    self.raft_group.transfer_leader(to);
                    let resp = RaftCmdResponse {
                        header: Some(RaftResponseHeader {
                            current_term: term,
                            ..Default::default()
                        }),
                        admin_response: Some(AdminResponse {
                            cmd_type: AdminCmdType::TransferLeader as i32,
                            transfer_leader: Some(TransferLeaderResponse {}),
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    ctx.responses.push((cb, CmdResponse { resp, snap: None }));
                    return;
                }
                AdminCmdType::CompactLog => {}
                other => {
                    let e = Error::InvalidRequest(format!(
                        "admin command {other:?} is not supported by this store yet"
                    ));
                    ctx.responses.push((cb, CmdResponse::error(e, term)));
                    return;
                }
            }
        }
        let data = req.encode_to_vec();
        if data.len() as u64 > self.cfg.raft_entry_max_size {
            let e = Error::InvalidRequest(format!(
                "command of {} bytes exceeds the raft entry limit of {} bytes",
                data.len(),
                self.cfg.raft_entry_max_size
            ));
            ctx.responses.push((cb, CmdResponse::error(e, term)));
            return;
        }
        self.batched.push((data, cb));
    }

    /// Proposes the commands `propose` took this round, all in one raft proposal: one append,
    /// and one MsgAppend per follower for all of them (call before taking the round's `Ready`).
    pub fn flush_proposals(&mut self, ctx: &mut StoreContext) {
        if self.batched.is_empty() {
            return;
        }
        let term = self.term();
        let (data, cbs): (Vec<Vec<u8>>, Vec<Callback>) =
            std::mem::take(&mut self.batched).into_iter().unzip();
        // A message stepped after the commands were checked may have cost the leadership: raft
        // would forward them to the new leader, where their callbacks could never be answered.
        if self.is_leader() {
            let before = self.raft_group.raft.raft_log.last_index();
            match self.raft_group.propose_batch(data) {
                Ok(()) => {
                    let last = self.raft_group.raft.raft_log.last_index();
                    debug_assert_eq!(last, before + cbs.len() as u64, "a leader appends at once");
                    for (i, cb) in cbs.into_iter().enumerate() {
                        let index = before + 1 + i as u64;
                        self.proposals.push_back(Proposal { index, term, cb });
                    }
                    return;
                }
                Err(e) => {
                    debug!(self.logger, "proposals dropped"; "count" => cbs.len(), "err" => %e);
                }
            }
        }
        // Still leading: a leader transfer is under way.
        let (leading, leader) = (self.is_leader(), self.leader());
        for cb in cbs {
            let e = match leading {
                true => Error::Raft(raft::Error::ProposalDropped),
                false => Error::NotLeader {
                    region_id: self.region_id,
                    leader,
                },
            };
            ctx.responses.push((cb, CmdResponse::error(e, term)));
        }
    }

    /// Answers every proposal whose entry was overtaken before `index` (or at `index` by an entry
    /// of another term) with StaleCommand; returns the callback of the proposal at
    /// (`index`, `term`), if any.
    fn take_proposal(&mut self, ctx: &mut StoreContext, index: u64, term: u64) -> Option<Callback> {
        let current = self.term();
        while let Some(p) = self.proposals.front() {
            if p.index > index {
                return None;
            }
            let p = self.proposals.pop_front().expect("front exists");
            if p.index == index && p.term == term {
                return Some(p.cb);
            }
            ctx.responses
                .push((p.cb, CmdResponse::error(Error::StaleCommand, current)));
        }
        None
    }

    // ---- reads ------------------------------------------------------------------------------

    /// Asks raft for one read index covering the reads that arrived this round (call before
    /// taking the round's `Ready`, so the heartbeats go out with it).
    pub fn start_reads(&mut self, ctx: &mut StoreContext) {
        if !self.reads.has_incoming() {
            return;
        }
        let term = self.term();
        if !self.is_leader() {
            let leader = self.leader();
            for r in self.reads.take_lost(false, term) {
                let e = Error::NotLeader {
                    region_id: self.region_id,
                    leader,
                };
                ctx.responses.push((r.cb, CmdResponse::error(e, term)));
            }
            return;
        }
        let rctx = self.reads.start_batch(term).expect("reads arrived");
        if let Err(e) = self.raft_group.read_index(rctx) {
            let msg = e.to_string();
            for r in self.reads.abort_last() {
                let e = Error::Other(format!("read index refused: {msg}"));
                ctx.responses.push((r.cb, CmdResponse::error(e, term)));
            }
        }
    }

    /// Answers the reads whose read index is applied; call after the round's kv write, so they
    /// see everything applied so far.
    pub fn serve_reads(&mut self, ctx: &mut StoreContext) {
        for r in self.reads.take_ready(self.storage().applied_index()) {
            let resp = self.read(&r.req);
            ctx.responses.push((r.cb, resp));
        }
    }

    /// Serves a read-only command from the kv engine as it is now.
    fn read(&self, req: &RaftCmdRequest) -> CmdResponse {
        let term = self.term();
        if let Err(e) = check_region_epoch(req, self.region(), true) {
            return CmdResponse::error(e, term);
        }
        let mut responses = Vec::with_capacity(req.requests.len());
        let mut snap = None;
        for r in &req.requests {
            match self.read_request(r) {
                Ok((resp, s)) => {
                    responses.push(resp);
                    snap = s.or(snap);
                }
                Err(e) => return CmdResponse::error(e, term),
            }
        }
        CmdResponse {
            resp: RaftCmdResponse {
                header: Some(RaftResponseHeader {
                    current_term: term,
                    ..Default::default()
                }),
                responses,
                admin_response: None,
            },
            snap,
        }
    }

    /// Answers reads raft will no longer confirm (leadership lost or renewed) with NotLeader.
    fn fail_lost_reads(&mut self, ctx: &mut StoreContext) {
        let (term, leading) = (self.term(), self.is_leader());
        let lost = self.reads.take_lost(leading, term);
        if lost.is_empty() {
            return;
        }
        let leader = self.leader();
        for r in lost {
            let e = Error::NotLeader {
                region_id: self.region_id,
                leader,
            };
            ctx.responses.push((r.cb, CmdResponse::error(e, term)));
        }
    }

    // ---- ready ------------------------------------------------------------------------------

    /// Phase one of a round: takes the replica's `Ready` and adds what it must persist to the
    /// round's raft write batch. A snapshot in the `Ready` also adds the `Applying` region state
    /// and the new apply state to `snap_wb` (synced before the raft write), freezes the replica
    /// and queues the install for a worker.
    pub fn collect_ready(
        &mut self,
        raft_wb: &mut WriteBatch,
        snap_wb: &mut WriteBatch,
    ) -> Result<Option<Ready>> {
        if self.applying.is_some() || !self.raft_group.has_ready() {
            return Ok(None);
        }
        let rd = self.raft_group.ready();
        if let Some(snap) = &rd.snapshot {
            let old = self.region().clone();
            let (key, region) = self.storage_mut().apply_snapshot(snap, snap_wb, raft_wb)?;
            for p in &region.peers {
                self.peer_cache.insert(p.id, *p);
            }
            let mut clear = vec![(region.start_key.clone(), region.end_key.clone())];
            if !old.peers.is_empty()
                && (old.start_key != region.start_key || old.end_key != region.end_key)
            {
                clear.push((old.start_key.clone(), old.end_key.clone()));
            }
            info!(self.logger, "installing a snapshot"; "snapshot" => %key);
            self.last_compacted_idx = key.index + 1;
            self.start_install(key, region, clear);
        }
        self.storage_mut().save_ready_state(&rd, raft_wb);
        Ok(Some(rd))
    }

    /// Phase one and a half, before the round's raft write: what a leader may do while its own
    /// write is under way (Raft thesis 10.2.1). Its messages leave now, unless the Ready changes
    /// the term or the vote, which must be durable first: appends and heartbeats promise nothing
    /// about the leader's own disk. Raft counts the leader's new entries toward the quorum at
    /// once, but a commit that counts them needs acks for them, which arrive in a later round,
    /// after this write. And it applies the committed entries it had written before this round
    /// (up to `persisted.last_index`), answering their clients without waiting for this round's
    /// fsync: a committed entry is durable on a quorum, and the kv state never runs ahead of
    /// the local log.
    pub fn handle_ready_early(
        &mut self,
        ctx: &mut StoreContext,
        rd: &mut Ready,
        persisted: &RaftLocalState,
        kv_wb: &mut WriteBatch,
        sync_kv: &mut bool,
    ) -> Result<()> {
        if !self.is_leader() {
            return Ok(());
        }
        let old = persisted.hard_state.unwrap_or_default();
        let durable_vote = rd
            .hard_state
            .as_ref()
            .is_none_or(|hs| hs.term == old.term && hs.vote == old.vote);
        if durable_vote {
            for m in std::mem::take(&mut rd.messages) {
                self.send_raft_message(ctx, m);
            }
        }
        let upto = persisted.last_index.min(self.synced_index());
        self.apply_committed(ctx, upto, kv_wb, sync_kv)
    }

    /// Phase two, after the round's raft write batch is synced: sends the remaining messages,
    /// applies the remaining committed entries into the round's kv write batch, and advances raft.
    ///
    /// With `deferred` (the number of this round's raft write, left unsynced), the messages wait
    /// for that write's sync, and only entries synced before are applied (`on_synced` does the
    /// rest).
    pub fn post_ready(
        &mut self,
        ctx: &mut StoreContext,
        mut rd: Ready,
        deferred: Option<u64>,
        kv_wb: &mut WriteBatch,
        sync_kv: &mut bool,
    ) -> Result<()> {
        if let Some(ss) = &rd.soft_state {
            if ss.raft_state == StateRole::Leader {
                info!(self.logger, "became leader"; "term" => self.term());
                self.heartbeat_scheduler(ctx);
            }
        }
        match deferred {
            Some(seq) => {
                if let Some(first) = rd.entries.first() {
                    self.unsynced.push_back((seq, first.index));
                }
                self.deferred_msgs
                    .extend(rd.messages.drain(..).map(|m| (seq, m)));
            }
            None => {
                for m in std::mem::take(&mut rd.messages) {
                    self.send_raft_message(ctx, m);
                }
            }
        }
        for rs in &rd.read_states {
            self.reads.confirm(&rs.request_ctx, rs.index);
        }
        if rd.soft_state.is_some() {
            self.fail_lost_reads(ctx);
        }
        let upto = self.synced_index();
        self.apply_committed(ctx, upto, kv_wb, sync_kv)?;
        self.raft_group.advance(rd);
        Ok(())
    }

    /// Takes the committed entries of `rd` into the queue of entries to apply, leaving in `rd`
    /// only the last one (for `advance`, which marks them applied in raft).
    pub fn queue_committed(&mut self, rd: &mut Ready) {
        // A replica that restored a snapshot steps nothing more until it is installed, so its
        // Ready cannot carry entries committed past the snapshot; the snapshot supersedes what
        // was committed before and not applied yet.
        assert!(
            rd.snapshot.is_none() || rd.committed_entries.is_empty(),
            "committed entries in the Ready of a snapshot"
        );
        if rd.snapshot.is_some() {
            self.committed.clear();
        }
        let last = rd.committed_entries.last().cloned();
        self.committed.extend(rd.committed_entries.drain(..));
        rd.committed_entries.extend(last);
    }

    /// The last log index known durable here: everything before the first index an unsynced
    /// write wrote (no limit when every write is synced).
    pub fn synced_index(&self) -> u64 {
        self.unsynced
            .iter()
            .map(|&(_, first)| first.saturating_sub(1))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Whether a raft write of this replica, or a message waiting for one, is not synced yet.
    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty() || !self.deferred_msgs.is_empty()
    }

    /// Whether something waits for a sync of the raft engine.
    pub fn waits_for_sync(&self) -> bool {
        self.has_unsynced() || !self.held_acks.is_empty() || !self.committed.is_empty()
    }

    /// The raft writes up to number `seq` are synced: their messages leave, the entries now
    /// durable are applied, and held acks within the synced log are stepped.
    pub fn on_synced(
        &mut self,
        ctx: &mut StoreContext,
        seq: u64,
        kv_wb: &mut WriteBatch,
        sync_kv: &mut bool,
    ) -> Result<()> {
        while self.unsynced.front().is_some_and(|&(s, _)| s <= seq) {
            self.unsynced.pop_front();
        }
        let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred_msgs)
            .into_iter()
            .partition(|&(s, _)| s <= seq);
        self.deferred_msgs = later;
        for (_, m) in ready {
            self.send_raft_message(ctx, m);
        }
        if !self.is_frozen() {
            self.apply_committed(ctx, self.synced_index(), kv_wb, sync_kv)?;
        }
        let synced = self.synced_index();
        for m in std::mem::take(&mut self.held_acks) {
            if m.index > synced && self.is_leader() {
                self.held_acks.push(m);
            } else if let Err(e) = self.raft_group.step(m) {
                debug!(self.logger, "held ack not stepped"; "err" => %e);
            }
        }
        Ok(())
    }

    /// Applies the queued committed entries not applied yet, up to index `upto`, into `kv_wb`
    /// with the new apply state.
    fn apply_committed(
        &mut self,
        ctx: &mut StoreContext,
        upto: u64,
        kv_wb: &mut WriteBatch,
        sync_kv: &mut bool,
    ) -> Result<()> {
        let applied = self.storage().applied_index();
        let mut last = None;
        while self.committed.front().is_some_and(|e| e.index <= applied) {
            self.committed.pop_front();
        }
        while self.committed.front().is_some_and(|e| e.index <= upto) {
            let e = self.committed.pop_front().expect("checked");
            self.apply_entry(ctx, &e, kv_wb, sync_kv)?;
            last = Some(e.index);
        }
        if let Some(last_index) = last {
            let region_id = self.region_id;
            let state = &mut self.storage_mut().apply_state;
            state.applied_index = last_index;
            kv_wb.put_msg_cf(CF_RAFT, keys::apply_state_key(region_id), &*state);
        }
        Ok(())
    }

    fn apply_entry(
        &mut self,
        ctx: &mut StoreContext,
        e: &eraftpb::Entry,
        kv_wb: &mut WriteBatch,
        sync_kv: &mut bool,
    ) -> Result<()> {
        if e.data.is_empty() {
            // A new leader's no-op: proposals at this index lost their place.
            let _ = self.take_proposal(ctx, e.index, e.term);
            return Ok(());
        }
        if e.entry_type() == EntryType::EntryConfChange {
            // Membership changes are refused at proposal time until the store supports them, so
            // none can be in the log.
            warn!(self.logger, "skipping a conf change entry this store does not support";
                "index" => e.index);
            let _ = self.take_proposal(ctx, e.index, e.term);
            return Ok(());
        }
        let req = RaftCmdRequest::decode(e.data.as_slice())?;
        let resp = self.apply_cmd(ctx, req, kv_wb, sync_kv);
        if let Some(cb) = self.take_proposal(ctx, e.index, e.term) {
            ctx.responses.push((cb, resp));
        }
        Ok(())
    }

    fn apply_cmd(
        &mut self,
        ctx: &mut StoreContext,
        req: RaftCmdRequest,
        kv_wb: &mut WriteBatch,
        sync_kv: &mut bool,
    ) -> CmdResponse {
        let term = self.term();
        if let Err(e) = check_region_epoch(&req, self.region(), true) {
            return CmdResponse::error(e, term);
        }
        let header = Some(RaftResponseHeader {
            current_term: term,
            ..Default::default()
        });
        if let Some(admin) = &req.admin_request {
            return match self.apply_admin(ctx, admin, sync_kv) {
                Ok(admin_response) => CmdResponse {
                    resp: RaftCmdResponse {
                        header,
                        admin_response: Some(admin_response),
                        ..Default::default()
                    },
                    snap: None,
                },
                Err(e) => CmdResponse::error(e, term),
            };
        }
        let mut responses = Vec::with_capacity(req.requests.len());
        let mut snap = None;
        for r in &req.requests {
            match self.apply_request(r, kv_wb) {
                Ok((resp, s)) => {
                    responses.push(resp);
                    if s.is_some() {
                        snap = s;
                    }
                }
                Err(e) => return CmdResponse::error(e, term),
            }
        }
        CmdResponse {
            resp: RaftCmdResponse {
                header,
                responses,
                admin_response: None,
            },
            snap,
        }
    }

    /// Makes the round's writes so far visible to reads of the kv engine.
    fn flush(&self, kv_wb: &mut WriteBatch) -> Result<()> {
        if !kv_wb.is_empty() {
            self.engines().kv.write(kv_wb, false)?;
            kv_wb.clear();
        }
        Ok(())
    }

    fn apply_request(
        &mut self,
        r: &Request,
        kv_wb: &mut WriteBatch,
    ) -> Result<(Response, Option<RegionSnapshot>)> {
        let mut resp = Response {
            cmd_type: r.cmd_type,
            ..Default::default()
        };
        let missing = || Error::InvalidRequest("request without its body".into());
        match r.cmd_type() {
            CmdType::Get | CmdType::Snap => {
                // Reads inside a command that also writes: they see the writes before them.
                self.flush(kv_wb)?;
                return self.read_request(r);
            }
            CmdType::Put => {
                let p = r.put.as_ref().ok_or_else(missing)?;
                check_key_in_region(&p.key, self.region())?;
                kv_wb.put_cf(&p.cf, p.key.as_slice(), p.value.as_slice());
                resp.put = Some(Default::default());
            }
            CmdType::Delete => {
                let d = r.delete.as_ref().ok_or_else(missing)?;
                check_key_in_region(&d.key, self.region())?;
                kv_wb.delete_cf(&d.cf, d.key.as_slice());
                resp.delete = Some(Default::default());
            }
            CmdType::Invalid => return Err(Error::InvalidRequest("invalid command".into())),
        }
        Ok((resp, None))
    }

    /// A Get or Snap request, from the kv engine as it is now.
    fn read_request(&self, r: &Request) -> Result<(Response, Option<RegionSnapshot>)> {
        let region = self.region();
        let mut resp = Response {
            cmd_type: r.cmd_type,
            ..Default::default()
        };
        match r.cmd_type() {
            CmdType::Get => {
                let g = r
                    .get
                    .as_ref()
                    .ok_or_else(|| Error::InvalidRequest("request without its body".into()))?;
                check_key_in_region(&g.key, region)?;
                let value = self.engines().kv.get_cf(&g.cf, &g.key)?;
                resp.get = Some(GetResponse {
                    value: value.unwrap_or_default(),
                });
                Ok((resp, None))
            }
            CmdType::Snap => {
                let snap = RegionSnapshot {
                    region: region.clone(),
                    snap: Arc::new(self.engines().kv.snapshot()),
                };
                resp.snap = Some(SnapResponse {
                    region: Some(region.clone()),
                });
                Ok((resp, Some(snap)))
            }
            other => Err(Error::InvalidRequest(format!("{other:?} is not a read"))),
        }
    }

    fn apply_admin(
        &mut self,
        ctx: &mut StoreContext,
        admin: &AdminRequest,
        sync_kv: &mut bool,
    ) -> Result<AdminResponse> {
        match admin.cmd_type() {
            AdminCmdType::CompactLog => {
                let c = admin
                    .compact_log
                    .as_ref()
                    .ok_or_else(|| Error::InvalidRequest("CompactLog without body".into()))?;
                let truncated = self.storage().truncated_index();
                if c.compact_index <= truncated {
                    debug!(self.logger, "compaction index already truncated";
                        "compact_index" => c.compact_index, "truncated" => truncated);
                } else {
                    self.storage_mut()
                        .compact_to(c.compact_index, c.compact_term);
                    // The truncated state must be durable before the log GC deletes the entries.
                    *sync_kv = true;
                    ctx.tasks.push(Task::RaftLogGc {
                        region_id: self.region_id,
                        start_idx: self.last_compacted_idx,
                        end_idx: c.compact_index + 1,
                    });
                    self.last_compacted_idx = c.compact_index + 1;
                    debug!(self.logger, "log compacted"; "truncated_index" => c.compact_index);
                }
                Ok(AdminResponse {
                    cmd_type: AdminCmdType::CompactLog as i32,
                    compact_log: Some(CompactLogResponse {}),
                    ..Default::default()
                })
            }
            other => Err(Error::InvalidRequest(format!(
                "admin command {other:?} is not supported by this store yet"
            ))),
        }
    }
}
