//! balance-leader: moves leaderships from stores leading many regions to stores leading few
//! (TinyKV's `scheduler/server/schedulers/balance_leader.go`).

use rand::RngCore;
use slog::{debug, Logger};

use super::Scheduler;
use crate::core::{PeerRole, RegionInfo, StoreInfo};
use crate::schedule::filter::{
    select_source_stores, select_target_stores, Filter, StoreStateFilter,
};
use crate::schedule::operator::{create_transfer_leader_operator, OpKind, Operator};
use crate::schedule::operator_controller::OperatorController;
use crate::schedule::Cluster;

/// How many regions are tried per source (or target) store.
pub const BALANCE_LEADER_RETRY_LIMIT: usize = 10;

const FILTER: StoreStateFilter = StoreStateFilter {
    transfer_leader: true,
    move_region: false,
};

/// The balance-leader scheduler.
pub struct BalanceLeaderScheduler {
    logger: Logger,
}

impl Default for BalanceLeaderScheduler {
    fn default() -> BalanceLeaderScheduler {
        BalanceLeaderScheduler::new()
    }
}

impl BalanceLeaderScheduler {
    /// The scheduler's name.
    pub const NAME: &'static str = "balance-leader-scheduler";

    /// A balance-leader scheduler that does not log.
    pub fn new() -> BalanceLeaderScheduler {
        BalanceLeaderScheduler::with_logger(Logger::root(slog::Discard, slog::o!()))
    }

    /// A balance-leader scheduler logging to `logger`.
    pub fn with_logger(logger: Logger) -> BalanceLeaderScheduler {
        BalanceLeaderScheduler { logger }
    }

    fn pick<'a>(
        cluster: &'a dyn Cluster,
        store_id: u64,
        role: PeerRole,
        rng: &mut dyn RngCore,
    ) -> Option<&'a RegionInfo> {
        cluster
            .basic()
            .regions
            .rand_region(store_id, role, rng, |r| {
                r.is_healthy() && !cluster.has_operator(r.id())
            })
    }

    /// Moves the leadership of a random healthy region `source` leads to one of its followers.
    fn transfer_leader_out(
        &self,
        cluster: &dyn Cluster,
        source: &StoreInfo,
        rng: &mut dyn RngCore,
    ) -> Option<Operator> {
        let Some(region) = Self::pick(cluster, source.id(), PeerRole::Leader, rng) else {
            debug!(self.logger, "store has no leader"; "store_id" => source.id());
            return None;
        };
        let filters: [&dyn Filter; 1] = [&FILTER];
        let mut targets =
            select_target_stores(cluster.get_follower_stores(region), &filters, cluster);
        targets.sort_by_key(|s| (s.leader_count(), s.id()));
        targets
            .into_iter()
            .find_map(|target| self.create_operator(cluster, region, source, target))
    }

    /// Moves to `target` the leadership of a random healthy region it follows.
    fn transfer_leader_in(
        &self,
        cluster: &dyn Cluster,
        target: &StoreInfo,
        rng: &mut dyn RngCore,
    ) -> Option<Operator> {
        let Some(region) = Self::pick(cluster, target.id(), PeerRole::Follower, rng) else {
            debug!(self.logger, "store has no follower"; "store_id" => target.id());
            return None;
        };
        let source = cluster.get_store(region.leader_store_id()?)?;
        self.create_operator(cluster, region, source, target)
    }

    fn create_operator(
        &self,
        cluster: &dyn Cluster,
        region: &RegionInfo,
        source: &StoreInfo,
        target: &StoreInfo,
    ) -> Option<Operator> {
        let tolerance = (2.0 * cluster.config().tolerant_size_ratio) as i64;
        if (source.leader_count() as i64) - (target.leader_count() as i64) < tolerance {
            return None;
        }
        let from = region.leader_store_id()?;
        Some(create_transfer_leader_operator(
            "balance-leader",
            region,
            from,
            target.id(),
            OpKind::BALANCE,
        ))
    }
}

impl Scheduler for BalanceLeaderScheduler {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn is_schedule_allowed(&self, cluster: &dyn Cluster, ops: &OperatorController) -> bool {
        ops.operator_count(OpKind::LEADER) < cluster.config().leader_schedule_limit
    }

    /// Sources by leader count descending, targets ascending; for i = 0, 1, ...: up to
    /// [`BALANCE_LEADER_RETRY_LIMIT`] tries to move a leader out of source i, then as many to move
    /// one into target i. A move needs the two stores' leader counts to differ by at least twice
    /// the tolerant ratio.
    fn schedule(&mut self, cluster: &dyn Cluster, rng: &mut dyn RngCore) -> Option<Operator> {
        let filters: [&dyn Filter; 1] = [&FILTER];
        let mut sources = select_source_stores(cluster.get_stores(), &filters, cluster);
        let mut targets = select_target_stores(cluster.get_stores(), &filters, cluster);
        sources.sort_by(|a, b| {
            b.leader_count()
                .cmp(&a.leader_count())
                .then(a.id().cmp(&b.id()))
        });
        targets.sort_by_key(|s| (s.leader_count(), s.id()));
        for i in 0..sources.len().max(targets.len()) {
            if let Some(source) = sources.get(i) {
                for _ in 0..BALANCE_LEADER_RETRY_LIMIT {
                    if let Some(op) = self.transfer_leader_out(cluster, source, rng) {
                        return Some(op);
                    }
                }
            }
            if let Some(target) = targets.get(i) {
                for _ in 0..BALANCE_LEADER_RETRY_LIMIT {
                    if let Some(op) = self.transfer_leader_in(cluster, target, rng) {
                        return Some(op);
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::schedule::mock::MockCluster;
    use crate::schedule::test_util::check_transfer_leader;

    const SEEDS: u64 = 16;

    fn schedule(tc: &MockCluster, seed: u64) -> Option<Operator> {
        BalanceLeaderScheduler::new().schedule(tc, &mut StdRng::seed_from_u64(seed))
    }

    /// TinyKV's `TestBalanceLimit`.
    #[test]
    fn test_balance_limit() {
        for seed in 0..SEEDS {
            let mut tc = MockCluster::new();
            tc.add_leader_store(1, 1, None);
            tc.add_leader_store(2, 0, None);
            tc.add_leader_store(3, 0, None);
            tc.add_leader_store(4, 0, None);
            tc.add_leader_region(1, 1, &[2, 3, 4]);
            assert!(schedule(&tc, seed).is_none());

            tc.update_leader_count(1, 16);
            assert!(schedule(&tc, seed).is_some());

            tc.update_leader_count(1, 7);
            tc.update_leader_count(2, 8);
            tc.update_leader_count(3, 9);
            tc.update_leader_count(4, 10);
            tc.add_leader_region(1, 4, &[1, 2, 3]);
            assert!(schedule(&tc, seed).is_none());

            tc.update_leader_count(4, 18);
            assert!(schedule(&tc, seed).is_some());
        }
    }

    /// TinyKV's `TestBalanceLeaderScheduleStrategy`.
    #[test]
    fn test_balance_leader_schedule_strategy() {
        let mut tc = MockCluster::new();
        tc.add_leader_store(1, 10, Some(10000));
        tc.add_leader_store(2, 10, Some(100));
        tc.add_leader_store(3, 10, Some(100));
        tc.add_leader_store(4, 10, Some(100));
        tc.add_leader_region(1, 1, &[2, 3, 4]);
        for seed in 0..SEEDS {
            assert!(schedule(&tc, seed).is_none());
        }
    }

    /// TinyKV's `TestBalanceLeaderTolerantRatio`.
    #[test]
    fn test_balance_leader_tolerant_ratio() {
        for seed in 0..SEEDS {
            let mut tc = MockCluster::new();
            tc.add_leader_store(1, 14, Some(100));
            tc.add_leader_store(2, 10, Some(100));
            tc.add_leader_store(3, 10, Some(100));
            tc.add_leader_store(4, 10, Some(100));
            tc.add_leader_region(1, 1, &[2, 3, 4]);
            assert!(schedule(&tc, seed).is_none());
            assert_eq!(tc.get_store(1).unwrap().leader_count(), 14);
            tc.add_leader_store(1, 21, Some(100));
            assert_eq!(tc.get_store(1).unwrap().leader_count(), 21);
            assert!(schedule(&tc, seed).is_some());
        }
    }

    /// TinyKV's `TestBalanceFilter`.
    #[test]
    fn test_balance_filter() {
        for seed in 0..SEEDS {
            let mut tc = MockCluster::new();
            tc.add_leader_store(1, 1, None);
            tc.add_leader_store(2, 2, None);
            tc.add_leader_store(3, 3, None);
            tc.add_leader_store(4, 16, None);
            tc.add_leader_region(1, 4, &[1, 2, 3]);

            check_transfer_leader(schedule(&tc, seed), OpKind::BALANCE, 4, 1);
            // An offline store may still hand its leaders over.
            tc.set_store_offline(4);
            check_transfer_leader(schedule(&tc, seed), OpKind::BALANCE, 4, 1);
            tc.set_store_down(1);
            check_transfer_leader(schedule(&tc, seed), OpKind::BALANCE, 4, 2);
            tc.set_store_busy(2, true);
            check_transfer_leader(schedule(&tc, seed), OpKind::BALANCE, 4, 3);
            tc.set_store_disconnect(3);
            assert!(schedule(&tc, seed).is_none());
        }
    }

    /// TinyKV's `TestBalanceSelector`.
    #[test]
    fn test_balance_selector() {
        for seed in 0..SEEDS {
            let mut tc = MockCluster::new();
            tc.add_leader_store(1, 1, None);
            tc.add_leader_store(2, 2, None);
            tc.add_leader_store(3, 3, None);
            tc.add_leader_store(4, 16, None);
            tc.add_leader_region(1, 4, &[2, 3]);
            tc.add_leader_region(2, 3, &[1, 2]);
            check_transfer_leader(schedule(&tc, seed), OpKind::BALANCE, 4, 2);

            tc.update_leader_count(2, 14);
            tc.update_leader_count(3, 15);
            check_transfer_leader(schedule(&tc, seed), OpKind::BALANCE, 3, 1);

            tc.add_leader_store(2, 2, None);
            tc.add_leader_region(1, 3, &[2, 4]);
            tc.add_leader_region(2, 1, &[2, 3]);
            check_transfer_leader(schedule(&tc, seed), OpKind::BALANCE, 3, 2);

            tc.add_leader_store(1, 10, None);
            tc.add_leader_store(2, 10, None);
            tc.add_leader_store(3, 10, None);
            tc.add_leader_store(4, 10, None);
            tc.add_leader_region(1, 4, &[2, 3]);
            tc.add_leader_region(2, 1, &[2, 3]);
            assert!(schedule(&tc, seed).is_none());
            assert!(schedule(&tc, seed).is_none());

            tc.add_leader_store(1, 11, None);
            tc.add_leader_store(2, 13, None);
            tc.add_leader_store(3, 0, None);
            tc.add_leader_store(4, 16, None);
            check_transfer_leader(schedule(&tc, seed), OpKind::BALANCE, 4, 3);
        }
    }

    #[test]
    fn unhealthy_regions_keep_their_leader() {
        let mut tc = MockCluster::new();
        tc.add_leader_store(1, 16, None);
        tc.add_leader_store(2, 0, None);
        tc.add_leader_region(1, 1, &[2]);
        let region = tc.get_region(1).unwrap().clone();
        let pending = vec![*region.get_store_peer(2).unwrap()];
        tc.put_region(region.with_pending_peers(pending));
        assert!(schedule(&tc, 0).is_none());
    }
}
