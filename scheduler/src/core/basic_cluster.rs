//! `BasicCluster`: the stores and the regions together, with the queries that need both (TinyKV's
//! `scheduler/server/core/basic_cluster.go`; no locks here, the owner serializes access).

use super::region::RegionInfo;
use super::regions::RegionsInfo;
use super::store::{StoreInfo, StoreStatus, StoresInfo};

/// The stores and the regions of a cluster.
#[derive(Clone, Debug, Default)]
pub struct BasicCluster {
    /// The stores.
    pub stores: StoresInfo,
    /// The regions.
    pub regions: RegionsInfo,
}

impl BasicCluster {
    /// No stores, no regions.
    pub fn new() -> BasicCluster {
        BasicCluster::default()
    }

    /// The known stores holding a peer of `region`, by id.
    pub fn get_region_stores(&self, region: &RegionInfo) -> Vec<&StoreInfo> {
        region
            .store_ids()
            .into_iter()
            .filter_map(|id| self.stores.get_store(id))
            .collect()
    }

    /// The known stores holding a follower of `region`, by id.
    pub fn get_follower_stores(&self, region: &RegionInfo) -> Vec<&StoreInfo> {
        region
            .followers()
            .into_keys()
            .filter_map(|id| self.stores.get_store(id))
            .collect()
    }

    /// The store of `region`'s leader, if known.
    pub fn get_leader_store(&self, region: &RegionInfo) -> Option<&StoreInfo> {
        self.stores.get_store(region.leader_store_id()?)
    }

    /// Store `id`'s figures as the region trees give them.
    pub fn store_status_from_regions(&self, id: u64) -> StoreStatus {
        let r = &self.regions;
        StoreStatus {
            leader_count: r.store_leader_count(id),
            region_count: r.store_region_count(id),
            pending_peer_count: r.store_pending_peer_count(id),
            leader_size: r.store_leader_region_size(id),
            region_size: r.store_region_size(id),
        }
    }

    /// Recomputes store `id`'s figures from the region trees (nothing if the store is unknown).
    pub fn update_store_status(&mut self, id: u64) {
        let status = self.store_status_from_regions(id);
        self.stores.update_store_status(id, status);
    }

    /// Puts `region` (replacing the same id, removing the regions it overlaps) and recomputes the
    /// figures of every store touched: the new region's, the replaced one's and the overlapped
    /// ones'. Returns the overlapped regions it removed.
    pub fn put_region(&mut self, region: RegionInfo) -> Vec<RegionInfo> {
        let mut touched = region.store_ids();
        touched.extend(region.pending_peers().iter().map(|p| p.store_id));
        if let Some(origin) = self.regions.get_region(region.id()) {
            touched.extend(origin.store_ids());
        }
        let removed = self.regions.set_region(region);
        for r in &removed {
            touched.extend(r.store_ids());
        }
        for id in touched {
            self.update_store_status(id);
        }
        removed
    }
}
