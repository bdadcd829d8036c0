//! Network filters between stores (SPEC 7.1): a partition between two sets of stores, and random
//! drops. Both drivers apply them to every raft message they carry.

use proto::raft_serverpb::RaftMessage;

/// Decides whether a message is delivered.
pub trait Filter: Send {
    /// Whether `msg` may pass; `roll` is a uniform random number in `[0, 1000)`.
    fn allow(&self, msg: &RaftMessage, roll: u32) -> bool;

    /// Whether a snapshot transfer that passed gets a chunk corrupted on the way (the receiver
    /// must reject it); `roll` is a uniform random number in `[0, 1000)`.
    fn corrupts_snapshot(&self, _roll: u32) -> bool {
        false
    }
}

fn stores(msg: &RaftMessage) -> (u64, u64) {
    (
        msg.from_peer.as_ref().map_or(0, |p| p.store_id),
        msg.to_peer.as_ref().map_or(0, |p| p.store_id),
    )
}

/// Drops every message between a store of `s1` and a store of `s2`.
#[derive(Clone, Debug)]
pub struct PartitionFilter {
    /// One side.
    pub s1: Vec<u64>,
    /// The other side.
    pub s2: Vec<u64>,
}

impl Filter for PartitionFilter {
    fn allow(&self, msg: &RaftMessage, _roll: u32) -> bool {
        let (from, to) = stores(msg);
        let across = (self.s1.contains(&from) && self.s2.contains(&to))
            || (self.s2.contains(&from) && self.s1.contains(&to));
        !across
    }
}

/// Drops about `permille` of every thousand messages (TinyKV's DropFilter drops ~10%), and
/// corrupts as many of the snapshot transfers it lets through.
#[derive(Clone, Debug)]
pub struct DropFilter {
    /// Drops per thousand.
    pub permille: u32,
}

impl Default for DropFilter {
    fn default() -> Self {
        DropFilter { permille: 100 }
    }
}

impl Filter for DropFilter {
    fn allow(&self, _msg: &RaftMessage, roll: u32) -> bool {
        roll >= self.permille
    }

    fn corrupts_snapshot(&self, roll: u32) -> bool {
        roll < self.permille
    }
}

/// Drops every message from or to one store.
#[derive(Clone, Debug)]
pub struct IsolateFilter {
    /// The isolated store.
    pub store_id: u64,
}

impl Filter for IsolateFilter {
    fn allow(&self, msg: &RaftMessage, _roll: u32) -> bool {
        let (from, to) = stores(msg);
        from != self.store_id && to != self.store_id
    }
}
