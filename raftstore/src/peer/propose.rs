//! Proposals: a command is checked (`pre_propose`) and encoded when it arrives, and the commands
//! of one round are proposed together in one raft proposal (`flush_proposals`) — one append, and
//! one MsgAppend per follower for all of them. A proposal waits for its entry to be applied;
//! `take_proposal` finds it, and answers those whose entries were overtaken with StaleCommand.
//! Read-only commands are not proposed: they go to the ReadIndex queue (`read.rs`).

use prost::Message as _;
use proto::eraftpb::{ConfChange, ConfChangeType};
use proto::raft_cmdpb::{
    AdminCmdType, AdminResponse, CmdType, RaftCmdRequest, RaftCmdResponse, RaftResponseHeader,
    TransferLeaderResponse,
};
use raft::INVALID_ID;
use slog::{debug, info};

use super::{Peer, Proposal};
use crate::callback::{Callback, CmdResponse};
use crate::context::StoreContext;
use crate::engine::{Engine, DATA_CFS};
use crate::errors::{Error, Result};
use crate::metrics;
use crate::read_queue::is_read_only;
use crate::util::{check_key_in_region, check_region_epoch};

impl<K: Engine, R: Engine> Peer<K, R> {
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

    /// Proposes a command; `cb` gets the result once it is applied (or an error now). A
    /// TransferLeader is not replicated: the leader asks raft to hand over to the named peer and
    /// answers at once; a ChangePeer goes through `propose_conf_change`.
    pub fn propose(&mut self, ctx: &mut StoreContext, req: RaftCmdRequest, cb: Callback) {
        let term = self.term();
        let store_id = self.meta.store_id;
        if let Err(e) = self.pre_propose(&req, store_id) {
            ctx.responses.push((cb, CmdResponse::error(e, term)));
            return;
        }
        if is_read_only(&req) {
            // Not proposed: served through ReadIndex once this round's batch is confirmed.
            metrics::PROPOSALS_READ_INDEX.inc();
            self.reads.push(req, cb);
            return;
        }
        if let Some(admin) = &req.admin_request {
            match admin.cmd_type() {
                AdminCmdType::TransferLeader => {
                    // STAGE 3B: hand leadership to the named peer through raft; answer at once with a TransferLeader admin response
                    // Not replicated: the leader hands over directly.
                    let to = admin
                        .transfer_leader
                        .as_ref()
                        .and_then(|t| t.peer.as_ref())
                        .map(|p| p.id)
                        .unwrap_or(INVALID_ID);
                    // The writes taken before it this round go first, as they would unbatched.
                    self.flush_proposals(ctx);
                    metrics::PROPOSALS_ADMIN.inc();
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
                    // END STAGE 3B
                }
                AdminCmdType::ChangePeer => {
                    metrics::PROPOSALS_ADMIN.inc();
                    self.propose_conf_change(ctx, req, cb);
                    return;
                }
                AdminCmdType::CompactLog | AdminCmdType::Split => {}
                AdminCmdType::InvalidAdmin => {
                    let e = Error::InvalidRequest("invalid admin command".into());
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
        if req.admin_request.is_some() {
            metrics::PROPOSALS_ADMIN.inc();
        } else {
            metrics::PROPOSALS_NORMAL.inc();
        }
        self.batched.push((data, cb));
    }

    /// Proposes a membership change as a raft conf change entry carrying the whole command (the
    /// apply step takes the peer and the epoch from it). Raft takes one change at a time.
    ///
    /// A leader asked to remove itself proposes it like any change when the region has three or
    /// more voters: the others are a majority of the old membership too, so they elect a new
    /// leader even if none of them learned the commit before the removed leader was destroyed
    /// (one append round, retried every heartbeat, instead of an election first). With two
    /// voters the survivor would need the destroyed leader's vote until it learns the commit, so
    /// that leader hands leadership to the other peer instead and refuses (the scheduler repeats
    /// the request to the new leader).
    ///
    /// A proposed change is recorded as a `Proposal` at the index and term of its entry, as
    /// `flush_proposals` records commands; when raft refuses it (or appends nothing) the callback
    /// is answered at once with the error.
    fn propose_conf_change(&mut self, ctx: &mut StoreContext, req: RaftCmdRequest, cb: Callback) {
        let term = self.term();
        let Some(cp) = req
            .admin_request
            .as_ref()
            .and_then(|a| a.change_peer.as_ref())
        else {
            let e = Error::InvalidRequest("ChangePeer without body".into());
            ctx.responses.push((cb, CmdResponse::error(e, term)));
            return;
        };
        let Some(peer) = cp.peer else {
            let e = Error::InvalidRequest("ChangePeer without its peer".into());
            ctx.responses.push((cb, CmdResponse::error(e, term)));
            return;
        };
        let Ok(change_type) = ConfChangeType::try_from(cp.change_type) else {
            let e = Error::InvalidRequest(format!("unknown change type {}", cp.change_type));
            ctx.responses.push((cb, CmdResponse::error(e, term)));
            return;
        };
        if change_type == ConfChangeType::RemoveNode
            && peer.id == self.meta.id
            && self.region().peers.len() <= 2
        {
            let e = match self.most_caught_up_follower() {
                Some(to) => {
                    info!(self.logger, "transferring leadership before its own removal"; "to" => to);
                    self.flush_proposals(ctx);
                    self.raft_group.transfer_leader(to);
                    Error::NotLeader {
                        region_id: self.region_id,
                        leader: self.peer_cache.get(&to).copied(),
                    }
                }
                None => Error::InvalidRequest(format!(
                    "cannot remove peer {}: it is the only one of region {}",
                    peer.id, self.region_id
                )),
            };
            ctx.responses.push((cb, CmdResponse::error(e, term)));
            return;
        }
        // STAGE 3B: propose a ConfChange carrying the encoded command, and record its proposal
        // The commands taken before it this round go first, as they would unbatched.
        self.flush_proposals(ctx);
        let cc = ConfChange {
            change_type: change_type as i32,
            node_id: peer.id,
            context: req.encode_to_vec(),
        };
        let before = self.raft_group.raft.raft_log.last_index();
        match self.raft_group.propose_conf_change(&cc) {
            Ok(()) if self.raft_group.raft.raft_log.last_index() == before + 1 => {
                self.proposals.push_back(Proposal {
                    index: before + 1,
                    term,
                    cb,
                });
            }
            Ok(()) => {
                let e = Error::NotLeader {
                    region_id: self.region_id,
                    leader: self.leader(),
                };
                ctx.responses.push((cb, CmdResponse::error(e, term)));
            }
            Err(e) => {
                debug!(self.logger, "membership change not proposed"; "err" => %e);
                ctx.responses
                    .push((cb, CmdResponse::error(Error::Raft(e), term)));
            }
        }
        // END STAGE 3B
    }

    /// Proposes the commands `propose` took this round, all in one raft proposal: one append,
    /// and one MsgAppend per follower for all of them (call before taking the round's `Ready`).
    /// Each command gets a `Proposal` at the index and term of its entry. When this replica no
    /// longer leads, or raft drops them, every callback is answered at once: NotLeader, or
    /// ProposalDropped while a leader transfer is under way.
    pub fn flush_proposals(&mut self, ctx: &mut StoreContext) {
        if self.batched.is_empty() {
            return;
        }
        // STAGE 2B: propose the batched commands to raft and record a proposal for each entry
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
                        self.proposals.push_back(Proposal {
                            index: before + 1 + i as u64,
                            term,
                            cb,
                        });
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
        // END STAGE 2B
    }

    /// Answers every proposal whose entry was overtaken before `index` (or at `index` by an entry
    /// of another term) with StaleCommand; returns the callback of the proposal at
    /// (`index`, `term`), if any.
    pub(super) fn take_proposal(
        &mut self,
        ctx: &mut StoreContext,
        index: u64,
        term: u64,
    ) -> Option<Callback> {
        // STAGE 2B: pop the proposals up to this entry, answering the overtaken ones StaleCommand
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
        // END STAGE 2B
    }
}
