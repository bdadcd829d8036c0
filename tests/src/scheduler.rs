//! The mock scheduler: learns regions and their leaders only from region heartbeats (as TinyKV's
//! `MockSchedulerClient`), and answers "which region holds this key, and who leads it".

use std::collections::BTreeMap;

use proto::metapb::{Peer, Region};
use proto::schedulerpb::{
    AskSplitResponse, RegionHeartbeatRequest, RegionHeartbeatResponse, StoreStats,
};
use raftstore::util::is_epoch_stale;

/// Regions by id, with their leaders.
#[derive(Default, Debug)]
pub struct MockScheduler {
    regions: BTreeMap<u64, Region>,
    leaders: BTreeMap<u64, Peer>,
    next_id: u64,
}

impl MockScheduler {
    /// A scheduler that knows the bootstrapped regions; the first id it allocates is `first_id`.
    pub fn new(regions: Vec<Region>, first_id: u64) -> Self {
        MockScheduler {
            regions: regions.into_iter().map(|r| (r.id, r)).collect(),
            leaders: BTreeMap::new(),
            next_id: first_id,
        }
    }

    /// A new unique id (for peers and regions).
    pub fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A leader's report: newer region metadata replaces older; the leader is recorded. The
    /// answer goes to the leader's store.
    pub fn region_heartbeat(
        &mut self,
        req: &RegionHeartbeatRequest,
    ) -> Result<RegionHeartbeatResponse, String> {
        let region = req.region.clone().unwrap_or_default();
        let leader = req.leader.unwrap_or_default();
        let id = region.id;
        self.leaders.insert(id, leader);
        if let Some(old) = self.regions.get(&id) {
            let (o, n) = (
                old.region_epoch.unwrap_or_default(),
                region.region_epoch.unwrap_or_default(),
            );
            if is_epoch_stale(&n, &o) {
                return Err("epoch is stale".into());
            }
        }
        let epoch = region.region_epoch;
        self.regions.insert(id, region);
        Ok(RegionHeartbeatResponse {
            region_id: id,
            region_epoch: epoch,
            target_peer: Some(leader),
            ..Default::default()
        })
    }

    /// A store's statistics: nothing to do with them.
    pub fn store_heartbeat(&mut self, _stats: &StoreStats) {}

    /// New ids for a split of `region`: a region id and one peer id per peer.
    pub fn ask_split(&mut self, region: &Region) -> Result<AskSplitResponse, String> {
        if !self.regions.contains_key(&region.id) {
            return Err("region not found".into());
        }
        let new_region_id = self.alloc_id();
        let new_peer_ids = region.peers.iter().map(|_| self.alloc_id()).collect();
        Ok(AskSplitResponse {
            header: None,
            new_region_id,
            new_peer_ids,
        })
    }

    /// The region holding `key`, and its leader if known.
    pub fn get_region(&self, key: &[u8]) -> Option<(Region, Option<Peer>)> {
        self.regions
            .values()
            .find(|r| {
                key >= r.start_key.as_slice()
                    && (r.end_key.is_empty() || key < r.end_key.as_slice())
            })
            .map(|r| (r.clone(), self.leaders.get(&r.id).cloned()))
    }

    /// A region by id.
    pub fn get_region_by_id(&self, id: u64) -> Option<Region> {
        self.regions.get(&id).cloned()
    }

    /// The leader of a region, if known.
    pub fn leader_of(&self, region_id: u64) -> Option<Peer> {
        self.leaders.get(&region_id).cloned()
    }

    /// Every region.
    pub fn regions(&self) -> Vec<Region> {
        self.regions.values().cloned().collect()
    }
}
