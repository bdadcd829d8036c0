//! `Store`: the event handlers of one store — every peer it hosts, keyed by region id — and the
//! round, in which they hand their effects to a driver through a `StoreContext`.
//!
//! A driver (the threaded runtime, or the simulator) feeds events in — raft messages, commands,
//! ticks — and then runs the round, `Store::round`, which does the round's I/O in the order
//! durability needs. Both drivers call the same steps; they differ only in how they carry out
//! the context. `begin_round`:
//! 1. every touched peer's `Ready` goes into one raft-engine write batch;
//! 2. leaders' messages are queued at once: a leader's appends may leave before its own write
//!    (Raft thesis 10.2.1), so the leader's fsync and the followers' overlap; a commit that
//!    counts the leader's unwritten entries needs the followers' acks for them, which are
//!    handled in a later round, after the write;
//! 3. leaders apply the committed entries they had written before this round (one unsynced
//!    kv write) and queue their callbacks: a committed entry is durable on a quorum, and the
//!    local kv state never runs ahead of the local raft log.
//!
//! The driver carries out the context (sends, answers: the `early` step of `Store::round`), then
//! `finish_round`:
//! 4. the raft write batch is written, synced once for the whole round when any Ready needs it
//!    (group commit: one fsync however many regions and proposals it carries);
//! 5. the other messages are queued (after the sync: votes and acks promise durability);
//! 6. the remaining committed entries are applied into one kv-engine write batch with the new
//!    apply states, and reads confirmed by ReadIndex are served;
//! 7. callbacks and background tasks are queued.
//!
//! The driver then carries out the rest of the context, and makes the sync it asks for, if any:
//! in place (`Store::sync_raft`), or elsewhere and then reports it (`Store::on_synced`).
//!
//! With `Config::async_raft_sync`, step 4 leaves the write unsynced and asks the driver for a
//! sync (`StoreContext::sync_request`); until the driver reports it (`on_synced`), the round's
//! messages wait (a follower's acks and votes promise durability), entries are applied only up to
//! what is synced locally, and a leader holds follower acks past its own synced log, so raft
//! never commits by counting the leader's unsynced entries. Rounds with a snapshot or a synced kv
//! write still sync in place.
//!
//! Nothing here reads a clock, sleeps or spawns a thread.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proto::metapb::Region;
use proto::raft_cmdpb::RaftCmdRequest;
use proto::raft_serverpb::{PeerState, RaftMessage, RegionLocalState};
use proto::schedulerpb::RegionHeartbeatResponse;
use raft::{Ready, SnapshotStatus};
use slog::{debug, info, o, warn, Logger};

use crate::callback::{Callback, CmdResponse};
use crate::config::Config;
use crate::context::{ApplyContext, StoreContext};
use crate::engine::{Engine, Engines, WriteBatch, CF_RAFT};
use crate::errors::{Error, Result};
use crate::keys;
use crate::metrics::{self, GaugeShare};
use crate::peer::{ApplyResult, Peer};
use crate::scheduler::SchedulerTask;
use crate::snap::{SnapKey, SnapManager};
use crate::task::TaskResult;
use crate::util::is_initial_msg;

/// Counters of what a store did (for tests and benchmarks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Rounds that wrote the raft engine.
    pub raft_writes: u64,
    /// Of those, the synced ones.
    pub raft_syncs: u64,
    /// Entries persisted to the raft engine.
    pub entries_persisted: u64,
    /// Entries applied.
    pub entries_applied: u64,
}

/// The handlers of one store.
pub struct Store<K: Engine, R: Engine> {
    /// This store's id.
    pub store_id: u64,
    cfg: Arc<Config>,
    engines: Engines<K, R>,
    snap_mgr: SnapManager,
    /// The replicas hosted here, by region id (ordered: rounds visit them in a fixed order).
    peers: BTreeMap<u64, Peer<K, R>>,
    /// Regions with work for the next round.
    touched: BTreeSet<u64>,
    /// What the store did so far.
    pub stats: StoreStats,
    /// The applies waiting for their kv write (one context, reused by every round).
    apply: ApplyContext,
    /// Raft writes left unsynced for the driver to sync (`Config::async_raft_sync`), numbered.
    written_seq: u64,
    /// The newest of those known synced.
    synced_seq: u64,
    /// Regions with work waiting for a sync.
    waiting_sync: BTreeSet<u64>,
    /// The key ranges of the initialized replicas: start key -> (region id, end key). The
    /// ranges never overlap; a replica is registered once it has a range (bootstrap, a split, a
    /// snapshot).
    ranges: BTreeMap<Vec<u8>, (u64, Vec<u8>)>,
    /// Region id -> the start key it is registered under in `ranges`.
    range_of: BTreeMap<u64, Vec<u8>>,
    /// The newest vote request for each region that has no replica here yet because its range
    /// still belongs to another replica (a split not applied here yet): delivered to the new
    /// replica once the split creates it, so that the new region's first election (the old
    /// leader's replica campaigns at once) need not wait for an election timeout.
    pending_votes: BTreeMap<u64, RaftMessage>,
    /// Base ticks of the store (for its own periodic work).
    ticks: u64,
    /// This store's share of the `tinykv_store_regions` gauge.
    regions_gauge: GaugeShare,
    /// This store's share of the `tinykv_store_leaders` gauge.
    leaders_gauge: GaugeShare,
    logger: Logger,
}

impl<K: Engine, R: Engine> Store<K, R> {
    /// Opens the store on bootstrapped engines: loads every region replica recorded in the kv
    /// engine, resumes the snapshot applications a crash interrupted, and deletes every other file
    /// of `snap_mgr`'s directory (leftovers of an earlier run).
    pub fn new(
        cfg: Config,
        engines: Engines<K, R>,
        snap_mgr: SnapManager,
        logger: &Logger,
    ) -> Result<Self> {
        cfg.validate()?;
        let ident =
            crate::bootstrap::load_store_ident(&engines.kv)?.ok_or(Error::NotBootstrapped)?;
        let store_id = ident.store_id;
        let logger = logger.new(o!("store_id" => store_id));
        let cfg = Arc::new(cfg);
        let mut store = Store {
            store_id,
            cfg,
            engines,
            snap_mgr,
            peers: BTreeMap::new(),
            touched: BTreeSet::new(),
            stats: StoreStats::default(),
            apply: ApplyContext::default(),
            written_seq: 0,
            synced_seq: 0,
            waiting_sync: BTreeSet::new(),
            ranges: BTreeMap::new(),
            range_of: BTreeMap::new(),
            pending_votes: BTreeMap::new(),
            ticks: 0,
            regions_gauge: GaugeShare::new(&metrics::REGIONS),
            leaders_gauge: GaugeShare::new(&metrics::LEADERS),
            logger,
        };
        store.load_peers()?;
        Ok(store)
    }

    fn load_peers(&mut self) -> Result<()> {
        let mut regions = Vec::new();
        let mut decode_err = None;
        self.engines.kv.scan_cf(
            CF_RAFT,
            keys::region_meta_min_key(),
            keys::region_meta_max_key(),
            &mut |k, v| {
                match keys::decode_region_meta_key(k) {
                    Ok((_, suffix)) if suffix == keys::REGION_STATE_SUFFIX => {}
                    _ => return Ok(true),
                }
                match <RegionLocalState as prost::Message>::decode(v) {
                    Ok(s) => regions.push(s),
                    Err(e) => {
                        decode_err = Some(e);
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        )?;
        if let Some(e) = decode_err {
            return Err(e.into());
        }
        let mut leftovers = (WriteBatch::default(), WriteBatch::default());
        for state in regions {
            let region = state.region.clone().unwrap_or_default();
            if state.state() == PeerState::Tombstone {
                debug!(self.logger, "skipping tombstone region"; "region_id" => region.id);
                // A crash between a destroy's kv write and its raft write leaves the raft log.
                crate::peer_storage::clear_raft_meta(region.id, &mut leftovers.1);
                continue;
            }
            if crate::util::find_peer(&region, self.store_id).is_none() {
                // The replica applied its own removal and a crash came before it was destroyed:
                // finish the destroy now.
                info!(self.logger, "destroying a replica removed before a crash";
                    "region_id" => region.id);
                let (kv_wb, raft_wb) = &mut leftovers;
                crate::peer_storage::destroy_writes(&region, true, kv_wb, raft_wb);
                continue;
            }
            let peer = Peer::create(
                self.store_id,
                self.cfg.clone(),
                self.engines.clone(),
                self.snap_mgr.clone(),
                region.clone(),
                &self.logger,
            )?;
            self.touched.insert(region.id);
            self.peers.insert(region.id, peer);
            self.register_range(&region);
        }
        if !leftovers.0.is_empty() {
            self.engines.kv.write(&leftovers.0, true)?;
        }
        if !leftovers.1.is_empty() {
            self.engines.raft.write(&leftovers.1, true)?;
        }
        let applying: Vec<SnapKey> = self
            .peers
            .values()
            .filter_map(|p| p.applying_snapshot())
            .collect();
        let deleted = self.snap_mgr.gc(&applying)?;
        info!(self.logger, "store started"; "regions" => self.peers.len(),
            "applying_snapshots" => applying.len(), "stale_snapshot_files" => deleted);
        Ok(())
    }

    /// The store's configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The store's engines.
    pub fn engines(&self) -> &Engines<K, R> {
        &self.engines
    }

    /// The store's snapshot files.
    pub fn snap_mgr(&self) -> &SnapManager {
        &self.snap_mgr
    }

    /// The replica of a region, if hosted here.
    pub fn peer(&self, region_id: u64) -> Option<&Peer<K, R>> {
        self.peers.get(&region_id)
    }

    /// The hosted regions' ids.
    pub fn region_ids(&self) -> Vec<u64> {
        self.peers.keys().copied().collect()
    }

    /// Whether the next round has work.
    pub fn has_ready(&self) -> bool {
        !self.touched.is_empty()
    }

    /// Handles a raft message from another store. A MsgSnapshot's files must have been received
    /// (by the transport) into this store's `SnapManager` before; a message that goes no further
    /// than here has its received files deleted.
    pub fn on_raft_message(&mut self, ctx: &mut StoreContext, msg: RaftMessage) {
        let snap_key = crate::snap::SnapKey::from_msg(&msg);
        if !self.step_raft_message(ctx, msg) {
            if let Some(key) = snap_key {
                let pending = self
                    .peers
                    .get(&key.region_id)
                    .and_then(|p| p.pending_snapshot());
                if pending != Some(key) {
                    self.snap_mgr.delete_received(key);
                }
            }
        }
    }

    /// Routes a raft message to its peer; false when it is dropped before the peer. Checks the
    /// message against the replica's life (TinyKV's `kv/raftstore/peer_msg_handler.go`,
    /// `onRaftMsg`, and `kv/raftstore/store_worker.go`, `maybeCreatePeer`): a message of a stale
    /// epoch from a store no longer in the region is dropped (a vote is answered with a GC
    /// notice); a message for a newer peer of the region replaces this store's stale one; a GC
    /// notice destroys the replica it names; a snapshot overlapping another replica's range is
    /// refused.
    fn step_raft_message(&mut self, ctx: &mut StoreContext, msg: RaftMessage) -> bool {
        let region_id = msg.region_id;
        let to_store = msg.to_peer.as_ref().map_or(0, |p| p.store_id);
        if to_store != self.store_id {
            warn!(self.logger, "dropping a raft message for another store";
                "region_id" => region_id, "to_store" => to_store);
            return false;
        }
        let Some(msg_epoch) = msg.region_epoch else {
            debug!(self.logger, "dropping a raft message without an epoch"; "region_id" => region_id);
            return false;
        };
        let to_peer_id = msg.to_peer.as_ref().map_or(0, |p| p.id);
        if msg.is_tombstone {
            self.on_gc_notice(ctx, region_id, to_peer_id, &msg_epoch);
            return false;
        }
        if let Some(peer) = self.peers.get(&region_id) {
            let region = peer.region();
            let epoch = region.region_epoch.unwrap_or_default();
            let from_store = msg.from_peer.as_ref().map_or(0, |p| p.store_id);
            if crate::util::is_epoch_stale(&msg_epoch, &epoch)
                && crate::util::find_peer(region, from_store).is_none()
            {
                debug!(self.logger, "dropping a stale message from a removed peer";
                    "region_id" => region_id, "from_store" => from_store);
                if is_vote(&msg) {
                    self.send_gc_notice(ctx, &msg, region.clone());
                }
                return false;
            }
            if peer.from_earlier_incarnation(&msg) {
                // Its acks must not count for the new replica of that id, and it must learn
                // that it was removed (it may never hear the commit of its removal).
                debug!(self.logger, "answering an earlier incarnation of a peer with a GC notice";
                    "region_id" => region_id, "from" => ?msg.from_peer);
                self.send_gc_notice(ctx, &msg, region.clone());
                return false;
            }
            let peer_id = peer.meta.id;
            if to_peer_id < peer_id {
                debug!(self.logger, "dropping a message for an older peer of the region";
                    "region_id" => region_id, "to_peer" => to_peer_id, "peer" => peer_id);
                return false;
            }
            if to_peer_id > peer_id {
                // This replica was removed and the region re-added a newer one here.
                if !self.destroy_peer(ctx, region_id, "a newer peer of the region is addressed") {
                    return false;
                }
            }
        }
        if !self.peers.contains_key(&region_id) && !self.maybe_create_peer(ctx, &msg, &msg_epoch) {
            return false;
        }
        let mut snap_region = None;
        if let Some(snap) = msg.message.as_ref().and_then(|m| m.snapshot.as_ref()) {
            match self.check_snapshot_range(region_id, snap) {
                Ok(r) => snap_region = Some((r, SnapKey::from_snapshot(region_id, snap))),
                Err(e) => {
                    info!(self.logger, "refusing a snapshot"; "region_id" => region_id, "err" => %e);
                    return false;
                }
            }
        }
        let peer = self.peers.get_mut(&region_id).expect("created above");
        if let Err(e) = peer.on_raft_message(msg) {
            debug!(self.logger, "raft message not stepped"; "region_id" => region_id, "err" => %e);
        }
        if let Some((region, key)) = snap_region {
            if peer.pending_snapshot() == Some(key) {
                // Restored: the range is this replica's from now on, so that no other snapshot
                // is accepted over it before this one is installed.
                self.register_range(&region);
            }
        }
        self.touched.insert(region_id);
        true
    }

    /// A snapshot may be installed only if its range overlaps no other replica's on this store
    /// (a split not applied here yet, or a range that moved, would leave two replicas owning
    /// the same keys).
    fn check_snapshot_range(
        &self,
        region_id: u64,
        snap: &proto::eraftpb::Snapshot,
    ) -> Result<Region> {
        let data = crate::snap::snapshot_data(snap)?;
        let region = data.region.unwrap_or_default();
        if let Some(other) = self.overlapping(&region.start_key, &region.end_key, region_id) {
            return Err(Error::Other(format!(
                "its range overlaps region {other} on this store"
            )));
        }
        Ok(region)
    }

    /// The first registered region other than `except` whose range overlaps `[start, end)`
    /// (empty end: unbounded).
    fn overlapping(&self, start: &[u8], end: &[u8], except: u64) -> Option<u64> {
        let upper = if end.is_empty() {
            std::ops::Bound::Unbounded
        } else {
            std::ops::Bound::Excluded(end)
        };
        // Every range starting before `end`, nearest first: the first that ends after `start`
        // overlaps; ranges do not overlap each other, so once one ends at or before `start`,
        // every earlier one does too.
        for (_, (id, r_end)) in self
            .ranges
            .range::<[u8], _>((std::ops::Bound::Unbounded, upper))
            .rev()
        {
            let id = *id;
            if id == except {
                continue;
            }
            if r_end.is_empty() || r_end.as_slice() > start {
                return Some(id);
            }
            return None;
        }
        None
    }

    /// Registers (or moves) `region`'s range; unregisters it when it has none (uninitialized).
    fn register_range(&mut self, region: &Region) {
        if let Some(start) = self.range_of.get(&region.id) {
            if *start == region.start_key && self.ranges[start].1 == region.end_key {
                return;
            }
        }
        self.unregister_range(region.id);
        if region.peers.is_empty() {
            return;
        }
        let entry = (region.id, region.end_key.clone());
        if let Some((prev, _)) = self.ranges.insert(region.start_key.clone(), entry) {
            warn!(self.logger, "two regions registered at one start key";
                "region_id" => region.id, "other" => prev);
            self.range_of.remove(&prev);
        }
        self.range_of.insert(region.id, region.start_key.clone());
    }

    fn unregister_range(&mut self, region_id: u64) {
        if let Some(start) = self.range_of.remove(&region_id) {
            self.ranges.remove(&start);
        }
    }

    /// The registered ranges, in key order: `(start, end, region id)` (for checks and tests).
    pub fn ranges(&self) -> Vec<(Vec<u8>, Vec<u8>, u64)> {
        self.ranges
            .iter()
            .map(|(s, (id, e))| (s.clone(), e.clone(), *id))
            .collect()
    }

    /// Answers a vote from a removed peer with a GC notice: the region as this store knows it,
    /// for the sender to compare with its own and destroy itself.
    fn send_gc_notice(&self, ctx: &mut StoreContext, msg: &RaftMessage, region: Region) {
        let (Some(from), Some(to)) = (msg.from_peer, msg.to_peer) else {
            return;
        };
        ctx.messages.push(RaftMessage {
            region_id: region.id,
            from_peer: Some(to),
            to_peer: Some(from),
            region_epoch: region.region_epoch,
            is_tombstone: true,
            ..Default::default()
        });
    }

    /// A GC notice: the region moved on without the replica it names; destroy it if that is
    /// this store's replica and its epoch is older than the notice's.
    fn on_gc_notice(
        &mut self,
        ctx: &mut StoreContext,
        region_id: u64,
        to_peer_id: u64,
        epoch: &proto::metapb::RegionEpoch,
    ) {
        let Some(peer) = self.peers.get(&region_id) else {
            return;
        };
        let mine = peer.region().region_epoch.unwrap_or_default();
        if peer.meta.id != to_peer_id || !crate::util::is_epoch_stale(&mine, epoch) {
            debug!(self.logger, "ignoring a GC notice"; "region_id" => region_id,
                "to_peer" => to_peer_id, "epoch" => ?mine);
            return;
        }
        self.destroy_peer(ctx, region_id, "a GC notice");
    }

    /// Destroys a replica (see `Peer::destroy`): the synced kv write makes it a tombstone, the
    /// raft write then deletes its log. A replica installing a snapshot is left alone (the
    /// install would write its data back); false when nothing was destroyed.
    pub(crate) fn destroy_peer(
        &mut self,
        ctx: &mut StoreContext,
        region_id: u64,
        why: &str,
    ) -> bool {
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return false;
        };
        if peer.applying_snapshot().is_some() {
            debug!(self.logger, "not destroying a replica while it installs a snapshot";
                "region_id" => region_id, "why" => why);
            return false;
        }
        info!(self.logger, "destroying replica"; "region_id" => region_id, "why" => why);
        let (mut kv_wb, mut raft_wb) = (WriteBatch::default(), WriteBatch::default());
        peer.destroy(ctx, &mut kv_wb, &mut raft_wb);
        if let Err(e) = self
            .engines
            .kv
            .write(&kv_wb, true)
            .and_then(|()| self.engines.raft.write(&raft_wb, false))
        {
            // The store cannot go on with a replica half gone in memory.
            panic!(
                "store {}: destroying region {region_id} failed: {e}",
                self.store_id
            );
        }
        self.peers.remove(&region_id);
        self.unregister_range(region_id);
        self.touched.remove(&region_id);
        self.waiting_sync.remove(&region_id);
        true
    }

    /// A background task of this store finished.
    pub fn on_task_result(&mut self, ctx: &mut StoreContext, result: TaskResult) {
        let region_id = match &result {
            TaskResult::SnapshotGenerated { key, .. } | TaskResult::SnapshotApplied { key, .. } => {
                key.region_id
            }
            TaskResult::SplitChecked { region, .. } => region.id,
        };
        let Some(peer) = self.peers.get_mut(&region_id) else {
            debug!(self.logger, "task result for a region no longer here";
                "region_id" => region_id);
            return;
        };
        match result {
            TaskResult::SnapshotGenerated { key, result } => {
                peer.on_snapshot_generated(key, result)
            }
            TaskResult::SnapshotApplied { key, result } => peer.on_snapshot_applied(key, result),
            TaskResult::SplitChecked {
                region,
                size,
                split_key,
            } => peer.on_split_checked(ctx, &region, size, split_key),
        }
        self.touched.insert(region_id);
    }

    /// The transport's report on a snapshot this store sent from `region_id` to peer
    /// `to_peer_id`: whether it arrived (raft waits for it before replicating to that peer again).
    pub fn on_snapshot_status(
        &mut self,
        _ctx: &mut StoreContext,
        region_id: u64,
        to_peer_id: u64,
        status: SnapshotStatus,
    ) {
        if let Some(peer) = self.peers.get_mut(&region_id) {
            peer.raft_group.report_snapshot(to_peer_id, status);
            self.touched.insert(region_id);
        }
    }

    /// Creates a replica for a region this store does not host, when the message is one that
    /// may create it (a vote request or an empty heartbeat from a member), the region was not
    /// destroyed here at a newer epoch, and its range overlaps no replica here.
    fn maybe_create_peer(
        &mut self,
        ctx: &mut StoreContext,
        msg: &RaftMessage,
        msg_epoch: &proto::metapb::RegionEpoch,
    ) -> bool {
        let region_id = msg.region_id;
        let Some(m) = &msg.message else {
            return false;
        };
        match self
            .engines
            .kv
            .get_msg_cf::<RegionLocalState>(CF_RAFT, &keys::region_state_key(region_id))
        {
            Ok(Some(s)) if s.state() == PeerState::Tombstone => {
                let region = s.region.unwrap_or_default();
                let epoch = region.region_epoch.unwrap_or_default();
                if crate::util::is_epoch_stale(msg_epoch, &epoch)
                    || msg_epoch == &epoch && !region.peers.is_empty()
                {
                    let from_store = msg.from_peer.as_ref().map_or(0, |p| p.store_id);
                    if is_vote(msg) && crate::util::find_peer(&region, from_store).is_none() {
                        self.send_gc_notice(ctx, msg, region);
                    }
                    debug!(self.logger, "dropping a message for a destroyed replica";
                        "region_id" => region_id);
                    return false;
                }
            }
            Ok(Some(s)) => {
                warn!(self.logger, "a region with a live state has no replica here";
                    "region_id" => region_id, "state" => ?s.state());
                return false;
            }
            Err(e) => {
                warn!(self.logger, "cannot read region state"; "region_id" => region_id, "err" => %e);
                return false;
            }
            Ok(None) => {}
        }
        if !is_initial_msg(m) {
            debug!(self.logger, "dropping a message for an unknown region";
                "region_id" => region_id, "msg_type" => ?m.msg_type());
            return false;
        }
        if let Some(other) = self.overlapping(&msg.start_key, &msg.end_key, region_id) {
            debug!(self.logger, "not creating a replica over another's range";
                "region_id" => region_id, "overlaps" => other);
            if is_vote(msg) && self.pending_votes.len() < MAX_PENDING_VOTES {
                self.pending_votes.insert(region_id, msg.clone());
            }
            return false;
        }
        let meta = msg.to_peer.unwrap_or_default();
        match Peer::replicate(
            self.cfg.clone(),
            self.engines.clone(),
            self.snap_mgr.clone(),
            region_id,
            meta,
            &self.logger,
        ) {
            Ok(p) => {
                info!(self.logger, "created a replica from a message"; "region_id" => region_id,
                    "peer_id" => meta.id);
                self.pending_votes.remove(&region_id);
                self.peers.insert(region_id, p);
                true
            }
            Err(e) => {
                warn!(self.logger, "cannot create a replica"; "region_id" => region_id, "err" => %e);
                false
            }
        }
    }

    /// Handles a command for a region.
    pub fn on_command(&mut self, ctx: &mut StoreContext, req: RaftCmdRequest, cb: Callback) {
        let region_id = req.header.as_ref().map_or(0, |h| h.region_id);
        let Some(peer) = self.peers.get_mut(&region_id) else {
            ctx.responses
                .push((cb, CmdResponse::error(Error::RegionNotFound(region_id), 0)));
            return;
        };
        peer.propose(ctx, req, cb);
        self.touched.insert(region_id);
    }

    /// The scheduler's answer to one of this store's region heartbeats: the operator it carries
    /// (a membership change or a leader transfer) becomes an admin command for the region,
    /// proposed like a client's. The scheduler repeats it until it sees the effect, so a lost or
    /// refused one is only logged.
    pub fn on_scheduler_response(&mut self, ctx: &mut StoreContext, resp: RegionHeartbeatResponse) {
        let Some(req) = crate::scheduler::command_from_response(&resp) else {
            return;
        };
        let logger = self.logger.new(o!("region_id" => resp.region_id));
        debug!(logger, "scheduler operator"; "cmd" => ?req.admin_request);
        self.on_command(
            ctx,
            req,
            Box::new(move |r| {
                if let Some(e) = r.region_error() {
                    debug!(logger, "scheduler operator not carried out"; "err" => &e.message);
                }
            }),
        );
    }

    /// One base tick for every replica; the gauges of regions and leaders are set.
    pub fn on_tick(&mut self, ctx: &mut StoreContext) {
        let mut leaders = 0;
        for (&id, peer) in self.peers.iter_mut() {
            peer.tick(ctx);
            leaders += i64::from(peer.is_leader());
            self.touched.insert(id);
        }
        self.regions_gauge.set(self.peers.len() as i64);
        self.leaders_gauge.set(leaders);
        self.ticks += 1;
        if self.ticks % self.cfg.scheduler_store_heartbeat_ticks as u64 == 0 {
            let applying = self
                .peers
                .values()
                .filter(|p| p.applying_snapshot().is_some())
                .count();
            ctx.scheduler_tasks.push(SchedulerTask::StoreHeartbeat(
                proto::schedulerpb::StoreStats {
                    store_id: self.store_id,
                    region_count: self.peers.len() as u32,
                    applying_snap_count: applying as u32,
                    ..Default::default()
                },
            ));
        }
    }

    /// One round, the same steps for every driver (see the module documentation):
    /// `begin_round`; then `early`, where the driver carries out what may precede the round's
    /// raft write (leaders' appends, early answers); then `finish_round`. The driver carries out
    /// the rest of `ctx` afterwards, with the sync it asks for.
    pub fn round(
        &mut self,
        ctx: &mut StoreContext,
        early: impl FnOnce(&mut StoreContext),
    ) -> Result<()> {
        let round = self.begin_round(ctx)?;
        early(ctx);
        self.finish_round(ctx, round)
    }

    /// The sync a round asked for (`StoreContext::sync_request`), made in place: syncs the raft
    /// engine, then goes on as `on_synced` does.
    pub fn sync_raft(&mut self, ctx: &mut StoreContext, seq: u64) -> Result<()> {
        self.engines.raft.sync()?;
        self.on_synced(ctx, seq)
    }

    /// The first half of a round: takes every touched replica's `Ready` into the round's raft
    /// write batch, and does what may precede the raft write: leaders' messages, and the
    /// entries leaders had committed and written before this round, applied (unsynced kv write)
    /// with their callbacks answered.
    fn begin_round(&mut self, ctx: &mut StoreContext) -> Result<Round> {
        let touched = std::mem::take(&mut self.touched);
        let mut round = Round::default();
        for &id in &touched {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if peer.pending_remove {
                continue;
            }
            // Here, before this round writes anything, the kv engine is exactly at each peer's
            // applied index: the place to take the view a snapshot is generated from.
            peer.maybe_generate_snapshot(ctx);
            peer.flush_proposals(ctx);
            peer.start_reads(ctx);
            let persisted = peer.storage().raft_state;
            if let Some(mut rd) = peer.collect_ready(&mut round.raft_wb, &mut round.snap_wb)? {
                // A commit index that covers a membership change is synced before any message
                // tells it: a peer that learns it may apply its own removal and destroy itself,
                // and if the survivors then lost that commit in a crash, the old membership
                // they recover would need the destroyed peer's vote forever.
                let old_commit = persisted.hard_state.map_or(0, |h| h.commit);
                let new_commit = rd.hard_state.map_or(old_commit, |h| h.commit);
                let pending_conf = peer.raft_group.raft.pending_conf_index;
                let commits_conf_change = (old_commit < pending_conf && pending_conf <= new_commit)
                    || rd
                        .committed_entries
                        .iter()
                        .any(|e| e.entry_type() == proto::eraftpb::EntryType::EntryConfChange);
                round.must_sync |= rd.must_sync || commits_conf_change;
                round.durable_commit |= commits_conf_change;
                round.has_snapshot |= rd.snapshot.is_some();
                self.stats.entries_persisted += rd.entries.len() as u64;
                self.stats.entries_applied += rd.committed_entries.len() as u64;
                peer.queue_committed(&mut rd);
                peer.handle_ready_early(
                    ctx,
                    &mut rd,
                    &persisted,
                    &mut self.apply,
                    !commits_conf_change,
                )?;
                round.readies.push((id, rd));
            }
        }
        // A round with a snapshot, or whose applies need a synced kv write, syncs in place.
        round.deferred = self.cfg.async_raft_sync
            && round.must_sync
            && !round.has_snapshot
            && round.snap_wb.is_empty()
            && !self.apply.sync
            && !round.durable_commit;
        let raft_will_sync = !round.raft_wb.is_empty() && round.must_sync && !round.deferred;
        self.apply.write(&self.engines, raft_will_sync)?;
        round.touched = touched;
        Ok(round)
    }

    /// The second half of a round: the raft write (synced once for all replicas when any needs
    /// it), then the remaining messages, the remaining applies (one kv write) and the reads
    /// confirmed by ReadIndex. See the module documentation for why this order.
    fn finish_round(&mut self, ctx: &mut StoreContext, mut round: Round) -> Result<()> {
        if !round.snap_wb.is_empty() {
            // The `Applying` region states of snapshots to install, with their apply states,
            // synced before the raft state that points past the old log: after a crash the
            // region either still has its old log and data, or redoes the install from the files.
            self.engines.kv.write(&round.snap_wb, true)?;
        }
        let synced = round.must_sync && !round.deferred;
        if !round.raft_wb.is_empty() {
            self.engines.raft.write(&round.raft_wb, synced)?;
            self.stats.raft_writes += 1;
            if synced {
                self.stats.raft_syncs += 1;
            }
        }
        let deferred = round.deferred.then(|| {
            self.written_seq += 1;
            ctx.sync_request = Some(self.written_seq);
            self.written_seq
        });
        let newest = self.written_seq;
        for (id, rd) in std::mem::take(&mut round.readies) {
            let peer = self.peers.get_mut(&id).expect("peer of a ready");
            // Raft answers from its log in memory: an ack or a repeated vote from a Ready that
            // needed no sync may still speak for an earlier unsynced write, so it waits too.
            let wait_for = deferred.or_else(|| (!synced && peer.has_unsynced()).then_some(newest));
            peer.post_ready(ctx, rd, wait_for, &mut self.apply)?;
            if peer.raft_group.has_ready() {
                self.touched.insert(id);
            }
            if peer.waits_for_sync() {
                self.waiting_sync.insert(id);
            }
        }
        // Unsynced writes of earlier rounds are durable once anything syncs the raft engine.
        let raft_synced = synced && !round.raft_wb.is_empty();
        let kv_synced = self.apply.sync;
        self.apply.write(&self.engines, raft_synced)?;
        if raft_synced || kv_synced {
            self.release_synced(ctx, self.written_seq)?;
        }
        self.after_applies(ctx, &round.touched);
        Ok(())
    }
}

impl<K: Engine, R: Engine> Store<K, R> {
    /// The driver synced the raft engine after the unsynced write numbered `seq` (see
    /// `StoreContext::sync_request`): what waited for it goes on — messages leave, entries are
    /// applied (one kv write), held acks are stepped.
    pub fn on_synced(&mut self, ctx: &mut StoreContext, seq: u64) -> Result<()> {
        self.stats.raft_syncs += 1;
        self.release_synced(ctx, seq)
    }

    fn release_synced(&mut self, ctx: &mut StoreContext, seq: u64) -> Result<()> {
        let seq = seq.min(self.written_seq);
        if seq <= self.synced_seq && self.waiting_sync.is_empty() {
            return Ok(());
        }
        self.synced_seq = self.synced_seq.max(seq);
        let released = std::mem::take(&mut self.waiting_sync);
        for &id in &released {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            peer.on_synced(ctx, self.synced_seq, &mut self.apply)?;
            if peer.waits_for_sync() {
                self.waiting_sync.insert(id);
            }
            self.touched.insert(id);
        }
        self.apply.write(&self.engines, false)?;
        self.after_applies(ctx, &released);
        Ok(())
    }

    /// After a kv write of applies: reads confirmed by ReadIndex that the applied state now
    /// covers are served, and the regions' background tasks are queued.
    fn after_applies(&mut self, ctx: &mut StoreContext, regions: &BTreeSet<u64>) {
        for &id in regions {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            peer.serve_reads(ctx);
            ctx.tasks.append(&mut peer.pending_tasks);
            // Ranges move only where they are registered: a restored snapshot (when stepped)
            // and a split (below); a membership change keeps the range.
            let results = std::mem::take(&mut peer.apply_results);
            for r in results {
                match r {
                    ApplyResult::RemovedSelf => {
                        self.destroy_peer(ctx, id, "removed from its region");
                    }
                    ApplyResult::Split {
                        left,
                        right,
                        was_leader,
                    } => self.on_split_applied(ctx, *left, *right, was_leader),
                }
            }
        }
    }

    /// A split applied here (its kv write made): the new region's range is registered and its
    /// replica created, replacing an uninitialized one that a message created before; on the
    /// store whose replica led the old region it campaigns at once, so the new region has a
    /// leader without waiting for an election timeout.
    fn on_split_applied(
        &mut self,
        ctx: &mut StoreContext,
        left: Region,
        right: Region,
        was_leader: bool,
    ) {
        self.register_range(&left);
        if let Some(existing) = self.peers.get(&right.id) {
            if existing.storage().is_initialized() {
                warn!(self.logger, "split-off region already has an initialized replica here";
                    "region_id" => right.id);
                return;
            }
            // The uninitialized replica's raft state is kept on disk and taken over below.
            self.peers.remove(&right.id);
        }
        let peer = Peer::create(
            self.store_id,
            self.cfg.clone(),
            self.engines.clone(),
            self.snap_mgr.clone(),
            right.clone(),
            &self.logger,
        );
        let mut peer = match peer {
            Ok(p) => p,
            Err(e) => panic!(
                "store {}: cannot create the replica of split-off region {}: {e}",
                self.store_id, right.id
            ),
        };
        if was_leader && right.peers.len() > 1 {
            if let Err(e) = peer.raft_group.campaign() {
                debug!(self.logger, "split-off replica cannot campaign"; "region_id" => right.id,
                    "err" => %e);
            }
        }
        self.register_range(&right);
        self.peers.insert(right.id, peer);
        self.touched.insert(right.id);
        if was_leader {
            // The new replica here is about to lead the new region: report the region now,
            // naming it, so that clients find the new range before its first election ends
            // (TiKV's `on_ready_split_region` does the same).
            let peer = self.peers.get(&right.id).expect("inserted above");
            peer.heartbeat_scheduler(ctx);
        }
        if let Some(vote) = self.pending_votes.remove(&right.id) {
            self.step_raft_message(ctx, vote);
        }
    }
}

/// The most vote requests a store keeps for regions it cannot host yet.
const MAX_PENDING_VOTES: usize = 1024;

/// Whether a message asks for a vote (a real or a pre-vote).
fn is_vote(msg: &RaftMessage) -> bool {
    msg.message.as_ref().is_some_and(|m| {
        matches!(
            m.msg_type(),
            proto::eraftpb::MessageType::MsgRequestVote
                | proto::eraftpb::MessageType::MsgRequestPreVote
        )
    })
}

/// A round between `begin_round` and `finish_round`: what the second half writes and hands on.
#[derive(Default)]
struct Round {
    touched: BTreeSet<u64>,
    raft_wb: WriteBatch,
    /// Snapshot installs' synced kv writes, made before the raft write.
    snap_wb: WriteBatch,
    readies: Vec<(u64, Ready)>,
    must_sync: bool,
    /// Whether a Ready restores a snapshot.
    has_snapshot: bool,
    /// Whether the raft write is left unsynced, for the driver to sync (`async_raft_sync`).
    deferred: bool,
    /// Whether a Ready commits a membership change: the round's raft write is synced in place.
    durable_commit: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::{bootstrap_store, first_region, prepare_bootstrap_region};
    use crate::engine::{MemEngine, ALL_CFS, CF_DEFAULT, CF_LOCK};
    use crate::snap::copy_snapshot;
    use crate::task::Task;
    use crate::worker::run_task;
    use proto::eraftpb::{ConfChangeType, Message, MessageType};
    use proto::metapb::Region;
    use proto::raft_cmdpb::{
        AdminCmdType, AdminRequest, ChangePeerRequest, RaftRequestHeader, SplitRequest,
    };
    use proto::raft_serverpb::{RaftApplyState, RaftLocalState, RaftTruncatedState};

    /// An admin command for `region` through its first peer, with its current epoch.
    fn admin_cmd(region: &Region, admin: AdminRequest) -> RaftCmdRequest {
        RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: region.id,
                peer: Some(region.peers[0]),
                region_epoch: region.region_epoch,
                term: 0,
            }),
            requests: Vec::new(),
            admin_request: Some(admin),
        }
    }

    /// Runs rounds, answering as the followers, until every answer came back.
    fn settle(store: &mut Store<MemEngine, MemEngine>, ctx: &mut StoreContext) {
        for _ in 0..10 {
            store.round(ctx, |_| {}).unwrap();
            reply_as_followers(store, ctx);
            store.round(ctx, |_| {}).unwrap();
        }
        for (cb, resp) in std::mem::take(&mut ctx.responses) {
            cb(resp);
        }
    }

    fn region_state(engines: &Engines<MemEngine, MemEngine>, id: u64) -> Option<RegionLocalState> {
        engines
            .kv
            .get_msg_cf(CF_RAFT, &keys::region_state_key(id))
            .unwrap()
    }

    /// A split is applied as one write: the left region keeps its id and ends at the split key,
    /// the right one gets the new ids and the rest of the range, both one version up; the new
    /// replica is registered and campaigns at once (this store led the region); requests for
    /// the right half now get KeyNotInRegion from the left region. A restart finds both.
    #[test]
    fn test_split_applies_as_one_write_and_survives_a_restart() {
        let (mut store, mut ctx, engines, region, dir) = leader_of_three();
        for i in 0..8u8 {
            store.on_command(&mut ctx, put_cmd(&region, i), Box::new(|_| {}));
        }
        settle(&mut store, &mut ctx);
        let answers = Answers::default();
        let split = |new_peer_ids: Vec<u64>| AdminRequest {
            cmd_type: AdminCmdType::Split as i32,
            split: Some(SplitRequest {
                split_key: vec![b'k', 4],
                new_region_id: 100,
                new_peer_ids,
            }),
            ..Default::default()
        };
        // Fewer new peer ids than peers: refused when applied, and nothing changes.
        store.on_command(
            &mut ctx,
            admin_cmd(&region, split(vec![101, 102])),
            record_answer(&answers, 9),
        );
        settle(&mut store, &mut ctx);
        let refused = answers.lock().unwrap().pop().expect("answered").1;
        let msg = &refused.region_error().expect("refused").message;
        assert!(msg.contains("names 2 new peers"), "{msg}");
        assert_eq!(store.peer(1).unwrap().region(), &region);
        assert!(store.peer(100).is_none());
        store.on_command(
            &mut ctx,
            admin_cmd(&region, split(vec![101, 102, 103])),
            record_answer(&answers, 0),
        );
        settle(&mut store, &mut ctx);
        let got = answers.lock().unwrap().pop().expect("answered").1;
        assert!(got.region_error().is_none(), "{:?}", got.resp);
        let regions = got.resp.admin_response.unwrap().split.unwrap().regions;
        let (left, right) = (&regions[0], &regions[1]);
        assert_eq!(
            (left.id, &left.start_key, &left.end_key),
            (1, &vec![], &vec![b'k', 4])
        );
        assert_eq!(
            (right.id, &right.start_key, &right.end_key),
            (100, &vec![b'k', 4], &vec![])
        );
        assert_eq!(left.region_epoch.unwrap().version, 2);
        assert_eq!(right.region_epoch, left.region_epoch);
        let ids: Vec<(u64, u64)> = right.peers.iter().map(|p| (p.id, p.store_id)).collect();
        assert_eq!(ids, vec![(101, 1), (102, 2), (103, 3)]);
        assert_eq!(
            store.ranges(),
            vec![(vec![], vec![b'k', 4], 1), (vec![b'k', 4], vec![], 100)]
        );
        assert_eq!(
            region_state(&engines, 100).unwrap().region.as_ref(),
            Some(right)
        );
        let campaigned =
            ctx.messages.iter().any(|m| m.region_id == 100) || store.peer(100).unwrap().is_leader();
        assert!(
            campaigned,
            "the split-off replica of the old leader campaigns at once"
        );
        // The left region refuses the right half's keys, with its current epoch.
        let mut get_right = put_cmd(left, 5);
        get_right.header.as_mut().unwrap().region_epoch = left.region_epoch;
        store.on_command(&mut ctx, get_right, record_answer(&answers, 1));
        settle(&mut store, &mut ctx);
        let e = answers.lock().unwrap().pop().unwrap().1;
        assert!(
            e.region_error().unwrap().key_not_in_region.is_some(),
            "{:?}",
            e.resp
        );
        // The data did not move, and a restart finds both regions.
        assert_eq!(
            engines.kv.get_cf(CF_DEFAULT, b"k\x06").unwrap(),
            Some(vec![6])
        );
        drop(store);
        let snaps = SnapManager::new(dir.path().join("again")).unwrap();
        let logger = raft::default_logger();
        let store = Store::new(Config::test_config(), engines.clone(), snaps, &logger).unwrap();
        assert_eq!(store.region_ids(), vec![1, 100]);
        assert_eq!(store.ranges().len(), 2);
    }

    /// A membership change updates the region's peers and conf_ver in the apply batch; the same
    /// change again changes nothing; the leader of a two-peer region asked to remove itself
    /// hands leadership over instead of proposing.
    #[test]
    fn test_membership_change_is_applied_once() {
        let (mut store, mut ctx, engines, region, _dir) = leader_of_three();
        let change = |region: &Region, t: ConfChangeType, id: u64, store_id: u64| {
            admin_cmd(
                region,
                AdminRequest {
                    cmd_type: AdminCmdType::ChangePeer as i32,
                    change_peer: Some(ChangePeerRequest {
                        change_type: t as i32,
                        peer: Some(proto::metapb::Peer { id, store_id }),
                    }),
                    ..Default::default()
                },
            )
        };
        let answers = Answers::default();
        // An unknown change type is refused, not taken for some other change.
        let mut unknown = change(&region, ConfChangeType::AddNode, 4, 4);
        let cp = unknown.admin_request.as_mut().unwrap();
        cp.change_peer.as_mut().unwrap().change_type = 7;
        store.on_command(&mut ctx, unknown, record_answer(&answers, 9));
        settle(&mut store, &mut ctx);
        let refused = answers.lock().unwrap().pop().expect("answered").1;
        let msg = &refused.region_error().expect("refused").message;
        assert!(msg.contains("unknown change type 7"), "{msg}");
        assert_eq!(store.peer(1).unwrap().region(), &region);
        store.on_command(
            &mut ctx,
            change(&region, ConfChangeType::AddNode, 4, 4),
            record_answer(&answers, 0),
        );
        settle(&mut store, &mut ctx);
        let got = answers.lock().unwrap().pop().expect("answered").1;
        assert!(got.region_error().is_none(), "{:?}", got.resp);
        let now = store.peer(1).unwrap().region().clone();
        assert_eq!(now.peers.len(), 4);
        assert_eq!(now.region_epoch.unwrap().conf_ver, 2);
        assert_eq!(region_state(&engines, 1).unwrap().region, Some(now.clone()));
        assert!(
            ctx.scheduler_tasks
                .iter()
                .any(|t| matches!(t, SchedulerTask::RegionHeartbeat(r) if r.region.as_ref() == Some(&now))),
            "the leader reports the change at once"
        );
        // Again, with the new epoch: nothing changes.
        store.on_command(
            &mut ctx,
            change(&now, ConfChangeType::AddNode, 4, 4),
            record_answer(&answers, 1),
        );
        settle(&mut store, &mut ctx);
        assert_eq!(
            store.peer(1).unwrap().region(),
            &now,
            "a repeated change is a no-op"
        );
        // Down to two peers, {1, 2}.
        let mut now = now;
        for (id, i) in [(4, 3), (3, 4)] {
            store.on_command(
                &mut ctx,
                change(&now, ConfChangeType::RemoveNode, id, id),
                record_answer(&answers, i),
            );
            settle(&mut store, &mut ctx);
            let got = answers.lock().unwrap().pop().expect("answered").1;
            assert!(got.region_error().is_none(), "{:?}", got.resp);
            now = store.peer(1).unwrap().region().clone();
        }
        assert_eq!(now.peers.len(), 2);
        // Removing the leader itself from a two-peer region: refused, and leadership is handed
        // over (the survivor alone could not elect itself before it learned the commit).
        store.on_command(
            &mut ctx,
            change(&now, ConfChangeType::RemoveNode, 1, 1),
            record_answer(&answers, 2),
        );
        store.round(&mut ctx, |_| {}).unwrap();
        for (cb, resp) in std::mem::take(&mut ctx.responses) {
            cb(resp);
        }
        let (i, e) = answers.lock().unwrap().pop().unwrap();
        assert_eq!(i, 2);
        assert!(
            e.region_error().unwrap().not_leader.is_some(),
            "{:?}",
            e.resp
        );
        // Every follower is caught up: the transfer starts with MsgTimeoutNow at once.
        assert!(
            ctx.messages.iter().any(|m| m
                .message
                .as_ref()
                .is_some_and(|m| m.msg_type() == MessageType::MsgTimeoutNow)),
            "the transfer started"
        );
        assert_eq!(store.peer(1).unwrap().region().peers.len(), 2);
    }

    /// The leader of a three-peer region asked to remove itself proposes it: once applied, it
    /// reports the new membership to the scheduler, sends MsgTimeoutNow to its most caught-up
    /// follower, and its replica is destroyed (the other two are a majority of the old
    /// membership as well, so they elect a leader without it).
    #[test]
    fn test_leader_of_three_removes_itself() {
        let (mut store, mut ctx, engines, region, _dir) = leader_of_three();
        let answers = Answers::default();
        let cmd = admin_cmd(
            &region,
            AdminRequest {
                cmd_type: AdminCmdType::ChangePeer as i32,
                change_peer: Some(ChangePeerRequest {
                    change_type: ConfChangeType::RemoveNode as i32,
                    peer: Some(proto::metapb::Peer { id: 1, store_id: 1 }),
                }),
                ..Default::default()
            },
        );
        // The removal's entry, which the MsgTimeoutNow and the heartbeats say is committed.
        let removal = store.peer(1).unwrap().raft().raft_log.last_index() + 1;
        store.on_command(&mut ctx, cmd, record_answer(&answers, 0));
        // As `settle`, keeping the MsgTimeoutNow the followers' stand-in would drop, and the
        // messages sent before it in its round.
        let mut timeout_now = Vec::new();
        let mut before = Vec::new();
        for _ in 0..10 {
            for _ in 0..2 {
                store.round(&mut ctx, |_| {}).unwrap();
                let msgs: Vec<_> = ctx
                    .messages
                    .iter()
                    .filter_map(|m| m.message.clone())
                    .collect();
                if let Some(at) = msgs
                    .iter()
                    .position(|m| m.msg_type() == MessageType::MsgTimeoutNow)
                {
                    timeout_now.push((msgs[at].to, msgs[at].commit));
                    before = msgs[..at].to_vec();
                }
                reply_as_followers(&mut store, &mut ctx);
            }
        }
        for (cb, resp) in std::mem::take(&mut ctx.responses) {
            cb(resp);
        }
        let got = answers.lock().unwrap().pop().expect("answered").1;
        assert!(got.region_error().is_none(), "{:?}", got.resp);
        let reported = ctx
            .scheduler_tasks
            .iter()
            .rev()
            .find_map(|t| match t {
                SchedulerTask::RegionHeartbeat(r) => r.region.clone(),
                _ => None,
            })
            .expect("the removed leader reports the region");
        let ids: Vec<u64> = reported.peers.iter().map(|p| p.id).collect();
        assert_eq!(ids, vec![2, 3]);
        assert_eq!(reported.region_epoch.unwrap().conf_ver, 2);
        assert!(store.peer(1).is_none(), "the replica is destroyed");
        assert_eq!(
            timeout_now,
            vec![(2, removal)],
            "the most caught-up survivor campaigns at once"
        );
        // Each follower hears the commit (the removal among it) first, in a heartbeat.
        let told: Vec<(u64, u64)> = before
            .iter()
            .filter(|m| m.msg_type() == MessageType::MsgHeartbeat)
            .map(|m| (m.to, m.commit))
            .collect();
        assert_eq!(told, vec![(2, removal), (3, removal)]);
        assert_eq!(
            region_state(&engines, 1).unwrap().state(),
            PeerState::Tombstone
        );
    }

    /// A replica that applied its own removal and crashed before destroying itself is destroyed
    /// when the store starts: a tombstone, no apply or raft state, no data; a restart after the
    /// destroy's kv write but before its raft write clears the leftover raft state.
    #[test]
    fn test_removed_replica_is_destroyed_on_restart() {
        let (engines, region, dir, snaps) = store_one_of_three();
        let mut removed = region.clone();
        removed.peers.retain(|p| p.store_id != 1);
        removed.region_epoch.as_mut().unwrap().conf_ver += 1;
        let mut wb = WriteBatch::default();
        wb.put_msg_cf(
            CF_RAFT,
            keys::region_state_key(1),
            &RegionLocalState {
                state: PeerState::Normal as i32,
                region: Some(removed.clone()),
            },
        );
        wb.put_cf(CF_DEFAULT, b"k1".to_vec(), b"v1".to_vec());
        engines.kv.write(&wb, true).unwrap();
        let raft_state = RaftLocalState {
            last_index: 5,
            last_term: 5,
            ..Default::default()
        };
        let mut rwb = WriteBatch::default();
        rwb.put_msg_cf(CF_DEFAULT, keys::raft_state_key(1), &raft_state);
        engines.raft.write(&rwb, true).unwrap();
        let logger = raft::default_logger();
        let store = Store::new(Config::test_config(), engines.clone(), snaps, &logger).unwrap();
        assert!(store.region_ids().is_empty());
        let st = region_state(&engines, 1).unwrap();
        assert_eq!(st.state(), PeerState::Tombstone);
        assert_eq!(st.region, Some(removed));
        assert_eq!(engines.kv.get_cf(CF_DEFAULT, b"k1").unwrap(), None);
        assert!(engines
            .kv
            .get_cf(CF_RAFT, &keys::apply_state_key(1))
            .unwrap()
            .is_none());
        assert!(engines
            .raft
            .get_cf(CF_DEFAULT, &keys::raft_state_key(1))
            .unwrap()
            .is_none());
        // A tombstone whose raft state survived (a crash between the two writes) loses it.
        engines.raft.write(&rwb, true).unwrap();
        drop(store);
        let snaps = SnapManager::new(dir.path().join("again")).unwrap();
        let _store = Store::new(Config::test_config(), engines.clone(), snaps, &logger).unwrap();
        assert!(engines
            .raft
            .get_cf(CF_DEFAULT, &keys::raft_state_key(1))
            .unwrap()
            .is_none());
    }

    fn mem_engines() -> Engines<MemEngine, MemEngine> {
        Engines::new(MemEngine::new(&ALL_CFS), MemEngine::new(&[CF_DEFAULT]))
    }

    /// Store 1 of a three-store region 1, bootstrapped on in-memory engines, with its snapshot
    /// directory (keep the `TempDir` alive).
    fn store_one_of_three() -> (
        Engines<MemEngine, MemEngine>,
        Region,
        tempfile::TempDir,
        SnapManager,
    ) {
        let engines = mem_engines();
        let region = first_region(1, &[1, 2, 3]);
        bootstrap_store(&engines, 0, 1).unwrap();
        prepare_bootstrap_region(&engines, &region).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapManager::new(dir.path()).unwrap();
        (engines, region, dir, snaps)
    }

    /// A put of `k<i>` = `<i>` to region 1 through its first peer.
    fn put_cmd(region: &Region, i: u8) -> RaftCmdRequest {
        use proto::raft_cmdpb::{CmdType, PutRequest, RaftRequestHeader, Request};
        RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: 1,
                peer: Some(region.peers[0]),
                region_epoch: region.region_epoch,
                term: 0,
            }),
            requests: vec![Request {
                cmd_type: CmdType::Put as i32,
                put: Some(PutRequest {
                    cf: CF_DEFAULT.to_string(),
                    key: vec![b'k', i],
                    value: vec![i],
                }),
                ..Default::default()
            }],
            admin_request: None,
        }
    }

    /// Answers every message the store sent as stores 2 and 3 would: votes granted, appends and
    /// heartbeats acknowledged.
    fn reply_as_followers(store: &mut Store<MemEngine, MemEngine>, ctx: &mut StoreContext) {
        for rm in std::mem::take(&mut ctx.messages) {
            let m = rm.message.clone().unwrap();
            let (t, index) = match m.msg_type() {
                MessageType::MsgRequestPreVote => (MessageType::MsgRequestPreVoteResponse, 0),
                MessageType::MsgRequestVote => (MessageType::MsgRequestVoteResponse, 0),
                MessageType::MsgAppend => (
                    MessageType::MsgAppendResponse,
                    m.index + m.entries.len() as u64,
                ),
                MessageType::MsgHeartbeat => (MessageType::MsgHeartbeatResponse, 0),
                _ => continue,
            };
            let mut reply = Message {
                from: m.to,
                to: m.from,
                term: m.term,
                index,
                context: m.context.clone(),
                ..Default::default()
            };
            reply.set_msg_type(t);
            let back = RaftMessage {
                region_id: rm.region_id,
                from_peer: rm.to_peer,
                to_peer: rm.from_peer,
                region_epoch: rm.region_epoch,
                message: Some(reply),
                ..Default::default()
            };
            store.on_raft_message(ctx, back);
        }
    }

    /// Answers recorded by the callbacks of [`record_answer`], with the number each was given.
    type Answers = Arc<std::sync::Mutex<Vec<(u8, CmdResponse)>>>;

    /// A callback that records its answer under `i`.
    fn record_answer(answers: &Answers, i: u8) -> Callback {
        let answers = answers.clone();
        Box::new(move |r| answers.lock().unwrap().push((i, r)))
    }

    /// Store 1 of [`store_one_of_three`], ticked until it leads region 1 with stores 2 and 3
    /// granting every vote and acknowledging every append and heartbeat; nothing is left to
    /// answer afterwards. Also its engines and region (keep the `TempDir` alive).
    fn leader_of_three() -> (
        Store<MemEngine, MemEngine>,
        StoreContext,
        Engines<MemEngine, MemEngine>,
        Region,
        tempfile::TempDir,
    ) {
        let (engines, region, dir, snaps) = store_one_of_three();
        let logger = raft::default_logger();
        let mut store = Store::new(Config::test_config(), engines.clone(), snaps, &logger).unwrap();
        let mut ctx = StoreContext::default();
        for _ in 0..100 {
            store.on_tick(&mut ctx);
            store.round(&mut ctx, |_| {}).unwrap();
            for _ in 0..2 {
                reply_as_followers(&mut store, &mut ctx);
                store.round(&mut ctx, |_| {}).unwrap();
            }
            if store.peer(1).unwrap().is_leader() && ctx.messages.is_empty() {
                break;
            }
        }
        assert!(store.peer(1).unwrap().is_leader());
        assert!(ctx.responses.is_empty());
        (store, ctx, engines, region, dir)
    }

    /// The term a client puts in a request header is checked without arithmetic that can
    /// overflow: `u64::MAX` (newer than any real term) is served, an old term is StaleCommand.
    #[test]
    fn test_request_term_from_the_client_is_checked_without_overflow() {
        let (mut store, mut ctx, engines, region, _dir) = leader_of_three();
        let term = store.peer(1).unwrap().term();
        assert!(term > 2, "the leader's term ({term}) makes term 1 stale");
        let answers = Answers::default();
        for (i, header_term) in [(0u8, u64::MAX), (1, 1)] {
            let mut req = put_cmd(&region, i);
            req.header.as_mut().unwrap().term = header_term;
            store.on_command(&mut ctx, req, record_answer(&answers, i));
        }
        for _ in 0..4 {
            store.round(&mut ctx, |_| {}).unwrap();
            reply_as_followers(&mut store, &mut ctx);
        }
        for (cb, resp) in std::mem::take(&mut ctx.responses) {
            cb(resp);
        }
        let mut answers = std::mem::take(&mut *answers.lock().unwrap());
        answers.sort_by_key(|(i, _)| *i);
        assert_eq!(answers.len(), 2, "both commands answered");
        assert!(
            answers[0].1.region_error().is_none(),
            "{:?}",
            answers[0].1.resp
        );
        assert_eq!(
            engines.kv.get_cf(CF_DEFAULT, b"k\0").unwrap(),
            Some(vec![0])
        );
        let stale = answers[1].1.region_error().expect("term 1 is stale");
        assert!(stale.stale_command.is_some(), "{stale:?}");
        assert_eq!(engines.kv.get_cf(CF_DEFAULT, b"k\x01").unwrap(), None);
    }

    /// A crash after the `Applying` state was synced but before the raft state of the same round:
    /// the restarted store redoes the install from the files and repairs its raft state.
    #[test]
    fn test_store_resumes_an_interrupted_snapshot_install() {
        let dir = tempfile::tempdir().unwrap();
        let region = first_region(1, &[1, 2, 3]);
        let key = SnapKey {
            region_id: 1,
            term: 7,
            index: 50,
        };
        // The leader's side: data, and a generated snapshot of it.
        let leader = mem_engines();
        let mut wb = WriteBatch::default();
        wb.put_cf(CF_LOCK, &b"k1"[..], &b"v1"[..]);
        leader.kv.write(&wb, true).unwrap();
        let leader_snaps = SnapManager::new(dir.path().join("leader")).unwrap();
        let gen = run_task(
            &leader,
            &leader_snaps,
            Task::GenSnapshot {
                key,
                region: region.clone(),
                snap: Arc::new(leader.kv.snapshot()),
            },
        )
        .unwrap();
        let Some(TaskResult::SnapshotGenerated {
            result: Ok(snap), ..
        }) = gen
        else {
            panic!("{gen:?}");
        };
        let mut m = Message {
            snapshot: Some(snap),
            ..Default::default()
        };
        m.set_msg_type(MessageType::MsgSnapshot);
        let msg = RaftMessage {
            region_id: 1,
            message: Some(m),
            ..Default::default()
        };
        // The follower: received the files, synced `Applying`, then crashed.
        let engines = mem_engines();
        bootstrap_store(&engines, 0, 2).unwrap();
        prepare_bootstrap_region(&engines, &region).unwrap();
        let snaps = SnapManager::new(dir.path().join("follower")).unwrap();
        copy_snapshot(&leader_snaps, &snaps, &msg, &mut |_, _| {}).unwrap();
        std::fs::write(snaps.dir().join("garbage.snap.tmp"), b"x").unwrap();
        let mut wb = WriteBatch::default();
        wb.put_msg_cf(
            CF_RAFT,
            keys::apply_state_key(1),
            &RaftApplyState {
                applied_index: 50,
                truncated_state: Some(RaftTruncatedState { index: 50, term: 7 }),
            },
        );
        wb.put_msg_cf(
            CF_RAFT,
            keys::region_state_key(1),
            &RegionLocalState {
                state: PeerState::Applying as i32,
                region: Some(region.clone()),
            },
        );
        engines.kv.write(&wb, true).unwrap();

        let logger = raft::default_logger();
        let mut store = Store::new(
            Config::test_config(),
            engines.clone(),
            snaps.clone(),
            &logger,
        )
        .unwrap();
        assert!(
            !snaps.dir().join("garbage.snap.tmp").exists(),
            "stale files are gone"
        );
        assert!(
            snaps.has_received(key),
            "the files being installed are kept"
        );
        let peer = store.peer(1).unwrap();
        assert_eq!(peer.applying_snapshot(), Some(key));
        let raft_state: RaftLocalState = engines
            .raft
            .get_msg_cf(CF_DEFAULT, &keys::raft_state_key(1))
            .unwrap()
            .unwrap();
        assert_eq!((raft_state.last_index, raft_state.last_term), (50, 7));
        assert_eq!(raft_state.hard_state.unwrap().commit, 50);

        // The install is queued; while it runs, the peer takes no tick and steps nothing.
        let mut ctx = StoreContext::default();
        store.round(&mut ctx, |_| {}).unwrap();
        let tasks = std::mem::take(&mut ctx.tasks);
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        assert!(matches!(tasks[0], Task::ApplySnapshot { key: k, .. } if k == key));
        for _ in 0..50 {
            store.on_tick(&mut ctx);
            store.round(&mut ctx, |_| {}).unwrap();
        }
        assert!(
            ctx.messages.is_empty(),
            "a frozen peer campaigns for nothing"
        );
        assert_eq!(engines.kv.get_cf(CF_LOCK, b"k1").unwrap(), None);

        // A failed install (a failing disk) keeps the peer frozen and is queued again after a
        // back-off of frozen ticks: the minimum after the first failure, twice that after the
        // second. Returns the ticks waited and the one task queued by then.
        let fail_and_wait = |store: &mut Store<MemEngine, MemEngine>, ctx: &mut StoreContext| {
            let failed = TaskResult::SnapshotApplied {
                key,
                result: Err("injected disk failure".into()),
            };
            store.on_task_result(ctx, failed);
            store.round(ctx, |_| {}).unwrap();
            assert_eq!(store.peer(1).unwrap().applying_snapshot(), Some(key));
            let (mut waited, mut retried) = (0, Vec::new());
            while retried.is_empty() && waited < 100 * crate::peer::INSTALL_RETRY_MIN_TICKS {
                store.on_tick(ctx);
                store.round(ctx, |_| {}).unwrap();
                retried.append(&mut ctx.tasks);
                waited += 1;
            }
            assert!(ctx.messages.is_empty(), "still frozen while retrying");
            assert_eq!(retried.len(), 1, "{retried:?}");
            assert!(matches!(retried[0], Task::ApplySnapshot { key: k, .. } if k == key));
            (waited, retried.pop().unwrap())
        };
        let (waited, _) = fail_and_wait(&mut store, &mut ctx);
        assert_eq!(waited, crate::peer::INSTALL_RETRY_MIN_TICKS);
        let (waited, retry) = fail_and_wait(&mut store, &mut ctx);
        assert_eq!(waited, 2 * crate::peer::INSTALL_RETRY_MIN_TICKS);

        let result = run_task(&engines, &snaps, retry).unwrap().unwrap();
        store.on_task_result(&mut ctx, result);
        store.round(&mut ctx, |_| {}).unwrap();
        assert_eq!(store.peer(1).unwrap().applying_snapshot(), None);
        assert_eq!(
            engines.kv.get_cf(CF_LOCK, b"k1").unwrap(),
            Some(b"v1".to_vec())
        );
        assert!(!snaps.has_received(key), "applied files are deleted");
        let rs: RegionLocalState = engines
            .kv
            .get_msg_cf(CF_RAFT, &keys::region_state_key(1))
            .unwrap()
            .unwrap();
        assert_eq!(rs.state(), PeerState::Normal);
        // Thawed, the peer ticks again and eventually campaigns.
        for _ in 0..50 {
            store.on_tick(&mut ctx);
            store.round(&mut ctx, |_| {}).unwrap();
        }
        assert!(!ctx.messages.is_empty());
    }

    /// Commands that arrive in one round are proposed together: each follower gets one
    /// MsgAppend with all of them (not one per command), and each callback gets its own answer.
    #[test]
    fn test_store_proposes_a_round_of_commands_in_one_append() {
        let (mut store, mut ctx, engines, region, _dir) = leader_of_three();
        let answer = |store: &mut Store<MemEngine, MemEngine>, ctx: &mut StoreContext| {
            reply_as_followers(store, ctx);
            store.round(ctx, |_| {}).unwrap();
        };

        let answers = Answers::default();
        for i in 0..3u8 {
            store.on_command(&mut ctx, put_cmd(&region, i), record_answer(&answers, i));
        }
        store.round(&mut ctx, |_| {}).unwrap();
        let appends: Vec<(u64, usize)> = ctx
            .messages
            .iter()
            .filter_map(|rm| {
                let m = rm.message.as_ref().unwrap();
                (m.msg_type() == MessageType::MsgAppend).then_some((m.to, m.entries.len()))
            })
            .collect();
        assert_eq!(appends, vec![(2, 3), (3, 3)], "one append per follower");
        for _ in 0..3 {
            answer(&mut store, &mut ctx);
        }
        for (cb, resp) in std::mem::take(&mut ctx.responses) {
            cb(resp);
        }
        let answers = answers.lock().unwrap();
        assert_eq!(answers.len(), 3, "every command answered once");
        for (i, r) in answers.iter() {
            assert!(r.region_error().is_none(), "command {i}: {:?}", r.resp);
            assert_eq!(
                engines.kv.get_cf(CF_DEFAULT, &[b'k', *i]).unwrap(),
                Some(vec![*i])
            );
        }
    }

    /// With the raft engine synced off the round, a leader's appends leave at once, but follower
    /// acks past its unsynced log are held: nothing commits, applies or answers until the driver's
    /// sync is reported; then the write is applied and answered. A crash before the sync loses
    /// the unsynced entry, and the store reopens consistently without it.
    #[test]
    fn test_async_sync_waits_for_the_leaders_own_sync() {
        let (engines, region, _dir, snaps) = store_one_of_three();
        let logger = raft::default_logger();
        let cfg = Config {
            async_raft_sync: true,
            ..Config::test_config()
        };
        let mut store = Store::new(cfg.clone(), engines.clone(), snaps.clone(), &logger).unwrap();
        let mut ctx = StoreContext::default();
        let reply_all = reply_as_followers;
        let sync = |store: &mut Store<MemEngine, MemEngine>, ctx: &mut StoreContext| {
            if let Some(seq) = ctx.sync_request.take() {
                engines.raft.sync().unwrap();
                store.on_synced(ctx, seq).unwrap();
            }
        };
        for _ in 0..200 {
            store.on_tick(&mut ctx);
            store.round(&mut ctx, |_| {}).unwrap();
            sync(&mut store, &mut ctx);
            reply_all(&mut store, &mut ctx);
            store.round(&mut ctx, |_| {}).unwrap();
            sync(&mut store, &mut ctx);
            if store.peer(1).unwrap().is_leader() && ctx.messages.is_empty() {
                break;
            }
        }
        assert!(store.peer(1).unwrap().is_leader());
        ctx.responses.clear();
        let put = |i: u8| put_cmd(&region, i);
        let answers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let a = answers.clone();
        store.on_command(
            &mut ctx,
            put(1),
            Box::new(move |r| a.lock().unwrap().push(r)),
        );
        store.round(&mut ctx, |_| {}).unwrap();
        let seq = ctx
            .sync_request
            .take()
            .expect("the round left its write unsynced");
        assert!(
            ctx.messages
                .iter()
                .any(|rm| rm.message.as_ref().is_some_and(|m| !m.entries.is_empty())),
            "the appends leave before the leader's sync"
        );
        // Both followers ack; without the leader's own sync nothing may commit.
        reply_all(&mut store, &mut ctx);
        store.round(&mut ctx, |_| {}).unwrap();
        assert!(
            answers.lock().unwrap().is_empty(),
            "answered before the sync"
        );
        assert_eq!(engines.kv.get_cf(CF_DEFAULT, b"k\x01").unwrap(), None);
        let peer = store.peer(1).unwrap();
        assert!(
            peer.raft_group.raft.raft_log.committed < peer.storage().raft_state.last_index,
            "committed by counting the leader's unsynced entry"
        );
        // The sync: the held acks are stepped, the entry commits, is applied and answered.
        engines.raft.sync().unwrap();
        store.on_synced(&mut ctx, seq).unwrap();
        for _ in 0..3 {
            store.round(&mut ctx, |_| {}).unwrap();
            sync(&mut store, &mut ctx);
            for (cb, resp) in std::mem::take(&mut ctx.responses) {
                cb(resp);
            }
        }
        let got = answers.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert!(
            got[0].resp.header.as_ref().unwrap().error.is_none(),
            "{:?}",
            got[0].resp
        );
        drop(got);
        assert_eq!(
            engines.kv.get_cf(CF_DEFAULT, b"k\x01").unwrap(),
            Some(vec![1])
        );
        let last = store.peer(1).unwrap().storage().raft_state.last_index;

        // A second write, written and never synced, then a crash.
        ctx.messages.clear();
        store.on_command(&mut ctx, put(2), Box::new(|_| {}));
        store.round(&mut ctx, |_| {}).unwrap();
        assert!(ctx.sync_request.is_some());
        assert_eq!(
            store.peer(1).unwrap().storage().raft_state.last_index,
            last + 1
        );
        reply_all(&mut store, &mut ctx);
        store.round(&mut ctx, |_| {}).unwrap();
        drop(store);
        engines.raft.crash();
        engines.kv.crash();
        let store = Store::new(cfg, engines.clone(), snaps, &logger).unwrap();
        let peer = store.peer(1).unwrap();
        assert_eq!(
            peer.storage().raft_state.last_index,
            last,
            "the unsynced entry is gone"
        );
        assert!(peer.storage().applied_index() <= last);
        assert_eq!(engines.kv.get_cf(CF_DEFAULT, b"k\x02").unwrap(), None);
    }

    /// A follower that wrote entries and has not synced them answers nothing for them before the
    /// sync, not even to an empty append that needs no write of its own (raft answers from its
    /// log in memory).
    #[test]
    fn test_async_sync_follower_acks_wait_for_the_sync() {
        let (engines, region, _dir, snaps) = store_one_of_three();
        let cfg = Config {
            async_raft_sync: true,
            ..Config::test_config()
        };
        let logger = raft::default_logger();
        let mut store = Store::new(cfg, engines.clone(), snaps, &logger).unwrap();
        let mut ctx = StoreContext::default();
        let (init_index, init_term) = (keys::RAFT_INIT_LOG_INDEX, keys::RAFT_INIT_LOG_TERM);
        let append = |index: u64, log_term: u64, entries: Vec<proto::eraftpb::Entry>| {
            let mut m = Message {
                from: region.peers[1].id,
                to: region.peers[0].id,
                term: init_term + 1,
                index,
                log_term,
                commit: init_index,
                entries,
                ..Default::default()
            };
            m.set_msg_type(MessageType::MsgAppend);
            RaftMessage {
                region_id: 1,
                from_peer: Some(region.peers[1]),
                to_peer: Some(region.peers[0]),
                region_epoch: region.region_epoch,
                message: Some(m),
                ..Default::default()
            }
        };
        let acks = |ctx: &StoreContext| {
            ctx.messages
                .iter()
                .filter(|rm| {
                    rm.message
                        .as_ref()
                        .is_some_and(|m| m.msg_type() == MessageType::MsgAppendResponse)
                })
                .count()
        };
        let entry = proto::eraftpb::Entry {
            index: init_index + 1,
            term: init_term + 1,
            ..Default::default()
        };
        store.on_raft_message(&mut ctx, append(init_index, init_term, vec![entry]));
        store.round(&mut ctx, |_| {}).unwrap();
        let seq = ctx
            .sync_request
            .take()
            .expect("the append left its write unsynced");
        assert_eq!(acks(&ctx), 0, "acked before the sync");
        // The leader's commit update: an empty append at the new last index.
        store.on_raft_message(&mut ctx, append(init_index + 1, init_term + 1, vec![]));
        store.round(&mut ctx, |_| {}).unwrap();
        assert_eq!(acks(&ctx), 0, "the empty append was acked before the sync");
        engines.raft.sync().unwrap();
        store.on_synced(&mut ctx, seq).unwrap();
        assert_eq!(acks(&ctx), 2, "both acks leave after the sync");
    }
}
