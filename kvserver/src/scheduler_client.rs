//! The store's client of the scheduler process (TinyKV's `kv/raftstore/scheduler_client/client.go`):
//! [`SchedulerConn`] makes the calls (async; the start-up and the address resolver use it), and
//! [`GrpcSchedulerClient`] is the raftstore's blocking `SchedulerClient` over it.
//!
//! - The cluster id comes from the header of the scheduler's `GetMembers` answer; every request
//!   then carries it (`RequestHeader { cluster_id }`), and a scheduler of another cluster refuses
//!   them.
//! - An error in an answer's header (`ResponseHeader.error`) becomes [`SchedulerError::Refused`]
//!   with the scheduler's type and message; a failed call, [`SchedulerError::Rpc`].
//! - An unreachable scheduler at start ([`SchedulerConn::connect`]) is retried with back-off for a
//!   bounded time, then fails with `cannot reach the scheduler at ADDR: ...`.
//! - Region heartbeats go up one long-lived `RegionHeartbeat` stream; the scheduler's answers
//!   (operators) come down it whenever it decides, and each is handed to a delivery callback
//!   (the store's mailbox, `StoreMsg::SchedulerResponse`). A broken stream is reopened with
//!   back-off; heartbeats sent meanwhile are dropped (they are periodic).
//!
//! The raftstore calls [`GrpcSchedulerClient`] on its scheduler worker thread, a plain thread: a
//! call blocks that thread on the server's async runtime (`Handle::block_on`), never a runtime
//! thread.

use std::sync::Arc;
use std::time::Duration;

use proto::metapb::{Peer, Region, Store, StoreState};
use proto::schedulerpb::{
    AllocIdRequest, AskSplitRequest, AskSplitResponse, BootstrapRequest, ErrorType,
    GetAllStoresRequest, GetGcSafePointRequest, GetMembersRequest, GetRegionRequest,
    GetStoreRequest, IsBootstrappedRequest, PutStoreRequest, RegionHeartbeatRequest,
    RegionHeartbeatResponse, RequestHeader, ResponseHeader, StoreHeartbeatRequest, StoreStats,
};
use scheduler::schedulerpb::scheduler_client::SchedulerClient as RpcClient;
use slog::{debug, info, warn, Logger};
use thiserror::Error;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::store_stats::StatsSource;

/// How long a connection attempt to the scheduler may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// First delay before a retry (start-up) or a new heartbeat stream.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest delay between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A heartbeat stream that lived this long was a working one: its end resets the back-off.
const STREAM_SETTLED: Duration = Duration::from_secs(5);
/// Region heartbeats queued for the stream before new ones are dropped.
const HEARTBEAT_QUEUE: usize = 1024;

/// Why a call to the scheduler failed.
#[derive(Debug, Error)]
pub enum SchedulerError {
    /// The address cannot be used for a connection.
    #[error("bad scheduler address {addr:?}: {reason}")]
    BadAddress {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The scheduler did not answer within the time start-up waits for it.
    #[error("cannot reach the scheduler at {addr}: {reason}")]
    Unreachable {
        /// The scheduler's address.
        addr: String,
        /// The last failure.
        reason: String,
    },
    /// The call failed (connection, timeout, or a gRPC status of the scheduler).
    #[error("scheduler at {addr}: {method} failed: {status}")]
    Rpc {
        /// The scheduler's address.
        addr: String,
        /// The method called.
        method: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status's message, or the transport's error.
        status: String,
    },
    /// The scheduler answered with an error in the response header.
    #[error("scheduler at {addr}: {method}: {} ({message})", kind.as_str_name())]
    Refused {
        /// The scheduler's address.
        addr: String,
        /// The method called.
        method: &'static str,
        /// The scheduler's error type.
        kind: ErrorType,
        /// The scheduler's message.
        message: String,
    },
    /// The answer lacks something it must hold.
    #[error("scheduler at {addr}: {method}: the answer has no {what}")]
    Incomplete {
        /// The scheduler's address.
        addr: String,
        /// The method called.
        method: &'static str,
        /// What is missing.
        what: &'static str,
    },
}

impl SchedulerError {
    /// The scheduler's error type, when it refused the request in the answer's header.
    pub fn kind(&self) -> Option<ErrorType> {
        match self {
            SchedulerError::Refused { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether the failure may pass by itself (the scheduler unreachable or slow), so the
    /// request is worth repeating.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SchedulerError::Rpc {
                code: tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::Unknown,
                ..
            }
        )
    }
}

/// A result of a scheduler call.
pub type Result<T> = std::result::Result<T, SchedulerError>;

/// A connection to the scheduler, with the cluster id learned from it. Cheap to clone (one
/// HTTP/2 connection underneath, re-established by tonic when it breaks).
#[derive(Clone)]
pub struct SchedulerConn {
    addr: Arc<str>,
    cluster_id: u64,
    /// For unary calls, each bounded by `CALL_TIMEOUT`.
    client: RpcClient<Channel>,
    /// For the heartbeat stream, which lives as long as it can: a connection of its own,
    /// without the per-call timeout.
    stream_client: RpcClient<Channel>,
}

/// Checks an answer's header: its error, if any, becomes [`SchedulerError::Refused`].
fn check_header(addr: &str, method: &'static str, header: Option<&ResponseHeader>) -> Result<()> {
    match header.and_then(|h| h.error.as_ref()) {
        Some(e) if e.r#type() != ErrorType::Ok => Err(SchedulerError::Refused {
            addr: addr.to_string(),
            method,
            kind: e.r#type(),
            message: e.message.clone(),
        }),
        _ => Ok(()),
    }
}

impl SchedulerConn {
    /// Connects to the scheduler at `addr` (`HOST:PORT`) and learns its cluster id
    /// (`GetMembers`). An unreachable scheduler is retried with back-off for up to `wait`, with a
    /// log line when it first fails; then [`SchedulerError::Unreachable`].
    pub async fn connect(addr: &str, wait: Duration, logger: &Logger) -> Result<SchedulerConn> {
        let bad = |reason: String| SchedulerError::BadAddress {
            addr: addr.to_string(),
            reason,
        };
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let mut conn = SchedulerConn {
            addr: addr.into(),
            cluster_id: 0,
            client: RpcClient::new(endpoint.clone().timeout(CALL_TIMEOUT).connect_lazy()),
            stream_client: RpcClient::new(endpoint.connect_lazy()),
        };
        let deadline = Instant::now() + wait;
        let mut backoff = BACKOFF_MIN;
        let mut warned = false;
        loop {
            let err = match conn.get_members().await {
                Ok(0) => SchedulerError::Incomplete {
                    addr: addr.to_string(),
                    method: "GetMembers",
                    what: "cluster id",
                },
                Ok(id) => {
                    conn.cluster_id = id;
                    info!(logger, "connected to the scheduler"; "scheduler" => addr,
                        "cluster_id" => id);
                    return Ok(conn);
                }
                Err(e) => e,
            };
            if !err.is_transient() {
                return Err(err);
            }
            if Instant::now() + backoff > deadline {
                let reason = match err {
                    SchedulerError::Rpc { status, .. } => status,
                    other => other.to_string(),
                };
                return Err(SchedulerError::Unreachable {
                    addr: addr.to_string(),
                    reason,
                });
            }
            if !std::mem::replace(&mut warned, true) {
                warn!(logger, "the scheduler is not reachable; retrying";
                    "scheduler" => addr, "retry_for_s" => wait.as_secs(), "err" => %err);
            } else {
                debug!(logger, "the scheduler is still not reachable"; "err" => %err);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// The scheduler's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The cluster's id, as the scheduler gave it.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    fn header(&self) -> Option<RequestHeader> {
        Some(RequestHeader {
            cluster_id: self.cluster_id,
        })
    }

    fn rpc_error(&self, method: &'static str, s: tonic::Status) -> SchedulerError {
        SchedulerError::Rpc {
            addr: self.addr.to_string(),
            method,
            code: s.code(),
            status: if s.message().is_empty() {
                format!("{:?}", s.code())
            } else {
                s.message().to_string()
            },
        }
    }

    fn incomplete(&self, method: &'static str, what: &'static str) -> SchedulerError {
        SchedulerError::Incomplete {
            addr: self.addr.to_string(),
            method,
            what,
        }
    }

    /// `GetMembers`: the cluster id of the scheduler's answer header.
    async fn get_members(&self) -> Result<u64> {
        let resp = self
            .client
            .clone()
            .get_members(GetMembersRequest {
                header: self.header(),
            })
            .await
            .map_err(|s| self.rpc_error("GetMembers", s))?
            .into_inner();
        check_header(&self.addr, "GetMembers", resp.header.as_ref())?;
        Ok(resp.header.map_or(0, |h| h.cluster_id))
    }

    /// Whether the cluster has been bootstrapped (its first region created).
    pub async fn is_bootstrapped(&self) -> Result<bool> {
        let resp = self
            .client
            .clone()
            .is_bootstrapped(IsBootstrappedRequest {
                header: self.header(),
            })
            .await
            .map_err(|s| self.rpc_error("IsBootstrapped", s))?
            .into_inner();
        check_header(&self.addr, "IsBootstrapped", resp.header.as_ref())?;
        Ok(resp.bootstrapped)
    }

    /// Bootstraps the cluster with `store`; a cluster bootstrapped already is
    /// [`SchedulerError::Refused`] with `ALREADY_BOOTSTRAPPED`.
    pub async fn bootstrap(&self, store: Store) -> Result<()> {
        let resp = self
            .client
            .clone()
            .bootstrap(BootstrapRequest {
                header: self.header(),
                store: Some(store),
            })
            .await
            .map_err(|s| self.rpc_error("Bootstrap", s))?
            .into_inner();
        check_header(&self.addr, "Bootstrap", resp.header.as_ref())
    }

    /// A new id, unique in the cluster.
    pub async fn alloc_id(&self) -> Result<u64> {
        let resp = self
            .client
            .clone()
            .alloc_id(AllocIdRequest {
                header: self.header(),
            })
            .await
            .map_err(|s| self.rpc_error("AllocID", s))?
            .into_inner();
        check_header(&self.addr, "AllocID", resp.header.as_ref())?;
        if resp.id == 0 {
            return Err(self.incomplete("AllocID", "id"));
        }
        Ok(resp.id)
    }

    /// Registers `store` (its id and address) or updates it.
    pub async fn put_store(&self, store: Store) -> Result<()> {
        let resp = self
            .client
            .clone()
            .put_store(PutStoreRequest {
                header: self.header(),
                store: Some(store),
            })
            .await
            .map_err(|s| self.rpc_error("PutStore", s))?
            .into_inner();
        check_header(&self.addr, "PutStore", resp.header.as_ref())
    }

    /// The store `store_id` as the scheduler knows it.
    pub async fn get_store(&self, store_id: u64) -> Result<Store> {
        let resp = self
            .client
            .clone()
            .get_store(GetStoreRequest {
                header: self.header(),
                store_id,
            })
            .await
            .map_err(|s| self.rpc_error("GetStore", s))?
            .into_inner();
        check_header(&self.addr, "GetStore", resp.header.as_ref())?;
        resp.store
            .ok_or_else(|| self.incomplete("GetStore", "store"))
    }

    /// Every store the scheduler knows, tombstones included.
    pub async fn get_all_stores(&self) -> Result<Vec<Store>> {
        let resp = self
            .client
            .clone()
            .get_all_stores(GetAllStoresRequest {
                header: self.header(),
                exclude_tombstone_stores: false,
            })
            .await
            .map_err(|s| self.rpc_error("GetAllStores", s))?
            .into_inner();
        check_header(&self.addr, "GetAllStores", resp.header.as_ref())?;
        Ok(resp.stores)
    }

    /// The region holding `key` and its leader, as far as the scheduler knows them (None before
    /// any heartbeat told it about that region).
    pub async fn get_region(&self, key: &[u8]) -> Result<(Option<Region>, Option<Peer>)> {
        let resp = self
            .client
            .clone()
            .get_region(GetRegionRequest {
                header: self.header(),
                region_key: key.to_vec(),
            })
            .await
            .map_err(|s| self.rpc_error("GetRegion", s))?
            .into_inner();
        check_header(&self.addr, "GetRegion", resp.header.as_ref())?;
        Ok((resp.region, resp.leader))
    }

    /// Ids for a split of `region`: the new region's, and one per peer.
    pub async fn ask_split(&self, region: &Region) -> Result<AskSplitResponse> {
        let resp = self
            .client
            .clone()
            .ask_split(AskSplitRequest {
                header: self.header(),
                region: Some(region.clone()),
            })
            .await
            .map_err(|s| self.rpc_error("AskSplit", s))?
            .into_inner();
        check_header(&self.addr, "AskSplit", resp.header.as_ref())?;
        if resp.new_region_id == 0 || resp.new_peer_ids.len() != region.peers.len() {
            return Err(self.incomplete("AskSplit", "id for every peer of the region"));
        }
        Ok(resp)
    }

    /// The cluster's GC safe point: no transaction reads below it any more.
    pub async fn gc_safe_point(&self) -> Result<u64> {
        let resp = self
            .client
            .clone()
            .get_gc_safe_point(GetGcSafePointRequest {
                header: self.header(),
            })
            .await
            .map_err(|s| self.rpc_error("GetGCSafePoint", s))?
            .into_inner();
        check_header(&self.addr, "GetGCSafePoint", resp.header.as_ref())?;
        Ok(resp.safe_point)
    }

    /// Reports the store's statistics.
    pub async fn store_heartbeat(&self, stats: StoreStats) -> Result<()> {
        let resp = self
            .client
            .clone()
            .store_heartbeat(StoreHeartbeatRequest {
                header: self.header(),
                stats: Some(stats),
            })
            .await
            .map_err(|s| self.rpc_error("StoreHeartbeat", s))?
            .into_inner();
        check_header(&self.addr, "StoreHeartbeat", resp.header.as_ref())
    }

    /// Repeats `call` while it fails transiently, with back-off, for up to `wait`: for start-up
    /// steps, where a scheduler restarting must not fail the store.
    pub async fn retry<T, F, Fut>(&self, wait: Duration, logger: &Logger, mut call: F) -> Result<T>
    where
        F: FnMut(SchedulerConn) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + wait;
        let mut backoff = BACKOFF_MIN;
        loop {
            match call(self.clone()).await {
                Err(e) if e.is_transient() && Instant::now() + backoff <= deadline => {
                    warn!(logger, "scheduler call failed; retrying"; "err" => %e);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                r => return r,
            }
        }
    }

    /// Starts the region heartbeat stream on `rt` (callable from outside the runtime): requests
    /// sent on the returned channel go up the stream (their header set here), and every answer
    /// without an error is handed to `deliver`. The stream is reopened with back-off whenever it
    /// fails; the task ends once the channel's senders are all dropped.
    fn region_heartbeats_on(
        &self,
        rt: &Handle,
        deliver: Deliver,
        logger: &Logger,
    ) -> mpsc::Sender<RegionHeartbeatRequest> {
        let (tx, rx) = mpsc::channel(HEARTBEAT_QUEUE);
        rt.spawn(heartbeat_loop(self.clone(), rx, deliver, logger.clone()));
        tx
    }
}

/// Where the scheduler's answers to region heartbeats go.
pub type Deliver = Arc<dyn Fn(RegionHeartbeatResponse) + Send + Sync>;

/// Keeps a `RegionHeartbeat` stream open, fed from `rx`, until the senders of `rx` are dropped.
async fn heartbeat_loop(
    conn: SchedulerConn,
    mut rx: mpsc::Receiver<RegionHeartbeatRequest>,
    deliver: Deliver,
    logger: Logger,
) {
    let mut backoff = BACKOFF_MIN;
    // Since the last stream that lived: whether its failure was logged as a warning (repeats
    // are debug lines).
    let mut failing = false;
    loop {
        let opened = Instant::now();
        let Some(ended) =
            run_heartbeat_stream(&conn, &mut rx, &deliver, &mut failing, &logger).await
        else {
            return;
        };
        if opened.elapsed() >= STREAM_SETTLED {
            backoff = BACKOFF_MIN;
        }
        let why = match ended {
            Ok(()) => "closed by the scheduler".to_string(),
            Err(e) => e,
        };
        if std::mem::replace(&mut failing, true) {
            debug!(logger, "region heartbeat stream still failing"; "err" => why);
        } else {
            warn!(logger, "region heartbeat stream ended; reopening it with back-off";
                "scheduler" => conn.addr(), "err" => why);
        }
        // Heartbeats queued meanwhile are dropped: the next ones are due soon.
        let deadline = Instant::now() + backoff;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                m = rx.recv() => if m.is_none() { return },
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One `RegionHeartbeat` stream: forwards requests from `rx` and delivers answers until the
/// stream ends (how it ended) or the senders of `rx` are gone (None). `failing` (the last stream
/// failed) is cleared once this one is open.
async fn run_heartbeat_stream(
    conn: &SchedulerConn,
    rx: &mut mpsc::Receiver<RegionHeartbeatRequest>,
    deliver: &Deliver,
    failing: &mut bool,
    logger: &Logger,
) -> Option<std::result::Result<(), String>> {
    let mut client = conn.stream_client.clone();
    let (stx, srx) = mpsc::channel::<RegionHeartbeatRequest>(64);
    let forward = |mut req: RegionHeartbeatRequest| {
        req.header = conn.header();
        // A full stream (the scheduler reading slowly) drops the heartbeat: it is periodic.
        stx.try_send(req).is_ok() || !stx.is_closed()
    };
    let call = client.region_heartbeat(ReceiverStream::new(srx));
    tokio::pin!(call);
    // The answer stream opens once the scheduler answers the call; requests flow meanwhile (a
    // server may wait for the first one before it answers).
    let mut inbound = loop {
        tokio::select! {
            r = &mut call => match r {
                Ok(resp) => break resp.into_inner(),
                Err(s) => return Some(Err(s.message().to_string())),
            },
            req = rx.recv() => {
                if !forward(req?) {
                    return Some(Err("the request stream closed".into()));
                }
            }
        }
    };
    if std::mem::take(failing) {
        info!(logger, "region heartbeat stream open again"; "scheduler" => conn.addr());
    } else {
        debug!(logger, "region heartbeat stream open"; "scheduler" => conn.addr());
    }
    loop {
        tokio::select! {
            m = inbound.message() => match m {
                Ok(Some(resp)) => {
                    if let Some(e) = resp.header.as_ref().and_then(|h| h.error.as_ref()) {
                        if e.r#type() != ErrorType::Ok {
                            debug!(logger, "the scheduler refused a region heartbeat";
                                "region_id" => resp.region_id, "type" => e.r#type().as_str_name(),
                                "err" => &e.message);
                            continue;
                        }
                    }
                    deliver(resp);
                }
                Ok(None) => return Some(Ok(())),
                Err(s) => return Some(Err(s.message().to_string())),
            },
            req = rx.recv() => {
                if !forward(req?) {
                    return Some(Err("the request stream closed".into()));
                }
            }
        }
    }
}

/// The raftstore's scheduler client over gRPC: each call blocks the calling thread (the store's
/// scheduler worker) on the async runtime `rt`; region heartbeats go to the heartbeat stream;
/// store heartbeats get the store's disk figures ([`StatsSource`]) filled in.
pub struct GrpcSchedulerClient {
    conn: SchedulerConn,
    rt: Handle,
    heartbeats: mpsc::Sender<RegionHeartbeatRequest>,
    stats: StatsSource,
    /// Whether the last store heartbeat failed: an outage of the scheduler is logged once as a
    /// warning, its repeats as debug lines, and its end.
    store_heartbeat_failing: bool,
    logger: Logger,
}

impl GrpcSchedulerClient {
    /// A client over `conn` whose calls run on `rt`; answers to region heartbeats go to
    /// `deliver`, store heartbeats are completed from `stats`.
    pub fn new(
        conn: SchedulerConn,
        rt: &Handle,
        deliver: Deliver,
        stats: StatsSource,
        logger: &Logger,
    ) -> GrpcSchedulerClient {
        let heartbeats = conn.region_heartbeats_on(rt, deliver, logger);
        GrpcSchedulerClient {
            conn,
            rt: rt.clone(),
            heartbeats,
            stats,
            store_heartbeat_failing: false,
            logger: logger.clone(),
        }
    }

    /// Runs `f` to completion on the runtime, blocking this thread; refused on a thread of an
    /// async runtime (blocking it could stall the very tasks the call waits for).
    fn block_on<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> raftstore::Result<T> {
        if Handle::try_current().is_ok() {
            return Err(raftstore::Error::Scheduler(format!(
                "{what}: the blocking scheduler client was called on an async runtime thread"
            )));
        }
        self.rt
            .block_on(f)
            .map_err(|e| raftstore::Error::Scheduler(e.to_string()))
    }
}

impl raftstore::scheduler::SchedulerClient for GrpcSchedulerClient {
    fn region_heartbeat(&mut self, req: RegionHeartbeatRequest) -> raftstore::Result<()> {
        let region_id = req.region.as_ref().map_or(0, |r| r.id);
        self.heartbeats.try_send(req).map_err(|e| {
            raftstore::Error::Scheduler(format!(
                "region {region_id}'s heartbeat not queued for the scheduler: {e}"
            ))
        })
    }

    /// A failure is logged here (the next heartbeat is due soon, and an outage of the
    /// scheduler should not log a warning per heartbeat), not returned.
    fn store_heartbeat(&mut self, mut stats: StoreStats) -> raftstore::Result<()> {
        self.stats.fill(&mut stats, &self.logger);
        let conn = self.conn.clone();
        match self.block_on("store heartbeat", conn.store_heartbeat(stats)) {
            Ok(()) => {
                if std::mem::take(&mut self.store_heartbeat_failing) {
                    info!(self.logger, "store heartbeats reach the scheduler again";
                        "scheduler" => self.conn.addr());
                }
            }
            Err(e) => {
                if std::mem::replace(&mut self.store_heartbeat_failing, true) {
                    debug!(self.logger, "store heartbeat failed again"; "err" => %e);
                } else {
                    warn!(self.logger, "store heartbeat failed; repeats are logged at debug \
                        level until one succeeds"; "err" => %e);
                }
            }
        }
        Ok(())
    }

    fn ask_split(&mut self, region: &Region) -> raftstore::Result<AskSplitResponse> {
        let conn = self.conn.clone();
        let region = region.clone();
        self.block_on("ask split", async move { conn.ask_split(&region).await })
    }

    fn alloc_id(&mut self) -> raftstore::Result<u64> {
        let conn = self.conn.clone();
        self.block_on("alloc id", async move { conn.alloc_id().await })
    }

    fn get_region(&mut self, key: &[u8]) -> raftstore::Result<(Region, Option<Peer>)> {
        let conn = self.conn.clone();
        let owned = key.to_vec();
        let (region, leader) =
            self.block_on("get region", async move { conn.get_region(&owned).await })?;
        let region = region.ok_or_else(|| {
            raftstore::Error::Scheduler(format!(
                "the scheduler at {} knows no region holding {key:?}",
                self.conn.addr()
            ))
        })?;
        Ok((region, leader))
    }
}

/// Whether a store the scheduler returned can be sent messages: not a tombstone, with an
/// address.
pub fn usable_address(store: &Store) -> Option<&str> {
    (store.state() != StoreState::Tombstone && !store.address.is_empty())
        .then_some(store.address.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::schedulerpb::Error as PbError;

    #[test]
    fn header_errors_become_typed_errors() {
        assert!(check_header("h:1", "PutStore", None).is_ok());
        let ok = ResponseHeader {
            cluster_id: 7,
            error: None,
        };
        assert!(check_header("h:1", "PutStore", Some(&ok)).is_ok());
        let refused = ResponseHeader {
            cluster_id: 7,
            error: Some(PbError {
                r#type: ErrorType::AlreadyBootstrapped as i32,
                message: "cluster is already bootstrapped".into(),
            }),
        };
        let e = check_header("h:1", "Bootstrap", Some(&refused)).unwrap_err();
        assert_eq!(e.kind(), Some(ErrorType::AlreadyBootstrapped));
        assert!(!e.is_transient());
        let text = e.to_string();
        assert!(
            text.contains("ALREADY_BOOTSTRAPPED") && text.contains("cluster is already"),
            "{text}"
        );
    }

    #[test]
    fn tombstones_and_empty_addresses_are_not_usable() {
        let mut s = Store {
            id: 2,
            address: "h:2".into(),
            state: StoreState::Up as i32,
        };
        assert_eq!(usable_address(&s), Some("h:2"));
        s.state = StoreState::Tombstone as i32;
        assert_eq!(usable_address(&s), None);
        s.state = StoreState::Offline as i32;
        s.address.clear();
        assert_eq!(usable_address(&s), None);
    }

    /// Nothing listens: start-up retries for the time it was given, then fails with one line
    /// naming the address.
    #[tokio::test]
    async fn an_unreachable_scheduler_fails_after_the_wait() {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let e = SchedulerConn::connect(&addr, Duration::from_millis(500), &logger)
            .await
            .err()
            .expect("nothing listens there");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("cannot reach the scheduler at {addr}: ")),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }
}
