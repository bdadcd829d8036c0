//! Store filters: which stores may give up (source) or take (target) a leader or a peer (TinyKV's
//! `scheduler/server/schedule/filter/filters.go`). A filter answers `true` to filter a store out.

use std::collections::BTreeSet;

use super::Cluster;
use crate::core::StoreInfo;

/// A rule excluding stores as sources or targets.
pub trait Filter {
    /// The filter's name, for logs.
    fn name(&self) -> &'static str;
    /// Whether `store` may not be a source.
    fn source(&self, cluster: &dyn Cluster, store: &StoreInfo) -> bool;
    /// Whether `store` may not be a target.
    fn target(&self, cluster: &dyn Cluster, store: &StoreInfo) -> bool;
}

/// Whether any of `filters` excludes `store` as a source.
pub fn filtered_as_source(
    cluster: &dyn Cluster,
    store: &StoreInfo,
    filters: &[&dyn Filter],
) -> bool {
    filters.iter().any(|f| f.source(cluster, store))
}

/// Whether any of `filters` excludes `store` as a target.
pub fn filtered_as_target(
    cluster: &dyn Cluster,
    store: &StoreInfo,
    filters: &[&dyn Filter],
) -> bool {
    filters.iter().any(|f| f.target(cluster, store))
}

/// The stores of `stores` no filter excludes as a source.
pub fn select_source_stores<'a>(
    stores: Vec<&'a StoreInfo>,
    filters: &[&dyn Filter],
    cluster: &dyn Cluster,
) -> Vec<&'a StoreInfo> {
    stores
        .into_iter()
        .filter(|s| !filtered_as_source(cluster, s, filters))
        .collect()
}

/// The stores of `stores` no filter excludes as a target.
pub fn select_target_stores<'a>(
    stores: Vec<&'a StoreInfo>,
    filters: &[&dyn Filter],
    cluster: &dyn Cluster,
) -> Vec<&'a StoreInfo> {
    stores
        .into_iter()
        .filter(|s| !filtered_as_target(cluster, s, filters))
        .collect()
}

/// Excludes listed stores.
#[derive(Clone, Debug, Default)]
pub struct ExcludedFilter {
    /// Stores that may not be sources.
    pub sources: BTreeSet<u64>,
    /// Stores that may not be targets.
    pub targets: BTreeSet<u64>,
}

impl Filter for ExcludedFilter {
    fn name(&self) -> &'static str {
        "exclude-filter"
    }
    fn source(&self, _: &dyn Cluster, store: &StoreInfo) -> bool {
        self.sources.contains(&store.id())
    }
    fn target(&self, _: &dyn Cluster, store: &StoreInfo) -> bool {
        self.targets.contains(&store.id())
    }
}

/// Tombstones are no sources; only Up stores are targets.
#[derive(Clone, Copy, Debug, Default)]
pub struct StateFilter;

impl Filter for StateFilter {
    fn name(&self) -> &'static str {
        "state-filter"
    }
    fn source(&self, _: &dyn Cluster, store: &StoreInfo) -> bool {
        store.is_tombstone()
    }
    fn target(&self, _: &dyn Cluster, store: &StoreInfo) -> bool {
        !store.is_up()
    }
}

/// Busy stores and stores down longer than `max_store_down_time` are neither.
#[derive(Clone, Copy, Debug, Default)]
pub struct HealthFilter;

impl HealthFilter {
    fn filter(cluster: &dyn Cluster, store: &StoreInfo) -> bool {
        store.is_busy() || store.down_time(cluster.now()) > cluster.max_store_down_time()
    }
}

impl Filter for HealthFilter {
    fn name(&self) -> &'static str {
        "health-filter"
    }
    fn source(&self, cluster: &dyn Cluster, store: &StoreInfo) -> bool {
        Self::filter(cluster, store)
    }
    fn target(&self, cluster: &dyn Cluster, store: &StoreInfo) -> bool {
        Self::filter(cluster, store)
    }
}

/// The store-state rules of leader transfers and peer moves: a source may not be a tombstone or
/// down (nor, for leaders, disconnected or blocked; nor, for peers, busy); a target may not be
/// offline either (nor, for leaders, busy).
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreStateFilter {
    /// The rules of leader transfers.
    pub transfer_leader: bool,
    /// The rules of peer moves.
    pub move_region: bool,
}

impl Filter for StoreStateFilter {
    fn name(&self) -> &'static str {
        "store-state-filter"
    }
    fn source(&self, cluster: &dyn Cluster, store: &StoreInfo) -> bool {
        let now = cluster.now();
        store.is_tombstone()
            || store.down_time(now) > cluster.max_store_down_time()
            || (self.transfer_leader && (store.is_disconnected(now) || store.is_blocked()))
            || (self.move_region && store.is_busy())
    }
    fn target(&self, cluster: &dyn Cluster, store: &StoreInfo) -> bool {
        let now = cluster.now();
        store.is_tombstone()
            || store.is_offline()
            || store.down_time(now) > cluster.max_store_down_time()
            || (self.transfer_leader
                && (store.is_disconnected(now) || store.is_blocked() || store.is_busy()))
            || (self.move_region && store.is_busy())
    }
}

/// Stores already receiving too much take no new peer: more snapshots in flight than
/// `max_snapshot_count`, or more pending peers than `max_pending_peer_count`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadFilter;

impl Filter for LoadFilter {
    fn name(&self) -> &'static str {
        "load-filter"
    }
    fn source(&self, _: &dyn Cluster, _: &StoreInfo) -> bool {
        false
    }
    fn target(&self, cluster: &dyn Cluster, store: &StoreInfo) -> bool {
        let cfg = cluster.config();
        store.snapshot_count() > cfg.max_snapshot_count
            || store.pending_peer_count() as u64 > cfg.max_pending_peer_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::mock::MockCluster;

    #[test]
    fn store_state_filter_for_leaders() {
        let mut tc = MockCluster::new();
        for id in 1..=5 {
            tc.add_leader_store(id, 0, None);
        }
        tc.set_store_offline(2);
        tc.set_store_busy(3, true);
        tc.set_store_disconnect(4);
        tc.set_store_down(5);
        let f = StoreStateFilter {
            transfer_leader: true,
            move_region: false,
        };
        let src: Vec<bool> = tc.get_stores().iter().map(|s| f.source(&tc, s)).collect();
        let dst: Vec<bool> = tc.get_stores().iter().map(|s| f.target(&tc, s)).collect();
        assert_eq!(src, vec![false, false, false, true, true]);
        assert_eq!(dst, vec![false, true, true, true, true]);
    }

    #[test]
    fn load_filter_refuses_loaded_targets() {
        let mut tc = MockCluster::new();
        tc.add_region_store(1, 1);
        let s = tc.get_store(1).unwrap().clone();
        assert!(!LoadFilter.target(&tc, &s));
        let s = s.with_pending_peer_count(17);
        assert!(LoadFilter.target(&tc, &s));
    }
}
