//! A mock cluster for scheduler and checker tests (TinyKV's
//! `scheduler/pkg/mock/mockcluster/mockcluster.go`): stores and regions set directly, store
//! figures set by hand (putting a region does not update them), a fixed "now" and a counter for ids.

use std::cell::Cell;
use std::collections::HashSet;
use std::time::{Duration, Instant};

use proto::metapb::{Region, RegionEpoch, Store, StoreState};
use proto::schedulerpb::StoreStats;

use super::{Cluster, ScheduleConfig};
use crate::core::{BasicCluster, RegionInfo, StoreInfo};
use crate::errors::Result;

/// A cluster whose figures the test sets.
pub struct MockCluster {
    /// The stores and regions.
    pub basic: BasicCluster,
    /// The options.
    pub cfg: ScheduleConfig,
    /// The current time.
    pub now: Instant,
    /// Regions that count as having an operator.
    pub busy_regions: HashSet<u64>,
    next_id: Cell<u64>,
}

impl Cluster for MockCluster {
    fn basic(&self) -> &BasicCluster {
        &self.basic
    }
    fn config(&self) -> &ScheduleConfig {
        &self.cfg
    }
    fn now(&self) -> Instant {
        self.now
    }
    fn alloc_id(&self) -> Result<u64> {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        Ok(id)
    }
    fn has_operator(&self, region_id: u64) -> bool {
        self.busy_regions.contains(&region_id)
    }
}

fn capacity_stats(used: u64) -> StoreStats {
    let capacity = 1000 << 20;
    StoreStats {
        capacity,
        available: capacity - used,
        ..Default::default()
    }
}

impl MockCluster {
    /// An empty cluster with the default options.
    pub fn new() -> MockCluster {
        MockCluster {
            basic: BasicCluster::new(),
            cfg: ScheduleConfig::default(),
            // Far enough from the process start that "30 s ago" exists.
            now: Instant::now() + Duration::from_secs(3600),
            busy_regions: HashSet::new(),
            next_id: Cell::new(0),
        }
    }

    /// Puts `store` as given.
    pub fn put_store(&mut self, store: StoreInfo) {
        self.basic.stores.set_store(store);
    }

    /// Puts `region` (store figures unchanged).
    pub fn put_region(&mut self, region: RegionInfo) {
        self.basic.regions.set_region(region);
    }

    fn store(&self, id: u64) -> StoreInfo {
        self.basic
            .stores
            .get_store(id)
            .cloned()
            .unwrap_or_else(|| panic!("store {id} missing"))
    }

    /// Store `id` leading `leader_count` regions of size `leader_size` (10 each by default),
    /// heartbeating now.
    pub fn add_leader_store(&mut self, id: u64, leader_count: usize, leader_size: Option<i64>) {
        let store = StoreInfo::new(Store {
            id,
            ..Default::default()
        })
        .with_stats(capacity_stats(leader_count as u64 * 10))
        .with_leader_count(leader_count)
        .with_leader_size(leader_size.unwrap_or(leader_count as i64 * 10))
        .with_last_heartbeat(Some(self.now))
        .with_first_seen(Some(self.now));
        self.put_store(store);
    }

    /// Store `id` holding `region_count` regions of size 10, heartbeating now.
    pub fn add_region_store(&mut self, id: u64, region_count: usize) {
        let store = StoreInfo::new(Store {
            id,
            ..Default::default()
        })
        .with_stats(capacity_stats(region_count as u64 * 10))
        .with_region_count(region_count)
        .with_region_size(region_count as i64 * 10)
        .with_last_heartbeat(Some(self.now))
        .with_first_seen(Some(self.now));
        self.put_store(store);
    }

    /// Region `region_id` (size 10) led from `leader_store` with followers on `followers`, fresh
    /// peer ids, range `format!("{:20}", id) .. id + 1`.
    pub fn add_leader_region(&mut self, region_id: u64, leader_store: u64, followers: &[u64]) {
        let region = self
            .mock_region_info(region_id, leader_store, followers, None)
            .with_approximate_size(10);
        self.put_region(region);
    }

    /// The region `add_leader_region` would put, with `epoch`.
    pub fn mock_region_info(
        &self,
        region_id: u64,
        leader_store: u64,
        followers: &[u64],
        epoch: Option<RegionEpoch>,
    ) -> RegionInfo {
        let leader = self.alloc_peer(leader_store).expect("mock ids");
        let mut peers = vec![leader];
        peers.extend(
            followers
                .iter()
                .map(|s| self.alloc_peer(*s).expect("mock ids")),
        );
        let meta = Region {
            id: region_id,
            start_key: format!("{region_id:20}").into_bytes(),
            end_key: format!("{:20}", region_id + 1).into_bytes(),
            region_epoch: epoch,
            peers,
        };
        RegionInfo::new(meta, Some(leader))
    }

    /// Store `id` up and heartbeating now.
    pub fn set_store_up(&mut self, id: u64) {
        let s = self
            .store(id)
            .with_state(StoreState::Up)
            .with_last_heartbeat(Some(self.now));
        self.put_store(s);
    }

    /// Store `id` up but never heartbeated (down).
    pub fn set_store_down(&mut self, id: u64) {
        let s = self
            .store(id)
            .with_state(StoreState::Up)
            .with_last_heartbeat(None);
        self.put_store(s);
    }

    /// Store `id` up, last heartbeat 30 s ago (disconnected).
    pub fn set_store_disconnect(&mut self, id: u64) {
        let at = self.now - Duration::from_secs(30);
        let s = self
            .store(id)
            .with_state(StoreState::Up)
            .with_last_heartbeat(Some(at));
        self.put_store(s);
    }

    /// Store `id` offline.
    pub fn set_store_offline(&mut self, id: u64) {
        let s = self.store(id).with_state(StoreState::Offline);
        self.put_store(s);
    }

    /// Store `id` busy or not, heartbeating now.
    pub fn set_store_busy(&mut self, id: u64, busy: bool) {
        let store = self.store(id);
        let stats = StoreStats {
            is_busy: busy,
            ..store.stats().clone()
        };
        let s = store.with_stats(stats).with_last_heartbeat(Some(self.now));
        self.put_store(s);
    }

    /// Store `id` leading `count` regions of size 10.
    pub fn update_leader_count(&mut self, id: u64, count: usize) {
        let s = self
            .store(id)
            .with_leader_count(count)
            .with_leader_size(count as i64 * 10);
        self.put_store(s);
    }

    /// Store `id` holding `count` regions of size 10.
    pub fn update_region_count(&mut self, id: u64, count: usize) {
        let s = self
            .store(id)
            .with_region_count(count)
            .with_region_size(count as i64 * 10);
        self.put_store(s);
    }
}
