//! The store's configuration. Intervals are counted in base ticks: the threaded runtime ticks every
//! `raft_base_tick_interval`, the simulator in virtual time, and the handlers only count ticks.

use std::time::Duration;

use crate::errors::{Error, Result};

/// The most base ticks any interval may count: a million (a bound far past any useful setting,
/// which keeps the tick arithmetic of raft and the drivers clear of overflow).
pub const MAX_TICKS: usize = 1_000_000;

/// The longest base tick: one minute.
pub const MAX_BASE_TICK: Duration = Duration::from_secs(60);

/// Configuration of one store.
#[derive(Clone, Debug)]
pub struct Config {
    /// Wall-clock length of one base tick (threaded runtime only).
    pub raft_base_tick_interval: Duration,
    /// Base ticks between raft heartbeats.
    pub raft_heartbeat_ticks: usize,
    /// Base ticks of the raft election timeout (randomized up to twice that).
    pub raft_election_timeout_ticks: usize,
    /// Base ticks between raft-log GC checks.
    pub raft_log_gc_tick_ticks: usize,
    /// A leader proposes log compaction once this many applied entries are in the log.
    pub raft_log_gc_count_limit: u64,
    /// Base ticks between region heartbeats to the scheduler (leaders only).
    pub scheduler_heartbeat_ticks: usize,
    /// Base ticks between store heartbeats to the scheduler.
    pub scheduler_store_heartbeat_ticks: usize,
    /// Base ticks between split checks of a leader's region.
    pub split_region_check_ticks: usize,
    /// A region whose data grows past this many bytes is split (TiKV's `region-max-size`).
    pub region_max_size: u64,
    /// Where a split cuts: the first key past this many bytes of the region (TiKV's
    /// `region-split-size`).
    pub region_split_size: u64,
    /// Byte limit of the entries in one MsgAppend.
    pub raft_max_size_per_msg: u64,
    /// Appends in flight to one follower.
    pub raft_max_inflight_msgs: usize,
    /// Largest accepted raft entry (a request bigger than this is refused).
    pub raft_entry_max_size: u64,
    /// Raft's pre-vote: a replica that lost touch with its leader asks whether it could win
    /// before starting an election, so a partitioned replica does not disrupt the group when it
    /// comes back (not in TinyKV's raft).
    pub raft_pre_vote: bool,
    /// Raft's check-quorum: a leader that has not heard from a quorum for an election timeout
    /// steps down, and followers that hear from a leader ignore votes for that long (not in
    /// TinyKV's raft).
    pub raft_check_quorum: bool,
    /// Seed for the raft nodes' random election timeouts (mixed with region and peer ids).
    pub seed: u64,
    /// Sync the raft engine off the round: a round writes its raft batch unsynced and asks the
    /// driver for a sync (`StoreContext::sync_request`), and what needs durability waits for
    /// `Store::on_synced` — a follower's acks and votes, applying entries, a leader counting
    /// follower acks past its own synced log — while later rounds go on. Off: every round ends
    /// in its own synced write.
    pub async_raft_sync: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            raft_base_tick_interval: Duration::from_millis(100),
            raft_heartbeat_ticks: 2,
            raft_election_timeout_ticks: 10,
            raft_log_gc_tick_ticks: 10,
            raft_log_gc_count_limit: 128_000,
            scheduler_heartbeat_ticks: 10,
            scheduler_store_heartbeat_ticks: 100,
            split_region_check_ticks: 100,
            region_max_size: 144 * 1024 * 1024,
            region_split_size: 96 * 1024 * 1024,
            raft_max_size_per_msg: 1024 * 1024,
            raft_max_inflight_msgs: 256,
            raft_entry_max_size: 8 * 1024 * 1024,
            raft_pre_vote: true,
            raft_check_quorum: true,
            seed: 0,
            async_raft_sync: false,
        }
    }
}

impl Config {
    /// The configuration the test clusters use: 50 ms ticks, GC checked every tick, frequent
    /// scheduler heartbeats and split checks (TinyKV's `NewTestConfig`: 100 ms region and 500 ms
    /// store heartbeats, a split check every 100 ms), and no check-quorum: TinyKV's scenarios
    /// are written for its raft, which has none, and under their compounding message loss
    /// (about half of all messages lost late in a run) check-quorum deposes leaders that could
    /// still serve, for elections that then take seconds (with it, 1 of 48 runs of the 3B
    /// partition scenarios timed out a client; without it, none). Pre-vote stays on: it makes
    /// those elections succeed sooner.
    pub fn test_config() -> Self {
        Config {
            raft_check_quorum: false,
            raft_base_tick_interval: Duration::from_millis(50),
            raft_log_gc_tick_ticks: 1,
            scheduler_heartbeat_ticks: 2,
            scheduler_store_heartbeat_ticks: 10,
            split_region_check_ticks: 2,
            ..Default::default()
        }
    }

    /// Checks the values can run a store.
    pub fn validate(&self) -> Result<()> {
        let ticks = [
            ("raft_heartbeat_ticks", self.raft_heartbeat_ticks),
            (
                "raft_election_timeout_ticks",
                self.raft_election_timeout_ticks,
            ),
            ("raft_log_gc_tick_ticks", self.raft_log_gc_tick_ticks),
            ("scheduler_heartbeat_ticks", self.scheduler_heartbeat_ticks),
            (
                "scheduler_store_heartbeat_ticks",
                self.scheduler_store_heartbeat_ticks,
            ),
            ("split_region_check_ticks", self.split_region_check_ticks),
        ];
        if let Some((name, n)) = ticks.iter().find(|(_, n)| !(1..=MAX_TICKS).contains(n)) {
            return Err(Error::InvalidConfig(format!(
                "{name} ({n}) must be from 1 to {MAX_TICKS}"
            )));
        }
        if self.raft_election_timeout_ticks <= self.raft_heartbeat_ticks {
            return Err(Error::InvalidConfig(format!(
                "raft_election_timeout_ticks ({}) must be greater than raft_heartbeat_ticks ({})",
                self.raft_election_timeout_ticks, self.raft_heartbeat_ticks
            )));
        }
        if self.raft_base_tick_interval.is_zero() || self.raft_base_tick_interval > MAX_BASE_TICK {
            return Err(Error::InvalidConfig(format!(
                "raft_base_tick_interval ({:?}) must be more than 0 and at most {MAX_BASE_TICK:?}",
                self.raft_base_tick_interval
            )));
        }
        if self.region_split_size == 0 || self.region_split_size > self.region_max_size {
            return Err(Error::InvalidConfig(format!(
                "region_split_size ({}) must be more than 0 and at most region_max_size ({})",
                self.region_split_size, self.region_max_size
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_bounds_every_interval() {
        assert!(Config::default().validate().is_ok());
        assert!(Config::test_config().validate().is_ok());
        let too_long = Config {
            raft_election_timeout_ticks: usize::MAX,
            ..Default::default()
        };
        let e = too_long.validate().unwrap_err().to_string();
        assert!(e.contains("raft_election_timeout_ticks"), "{e}");
        let at_bound = Config {
            raft_election_timeout_ticks: MAX_TICKS,
            ..Default::default()
        };
        assert!(at_bound.validate().is_ok());
        let slow_tick = Config {
            raft_base_tick_interval: Duration::from_secs(3600),
            ..Default::default()
        };
        let e = slow_tick.validate().unwrap_err().to_string();
        assert!(e.contains("raft_base_tick_interval"), "{e}");
        let no_gc_tick = Config {
            raft_log_gc_tick_ticks: MAX_TICKS + 1,
            ..Default::default()
        };
        assert!(no_gc_tick.validate().is_err());
        let zero = Config {
            scheduler_heartbeat_ticks: 0,
            ..Default::default()
        };
        let e = zero.validate().unwrap_err().to_string();
        assert!(e.contains("scheduler_heartbeat_ticks (0)"), "{e}");
        let no_split_check = Config {
            split_region_check_ticks: 0,
            ..Default::default()
        };
        let e = no_split_check.validate().unwrap_err().to_string();
        assert!(e.contains("split_region_check_ticks (0)"), "{e}");
        let inverted = Config {
            region_max_size: 100,
            region_split_size: 200,
            ..Default::default()
        };
        let e = inverted.validate().unwrap_err().to_string();
        assert!(e.contains("region_split_size (200)"), "{e}");
    }
}
