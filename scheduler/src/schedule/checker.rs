//! `ReplicaChecker`: keeps each region at `max_replicas` healthy replicas (TinyKV's
//! `scheduler/server/schedule/checker/replica_checker.go`, plus replacing peers on down stores).
//!
//! In order: a peer on an Offline store, or on a store silent for longer than
//! `max_store_down_time`, is replaced (a new peer on the best store, then the old one removed), or
//! just removed when the region has replicas to spare; a region short of replicas gets one on the
//! emptiest suitable store; a region with too many loses the one on the fullest store.

use std::collections::BTreeSet;

use proto::metapb::Peer;

use super::filter::{ExcludedFilter, Filter, HealthFilter, LoadFilter, StateFilter};
use super::operator::{
    create_add_peer_operator, create_move_peer_operator, create_remove_peer_operator, OpKind,
    Operator, PriorityLevel,
};
use super::selector::ReplicaSelector;
use super::Cluster;
use crate::core::RegionInfo;

/// Why a peer must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerStatus {
    Offline,
    Down,
}

impl PeerStatus {
    fn name(self) -> &'static str {
        match self {
            PeerStatus::Offline => "offline",
            PeerStatus::Down => "down",
        }
    }
}

/// The replica checker.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplicaChecker;

impl ReplicaChecker {
    /// The checker's name.
    pub const NAME: &'static str = "replica-checker";

    /// A replica checker.
    pub fn new() -> ReplicaChecker {
        ReplicaChecker
    }

    /// The operator `region` needs, if any.
    pub fn check(&self, cluster: &dyn Cluster, region: &RegionInfo) -> Option<Operator> {
        if let Some(op) = self.check_urgent(cluster, region) {
            return Some(op);
        }
        let max = cluster.max_replicas();
        if region.peers().len() < max {
            let store_id =
                self.select_best_store_to_add_replica(cluster, region, &region.store_ids())?;
            let peer = cluster.alloc_peer(store_id).ok()?;
            return Some(create_add_peer_operator(
                "make-up-replica",
                region,
                peer.id,
                store_id,
                OpKind::REPLICA,
            ));
        }
        if region.voters().len() > max {
            let old = self.select_worst_peer(cluster, region)?;
            return create_remove_peer_operator(
                "remove-extra-replica",
                cluster,
                OpKind::REPLICA,
                region,
                old.store_id,
            )
            .ok();
        }
        None
    }

    /// The operator replacing (or removing) a peer of `region` on an offline or down store, if
    /// any, at High priority: the first thing [`ReplicaChecker::check`] looks for, and the only
    /// one worth taking over from a less urgent operator already running on the region (a
    /// balance move whose target store died after its peer was added would otherwise hold the
    /// region at a dead replica until the move times out).
    pub fn check_urgent(&self, cluster: &dyn Cluster, region: &RegionInfo) -> Option<Operator> {
        let mut op = self.check_lost_peer(cluster, region)?;
        op.set_priority(PriorityLevel::High);
        Some(op)
    }

    /// The store that should take a replica of `region` instead of the one on `old_store`.
    pub fn select_best_replacement_store(
        &self,
        cluster: &dyn Cluster,
        region: &RegionInfo,
        old_store: u64,
    ) -> Option<u64> {
        let without = region.clone().with_removed_store_peer(old_store);
        // Every store of the region, the old one included, is excluded.
        self.select_best_store_to_add_replica(cluster, &without, &region.store_ids())
    }

    /// The emptiest store that is up, healthy, not overloaded and not in `excluded`.
    fn select_best_store_to_add_replica(
        &self,
        cluster: &dyn Cluster,
        region: &RegionInfo,
        excluded: &BTreeSet<u64>,
    ) -> Option<u64> {
        let mut targets = excluded.clone();
        targets.extend(region.store_ids());
        let exclude = ExcludedFilter {
            sources: BTreeSet::new(),
            targets,
        };
        let filters: [&dyn Filter; 4] = [&HealthFilter, &StateFilter, &exclude, &LoadFilter];
        let selector = ReplicaSelector::new(vec![&HealthFilter]);
        selector
            .select_target(cluster, &cluster.get_stores(), &filters)
            .map(|s| s.id())
    }

    /// The peer on the fullest of the region's stores, unless that store is unhealthy.
    fn select_worst_peer<'r>(
        &self,
        cluster: &dyn Cluster,
        region: &'r RegionInfo,
    ) -> Option<&'r Peer> {
        let stores = cluster.get_region_stores(region);
        let selector = ReplicaSelector::new(vec![&HealthFilter]);
        let worst = selector.select_source(cluster, &stores)?;
        region.get_store_peer(worst.id())
    }

    /// The operator replacing (or removing) a peer on an offline or down store. A peer on an
    /// unknown store stops the check (the scheduler may be recovering its metadata).
    fn check_lost_peer(&self, cluster: &dyn Cluster, region: &RegionInfo) -> Option<Operator> {
        let now = cluster.now();
        for peer in region.peers() {
            let store = cluster.get_store(peer.store_id)?;
            if !store.is_up() {
                return self.fix_peer(cluster, region, peer, PeerStatus::Offline);
            }
            if store.silent_time(now) > cluster.max_store_down_time() {
                return self.fix_peer(cluster, region, peer, PeerStatus::Down);
            }
        }
        None
    }

    fn fix_peer(
        &self,
        cluster: &dyn Cluster,
        region: &RegionInfo,
        peer: &Peer,
        status: PeerStatus,
    ) -> Option<Operator> {
        if region.peers().len() > cluster.max_replicas() {
            let desc = format!("remove-extra-{}-replica", status.name());
            return create_remove_peer_operator(
                &desc,
                cluster,
                OpKind::REPLICA,
                region,
                peer.store_id,
            )
            .ok();
        }
        let store_id = self.select_best_replacement_store(cluster, region, peer.store_id)?;
        let new_peer = cluster.alloc_peer(store_id).ok()?;
        let desc = format!("replace-{}-replica", status.name());
        create_move_peer_operator(
            &desc,
            cluster,
            region,
            OpKind::REPLICA,
            peer.store_id,
            store_id,
            new_peer.id,
        )
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::schedule::mock::MockCluster;
    use crate::schedule::test_util::{check_add_peer, check_remove_peer, check_transfer_peer};

    /// TinyKV's `TestBasic` (`scheduler/server/schedulers/balance_test.go`).
    #[test]
    fn test_basic() {
        let mut tc = MockCluster::new();
        let rc = ReplicaChecker::new();
        tc.cfg.max_snapshot_count = 2;
        tc.add_region_store(1, 4);
        tc.add_region_store(2, 3);
        tc.add_region_store(3, 2);
        tc.add_region_store(4, 1);
        tc.add_leader_region(1, 1, &[2]);

        let mut region = tc.get_region(1).unwrap().clone();
        check_add_peer(rc.check(&tc, &region), OpKind::REPLICA, 4);
        tc.set_store_down(4);
        check_add_peer(rc.check(&tc, &region), OpKind::REPLICA, 3);
        tc.set_store_up(4);
        check_add_peer(rc.check(&tc, &region), OpKind::REPLICA, 4);

        let peer4 = tc.alloc_peer(4).unwrap();
        region = region.with_added_peer(peer4);
        assert!(rc.check(&tc, &region).is_none());

        let peer3 = tc.alloc_peer(3).unwrap();
        region = region.with_added_peer(peer3);
        check_remove_peer(rc.check(&tc, &region), 1);

        region = region.with_removed_store_peer(1);
        tc.set_store_offline(3);
        check_transfer_peer(rc.check(&tc, &region), OpKind::REPLICA, 3, 1);
    }

    /// TinyKV's `TestLostStore`.
    #[test]
    fn test_lost_store() {
        let mut tc = MockCluster::new();
        tc.add_region_store(1, 1);
        tc.add_region_store(2, 1);
        let rc = ReplicaChecker::new();
        tc.add_leader_region(1, 1, &[2, 3]);
        let region = tc.get_region(1).unwrap().clone();
        assert!(rc.check(&tc, &region).is_none());
    }

    /// TinyKV's `TestOffline`.
    #[test]
    fn test_offline() {
        let mut tc = MockCluster::new();
        tc.cfg.max_replicas = 3;
        let rc = ReplicaChecker::new();
        tc.add_region_store(1, 1);
        tc.add_region_store(2, 2);
        tc.add_region_store(3, 3);
        tc.add_region_store(4, 4);
        tc.add_leader_region(1, 1, &[]);
        let mut region = tc.get_region(1).unwrap().clone();

        check_add_peer(rc.check(&tc, &region), OpKind::REPLICA, 2);
        region = region.with_added_peer(tc.alloc_peer(2).unwrap());
        check_add_peer(rc.check(&tc, &region), OpKind::REPLICA, 3);
        region = region.with_added_peer(tc.alloc_peer(3).unwrap());
        region = region.with_added_peer(tc.alloc_peer(4).unwrap());
        check_remove_peer(rc.check(&tc, &region), 4);

        tc.set_store_busy(4, true);
        assert!(rc.check(&tc, &region).is_none());
        tc.set_store_busy(4, false);
        check_remove_peer(rc.check(&tc, &region), 4);

        tc.set_store_offline(3);
        check_remove_peer(rc.check(&tc, &region), 3);
        region = region.with_removed_store_peer(4);
        check_transfer_peer(rc.check(&tc, &region), OpKind::REPLICA, 3, 4);

        tc.add_region_store(5, 3);
        check_transfer_peer(rc.check(&tc, &region), OpKind::REPLICA, 3, 5);
    }

    #[test]
    fn a_peer_on_a_long_silent_store_is_replaced() {
        let mut tc = MockCluster::new();
        for (id, n) in [(1, 1), (2, 2), (3, 3), (4, 4)] {
            tc.add_region_store(id, n);
        }
        tc.add_leader_region(1, 1, &[2, 3]);
        let region = tc.get_region(1).unwrap().clone();
        let rc = ReplicaChecker::new();
        assert!(rc.check(&tc, &region).is_none());

        // Store 3 stops heartbeating; the others go on.
        tc.now += tc.cfg.max_store_down_time + Duration::from_secs(1);
        for id in [1, 2, 4] {
            tc.set_store_up(id);
        }
        let op = rc.check(&tc, &region).unwrap();
        check_transfer_peer(Some(op.clone()), OpKind::REPLICA, 3, 4);
        assert_eq!(op.priority(), PriorityLevel::High);
        assert_eq!(op.desc(), "replace-down-replica");

        // With a replica to spare, the dead one is just removed.
        let crowded = region.clone().with_added_peer(tc.alloc_peer(4).unwrap());
        check_remove_peer(rc.check(&tc, &crowded), 3);

        // No suitable store: nothing.
        tc.set_store_offline(4);
        assert!(rc.check(&tc, &region).is_none());
    }

    #[test]
    fn a_store_that_never_heartbeated_is_not_down_until_it_was_known_long_enough() {
        let mut tc = MockCluster::new();
        for id in 1..=4 {
            tc.add_region_store(id, id as usize);
        }
        tc.add_leader_region(1, 1, &[2, 3]);
        let region = tc.get_region(1).unwrap().clone();
        // A restarted scheduler: store 3 loaded, no heartbeat yet.
        let s3 = tc
            .get_store(3)
            .unwrap()
            .clone()
            .with_last_heartbeat(None)
            .with_first_seen(Some(tc.now));
        tc.put_store(s3);
        let rc = ReplicaChecker::new();
        assert!(rc.check(&tc, &region).is_none());
        tc.now += tc.cfg.max_store_down_time + Duration::from_secs(1);
        for id in [1, 2, 4] {
            tc.set_store_up(id);
        }
        check_transfer_peer(rc.check(&tc, &region), OpKind::REPLICA, 3, 4);
    }
}
