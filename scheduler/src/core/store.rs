//! `StoreInfo` and `StoresInfo`: what the scheduler knows of each store — its meta, its last
//! statistics and heartbeat, and the leader/region counts and sizes derived from the regions it
//! holds (TinyKV's `scheduler/server/core/store.go` and `store_option.go`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proto::metapb::{Store, StoreState};
use proto::schedulerpb::StoreStats;

use crate::errors::{Error, Result};

/// A store whose last heartbeat is older than this is disconnected.
pub const STORE_DISCONNECT_DURATION: Duration = Duration::from_secs(20);
/// A store whose last heartbeat is older than this is unhealthy.
pub const STORE_UNHEALTHY_DURATION: Duration = Duration::from_secs(10 * 60);

/// One store as the scheduler knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreInfo {
    meta: Store,
    stats: StoreStats,
    blocked: bool,
    leader_count: usize,
    region_count: usize,
    pending_peer_count: usize,
    leader_size: i64,
    region_size: i64,
    last_heartbeat: Option<Instant>,
    first_seen: Option<Instant>,
    leader_weight: f64,
    region_weight: f64,
}

impl StoreInfo {
    /// A store with `meta`, no statistics, no heartbeat yet, weights 1.
    pub fn new(meta: Store) -> StoreInfo {
        StoreInfo {
            meta,
            stats: StoreStats::default(),
            blocked: false,
            leader_count: 0,
            region_count: 0,
            pending_peer_count: 0,
            leader_size: 0,
            region_size: 0,
            last_heartbeat: None,
            first_seen: None,
            leader_weight: 1.0,
            region_weight: 1.0,
        }
    }

    /// The store's id.
    pub fn id(&self) -> u64 {
        self.meta.id
    }

    /// The store's meta.
    pub fn meta(&self) -> &Store {
        &self.meta
    }

    /// The store's address.
    pub fn address(&self) -> &str {
        &self.meta.address
    }

    /// The store's state (Up for an unknown value).
    pub fn state(&self) -> StoreState {
        StoreState::try_from(self.meta.state).unwrap_or(StoreState::Up)
    }

    /// Whether the store is Up.
    pub fn is_up(&self) -> bool {
        self.state() == StoreState::Up
    }

    /// Whether the store is being taken out (Offline).
    pub fn is_offline(&self) -> bool {
        self.state() == StoreState::Offline
    }

    /// Whether the store has been removed (Tombstone).
    pub fn is_tombstone(&self) -> bool {
        self.state() == StoreState::Tombstone
    }

    /// The last statistics the store reported.
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// Whether the store said it is busy.
    pub fn is_busy(&self) -> bool {
        self.stats.is_busy
    }

    /// Whether balancers may not pick the store.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// The number of regions it leads.
    pub fn leader_count(&self) -> usize {
        self.leader_count
    }

    /// The number of regions it holds a peer of.
    pub fn region_count(&self) -> usize {
        self.region_count
    }

    /// The number of its peers that are pending.
    pub fn pending_peer_count(&self) -> usize {
        self.pending_peer_count
    }

    /// The total size of the regions it leads (MiB).
    pub fn leader_size(&self) -> i64 {
        self.leader_size
    }

    /// The total size of the regions it holds (MiB).
    pub fn region_size(&self) -> i64 {
        self.region_size
    }

    /// The leader weight (1 by default).
    pub fn leader_weight(&self) -> f64 {
        self.leader_weight
    }

    /// The region weight (1 by default).
    pub fn region_weight(&self) -> f64 {
        self.region_weight
    }

    /// When the store last heartbeated.
    pub fn last_heartbeat(&self) -> Option<Instant> {
        self.last_heartbeat
    }

    /// When this scheduler first learnt of the store (put or loaded).
    pub fn first_seen(&self) -> Option<Instant> {
        self.first_seen
    }

    /// The time since the last heartbeat; `Duration::MAX` for a store that never heartbeated
    /// (TinyKV's zero time), so it counts as down for balancing.
    pub fn down_time(&self, now: Instant) -> Duration {
        self.last_heartbeat
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t))
    }

    /// The time the store has been silent: since its last heartbeat, or, if it never heartbeated,
    /// since this scheduler first learnt of it (so a restarted scheduler does not take every
    /// store for dead before the first heartbeats arrive).
    pub fn silent_time(&self, now: Instant) -> Duration {
        self.last_heartbeat
            .or(self.first_seen)
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// Whether the last heartbeat is older than [`STORE_DISCONNECT_DURATION`].
    pub fn is_disconnected(&self, now: Instant) -> bool {
        self.down_time(now) > STORE_DISCONNECT_DURATION
    }

    /// Whether the last heartbeat is older than [`STORE_UNHEALTHY_DURATION`].
    pub fn is_unhealthy(&self, now: Instant) -> bool {
        self.down_time(now) > STORE_UNHEALTHY_DURATION
    }

    /// The number of snapshots the store is sending, receiving or applying.
    pub fn snapshot_count(&self) -> u64 {
        u64::from(self.stats.sending_snap_count)
            + u64::from(self.stats.receiving_snap_count)
            + u64::from(self.stats.applying_snap_count)
    }

    /// This store with `state`.
    pub fn with_state(mut self, state: StoreState) -> StoreInfo {
        self.meta.set_state(state);
        self
    }

    /// This store at `address`.
    pub fn with_address(mut self, address: String) -> StoreInfo {
        self.meta.address = address;
        self
    }

    /// This store with statistics `stats`.
    pub fn with_stats(mut self, stats: StoreStats) -> StoreInfo {
        self.stats = stats;
        self
    }

    /// This store blocked or not.
    pub fn with_blocked(mut self, blocked: bool) -> StoreInfo {
        self.blocked = blocked;
        self
    }

    /// This store with last heartbeat `at` (`None`: never).
    pub fn with_last_heartbeat(mut self, at: Option<Instant>) -> StoreInfo {
        self.last_heartbeat = at;
        self
    }

    /// This store first seen at `at`.
    pub fn with_first_seen(mut self, at: Option<Instant>) -> StoreInfo {
        self.first_seen = at;
        self
    }

    /// This store leading `count` regions.
    pub fn with_leader_count(mut self, count: usize) -> StoreInfo {
        self.leader_count = count;
        self
    }

    /// This store holding `count` regions.
    pub fn with_region_count(mut self, count: usize) -> StoreInfo {
        self.region_count = count;
        self
    }

    /// This store with `count` pending peers.
    pub fn with_pending_peer_count(mut self, count: usize) -> StoreInfo {
        self.pending_peer_count = count;
        self
    }

    /// This store leading `size` MiB.
    pub fn with_leader_size(mut self, size: i64) -> StoreInfo {
        self.leader_size = size;
        self
    }

    /// This store holding `size` MiB.
    pub fn with_region_size(mut self, size: i64) -> StoreInfo {
        self.region_size = size;
        self
    }

    /// This store with leader and region weights.
    pub fn with_weights(mut self, leader_weight: f64, region_weight: f64) -> StoreInfo {
        self.leader_weight = leader_weight;
        self.region_weight = region_weight;
        self
    }
}

/// The figures of a store derived from its regions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStatus {
    /// Regions it leads.
    pub leader_count: usize,
    /// Regions it holds.
    pub region_count: usize,
    /// Its pending peers.
    pub pending_peer_count: usize,
    /// Total size of the regions it leads.
    pub leader_size: i64,
    /// Total size of the regions it holds.
    pub region_size: i64,
}

/// Every known store, by id.
#[derive(Clone, Debug, Default)]
pub struct StoresInfo {
    stores: BTreeMap<u64, StoreInfo>,
}

impl StoresInfo {
    /// No stores.
    pub fn new() -> StoresInfo {
        StoresInfo::default()
    }

    /// The store with id `id`.
    pub fn get_store(&self, id: u64) -> Option<&StoreInfo> {
        self.stores.get(&id)
    }

    /// Puts `store`, replacing the one with the same id.
    pub fn set_store(&mut self, store: StoreInfo) {
        self.stores.insert(store.id(), store);
    }

    /// Applies `f` to store `id` (nothing if unknown).
    pub fn update(&mut self, id: u64, f: impl FnOnce(StoreInfo) -> StoreInfo) {
        if let Some(store) = self.stores.remove(&id) {
            self.stores.insert(id, f(store));
        }
    }

    /// Blocks store `id` from balancing; an error if unknown or already blocked.
    pub fn block_store(&mut self, id: u64) -> Result<()> {
        let store = self.stores.get_mut(&id).ok_or(Error::StoreNotFound(id))?;
        if store.blocked {
            return Err(Error::StoreBlocked(id));
        }
        store.blocked = true;
        Ok(())
    }

    /// Unblocks store `id` (nothing if unknown).
    pub fn unblock_store(&mut self, id: u64) {
        if let Some(store) = self.stores.get_mut(&id) {
            store.blocked = false;
        }
    }

    /// Every store, by id.
    pub fn get_stores(&self) -> Vec<&StoreInfo> {
        self.stores.values().collect()
    }

    /// Every store's meta, by id.
    pub fn get_meta_stores(&self) -> Vec<Store> {
        self.stores.values().map(|s| s.meta.clone()).collect()
    }

    /// Forgets store `id`.
    pub fn delete_store(&mut self, id: u64) -> Option<StoreInfo> {
        self.stores.remove(&id)
    }

    /// The number of stores.
    pub fn store_count(&self) -> usize {
        self.stores.len()
    }

    /// Sets the region-derived figures of store `id` (nothing if unknown).
    pub fn update_store_status(&mut self, id: u64, status: StoreStatus) {
        if let Some(store) = self.stores.get_mut(&id) {
            store.leader_count = status.leader_count;
            store.region_count = status.region_count;
            store.pending_peer_count = status.pending_peer_count;
            store.leader_size = status.leader_size;
            store.region_size = status.region_size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_test_stores(n: u64) -> Vec<StoreInfo> {
        (1..=n)
            .map(|id| {
                StoreInfo::new(Store {
                    id,
                    ..Default::default()
                })
            })
            .collect()
    }

    /// TinyKV's `TestStores` (`scheduler/server/cluster_test.go`).
    #[test]
    fn test_stores() {
        let n = 10;
        let mut cache = StoresInfo::new();
        let stores = new_test_stores(n);
        for (i, store) in stores.iter().enumerate() {
            let id = store.id();
            assert!(cache.get_store(id).is_none());
            assert!(cache.block_store(id).is_err());
            cache.set_store(store.clone());
            assert_eq!(cache.get_store(id), Some(store));
            assert_eq!(cache.store_count(), i + 1);
            assert!(cache.block_store(id).is_ok());
            assert!(cache.get_store(id).unwrap().is_blocked());
            assert!(matches!(cache.block_store(id), Err(Error::StoreBlocked(_))));
            cache.unblock_store(id);
            assert!(!cache.get_store(id).unwrap().is_blocked());
        }
        assert_eq!(cache.store_count(), n as usize);
        for store in cache.get_stores() {
            assert_eq!(store, &stores[store.id() as usize - 1]);
        }
        for meta in cache.get_meta_stores() {
            assert_eq!(&meta, stores[meta.id as usize - 1].meta());
        }
    }

    #[test]
    fn down_time_of_a_silent_store() {
        let now = Instant::now();
        let s = StoreInfo::new(Store {
            id: 1,
            ..Default::default()
        });
        assert_eq!(s.down_time(now), Duration::MAX);
        assert_eq!(s.silent_time(now), Duration::ZERO);
        let s = s.with_first_seen(Some(now));
        let later = now + Duration::from_secs(30);
        assert_eq!(s.silent_time(later), Duration::from_secs(30));
        assert!(s.is_disconnected(later));
        let s = s.with_last_heartbeat(Some(later));
        assert_eq!(
            s.down_time(later + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert!(!s.is_disconnected(later + Duration::from_secs(5)));
        assert!(s.is_unhealthy(later + Duration::from_secs(601)));
    }
}
