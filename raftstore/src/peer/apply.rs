//! Applying: committed entries, once durable locally, are applied in order into the round's kv
//! write batch with the new apply state, and the proposals waiting for them are answered. Normal
//! commands put and delete keys (and read, seeing the writes before them); admin commands
//! compact the raft log.

use prost::Message as _;
use proto::eraftpb::{self, EntryType};
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, AdminResponse, CmdType, CompactLogResponse, RaftCmdRequest,
    RaftCmdResponse, RaftResponseHeader, Request, Response,
};
use slog::{debug, warn};

use super::Peer;
use crate::callback::{CmdResponse, RegionSnapshot};
use crate::context::{ApplyContext, StoreContext};
use crate::engine::{Engine, CF_RAFT};
use crate::errors::{Error, Result};
use crate::keys;
use crate::task::Task;
use crate::util::{check_key_in_region, check_region_epoch};

impl<K: Engine, R: Engine> Peer<K, R> {
    /// Applies the queued committed entries not applied yet, up to index `upto`, into `apply`
    /// with the new apply state.
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
        while self.committed.front().is_some_and(|e| e.index <= upto) {
            let e = self.committed.pop_front().expect("checked");
            self.apply_entry(ctx, &e, apply)?;
            last = Some(e.index);
        }
        if let Some(last_index) = last {
            let region_id = self.region_id;
            let state = &mut self.storage_mut().apply_state;
            state.applied_index = last_index;
            apply
                .wb
                .put_msg_cf(CF_RAFT, keys::apply_state_key(region_id), &*state);
        }
        Ok(())
    }

    fn apply_entry(
        &mut self,
        ctx: &mut StoreContext,
        e: &eraftpb::Entry,
        apply: &mut ApplyContext,
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
        let resp = self.apply_cmd(ctx, req, apply);
        if let Some(cb) = self.take_proposal(ctx, e.index, e.term) {
            ctx.responses.push((cb, resp));
        }
        Ok(())
    }

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
    }

    fn apply_request(
        &mut self,
        r: &Request,
        apply: &mut ApplyContext,
    ) -> Result<(Response, Option<RegionSnapshot>)> {
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
                resp.put = Some(Default::default());
            }
            CmdType::Delete => {
                let d = r.delete.as_ref().ok_or_else(missing)?;
                check_key_in_region(&d.key, self.region())?;
                apply.wb.delete_cf(&d.cf, d.key.as_slice());
                resp.delete = Some(Default::default());
            }
            CmdType::Invalid => return Err(Error::InvalidRequest("invalid command".into())),
        }
        Ok((resp, None))
    }

    fn apply_admin(
        &mut self,
        ctx: &mut StoreContext,
        admin: &AdminRequest,
        apply: &mut ApplyContext,
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
            }
            other => Err(Error::InvalidRequest(format!(
                "admin command {other:?} is not supported by this store yet"
            ))),
        }
    }
}
