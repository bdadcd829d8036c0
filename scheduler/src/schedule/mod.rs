//! Scheduling machinery (TinyKV's `scheduler/server/schedule`): the options, the view of the
//! cluster schedulers and checkers work on, operators and their controller, store filters and
//! selectors, and the replica checker.

pub mod checker;
pub mod config;
pub mod filter;
pub mod operator;
pub mod operator_controller;
pub mod selector;

use std::time::{Duration, Instant};

use proto::metapb::Peer;

pub use config::ScheduleConfig;

use crate::core::{BasicCluster, RegionInfo, StoreInfo};
use crate::errors::Result;

/// What schedulers, checkers and operator builders see of the cluster (TinyKV's `opt.Cluster`):
/// the model, the options, the current time and an id allocator.
pub trait Cluster {
    /// The stores and regions.
    fn basic(&self) -> &BasicCluster;
    /// The scheduling options.
    fn config(&self) -> &ScheduleConfig;
    /// The current time (all time-dependent decisions use it, never a clock of their own).
    fn now(&self) -> Instant;
    /// A new unique id.
    fn alloc_id(&self) -> Result<u64>;
    /// Whether region `region_id` already has a running operator (schedulers skip those).
    fn has_operator(&self, _region_id: u64) -> bool {
        false
    }

    /// The store with id `id`.
    fn get_store(&self, id: u64) -> Option<&StoreInfo> {
        self.basic().stores.get_store(id)
    }

    /// Every store, by id.
    fn get_stores(&self) -> Vec<&StoreInfo> {
        self.basic().stores.get_stores()
    }

    /// The region with id `id`.
    fn get_region(&self, id: u64) -> Option<&RegionInfo> {
        self.basic().regions.get_region(id)
    }

    /// The known stores holding a peer of `region`.
    fn get_region_stores(&self, region: &RegionInfo) -> Vec<&StoreInfo> {
        self.basic().get_region_stores(region)
    }

    /// The known stores holding a follower of `region`.
    fn get_follower_stores(&self, region: &RegionInfo) -> Vec<&StoreInfo> {
        self.basic().get_follower_stores(region)
    }

    /// The number of replicas a region should have.
    fn max_replicas(&self) -> usize {
        self.config().max_replicas
    }

    /// How long a store may be silent before it is down.
    fn max_store_down_time(&self) -> Duration {
        self.config().max_store_down_time
    }

    /// A new peer (fresh id) on store `store_id`.
    fn alloc_peer(&self, store_id: u64) -> Result<Peer> {
        Ok(Peer {
            id: self.alloc_id()?,
            store_id,
        })
    }
}

#[cfg(test)]
pub(crate) mod mock;
#[cfg(test)]
pub(crate) mod test_util;
