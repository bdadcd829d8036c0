//! Applying: committed entries, once durable locally, are applied in order into the round's kv
//! write batch with the new apply state, and the proposals waiting for them are answered. Normal
//! commands put and delete keys (and read, seeing the writes before them); admin commands
//! compact the raft log, change the region's membership (a raft conf change entry) and split the
//! region (TinyKV's `kv/raftstore/peer_msg_handler.go`). A membership change or a split writes
//! the new `RegionLocalState` in the same batch as the apply state, and leaves the store what it
//! must do afterwards (`ApplyResult`: destroy this peer, create the split-off one).

use prost::Message as _;
use proto::eraftpb::{self, ConfChangeType, EntryType};
use proto::metapb::{self, Region};
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, AdminResponse, ChangePeerResponse, CmdType, CompactLogResponse,
    RaftCmdRequest, RaftCmdResponse, RaftResponseHeader, Request, Response, SplitResponse,
};
use proto::raft_serverpb::{PeerState, RegionLocalState};
use slog::{debug, info};

use super::{ApplyResult, Peer};
use crate::callback::{CmdResponse, RegionSnapshot};
use crate::context::{ApplyContext, StoreContext};
use crate::engine::{Engine, CF_RAFT, DATA_CFS};
use crate::errors::{Error, Result};
use crate::keys;
use crate::metrics;
use crate::peer_storage::{initial_apply_state, put_region_state};
use crate::task::Task;
use crate::util::{check_key_in_region, check_region_epoch};

impl<K: Engine, R: Engine> Peer<K, R> {
    /// Applies the queued committed entries not applied yet, up to index `upto`, into `apply`
    /// with the new apply state: its applied index becomes the last entry applied, in memory and
    /// in `apply.wb` (the same kv write as the entries' data).
    pub(super) fn apply_committed(
        &mut self,
        ctx: &mut StoreContext,
        upto: u64,
        apply: &mut ApplyContext,
    ) -> Result<()> {
        let applied = self.storage().applied_index();
        let mut last = None;
        while self.committed.front().is_some_and(|e| e.index <= applied) {
            self.committed.pop_front();
        }
        let mut count = 0;
        while !self.pending_remove && self.committed.front().is_some_and(|e| e.index <= upto) {
            if count == 0 {
                apply.batch_started();
            }
            let e = self.committed.pop_front().expect("checked");
            self.apply_entry(ctx, &e, apply)?;
            last = Some(e.index);
            count += 1;
        }
        if count > 0 {
            metrics::APPLIED_ENTRIES.inc_by(count);
        }
        // STAGE 2B: record the last applied index in the apply state and write it with the applies
        if let Some(last_index) = last {
            let region_id = self.region_id;
            let state = &mut self.storage_mut().apply_state;
            state.applied_index = last_index;
            apply
                .wb
                .put_msg_cf(CF_RAFT, keys::apply_state_key(region_id), &*state);
        }
        Ok(())
        // END STAGE 2B
    }

    /// Applies one committed entry into `apply`. An empty entry (a new leader's no-op) changes
    /// nothing; a normal entry carries an encoded `RaftCmdRequest`, and a conf change entry
    /// carries one in its `ConfChange`'s context. The proposal waiting for the entry gets the
    /// command's response, and proposals it overtook are answered StaleCommand
    /// (`take_proposal`), even for an empty entry.
    fn apply_entry(
        &mut self,
        ctx: &mut StoreContext,
        e: &eraftpb::Entry,
        apply: &mut ApplyContext,
    ) -> Result<()> {
        // STAGE 2B: decode the entry's command, apply it, and answer the proposal waiting for it
        if e.data.is_empty() {
            // A new leader's no-op: proposals at this index lost their place.
            let _ = self.take_proposal(ctx, e.index, e.term);
            return Ok(());
        }
        // A membership change carries its ChangePeer command in the conf change's context.
        let req = match e.entry_type() {
            EntryType::EntryConfChange => {
                let cc = eraftpb::ConfChange::decode(e.data.as_slice())?;
                RaftCmdRequest::decode(cc.context.as_slice())?
            }
            EntryType::EntryNormal => RaftCmdRequest::decode(e.data.as_slice())?,
        };
        let resp = self.apply_cmd(ctx, req, apply);
        if let Some(cb) = self.take_proposal(ctx, e.index, e.term) {
            ctx.responses.push((cb, resp));
        }
        Ok(())
        // END STAGE 2B
    }

    /// Applies one command and returns its response. A command of a stale epoch changes nothing
    /// and is answered with the epoch error; an admin command goes to `apply_admin`; the requests
    /// of a normal command are applied in order (`apply_request`) into one response carrying
    /// their responses and the kv snapshot a Snap request took, or, when one fails, its error
    /// for the whole command.
    fn apply_cmd(
        &mut self,
        ctx: &mut StoreContext,
        req: RaftCmdRequest,
        apply: &mut ApplyContext,
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
            return match self.apply_admin(ctx, admin, apply) {
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
        // STAGE 2B: apply each request in order and gather their responses into one response
        let mut responses = Vec::with_capacity(req.requests.len());
        let mut snap = None;
        for r in &req.requests {
            match self.apply_request(r, apply) {
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
        // END STAGE 2B
    }

    /// Applies one request of a normal command. Put and Delete (their key checked against the
    /// region) go into `apply.wb` and count toward the next split check (`add_size_diff`: the
    /// bytes of the key and value); Get and Snap must see the writes applied before them, so
    /// the batch is first flushed to the kv engine (`ApplyContext::flush`), and they are served
    /// by `read_request`.
    fn apply_request(
        &mut self,
        r: &Request,
        apply: &mut ApplyContext,
    ) -> Result<(Response, Option<RegionSnapshot>)> {
        // STAGE 2B: Put and Delete go into the apply batch; Get and Snap read what is applied so far
        let mut resp = Response {
            cmd_type: r.cmd_type,
            ..Default::default()
        };
        let missing = || Error::InvalidRequest("request without its body".into());
        match r.cmd_type() {
            CmdType::Get | CmdType::Snap => {
                // Reads inside a command that also writes: they see the writes before them.
                apply.flush(&self.engines().kv)?;
                return self.read_request(r);
            }
            CmdType::Put => {
                let p = r.put.as_ref().ok_or_else(missing)?;
                check_key_in_region(&p.key, self.region())?;
                apply.wb.put_cf(&p.cf, p.key.as_slice(), p.value.as_slice());
                self.add_size_diff((p.key.len() + p.value.len()) as u64);
                resp.put = Some(Default::default());
            }
            CmdType::Delete => {
                let d = r.delete.as_ref().ok_or_else(missing)?;
                check_key_in_region(&d.key, self.region())?;
                apply.wb.delete_cf(&d.cf, d.key.as_slice());
                self.add_size_diff(d.key.len() as u64);
                resp.delete = Some(Default::default());
            }
            CmdType::Invalid => return Err(Error::InvalidRequest("invalid command".into())),
        }
        Ok((resp, None))
        // END STAGE 2B
    }

    /// Applies an admin command. CompactLog, unless its index is already truncated, moves the
    /// truncated state to its index and term (`PeerStorage::compact_to`), asks for a synced kv
    /// write (`ApplyContext::sync`) and queues a `Task::RaftLogGc` deleting the entries from
    /// `last_compacted_idx` through its index; ChangePeer and Split have functions of their own.
    fn apply_admin(
        &mut self,
        ctx: &mut StoreContext,
        admin: &AdminRequest,
        apply: &mut ApplyContext,
    ) -> Result<AdminResponse> {
        match admin.cmd_type() {
            AdminCmdType::CompactLog => {
                // STAGE 2C: move the truncated state up to the compact index and schedule the log GC of the entries before it
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
                    apply.sync = true;
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
                // END STAGE 2C
            }
            AdminCmdType::ChangePeer => self.apply_change_peer(ctx, admin, apply),
            AdminCmdType::Split => self.apply_split(ctx, admin, apply),
            other => Err(Error::InvalidRequest(format!(
                "admin command {other:?} cannot be applied"
            ))),
        }
    }

    /// Applies a committed membership change (its epoch was checked by `apply_cmd`: a stale one
    /// changes nothing). A repeated one (the peer is already in, or already out) changes nothing
    /// either; otherwise the region's peers and `conf_ver` change, in memory, in raft and in the
    /// kv batch with the apply state. Adding a peer to a store that holds another peer of the
    /// region is refused (InvalidRequest).
    ///
    /// An added peer goes into `peer_cache` and `added_at` (at the new `conf_ver`); a removed one
    /// leaves `peer_cache`. A leader reports the new region to the scheduler at once
    /// (`heartbeat_scheduler`). When the removed peer is this one, it applies nothing more
    /// (`pending_remove`) and leaves `ApplyResult::RemovedSelf` for the store, which destroys it;
    /// if it led, it first reports the region, tells every follower what it committed (a
    /// heartbeat whose commit is what that follower has of the committed log) and sends the most
    /// caught-up follower (as raft saw them before the change) a MsgTimeoutNow carrying the same,
    /// if that one holds every entry of its log, so that it campaigns at once and the others
    /// vote under the new membership. The response
    /// carries the region after the change.
    fn apply_change_peer(
        &mut self,
        ctx: &mut StoreContext,
        admin: &AdminRequest,
        apply: &mut ApplyContext,
    ) -> Result<AdminResponse> {
        let cp = admin
            .change_peer
            .as_ref()
            .ok_or_else(|| Error::InvalidRequest("ChangePeer without body".into()))?;
        let peer = cp
            .peer
            .ok_or_else(|| Error::InvalidRequest("ChangePeer without its peer".into()))?;
        let change_type = cp.change_type();
        // STAGE 3B: change the region's peers and conf_ver, persist the region, tell raft; a removed self is destroyed
        let mut region = self.region().clone();
        let add = change_type == ConfChangeType::AddNode;
        let present = region.peers.iter().any(|p| p.id == peer.id);
        if add {
            if let Some(other) = region.peers.iter().find(|p| p.store_id == peer.store_id) {
                if other.id != peer.id {
                    return Err(Error::InvalidRequest(format!(
                        "store {} already holds peer {} of region {}",
                        peer.store_id, other.id, region.id
                    )));
                }
            }
        }
        if add == present {
            debug!(self.logger, "repeated membership change"; "change" => ?change_type,
                "peer" => ?peer);
        } else {
            if add {
                region.peers.push(peer);
                self.peer_cache.insert(peer.id, peer);
            } else {
                region.peers.retain(|p| p.id != peer.id);
                self.peer_cache.remove(&peer.id);
            }
            let epoch = region.region_epoch.get_or_insert_with(Default::default);
            epoch.conf_ver += 1;
            let conf_ver = epoch.conf_ver;
            if add {
                self.added_at.insert(peer.id, conf_ver);
            }
            put_region_state(&mut apply.wb, &region, PeerState::Normal);
            self.storage_mut().region = region.clone();
            let was_leader = self.is_leader();
            // A leader removing itself picks its successor while it still knows the followers'
            // progress.
            let removed_leader = was_leader && !add && peer.id == self.meta.id;
            // Only one that holds every entry of this leader's log: the others would refuse a
            // candidate that lacks some (a wasted term, and an election timeout more for all).
            let successor = removed_leader
                .then(|| self.most_caught_up_follower())
                .flatten()
                .filter(|&id| self.has_every_entry(id));
            // Raft's own heartbeats carry the commit each follower may learn (capped at what it
            // has of the log); taken now, while this leader still leads.
            let farewell = if removed_leader {
                self.raft_group.raft.bcast_heartbeat();
                std::mem::take(&mut self.raft_group.raft.msgs)
            } else {
                Vec::new()
            };
            let term = self.term();
            self.raft_group.apply_conf_change(&eraftpb::ConfChange {
                change_type: change_type as i32,
                node_id: peer.id,
                context: Vec::new(),
            });
            info!(self.logger, "membership changed"; "change" => ?change_type,
                "peer" => ?peer, "conf_ver" => conf_ver);
            if !add && peer.id == self.meta.id {
                // A leader that removed itself may be the only peer that knows the change is
                // committed: it reports it before it goes, tells each follower the commit index
                // (else a follower that missed it still counts the removed leader among the
                // voters, and the survivors may be too few to elect anyone), and tells its
                // successor to campaign at once (MsgTimeoutNow, as a leadership transfer ends)
                // instead of leaving the region leaderless for an election timeout. The
                // MsgTimeoutNow carries the commit too: the heartbeats are sent first but a
                // network may reorder them, and once the successor campaigns in a newer term, a
                // heartbeat of this term would teach it nothing.
                if was_leader {
                    self.heartbeat_scheduler(ctx);
                    let timeout_now = successor.map(|to| {
                        let commit = farewell
                            .iter()
                            .find(|m| {
                                m.to == to && m.msg_type() == eraftpb::MessageType::MsgHeartbeat
                            })
                            .map_or(0, |m| m.commit);
                        let mut m = eraftpb::Message {
                            from: self.meta.id,
                            to,
                            term,
                            commit,
                            ..Default::default()
                        };
                        m.set_msg_type(eraftpb::MessageType::MsgTimeoutNow);
                        m
                    });
                    for m in farewell {
                        self.send_raft_message(ctx, m);
                    }
                    if let Some(m) = timeout_now {
                        info!(self.logger, "removed itself; its successor campaigns now"; "to" => m.to);
                        self.send_raft_message(ctx, m);
                    }
                }
                self.pending_remove = true;
                self.apply_results.push(ApplyResult::RemovedSelf);
            } else if self.is_leader() {
                // At once: the scheduler must see each change before it sends the next.
                self.heartbeat_scheduler(ctx);
            }
        }
        Ok(AdminResponse {
            cmd_type: AdminCmdType::ChangePeer as i32,
            change_peer: Some(ChangePeerResponse {
                region: Some(region),
            }),
            ..Default::default()
        })
        // END STAGE 3B
    }

    /// Applies a committed split: this peer's region keeps its id and ends at the split key, and
    /// a new region with the new ids takes the rest; both versions go up. Both region states,
    /// and the new region's initial apply state, go into the batch with this apply state, so
    /// the split is one atomic write; the store then creates the new region's peer
    /// (`ApplyResult::Split`, saying whether this peer led).
    ///
    /// A split key outside the region or at its start, or new peer ids not one per peer, is
    /// refused (InvalidRequest); the new region's peers are on the same stores, in order. When
    /// this store already holds a `Tombstone` state for the new region (its peer here was created
    /// by a message and removed before this split was applied), the new half's data is deleted
    /// instead and no peer is created. Both halves are measured anew by the split check
    /// (`approximate_size`, `size_diff_hint`); a leader reports the split to the scheduler. The
    /// response lists both regions.
    fn apply_split(
        &mut self,
        ctx: &mut StoreContext,
        admin: &AdminRequest,
        apply: &mut ApplyContext,
    ) -> Result<AdminResponse> {
        let split = admin
            .split
            .as_ref()
            .ok_or_else(|| Error::InvalidRequest("Split without body".into()))?;
        // STAGE 3B: cut the region at the split key into this region and a new one, persist both, and have the store create the new peer
        let old = self.region().clone();
        let key = &split.split_key;
        check_key_in_region(key, &old)?;
        if key.as_slice() <= old.start_key.as_slice() {
            return Err(Error::InvalidRequest(format!(
                "split key {key:?} is the start of region {}",
                old.id
            )));
        }
        if split.new_peer_ids.len() != old.peers.len() {
            return Err(Error::InvalidRequest(format!(
                "split of region {} with {} peers names {} new peers",
                old.id,
                old.peers.len(),
                split.new_peer_ids.len()
            )));
        }
        let mut left = old.clone();
        let epoch = left.region_epoch.get_or_insert_with(Default::default);
        epoch.version += 1;
        left.end_key = key.clone();
        let right = Region {
            id: split.new_region_id,
            start_key: key.clone(),
            end_key: old.end_key.clone(),
            region_epoch: left.region_epoch,
            peers: old
                .peers
                .iter()
                .zip(&split.new_peer_ids)
                .map(|(p, &id)| metapb::Peer {
                    id,
                    store_id: p.store_id,
                })
                .collect(),
        };
        let kv = &self.engines().kv;
        let right_state =
            kv.get_msg_cf::<RegionLocalState>(CF_RAFT, &keys::region_state_key(right.id))?;
        let right_removed = right_state.is_some_and(|s| s.state() == PeerState::Tombstone);
        put_region_state(&mut apply.wb, &left, PeerState::Normal);
        if right_removed {
            // This store's peer of the new region was already created elsewhere and removed:
            // the right half's data belongs to nobody here.
            for cf in DATA_CFS {
                apply
                    .wb
                    .delete_range_cf(cf, right.start_key.clone(), right.end_key.clone());
            }
        } else {
            put_region_state(&mut apply.wb, &right, PeerState::Normal);
            apply.wb.put_msg_cf(
                CF_RAFT,
                keys::apply_state_key(right.id),
                &initial_apply_state(),
            );
        }
        self.storage_mut().region = left.clone();
        // Both halves are measured anew.
        self.approximate_size = None;
        self.size_diff_hint = 0;
        let was_leader = self.is_leader();
        info!(self.logger, "region split"; "split_key" => ?key, "new_region_id" => right.id,
            "version" => left.region_epoch.unwrap_or_default().version,
            "new_region_removed_here" => right_removed);
        if was_leader {
            self.heartbeat_scheduler(ctx);
        }
        if !right_removed {
            self.apply_results.push(ApplyResult::Split {
                left: Box::new(left.clone()),
                right: Box::new(right.clone()),
                was_leader,
            });
        }
        Ok(AdminResponse {
            cmd_type: AdminCmdType::Split as i32,
            split: Some(SplitResponse {
                regions: vec![left, right],
            }),
            ..Default::default()
        })
        // END STAGE 3B
    }
}
