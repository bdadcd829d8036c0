//! `Config`: everything a `Raft` node is started with, and its validation.

use crate::errors::{Error, Result};
use crate::read_only::ReadOnlyOption;
use crate::util::NO_LIMIT;

/// The parameters of one raft node.
///
/// The defaults keep TinyKV's behaviour: pre-vote, check-quorum and lease reads are off, messages
/// carry any number of entries, and the inflight window is 256 appends.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id; never 0.
    pub id: u64,
    /// The initial members when the storage holds no configuration yet (a new cluster, or tests).
    /// Ignored when the storage's `ConfState` lists nodes.
    pub peers: Vec<u64>,
    /// Ticks without hearing from a leader before a follower campaigns. The real timeout is drawn
    /// at random from `[election_tick, 2 * election_tick)` each time it is reset.
    pub election_tick: usize,
    /// Ticks between a leader's heartbeats; must be smaller than `election_tick`.
    pub heartbeat_tick: usize,
    /// The last applied index when restarting; entries up to it are not handed out again.
    pub applied: u64,
    /// Seed of the node's random number generator (election timeouts). Mixed with `id`, so nodes of
    /// one cluster can share a seed and still draw different timeouts.
    pub seed: u64,
    /// Byte limit of the entries in one MsgAppend (at least one entry is always sent).
    pub max_size_per_msg: u64,
    /// How many MsgAppend may be in flight to one follower in the replicate state.
    pub max_inflight_msgs: usize,
    /// Run a pre-vote round before a real election (Raft thesis 9.6), so a node coming back from a
    /// partition does not raise terms and unseat a healthy leader.
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum for an election timeout, and a node
    /// that heard from a live leader within the election timeout ignores vote requests.
    pub check_quorum: bool,
    /// How ReadIndex requests are confirmed: by a heartbeat round (safe) or by the leader lease.
    pub read_only_option: ReadOnlyOption,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id: 0,
            peers: Vec::new(),
            election_tick: 10,
            heartbeat_tick: 2,
            applied: 0,
            seed: 0,
            max_size_per_msg: NO_LIMIT,
            max_inflight_msgs: 256,
            pre_vote: false,
            check_quorum: false,
            read_only_option: ReadOnlyOption::Safe,
        }
    }
}

impl Config {
    /// A config with the given id and the defaults for everything else.
    pub fn new(id: u64) -> Self {
        Config {
            id,
            ..Default::default()
        }
    }

    /// Checks that the config can run a node.
    pub fn validate(&self) -> Result<()> {
        if self.id == 0 {
            return Err(Error::ConfigInvalid("id must not be 0".into()));
        }
        if self.heartbeat_tick == 0 {
            return Err(Error::ConfigInvalid(
                "heartbeat_tick must be greater than 0".into(),
            ));
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(Error::ConfigInvalid(format!(
                "election_tick ({}) must be greater than heartbeat_tick ({})",
                self.election_tick, self.heartbeat_tick
            )));
        }
        if self.election_tick > usize::MAX / 2 {
            // The randomized timeout is drawn from [election_tick, 2 * election_tick).
            return Err(Error::ConfigInvalid(format!(
                "election_tick ({}) must be at most {}",
                self.election_tick,
                usize::MAX / 2
            )));
        }
        if self.max_inflight_msgs == 0 {
            return Err(Error::ConfigInvalid(
                "max_inflight_msgs must be greater than 0".into(),
            ));
        }
        if self.read_only_option == ReadOnlyOption::LeaseBased && !self.check_quorum {
            return Err(Error::ConfigInvalid(
                "lease-based reads need check_quorum".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The randomized election timeout is drawn from `[election_tick, 2 * election_tick)`, so an
    /// election tick past half of `usize` is refused rather than left to overflow.
    #[test]
    fn election_tick_is_bounded() {
        let mut c = Config::new(1);
        assert!(c.validate().is_ok());
        c.election_tick = usize::MAX;
        assert!(matches!(c.validate(), Err(Error::ConfigInvalid(_))));
        c.election_tick = usize::MAX / 2;
        assert!(c.validate().is_ok());
    }
}
