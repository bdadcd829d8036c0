//! ReadIndex (Raft thesis 6.4): linearizable reads without writing the log.
//!
//! A read asks the leader for its commit index; the leader confirms it is still leader with a round
//! of heartbeats carrying the request's context, and once a quorum answered, the read may be served
//! as soon as the node has applied up to that index. Requests queue in arrival order; a quorum
//! ack of a later request confirms every earlier one too.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proto::eraftpb::Message;

/// How a leader confirms a ReadIndex request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReadOnlyOption {
    /// A heartbeat round to a quorum per batch of reads. Safe whatever the clocks do.
    #[default]
    Safe,
    /// Trust the leader lease (needs check-quorum): answer at once. Faster, but relies on bounded
    /// clock drift between nodes.
    LeaseBased,
}

/// A read that is ready: once `applied >= index`, the read with context `request_ctx` may be served.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadState {
    /// The commit index at the time the read was confirmed.
    pub index: u64,
    /// The request's context, as given to `RawNode::read_index`.
    pub request_ctx: Vec<u8>,
}

/// One pending read on the leader.
#[derive(Clone, Debug)]
pub struct ReadIndexStatus {
    /// The original request (its `from` tells where to answer, its entry holds the context).
    pub req: Message,
    /// The leader's commit index when the request arrived.
    pub index: u64,
    /// Nodes that acknowledged a heartbeat carrying this request's context.
    pub acks: BTreeSet<u64>,
}

/// The leader's queue of reads waiting for a heartbeat quorum.
#[derive(Clone, Debug, Default)]
pub struct ReadOnly {
    /// The confirmation mode.
    pub option: ReadOnlyOption,
    pending: BTreeMap<Vec<u8>, ReadIndexStatus>,
    queue: VecDeque<Vec<u8>>,
}

impl ReadOnly {
    /// An empty queue.
    pub fn new(option: ReadOnlyOption) -> Self {
        ReadOnly {
            option,
            ..Default::default()
        }
    }

    /// Queues a read that arrived when the commit index was `index`. A context already pending is
    /// not queued twice.
    pub fn add_request(&mut self, index: u64, req: Message) {
        let ctx = req.entries[0].data.clone();
        if self.pending.contains_key(&ctx) {
            return;
        }
        self.pending.insert(
            ctx.clone(),
            ReadIndexStatus {
                req,
                index,
                acks: BTreeSet::new(),
            },
        );
        self.queue.push_back(ctx);
    }

    /// Records that `id` acknowledged the heartbeat carrying `ctx`; returns who has acknowledged it.
    pub fn recv_ack(&mut self, id: u64, ctx: &[u8]) -> Option<&BTreeSet<u64>> {
        let status = self.pending.get_mut(ctx)?;
        status.acks.insert(id);
        Some(&status.acks)
    }

    /// Removes and returns every read up to and including the one with `ctx`: a quorum confirmed it,
    /// and so every read queued before it.
    pub fn advance(&mut self, ctx: &[u8]) -> Vec<ReadIndexStatus> {
        let Some(pos) = self.queue.iter().position(|c| c.as_slice() == ctx) else {
            return Vec::new();
        };
        self.queue
            .drain(..=pos)
            .filter_map(|c| self.pending.remove(&c))
            .collect()
    }

    /// The context of the newest pending read whose acknowledgements `confirmed` accepts (after
    /// the membership shrank, fewer acks may make a quorum), if any.
    pub fn newest_confirmed(&self, confirmed: impl Fn(&BTreeSet<u64>) -> bool) -> Option<Vec<u8>> {
        self.queue
            .iter()
            .rev()
            .find(|c| self.pending.get(*c).is_some_and(|s| confirmed(&s.acks)))
            .cloned()
    }

    /// The context of the newest pending read (heartbeats carry it), if any.
    pub fn last_pending_request_ctx(&self) -> Option<Vec<u8>> {
        self.queue.back().cloned()
    }

    /// The number of pending reads.
    pub fn pending_read_count(&self) -> usize {
        self.queue.len()
    }
}
