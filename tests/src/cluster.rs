//! `Cluster`: the harness API of TinyKV's `kv/test_raftstore/cluster.go` as async functions over
//! an `Env` — requests routed to region leaders with retries across leader changes, key-value
//! helpers on any column family, scans across regions, engine-level assertions, and store
//! start/stop and filters.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use proto::metapb::{Peer, Region};
use proto::raft_cmdpb::{
    CmdType, DeleteRequest, GetRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request,
    SnapRequest,
};
use raftstore::engine::CF_DEFAULT;
use raftstore::CmdResponse;

use crate::env::{call_command_on_store, sleep, Env};
use crate::filter::Filter;

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
        panic!("find no region for {key:?}");
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

    /// Sends a command to the region's leader, following leader hints and trying other peers
    /// when one does not answer; returns the response (which may carry a region error other than
    /// NotLeader/StaleCommand/EpochNotMatch), or None when `timeout` passed.
    pub async fn call_command_on_leader(
        &self,
        mut req: RaftCmdRequest,
        timeout: Duration,
    ) -> Option<CmdResponse> {
        let start = self.env.now();
        let region_id = req.header.as_ref().map_or(0, |h| h.region_id);
        let mut leader = self.env.scheduler().lock().unwrap().leader_of(region_id);
        let mut attempt = 0u64;
        while self.env.now() < start + timeout {
            let region = self
                .env
                .scheduler()
                .lock()
                .unwrap()
                .get_region_by_id(region_id)?;
            let peer = match &leader {
                Some(p) => *p,
                None => {
                    attempt += 1;
                    region.peers[(attempt as usize) % region.peers.len()]
                }
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
                // No answer (the store is down, or the command timed out): try another peer.
                leader = None;
                self.sleep(Duration::from_millis(10)).await;
                continue;
            };
            let Some(err) = resp.region_error() else {
                return Some(resp);
            };
            if let Some(nl) = &err.not_leader {
                leader = nl.leader;
                if leader.is_none() {
                    self.sleep(Duration::from_millis(10)).await;
                }
                continue;
            }
            if err.stale_command.is_some() {
                continue;
            }
            if err.epoch_not_match.is_some() {
                // Refresh the epoch from the scheduler.
                if let Some(h) = req.header.as_mut() {
                    h.region_epoch = region.region_epoch;
                }
                self.sleep(Duration::from_millis(10)).await;
                continue;
            }
            return Some(resp);
        }
        None
    }

    /// Runs requests on the region holding `key`, retrying until a clean response: at least 10
    /// tries and until `timeout` has passed, each try following the leader for up to `timeout`
    /// (TinyKV's `Cluster.Request` in `kv/test_raftstore/cluster.go`).
    pub async fn request(&self, key: &[u8], reqs: Vec<Request>, timeout: Duration) -> CmdResponse {
        let start = self.env.now();
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
                    return resp;
                }
                _ => self.sleep(Duration::from_millis(100)).await,
            }
        }
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
