//! `ReplicaSelector`: picks the store to take a new replica (the emptiest by region size) or to
//! lose one (the fullest) (TinyKV's `scheduler/server/schedule/selector/selector.go`). Ties go to
//! the store with fewer regions, then to the lower id, so choices are deterministic.

use std::cmp::Ordering;

use super::filter::{filtered_as_source, filtered_as_target, Filter};
use super::Cluster;
use crate::core::StoreInfo;

/// How much better `a` is than `b` as a home for a replica: `Greater` when `a` holds less.
pub fn compare_store_score(a: &StoreInfo, b: &StoreInfo) -> Ordering {
    b.region_size().cmp(&a.region_size())
}

fn emptier(a: &StoreInfo, b: &StoreInfo) -> Ordering {
    compare_store_score(a, b)
        .then_with(|| b.region_count().cmp(&a.region_count()))
        .then_with(|| b.id().cmp(&a.id()))
}

/// Picks replica sources and targets among stores, with its own filters checked on the pick.
pub struct ReplicaSelector<'f> {
    filters: Vec<&'f dyn Filter>,
}

impl<'f> ReplicaSelector<'f> {
    /// A selector whose pick must pass `filters`.
    pub fn new(filters: Vec<&'f dyn Filter>) -> ReplicaSelector<'f> {
        ReplicaSelector { filters }
    }

    /// The fullest of `stores`, unless the selector's filters exclude it as a source.
    pub fn select_source<'a>(
        &self,
        cluster: &dyn Cluster,
        stores: &[&'a StoreInfo],
    ) -> Option<&'a StoreInfo> {
        let worst = stores.iter().copied().min_by(|a, b| emptier(a, b))?;
        (!filtered_as_source(cluster, worst, &self.filters)).then_some(worst)
    }

    /// The emptiest of `stores` that `filters` accept, unless the selector's filters exclude it as
    /// a target.
    pub fn select_target<'a>(
        &self,
        cluster: &dyn Cluster,
        stores: &[&'a StoreInfo],
        filters: &[&dyn Filter],
    ) -> Option<&'a StoreInfo> {
        let best = stores
            .iter()
            .copied()
            .filter(|s| !filtered_as_target(cluster, s, filters))
            .max_by(|a, b| emptier(a, b))?;
        (!filtered_as_target(cluster, best, &self.filters)).then_some(best)
    }
}

#[cfg(test)]
mod tests {
    use proto::metapb::Store;

    use super::*;

    fn store(id: u64, region_count: usize) -> StoreInfo {
        StoreInfo::new(Store {
            id,
            ..Default::default()
        })
        .with_region_count(region_count)
        .with_region_size(region_count as i64 * 10)
    }

    /// TinyKV's `TestCompareStoreScore`.
    #[test]
    fn test_compare_store_score() {
        let (s1, s2, s3) = (store(1, 1), store(2, 1), store(3, 3));
        assert_eq!(compare_store_score(&s1, &s2), Ordering::Equal);
        assert_eq!(compare_store_score(&s1, &s3), Ordering::Greater);
    }
}
