//! Linearizable reads without writing the log: ReadIndex (Raft thesis, section 6.4).
//!
//! A read-only command (only Get and Snap requests) that reaches the leader is not proposed.
//! The reads that arrive in one round are batched; the batch asks raft for a read index once
//! (`RawNode::read_index` with the batch's id as its context). Raft confirms the leadership with
//! a heartbeat quorum (and waits, if needed, until the leader has committed an entry of its own
//! term), then hands back a `ReadState` carrying the commit index at the time of the request.
//! Once the replica has applied up to that index, every read of the batch is served from the
//! kv engine: it sees every write acknowledged before the read began, and nothing else.
//!
//! A batch belongs to the term in which it was requested. If the replica stops leading, or leads
//! again in a later term, raft forgets the request; such batches are answered with NotLeader and
//! the client retries.

use std::collections::VecDeque;

use proto::raft_cmdpb::{CmdType, RaftCmdRequest};

use crate::callback::Callback;

/// One read-only command waiting for its read index.
pub(crate) struct PendingRead {
    /// The command.
    pub req: RaftCmdRequest,
    /// Who gets the answer.
    pub cb: Callback,
}

/// The reads of one round, sharing one ReadIndex request.
struct ReadBatch {
    /// The request context given to raft.
    id: u64,
    /// The term the request was made in.
    term: u64,
    /// The confirmed read index, once raft answered.
    index: Option<u64>,
    reads: Vec<PendingRead>,
}

/// A replica's reads: those that arrived this round, and the batches waiting for raft or apply.
#[derive(Default)]
pub(crate) struct ReadQueue {
    next_id: u64,
    incoming: Vec<PendingRead>,
    batches: VecDeque<ReadBatch>,
}

/// Whether `req` only reads (and may be served through ReadIndex instead of the log).
pub(crate) fn is_read_only(req: &RaftCmdRequest) -> bool {
    req.admin_request.is_none()
        && !req.requests.is_empty()
        && req
            .requests
            .iter()
            .all(|r| matches!(r.cmd_type(), CmdType::Get | CmdType::Snap))
}

/// The raft request context of batch `id`.
fn encode_ctx(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

fn decode_ctx(ctx: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(ctx.try_into().ok()?))
}

impl ReadQueue {
    /// Queues a read that arrived this round.
    pub fn push(&mut self, req: RaftCmdRequest, cb: Callback) {
        self.incoming.push(PendingRead { req, cb });
    }

    /// Turns this round's reads into a batch requested in `term`; returns the context to hand to
    /// `RawNode::read_index`, or None when no read arrived.
    pub fn start_batch(&mut self, term: u64) -> Option<Vec<u8>> {
        if self.incoming.is_empty() {
            return None;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.batches.push_back(ReadBatch {
            id,
            term,
            index: None,
            reads: std::mem::take(&mut self.incoming),
        });
        Some(encode_ctx(id))
    }

    /// Takes back the batch just started (raft refused the request).
    pub fn abort_last(&mut self) -> Vec<PendingRead> {
        self.batches.pop_back().map(|b| b.reads).unwrap_or_default()
    }

    /// Raft confirmed the batch of context `ctx` at `index`.
    pub fn confirm(&mut self, ctx: &[u8], index: u64) {
        let Some(id) = decode_ctx(ctx) else {
            return;
        };
        if let Some(b) = self.batches.iter_mut().find(|b| b.id == id) {
            b.index = Some(index);
        }
    }

    /// The reads whose batch is confirmed at an index not above `applied`.
    pub fn take_ready(&mut self, applied: u64) -> Vec<PendingRead> {
        let mut out = Vec::new();
        // Batches are confirmed in request order, so the ready ones are at the front.
        while self
            .batches
            .front()
            .is_some_and(|b| b.index.is_some_and(|i| i <= applied))
        {
            out.extend(self.batches.pop_front().expect("front exists").reads);
        }
        out
    }

    /// The reads raft will never confirm: every batch when the replica no longer leads, else the
    /// batches of an earlier term.
    pub fn take_lost(&mut self, is_leader: bool, term: u64) -> Vec<PendingRead> {
        let mut out = Vec::new();
        if !is_leader {
            out.append(&mut self.incoming);
        }
        let (lost, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.batches)
            .into_iter()
            .partition(|b| !is_leader || b.term != term);
        self.batches = kept.into();
        out.extend(lost.into_iter().flat_map(|b| b.reads));
        out
    }

    /// Whether reads arrived this round.
    pub fn has_incoming(&self) -> bool {
        !self.incoming.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::raft_cmdpb::{AdminRequest, Request};

    fn req(types: &[CmdType]) -> RaftCmdRequest {
        RaftCmdRequest {
            requests: types
                .iter()
                .map(|t| Request {
                    cmd_type: *t as i32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn noop() -> Callback {
        Box::new(|_| {})
    }

    #[test]
    fn only_get_and_snap_commands_are_read_only() {
        assert!(is_read_only(&req(&[CmdType::Get])));
        assert!(is_read_only(&req(&[CmdType::Snap, CmdType::Get])));
        assert!(!is_read_only(&req(&[CmdType::Get, CmdType::Put])));
        assert!(!is_read_only(&req(&[])));
        let mut admin = req(&[]);
        admin.admin_request = Some(AdminRequest::default());
        assert!(!is_read_only(&admin));
    }

    #[test]
    fn batches_are_served_once_applied_past_their_index() {
        let mut q = ReadQueue::default();
        assert_eq!(q.start_batch(3), None, "no read, no request");
        q.push(req(&[CmdType::Get]), noop());
        q.push(req(&[CmdType::Get]), noop());
        let a = q.start_batch(3).unwrap();
        q.push(req(&[CmdType::Snap]), noop());
        let b = q.start_batch(3).unwrap();
        assert_ne!(a, b);
        q.confirm(&a, 10);
        assert!(q.take_ready(9).is_empty(), "not applied far enough");
        assert_eq!(q.take_ready(10).len(), 2);
        assert!(q.take_ready(100).is_empty(), "b is not confirmed yet");
        q.confirm(&b, 12);
        q.confirm(b"garbage", 1);
        assert_eq!(q.take_ready(12).len(), 1);
        assert!(q.take_lost(false, 0).is_empty());
    }

    #[test]
    fn batches_of_a_lost_leadership_are_given_back() {
        let mut q = ReadQueue::default();
        q.push(req(&[CmdType::Get]), noop());
        q.start_batch(3).unwrap();
        q.push(req(&[CmdType::Get]), noop());
        q.start_batch(4).unwrap();
        assert_eq!(q.take_lost(true, 4).len(), 1, "the term-3 batch is lost");
        q.push(req(&[CmdType::Get]), noop());
        assert_eq!(q.take_lost(false, 4).len(), 2, "not leader: everything");
        assert!(q.take_lost(false, 0).is_empty());
        q.push(req(&[CmdType::Get]), noop());
        q.start_batch(5).unwrap();
        assert_eq!(q.abort_last().len(), 1);
    }
}
