//! `Cluster`: the harness API of TinyKV's `kv/test_raftstore/cluster.go` as async functions over
//! an `Env` — requests routed by key to the region the scheduler names and to its leader, with
//! retries across leader changes, membership changes and splits; key-value helpers on any column
//! family; scans across regions; leader transfer and membership changes through the mock
//! scheduler's operators; engine-level assertions; store start/stop and filters.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use proto::metapb::{Peer, Region};
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, CmdType, DeleteRequest, GetRequest, PutRequest, RaftCmdRequest,
    RaftRequestHeader, Request, SnapRequest, TransferLeaderRequest,
};
use raftstore::engine::CF_DEFAULT;
use raftstore::CmdResponse;

use crate::env::{call_command_on_store, sleep, Env};
use crate::filter::Filter;
use crate::scheduler::find_peer;
use raftstore::util::region_contains;

/// The election timeout of the test configuration, in time.
pub fn election_timeout(env: &Rc<dyn Env>) -> Duration {
    let cfg = env.config();
    cfg.raft_base_tick_interval * cfg.raft_election_timeout_ticks as u32
}

/// A cluster under test.
#[derive(Clone)]
pub struct Cluster {
    /// The driver.
    pub env: Rc<dyn Env>,
    /// Requests that completed (shared by the clones a test hands its clients).
    ops: Rc<Cell<u64>>,
}

/// A Put request on `cf`.
pub fn new_put_cf_cmd(cf: &str, key: &[u8], value: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::Put as i32,
        put: Some(PutRequest {
            cf: cf.to_string(),
            key: key.to_vec(),
            value: value.to_vec(),
        }),
        ..Default::default()
    }
}

/// A Get request on `cf`.
pub fn new_get_cf_cmd(cf: &str, key: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::Get as i32,
        get: Some(GetRequest {
            cf: cf.to_string(),
            key: key.to_vec(),
        }),
        ..Default::default()
    }
}

/// A Delete request on `cf`.
pub fn new_delete_cf_cmd(cf: &str, key: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::Delete as i32,
        delete: Some(DeleteRequest {
            cf: cf.to_string(),
            key: key.to_vec(),
        }),
        ..Default::default()
    }
}

/// A Snap request.
pub fn new_snap_cmd() -> Request {
    Request {
        cmd_type: CmdType::Snap as i32,
        snap: Some(SnapRequest {}),
        ..Default::default()
    }
}

/// An admin TransferLeader request to `peer` (TinyKV's `NewTransferLeaderCmd`).
pub fn new_transfer_leader_cmd(peer: Peer) -> AdminRequest {
    AdminRequest {
        cmd_type: AdminCmdType::TransferLeader as i32,
        transfer_leader: Some(TransferLeaderRequest { peer: Some(peer) }),
        ..Default::default()
    }
}

/// An admin command for `region`, with its epoch (TinyKV's `NewAdminRequest`); the peer is
/// filled in by `Cluster::call_command_on_leader`.
pub fn new_admin_request(region: &Region, admin: AdminRequest) -> RaftCmdRequest {
    RaftCmdRequest {
        admin_request: Some(admin),
        ..new_request(region, None, Vec::new())
    }
}

/// A command for `region` addressed to `peer`.
pub fn new_request(region: &Region, peer: Option<Peer>, requests: Vec<Request>) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: region.id,
            peer,
            region_epoch: region.region_epoch,
            term: 0,
        }),
        requests,
        admin_request: None,
    }
}

impl Cluster {
    /// A cluster over `env`.
    pub fn new(env: Rc<dyn Env>) -> Self {
        Cluster {
            env,
            ops: Rc::new(Cell::new(0)),
        }
    }

    /// How many requests (puts, gets, deletes, region snapshots for scans) have completed on
    /// this cluster, by every clone of it.
    pub fn ops(&self) -> u64 {
        self.ops.get()
    }

    /// Sleeps for `d`.
    pub async fn sleep(&self, d: Duration) {
        sleep(&self.env, d).await
    }

    /// Stops a store (a crash in the simulator).
    pub fn stop_store(&self, id: u64) {
        self.env.stop_store(id)
    }

    /// Starts a store again from its engines.
    pub fn start_store(&self, id: u64) {
        self.env.start_store(id)
    }

    /// Adds a network filter.
    pub fn add_filter(&self, f: impl Filter + 'static) {
        self.env.add_filter(Box::new(f))
    }

    /// Removes all network filters.
    pub fn clear_filters(&self) {
        self.env.clear_filters()
    }

    /// The region holding `key`, waiting up to 2 s until the scheduler knows one (as TinyKV's
    /// `Cluster.GetRegion` in `kv/test_raftstore/cluster.go` does: 100 tries 20 ms apart).
    pub async fn get_region(&self, key: &[u8]) -> Region {
        for _ in 0..100 {
            if let Some((r, _)) = self.env.scheduler().lock().unwrap().get_region(key) {
                return r;
            }
            self.sleep(Duration::from_millis(20)).await;
        }
        let known: Vec<_> = self
            .env
            .scheduler()
            .lock()
            .unwrap()
            .regions()
            .into_iter()
            .map(|r| {
                (
                    r.id,
                    r.start_key,
                    r.end_key,
                    r.region_epoch.unwrap_or_default(),
                )
            })
            .collect();
        panic!("find no region for {key:?}; the scheduler knows (id, start, end, epoch) {known:?}");
    }

    /// The leader of a region as the scheduler knows it (waits up to 5 s).
    pub async fn leader_of_region(&self, region_id: u64) -> Option<Peer> {
        for _ in 0..500 {
            if let Some(p) = self.env.scheduler().lock().unwrap().leader_of(region_id) {
                return Some(p);
            }
            self.sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// A new peer on `store_id` with an id from the scheduler (TinyKV's `AllocPeer`).
    pub fn alloc_peer(&self, store_id: u64) -> Peer {
        let id = self.env.scheduler().lock().unwrap().alloc_id();
        Peer { id, store_id }
    }

    /// Some region whose leader the scheduler knows (TinyKV's `GetRandomRegion`), chosen with
    /// the driver's random numbers.
    pub fn get_random_region(&self) -> Option<Region> {
        let random = self.env.random();
        self.env
            .scheduler()
            .lock()
            .unwrap()
            .get_random_region(random)
    }

    /// The stores holding a peer of the region, as the scheduler knows it (TinyKV's
    /// `GetStoreIdsOfRegion`).
    pub fn get_store_ids_of_region(&self, region_id: u64) -> Vec<u64> {
        let region = self
            .scheduler_region(region_id)
            .unwrap_or_else(|| panic!("the scheduler knows no region {region_id}"));
        region.peers.iter().map(|p| p.store_id).collect()
    }

    /// Asks the region's leader to hand its leadership to `leader`: an admin TransferLeader with
    /// the scheduler's epoch, whose answer must be a TransferLeader admin response (TinyKV's
    /// `TransferLeader`; the transfer itself happens later, if at all).
    pub async fn transfer_leader(&self, region_id: u64, leader: Peer) {
        let region = self
            .scheduler_region(region_id)
            .unwrap_or_else(|| panic!("the scheduler knows no region {region_id}"));
        let req = new_admin_request(&region, new_transfer_leader_cmd(leader));
        let resp = self
            .call_command_on_leader(req, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("transfer leader of region {region_id}: no response"));
        let cmd_type = resp.resp.admin_response.as_ref().map(|a| a.cmd_type());
        if cmd_type != Some(AdminCmdType::TransferLeader) {
            panic!(
                "resp.AdminResponse.CmdType != TransferLeader: region {region_id}, {:?}",
                resp.resp
            );
        }
    }

    /// Transfers the region's leadership to `leader` until the scheduler reports it, at most
    /// 5 s (TinyKV's `MustTransferLeader`).
    pub async fn must_transfer_leader(&self, region_id: u64, leader: Peer) {
        let start = self.env.now();
        loop {
            let current = self.leader_of_region(region_id).await;
            if current == Some(leader) {
                return;
            }
            if self.env.now() > start + Duration::from_secs(5) {
                panic!("failed to transfer leader to [{region_id}] {leader:?}");
            }
            self.transfer_leader(region_id, leader).await;
        }
    }

    /// Has the scheduler add `peer` to the region, and waits until it sees it there (TinyKV's
    /// `MustAddPeer`).
    pub async fn must_add_peer(&self, region_id: u64, peer: Peer) {
        self.env
            .scheduler()
            .lock()
            .unwrap()
            .add_peer_operator(region_id, peer);
        self.must_have_peer(region_id, peer).await
    }

    /// Has the scheduler remove `peer` from the region, and waits until it sees it gone
    /// (TinyKV's `MustRemovePeer`).
    pub async fn must_remove_peer(&self, region_id: u64, peer: Peer) {
        self.env
            .scheduler()
            .lock()
            .unwrap()
            .remove_peer_operator(region_id, peer);
        self.must_none_peer(region_id, peer).await
    }

    /// Waits until the scheduler's region has `peer` (its store and id), 500 polls 10 ms apart
    /// (TinyKV's `MustHavePeer`).
    pub async fn must_have_peer(&self, region_id: u64, peer: Peer) {
        if !self.wait_for_peer(region_id, peer, true).await {
            panic!("region {region_id}: no peer: {peer:?}");
        }
    }

    /// Waits until the scheduler's region has no peer on `peer`'s store, or one with another id,
    /// 500 polls 10 ms apart (TinyKV's `MustNonePeer`).
    pub async fn must_none_peer(&self, region_id: u64, peer: Peer) {
        if !self.wait_for_peer(region_id, peer, false).await {
            panic!("region {region_id}: have peer: {peer:?}");
        }
    }

    /// Polls the scheduler's region (500 times, 10 ms apart) until it has `peer` (its store and
    /// id) or, with `present` false, until it has not; false when it never did.
    async fn wait_for_peer(&self, region_id: u64, peer: Peer, present: bool) -> bool {
        for _ in 0..500 {
            if let Some(r) = self.scheduler_region(region_id) {
                let has = find_peer(&r, peer.store_id).is_some_and(|p| p.id == peer.id);
                if has == present {
                    return true;
                }
            }
            self.sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// The region as the scheduler knows it.
    fn scheduler_region(&self, region_id: u64) -> Option<Region> {
        self.env
            .scheduler()
            .lock()
            .unwrap()
            .get_region_by_id(region_id)
    }

    /// Sends a command to the region's leader (TinyKV's `CallCommandOnLeader`): starts from the
    /// scheduler's leader, follows NotLeader hints, retries on StaleCommand, refreshes the epoch and the leader
    /// from the scheduler on EpochNotMatch while the region keeps the range the request was
    /// routed by (else returns the answer, for the caller to route again), and when a peer does not answer (its store is down,
    /// the command timed out) or no longer hosts the region (RegionNotFound: it was removed),
    /// asks the scheduler again, or tries a random peer of the region when the scheduler names
    /// the same one. Returns the response, which may carry another region error (e.g.
    /// KeyNotInRegion), or None when `timeout` passed or the scheduler no longer knows the region.
    pub async fn call_command_on_leader(
        &self,
        mut req: RaftCmdRequest,
        timeout: Duration,
    ) -> Option<CmdResponse> {
        let start = self.env.now();
        let region_id = req.header.as_ref().map_or(0, |h| h.region_id);
        let mut leader = self.env.scheduler().lock().unwrap().leader_of(region_id);
        // The range the request was routed by: an epoch is refreshed only while it holds.
        let mut range: Option<(Vec<u8>, Vec<u8>)> = None;
        while self.env.now() < start + timeout {
            let region = self.scheduler_region(region_id)?;
            if region.peers.is_empty() {
                return None;
            }
            let range =
                range.get_or_insert_with(|| (region.start_key.clone(), region.end_key.clone()));
            let peer = match leader {
                Some(p) => p,
                None => self.random_peer(&region),
            };
            if let Some(h) = req.header.as_mut() {
                h.peer = Some(peer);
            }
            let resp = call_command_on_store(
                &self.env,
                peer.store_id,
                req.clone(),
                Duration::from_secs(1),
            )
            .await;
            let Some(resp) = resp else {
                leader = Some(self.next_leader(&region, peer));
                self.sleep(Duration::from_millis(10)).await;
                continue;
            };
            let Some(err) = resp.region_error() else {
                return Some(resp);
            };
            if let Some(nl) = &err.not_leader {
                leader = Some(match nl.leader {
                    Some(hint) => hint,
                    None => self.next_leader(&region, peer),
                });
                self.sleep(Duration::from_millis(10)).await;
                continue;
            }
            if err.stale_command.is_some() {
                continue;
            }
            if err.region_not_found.is_some() {
                leader = Some(self.next_leader(&region, peer));
                self.sleep(Duration::from_millis(10)).await;
                continue;
            }
            if err.epoch_not_match.is_some() {
                if (&region.start_key, &region.end_key) != (&range.0, &range.1) {
                    // The region split since the request was routed: the keys it was meant for
                    // may be elsewhere now (and a Snap names none, so nothing else would tell),
                    // so the caller routes it again.
                    return Some(resp);
                }
                // Only the membership changed (or the scheduler lags): refresh the epoch, and ask
                // the scheduler for the leader again, as TinyKV's `CallCommandOnLeader` does: the
                // peer that answered may be a removed replica that still believes it leads (it
                // missed its removal, and without check-quorum it never steps down), which would
                // answer EpochNotMatch to every retry.
                if let Some(h) = req.header.as_mut() {
                    h.region_epoch = region.region_epoch;
                }
                leader = self.env.scheduler().lock().unwrap().leader_of(region_id);
                self.sleep(Duration::from_millis(10)).await;
                continue;
            }
            return Some(resp);
        }
        None
    }

    /// A random peer of `region` (the driver's random numbers, so a simulated run replays).
    fn random_peer(&self, region: &Region) -> Peer {
        region.peers[(self.env.random() % region.peers.len() as u64) as usize]
    }

    /// Whom to try after `tried` failed: the scheduler's leader of the region if it names
    /// another peer, else a random peer (TinyKV's `CallCommandOnLeader` after no response).
    fn next_leader(&self, region: &Region, tried: Peer) -> Peer {
        match self.env.scheduler().lock().unwrap().leader_of(region.id) {
            Some(l) if l != tried => l,
            _ => self.random_peer(region),
        }
    }

    /// Runs requests on the region holding `key`, retrying until a clean response: at least 10
    /// tries and until `timeout` has passed, each try following the leader for up to `timeout`
    /// (TinyKV's `Cluster.Request` in `kv/test_raftstore/cluster.go`).
    pub async fn request(&self, key: &[u8], reqs: Vec<Request>, timeout: Duration) -> CmdResponse {
        let start = self.env.now();
        let op = reqs.first().map_or("request", |r| match r.cmd_type() {
            CmdType::Put => "put",
            CmdType::Get => "get",
            CmdType::Delete => "delete",
            CmdType::Snap => "scan",
            _ => "request",
        });
        let traced = self.env.trace_client_start(op, key);
        let mut tries = 0;
        while self.env.now() < start + timeout || tries < 10 {
            tries += 1;
            let region = self.get_region(key).await;
            let req = new_request(&region, None, reqs.clone());
            // Each try follows the leader for up to `timeout` (1 s per call), as TinyKV's
            // `Cluster.Request` gives `CallCommandOnLeader` the whole timeout.
            match self.call_command_on_leader(req, timeout).await {
                Some(resp) if resp.region_error().is_none() => {
                    self.ops.set(self.ops.get() + 1);
                    self.env
                        .trace_client_end(traced, true, format!("{tries} tries"));
                    return resp;
                }
                _ => self.sleep(Duration::from_millis(100)).await,
            }
        }
        self.env.trace_client_end(
            traced,
            false,
            format!("request timeout after {tries} tries"),
        );
        panic!("request timeout for key {key:?}");
    }

    /// Puts `key` = `value` in the default CF.
    pub async fn must_put(&self, key: &[u8], value: &[u8]) {
        self.must_put_cf(CF_DEFAULT, key, value).await
    }

    /// Puts `key` = `value` in `cf`.
    pub async fn must_put_cf(&self, cf: &str, key: &[u8], value: &[u8]) {
        let resp = self
            .request(
                key,
                vec![new_put_cf_cmd(cf, key, value)],
                Duration::from_secs(5),
            )
            .await;
        assert_eq!(resp.resp.responses.len(), 1, "put: one response expected");
        assert_eq!(resp.resp.responses[0].cmd_type(), CmdType::Put);
    }

    /// Reads `key` from `cf` through raft.
    pub async fn get_cf(&self, cf: &str, key: &[u8]) -> Option<Vec<u8>> {
        let resp = self
            .request(key, vec![new_get_cf_cmd(cf, key)], Duration::from_secs(5))
            .await;
        assert_eq!(resp.resp.responses.len(), 1, "get: one response expected");
        assert_eq!(resp.resp.responses[0].cmd_type(), CmdType::Get);
        let v = resp.resp.responses[0]
            .get
            .as_ref()
            .map(|g| g.value.clone())
            .unwrap_or_default();
        (!v.is_empty()).then_some(v)
    }

    /// Reads `key` from the default CF through raft.
    pub async fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get_cf(CF_DEFAULT, key).await
    }

    /// Asserts `key` reads `value` in the default CF.
    pub async fn must_get(&self, key: &[u8], value: &[u8]) {
        let v = self.get(key).await;
        assert_eq!(v.as_deref(), Some(value), "must_get {key:?}");
    }

    /// Deletes `key` from `cf`.
    pub async fn must_delete_cf(&self, cf: &str, key: &[u8]) {
        let resp = self
            .request(
                key,
                vec![new_delete_cf_cmd(cf, key)],
                Duration::from_secs(5),
            )
            .await;
        assert_eq!(
            resp.resp.responses.len(),
            1,
            "delete: one response expected"
        );
        assert_eq!(resp.resp.responses[0].cmd_type(), CmdType::Delete);
    }

    /// Deletes `key` from the default CF.
    pub async fn must_delete(&self, key: &[u8]) {
        self.must_delete_cf(CF_DEFAULT, key).await
    }

    /// The key-value pairs of the default CF in `[start, end)` (empty `end`: unbounded), read
    /// through raft region by region.
    pub async fn scan(&self, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        self.scan_with(start, end, |k, v| out.push((k.to_vec(), v.to_vec())))
            .await;
        out
    }

    /// Calls `f` on each key-value pair of the default CF in `[start, end)` (empty `end`:
    /// unbounded), in key order, read through raft region by region, without copying them.
    pub async fn scan_with(&self, start: &[u8], end: &[u8], mut f: impl FnMut(&[u8], &[u8])) {
        let mut key = start.to_vec();
        loop {
            let resp = self
                .request(&key, vec![new_snap_cmd()], Duration::from_secs(5))
                .await;
            let snap = resp.snap.expect("a Snap response carries a snapshot");
            let region = snap.region.clone();
            if !region_contains(&region, &key) {
                // A Snap names no key, so a region that no longer holds `key` may answer it
                // (routed by a scheduler that has not seen a split yet): route it again.
                self.sleep(Duration::from_millis(100)).await;
                continue;
            }
            let upper = if region.end_key.is_empty()
                || (!end.is_empty() && end < region.end_key.as_slice())
            {
                end.to_vec()
            } else {
                region.end_key.clone()
            };
            snap.snap
                .scan(CF_DEFAULT, &key, &upper, &mut |k, v| {
                    f(k, v);
                    Ok(true)
                })
                .expect("scan a region snapshot");
            if region.end_key.is_empty() || (!end.is_empty() && region.end_key.as_slice() >= end) {
                break;
            }
            key = region.end_key.clone();
        }
    }

    /// Waits until a store's kv engine holds `key` = `value` in `cf` (6 s).
    pub async fn must_get_cf_equal(&self, store_id: u64, cf: &str, key: &[u8], value: &[u8]) {
        for _ in 0..300 {
            if self.env.engine_get(store_id, cf, key).as_deref() == Some(value) {
                return;
            }
            self.sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "store {store_id}: {key:?} in {cf} is {:?}, want {value:?}",
            self.env.engine_get(store_id, cf, key)
        );
    }

    /// Waits until a store's kv engine holds `key` = `value` in the default CF.
    pub async fn must_get_equal(&self, store_id: u64, key: &[u8], value: &[u8]) {
        self.must_get_cf_equal(store_id, CF_DEFAULT, key, value)
            .await
    }

    /// Waits until a store's kv engine lacks `key` in `cf` (6 s).
    pub async fn must_get_cf_none(&self, store_id: u64, cf: &str, key: &[u8]) {
        for _ in 0..300 {
            if self.env.engine_get(store_id, cf, key).is_none() {
                return;
            }
            self.sleep(Duration::from_millis(20)).await;
        }
        panic!("store {store_id}: {key:?} in {cf} should be absent");
    }

    /// Waits until a store's kv engine lacks `key` in the default CF.
    pub async fn must_get_none(&self, store_id: u64, key: &[u8]) {
        self.must_get_cf_none(store_id, CF_DEFAULT, key).await
    }
}
