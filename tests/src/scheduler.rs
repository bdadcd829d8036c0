//! The mock scheduler of TinyKV's `kv/test_raftstore/scheduler.go` (`MockSchedulerClient`): it
//! learns regions and their leaders only from region heartbeats, keeps them in a map ordered by
//! start key (plus region id -> start key), validates every reported change of range or
//! membership, and answers each heartbeat with the command of the region's operator (add a peer,
//! remove a peer, transfer the leadership) until the operator's effect is seen.

use std::collections::BTreeMap;
use std::ops::Bound;

use proto::eraftpb::ConfChangeType;
use proto::metapb::{Peer, Region, RegionEpoch};
use proto::schedulerpb::{
    AskSplitResponse, ChangePeer, RegionHeartbeatRequest, RegionHeartbeatResponse, ResponseHeader,
    StoreStats, TransferLeader,
};
use raftstore::util::{is_epoch_stale, region_contains};

/// What the scheduler wants done to one region (TinyKV's `Operator` with its `OpAddPeer`,
/// `OpRemovePeer` and `OpTransferLeader` data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// Add `peer`; `pending` once the peer is in the region but may still need a snapshot.
    AddPeer {
        /// The peer to add.
        peer: Peer,
        /// The peer is in the region; the operator waits until it is no longer pending.
        pending: bool,
    },
    /// Remove `peer`.
    RemovePeer {
        /// The peer to remove.
        peer: Peer,
    },
    /// Make `peer` the leader.
    TransferLeader {
        /// The peer to lead.
        peer: Peer,
    },
}

/// The mock scheduler's state (TinyKV's `MockSchedulerClient` without its stores, which the
/// drivers keep: they deliver each heartbeat's answer to the store of its `target_peer`).
#[derive(Default, Debug)]
pub struct MockScheduler {
    /// Regions by start key (TinyKV's `regionsRange` btree).
    regions: BTreeMap<Vec<u8>, Region>,
    /// Region id -> start key (TinyKV's `regionsKey`).
    region_keys: BTreeMap<u64, Vec<u8>>,
    /// The leader each region last reported.
    leaders: BTreeMap<u64, Peer>,
    /// Peers reported as needing a snapshot, by peer id.
    pending_peers: BTreeMap<u64, Peer>,
    /// At most one operator per region.
    operators: BTreeMap<u64, Operator>,
    /// The next id `alloc_id` returns.
    next_id: u64,
}

/// TinyKV's `engine_util.ExceedEndKey`: `key` is at or past a non-empty `end`.
fn exceed_end_key(key: &[u8], end: &[u8]) -> bool {
    !end.is_empty() && key >= end
}

fn epoch(region: &Region) -> RegionEpoch {
    region.region_epoch.unwrap_or_default()
}

/// The peer of `region` on `store_id` (TinyKV's `FindPeer`), by value.
pub fn find_peer(region: &Region, store_id: u64) -> Option<Peer> {
    raftstore::util::find_peer(region, store_id).copied()
}

/// The peers of `left` whose store has no peer in `right` (TinyKV's `GetDiffPeers`).
fn diff_peers(left: &Region, right: &Region) -> Vec<Peer> {
    left.peers
        .iter()
        .filter(|p| find_peer(right, p.store_id).is_none())
        .copied()
        .collect()
}

/// Panics unless both regions have peers on the same stores (TinyKV's `MustSamePeers`).
fn must_same_peers(left: &Region, right: &Region) {
    if left.peers.len() != right.peers.len() {
        panic!("unmatched peers length");
    }
    for p in &left.peers {
        if find_peer(right, p.store_id).is_none() {
            panic!("not found the peer");
        }
    }
}

impl MockScheduler {
    /// A scheduler that knows the bootstrapped regions; the first id it allocates is `first_id`
    /// (TinyKV's `NewTestCluster(n)` starts the counter at `n + 1`).
    pub fn new(regions: Vec<Region>, first_id: u64) -> Self {
        let mut s = MockScheduler {
            next_id: first_id,
            ..Default::default()
        };
        for r in regions {
            s.add_region(r);
        }
        s
    }

    /// A new unique id (for peers and regions).
    pub fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The stored region containing `key` (TinyKV's `findRegion`).
    fn find_region(&self, key: &[u8]) -> Option<&Region> {
        self.regions
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| region_contains(r, key))
    }

    /// TinyKV's `addRegionLocked`.
    fn add_region(&mut self, region: Region) {
        self.region_keys.insert(region.id, region.start_key.clone());
        self.regions.insert(region.start_key.clone(), region);
    }

    /// TinyKV's `removeRegionLocked`: forgets the id, and the range if it is still this region's.
    fn remove_region(&mut self, region: &Region) {
        self.region_keys.remove(&region.id);
        if self.find_region(&region.start_key).map(|r| r.id) == Some(region.id) {
            self.regions.remove(&region.start_key);
        }
    }

    /// A leader's report (TinyKV's `RegionHeartbeat`): records pending peers and the leader,
    /// checks and applies a change of range (version step) and of membership (conf step), and
    /// answers with the region's operator's command, if any. An `Err` means the heartbeat was
    /// rejected (a stale epoch) and no answer is delivered.
    ///
    /// # Panics
    /// On a membership change TinyKV's mock refuses ("should only one conf change", "should only
    /// one different peer", "should include all peers", "unmatched conf version", "unmatched
    /// version", "unmatched peers length", "not found the peer"), and on a region whose start
    /// key is not below its end key.
    pub fn region_heartbeat(
        &mut self,
        req: &RegionHeartbeatRequest,
    ) -> Result<RegionHeartbeatResponse, String> {
        let region = req.region.clone().unwrap_or_default();
        let region_id = region.id;
        for p in &region.peers {
            self.pending_peers.remove(&p.id);
        }
        for p in &req.pending_peers {
            self.pending_peers.insert(p.id, *p);
        }
        match req.leader {
            Some(l) => self.leaders.insert(region_id, l),
            None => self.leaders.remove(&region_id),
        };
        self.handle_heartbeat_version(&region)?;
        self.handle_heartbeat_conf_version(&region)?;
        let mut resp = RegionHeartbeatResponse {
            header: Some(ResponseHeader {
                cluster_id: 0,
                error: None,
            }),
            region_id,
            region_epoch: region.region_epoch,
            target_peer: req.leader,
            ..Default::default()
        };
        if let Some(mut op) = self.operators.get(&region_id).copied() {
            if self.try_finished(&mut op, &region, req.leader) {
                self.operators.remove(&region_id);
            } else {
                self.operators.insert(region_id, op);
                make_response(&op, &mut resp);
            }
        }
        Ok(resp)
    }

    /// The version step (TinyKV's `handleHeartbeatVersion`): a region whose range changed
    /// replaces the stored regions it overlaps, if its version is newer than each of theirs.
    fn handle_heartbeat_version(&mut self, region: &Region) -> Result<(), String> {
        if exceed_end_key(&region.start_key, &region.end_key) {
            panic!("start key > end key");
        }
        loop {
            let Some(found) = self.find_region(&region.start_key).cloned() else {
                self.add_region(region.clone());
                return Ok(());
            };
            if found.start_key == region.start_key && found.end_key == region.end_key {
                // The same range: only the epoch can differ.
                if is_epoch_stale(&epoch(region), &epoch(&found)) {
                    return Err("epoch is stale".into());
                }
                if epoch(&found).version < epoch(region).version {
                    self.remove_region(&found);
                    self.add_region(region.clone());
                }
                return Ok(());
            }
            if exceed_end_key(&found.start_key, &region.end_key) {
                // No stored range covers [start, end): insert it.
                self.add_region(region.clone());
                return Ok(());
            }
            // They overlap (e.g. [a, c) stored, then [a, b) or [b, c) after a split): the newer
            // version wins, and the loop goes on until nothing else overlaps.
            if epoch(region).version <= epoch(&found).version {
                return Err("epoch is stale".into());
            }
            self.remove_region(&found);
        }
    }

    /// The conf step (TinyKV's `handleHeartbeatConfVersion`): a newer `conf_ver` must be exactly
    /// one added or removed peer, and then replaces the stored region.
    fn handle_heartbeat_conf_version(&mut self, region: &Region) -> Result<(), String> {
        let search = self
            .find_region(&region.start_key)
            .cloned()
            .expect("the version step stored a region at this start key");
        if is_epoch_stale(&epoch(region), &epoch(&search)) {
            return Err("epoch is stale".into());
        }
        let (len, search_len) = (region.peers.len(), search.peers.len());
        if epoch(region).conf_ver > epoch(&search).conf_ver {
            // The store added or removed one peer already, so the two sets differ by exactly one:
            // the larger holds the smaller and one more (TinyKV checks each direction alike).
            if search_len != len {
                let (larger, smaller) = if search_len > len {
                    (&search, region)
                } else {
                    (region, &search)
                };
                if larger.peers.len() - smaller.peers.len() != 1 {
                    panic!("should only one conf change");
                }
                if diff_peers(larger, smaller).len() != 1 {
                    panic!("should only one different peer");
                }
                if !diff_peers(smaller, larger).is_empty() {
                    panic!("should include all peers");
                }
            } else {
                must_same_peers(&search, region);
                if epoch(&search).conf_ver + 1 != epoch(region).conf_ver {
                    panic!("unmatched conf version");
                }
                if epoch(&search).version + 1 != epoch(region).version {
                    panic!("unmatched version");
                }
            }
            if !self.regions.contains_key(&region.start_key) {
                panic!("update inexistent region ");
            }
            self.regions
                .insert(region.start_key.clone(), region.clone());
        } else {
            must_same_peers(&search, region);
        }
        Ok(())
    }

    /// Whether `op` is done (TinyKV's `tryFinished`); an AddPeer turns pending here.
    fn try_finished(&self, op: &mut Operator, region: &Region, leader: Option<Peer>) -> bool {
        match op {
            Operator::AddPeer { peer, pending } => {
                if !*pending {
                    if region.peers.iter().any(|p| p.id == peer.id) {
                        *pending = true;
                    }
                    // Not in the region yet (or just arrived): not finished.
                    false
                } else {
                    !self.pending_peers.contains_key(&peer.id)
                }
            }
            Operator::RemovePeer { peer } => !region.peers.iter().any(|p| p.id == peer.id),
            Operator::TransferLeader { peer } => leader.map_or(0, |l| l.id) == peer.id,
        }
    }

    /// A store's statistics: nothing to do with them.
    pub fn store_heartbeat(&mut self, _stats: &StoreStats) {}

    /// New ids for a split of `region`: a region id and one peer id per peer (TinyKV's
    /// `AskSplit`). Errors "region not found" when no stored region has the id, "epoch is stale"
    /// when the stored epoch is newer than the request's.
    pub fn ask_split(&mut self, region: &Region) -> Result<AskSplitResponse, String> {
        let Some(cur) = self.get_region_by_id(region.id) else {
            return Err("region not found".into());
        };
        if is_epoch_stale(&epoch(region), &epoch(&cur)) {
            return Err("epoch is stale".into());
        }
        let new_region_id = self.alloc_id();
        let new_peer_ids = region.peers.iter().map(|_| self.alloc_id()).collect();
        Ok(AskSplitResponse {
            header: Some(ResponseHeader {
                cluster_id: 0,
                error: None,
            }),
            new_region_id,
            new_peer_ids,
        })
    }

    /// The region holding `key`, and its leader if known.
    pub fn get_region(&self, key: &[u8]) -> Option<(Region, Option<Peer>)> {
        self.find_region(key)
            .map(|r| (r.clone(), self.leaders.get(&r.id).copied()))
    }

    /// A region by id: the stored region at the id's start key, if it still has this id
    /// (TinyKV's `GetRegionByID` would answer the region at that key, whatever its id).
    pub fn get_region_by_id(&self, id: u64) -> Option<Region> {
        let start = self.region_keys.get(&id)?;
        self.find_region(start).filter(|r| r.id == id).cloned()
    }

    /// The leader of a region, if known.
    pub fn leader_of(&self, region_id: u64) -> Option<Peer> {
        self.leaders.get(&region_id).copied()
    }

    /// Every region, in key order.
    pub fn regions(&self) -> Vec<Region> {
        self.regions.values().cloned().collect()
    }

    /// Some stored region with a recorded leader (TinyKV's `getRandomRegion`), chosen by
    /// `random` (the caller's random number, so a simulated run stays deterministic).
    pub fn get_random_region(&self, random: u64) -> Option<Region> {
        let candidates: Vec<Region> = self
            .leaders
            .keys()
            .filter_map(|&id| self.get_region_by_id(id))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[(random % candidates.len() as u64) as usize].clone())
    }

    /// Installs an AddPeer operator on a region, replacing its operator (TinyKV's `AddPeer`).
    pub fn add_peer_operator(&mut self, region_id: u64, peer: Peer) {
        self.operators.insert(
            region_id,
            Operator::AddPeer {
                peer,
                pending: false,
            },
        );
    }

    /// Installs a RemovePeer operator on a region (TinyKV's `RemovePeer`).
    pub fn remove_peer_operator(&mut self, region_id: u64, peer: Peer) {
        self.operators
            .insert(region_id, Operator::RemovePeer { peer });
    }

    /// Installs a TransferLeader operator on a region (TinyKV's `TransferLeader`).
    pub fn transfer_leader_operator(&mut self, region_id: u64, peer: Peer) {
        self.operators
            .insert(region_id, Operator::TransferLeader { peer });
    }

    /// A region's operator, if it has one.
    pub fn operator(&self, region_id: u64) -> Option<Operator> {
        self.operators.get(&region_id).copied()
    }
}

/// Adds `op`'s command to a heartbeat's answer (TinyKV's `makeRegionHeartbeatResponse`).
fn make_response(op: &Operator, resp: &mut RegionHeartbeatResponse) {
    match *op {
        Operator::AddPeer { peer, pending } => {
            if !pending {
                resp.change_peer = Some(ChangePeer {
                    peer: Some(peer),
                    change_type: ConfChangeType::AddNode as i32,
                });
            }
        }
        Operator::RemovePeer { peer } => {
            resp.change_peer = Some(ChangePeer {
                peer: Some(peer),
                change_type: ConfChangeType::RemoveNode as i32,
            });
        }
        Operator::TransferLeader { peer } => {
            resp.transfer_leader = Some(TransferLeader { peer: Some(peer) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(store_id: u64, id: u64) -> Peer {
        Peer { id, store_id }
    }

    fn region(id: u64, range: (&str, &str), epoch: (u64, u64), peers: &[(u64, u64)]) -> Region {
        Region {
            id,
            start_key: range.0.as_bytes().to_vec(),
            end_key: range.1.as_bytes().to_vec(),
            region_epoch: Some(RegionEpoch {
                version: epoch.0,
                conf_ver: epoch.1,
            }),
            peers: peers.iter().map(|&(s, i)| peer(s, i)).collect(),
        }
    }

    const THREE: &[(u64, u64)] = &[(1, 1), (2, 2), (3, 3)];

    fn hb(region: &Region, leader: Peer, pending: &[Peer]) -> RegionHeartbeatRequest {
        RegionHeartbeatRequest {
            region: Some(region.clone()),
            leader: Some(leader),
            pending_peers: pending.to_vec(),
            ..Default::default()
        }
    }

    /// A scheduler that knows region 1 over everything, epoch (1, 1), on stores 1..3.
    fn bootstrapped() -> MockScheduler {
        MockScheduler::new(vec![region(1, ("", ""), (1, 1), THREE)], 4)
    }

    fn stored(s: &MockScheduler, key: &str) -> Option<Region> {
        s.get_region(key.as_bytes()).map(|(r, _)| r)
    }

    #[test]
    fn test_ids_and_lookups() {
        let mut s = bootstrapped();
        assert_eq!((s.alloc_id(), s.alloc_id()), (4, 5));
        assert_eq!(stored(&s, "k").map(|r| r.id), Some(1));
        assert_eq!(s.leader_of(1), None);
        assert_eq!(s.get_random_region(7), None, "no region has a leader yet");
        let r = region(1, ("", ""), (1, 1), THREE);
        let resp = s.region_heartbeat(&hb(&r, peer(2, 2), &[])).unwrap();
        assert_eq!(resp.region_id, 1);
        assert_eq!(resp.target_peer, Some(peer(2, 2)));
        assert_eq!(resp.region_epoch, r.region_epoch);
        assert!(resp.change_peer.is_none() && resp.transfer_leader.is_none());
        assert_eq!(s.get_region(b"k").unwrap().1, Some(peer(2, 2)));
        assert_eq!(s.get_random_region(7).map(|r| r.id), Some(1));
        assert_eq!(s.get_region_by_id(9), None);
    }

    #[test]
    fn test_version_step_replaces_a_newer_version_and_rejects_a_stale_epoch() {
        let mut s = bootstrapped();
        let newer = region(1, ("", ""), (2, 1), THREE);
        s.region_heartbeat(&hb(&newer, peer(1, 1), &[])).unwrap();
        assert_eq!(stored(&s, "").unwrap(), newer);
        let stale = region(1, ("", ""), (1, 1), THREE);
        let err = s.region_heartbeat(&hb(&stale, peer(3, 3), &[]));
        assert_eq!(err.unwrap_err(), "epoch is stale");
        assert_eq!(stored(&s, "").unwrap(), newer);
        assert_eq!(
            s.leader_of(1),
            Some(peer(3, 3)),
            "the leader is recorded anyway"
        );
    }

    #[test]
    fn test_version_step_split_left_then_right() {
        let mut s = bootstrapped();
        let left = region(1, ("", "m"), (2, 1), THREE);
        let right = region(9, ("m", ""), (2, 1), &[(1, 10), (2, 11), (3, 12)]);
        s.region_heartbeat(&hb(&left, peer(1, 1), &[])).unwrap();
        assert_eq!(stored(&s, "a").unwrap(), left);
        assert_eq!(
            stored(&s, "z"),
            None,
            "a gap until the right region reports"
        );
        s.region_heartbeat(&hb(&right, peer(1, 10), &[])).unwrap();
        assert_eq!(stored(&s, "z").unwrap(), right);
        assert_eq!(s.get_region_by_id(9).unwrap(), right);
        assert_eq!(s.regions(), vec![left, right]);
    }

    #[test]
    fn test_version_step_split_right_then_left() {
        let mut s = bootstrapped();
        let left = region(1, ("", "m"), (2, 1), THREE);
        let right = region(9, ("m", ""), (2, 1), &[(1, 10), (2, 11), (3, 12)]);
        s.region_heartbeat(&hb(&right, peer(1, 10), &[])).unwrap();
        assert_eq!(stored(&s, "a"), None, "the overlapped old region is gone");
        assert_eq!(s.get_region_by_id(1), None);
        assert_eq!(stored(&s, "z").unwrap(), right);
        s.region_heartbeat(&hb(&left, peer(1, 1), &[])).unwrap();
        assert_eq!(s.regions(), vec![left, right]);
    }

    #[test]
    fn test_version_step_rejects_an_overlap_without_a_newer_version() {
        let mut s = bootstrapped();
        let right = region(9, ("m", ""), (1, 1), THREE);
        let err = s
            .region_heartbeat(&hb(&right, peer(1, 1), &[]))
            .unwrap_err();
        assert_eq!(err, "epoch is stale");
        assert_eq!(stored(&s, "z").unwrap().id, 1);
    }

    #[test]
    fn test_conf_step_add_then_remove() {
        let mut s = bootstrapped();
        let added = region(1, ("", ""), (1, 2), &[(1, 1), (2, 2), (3, 3), (4, 4)]);
        s.region_heartbeat(&hb(&added, peer(1, 1), &[])).unwrap();
        assert_eq!(stored(&s, "").unwrap(), added);
        let removed = region(1, ("", ""), (1, 3), &[(1, 1), (3, 3), (4, 4)]);
        s.region_heartbeat(&hb(&removed, peer(1, 1), &[])).unwrap();
        assert_eq!(stored(&s, "").unwrap(), removed);
        // A stale conf_ver is rejected.
        assert!(s.region_heartbeat(&hb(&added, peer(1, 1), &[])).is_err());
    }

    fn conf_step_panics(peers: &[(u64, u64)], epoch: (u64, u64)) {
        let mut s = bootstrapped();
        let r = region(1, ("", ""), epoch, peers);
        let _ = s.region_heartbeat(&hb(&r, peer(1, 1), &[]));
    }

    #[test]
    #[should_panic(expected = "should only one conf change")]
    fn test_conf_step_two_peers_added() {
        conf_step_panics(&[(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)], (1, 2));
    }

    #[test]
    #[should_panic(expected = "should only one conf change")]
    fn test_conf_step_two_peers_removed() {
        conf_step_panics(&[(1, 1)], (1, 2));
    }

    #[test]
    #[should_panic(expected = "should only one different peer")]
    fn test_conf_step_one_removed_one_replaced() {
        conf_step_panics(&[(1, 1), (4, 4)], (1, 2));
    }

    #[test]
    #[should_panic(expected = "should include all peers")]
    fn test_conf_step_added_but_one_store_lost() {
        conf_step_panics(&[(1, 1), (1, 7), (2, 2), (4, 4)], (1, 2));
    }

    #[test]
    #[should_panic(expected = "not found the peer")]
    fn test_conf_step_same_count_other_store() {
        conf_step_panics(&[(1, 1), (2, 2), (4, 4)], (1, 2));
    }

    #[test]
    fn test_conf_step_after_a_newer_version_compares_with_itself() {
        // The version step already stored the newer version, so the conf step sees no change
        // (as in TinyKV, where "unmatched conf version" needs an equal range and version).
        let mut s = bootstrapped();
        let r = region(1, ("", ""), (2, 3), &[(1, 1), (2, 2), (4, 4)]);
        s.region_heartbeat(&hb(&r, peer(1, 1), &[])).unwrap();
        assert_eq!(stored(&s, "").unwrap(), r);
    }

    #[test]
    #[should_panic(expected = "unmatched version")]
    fn test_conf_step_same_peers_version_unchanged() {
        conf_step_panics(THREE, (1, 2));
    }

    #[test]
    #[should_panic(expected = "unmatched peers length")]
    fn test_conf_step_peers_changed_without_conf_ver() {
        conf_step_panics(&[(1, 1), (2, 2)], (1, 1));
    }

    #[test]
    fn test_add_peer_operator_life() {
        let mut s = bootstrapped();
        let new = peer(4, 4);
        s.add_peer_operator(1, new);
        let before = region(1, ("", ""), (1, 1), THREE);
        let resp = s.region_heartbeat(&hb(&before, peer(1, 1), &[])).unwrap();
        let cp = resp
            .change_peer
            .expect("AddNode until the peer is in the region");
        assert_eq!(
            (cp.change_type, cp.peer),
            (ConfChangeType::AddNode as i32, Some(new))
        );
        let after = region(1, ("", ""), (1, 2), &[(1, 1), (2, 2), (3, 3), (4, 4)]);
        let resp = s.region_heartbeat(&hb(&after, peer(1, 1), &[new])).unwrap();
        assert!(resp.change_peer.is_none(), "pending: nothing to send");
        assert_eq!(
            s.operator(1),
            Some(Operator::AddPeer {
                peer: new,
                pending: true
            })
        );
        let resp = s.region_heartbeat(&hb(&after, peer(1, 1), &[new])).unwrap();
        assert!(resp.change_peer.is_none());
        assert!(s.operator(1).is_some(), "still pending");
        let resp = s.region_heartbeat(&hb(&after, peer(1, 1), &[])).unwrap();
        assert!(resp.change_peer.is_none());
        assert_eq!(s.operator(1), None, "finished once the peer caught up");
    }

    #[test]
    fn test_remove_peer_operator_life() {
        let mut s = bootstrapped();
        s.remove_peer_operator(1, peer(3, 3));
        let before = region(1, ("", ""), (1, 1), THREE);
        for _ in 0..2 {
            let resp = s.region_heartbeat(&hb(&before, peer(1, 1), &[])).unwrap();
            let cp = resp.change_peer.expect("RemoveNode until the peer is gone");
            assert_eq!(
                (cp.change_type, cp.peer),
                (ConfChangeType::RemoveNode as i32, Some(peer(3, 3)))
            );
        }
        let after = region(1, ("", ""), (1, 2), &[(1, 1), (2, 2)]);
        let resp = s.region_heartbeat(&hb(&after, peer(1, 1), &[])).unwrap();
        assert!(resp.change_peer.is_none());
        assert_eq!(s.operator(1), None);
    }

    #[test]
    fn test_transfer_leader_operator_life() {
        let mut s = bootstrapped();
        s.transfer_leader_operator(1, peer(2, 2));
        let r = region(1, ("", ""), (1, 1), THREE);
        let resp = s.region_heartbeat(&hb(&r, peer(1, 1), &[])).unwrap();
        assert_eq!(resp.transfer_leader.and_then(|t| t.peer), Some(peer(2, 2)));
        assert_eq!(resp.target_peer, Some(peer(1, 1)));
        let resp = s.region_heartbeat(&hb(&r, peer(2, 2), &[])).unwrap();
        assert!(resp.transfer_leader.is_none());
        assert_eq!(s.operator(1), None);
    }

    #[test]
    fn test_a_new_operator_replaces_the_old() {
        let mut s = bootstrapped();
        s.add_peer_operator(1, peer(4, 4));
        s.remove_peer_operator(1, peer(2, 2));
        assert_eq!(
            s.operator(1),
            Some(Operator::RemovePeer { peer: peer(2, 2) })
        );
    }

    #[test]
    fn test_ask_split() {
        let mut s = bootstrapped();
        let unknown = region(9, ("", ""), (1, 1), THREE);
        assert_eq!(s.ask_split(&unknown).unwrap_err(), "region not found");
        let newer = region(1, ("", ""), (2, 1), THREE);
        s.region_heartbeat(&hb(&newer, peer(1, 1), &[])).unwrap();
        let stale = region(1, ("", ""), (1, 1), THREE);
        assert_eq!(s.ask_split(&stale).unwrap_err(), "epoch is stale");
        let resp = s.ask_split(&newer).unwrap();
        assert_eq!(resp.new_region_id, 4);
        assert_eq!(resp.new_peer_ids, vec![5, 6, 7]);
        assert_eq!(s.alloc_id(), 8);
    }

    #[test]
    fn test_get_random_region_picks_among_regions_with_a_leader() {
        let mut s = bootstrapped();
        let left = region(1, ("", "m"), (2, 1), THREE);
        let right = region(9, ("m", ""), (2, 1), THREE);
        s.region_heartbeat(&hb(&left, peer(1, 1), &[])).unwrap();
        assert_eq!(s.get_random_region(1).map(|r| r.id), Some(1));
        s.region_heartbeat(&hb(&right, peer(1, 1), &[])).unwrap();
        assert_eq!(s.get_random_region(0).map(|r| r.id), Some(1));
        assert_eq!(s.get_random_region(1).map(|r| r.id), Some(9));
    }
}
