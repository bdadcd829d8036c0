//! `RegionsInfo`: every known region, by id and by key range, plus per store the regions it leads,
//! follows and holds a pending peer of, with running size totals (TinyKV's `RegionsInfo` in
//! `scheduler/server/core/region.go`).

use std::collections::{BTreeMap, HashMap};

use proto::metapb::Region;
use rand::RngCore;

use super::region::RegionInfo;
use super::region_tree::RegionTree;

/// The regions of one store in one role, by start key, with their total approximate size.
#[derive(Clone, Debug, Default)]
pub struct RegionSubTree {
    regions: BTreeMap<Vec<u8>, u64>,
    total_size: i64,
}

impl RegionSubTree {
    /// The number of regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The sum of their approximate sizes.
    pub fn total_size(&self) -> i64 {
        self.total_size
    }

    /// Their ids, in key order.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.regions.values().copied()
    }

    /// The id of the region starting at `start_key`.
    pub fn get(&self, start_key: &[u8]) -> Option<u64> {
        self.regions.get(start_key).copied()
    }

    fn insert(&mut self, region: &RegionInfo) {
        self.regions
            .insert(region.start_key().to_vec(), region.id());
        self.total_size += region.approximate_size();
    }

    fn remove(&mut self, region: &RegionInfo) {
        if self.regions.get(region.start_key()) == Some(&region.id()) {
            self.regions.remove(region.start_key());
            self.total_size -= region.approximate_size();
        }
    }
}

/// The role of a store's peer in a region, naming a per-store tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerRole {
    /// The store holds the leader.
    Leader,
    /// The store holds a follower.
    Follower,
    /// The store holds a pending peer (also counted as leader or follower).
    Pending,
}

/// Every known region.
#[derive(Clone, Debug, Default)]
pub struct RegionsInfo {
    tree: RegionTree,
    regions: HashMap<u64, RegionInfo>,
    total_size: i64,
    leaders: HashMap<u64, RegionSubTree>,
    followers: HashMap<u64, RegionSubTree>,
    pending_peers: HashMap<u64, RegionSubTree>,
}

impl RegionsInfo {
    /// No regions.
    pub fn new() -> RegionsInfo {
        RegionsInfo::default()
    }

    /// The region with id `id`.
    pub fn get_region(&self, id: u64) -> Option<&RegionInfo> {
        self.regions.get(&id)
    }

    /// Puts `region`, replacing the region with the same id; removes and returns the other regions
    /// whose ranges it overlaps.
    pub fn set_region(&mut self, region: RegionInfo) -> Vec<RegionInfo> {
        self.remove_region(region.id());
        self.add_region(region)
    }

    /// Adds `region` (which must not be stored yet under its id); removes and returns the regions
    /// whose ranges it overlaps.
    pub fn add_region(&mut self, region: RegionInfo) -> Vec<RegionInfo> {
        let overlapped = self
            .tree
            .insert(region.start_key(), region.end_key(), region.id());
        let removed = overlapped
            .into_iter()
            .filter_map(|id| self.remove_region(id))
            .collect();
        for peer in region.voters() {
            let trees = if region.is_leader(peer) {
                &mut self.leaders
            } else {
                &mut self.followers
            };
            trees.entry(peer.store_id).or_default().insert(&region);
        }
        for peer in region.pending_peers() {
            self.pending_peers
                .entry(peer.store_id)
                .or_default()
                .insert(&region);
        }
        self.total_size += region.approximate_size();
        self.regions.insert(region.id(), region);
        removed
    }

    /// Removes region `id` everywhere; returns it.
    pub fn remove_region(&mut self, id: u64) -> Option<RegionInfo> {
        let region = self.regions.remove(&id)?;
        self.tree.remove(region.start_key(), id);
        self.total_size -= region.approximate_size();
        for peer in region.peers().iter().chain(region.pending_peers()) {
            for trees in [
                &mut self.leaders,
                &mut self.followers,
                &mut self.pending_peers,
            ] {
                if let Some(t) = trees.get_mut(&peer.store_id) {
                    t.remove(&region);
                }
            }
        }
        Some(region)
    }

    /// The regions (other than `region` itself) whose ranges overlap `region`'s.
    pub fn get_overlaps(&self, region: &RegionInfo) -> Vec<&RegionInfo> {
        self.tree
            .overlaps(region.start_key(), region.end_key())
            .into_iter()
            .filter(|id| *id != region.id())
            .filter_map(|id| self.regions.get(&id))
            .collect()
    }

    /// The region whose range holds `key`.
    pub fn search_region(&self, key: &[u8]) -> Option<&RegionInfo> {
        self.tree.search(key).and_then(|id| self.regions.get(&id))
    }

    /// The region just before (and adjacent to) the one holding `key`.
    pub fn search_prev_region(&self, key: &[u8]) -> Option<&RegionInfo> {
        self.tree
            .search_prev(key)
            .and_then(|id| self.regions.get(&id))
    }

    /// The regions from the one holding `start_key` on, in key order, stopping before the first
    /// that starts at or past `end_key` (empty: no bound) and after `limit` regions (0: no limit).
    pub fn scan_range(&self, start_key: &[u8], end_key: &[u8], limit: usize) -> Vec<&RegionInfo> {
        self.tree
            .scan_from(start_key)
            .filter_map(|id| self.regions.get(&id))
            .take_while(|r| end_key.is_empty() || r.start_key() < end_key)
            .take(if limit == 0 { usize::MAX } else { limit })
            .collect()
    }

    /// Every region, in key order.
    pub fn get_regions(&self) -> Vec<&RegionInfo> {
        self.tree
            .ids()
            .filter_map(|id| self.regions.get(&id))
            .collect()
    }

    /// Every region's meta, in key order.
    pub fn get_meta_regions(&self) -> Vec<Region> {
        self.get_regions()
            .into_iter()
            .map(|r| r.meta().clone())
            .collect()
    }

    /// The number of regions.
    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    /// The regions with a peer on `store_id` (those it leads, then those it follows).
    pub fn get_store_regions(&self, store_id: u64) -> Vec<&RegionInfo> {
        let leaders = self
            .leaders
            .get(&store_id)
            .into_iter()
            .flat_map(|t| t.ids());
        let followers = self
            .followers
            .get(&store_id)
            .into_iter()
            .flat_map(|t| t.ids());
        leaders
            .chain(followers)
            .filter_map(|id| self.regions.get(&id))
            .collect()
    }

    /// The store's tree for `role`, if the store has any region in that role.
    pub fn subtree(&self, store_id: u64, role: PeerRole) -> Option<&RegionSubTree> {
        match role {
            PeerRole::Leader => self.leaders.get(&store_id),
            PeerRole::Follower => self.followers.get(&store_id),
            PeerRole::Pending => self.pending_peers.get(&store_id),
        }
    }

    fn role_len(&self, store_id: u64, role: PeerRole) -> usize {
        self.subtree(store_id, role).map_or(0, RegionSubTree::len)
    }

    fn role_size(&self, store_id: u64, role: PeerRole) -> i64 {
        self.subtree(store_id, role)
            .map_or(0, RegionSubTree::total_size)
    }

    /// The number of regions `store_id` leads.
    pub fn store_leader_count(&self, store_id: u64) -> usize {
        self.role_len(store_id, PeerRole::Leader)
    }

    /// The number of regions `store_id` follows.
    pub fn store_follower_count(&self, store_id: u64) -> usize {
        self.role_len(store_id, PeerRole::Follower)
    }

    /// The number of regions with a peer on `store_id`.
    pub fn store_region_count(&self, store_id: u64) -> usize {
        self.store_leader_count(store_id) + self.store_follower_count(store_id)
    }

    /// The number of regions with a pending peer on `store_id`.
    pub fn store_pending_peer_count(&self, store_id: u64) -> usize {
        self.role_len(store_id, PeerRole::Pending)
    }

    /// The total size of the regions `store_id` leads.
    pub fn store_leader_region_size(&self, store_id: u64) -> i64 {
        self.role_size(store_id, PeerRole::Leader)
    }

    /// The total size of the regions `store_id` follows.
    pub fn store_follower_region_size(&self, store_id: u64) -> i64 {
        self.role_size(store_id, PeerRole::Follower)
    }

    /// The total size of the regions with a peer on `store_id`.
    pub fn store_region_size(&self, store_id: u64) -> i64 {
        self.store_leader_region_size(store_id) + self.store_follower_region_size(store_id)
    }

    /// The region of `store_id`'s tree for `role` that starts where `region` starts.
    pub fn get_in_role(
        &self,
        store_id: u64,
        role: PeerRole,
        region: &RegionInfo,
    ) -> Option<&RegionInfo> {
        self.subtree(store_id, role)?
            .get(region.start_key())
            .and_then(|id| self.regions.get(&id))
    }

    /// The region `store_id` leads that starts where `region` starts.
    pub fn get_leader(&self, store_id: u64, region: &RegionInfo) -> Option<&RegionInfo> {
        self.get_in_role(store_id, PeerRole::Leader, region)
    }

    /// The region `store_id` follows that starts where `region` starts.
    pub fn get_follower(&self, store_id: u64, region: &RegionInfo) -> Option<&RegionInfo> {
        self.get_in_role(store_id, PeerRole::Follower, region)
    }

    /// A random region in `store_id`'s tree for `role` that `keep` accepts.
    pub fn rand_region(
        &self,
        store_id: u64,
        role: PeerRole,
        rng: &mut dyn RngCore,
        mut keep: impl FnMut(&RegionInfo) -> bool,
    ) -> Option<&RegionInfo> {
        let tree = self.subtree(store_id, role)?;
        let candidates: Vec<&RegionInfo> = tree
            .ids()
            .filter_map(|id| self.regions.get(&id))
            .filter(|r| keep(r))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[rand::Rng::random_range(rng, 0..candidates.len())])
    }

    /// Up to `n` distinct random regions of `store_id`'s tree for `role` that `keep` accepts.
    pub fn sample_regions(
        &self,
        store_id: u64,
        role: PeerRole,
        rng: &mut dyn RngCore,
        n: usize,
        mut keep: impl FnMut(&RegionInfo) -> bool,
    ) -> Vec<&RegionInfo> {
        let Some(tree) = self.subtree(store_id, role) else {
            return Vec::new();
        };
        let candidates: Vec<&RegionInfo> = tree
            .ids()
            .filter_map(|id| self.regions.get(&id))
            .filter(|r| keep(r))
            .collect();
        let n = n.min(candidates.len());
        rand::seq::index::sample(rng, candidates.len(), n)
            .into_iter()
            .map(|i| candidates[i])
            .collect()
    }

    /// A random region of the whole key space.
    pub fn rand_any_region(&self, rng: &mut dyn RngCore) -> Option<&RegionInfo> {
        self.tree
            .random(rng, |_| true)
            .and_then(|id| self.regions.get(&id))
    }

    /// The average approximate size of a region (0 when there is none).
    pub fn average_region_size(&self) -> i64 {
        match self.regions.len() {
            0 => 0,
            n => self.total_size / n as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::core::test_util::{check_region, check_regions, new_test_regions};

    /// TinyKV's RegionsInfo `Test` (`scheduler/server/cluster_test.go`).
    #[test]
    fn test() {
        let (n, np) = (10u64, 3usize);
        let mut cache = RegionsInfo::new();
        let mut regions = new_test_regions(n, np as u64);
        let mut rng = StdRng::seed_from_u64(7);

        for i in 0..n {
            let idx = i as usize;
            let region = regions[idx].clone();
            let key = [i as u8];

            assert!(cache.get_region(i).is_none());
            assert!(cache.search_region(&key).is_none());
            check_regions(&cache, &regions[..idx]);

            cache.add_region(region.clone());
            check_region(cache.get_region(i), &region);
            check_region(cache.search_region(&key), &region);
            check_regions(&cache, &regions[..=idx]);
            if i == 0 {
                assert!(cache.search_prev_region(&key).is_none());
            } else {
                check_region(cache.search_prev_region(&key), &regions[idx - 1]);
            }

            // Leader moves to the last peer.
            let new_region = region.clone().with_leader(Some(region.peers()[np - 1]));
            regions[idx] = new_region.clone();
            cache.set_region(new_region.clone());
            check_region(cache.get_region(i), &new_region);
            check_region(cache.search_region(&key), &new_region);
            check_regions(&cache, &regions[..=idx]);

            cache.remove_region(region.id());
            assert!(cache.get_region(i).is_none());
            assert!(cache.search_region(&key).is_none());
            check_regions(&cache, &regions[..idx]);

            // Leader back to the first peer.
            let new_region = region.clone().with_leader(Some(region.peers()[0]));
            regions[idx] = new_region.clone();
            cache.add_region(new_region.clone());
            check_region(cache.get_region(i), &new_region);
            check_regions(&cache, &regions[..=idx]);
            check_region(cache.search_region(&key), &new_region);
        }

        for i in 0..n {
            let r = cache
                .rand_region(i, PeerRole::Leader, &mut rng, RegionInfo::is_healthy)
                .unwrap();
            assert_eq!(r.leader_store_id(), Some(i));
            let r = cache
                .rand_region(i, PeerRole::Follower, &mut rng, RegionInfo::is_healthy)
                .unwrap();
            assert_ne!(r.leader_store_id(), Some(i));
            assert!(r.get_store_peer(i).is_some());
        }

        // A region stretched over its predecessor replaces it.
        let last = regions[n as usize - 1].clone();
        let overlap = last.with_start_key(regions[n as usize - 2].start_key().to_vec());
        cache.add_region(overlap);
        assert!(cache.get_region(n - 2).is_none());
        assert!(cache.get_region(n - 1).is_some());

        // Regions with pending peers are not healthy.
        for i in 0..n {
            for _ in 0..cache.store_leader_count(i) {
                let r = cache
                    .rand_region(i, PeerRole::Leader, &mut rng, RegionInfo::is_healthy)
                    .unwrap()
                    .clone();
                let pending = r.peers().to_vec();
                cache.set_region(r.with_pending_peers(pending));
            }
            assert!(cache
                .rand_region(i, PeerRole::Leader, &mut rng, RegionInfo::is_healthy)
                .is_none());
        }
        for i in 0..n {
            assert!(cache
                .rand_region(i, PeerRole::Follower, &mut rng, RegionInfo::is_healthy)
                .is_none());
        }
    }

    #[test]
    fn subtree_sizes_follow_puts_and_removals() {
        let mut cache = RegionsInfo::new();
        let regions = new_test_regions(3, 3);
        for r in &regions {
            cache.set_region(r.clone().with_approximate_size(10));
        }
        assert_eq!(cache.store_region_size(0), 30);
        assert_eq!(cache.store_leader_region_size(0), 10);
        cache.set_region(regions[0].clone().with_approximate_size(25));
        assert_eq!(cache.store_region_size(0), 45);
        assert_eq!(cache.average_region_size(), 15);
        cache.remove_region(0);
        assert_eq!(cache.store_region_size(0), 20);
        assert_eq!(cache.scan_range(&[], &[], 0).len(), 2);
        assert_eq!(cache.scan_range(&[], &[2], 0).len(), 1);
        assert_eq!(cache.scan_range(&[], &[], 1).len(), 1);
    }
}
