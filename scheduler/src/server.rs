//! The scheduler process's service (TinyKV's `scheduler/server/grpc_service.go` and
//! `server.go`): the `Scheduler` gRPC service over a [`RaftCluster`], with its state in
//! [`Storage`], ids from [`IdAlloc`] and timestamps from [`Tso`].
//!
//! - Every request but GetMembers must carry this cluster's id (a store learns it from
//!   GetMembers); another id is refused (`FailedPrecondition`).
//! - Until a store bootstraps the cluster, what needs it answers `NOT_BOOTSTRAPPED`.
//! - Region heartbeats arrive on one stream per store; the stream is bound to the store of the
//!   heartbeats' leader, and the cluster's answers (operator steps) go back on the stream of the
//!   region leader's store. A timer ticks the cluster (its schedulers and checkers) and sends
//!   what they decide.
//! - Store and region metas are saved as they change, so a restarted scheduler answers lookups
//!   before the first heartbeats; ids and timestamps never repeat across restarts.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use proto::metapb::{Cluster, Region, StoreState};
use proto::schedulerpb::*;
use slog::{info, warn, Logger};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::cluster::{Clock, IdAllocator, RaftCluster, ScheduleConfig, SystemClock};
use crate::cmdline::serve_with_grace;
use crate::core::RegionInfo;
use crate::errors::Error as ClusterError;
use crate::id::IdAlloc;
use crate::metrics;
use crate::schedulerpb::scheduler_server::{Scheduler, SchedulerServer};
use crate::storage::{Storage, StorageError};
use crate::tso::{wall_clock_ms, Tso};

/// The largest gRPC message the scheduler sends or accepts (a scan of many regions).
pub const MAX_GRPC_MESSAGE: usize = 64 << 20;

/// How often the cluster's schedulers and checkers get the chance to run.
pub const TICK_INTERVAL: Duration = Duration::from_millis(50);

/// A scheduler process's settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to serve gRPC on (port 0: any free port).
    pub addr: String,
    /// Directory of the scheduler's state.
    pub data_dir: PathBuf,
    /// This member's name (GetMembers).
    pub name: String,
    /// The scheduling options.
    pub schedule: ScheduleConfig,
    /// Address of the status server (`GET /metrics`), `HOST:PORT`; None: no status server. The
    /// binary serves it (`crate::status`); [`RunningScheduler`] does not.
    pub status_addr: Option<String>,
    /// How far behind the clock the scheduler keeps the GC safe point, raising it as time
    /// passes (zero: only UpdateGCSafePoint raises it). A transaction that runs longer than this
    /// may find its snapshot collected: the stores refuse it.
    pub gc_life_time: Duration,
}

/// The GC life time by default (TiDB's `tikv_gc_life_time`).
pub const DEFAULT_GC_LIFE_TIME: Duration = Duration::from_secs(600);

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: "127.0.0.1:2379".into(),
            data_dir: PathBuf::from("data/scheduler"),
            name: "scheduler".into(),
            schedule: ScheduleConfig::default(),
            status_addr: None,
            gc_life_time: DEFAULT_GC_LIFE_TIME,
        }
    }
}

/// Why the scheduler could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory could not be opened or read.
    #[error("data dir {dir}: {source}")]
    Storage {
        /// The directory.
        dir: String,
        /// Why.
        source: StorageError,
    },
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The async runtime could not start.
    #[error("async runtime: {0}")]
    Runtime(std::io::Error),
}

/// The id allocator as the cluster sees it.
struct Ids(Arc<IdAlloc>);

impl IdAllocator for Ids {
    fn alloc(&self) -> crate::errors::Result<u64> {
        self.0
            .alloc()
            .map_err(|e| ClusterError::IdAlloc(e.to_string()))
    }
}

/// A region heartbeat stream's sending side.
type HeartbeatSender = mpsc::UnboundedSender<Result<RegionHeartbeatResponse, Status>>;

/// The state every call shares.
struct Inner {
    cluster_id: u64,
    member: Member,
    storage: Arc<Storage>,
    ids: Arc<IdAlloc>,
    tso: Tso,
    bootstrapped: AtomicBool,
    cluster: Mutex<RaftCluster>,
    /// The region heartbeat stream of each store.
    streams: Mutex<HashMap<u64, HeartbeatSender>>,
    /// See [`ServerConfig::gc_life_time`].
    gc_life_time: Duration,
    /// When the tick last raised the GC safe point.
    gc_raised: Mutex<Option<std::time::Instant>>,
    logger: Logger,
}

fn header(cluster_id: u64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        cluster_id,
        error: None,
    })
}

fn unknown(e: impl std::fmt::Display) -> Status {
    Status::unknown(e.to_string())
}

impl Inner {
    fn header(&self) -> Option<ResponseHeader> {
        header(self.cluster_id)
    }

    fn error_header(&self, ty: ErrorType, message: impl Into<String>) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.cluster_id,
            error: Some(Error {
                r#type: ty as i32,
                message: message.into(),
            }),
        })
    }

    fn not_bootstrapped(&self) -> Option<ResponseHeader> {
        self.error_header(ErrorType::NotBootstrapped, "cluster is not bootstrapped")
    }

    fn validate(&self, h: &Option<RequestHeader>) -> Result<(), Status> {
        let got = h.as_ref().map_or(0, |h| h.cluster_id);
        if got != self.cluster_id {
            return Err(Status::failed_precondition(format!(
                "mismatch cluster id, need {} but got {got}",
                self.cluster_id
            )));
        }
        Ok(())
    }

    fn is_bootstrapped(&self) -> bool {
        self.bootstrapped.load(Ordering::Acquire)
    }

    fn cluster(&self) -> MutexGuard<'_, RaftCluster> {
        self.cluster.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends what the cluster has for the stores on their heartbeat streams.
    fn dispatch(&self, msgs: Vec<(u64, RegionHeartbeatResponse)>) {
        if msgs.is_empty() {
            return;
        }
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        for (store, mut msg) in msgs {
            msg.header = self.header();
            match streams.get(&store) {
                Some(tx) => {
                    if tx.send(Ok(msg)).is_err() {
                        streams.remove(&store);
                    }
                }
                None => {
                    slog::debug!(self.logger, "no heartbeat stream for a store's answer";
                        "store_id" => store, "region_id" => msg.region_id)
                }
            }
        }
    }

    /// Handles one region heartbeat from the stream `tx` (bound to its leader's store).
    fn on_region_heartbeat(
        &self,
        req: RegionHeartbeatRequest,
        tx: &HeartbeatSender,
    ) -> Result<(), Status> {
        self.validate(&req.header)
            .inspect_err(|_| metrics::REGION_HEARTBEATS_ERROR.inc())?;
        let Some(leader) = req.leader else {
            metrics::REGION_HEARTBEATS_ERROR.inc();
            warn!(self.logger, "a region heartbeat without a leader is ignored";
                "region_id" => req.region.as_ref().map_or(0, |r| r.id));
            return Ok(());
        };
        if self.cluster().get_store(leader.store_id).is_none() {
            metrics::REGION_HEARTBEATS_ERROR.inc();
            return Err(Status::unknown(format!(
                "invalid store ID {}, not found",
                leader.store_id
            )));
        }
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(leader.store_id, tx.clone());
        let region_id = req.region.as_ref().map_or(0, |r| r.id);
        if region_id == 0 {
            metrics::REGION_HEARTBEATS_ERROR.inc();
            let _ = tx.send(Ok(RegionHeartbeatResponse {
                header: self.error_header(
                    ErrorType::Unknown,
                    format!("invalid request region, {req:?}"),
                ),
                ..Default::default()
            }));
            return Ok(());
        }
        let region = RegionInfo::from_heartbeat(&req);
        let (outcome, msgs) = {
            let mut c = self.cluster();
            let outcome = c.handle_region_heartbeat(region);
            (outcome, c.take_messages())
        };
        match outcome {
            Ok(change) => {
                if let (true, Some(meta)) = (change.epoch_changed_or_new, &req.region) {
                    self.save_region(meta, &change.removed);
                }
            }
            Err(e) => {
                let _ = tx.send(Ok(RegionHeartbeatResponse {
                    header: self.error_header(ErrorType::Unknown, e.to_string()),
                    ..Default::default()
                }));
            }
        }
        self.dispatch(msgs);
        Ok(())
    }

    /// Saves a region's meta; a failure is logged (the next heartbeat brings it again).
    fn save_region(&self, meta: &Region, removed: &[u64]) {
        if let Err(e) = self.storage.save_region(meta, removed) {
            warn!(self.logger, "cannot save a region"; "region_id" => meta.id, "err" => %e);
        }
    }

    /// A GetRegion answer with the region `find` picks, and its leader (empty when none).
    fn region_response(
        &self,
        find: impl for<'a> FnOnce(&'a RaftCluster) -> Option<&'a RegionInfo>,
    ) -> GetRegionResponse {
        let c = self.cluster();
        let found = find(&c);
        GetRegionResponse {
            header: self.header(),
            region: found.map(|r| r.meta().clone()),
            leader: found.and_then(|r| r.leader().cloned()),
            slaves: Vec::new(),
        }
    }
}

/// The `Scheduler` gRPC service.
#[derive(Clone)]
pub struct SchedulerService {
    inner: Arc<Inner>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl SchedulerService {
    /// Opens (or creates) the scheduler's state in `cfg.data_dir`; `addr` is the address clients
    /// reach it at (GetMembers).
    pub fn open(cfg: &ServerConfig, addr: &str, logger: Logger) -> Result<Self, ServerError> {
        let dir = cfg.data_dir.display().to_string();
        let storage_err = |source| ServerError::Storage {
            dir: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| ServerError::Storage {
            dir: dir.clone(),
            source: StorageError::Corrupt {
                key: "the directory".into(),
                reason: e.to_string(),
            },
        })?;
        let storage = Arc::new(Storage::open(&cfg.data_dir).map_err(storage_err)?);
        let cluster_id = match storage.cluster_id().map_err(storage_err)? {
            Some(id) => id,
            None => {
                // PD's way: the creation time in the high bits, randomness in the low ones.
                let id = (wall_clock_ms() / 1000) << 32 | u64::from(rand::random::<u32>());
                storage.save_cluster_id(id).map_err(storage_err)?;
                info!(logger, "a new cluster"; "cluster_id" => id);
                id
            }
        };
        let ids = Arc::new(IdAlloc::new(storage.clone()).map_err(storage_err)?);
        let tso = Tso::new(storage.clone()).map_err(storage_err)?;
        let mut schedule = cfg.schedule.clone();
        if let Some(c) = storage.config().map_err(storage_err)? {
            if c.max_peer_count > 0 {
                schedule.max_replicas = c.max_peer_count as usize;
            }
        }
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut cluster = RaftCluster::with_logger(
            cluster_id,
            schedule,
            Arc::new(Ids(ids.clone())),
            clock,
            logger.clone(),
        );
        let stores = storage.stores().map_err(storage_err)?;
        let regions = storage.regions().map_err(storage_err)?;
        for s in &stores {
            cluster.load_store(s.clone());
        }
        for r in &regions {
            let dropped = cluster.load_region(r.clone());
            if !dropped.is_empty() {
                // Saved metas that a newer saved region overlaps: forget them for good.
                storage.save_region(r, &dropped).map_err(storage_err)?;
            }
        }
        let bootstrapped = storage.bootstrapped().map_err(storage_err)?;
        info!(logger, "scheduler state loaded"; "cluster_id" => cluster_id,
            "bootstrapped" => bootstrapped, "stores" => stores.len(), "regions" => regions.len());
        let member = Member {
            name: cfg.name.clone(),
            member_id: cluster_id ^ 0x5c4e_d01e,
            peer_urls: vec![format!("http://{addr}")],
            client_urls: vec![format!("http://{addr}")],
            leader_priority: 0,
        };
        Ok(SchedulerService {
            inner: Arc::new(Inner {
                cluster_id,
                member,
                storage,
                ids,
                tso,
                bootstrapped: AtomicBool::new(bootstrapped),
                cluster: Mutex::new(cluster),
                streams: Mutex::new(HashMap::new()),
                gc_life_time: cfg.gc_life_time,
                gc_raised: Mutex::new(None),
                logger,
            }),
        })
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    /// Runs the cluster's schedulers and checkers once and sends what they decide; sets the
    /// gauges of `crate::metrics`.
    pub fn tick(&self) {
        let msgs = {
            let mut c = self.inner.cluster();
            c.tick();
            let core = c.basic();
            metrics::set_gauges(
                c.running_operator_count(),
                core.stores.store_count(),
                core.regions.region_count(),
            );
            c.take_messages()
        };
        self.inner.dispatch(msgs);
        self.raise_gc_safe_point();
    }

    /// Keeps the GC safe point [`ServerConfig::gc_life_time`] behind the clock, raising it
    /// every tenth of the life time (at least a second apart): each raise makes every store
    /// collect every region it leads, so a cluster with a 10-minute life time collects about once
    /// a minute (TiDB's GC runs every 10 minutes).
    fn raise_gc_safe_point(&self) {
        let i = &self.inner;
        let life_ms = i.gc_life_time.as_millis() as u64;
        if life_ms == 0 {
            return;
        }
        let step = (i.gc_life_time / 10).max(Duration::from_secs(1));
        {
            let mut last = i.gc_raised.lock().unwrap();
            if last.is_some_and(|t| t.elapsed() < step) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let Some(physical) = wall_clock_ms().checked_sub(life_ms) else {
            return;
        };
        let safe_point = physical << crate::tso::LOGICAL_BITS;
        if let Err(e) = i.storage.advance_gc_safe_point(safe_point) {
            warn!(i.logger, "cannot raise the GC safe point"; "err" => %e);
        }
    }

    /// Handles a region heartbeat that came by no stream (TinyKV's tests call the cluster's
    /// `HandleRegionHeartbeat` so): the region is processed and saved, and what the cluster
    /// decides goes to the stores' streams.
    pub fn handle_region(&self, req: RegionHeartbeatRequest) -> crate::errors::Result<()> {
        let i = &self.inner;
        let region = RegionInfo::from_heartbeat(&req);
        let (outcome, msgs) = {
            let mut c = i.cluster();
            let outcome = c.handle_region_heartbeat(region);
            (outcome, c.take_messages())
        };
        i.dispatch(msgs);
        let change = outcome?;
        if let (true, Some(meta)) = (change.epoch_changed_or_new, &req.region) {
            i.save_region(meta, &change.removed);
        }
        Ok(())
    }

    /// The tonic service, with the message size limits.
    pub fn into_server(self) -> SchedulerServer<SchedulerService> {
        SchedulerServer::new(self)
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE)
    }
}

#[tonic::async_trait]
impl Scheduler for SchedulerService {
    async fn get_members(
        &self,
        _req: Request<GetMembersRequest>,
    ) -> Result<Response<GetMembersResponse>, Status> {
        let i = &self.inner;
        Ok(Response::new(GetMembersResponse {
            header: i.header(),
            members: vec![i.member.clone()],
            leader: Some(i.member.clone()),
            etcd_leader: Some(i.member.clone()),
        }))
    }

    type TsoStream = BoxStream<TsoResponse>;

    async fn tso(
        &self,
        req: Request<Streaming<TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        let inner = self.inner.clone();
        let mut input = req.into_inner();
        let output = async_stream(move |tx| async move {
            while let Some(req) = input.next().await {
                let req = match req {
                    Ok(r) => r,
                    Err(_) => return,
                };
                if let Err(s) = inner.validate(&req.header) {
                    let _ = tx.send(Err(s));
                    return;
                }
                let count = req.count;
                let resp = match inner.tso.get(count) {
                    Ok((physical, logical)) => Ok(TsoResponse {
                        header: inner.header(),
                        count,
                        timestamp: Some(Timestamp {
                            physical: physical as i64,
                            logical: logical as i64,
                        }),
                    }),
                    Err(e) => Err(unknown(e)),
                };
                let failed = resp.is_err();
                if tx.send(resp).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(output))
    }

    async fn bootstrap(
        &self,
        req: Request<BootstrapRequest>,
    ) -> Result<Response<BootstrapResponse>, Status> {
        let i = &self.inner;
        let req = req.into_inner();
        i.validate(&req.header)?;
        let store = req
            .store
            .ok_or_else(|| Status::invalid_argument("a bootstrap request needs a store"))?;
        // One bootstrap at a time: the cluster lock orders them.
        let mut c = i.cluster();
        if i.is_bootstrapped() {
            return Ok(Response::new(BootstrapResponse {
                header: i.error_header(
                    ErrorType::AlreadyBootstrapped,
                    "cluster is already bootstrapped",
                ),
            }));
        }
        c.put_store(store.clone()).map_err(unknown)?;
        i.storage.save_store(&store).map_err(unknown)?;
        let config = Cluster {
            id: i.cluster_id,
            max_peer_count: c.config().max_replicas as u32,
        };
        i.storage.save_bootstrapped(&config).map_err(unknown)?;
        i.bootstrapped.store(true, Ordering::Release);
        info!(i.logger, "cluster bootstrapped"; "store_id" => store.id, "address" => &store.address);
        Ok(Response::new(BootstrapResponse { header: i.header() }))
    }

    async fn is_bootstrapped(
        &self,
        req: Request<IsBootstrappedRequest>,
    ) -> Result<Response<IsBootstrappedResponse>, Status> {
        let i = &self.inner;
        i.validate(&req.get_ref().header)?;
        Ok(Response::new(IsBootstrappedResponse {
            header: i.header(),
            bootstrapped: i.is_bootstrapped(),
        }))
    }

    async fn alloc_id(
        &self,
        req: Request<AllocIdRequest>,
    ) -> Result<Response<AllocIdResponse>, Status> {
        let i = &self.inner;
        i.validate(&req.get_ref().header)?;
        let id = i.ids.alloc().map_err(unknown)?;
        Ok(Response::new(AllocIdResponse {
            header: i.header(),
            id,
        }))
    }

    async fn get_store(
        &self,
        req: Request<GetStoreRequest>,
    ) -> Result<Response<GetStoreResponse>, Status> {
        let i = &self.inner;
        let req = req.into_inner();
        i.validate(&req.header)?;
        if !i.is_bootstrapped() {
            return Ok(Response::new(GetStoreResponse {
                header: i.not_bootstrapped(),
                ..Default::default()
            }));
        }
        let c = i.cluster();
        let store = c.get_store(req.store_id).ok_or_else(|| {
            Status::unknown(format!("invalid store ID {}, not found", req.store_id))
        })?;
        Ok(Response::new(GetStoreResponse {
            header: i.header(),
            store: Some(store.meta().clone()),
            stats: Some(store.stats().clone()),
        }))
    }

    async fn put_store(
        &self,
        req: Request<PutStoreRequest>,
    ) -> Result<Response<PutStoreResponse>, Status> {
        let i = &self.inner;
        let req = req.into_inner();
        i.validate(&req.header)?;
        if !i.is_bootstrapped() {
            return Ok(Response::new(PutStoreResponse {
                header: i.not_bootstrapped(),
            }));
        }
        let store = req
            .store
            .ok_or_else(|| Status::invalid_argument("a put-store request needs a store"))?;
        let mut c = i.cluster();
        if c.get_store(store.id)
            .is_some_and(|s| s.meta().state() == StoreState::Tombstone)
        {
            return Ok(Response::new(PutStoreResponse {
                header: i.error_header(ErrorType::StoreTombstone, "store is tombstone"),
            }));
        }
        c.put_store(store.clone()).map_err(unknown)?;
        // Saved with what the cluster made of it (a known store keeps its state).
        if let Some(s) = c.get_store(store.id) {
            i.storage.save_store(s.meta()).map_err(unknown)?;
        }
        info!(i.logger, "put store"; "store_id" => store.id, "address" => &store.address);
        Ok(Response::new(PutStoreResponse { header: i.header() }))
    }

    async fn get_all_stores(
        &self,
        req: Request<GetAllStoresRequest>,
    ) -> Result<Response<GetAllStoresResponse>, Status> {
        let i = &self.inner;
        let req = req.into_inner();
        i.validate(&req.header)?;
        if !i.is_bootstrapped() {
            return Ok(Response::new(GetAllStoresResponse {
                header: i.not_bootstrapped(),
                ..Default::default()
            }));
        }
        let stores = i
            .cluster()
            .get_stores()
            .into_iter()
            .map(|s| s.meta().clone())
            .filter(|s| !req.exclude_tombstone_stores || s.state() != StoreState::Tombstone)
            .collect();
        Ok(Response::new(GetAllStoresResponse {
            header: i.header(),
            stores,
        }))
    }

    async fn store_heartbeat(
        &self,
        req: Request<StoreHeartbeatRequest>,
    ) -> Result<Response<StoreHeartbeatResponse>, Status> {
        let i = &self.inner;
        let req = req.into_inner();
        i.validate(&req.header)?;
        let stats = req
            .stats
            .ok_or_else(|| Status::invalid_argument("a store heartbeat needs its stats"))?;
        if !i.is_bootstrapped() {
            return Ok(Response::new(StoreHeartbeatResponse {
                header: i.not_bootstrapped(),
            }));
        }
        let mut c = i.cluster();
        if c.get_store(stats.store_id)
            .is_some_and(|s| s.meta().state() == StoreState::Tombstone)
        {
            metrics::STORE_HEARTBEATS_ERROR.inc();
            return Ok(Response::new(StoreHeartbeatResponse {
                header: i.error_header(ErrorType::StoreTombstone, "store is tombstone"),
            }));
        }
        c.handle_store_heartbeat(stats).map_err(unknown)?;
        Ok(Response::new(StoreHeartbeatResponse { header: i.header() }))
    }

    type RegionHeartbeatStream = BoxStream<RegionHeartbeatResponse>;

    async fn region_heartbeat(
        &self,
        req: Request<Streaming<RegionHeartbeatRequest>>,
    ) -> Result<Response<Self::RegionHeartbeatStream>, Status> {
        let inner = self.inner.clone();
        let mut input = req.into_inner();
        let output = async_stream(move |tx| async move {
            if !inner.is_bootstrapped() {
                let _ = tx.send(Ok(RegionHeartbeatResponse {
                    header: inner.not_bootstrapped(),
                    ..Default::default()
                }));
                return;
            }
            while let Some(req) = input.next().await {
                let req = match req {
                    Ok(r) => r,
                    Err(_) => return,
                };
                if let Err(s) = inner.on_region_heartbeat(req, &tx) {
                    let _ = tx.send(Err(s));
                    return;
                }
            }
        });
        Ok(Response::new(output))
    }

    async fn get_region(
        &self,
        req: Request<GetRegionRequest>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        let i = &self.inner;
        let req = req.into_inner();
        i.validate(&req.header)?;
        Ok(Response::new(
            i.region_response(|c| c.get_region_by_key(&req.region_key)),
        ))
    }

    async fn get_prev_region(
        &self,
        req: Request<GetRegionRequest>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        let i = &self.inner;
        let req = req.into_inner();
        i.validate(&req.header)?;
        Ok(Response::new(
            i.region_response(|c| c.get_prev_region(&req.region_key)),
        ))
    }

    async fn get_region_by_id(
        &self,
        req: Request<GetRegionByIdRequest>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        let i = &self.inner;
        let req = req.into_inner();
        i.validate(&req.header)?;
        Ok(Response::new(
            i.region_response(|c| c.get_region(req.region_id)),
        ))
    }

    async fn scan_regions(
        &self,
        req: Request<ScanRegionsRequest>,
    ) -> Result<Response<ScanRegionsResponse>, Status> {
        let i = &self.inner;
        let req = req.into_inner();
        i.validate(&req.header)?;
        let limit = if req.limit <= 0 {
            0
        } else {
            req.limit as usize
        };
        let c = i.cluster();
        let found = c.scan_regions(&req.start_key, &req.end_key, limit);
        let mut regions = Vec::with_capacity(found.len());
        let mut leaders = Vec::with_capacity(found.len());
        let mut approximate_sizes = Vec::with_capacity(found.len());
        for r in found {
            regions.push(r.meta().clone());
            leaders.push(r.leader().cloned().unwrap_or_default());
            approximate_sizes.push(r.approximate_size().max(0) as u64);
        }
        Ok(Response::new(ScanRegionsResponse {
            header: i.header(),
            regions,
            leaders,
            approximate_sizes,
        }))
    }

    async fn ask_split(
        &self,
        req: Request<AskSplitRequest>,
    ) -> Result<Response<AskSplitResponse>, Status> {
        let i = &self.inner;
        let req = req.into_inner();
        i.validate(&req.header)?;
        if !i.is_bootstrapped() {
            return Ok(Response::new(AskSplitResponse {
                header: i.not_bootstrapped(),
                ..Default::default()
            }));
        }
        let region = req
            .region
            .ok_or_else(|| Status::invalid_argument("an ask-split request needs a region"))?;
        let mut resp = i.cluster().ask_split(&region).map_err(unknown)?;
        resp.header = i.header();
        Ok(Response::new(resp))
    }

    async fn get_cluster_config(
        &self,
        req: Request<GetClusterConfigRequest>,
    ) -> Result<Response<GetClusterConfigResponse>, Status> {
        let i = &self.inner;
        i.validate(&req.get_ref().header)?;
        if !i.is_bootstrapped() {
            return Ok(Response::new(GetClusterConfigResponse {
                header: i.not_bootstrapped(),
                cluster: None,
            }));
        }
        let max = i.cluster().config().max_replicas as u32;
        Ok(Response::new(GetClusterConfigResponse {
            header: i.header(),
            cluster: Some(Cluster {
                id: i.cluster_id,
                max_peer_count: max,
            }),
        }))
    }

    async fn put_cluster_config(
        &self,
        req: Request<PutClusterConfigRequest>,
    ) -> Result<Response<PutClusterConfigResponse>, Status> {
        let i = &self.inner;
        let req = req.into_inner();
        i.validate(&req.header)?;
        if !i.is_bootstrapped() {
            return Ok(Response::new(PutClusterConfigResponse {
                header: i.not_bootstrapped(),
            }));
        }
        let cfg = req
            .cluster
            .ok_or_else(|| Status::invalid_argument("a put-cluster-config request needs one"))?;
        if cfg.id != i.cluster_id {
            return Err(Status::invalid_argument(format!(
                "the config is for cluster {}, this is cluster {}",
                cfg.id, i.cluster_id
            )));
        }
        if cfg.max_peer_count == 0 {
            return Err(Status::invalid_argument(
                "max_peer_count must be at least 1",
            ));
        }
        i.storage.save_config(&cfg).map_err(unknown)?;
        i.cluster().set_max_replicas(cfg.max_peer_count as usize);
        info!(i.logger, "cluster config changed"; "max_peer_count" => cfg.max_peer_count);
        Ok(Response::new(PutClusterConfigResponse {
            header: i.header(),
        }))
    }

    async fn scatter_region(
        &self,
        req: Request<ScatterRegionRequest>,
    ) -> Result<Response<ScatterRegionResponse>, Status> {
        let i = &self.inner;
        i.validate(&req.get_ref().header)?;
        // TinyKV answers OK and does nothing; saying so is more honest.
        Ok(Response::new(ScatterRegionResponse {
            header: i.error_header(
                ErrorType::Unknown,
                "scatter-region is not supported by this scheduler",
            ),
        }))
    }

    async fn get_gc_safe_point(
        &self,
        req: Request<GetGcSafePointRequest>,
    ) -> Result<Response<GetGcSafePointResponse>, Status> {
        let i = &self.inner;
        i.validate(&req.get_ref().header)?;
        let safe_point = i.storage.gc_safe_point().map_err(unknown)?;
        Ok(Response::new(GetGcSafePointResponse {
            header: i.header(),
            safe_point,
        }))
    }

    async fn update_gc_safe_point(
        &self,
        req: Request<UpdateGcSafePointRequest>,
    ) -> Result<Response<UpdateGcSafePointResponse>, Status> {
        let i = &self.inner;
        let req = req.into_inner();
        i.validate(&req.header)?;
        // Off the cluster lock: the save is synced, and heartbeats need not wait for it.
        let new = i
            .storage
            .advance_gc_safe_point(req.safe_point)
            .map_err(unknown)?;
        Ok(Response::new(UpdateGcSafePointResponse {
            header: i.header(),
            new_safe_point: new,
        }))
    }

    async fn get_operator(
        &self,
        req: Request<GetOperatorRequest>,
    ) -> Result<Response<GetOperatorResponse>, Status> {
        let i = &self.inner;
        let req = req.into_inner();
        i.validate(&req.header)?;
        if !i.is_bootstrapped() {
            return Ok(Response::new(GetOperatorResponse {
                header: i.not_bootstrapped(),
                ..Default::default()
            }));
        }
        let c = i.cluster();
        let Some((op, status)) = c.get_operator_status(req.region_id) else {
            return Ok(Response::new(GetOperatorResponse {
                header: i.error_header(ErrorType::RegionNotFound, "Not Found"),
                ..Default::default()
            }));
        };
        Ok(Response::new(GetOperatorResponse {
            header: i.header(),
            region_id: req.region_id,
            desc: op.desc().as_bytes().to_vec(),
            status: status as i32,
            kind: op.kind().to_string().into_bytes(),
        }))
    }
}

/// A response stream fed by `f`, which runs as a task with the stream's sender.
fn async_stream<T, F, Fut>(f: F) -> BoxStream<T>
where
    T: Send + 'static,
    F: FnOnce(mpsc::UnboundedSender<Result<T, Status>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(f(tx));
    Box::pin(UnboundedReceiverStream::new(rx))
}

/// Serves the scheduler on `listener` until `shutdown` completes and then at most
/// [`crate::cmdline::SHUTDOWN_GRACE`] (the stores' heartbeat streams stay open as long as they
/// run): the gRPC service and the timer that runs the schedulers.
pub async fn serve(
    svc: SchedulerService,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let ticker = {
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(TICK_INTERVAL);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                t.tick().await;
                svc.tick();
            }
        })
    };
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let result = serve_with_grace(shutdown, |signal| {
        tonic::transport::Server::builder()
            .add_service(svc.into_server())
            .serve_with_incoming_shutdown(incoming, signal)
    })
    .await
    .unwrap_or(Ok(()))
    .map_err(ServerError::from);
    ticker.abort();
    result
}

/// Binds `addr`.
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener, ServerError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// A scheduler running in this process on a runtime of its own (for tests and tools): started by
/// [`RunningScheduler::start`], stopped by [`RunningScheduler::stop`] or when dropped.
pub struct RunningScheduler {
    addr: SocketAddr,
    cluster_id: u64,
    service: SchedulerService,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
}

impl RunningScheduler {
    /// Opens the state in `cfg.data_dir`, binds `cfg.addr` and serves on a thread of its own.
    pub fn start(cfg: ServerConfig, logger: Logger) -> Result<RunningScheduler, ServerError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("scheduler")
            .enable_all()
            .build()
            .map_err(ServerError::Runtime)?;
        let listener = rt.block_on(bind(&cfg.addr))?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: cfg.addr.clone(),
            source,
        })?;
        let svc = SchedulerService::open(&cfg, &addr.to_string(), logger)?;
        let cluster_id = svc.cluster_id();
        let service = svc.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("scheduler-main".into())
            .spawn(move || {
                rt.block_on(serve(svc, listener, async move {
                    let _ = stop_rx.await;
                }))
            })
            .map_err(ServerError::Runtime)?;
        Ok(RunningScheduler {
            addr,
            cluster_id,
            service,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The service it runs (to drive it directly in tests).
    pub fn service(&self) -> SchedulerService {
        self.service.clone()
    }

    /// Stops it and waits for it.
    pub fn stop(mut self) -> Result<(), ServerError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for RunningScheduler {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
