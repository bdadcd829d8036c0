//! Network filters between stores, as TinyKV's test harness has them
//! (`kv/test_raftstore/filter.go`): a partition between two sets of stores, random drops, the
//! isolation of one store, and (ours) one region's messages of one type to some stores. Both
//! drivers apply them to every raft message they carry, through [`passes`]: like TinyKV's mock
//! transport (`kv/test_raftstore/node.go`), which asks each filter in turn and each `DropFilter`
//! draws its own random number, every filter gets a roll of its own, so drop filters stacked by
//! the unreliable scenarios compound (`k` of them let about `0.9^k` of the messages through).

use proto::eraftpb::MessageType;
use proto::raft_serverpb::RaftMessage;
use rand::Rng;

/// Decides whether a message is delivered.
pub trait Filter: Send {
    /// Whether `msg` may pass; `roll` is a uniform random number in `[0, 1000)`.
    fn allow(&self, msg: &RaftMessage, roll: u32) -> bool;

    /// Whether a snapshot transfer that passed gets a chunk corrupted on the way (the receiver
    /// must reject it); `roll` is a uniform random number in `[0, 1000)`.
    fn corrupts_snapshot(&self, _roll: u32) -> bool {
        false
    }

    /// The filter in a few words, for a run's trace.
    fn describe(&self) -> String {
        "a filter".into()
    }

    /// For a filter that cuts the network in two: the stores of each side (an empty second side:
    /// every other store). For a run's trace, which shades the cut.
    fn sides(&self) -> Option<(Vec<u64>, Vec<u64>)> {
        None
    }
}

/// Whether every filter lets `msg` pass. Each filter gets its own uniform roll in `[0, 1000)` from
/// `rng`, in order, until one refuses (TinyKV's transport stops at the first filter that drops).
pub fn passes<R: Rng + ?Sized>(
    filters: &[Box<dyn Filter>],
    msg: &RaftMessage,
    rng: &mut R,
) -> bool {
    filters
        .iter()
        .all(|f| f.allow(msg, rng.random_range(0..1000u32)))
}

/// Whether a snapshot transfer that passed gets a chunk corrupted: each filter rolls its own die.
pub fn corrupts<R: Rng + ?Sized>(filters: &[Box<dyn Filter>], rng: &mut R) -> bool {
    filters
        .iter()
        .any(|f| f.corrupts_snapshot(rng.random_range(0..1000u32)))
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

    fn describe(&self) -> String {
        format!("partition {:?} | {:?}", self.s1, self.s2)
    }

    fn sides(&self) -> Option<(Vec<u64>, Vec<u64>)> {
        Some((self.s1.clone(), self.s2.clone()))
    }
}

/// Drops about `permille` of every thousand messages, and corrupts as many of the snapshot
/// transfers it lets through. The default is TinyKV's `DropFilter`, which lets a message through
/// when `rand.Int() % 1000 > 100`, so drops 101 in 1000.
#[derive(Clone, Debug)]
pub struct DropFilter {
    /// Drops per thousand.
    pub permille: u32,
}

impl Default for DropFilter {
    fn default() -> Self {
        DropFilter { permille: 101 }
    }
}

impl Filter for DropFilter {
    fn allow(&self, _msg: &RaftMessage, roll: u32) -> bool {
        roll >= self.permille
    }

    fn corrupts_snapshot(&self, roll: u32) -> bool {
        roll < self.permille
    }

    fn describe(&self) -> String {
        format!("drop {} of 1000 messages", self.permille)
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

    fn describe(&self) -> String {
        format!("isolate store {}", self.store_id)
    }

    fn sides(&self) -> Option<(Vec<u64>, Vec<u64>)> {
        Some((vec![self.store_id], Vec::new()))
    }
}

/// Drops the messages of one type of one region sent to some stores (a test's scalpel: e.g.
/// hold back one replica's appends while its heartbeats, and every other region, pass).
#[derive(Clone, Debug)]
pub struct RegionMessageFilter {
    /// The region whose messages are dropped.
    pub region_id: u64,
    /// The type dropped.
    pub msg_type: MessageType,
    /// The stores the dropped messages are sent to.
    pub to_stores: Vec<u64>,
}

impl Filter for RegionMessageFilter {
    fn allow(&self, msg: &RaftMessage, _roll: u32) -> bool {
        let (_, to) = stores(msg);
        let ty = msg.message.as_ref().map(|m| m.msg_type());
        !(msg.region_id == self.region_id
            && ty == Some(self.msg_type)
            && self.to_stores.contains(&to))
    }

    fn describe(&self) -> String {
        format!(
            "drop region {}'s {:?} to stores {:?}",
            self.region_id, self.msg_type, self.to_stores
        )
    }
}
