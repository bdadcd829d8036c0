//! The mock scheduler: learns regions and their leaders only from region heartbeats (as TinyKV's
//! `MockSchedulerClient`), and answers "which region holds this key, and who leads it".

use std::collections::BTreeMap;

use proto::metapb::{Peer, Region};
use raftstore::util::is_epoch_stale;
use raftstore::RegionHeartbeat;

/// Regions by id, with their leaders.
#[derive(Default, Debug)]
pub struct MockScheduler {
    regions: BTreeMap<u64, Region>,
    leaders: BTreeMap<u64, Peer>,
    next_id: u64,
}

impl MockScheduler {
    /// A scheduler that knows the bootstrapped regions; ids it allocates start at `base_id`.
    pub fn new(regions: Vec<Region>, base_id: u64) -> Self {
        MockScheduler {
            regions: regions.into_iter().map(|r| (r.id, r)).collect(),
            leaders: BTreeMap::new(),
            next_id: base_id,
        }
    }

    /// A new unique id (for peers and regions).
    pub fn alloc_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A leader's report: newer region metadata replaces older; the leader is recorded.
    pub fn region_heartbeat(&mut self, hb: RegionHeartbeat) {
        let id = hb.region.id;
        if let Some(old) = self.regions.get(&id) {
            let (o, n) = (
                old.region_epoch.unwrap_or_default(),
                hb.region.region_epoch.unwrap_or_default(),
            );
            if is_epoch_stale(&n, &o) {
                return;
            }
        }
        self.regions.insert(id, hb.region);
        self.leaders.insert(id, hb.leader);
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
