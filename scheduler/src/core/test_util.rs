//! Test fixtures of the model (TinyKV's `scheduler/server/core/test_util.go` and the helpers of
//! `scheduler/server/cluster_test.go`): test stores and regions, split and merge rounds, and the
//! checks that a `RegionsInfo` holds exactly a given set of regions.

use std::collections::HashMap;

use proto::metapb::{Peer, Region, RegionEpoch, Store};

use super::{PeerRole, RegionInfo, RegionsInfo, StoreInfo};

/// Stores 1..=n, no statistics.
pub fn new_test_stores(n: u64) -> Vec<StoreInfo> {
    (1..=n)
        .map(|id| {
            StoreInfo::new(Store {
                id,
                ..Default::default()
            })
        })
        .collect()
}

/// Regions 0..n, region i with `np` peers with ids `i*np + j` on stores `(i + j) % n`, range
/// `[i] .. [i+1]`, epoch {conf_ver 2, version 2}, led by its first peer.
pub fn new_test_regions(n: u64, np: u64) -> Vec<RegionInfo> {
    (0..n)
        .map(|i| {
            let peers: Vec<Peer> = (0..np)
                .map(|j| Peer {
                    id: i * np + j,
                    store_id: (i + j) % n,
                })
                .collect();
            let leader = peers[0];
            let meta = Region {
                id: i,
                start_key: vec![i as u8],
                end_key: vec![i as u8 + 1],
                region_epoch: Some(RegionEpoch {
                    conf_ver: 2,
                    version: 2,
                }),
                peers,
            };
            RegionInfo::new(meta, Some(leader))
        })
        .collect()
}

/// A region with no id, no peer and an empty epoch over `[start, end)`.
pub fn new_test_region_info(start: &[u8], end: &[u8]) -> RegionInfo {
    let meta = Region {
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(RegionEpoch::default()),
        ..Default::default()
    };
    RegionInfo::new(meta, None)
}

/// Splits every region in two at the middle of its one-byte range; the halves get new ids
/// (`id + len`, `id + 2 len`) and version + 1.
pub fn split_regions(regions: &[RegionInfo]) -> Vec<RegionInfo> {
    let n = regions.len() as u64;
    let mut out = Vec::with_capacity(regions.len() * 2);
    for r in regions {
        let start = r.start_key().first().copied().unwrap_or(0);
        let end = r.end_key().first().copied().unwrap_or(u8::MAX);
        let middle = vec![start / 2 + end / 2];
        let mut left = r.clone().with_end_key(middle.clone()).with_inc_version();
        let mut right = r.clone().with_start_key(middle).with_inc_version();
        left = RegionInfo::new(
            Region {
                id: r.id() + n,
                ..left.meta().clone()
            },
            left.leader().cloned(),
        );
        right = RegionInfo::new(
            Region {
                id: r.id() + 2 * n,
                ..right.meta().clone()
            },
            right.leader().cloned(),
        );
        out.push(left);
        out.push(right);
    }
    out
}

/// Merges regions pairwise (a last odd one with itself) into regions with new ids (`left id +
/// len`), no peer, and the larger version + 1.
pub fn merge_regions(regions: &[RegionInfo]) -> Vec<RegionInfo> {
    let n = regions.len() as u64;
    regions
        .chunks(2)
        .map(|pair| {
            let left = &pair[0];
            let right = pair.get(1).unwrap_or(left);
            let mut epoch = if left.version() > right.version() {
                left.epoch()
            } else {
                right.epoch()
            };
            epoch.version += 1;
            let meta = Region {
                id: left.id() + n,
                start_key: left.start_key().to_vec(),
                end_key: right.end_key().to_vec(),
                region_epoch: Some(epoch),
                peers: Vec::new(),
            };
            RegionInfo::new(meta, None)
        })
        .collect()
}

/// Asserts `a` is `b` (TinyKV's `checkRegion`).
pub fn check_region(a: Option<&RegionInfo>, b: &RegionInfo) {
    let a = a.unwrap_or_else(|| panic!("region {} missing", b.id()));
    assert_eq!(a, b);
    assert_eq!(a.meta(), b.meta());
    assert_eq!(a.leader(), b.leader());
    assert_eq!(a.peers(), b.peers());
    assert_eq!(a.pending_peers(), b.pending_peers());
}

/// Asserts `cache` holds exactly `regions` (TinyKV's `checkRegions`): per-store counts, each
/// peer's region in the right per-store tree, and every region and meta.
pub fn check_regions(cache: &RegionsInfo, regions: &[RegionInfo]) {
    let mut region_count: HashMap<u64, usize> = HashMap::new();
    let mut leader_count: HashMap<u64, usize> = HashMap::new();
    let mut follower_count: HashMap<u64, usize> = HashMap::new();
    for region in regions {
        for peer in region.peers() {
            *region_count.entry(peer.store_id).or_default() += 1;
            if region.is_leader(peer) {
                *leader_count.entry(peer.store_id).or_default() += 1;
                check_region(
                    cache.get_in_role(peer.store_id, PeerRole::Leader, region),
                    region,
                );
            } else {
                *follower_count.entry(peer.store_id).or_default() += 1;
                check_region(
                    cache.get_in_role(peer.store_id, PeerRole::Follower, region),
                    region,
                );
            }
        }
    }
    assert_eq!(cache.region_count(), regions.len());
    for (id, count) in region_count {
        assert_eq!(cache.store_region_count(id), count, "regions of store {id}");
    }
    for (id, count) in leader_count {
        assert_eq!(cache.store_leader_count(id), count, "leaders of store {id}");
    }
    for (id, count) in follower_count {
        assert_eq!(
            cache.store_follower_count(id),
            count,
            "followers of store {id}"
        );
    }
    let by_id: HashMap<u64, &RegionInfo> = regions.iter().map(|r| (r.id(), r)).collect();
    for region in cache.get_regions() {
        check_region(Some(region), by_id[&region.id()]);
    }
    for meta in cache.get_meta_regions() {
        assert_eq!(&meta, by_id[&meta.id].meta());
    }
}
