//! Reads: read-only commands served through ReadIndex (the batching and confirmation are in
//! `read_queue.rs`): a round's reads ask raft for one read index, and once the replica has
//! applied up to it they are served from the kv engine as it is then. Reads raft will no longer
//! confirm are answered with NotLeader. `read_request` also serves the Get and Snap requests of
//! a command that writes, when it is applied.

use std::sync::Arc;

use proto::raft_cmdpb::{
    CmdType, GetResponse, RaftCmdRequest, RaftCmdResponse, RaftResponseHeader, Request, Response,
    SnapResponse,
};

use super::Peer;
use crate::callback::{CmdResponse, RegionSnapshot};
use crate::context::StoreContext;
use crate::engine::Engine;
use crate::errors::{Error, Result};
use crate::util::{check_key_in_region, check_region_epoch};

impl<K: Engine, R: Engine> Peer<K, R> {
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
    pub(super) fn fail_lost_reads(&mut self, ctx: &mut StoreContext) {
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

    /// A Get or Snap request, from the kv engine as it is now.
    pub(super) fn read_request(&self, r: &Request) -> Result<(Response, Option<RegionSnapshot>)> {
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
}
