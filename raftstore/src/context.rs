//! What the store's handlers hand to their driver: the `StoreContext` that collects a round's
//! effects (messages to send, callbacks to answer, tasks to run, scheduler heartbeats, a sync to
//! make), which each driver carries out its own way.

use proto::metapb::{self, Region};
use proto::raft_serverpb::RaftMessage;

use crate::callback::{Callback, CmdResponse};
use crate::task::Task;

/// A region heartbeat for the scheduler: a leader reports its region.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionHeartbeat {
    /// The region as the leader knows it.
    pub region: Region,
    /// The leader.
    pub leader: metapb::Peer,
}

/// The effects of a round of handlers, for the driver to carry out.
#[derive(Default)]
pub struct StoreContext {
    /// Raft messages to send to other stores.
    pub messages: Vec<RaftMessage>,
    /// Callbacks to call with their responses.
    pub responses: Vec<(Callback, CmdResponse)>,
    /// Background tasks to run.
    pub tasks: Vec<Task>,
    /// Region heartbeats for the scheduler.
    pub heartbeats: Vec<RegionHeartbeat>,
    /// With `Config::async_raft_sync`: the raft engine must be synced, then
    /// `Store::on_synced` called with this number (or a later one).
    pub sync_request: Option<u64>,
}

impl StoreContext {
    /// Whether there is nothing to carry out.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.responses.is_empty()
            && self.tasks.is_empty()
            && self.heartbeats.is_empty()
            && self.sync_request.is_none()
    }
}
