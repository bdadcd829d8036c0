//! `RegionInfo`: what the scheduler knows of one region — its meta, leader, pending peers and
//! approximate size — as reported by the region's leader (TinyKV's `scheduler/server/core/region.go`
//! and `region_option.go`). TinyKV has no learners, so every peer is a voter.

use std::collections::{BTreeMap, BTreeSet};

use proto::metapb::{Peer, Region, RegionEpoch};
use proto::schedulerpb::RegionHeartbeatRequest;

/// The size (MiB) of a region that reports less than 1 MiB.
pub const EMPTY_REGION_APPROXIMATE_SIZE: i64 = 1;

/// One region as the scheduler knows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegionInfo {
    meta: Region,
    leader: Option<Peer>,
    pending_peers: Vec<Peer>,
    approximate_size: i64,
}

impl RegionInfo {
    /// A region with `meta` led by `leader`, no pending peer, size 0.
    pub fn new(meta: Region, leader: Option<Peer>) -> RegionInfo {
        RegionInfo {
            meta,
            leader,
            pending_peers: Vec::new(),
            approximate_size: 0,
        }
    }

    /// The region a heartbeat reports; its size in MiB is `approximate_size >> 20`, at least 1.
    pub fn from_heartbeat(req: &RegionHeartbeatRequest) -> RegionInfo {
        let size = i64::try_from(req.approximate_size >> 20).unwrap_or(i64::MAX);
        RegionInfo {
            meta: req.region.clone().unwrap_or_default(),
            leader: req.leader,
            pending_peers: req.pending_peers.clone(),
            approximate_size: size.max(EMPTY_REGION_APPROXIMATE_SIZE),
        }
    }

    /// The region's id.
    pub fn id(&self) -> u64 {
        self.meta.id
    }

    /// The region's meta.
    pub fn meta(&self) -> &Region {
        &self.meta
    }

    /// The leader peer, if known.
    pub fn leader(&self) -> Option<&Peer> {
        self.leader.as_ref()
    }

    /// The store of the leader, if the leader is known.
    pub fn leader_store_id(&self) -> Option<u64> {
        self.leader.as_ref().map(|p| p.store_id)
    }

    /// Every peer.
    pub fn peers(&self) -> &[Peer] {
        &self.meta.peers
    }

    /// The voting peers (all of them: TinyKV has no learners).
    pub fn voters(&self) -> &[Peer] {
        &self.meta.peers
    }

    /// The peers that are still catching up (receiving a snapshot or the log).
    pub fn pending_peers(&self) -> &[Peer] {
        &self.pending_peers
    }

    /// The approximate size, in MiB.
    pub fn approximate_size(&self) -> i64 {
        self.approximate_size
    }

    /// The first key of the range.
    pub fn start_key(&self) -> &[u8] {
        &self.meta.start_key
    }

    /// The key just past the range (empty: unbounded).
    pub fn end_key(&self) -> &[u8] {
        &self.meta.end_key
    }

    /// The epoch ({0, 0} when the region has none).
    pub fn epoch(&self) -> RegionEpoch {
        self.meta.region_epoch.unwrap_or_default()
    }

    /// The epoch's version (0 when there is no epoch).
    pub fn version(&self) -> u64 {
        self.meta.region_epoch.as_ref().map_or(0, |e| e.version)
    }

    /// The epoch's conf version (0 when there is no epoch).
    pub fn conf_ver(&self) -> u64 {
        self.meta.region_epoch.as_ref().map_or(0, |e| e.conf_ver)
    }

    /// The peer with id `peer_id`.
    pub fn get_peer(&self, peer_id: u64) -> Option<&Peer> {
        self.meta.peers.iter().find(|p| p.id == peer_id)
    }

    /// The pending peer with id `peer_id`.
    pub fn get_pending_peer(&self, peer_id: u64) -> Option<&Peer> {
        self.pending_peers.iter().find(|p| p.id == peer_id)
    }

    /// The peer on store `store_id`.
    pub fn get_store_peer(&self, store_id: u64) -> Option<&Peer> {
        self.meta.peers.iter().find(|p| p.store_id == store_id)
    }

    /// The voter on store `store_id` (the same as [`RegionInfo::get_store_peer`]: no learners).
    pub fn get_store_voter(&self, store_id: u64) -> Option<&Peer> {
        self.get_store_peer(store_id)
    }

    /// The stores holding a peer.
    pub fn store_ids(&self) -> BTreeSet<u64> {
        self.meta.peers.iter().map(|p| p.store_id).collect()
    }

    /// Whether `peer` is the leader.
    pub fn is_leader(&self, peer: &Peer) -> bool {
        self.leader.as_ref().is_some_and(|l| l.id == peer.id)
    }

    /// The followers (every peer but the leader), by store id in ascending order.
    pub fn followers(&self) -> BTreeMap<u64, &Peer> {
        self.meta
            .peers
            .iter()
            .filter(|p| !self.is_leader(p))
            .map(|p| (p.store_id, p))
            .collect()
    }

    /// Whether the region is healthy enough to move its leader or a peer: no pending peer (and no
    /// learner, which TinyKV never has).
    pub fn is_healthy(&self) -> bool {
        self.pending_peers.is_empty()
    }

    /// This region led by `leader`.
    pub fn with_leader(mut self, leader: Option<Peer>) -> RegionInfo {
        self.leader = leader;
        self
    }

    /// This region with `pending` as its pending peers.
    pub fn with_pending_peers(mut self, pending: Vec<Peer>) -> RegionInfo {
        self.pending_peers = pending;
        self
    }

    /// This region with `peers` as its peers.
    pub fn with_peers(mut self, peers: Vec<Peer>) -> RegionInfo {
        self.meta.peers = peers;
        self
    }

    /// This region with one more peer.
    pub fn with_added_peer(mut self, peer: Peer) -> RegionInfo {
        self.meta.peers.push(peer);
        self
    }

    /// This region without its peer on `store_id`.
    pub fn with_removed_store_peer(mut self, store_id: u64) -> RegionInfo {
        self.meta.peers.retain(|p| p.store_id != store_id);
        self
    }

    /// This region with approximate size `size` (MiB).
    pub fn with_approximate_size(mut self, size: i64) -> RegionInfo {
        self.approximate_size = size;
        self
    }

    /// This region starting at `key`.
    pub fn with_start_key(mut self, key: Vec<u8>) -> RegionInfo {
        self.meta.start_key = key;
        self
    }

    /// This region ending before `key`.
    pub fn with_end_key(mut self, key: Vec<u8>) -> RegionInfo {
        self.meta.end_key = key;
        self
    }

    /// This region with its epoch's version one higher.
    pub fn with_inc_version(mut self) -> RegionInfo {
        self.meta
            .region_epoch
            .get_or_insert_with(RegionEpoch::default)
            .version += 1;
        self
    }

    /// This region with its epoch's conf version one higher.
    pub fn with_inc_conf_ver(mut self) -> RegionInfo {
        self.meta
            .region_epoch
            .get_or_insert_with(RegionEpoch::default)
            .conf_ver += 1;
        self
    }

    /// Whether `key` lies in the region's range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start_key() && (self.end_key().is_empty() || key < self.end_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_size_is_in_mib_and_at_least_one() {
        let mut req = RegionHeartbeatRequest {
            region: Some(Region {
                id: 7,
                ..Default::default()
            }),
            approximate_size: 10,
            ..Default::default()
        };
        assert_eq!(RegionInfo::from_heartbeat(&req).approximate_size(), 1);
        req.approximate_size = 3 << 20;
        let r = RegionInfo::from_heartbeat(&req);
        assert_eq!(r.approximate_size(), 3);
        assert_eq!(r.id(), 7);
    }

    #[test]
    fn followers_exclude_the_leader() {
        let peers: Vec<Peer> = (1..=3)
            .map(|i| Peer {
                id: i * 10,
                store_id: i,
            })
            .collect();
        let r = RegionInfo::new(
            Region {
                id: 1,
                peers: peers.clone(),
                ..Default::default()
            },
            Some(peers[1]),
        );
        let f: Vec<u64> = r.followers().keys().copied().collect();
        assert_eq!(f, vec![1, 3]);
        assert_eq!(r.leader_store_id(), Some(2));
        assert!(r.get_store_peer(4).is_none());
        let r = r.with_removed_store_peer(1);
        assert_eq!(r.store_ids().into_iter().collect::<Vec<_>>(), vec![2, 3]);
    }
}
