//! balance-region: moves a peer from the store holding the most region data to the one holding the
//! least (TinyKV's `scheduler/server/schedulers/balance_region.go`, the Project 3C exercise).

use rand::RngCore;
use slog::{debug, Logger};

use super::Scheduler;
use crate::core::{PeerRole, RegionInfo, StoreInfo};
use crate::schedule::filter::{Filter, LoadFilter};
use crate::schedule::operator::{create_move_peer_operator, OpKind, Operator};
use crate::schedule::operator_controller::OperatorController;
use crate::schedule::Cluster;

/// How many regions of one source store (per role) are tried.
pub const BALANCE_REGION_RETRY_LIMIT: usize = 10;

/// The balance-region scheduler.
pub struct BalanceRegionScheduler {
    logger: Logger,
}

impl Default for BalanceRegionScheduler {
    fn default() -> BalanceRegionScheduler {
        BalanceRegionScheduler::new()
    }
}

impl BalanceRegionScheduler {
    /// The scheduler's name.
    pub const NAME: &'static str = "balance-region-scheduler";

    /// A balance-region scheduler that does not log.
    pub fn new() -> BalanceRegionScheduler {
        BalanceRegionScheduler::with_logger(Logger::root(slog::Discard, slog::o!()))
    }

    /// A balance-region scheduler logging to `logger`.
    pub fn with_logger(logger: Logger) -> BalanceRegionScheduler {
        BalanceRegionScheduler { logger }
    }

    // STAGE 3C remove
    /// The move of `region` off `source`, if some suitable store holds little enough.
    fn try_region(
        &self,
        cluster: &dyn Cluster,
        suitable: &[&StoreInfo],
        source: &StoreInfo,
        region: &RegionInfo,
    ) -> Option<Operator> {
        let holders = region.store_ids();
        let target = suitable
            .iter()
            .filter(|s| !holders.contains(&s.id()) && !LoadFilter.target(cluster, s))
            .min_by_key(|s| (s.region_size(), s.id()))?;
        if source.region_size() - target.region_size() <= 2 * region.approximate_size() {
            debug!(self.logger, "no worthwhile target"; "region_id" => region.id(),
                "source" => source.id(), "target" => target.id());
            return None;
        }
        let peer = cluster.alloc_peer(target.id()).ok()?;
        create_move_peer_operator(
            "balance-region",
            cluster,
            region,
            OpKind::BALANCE,
            source.id(),
            target.id(),
            peer.id,
        )
        .ok()
    }
    // END STAGE 3C
}

impl Scheduler for BalanceRegionScheduler {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn is_schedule_allowed(&self, cluster: &dyn Cluster, ops: &OperatorController) -> bool {
        ops.operator_count(OpKind::REGION) < cluster.config().region_schedule_limit
    }

    /// Sources are the suitable stores (up, and down for no longer than
    /// `cluster.max_store_down_time()`) from the fullest (by region size); from each, a region
    /// it holds a pending peer of, else follows, else leads (up to
    /// [`BALANCE_REGION_RETRY_LIMIT`] random ones per role, drawn with
    /// `RegionsInfo::sample_regions`, with exactly `max_replicas` peers and no running operator)
    /// moves to the emptiest suitable store not holding it and not refused as a target by the
    /// [`LoadFilter`], if the two stores' sizes differ by more than twice the region's: the
    /// answer is a move-peer operator (`create_move_peer_operator`, kind `BALANCE`) to a new peer
    /// allocated on the target (`cluster.alloc_peer`). None if no region qualifies.
    fn schedule(&mut self, cluster: &dyn Cluster, rng: &mut dyn RngCore) -> Option<Operator> {
        // STAGE 3C: from the fullest suitable store, pick a region to move (pending, then follower, then leader peers) to the emptiest suitable store that does not hold it, if worthwhile
        let now = cluster.now();
        let max_down = cluster.max_store_down_time();
        let mut suitable: Vec<&StoreInfo> = cluster
            .get_stores()
            .into_iter()
            .filter(|s| s.is_up() && s.down_time(now) <= max_down)
            .collect();
        suitable.sort_by(|a, b| {
            b.region_size()
                .cmp(&a.region_size())
                .then(a.id().cmp(&b.id()))
        });
        let max_replicas = cluster.max_replicas();
        let regions = &cluster.basic().regions;
        for source in &suitable {
            for role in [PeerRole::Pending, PeerRole::Follower, PeerRole::Leader] {
                let picks = regions.sample_regions(
                    source.id(),
                    role,
                    rng,
                    BALANCE_REGION_RETRY_LIMIT,
                    |r| r.peers().len() == max_replicas && !cluster.has_operator(r.id()),
                );
                for region in picks {
                    if let Some(op) = self.try_region(cluster, &suitable, source, region) {
                        return Some(op);
                    }
                }
            }
        }
        None
        // END STAGE 3C
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::schedule::mock::MockCluster;
    use crate::schedule::test_util::{
        check_transfer_peer, check_transfer_peer_with_leader_transfer,
    };

    const SEEDS: u64 = 16;

    fn schedule(tc: &MockCluster, seed: u64) -> Option<Operator> {
        BalanceRegionScheduler::new().schedule(tc, &mut StdRng::seed_from_u64(seed))
    }

    /// TinyKV's `TestReplicas13C`.
    #[test]
    fn test_replicas1_3c() {
        for seed in 0..SEEDS {
            let mut tc = MockCluster::new();
            tc.cfg.max_replicas = 1;
            tc.add_region_store(1, 6);
            tc.add_region_store(2, 8);
            tc.add_region_store(3, 8);
            tc.add_region_store(4, 16);
            tc.add_leader_region(1, 4, &[]);
            check_transfer_peer_with_leader_transfer(schedule(&tc, seed), OpKind::BALANCE, 4, 1);

            tc.set_store_offline(1);
            tc.update_region_count(2, 6);
            check_transfer_peer_with_leader_transfer(schedule(&tc, seed), OpKind::BALANCE, 4, 2);

            tc.cfg.max_replicas = 3;
            assert!(schedule(&tc, seed).is_none());
            tc.cfg.max_replicas = 1;
            assert!(schedule(&tc, seed).is_some());
        }
    }

    /// TinyKV's `TestReplicas33C`.
    #[test]
    fn test_replicas3_3c() {
        for seed in 0..SEEDS {
            let mut tc = MockCluster::new();
            tc.cfg.max_replicas = 3;
            tc.add_region_store(1, 16);
            tc.add_region_store(2, 15);
            tc.add_region_store(3, 14);
            tc.add_leader_region(1, 1, &[2, 3]);
            assert!(schedule(&tc, seed).is_none());

            tc.add_region_store(4, 2);
            check_transfer_peer(schedule(&tc, seed), OpKind::BALANCE, 1, 4);
            tc.add_region_store(5, 1);
            check_transfer_peer(schedule(&tc, seed), OpKind::BALANCE, 1, 5);
            tc.add_region_store(6, 0);
            check_transfer_peer(schedule(&tc, seed), OpKind::BALANCE, 1, 6);

            tc.set_store_down(6);
            check_transfer_peer(schedule(&tc, seed), OpKind::BALANCE, 1, 5);

            tc.set_store_down(4);
            tc.set_store_down(5);
            tc.set_store_down(6);
            tc.add_region_store(7, 20);
            assert!(schedule(&tc, seed).is_none());
        }
    }

    /// TinyKV's `TestReplicas53C`.
    #[test]
    fn test_replicas5_3c() {
        for seed in 0..SEEDS {
            let mut tc = MockCluster::new();
            tc.cfg.max_replicas = 5;
            tc.add_region_store(1, 4);
            tc.add_region_store(2, 5);
            tc.add_region_store(3, 6);
            tc.add_region_store(4, 7);
            tc.add_region_store(5, 28);
            tc.add_leader_region(1, 1, &[2, 3, 4, 5]);

            tc.add_region_store(6, 1);
            check_transfer_peer(schedule(&tc, seed), OpKind::BALANCE, 5, 6);
            tc.add_region_store(7, 5);
            check_transfer_peer(schedule(&tc, seed), OpKind::BALANCE, 5, 6);

            tc.add_leader_region(1, 2, &[3, 4, 5, 6]);
            check_transfer_peer(schedule(&tc, seed), OpKind::BALANCE, 5, 1);

            tc.add_region_store(11, 29);
            tc.add_region_store(12, 8);
            tc.add_region_store(13, 7);
            tc.add_leader_region(1, 2, &[3, 11, 12, 13]);
            check_transfer_peer(schedule(&tc, seed), OpKind::BALANCE, 11, 6);
        }
    }

    /// TinyKV's `TestReplacePendingRegion3C`.
    #[test]
    fn test_replace_pending_region_3c() {
        for seed in 0..SEEDS {
            let mut tc = MockCluster::new();
            tc.cfg.max_replicas = 3;
            tc.add_region_store(1, 16);
            tc.add_region_store(2, 7);
            tc.add_region_store(3, 15);
            tc.add_region_store(4, 10);
            tc.add_leader_region(1, 1, &[2, 3]);
            tc.add_leader_region(2, 1, &[2, 3]);
            tc.add_leader_region(3, 2, &[1, 3]);
            let region = tc.get_region(3).unwrap().clone();
            let pending = vec![*region.get_store_peer(1).unwrap()];
            tc.put_region(region.with_pending_peers(pending));

            assert_eq!(schedule(&tc, seed).unwrap().region_id(), 3);
            check_transfer_peer(schedule(&tc, seed), OpKind::BALANCE, 1, 4);
        }
    }

    #[test]
    fn regions_with_an_operator_are_left_alone() {
        let mut tc = MockCluster::new();
        tc.add_region_store(1, 16);
        tc.add_region_store(2, 15);
        tc.add_region_store(3, 14);
        tc.add_region_store(4, 0);
        tc.add_leader_region(1, 1, &[2, 3]);
        tc.add_leader_region(2, 1, &[2, 3]);
        tc.busy_regions.insert(1);
        for seed in 0..SEEDS {
            assert_eq!(schedule(&tc, seed).unwrap().region_id(), 2);
        }
        tc.busy_regions.insert(2);
        assert!(schedule(&tc, 0).is_none());
    }

    #[test]
    fn schedule_is_allowed_under_the_region_limit() {
        let tc = MockCluster::new();
        let oc = OperatorController::new(1, Logger::root(slog::Discard, slog::o!()));
        let s = BalanceRegionScheduler::new();
        assert!(s.is_schedule_allowed(&tc, &oc));
        let mut tc = tc;
        tc.cfg.region_schedule_limit = 0;
        assert!(!s.is_schedule_allowed(&tc, &oc));
    }
}
