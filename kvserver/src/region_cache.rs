//! Where a key lives in a multi-region cluster run by a scheduler: a client-side cache of regions
//! (key range, epoch, peers, leader) and of store addresses, filled from the scheduler and
//! corrected by the region errors the stores answer with.
//!
//! - [`RegionCache`]: the cache itself, no IO: regions in a `BTreeMap` by start key (a lookup is
//!   one `O(log n)` range query), store addresses, and the stores that just failed;
//! - [`RegionSource`]: "ask the scheduler", as a trait so the cache logic is testable without a
//!   network; [`SchedulerSource`] is the gRPC implementation (it also serves `tinykv-ctl stores`
//!   and `regions`);
//! - [`RegionLocator`]: cache plus source: the route (region, leader peer, leader's address) of a
//!   key, asking the source on a miss, and what to do after each region error.
//!
//! How entries go stale and are corrected (TinyKV routes the same way in its test cluster,
//! `kv/test_raftstore/cluster.go` `Request`/`CallCommandOnLeader`, with the scheduler client of
//! `scheduler/client/client.go`):
//! - NotLeader naming a leader: the entry switches to it; a peer the cached region does not have
//!   joins the cached peers (a membership change does not change the epoch's version, so no
//!   request was refused for it, and the scheduler may be unreachable); naming
//!   none (an election is under way): the next peer is tried, after a pause, and only when every
//!   peer has twice said it knows no leader is the entry dropped. The range and the peers are
//!   still right, and the scheduler may be unreachable: a client that dropped the entry at once
//!   could not write to a region that just split, or elects, for as long as the scheduler is
//!   down;
//! - EpochNotMatch: the entry is dropped and the error's `current_regions` are inserted (with the
//!   answering store's peer as the leader guess: the epoch is checked after leadership);
//! - KeyNotInRegion, RegionNotFound, StoreNotMatch, any other region error: the entry is dropped;
//! - StaleCommand: nothing changes (the same leader may well serve the retry);
//! - an unreachable store: every entry led there is dropped, its address forgotten, and the store
//!   is suspected until it answers again or another store names it as a leader: a region whose
//!   leader is said to be there is tried on another of its peers first (whose NotLeader answer
//!   names the real leader).
//!
//! An insert never replaces a newer region: a scheduler that has not yet heard of a split may
//! describe the region as it was, wider and with an older epoch version; that answer is refused
//! (the key stays a miss and the caller retries), so a stale range never hides keys.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::ops::Bound;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use proto::errorpb;
use proto::metapb::{Peer, Region, Store};
use proto::schedulerpb::{
    GetAllStoresRequest, GetMembersRequest, GetRegionRequest, GetStoreRequest, RequestHeader,
    ResponseHeader, ScanRegionsRequest, StoreStats,
};
use raftstore::util::region_contains;
use scheduler::schedulerpb::scheduler_client::SchedulerClient;
use thiserror::Error;
use tonic::transport::{Channel, Endpoint};

use crate::limits::MAX_GRPC_MESSAGE;

/// Why the scheduler could not answer a question about regions or stores.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// The scheduler's address is not `HOST:PORT`.
    #[error("bad scheduler address {0:?} (expected HOST:PORT)")]
    BadAddress(String),
    /// The call did not reach the scheduler or failed on the way.
    #[error("scheduler {addr}: {message}")]
    Unreachable {
        /// The scheduler's address.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// The scheduler answered with an error in its response header.
    #[error("scheduler: {0}")]
    Refused(String),
    /// The scheduler knows no region holding the key (printed readably).
    #[error("the scheduler knows no region holding key {0}")]
    NoRegion(String),
    /// The scheduler's region for the key is older than one already cached (it has not yet heard
    /// of a split); the caller asks again later.
    #[error("the scheduler's region for key {0} is older than the cached one")]
    StaleRegion(String),
    /// The scheduler knows no store with this id.
    #[error("the scheduler knows no store {0}")]
    NoStore(u64),
    /// A region without peers.
    #[error("region {0} has no peers")]
    NoPeers(u64),
}

/// `key` for people: printable ASCII (no space) as is, anything else as `0x` and hex digits.
pub fn readable_key(key: &[u8]) -> String {
    if !key.is_empty() && key.iter().all(|b| b.is_ascii_graphic()) {
        return String::from_utf8_lossy(key).into_owned();
    }
    let mut s = String::with_capacity(2 + 2 * key.len());
    s.push_str("0x");
    for b in key {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// One cached region: its metadata and the peer believed to lead it (None: unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedRegion {
    /// Key range, epoch and peers.
    pub region: Region,
    /// The leader, if known.
    pub leader: Option<Peer>,
    /// How many NotLeader answers in a row named no leader.
    leaderless: usize,
}

/// Whether `a` is newer than `b`: a later version (splits), or for the same region the same
/// version and a later conf version (peer changes).
fn is_newer(a: &Region, b: &Region) -> bool {
    let (ea, eb) = (
        a.region_epoch.unwrap_or_default(),
        b.region_epoch.unwrap_or_default(),
    );
    ea.version > eb.version
        || (a.id == b.id && ea.version == eb.version && ea.conf_ver > eb.conf_ver)
}

/// A peer that names a store (the scheduler sends a default peer for "no leader").
fn known(peer: Option<Peer>) -> Option<Peer> {
    peer.filter(|p| p.store_id != 0)
}

/// The client-side region cache (see the module comment). No IO: [`RegionLocator`] fills it.
#[derive(Debug, Default)]
pub struct RegionCache {
    /// Start key -> region. Ranges never overlap.
    regions: BTreeMap<Vec<u8>, CachedRegion>,
    /// Region id -> its start key in `regions`.
    by_id: HashMap<u64, Vec<u8>>,
    /// Store id -> address.
    stores: HashMap<u64, String>,
    /// Stores that failed and have not answered since.
    suspects: HashSet<u64>,
}

impl RegionCache {
    /// An empty cache.
    pub fn new() -> RegionCache {
        RegionCache::default()
    }

    /// How many regions are cached.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether no region is cached.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The cached region holding `key`, in `O(log n)`.
    pub fn lookup(&self, key: &[u8]) -> Option<&CachedRegion> {
        let (_, r) = self
            .regions
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        region_contains(&r.region, key).then_some(r)
    }

    /// The cached region with this id.
    pub fn get(&self, region_id: u64) -> Option<&CachedRegion> {
        self.regions.get(self.by_id.get(&region_id)?)
    }

    /// The start keys of the cached regions overlapping `[start, end)` (empty end: no end).
    fn overlapping(&self, start: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if let Some((k, r)) = self
            .regions
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(start)))
            .next_back()
        {
            if r.region.end_key.is_empty() || r.region.end_key.as_slice() > start {
                out.push(k.clone());
            }
        }
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        out.extend(
            self.regions
                .range::<[u8], _>((Bound::Included(start), upper))
                .map(|(k, _)| k.clone()),
        );
        out
    }

    /// Caches `region` led by `leader` (None or a store-less peer: unknown), replacing every
    /// cached region it overlaps, unless one of those (or this region's cached copy) is newer;
    /// then nothing changes and the answer is false. A known leader that is not one of the
    /// region's peers is dropped; an unknown one keeps the cached copy's leader if that is still
    /// a peer.
    pub fn insert(&mut self, region: Region, leader: Option<Peer>) -> bool {
        let mut stale = self.overlapping(&region.start_key, &region.end_key);
        if let Some(start) = self.by_id.get(&region.id) {
            if !stale.contains(start) {
                stale.push(start.clone());
            }
        }
        if stale
            .iter()
            .any(|k| is_newer(&self.regions[k].region, &region))
        {
            return false;
        }
        let is_peer = |p: &Peer| region.peers.iter().any(|q| q == p);
        let mut leader = known(leader).filter(is_peer);
        for k in stale {
            if let Some(old) = self.regions.remove(&k) {
                self.by_id.remove(&old.region.id);
                if leader.is_none() && old.region.id == region.id {
                    leader = old.leader.filter(is_peer);
                }
            }
        }
        self.by_id.insert(region.id, region.start_key.clone());
        self.regions.insert(
            region.start_key.clone(),
            CachedRegion {
                region,
                leader,
                leaderless: 0,
            },
        );
        true
    }

    /// Drops the region with this id; whether it was cached.
    pub fn remove(&mut self, region_id: u64) -> bool {
        match self.by_id.remove(&region_id) {
            Some(start) => self.regions.remove(&start).is_some(),
            None => false,
        }
    }

    /// Records `leader` as the leader of region `region_id` if it is one of the cached region's
    /// peers; whether it was.
    pub fn set_leader(&mut self, region_id: u64, leader: Peer) -> bool {
        let Some(start) = self.by_id.get(&region_id) else {
            return false;
        };
        let Some(entry) = self.regions.get_mut(start) else {
            return false;
        };
        if !entry.region.peers.contains(&leader) {
            return false;
        }
        entry.leader = Some(leader);
        entry.leaderless = 0;
        true
    }

    /// A peer of region `region_id` named `leader`, which the cached region lacks, as its leader:
    /// the region gained it by a membership change (which does not change the epoch's version,
    /// so no request was refused for it). It joins the cached peers and leads; whether the region
    /// is cached. A wrong guess costs one more region error, never a wrong answer: the store
    /// checks the request's region and epoch.
    fn add_leader(&mut self, region_id: u64, leader: Peer) -> bool {
        let Some(start) = self.by_id.get(&region_id) else {
            return false;
        };
        let Some(entry) = self.regions.get_mut(start) else {
            return false;
        };
        // An older peer on the same store was replaced by this one.
        entry.region.peers.retain(|p| p.store_id != leader.store_id);
        entry.region.peers.push(leader);
        entry.leader = Some(leader);
        entry.leaderless = 0;
        true
    }

    /// The peer `tried` of region `region_id` knows no leader: the next peer in the region's
    /// order becomes the guess. Whether the entry stays: it is dropped once every peer has twice
    /// answered so (the region may have moved on in ways only the scheduler knows).
    fn leader_unknown(&mut self, region_id: u64, tried: &Peer) -> bool {
        let Some(start) = self.by_id.get(&region_id) else {
            return false;
        };
        let Some(entry) = self.regions.get_mut(start) else {
            return false;
        };
        let peers = &entry.region.peers;
        entry.leaderless += 1;
        if peers.is_empty() || entry.leaderless >= 2 * peers.len() {
            self.remove(region_id);
            return false;
        }
        let next = peers
            .iter()
            .position(|p| p == tried)
            .map_or(0, |i| (i + 1) % peers.len());
        entry.leader = Some(peers[next]);
        true
    }

    /// The cached address of store `store_id`.
    pub fn store_addr(&self, store_id: u64) -> Option<&str> {
        self.stores.get(&store_id).map(String::as_str)
    }

    /// Caches the address of store `store_id`.
    pub fn set_store_addr(&mut self, store_id: u64, addr: String) {
        self.stores.insert(store_id, addr);
    }

    /// Store `store_id` could not be reached: drops every region it leads and its address, and
    /// suspects it until [`Self::store_answered`].
    pub fn store_failed(&mut self, store_id: u64) {
        let led: Vec<u64> = self
            .regions
            .values()
            .filter(|r| r.leader.is_some_and(|l| l.store_id == store_id))
            .map(|r| r.region.id)
            .collect();
        for id in led {
            self.remove(id);
        }
        self.stores.remove(&store_id);
        self.suspects.insert(store_id);
    }

    /// Store `store_id` answered: it is no longer suspected.
    pub fn store_answered(&mut self, store_id: u64) {
        self.suspects.remove(&store_id);
    }

    /// Whether store `store_id` failed and has not answered since.
    pub fn is_suspect(&self, store_id: u64) -> bool {
        self.suspects.contains(&store_id)
    }

    /// The peer to send region `r`'s requests to: its leader when known and not on a suspected
    /// store, else the first peer on a store not suspected, else the leader or the first peer.
    fn target(&self, r: &CachedRegion) -> Option<Peer> {
        let healthy = |p: &Peer| !self.is_suspect(p.store_id);
        r.leader
            .filter(healthy)
            .or_else(|| r.region.peers.iter().copied().find(healthy))
            .or(r.leader)
            .or_else(|| r.region.peers.first().copied())
    }

    /// Updates the cache after region error `err` from the store of `leader`, answering a
    /// request sent to region `region_id`. The answer: whether the error brought what the
    /// retry needs (a new leader or the current regions), so it may go at once.
    pub fn on_region_error(&mut self, region_id: u64, leader: &Peer, err: &errorpb::Error) -> bool {
        self.store_answered(leader.store_id);
        if let Some(nl) = &err.not_leader {
            if let Some(l) = known(nl.leader) {
                // A peer of the region vouches for the leader's store: a suspicion of it (it
                // failed once, and may be back) would otherwise keep every request on
                // followers.
                self.store_answered(l.store_id);
                if l != *leader && (self.set_leader(region_id, l) || self.add_leader(region_id, l))
                {
                    return true;
                }
                // The answering peer names itself: it lost leadership and does not know it.
                self.remove(region_id);
                return false;
            }
            // No leader known (an election): the next peer, after the caller's pause.
            self.leader_unknown(region_id, leader);
            return false;
        }
        if let Some(e) = &err.epoch_not_match {
            self.remove(region_id);
            let mut any = false;
            for r in &e.current_regions {
                let guess = r
                    .peers
                    .iter()
                    .copied()
                    .find(|p| p.store_id == leader.store_id);
                any |= self.insert(r.clone(), guess);
            }
            return any;
        }
        if err.stale_command.is_some() {
            return false;
        }
        if err.store_not_match.is_some() {
            self.stores.remove(&leader.store_id);
        }
        // KeyNotInRegion, RegionNotFound, StoreNotMatch, or a message alone.
        self.remove(region_id);
        false
    }
}

/// Answers questions about regions and stores: the scheduler, or a fake in tests.
pub trait RegionSource: Send + Sync {
    /// The region holding `key` and its leader (None: unknown).
    fn region_by_key(
        &self,
        key: &[u8],
    ) -> impl Future<Output = Result<(Region, Option<Peer>), SourceError>> + Send;

    /// The id and address of every store that can serve (tombstones and stores without an
    /// address left out).
    fn store_addrs(&self) -> impl Future<Output = Result<Vec<(u64, String)>, SourceError>> + Send;
}

/// Where a request for a key goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The region holding the key, as cached.
    pub region: Region,
    /// The peer to send to (the leader, or a guess).
    pub peer: Peer,
    /// The address of the peer's store.
    pub addr: String,
}

/// A [`RegionCache`] filled from a [`RegionSource`]. Shared by a client's clones; the lock is
/// never held across a call to the source.
pub struct RegionLocator<S> {
    source: S,
    cache: Mutex<RegionCache>,
}

impl<S: RegionSource> RegionLocator<S> {
    /// A locator with an empty cache.
    pub fn new(source: S) -> RegionLocator<S> {
        RegionLocator {
            source,
            cache: Mutex::new(RegionCache::new()),
        }
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Runs `f` on the cache (for inspection).
    pub fn with_cache<T>(&self, f: impl FnOnce(&mut RegionCache) -> T) -> T {
        f(&mut self.cache.lock().unwrap())
    }

    /// The route of `key`: from the cache, or after asking the source for the region and the
    /// leader's address.
    pub async fn locate(&self, key: &[u8]) -> Result<Route, SourceError> {
        let hit = self.with_cache(|c| c.lookup(key).map(|r| (r.region.clone(), c.target(r))));
        let (region, peer) = match hit {
            Some(found) => found,
            None => {
                let (region, leader) = self.source.region_by_key(key).await?;
                if !region_contains(&region, key) {
                    return Err(SourceError::NoRegion(readable_key(key)));
                }
                self.with_cache(|c| {
                    c.insert(region, leader);
                    c.lookup(key).map(|r| (r.region.clone(), c.target(r)))
                })
                .ok_or_else(|| SourceError::StaleRegion(readable_key(key)))?
            }
        };
        let peer = peer.ok_or(SourceError::NoPeers(region.id))?;
        let cached = self.with_cache(|c| c.store_addr(peer.store_id).map(str::to_string));
        let addr = match cached {
            Some(a) => a,
            None => {
                // Every store's address at once: a leader that moves to another store later
                // is reachable even while the scheduler is not.
                let all = self.source.store_addrs().await?;
                self.with_cache(|c| {
                    for (id, a) in all {
                        c.set_store_addr(id, a);
                    }
                    c.store_addr(peer.store_id).map(str::to_string)
                })
                .ok_or(SourceError::NoStore(peer.store_id))?
            }
        };
        Ok(Route { region, peer, addr })
    }

    /// Updates the cache after `route`'s store answered with region error `err`; whether the
    /// retry may go at once (see [`RegionCache::on_region_error`]). `leader_addr` is the address
    /// the store gave for the leader a NotLeader error names: with it, a leader on a store this
    /// client never talked to is reached without asking the scheduler.
    pub fn on_region_error(
        &self,
        route: &Route,
        err: &errorpb::Error,
        leader_addr: Option<String>,
    ) -> bool {
        self.with_cache(|c| {
            let named = err.not_leader.as_ref().and_then(|nl| known(nl.leader));
            if let (Some(l), Some(addr)) = (named, leader_addr) {
                c.set_store_addr(l.store_id, addr);
            }
            c.on_region_error(route.region.id, &route.peer, err)
        })
    }

    /// `route`'s store answered without a region error.
    pub fn on_success(&self, route: &Route) {
        self.with_cache(|c| {
            c.store_answered(route.peer.store_id);
            // A guess that answered is the leader.
            c.set_leader(route.region.id, route.peer);
        });
    }

    /// `route`'s store could not be reached (see [`RegionCache::store_failed`]).
    pub fn on_store_failure(&self, route: &Route) {
        self.with_cache(|c| c.store_failed(route.peer.store_id));
    }
}

/// The scheduler's gRPC API as a [`RegionSource`], plus what `tinykv-ctl` shows. The connection
/// is made on first use (it needs the caller's async runtime); the cluster id, which every
/// request carries, is learnt once with `GetMembers`.
pub struct SchedulerSource {
    addr: String,
    endpoint: Endpoint,
    client: OnceLock<SchedulerClient<Channel>>,
    cluster_id: tokio::sync::OnceCell<u64>,
}

/// The longest a single scheduler call may take.
const SCHEDULER_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Regions asked for per `ScanRegions` call when listing them all.
const SCAN_REGIONS_PAGE: i32 = 1024;

impl SchedulerSource {
    /// A source asking the scheduler at `addr` (`HOST:PORT`, `http://` allowed).
    pub fn new(addr: &str) -> Result<SchedulerSource, SourceError> {
        let hp = addr.trim();
        let hp = hp
            .strip_prefix("http://")
            .unwrap_or(hp)
            .trim_end_matches('/');
        let bad = || SourceError::BadAddress(addr.to_string());
        let (host, port) = hp.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        let endpoint = Endpoint::from_shared(format!("http://{hp}"))
            .map_err(|_| bad())?
            .connect_timeout(Duration::from_secs(1))
            .timeout(SCHEDULER_CALL_TIMEOUT)
            .tcp_nodelay(true);
        Ok(SchedulerSource {
            addr: hp.to_string(),
            endpoint,
            client: OnceLock::new(),
            cluster_id: tokio::sync::OnceCell::new(),
        })
    }

    /// The scheduler's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn client(&self) -> SchedulerClient<Channel> {
        self.client
            .get_or_init(|| {
                SchedulerClient::new(self.endpoint.connect_lazy())
                    .max_decoding_message_size(MAX_GRPC_MESSAGE)
            })
            .clone()
    }

    fn unreachable(&self, status: tonic::Status) -> SourceError {
        let message = if status.message().is_empty() {
            format!("{:?}", status.code())
        } else {
            status.message().to_string()
        };
        SourceError::Unreachable {
            addr: self.addr.clone(),
            message,
        }
    }

    /// The cluster's id (asked once).
    pub async fn cluster_id(&self) -> Result<u64, SourceError> {
        self.cluster_id
            .get_or_try_init(|| async {
                let req = GetMembersRequest {
                    header: Some(RequestHeader { cluster_id: 0 }),
                };
                let resp = self
                    .client()
                    .get_members(req)
                    .await
                    .map_err(|s| self.unreachable(s))?
                    .into_inner();
                check(resp.header.as_ref())?;
                Ok(resp.header.map_or(0, |h| h.cluster_id))
            })
            .await
            .copied()
    }

    /// The header every request carries.
    async fn header(&self) -> Result<Option<RequestHeader>, SourceError> {
        Ok(Some(RequestHeader {
            cluster_id: self.cluster_id().await?,
        }))
    }

    /// Every store the scheduler knows (tombstones included).
    pub async fn all_stores(&self) -> Result<Vec<Store>, SourceError> {
        let req = GetAllStoresRequest {
            header: self.header().await?,
            exclude_tombstone_stores: false,
        };
        let resp = self
            .client()
            .get_all_stores(req)
            .await
            .map_err(|s| self.unreachable(s))?
            .into_inner();
        check(resp.header.as_ref())?;
        Ok(resp.stores)
    }

    /// Store `store_id` and its last heartbeat's statistics (None before the first).
    pub async fn store(&self, store_id: u64) -> Result<(Store, Option<StoreStats>), SourceError> {
        let req = GetStoreRequest {
            header: self.header().await?,
            store_id,
        };
        let resp = self
            .client()
            .get_store(req)
            .await
            .map_err(|s| self.unreachable(s))?
            .into_inner();
        check(resp.header.as_ref())?;
        let store = resp.store.ok_or(SourceError::NoStore(store_id))?;
        Ok((store, resp.stats))
    }

    /// At most `limit` regions (0: no limit) from the one holding `start` up to `end` (empty: the
    /// end of the key space), each with its leader (None: unknown).
    pub async fn scan_regions(
        &self,
        start: &[u8],
        end: &[u8],
        limit: i32,
    ) -> Result<Vec<(Region, Option<Peer>)>, SourceError> {
        Ok(self
            .scan_region_rows(start, end, limit)
            .await?
            .into_iter()
            .map(|r| (r.region, r.leader))
            .collect())
    }

    /// As [`SchedulerSource::scan_regions`], with each region's size as the scheduler knows it.
    pub async fn scan_region_rows(
        &self,
        start: &[u8],
        end: &[u8],
        limit: i32,
    ) -> Result<Vec<RegionRow>, SourceError> {
        let req = ScanRegionsRequest {
            header: self.header().await?,
            start_key: start.to_vec(),
            limit,
            end_key: end.to_vec(),
        };
        let resp = self
            .client()
            .scan_regions(req)
            .await
            .map_err(|s| self.unreachable(s))?
            .into_inner();
        check(resp.header.as_ref())?;
        let mut leaders = resp.leaders.into_iter();
        let mut sizes = resp.approximate_sizes.into_iter();
        Ok(resp
            .regions
            .into_iter()
            .map(|region| RegionRow {
                region,
                leader: known(leaders.next()),
                size_mib: sizes.next(),
            })
            .collect())
    }

    /// Every region, in key order, each with its leader (None: unknown).
    pub async fn all_regions(&self) -> Result<Vec<(Region, Option<Peer>)>, SourceError> {
        Ok(self
            .all_region_rows()
            .await?
            .into_iter()
            .map(|r| (r.region, r.leader))
            .collect())
    }

    /// Every region, in key order, each with its leader and size.
    pub async fn all_region_rows(&self) -> Result<Vec<RegionRow>, SourceError> {
        let mut out: Vec<RegionRow> = Vec::new();
        let mut start = Vec::new();
        loop {
            let page = self
                .scan_region_rows(&start, &[], SCAN_REGIONS_PAGE)
                .await?;
            let full = page.len() >= SCAN_REGIONS_PAGE as usize;
            for row in page {
                // A page starts at the region holding `start`: the last one of the previous page.
                if out
                    .last()
                    .is_some_and(|last| last.region.id == row.region.id)
                {
                    continue;
                }
                out.push(row);
            }
            let Some(last) = out.last() else {
                return Ok(out);
            };
            // The next page starts after the last region; stop at the end of the key space, on a
            // short page, or when the scheduler's answer did not move forward.
            let end = &last.region.end_key;
            if !full || end.is_empty() || *end <= start {
                return Ok(out);
            }
            start = end.clone();
        }
    }
}

/// A region as the scheduler lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionRow {
    /// The region's meta.
    pub region: Region,
    /// Its leader, if known.
    pub leader: Option<Peer>,
    /// Its approximate size in MiB, if the scheduler said.
    pub size_mib: Option<u64>,
}

/// The error of a response header, if it has one.
fn check(header: Option<&ResponseHeader>) -> Result<(), SourceError> {
    match header.and_then(|h| h.error.as_ref()) {
        Some(e) if e.r#type != 0 => Err(SourceError::Refused(if e.message.is_empty() {
            format!("error type {}", e.r#type)
        } else {
            e.message.clone()
        })),
        _ => Ok(()),
    }
}

impl RegionSource for SchedulerSource {
    async fn region_by_key(&self, key: &[u8]) -> Result<(Region, Option<Peer>), SourceError> {
        let req = GetRegionRequest {
            header: self.header().await?,
            region_key: key.to_vec(),
        };
        let resp = self
            .client()
            .get_region(req)
            .await
            .map_err(|s| self.unreachable(s))?
            .into_inner();
        check(resp.header.as_ref())?;
        let region = resp
            .region
            .ok_or_else(|| SourceError::NoRegion(readable_key(key)))?;
        Ok((region, known(resp.leader)))
    }

    async fn store_addrs(&self) -> Result<Vec<(u64, String)>, SourceError> {
        // The store's own resolver's rule: a tombstone or a store without an address is none.
        Ok(self
            .all_stores()
            .await?
            .iter()
            .filter_map(|s| {
                crate::scheduler_client::usable_address(s).map(|a| (s.id, a.to_string()))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::metapb::RegionEpoch;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn peer(id: u64, store_id: u64) -> Peer {
        Peer { id, store_id }
    }

    /// Region `id` over `[start, end)` at epoch (conf_ver 1, `version`) with peers `10*id + s`
    /// on stores 1, 2, 3.
    fn region(id: u64, start: &str, end: &str, version: u64) -> Region {
        Region {
            id,
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            region_epoch: Some(RegionEpoch {
                conf_ver: 1,
                version,
            }),
            peers: (1..=3).map(|s| peer(10 * id + s, s)).collect(),
        }
    }

    fn lookup_id(c: &RegionCache, key: &str) -> Option<u64> {
        c.lookup(key.as_bytes()).map(|r| r.region.id)
    }

    #[test]
    fn lookup_finds_the_region_holding_a_key() {
        let mut c = RegionCache::new();
        assert!(c.insert(region(1, "", "g", 2), None));
        assert!(c.insert(region(2, "g", "p", 2), Some(peer(22, 2))));
        assert!(c.insert(region(3, "t", "", 2), None));
        assert_eq!(lookup_id(&c, ""), Some(1));
        assert_eq!(lookup_id(&c, "a"), Some(1));
        assert_eq!(lookup_id(&c, "f\u{7f}"), Some(1));
        assert_eq!(lookup_id(&c, "g"), Some(2));
        assert_eq!(lookup_id(&c, "o"), Some(2));
        // A gap: [p, t) is not cached.
        assert_eq!(lookup_id(&c, "p"), None);
        assert_eq!(lookup_id(&c, "s"), None);
        assert_eq!(lookup_id(&c, "t"), Some(3));
        assert_eq!(lookup_id(&c, "zzzz"), Some(3));
        assert_eq!(c.lookup(b"h").unwrap().leader, Some(peer(22, 2)));
        assert_eq!(
            c.get(3).map(|r| r.region.start_key.clone()),
            Some(b"t".to_vec())
        );
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn insert_replaces_overlapping_regions_but_never_newer_ones() {
        let mut c = RegionCache::new();
        assert!(c.insert(region(1, "", "", 1), Some(peer(11, 1))));
        // The split: 1 keeps [, m), 2 takes [m, ); both at version 2.
        assert!(c.insert(region(2, "m", "", 2), None));
        assert_eq!(lookup_id(&c, "a"), None, "the wider old region is gone");
        assert!(c.insert(region(1, "", "m", 2), None));
        assert_eq!(lookup_id(&c, "a"), Some(1));
        assert_eq!(lookup_id(&c, "z"), Some(2));
        // A stale answer (the region before the split) replaces nothing.
        assert!(!c.insert(region(1, "", "", 1), Some(peer(11, 1))));
        assert_eq!(lookup_id(&c, "z"), Some(2));
        assert_eq!(c.len(), 2);
        // The same region at a later conf version is newer; back at the old one it is refused.
        let mut r = region(2, "m", "", 2);
        r.region_epoch = Some(RegionEpoch {
            conf_ver: 2,
            version: 2,
        });
        assert!(c.insert(r, None));
        assert!(!c.insert(region(2, "m", "", 2), None));
        // A leader that is no peer of the region is not kept.
        assert!(c.insert(region(1, "", "m", 2), Some(peer(99, 9))));
        assert_eq!(c.lookup(b"a").unwrap().leader, None);
    }

    #[test]
    fn reinserting_a_region_keeps_its_known_leader() {
        let mut c = RegionCache::new();
        c.insert(region(1, "", "", 1), Some(peer(12, 2)));
        c.insert(region(1, "", "", 1), None);
        assert_eq!(c.lookup(b"k").unwrap().leader, Some(peer(12, 2)));
        c.insert(region(1, "", "", 1), Some(peer(13, 3)));
        assert_eq!(c.lookup(b"k").unwrap().leader, Some(peer(13, 3)));
    }

    fn not_leader(leader: Option<Peer>) -> errorpb::Error {
        errorpb::Error {
            not_leader: Some(errorpb::NotLeader {
                region_id: 1,
                leader,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn not_leader_switches_to_the_hinted_peer_or_drops_the_region() {
        let mut c = RegionCache::new();
        c.insert(region(1, "", "", 1), Some(peer(11, 1)));
        // A hint to a peer of the region: followed at once.
        assert!(c.on_region_error(1, &peer(11, 1), &not_leader(Some(peer(12, 2)))));
        assert_eq!(c.lookup(b"k").unwrap().leader, Some(peer(12, 2)));
        // A hint to a peer the cached region lacks: the region gained it; it joins and leads.
        assert!(c.on_region_error(1, &peer(12, 2), &not_leader(Some(peer(44, 4)))));
        let r = c.lookup(b"k").unwrap();
        assert_eq!(r.leader, Some(peer(44, 4)));
        assert_eq!(r.region.peers.len(), 4);
        // A new peer on a store that had an older one replaces it.
        assert!(c.on_region_error(1, &peer(44, 4), &not_leader(Some(peer(45, 2)))));
        let r = c.lookup(b"k").unwrap();
        assert_eq!(r.leader, Some(peer(45, 2)));
        let ids: Vec<u64> = r.region.peers.iter().map(|p| p.id).collect();
        assert_eq!(ids, [11, 13, 44, 45]);
        c.remove(1);
        // No hint (an election): the entry stays and the next peers are tried in turn, after
        // a pause; once every peer said twice that it knows no leader, the entry is dropped.
        c.insert(region(1, "", "", 1), Some(peer(11, 1)));
        let mut tried = peer(11, 1);
        for expect in [12, 13, 11, 12, 13] {
            assert!(!c.on_region_error(1, &tried, &not_leader(None)));
            tried = c.lookup(b"k").expect("kept while electing").leader.unwrap();
            assert_eq!(tried.id, expect);
        }
        assert!(!c.on_region_error(1, &tried, &not_leader(None)));
        assert!(c.is_empty());
        // A leader named in between starts the count again.
        c.insert(region(1, "", "", 1), Some(peer(11, 1)));
        for _ in 0..5 {
            c.on_region_error(1, &peer(11, 1), &not_leader(None));
            assert!(c.on_region_error(1, &peer(13, 3), &not_leader(Some(peer(11, 1)))));
        }
        assert_eq!(c.lookup(b"k").unwrap().leader, Some(peer(11, 1)));
        // A "hint" naming the peer that answered is no hint.
        c.insert(region(1, "", "", 1), Some(peer(11, 1)));
        assert!(!c.on_region_error(1, &peer(11, 1), &not_leader(Some(peer(11, 1)))));
        assert!(c.is_empty());
    }

    #[test]
    fn epoch_not_match_installs_the_current_regions() {
        let mut c = RegionCache::new();
        c.insert(region(1, "", "", 1), Some(peer(12, 2)));
        c.insert(region(7, "x", "y", 0), None); // an unrelated older entry in the old range
        let err = errorpb::Error {
            epoch_not_match: Some(errorpb::EpochNotMatch {
                current_regions: vec![region(1, "", "m", 2), region(2, "m", "", 2)],
            }),
            ..Default::default()
        };
        assert!(c.on_region_error(1, &peer(12, 2), &err));
        assert_eq!(lookup_id(&c, "a"), Some(1));
        assert_eq!(lookup_id(&c, "x"), Some(2));
        assert_eq!(c.get(7), None);
        // The answering store's peers lead until told otherwise.
        assert_eq!(c.lookup(b"a").unwrap().leader, Some(peer(12, 2)));
        assert_eq!(c.lookup(b"x").unwrap().leader, Some(peer(22, 2)));
        // Without current regions, the region is just dropped.
        let bare = errorpb::Error {
            epoch_not_match: Some(errorpb::EpochNotMatch::default()),
            ..Default::default()
        };
        assert!(!c.on_region_error(2, &peer(22, 2), &bare));
        assert_eq!(lookup_id(&c, "x"), None);
        assert_eq!(lookup_id(&c, "a"), Some(1));
    }

    #[test]
    fn other_region_errors_drop_the_region_and_stale_command_does_not() {
        let kinds = [
            errorpb::Error {
                key_not_in_region: Some(errorpb::KeyNotInRegion::default()),
                ..Default::default()
            },
            errorpb::Error {
                region_not_found: Some(errorpb::RegionNotFound { region_id: 1 }),
                ..Default::default()
            },
            errorpb::Error {
                store_not_match: Some(errorpb::StoreNotMatch::default()),
                ..Default::default()
            },
            errorpb::Error {
                message: "mismatched peer id".into(),
                ..Default::default()
            },
        ];
        for err in kinds {
            let mut c = RegionCache::new();
            c.insert(region(1, "", "m", 2), Some(peer(11, 1)));
            c.insert(region(2, "m", "", 2), Some(peer(21, 1)));
            c.set_store_addr(1, "h1:1".into());
            assert!(!c.on_region_error(1, &peer(11, 1), &err), "{err:?}");
            assert_eq!(lookup_id(&c, "a"), None, "{err:?}");
            assert_eq!(lookup_id(&c, "z"), Some(2), "{err:?}");
            let addr_kept = err.store_not_match.is_none();
            assert_eq!(c.store_addr(1).is_some(), addr_kept, "{err:?}");
        }
        let mut c = RegionCache::new();
        c.insert(region(1, "", "", 2), Some(peer(11, 1)));
        let stale = errorpb::Error {
            stale_command: Some(errorpb::StaleCommand {}),
            ..Default::default()
        };
        assert!(!c.on_region_error(1, &peer(11, 1), &stale));
        assert_eq!(c.lookup(b"k").unwrap().leader, Some(peer(11, 1)));
    }

    #[test]
    fn a_failed_store_loses_its_regions_and_is_avoided_until_it_answers() {
        let mut c = RegionCache::new();
        c.insert(region(1, "", "g", 2), Some(peer(11, 1)));
        c.insert(region(2, "g", "p", 2), Some(peer(22, 2)));
        c.insert(region(3, "p", "", 2), Some(peer(31, 1)));
        c.set_store_addr(1, "h1:1".into());
        c.set_store_addr(2, "h2:1".into());
        c.store_failed(1);
        assert_eq!(lookup_id(&c, "a"), None);
        assert_eq!(lookup_id(&c, "h"), Some(2));
        assert_eq!(lookup_id(&c, "q"), None);
        assert_eq!(c.store_addr(1), None);
        assert_eq!(c.store_addr(2), Some("h2:1"));
        // The scheduler still names store 1 as the leader: another peer is tried first.
        c.insert(region(1, "", "g", 2), Some(peer(11, 1)));
        let target = c.target(c.lookup(b"a").unwrap());
        assert_eq!(target, Some(peer(12, 2)));
        c.store_answered(1);
        assert_eq!(c.target(c.lookup(b"a").unwrap()), Some(peer(11, 1)));
        // A NotLeader hint naming the suspected store clears the suspicion (else requests would
        // keep going to followers of a leader that is alive).
        c.store_failed(1);
        c.insert(region(1, "", "g", 2), Some(peer(11, 1)));
        assert_eq!(c.target(c.lookup(b"a").unwrap()), Some(peer(12, 2)));
        assert!(c.on_region_error(1, &peer(12, 2), &not_leader(Some(peer(11, 1)))));
        assert!(!c.is_suspect(1));
        assert_eq!(c.target(c.lookup(b"a").unwrap()), Some(peer(11, 1)));
    }

    #[test]
    fn readable_keys() {
        assert_eq!(readable_key(b"user42"), "user42");
        assert_eq!(readable_key(b"a~b!"), "a~b!");
        assert_eq!(readable_key(b""), "0x");
        assert_eq!(readable_key(b"a b"), "0x612062");
        assert_eq!(readable_key(&[0, 0xff, b'k']), "0x00ff6b");
        assert_eq!(readable_key("é".as_bytes()), "0xc3a9");
    }

    /// A scheduler in memory: regions by start key, store addresses, and a count of questions.
    #[derive(Default)]
    struct FakeSource {
        regions: Mutex<Vec<(Region, Option<Peer>)>>,
        asked: AtomicUsize,
        store_lists: AtomicUsize,
    }

    impl RegionSource for FakeSource {
        async fn region_by_key(&self, key: &[u8]) -> Result<(Region, Option<Peer>), SourceError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            self.regions
                .lock()
                .unwrap()
                .iter()
                .find(|(r, _)| region_contains(r, key))
                .cloned()
                .ok_or_else(|| SourceError::NoRegion(readable_key(key)))
        }

        async fn store_addrs(&self) -> Result<Vec<(u64, String)>, SourceError> {
            self.store_lists.fetch_add(1, Ordering::SeqCst);
            Ok((1..=3).map(|id| (id, format!("store{id}:20160"))).collect())
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn the_locator_asks_on_a_miss_only() {
        let src = FakeSource::default();
        *src.regions.lock().unwrap() = vec![
            (region(1, "", "m", 2), Some(peer(12, 2))),
            (region(2, "m", "", 2), None),
        ];
        let loc = RegionLocator::new(src);
        block_on(async {
            let r = loc.locate(b"a").await.unwrap();
            assert_eq!(
                (r.region.id, r.peer, r.addr.as_str()),
                (1, peer(12, 2), "store2:20160")
            );
            let r = loc.locate(b"b").await.unwrap();
            assert_eq!(r.region.id, 1);
            assert_eq!(loc.source().asked.load(Ordering::SeqCst), 1);
            // Leader unknown: the first peer is tried; its success makes it the leader.
            let r = loc.locate(b"z").await.unwrap();
            assert_eq!((r.region.id, r.peer), (2, peer(21, 1)));
            loc.on_success(&r);
            assert_eq!(
                loc.with_cache(|c| c.get(2).unwrap().leader),
                Some(peer(21, 1))
            );
            assert_eq!(loc.source().asked.load(Ordering::SeqCst), 2);
            // NotLeader without a hint: the next peer, without asking the scheduler.
            loc.on_region_error(&r, &not_leader(None), None);
            let r = loc.locate(b"z").await.unwrap();
            assert_eq!(r.peer, peer(22, 2));
            assert_eq!(loc.source().asked.load(Ordering::SeqCst), 2);
            // Every store's address came with the first listing: a leader moving to store 3
            // needs no call to the scheduler.
            assert!(loc.on_region_error(&r, &not_leader(Some(peer(23, 3))), None));
            let r = loc.locate(b"z").await.unwrap();
            assert_eq!((r.peer, r.addr.as_str()), (peer(23, 3), "store3:20160"));
            assert_eq!(loc.source().asked.load(Ordering::SeqCst), 2);
            assert_eq!(loc.source().store_lists.load(Ordering::SeqCst), 1);
            // A leader on a store the listing did not have (it joined later), with the address
            // the answering store gave: reached without the scheduler.
            let hint = Some("store9:20160".to_string());
            assert!(loc.on_region_error(&r, &not_leader(Some(peer(29, 9))), hint));
            let r = loc.locate(b"z").await.unwrap();
            assert_eq!((r.peer, r.addr.as_str()), (peer(29, 9), "store9:20160"));
            assert_eq!(loc.source().asked.load(Ordering::SeqCst), 2);
            assert_eq!(loc.source().store_lists.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn the_locator_refuses_a_stale_scheduler_answer() {
        let src = FakeSource::default();
        *src.regions.lock().unwrap() = vec![(region(1, "", "", 1), Some(peer(11, 1)))];
        let loc = RegionLocator::new(src);
        block_on(async {
            let r = loc.locate(b"a").await.unwrap();
            // The store says the region split; the scheduler has not heard yet.
            let err = errorpb::Error {
                epoch_not_match: Some(errorpb::EpochNotMatch {
                    current_regions: vec![region(2, "m", "", 2)],
                }),
                ..Default::default()
            };
            assert!(loc.on_region_error(&r, &err, None));
            let r = loc.locate(b"z").await.unwrap();
            assert_eq!(r.region.id, 2);
            assert_eq!(loc.source().asked.load(Ordering::SeqCst), 1);
            // [, m) is a miss, and the scheduler's wider old region would hide region 2.
            assert_eq!(
                loc.locate(b"a").await,
                Err(SourceError::StaleRegion("a".into()))
            );
            // Once the scheduler has caught up, it is used.
            *loc.source().regions.lock().unwrap() = vec![
                (region(1, "", "m", 2), Some(peer(11, 1))),
                (region(2, "m", "", 2), None),
            ];
            assert_eq!(loc.locate(b"a").await.unwrap().region.id, 1);
            assert_eq!(loc.locate(b"z").await.unwrap().region.id, 2);
        });
    }

    #[test]
    fn the_locator_reports_unknown_stores_and_keys() {
        let src = FakeSource::default();
        *src.regions.lock().unwrap() = vec![(region(1, "b", "", 1), Some(peer(11, 1)))];
        let loc = RegionLocator::new(src);
        block_on(async {
            assert_eq!(
                loc.locate(b"a").await,
                Err(SourceError::NoRegion("a".into()))
            );
            let mut r = region(5, "", "b", 1);
            r.peers = vec![peer(51, 7)];
            loc.with_cache(|c| c.insert(r, None));
            assert_eq!(loc.locate(b"a").await, Err(SourceError::NoStore(7)));
        });
    }

    #[test]
    fn scheduler_addresses_are_checked() {
        for bad in ["", "host", ":20160", "host:port", "host:70000", "http://"] {
            assert!(
                matches!(SchedulerSource::new(bad), Err(SourceError::BadAddress(_))),
                "{bad:?}"
            );
        }
        for good in ["127.0.0.1:2379", "http://localhost:2379/", " sched:1 "] {
            assert!(SchedulerSource::new(good).is_ok(), "{good:?}");
        }
        assert_eq!(
            SchedulerSource::new("http://localhost:2379/")
                .unwrap()
                .addr(),
            "localhost:2379"
        );
    }
}
