//! The scheduler's model of the cluster (TinyKV's `scheduler/server/core`): regions in a range
//! tree and per-store trees, stores with their statistics, and the two together.

mod basic_cluster;
mod region;
mod region_tree;
mod regions;
mod store;

pub use basic_cluster::BasicCluster;
pub use region::{RegionInfo, EMPTY_REGION_APPROXIMATE_SIZE};
pub use region_tree::RegionTree;
pub use regions::{PeerRole, RegionSubTree, RegionsInfo};
pub use store::{
    StoreInfo, StoreStatus, StoresInfo, STORE_DISCONNECT_DURATION, STORE_UNHEALTHY_DURATION,
};

#[cfg(test)]
pub(crate) mod test_util;
