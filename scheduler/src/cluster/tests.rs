//! Tests of `RaftCluster` (TinyKV's `scheduler/server/cluster_test.go` and
//! `cluster_worker_test.go`, plus the tick, the outbox and operator dispatch).

use proto::eraftpb::ConfChangeType;
use proto::metapb::{Peer, RegionEpoch};
use rand::{Rng, SeedableRng};

use super::*;
use crate::core::test_util::{
    check_region, check_regions, merge_regions, new_test_region_info, new_test_regions,
    new_test_stores, split_regions,
};

fn new_cluster() -> (RaftCluster, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let cluster = RaftCluster::new(
        1,
        ScheduleConfig::default(),
        Arc::new(MemoryIdAllocator::new(1000)),
        clock.clone(),
    );
    (cluster, clock)
}

/// Stores 1..=3 and the three test regions, heartbeated one by one (TinyKV's
/// `setUpTestCluster`).
fn set_up_test_cluster() -> (RaftCluster, Vec<RegionInfo>) {
    let (mut cluster, _) = new_cluster();
    let regions = new_test_regions(3, 3);
    for store in new_test_stores(3) {
        cluster.load_store(store.meta().clone());
    }
    for (i, region) in regions.iter().enumerate() {
        cluster.process_region_heartbeat(region.clone()).unwrap();
        check_regions(&cluster.basic().regions, &regions[..=i]);
    }
    (cluster, regions)
}

fn heartbeat_ok(cluster: &mut RaftCluster, region: &RegionInfo, regions: &[RegionInfo]) {
    cluster.process_region_heartbeat(region.clone()).unwrap();
    check_regions(&cluster.basic().regions, regions);
}

fn heartbeat_stale(cluster: &mut RaftCluster, region: &RegionInfo, regions: &[RegionInfo]) {
    assert!(matches!(
        cluster.process_region_heartbeat(region.clone()),
        Err(Error::StaleRegion { .. })
    ));
    check_regions(&cluster.basic().regions, regions);
}

/// TestRegionNotUpdate3C: heartbeating the three test regions again unchanged saves nothing,
/// reports no epoch change or removal, and leaves the cache as it was.
#[test]
fn test_region_not_update_3c() {
    let (mut cluster, regions) = set_up_test_cluster();
    for region in &regions {
        let change = cluster.process_region_heartbeat(region.clone()).unwrap();
        assert_eq!(change, RegionChange::default());
        check_regions(&cluster.basic().regions, &regions);
    }
}

/// TestRegionUpdateVersion3C: a heartbeat with a region's version bumped is saved and reported as
/// an epoch change; the cache holds exactly the new regions.
#[test]
fn test_region_update_version_3c() {
    let (mut cluster, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        regions[i] = regions[i].clone().with_inc_version();
        let r = regions[i].clone();
        let change = cluster.process_region_heartbeat(r).unwrap();
        assert!(change.saved && change.epoch_changed_or_new);
        check_regions(&cluster.basic().regions, &regions);
    }
}

/// TestRegionWithStaleVersion3C: after a region's version is bumped, its old version (even with
/// conf_ver + 1) is refused as StaleRegion, the cache unchanged.
#[test]
fn test_region_with_stale_version_3c() {
    let (mut cluster, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        let origin = regions[i].clone();
        regions[i] = origin.clone().with_inc_version();
        let r = regions[i].clone();
        heartbeat_ok(&mut cluster, &r, &regions);
        heartbeat_stale(&mut cluster, &origin.with_inc_conf_ver(), &regions);
    }
}

/// TestRegionUpdateVersionAndConfver3C: heartbeats with both version and conf_ver bumped are
/// accepted and replace each region in the cache.
#[test]
fn test_region_update_version_and_confver_3c() {
    let (mut cluster, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        regions[i] = regions[i].clone().with_inc_version().with_inc_conf_ver();
        let r = regions[i].clone();
        heartbeat_ok(&mut cluster, &r, &regions);
    }
}

/// TestRegionWithStaleConfVer3C: after a region's conf_ver is bumped, a heartbeat of its old epoch
/// is refused as StaleRegion, the cache unchanged.
#[test]
fn test_region_with_stale_conf_ver_3c() {
    let (mut cluster, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        let origin = regions[i].clone();
        regions[i] = origin.clone().with_inc_conf_ver();
        let r = regions[i].clone();
        heartbeat_ok(&mut cluster, &r, &regions);
        heartbeat_stale(&mut cluster, &origin, &regions);
    }
}

fn pending_counts(cluster: &RaftCluster) -> Vec<usize> {
    (1..=3)
        .map(|id| cluster.get_store(id).unwrap().pending_peer_count())
        .collect()
}

/// TestRegionAddPendingPeer3C: marking a random peer of each region pending is saved without an
/// epoch change; stores 1 and 2 count their pending peers.
#[test]
fn test_region_add_pending_peer_3c() {
    let (mut cluster, mut regions) = set_up_test_cluster();
    let mut rng = StdRng::seed_from_u64(3);
    let mut expected = [0usize; 3];
    for i in 0..regions.len() {
        let peers = regions[i].peers();
        let pending = peers[rng.random_range(0..peers.len())];
        expected[pending.store_id as usize] += 1;
        regions[i] = regions[i].clone().with_pending_peers(vec![pending]);
        let r = regions[i].clone();
        let change = cluster.process_region_heartbeat(r).unwrap();
        assert!(change.saved && !change.epoch_changed_or_new);
        check_regions(&cluster.basic().regions, &regions);
    }
    // Store 0 is unknown to the cluster; stores 1 and 2 count their pending peers.
    for store in 1..=2u64 {
        assert_eq!(
            cluster.get_store(store).unwrap().pending_peer_count(),
            expected[store as usize]
        );
    }
}

/// TestRegionRemovePendingPeer3C: a region's peer marked pending, then cleared by its next
/// heartbeat; the cache follows both and stores 1..3 end with no pending peer.
#[test]
fn test_region_remove_pending_peer_3c() {
    let (mut cluster, mut regions) = set_up_test_cluster();
    let mut rng = StdRng::seed_from_u64(5);
    for i in 0..regions.len() {
        let peers = regions[i].peers();
        let pending = peers[rng.random_range(0..peers.len())];
        regions[i] = regions[i].clone().with_pending_peers(vec![pending]);
        let r = regions[i].clone();
        heartbeat_ok(&mut cluster, &r, &regions);

        regions[i] = regions[i].clone().with_pending_peers(vec![]);
        let r = regions[i].clone();
        heartbeat_ok(&mut cluster, &r, &regions);
    }
    assert_eq!(pending_counts(&cluster), vec![0, 0, 0]);
}

/// TestRegionRemovePeers3C: heartbeats shrinking each region to its first peer are accepted; the
/// cache's regions and per-store region, leader and follower counts follow.
#[test]
fn test_region_remove_peers_3c() {
    let (mut cluster, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        let first = regions[i].peers()[..1].to_vec();
        regions[i] = regions[i].clone().with_peers(first);
        let r = regions[i].clone();
        heartbeat_ok(&mut cluster, &r, &regions);
    }
}

/// TestRegionAddBackPeers3C: each region reported with only its first peer, then with all its peers
/// again; the cache and per-store counts follow both heartbeats.
#[test]
fn test_region_add_back_peers_3c() {
    let (mut cluster, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        let origin = regions[i].clone();
        regions[i] = origin.clone().with_peers(origin.peers()[..1].to_vec());
        let r = regions[i].clone();
        heartbeat_ok(&mut cluster, &r, &regions);

        regions[i] = origin.clone();
        heartbeat_ok(&mut cluster, &origin, &regions);
    }
}

/// TestRegionChangeLeader3C: heartbeats moving each region's leader to its second peer are
/// accepted; the cache's per-store leader and follower trees and counts follow.
#[test]
fn test_region_change_leader_3c() {
    let (mut cluster, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        let second = regions[i].peers()[1];
        regions[i] = regions[i].clone().with_leader(Some(second));
        let r = regions[i].clone();
        heartbeat_ok(&mut cluster, &r, &regions);
    }
}

/// TestRegionChangeApproximateSize3C: heartbeats setting each region's approximate size to 144 are
/// taken; store 1, with a peer of all three, has region size 3 x 144.
#[test]
fn test_region_change_approximate_size_3c() {
    let (mut cluster, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        regions[i] = regions[i].clone().with_approximate_size(144);
        let r = regions[i].clone();
        heartbeat_ok(&mut cluster, &r, &regions);
    }
    assert_eq!(cluster.get_store(1).unwrap().region_size(), 3 * 144);
}

/// TestRegionCounts3C: each store's region count in the cache equals the number of peers it holds
/// of the three test regions.
#[test]
fn test_region_counts_3c() {
    let (cluster, regions) = set_up_test_cluster();
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for region in &regions {
        for peer in region.peers() {
            *counts.entry(peer.store_id).or_default() += 1;
        }
    }
    for (id, count) in counts {
        assert_eq!(cluster.basic().regions.store_region_count(id), count);
    }
}

/// TestRegionGetRegions3C: `get_regions` and `get_meta_regions` return exactly the three
/// heartbeated regions, each as reported.
#[test]
fn test_region_get_regions_3c() {
    let (cluster, regions) = set_up_test_cluster();
    let got = cluster.get_regions();
    assert_eq!(got.len(), regions.len());
    for region in got {
        check_region(Some(region), &regions[region.id() as usize]);
    }
    let metas = cluster.basic().regions.get_meta_regions();
    assert_eq!(metas.len(), regions.len());
    for meta in metas {
        assert_eq!(&meta, regions[meta.id as usize].meta());
    }
}

/// TestRegionGetStores3C: a region's stores are exactly stores holding a peer of it (at least one),
/// and its follower stores hold only non-leader peers.
#[test]
fn test_region_get_stores_3c() {
    let (cluster, regions) = set_up_test_cluster();
    for region in &regions {
        let stores = cluster.basic().get_region_stores(region);
        assert!(!stores.is_empty());
        for store in stores {
            assert!(region.get_store_peer(store.id()).is_some());
        }
        let followers = cluster.basic().get_follower_stores(region);
        assert!(!followers.is_empty());
        for store in followers {
            let peer = region.get_store_peer(store.id()).unwrap();
            assert_ne!(Some(peer.id), region.leader().map(|l| l.id));
        }
    }
}

/// TestRegionGetStoresInfo3C: each store's leader and region counts and sizes agree with the region
/// cache's; only stores 1 and 2 (of 1..3) hold peers.
#[test]
fn test_region_get_stores_info_3c() {
    let (cluster, _) = set_up_test_cluster();
    let regions = &cluster.basic().regions;
    for store in cluster.get_stores() {
        let id = store.id();
        assert_eq!(store.leader_count(), regions.store_leader_count(id));
        assert_eq!(store.region_count(), regions.store_region_count(id));
        assert_eq!(store.leader_size(), regions.store_leader_region_size(id));
        assert_eq!(store.region_size(), regions.store_region_size(id));
        // Stores 1 and 2 hold peers (store 0, never put, holds the rest).
        assert_eq!(store.region_count() > 0, id < 3);
    }
}

/// Heartbeats `regions` one by one, checking each is found by id, start key and last key; then
/// checks them all, and that keys past each one's end belong to others (TinyKV's
/// `heartbeatRegions`).
fn heartbeat_regions(cluster: &mut RaftCluster, regions: &[RegionInfo]) {
    let check = |cluster: &RaftCluster, r: &RegionInfo| {
        check_region(cluster.get_region(r.id()), r);
        check_region(cluster.get_region_by_key(r.start_key()), r);
        if let Some(&end) = r.end_key().first() {
            check_region(cluster.get_region_by_key(&[end - 1]), r);
        }
    };
    for r in regions {
        cluster.process_region_heartbeat(r.clone()).unwrap();
        check(cluster, r);
    }
    for r in regions {
        check(cluster, r);
        if let Some(&end) = r.end_key().first() {
            let other = cluster
                .get_region_by_key(&[end.wrapping_add(1)])
                .map(RegionInfo::id);
            assert_ne!(other, Some(r.id()));
        }
    }
}

/// TestHeartbeatSplit3C: region 1 splits at `m` (the new left region 2 reports first, evicting 1),
/// then at `q` (1 reports first); each range is found only once its region has reported.
#[test]
fn test_heartbeat_split_3c() {
    let (mut cluster, _) = new_cluster();
    let epoch = Some(RegionEpoch {
        version: 1,
        conf_ver: 1,
    });

    // 1: [nil, nil)
    let mut region1 = RegionInfo::new(
        Region {
            id: 1,
            region_epoch: epoch,
            ..Default::default()
        },
        None,
    );
    cluster.process_region_heartbeat(region1.clone()).unwrap();
    check_region(cluster.get_region_by_key(b"foo"), &region1);

    // Split 1 into 2: [nil, m) and 1: [m, nil); 2 reports first.
    region1 = region1.with_start_key(b"m".to_vec()).with_inc_version();
    let region2 = RegionInfo::new(
        Region {
            id: 2,
            end_key: b"m".to_vec(),
            region_epoch: epoch,
            ..Default::default()
        },
        None,
    );
    let change = cluster.process_region_heartbeat(region2.clone()).unwrap();
    assert_eq!(change.removed, vec![1]);
    check_region(cluster.get_region_by_key(b"a"), &region2);
    assert!(
        cluster.get_region_by_key(b"z").is_none(),
        "[m, nil) is missing before 1 reports"
    );

    cluster.process_region_heartbeat(region1.clone()).unwrap();
    check_region(cluster.get_region_by_key(b"z"), &region1);

    // Split 1 into 3: [m, q) and 1: [q, nil); 1 reports first.
    region1 = region1.with_start_key(b"q".to_vec()).with_inc_version();
    let region3 = RegionInfo::new(
        Region {
            id: 3,
            start_key: b"m".to_vec(),
            end_key: b"q".to_vec(),
            region_epoch: epoch,
            ..Default::default()
        },
        None,
    );
    cluster.process_region_heartbeat(region1.clone()).unwrap();
    check_region(cluster.get_region_by_key(b"z"), &region1);
    check_region(cluster.get_region_by_key(b"a"), &region2);
    assert!(
        cluster.get_region_by_key(b"n").is_none(),
        "[m, q) is missing before 3 reports"
    );
    cluster.process_region_heartbeat(region3.clone()).unwrap();
    check_region(cluster.get_region_by_key(b"n"), &region3);
}

/// TestRegionSplitAndMerge3C: 7 rounds splitting every region in two, 7 merging pairs, 14 mixed,
/// each heartbeated; every region is found by id, start key and last key.
#[test]
fn test_region_split_and_merge_3c() {
    let (mut cluster, _) = new_cluster();
    let mut regions = vec![new_test_region_info(&[], &[])];
    // A byte would overflow past 7 rounds.
    let n = 7;
    for _ in 0..n {
        regions = split_regions(&regions);
        heartbeat_regions(&mut cluster, &regions);
    }
    for _ in 0..n {
        regions = merge_regions(&regions);
        heartbeat_regions(&mut cluster, &regions);
    }
    for i in 0..n * 2 {
        regions = if (i + 1) % 3 == 0 {
            merge_regions(&regions)
        } else {
            split_regions(&regions)
        };
        heartbeat_regions(&mut cluster, &regions);
    }
}

#[test]
fn a_new_region_older_than_a_region_it_overlaps_is_stale() {
    let (mut cluster, _) = new_cluster();
    let epoch = |version, conf_ver| Some(RegionEpoch { version, conf_ver });
    let whole = RegionInfo::new(
        Region {
            id: 1,
            region_epoch: epoch(3, 3),
            ..Default::default()
        },
        None,
    );
    cluster.process_region_heartbeat(whole.clone()).unwrap();
    for (version, conf_ver) in [(2, 3), (3, 2)] {
        let part = Region {
            id: 2,
            end_key: b"m".to_vec(),
            region_epoch: epoch(version, conf_ver),
            ..Default::default()
        };
        let err = cluster
            .process_region_heartbeat(RegionInfo::new(part, None))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::StaleRegion {
                    region_id: 2,
                    known_id: 1,
                    ..
                }
            ),
            "{err}"
        );
        check_region(cluster.get_region(1), &whole);
        assert!(cluster.get_region(2).is_none());
    }
    let part = Region {
        id: 2,
        end_key: b"m".to_vec(),
        region_epoch: epoch(3, 3),
        ..Default::default()
    };
    let change = cluster
        .process_region_heartbeat(RegionInfo::new(part, None))
        .unwrap();
    assert_eq!(
        change,
        RegionChange {
            saved: true,
            epoch_changed_or_new: true,
            removed: vec![1]
        }
    );
    // A region without an epoch counts as {0, 0}.
    let none = Region {
        id: 3,
        start_key: b"a".to_vec(),
        end_key: b"b".to_vec(),
        ..Default::default()
    };
    assert!(cluster
        .process_region_heartbeat(RegionInfo::new(none, None))
        .is_err());
}

/// TinyKV's `TestStoreHeartbeat`.
#[test]
fn test_store_heartbeat() {
    let (mut cluster, _) = new_cluster();
    let n = 3;
    let stores = new_test_stores(n);
    for region in new_test_regions(n, 3) {
        cluster.core.put_region(region);
    }
    assert_eq!(cluster.basic().regions.region_count(), n as usize);
    for (i, store) in stores.iter().enumerate() {
        let stats = StoreStats {
            store_id: store.id(),
            capacity: 100,
            available: 50,
            region_count: 1,
            ..Default::default()
        };
        assert!(matches!(
            cluster.handle_store_heartbeat(stats.clone()),
            Err(Error::StoreNotFound(_))
        ));
        let meta = Store {
            address: format!("127.0.0.1:{}", store.id()),
            ..store.meta().clone()
        };
        cluster.put_store(meta).unwrap();
        assert_eq!(cluster.get_stores().len(), i + 1);
        assert!(cluster
            .get_store(store.id())
            .unwrap()
            .last_heartbeat()
            .is_none());
        cluster.handle_store_heartbeat(stats.clone()).unwrap();
        let s = cluster.get_store(store.id()).unwrap();
        assert!(s.last_heartbeat().is_some());
        assert_eq!(s.stats(), &stats);
    }
    // Stores put after their regions still get their region counts.
    assert_eq!(
        cluster.get_store(1).unwrap().region_count(),
        cluster.basic().regions.store_region_count(1)
    );
    assert_eq!(cluster.get_stores().len(), n as usize);
}

/// TinyKV's `TestCheckStaleRegion`.
#[test]
fn test_check_stale_region() {
    let origin = new_test_region_info(&[], &[]).meta().clone();
    let mut region = origin.clone();
    assert!(check_stale_region(&region, &origin).is_ok());
    assert!(check_stale_region(&origin, &region).is_ok());

    let epoch = |r: &mut Region| *r.region_epoch.get_or_insert_with(RegionEpoch::default);
    region.region_epoch = Some(RegionEpoch {
        version: epoch(&mut region).version + 1,
        ..epoch(&mut region)
    });
    assert!(check_stale_region(&origin, &region).is_ok());
    assert!(check_stale_region(&region, &origin).is_err());

    region.region_epoch = Some(RegionEpoch {
        conf_ver: epoch(&mut region).conf_ver + 1,
        ..epoch(&mut region)
    });
    assert!(check_stale_region(&origin, &region).is_ok());
    assert!(check_stale_region(&region, &origin).is_err());

    region.region_epoch = Some(RegionEpoch {
        version: epoch(&mut region).version - 1,
        ..epoch(&mut region)
    });
    assert!(check_stale_region(&origin, &region).is_ok());
    assert!(check_stale_region(&region, &origin).is_err());
}

/// TinyKV's `TestReportSplit`.
#[test]
fn test_report_split() {
    let left = Region {
        id: 1,
        start_key: b"a".to_vec(),
        end_key: b"b".to_vec(),
        ..Default::default()
    };
    let right = Region {
        id: 2,
        start_key: b"b".to_vec(),
        end_key: b"c".to_vec(),
        ..Default::default()
    };
    assert!(check_split_region(&left, &right).is_ok());
    assert!(matches!(
        check_split_region(&right, &left),
        Err(Error::InvalidSplit(_))
    ));
}

fn one_peer_region(
    id: u64,
    start: &[u8],
    end: &[u8],
    peer: Peer,
    epoch: RegionEpoch,
) -> RegionInfo {
    let meta = Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(epoch),
        peers: vec![peer],
    };
    RegionInfo::new(meta, Some(peer))
}

/// TinyKV's `TestValidRequestRegion` and `TestAskSplit`.
#[test]
fn test_ask_split() {
    let (mut cluster, _) = new_cluster();
    let peer = Peer { id: 1, store_id: 1 };
    let r1 = one_peer_region(
        1,
        b"",
        b"a",
        peer,
        RegionEpoch {
            conf_ver: 2,
            version: 2,
        },
    );
    cluster.handle_region_heartbeat(r1.clone()).unwrap();

    let r2 = Region {
        id: 2,
        start_key: b"a".to_vec(),
        end_key: b"b".to_vec(),
        ..Default::default()
    };
    assert!(matches!(
        cluster.ask_split(&r2),
        Err(Error::RegionNotFound(_))
    ));
    let with_epoch = |conf_ver, version| Region {
        id: 1,
        end_key: b"a".to_vec(),
        region_epoch: Some(RegionEpoch { conf_ver, version }),
        peers: r1.peers().to_vec(),
        ..Default::default()
    };
    assert!(cluster.ask_split(&with_epoch(1, 2)).is_err());
    assert!(cluster.ask_split(&with_epoch(2, 1)).is_err());
    let a = cluster.ask_split(&with_epoch(2, 2)).unwrap();
    let b = cluster.ask_split(r1.meta()).unwrap();
    assert_eq!(a.new_peer_ids.len(), 1);
    assert_ne!(a.new_region_id, b.new_region_id);
    assert_ne!(a.new_region_id, a.new_peer_ids[0]);
}

#[test]
fn put_store_refuses_bad_stores() {
    let (mut cluster, _) = new_cluster();
    let store = |id: u64, addr: &str| Store {
        id,
        address: addr.to_string(),
        ..Default::default()
    };
    assert!(matches!(
        cluster.put_store(store(0, "a")),
        Err(Error::InvalidStoreId)
    ));
    cluster.put_store(store(1, "a")).unwrap();
    cluster.put_store(store(1, "a")).unwrap();
    assert!(matches!(
        cluster.put_store(store(2, "a")),
        Err(Error::DuplicatedAddress { other: 1, .. })
    ));
    cluster.remove_store(1).unwrap();
    assert!(cluster.get_store(1).unwrap().is_offline());
    assert!(
        cluster.put_store(store(2, "a")).is_err(),
        "an offline store keeps its address"
    );
    cluster.bury_store(1, false).unwrap();
    cluster.put_store(store(2, "a")).unwrap();
    cluster.put_store(store(3, "b")).unwrap();
    assert!(matches!(
        cluster.put_store(store(1, "c")),
        Err(Error::StoreTombstone(1))
    ));
    let stats = StoreStats {
        store_id: 1,
        ..Default::default()
    };
    assert!(matches!(
        cluster.handle_store_heartbeat(stats),
        Err(Error::StoreTombstone(1))
    ));
    assert!(matches!(
        cluster.remove_store(1),
        Err(Error::StoreTombstone(1))
    ));
    assert!(matches!(
        cluster.bury_store(3, false),
        Err(Error::StoreStillUp(3))
    ));
    cluster.bury_store(3, true).unwrap();
    // Moving an existing store to a new address.
    cluster.put_store(store(2, "z")).unwrap();
    assert_eq!(cluster.get_store(2).unwrap().address(), "z");
}

#[test]
fn handle_region_heartbeat_refuses_a_region_without_peers() {
    let (mut cluster, _) = new_cluster();
    let r = RegionInfo::new(
        Region {
            id: 4,
            ..Default::default()
        },
        None,
    );
    assert!(matches!(
        cluster.handle_region_heartbeat(r),
        Err(Error::ZeroPeers(4))
    ));
    assert!(cluster.get_region(4).is_none());
}

fn heartbeat_stores(cluster: &mut RaftCluster, ids: &[u64]) {
    for &id in ids {
        let stats = StoreStats {
            store_id: id,
            capacity: 1000 << 20,
            available: 1000 << 20,
            ..Default::default()
        };
        cluster.handle_store_heartbeat(stats).unwrap();
    }
}

/// A one-peer region on store 1 in a 3-store cluster gets peers added by the replica checker,
/// the commands going to store 1, re-sent on heartbeats until done.
#[test]
fn tick_makes_up_replicas_and_operators_finish_through_heartbeats() {
    let (mut cluster, clock) = new_cluster();
    for id in 1..=3 {
        cluster
            .put_store(Store {
                id,
                address: format!("s{id}"),
                ..Default::default()
            })
            .unwrap();
    }
    heartbeat_stores(&mut cluster, &[1, 2, 3]);
    let leader = Peer {
        id: 10,
        store_id: 1,
    };
    let mut region = one_peer_region(
        9,
        b"",
        b"",
        leader,
        RegionEpoch {
            conf_ver: 1,
            version: 1,
        },
    );
    let change = cluster.handle_region_heartbeat(region.clone()).unwrap();
    assert!(change.saved && change.epoch_changed_or_new);

    cluster.tick();
    let op = cluster
        .get_operator(9)
        .expect("a make-up-replica operator")
        .clone();
    assert_eq!(op.desc(), "make-up-replica");
    let msgs = cluster.take_messages();
    assert_eq!(msgs.len(), 1);
    let (store, msg) = &msgs[0];
    assert_eq!(*store, 1);
    assert_eq!(msg.region_id, 9);
    assert_eq!(msg.target_peer.as_ref(), Some(&leader));
    let cp = msg.change_peer.unwrap();
    assert_eq!(cp.change_type(), ConfChangeType::AddNode);
    let new_peer = cp.peer.unwrap();
    assert!(new_peer.store_id == 2 || new_peer.store_id == 3);

    // The heartbeat does not show it yet: re-sent.
    cluster.handle_region_heartbeat(region.clone()).unwrap();
    assert_eq!(cluster.take_messages().len(), 1);
    // Added, still pending: not re-sent, still running.
    region = region.with_added_peer(new_peer).with_inc_conf_ver();
    cluster
        .handle_region_heartbeat(region.clone().with_pending_peers(vec![new_peer]))
        .unwrap();
    assert!(cluster.take_messages().is_empty());
    assert_eq!(
        cluster.get_operator_status(9).unwrap().1,
        OperatorStatus::Running
    );
    // Caught up: done.
    cluster.handle_region_heartbeat(region.clone()).unwrap();
    assert!(cluster.get_operator(9).is_none());
    assert_eq!(
        cluster.get_operator_status(9).unwrap().1,
        OperatorStatus::Success
    );

    // The next patrol adds the third replica.
    clock.advance(cluster.config().patrol_region_interval);
    cluster.tick();
    let op = cluster
        .get_operator(9)
        .expect("a second make-up-replica operator");
    assert!(
        matches!(op.step(0), Some(crate::schedule::operator::OpStep::AddPeer { to_store, .. })
        if to_store != 1 && to_store != new_peer.store_id)
    );
}

#[test]
fn an_operator_is_cancelled_when_the_epoch_moves_past_it_and_times_out() {
    let (mut cluster, clock) = new_cluster();
    for id in 1..=3 {
        cluster
            .put_store(Store {
                id,
                address: format!("s{id}"),
                ..Default::default()
            })
            .unwrap();
    }
    heartbeat_stores(&mut cluster, &[1, 2, 3]);
    let region = one_peer_region(
        9,
        b"",
        b"",
        Peer {
            id: 10,
            store_id: 1,
        },
        RegionEpoch {
            conf_ver: 1,
            version: 1,
        },
    );
    cluster.handle_region_heartbeat(region.clone()).unwrap();
    cluster.tick();
    assert!(cluster.get_operator(9).is_some());
    // Someone else added a peer on store 4: the conf version moved without the operator's step.
    let other = region
        .clone()
        .with_added_peer(Peer {
            id: 99,
            store_id: 4,
        })
        .with_inc_conf_ver();
    cluster.handle_region_heartbeat(other.clone()).unwrap();
    assert_eq!(
        cluster.get_operator_status(9).unwrap().1,
        OperatorStatus::Cancel
    );

    // A new operator that never completes times out after 10 minutes.
    clock.advance(Duration::from_secs(1));
    cluster.tick();
    assert!(cluster.get_operator(9).is_some());
    clock.advance(Duration::from_secs(601));
    // No new replica operator in the same tick, so the record stays visible.
    let mut cfg = cluster.config().clone();
    cfg.replica_schedule_limit = 0;
    cluster.set_config(cfg);
    cluster.tick();
    assert!(cluster.get_operator(9).is_none());
    assert_eq!(
        cluster.get_operator_status(9).unwrap().1,
        OperatorStatus::Timeout
    );
}

#[test]
fn schedulers_wait_for_heartbeats_of_loaded_regions() {
    let (mut cluster, clock) = new_cluster();
    for id in 1..=3 {
        cluster
            .put_store(Store {
                id,
                address: format!("s{id}"),
                ..Default::default()
            })
            .unwrap();
    }
    heartbeat_stores(&mut cluster, &[1, 2, 3]);
    let region = one_peer_region(
        9,
        b"",
        b"",
        Peer {
            id: 10,
            store_id: 1,
        },
        RegionEpoch {
            conf_ver: 1,
            version: 1,
        },
    );
    cluster.load_region(region.meta().clone());
    cluster.tick();
    assert!(cluster.get_operator(9).is_none(), "nothing reported yet");
    // The timeout lets them run anyway.
    clock.advance(COLLECT_TIMEOUT + Duration::from_secs(1));
    heartbeat_stores(&mut cluster, &[1, 2, 3]);
    cluster.tick();
    assert!(cluster.get_operator(9).is_some());
    // The loaded region had no leader: the command could not be addressed.
    assert!(cluster.take_messages().is_empty());
}

#[test]
fn balance_region_runs_on_tick_and_backs_off() {
    let (mut cluster, clock) = new_cluster();
    cluster.set_max_replicas(1);
    for id in 1..=2 {
        cluster
            .put_store(Store {
                id,
                address: format!("s{id}"),
                ..Default::default()
            })
            .unwrap();
    }
    heartbeat_stores(&mut cluster, &[1, 2]);
    for i in 0..4u8 {
        let peer = Peer {
            id: 100 + u64::from(i),
            store_id: 1,
        };
        let mut r = one_peer_region(
            10 + u64::from(i),
            &[i],
            &[i + 1],
            peer,
            RegionEpoch {
                conf_ver: 1,
                version: 1,
            },
        );
        r = r.with_approximate_size(10);
        cluster.handle_region_heartbeat(r).unwrap();
    }
    assert_eq!(cluster.get_store(1).unwrap().region_size(), 40);
    cluster.tick();
    assert_eq!(
        cluster.operator_count(OpKind::REGION),
        1,
        "one region moves 1 -> 2"
    );
    let msgs = cluster.take_messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].0, 1);
    // Still due only after the minimum interval; then 40 - 0 > 20 again for another region.
    cluster.tick();
    assert_eq!(cluster.operator_count(OpKind::REGION), 1);
    clock.advance(Duration::from_millis(10));
    cluster.tick();
    assert_eq!(cluster.operator_count(OpKind::REGION), 2);
}

#[test]
fn raft_cluster_can_move_between_threads() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<RaftCluster>();
}

/// A balance move whose target store dies once its peer is added (the peer stays pending) gives
/// way to the replica checker's removal of that dead peer (High priority) at the next patrol,
/// instead of holding the region at a dead replica until the move times out.
#[test]
fn a_move_to_a_store_that_died_gives_way_to_removing_its_dead_peer() {
    use crate::schedule::operator::OpStep;
    let clock = Arc::new(ManualClock::new());
    let cfg = ScheduleConfig {
        max_store_down_time: Duration::from_secs(3),
        ..Default::default()
    };
    let mut cluster = RaftCluster::new(
        1,
        cfg,
        Arc::new(MemoryIdAllocator::new(1000)),
        clock.clone(),
    );
    for id in 1..=4 {
        cluster
            .put_store(Store {
                id,
                address: format!("s{id}"),
                ..Default::default()
            })
            .unwrap();
    }
    heartbeat_stores(&mut cluster, &[1, 2, 3, 4]);
    let peers: Vec<Peer> = (1..=3)
        .map(|s| Peer {
            id: 10 + s,
            store_id: s,
        })
        .collect();
    let epoch = RegionEpoch {
        conf_ver: 3,
        version: 1,
    };
    let meta = Region {
        id: 9,
        start_key: vec![],
        end_key: vec![],
        region_epoch: Some(epoch),
        peers: peers.clone(),
    };
    let region = RegionInfo::new(meta, Some(peers[0]));
    cluster.handle_region_heartbeat(region.clone()).unwrap();
    let added = Peer {
        id: 20,
        store_id: 4,
    };
    let op = Operator::new(
        "balance-region",
        "mv peer: store 3 to 4",
        9,
        epoch,
        OpKind::REGION | OpKind::BALANCE,
        vec![
            OpStep::AddPeer {
                to_store: 4,
                peer_id: added.id,
            },
            OpStep::RemovePeer { from_store: 3 },
        ],
    );
    let now = clock.now();
    assert!(cluster
        .ops
        .add_operator(op, cluster.core.regions.get_region(9), now));
    // The peer on store 4 is added but never catches up: store 4 died.
    let region = region.with_added_peer(added).with_inc_conf_ver();
    cluster
        .handle_region_heartbeat(region.clone().with_pending_peers(vec![added]))
        .unwrap();
    cluster.take_messages();
    assert_eq!(cluster.get_operator(9).unwrap().desc(), "balance-region");

    // Store 4 stays silent past max-store-down-time; the others heartbeat.
    clock.advance(Duration::from_secs(4));
    heartbeat_stores(&mut cluster, &[1, 2, 3]);
    cluster.tick();
    let op = cluster
        .get_operator(9)
        .expect("the dead peer's removal took over");
    assert_eq!(op.desc(), "remove-extra-down-replica");
    assert_eq!(op.step(0), Some(OpStep::RemovePeer { from_store: 4 }));
    assert_eq!(
        cluster.get_operator_status(9).map(|(_, s)| s),
        Some(OperatorStatus::Running)
    );
    let msgs = cluster.take_messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let cp = msgs[0].1.change_peer.unwrap();
    assert_eq!(cp.change_type(), ConfChangeType::RemoveNode);
    assert_eq!(cp.peer, Some(added));
}
