//! The `TinyKv` gRPC service: the raw API for clients over a [`Storage`], and the store-to-store
//! `Raft` stream into the local store's mailbox and `Snapshot` stream into its snapshot files
//! (verified before the message reaches the store).
//!
//! Bad input is refused with `INVALID_ARGUMENT` and a message (empty key, key over
//! [`MAX_KEY_SIZE`], value over the configured limit, unknown column family); region errors go in
//! the response's `region_error`, so TinyKV clients can retry elsewhere. A scan whose answer
//! would outgrow one gRPC message is refused with `OUT_OF_RANGE`. Every raw response carries
//! the metadata `x-tinykv-store-id`; a NotLeader answer whose leader is known also carries
//! `x-tinykv-leader-addr`, the leader store's address, so clients without a scheduler can follow it.
//! `BatchRaw` (this project's extension) serves many raw requests on one stream, each exactly as
//! its unary call would, with the unary call's gRPC status carried in the answer.
//! The transactional methods (Project 4: `KvGet`, `KvPrewrite`, `KvCommit`, `KvScan`,
//! `KvCheckTxnStatus`, `KvBatchRollback`, `KvResolveLock`) are served by
//! [`crate::transaction::Transactions`] over the same storage, with the same region errors,
//! leader hints and refusal of bad input.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use crate::resolver::StoreResolver;
use crate::store_task::StoreRouter;
use prost::Message;
use proto::errorpb;
use proto::kvrpcpb::{
    BatchRollbackRequest, BatchRollbackResponse, CheckTxnStatusRequest, CheckTxnStatusResponse,
    CommitRequest, CommitResponse, GetRequest, GetResponse, KvPair, PrewriteRequest,
    PrewriteResponse, RawDeleteRequest, RawDeleteResponse, RawGetRequest, RawGetResponse,
    RawPutRequest, RawPutResponse, RawScanRequest, RawScanResponse, ResolveLockRequest,
    ResolveLockResponse, ScanRequest, ScanResponse,
};
use proto::raft_serverpb::{Done, RaftMessage, SnapshotChunk};
use raftstore::runtime::StoreMsg;
use raftstore::SnapManager;
use slog::{debug, info, warn, Logger};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::limits::{
    ENTRY_OVERHEAD, MAX_BATCH_ANSWERS, MAX_BATCH_BYTES, MAX_BATCH_INFLIGHT, MAX_GRPC_MESSAGE,
    MAX_KEY_SIZE,
};
use crate::storage::{check_cf, Modify, Storage, StorageError};
use crate::tinykvpb::tiny_kv_server::TinyKv;
use crate::tinykvpb::{
    raw_request, raw_response, BatchRawRequest, BatchRawResponse, RawRequest, RawResponse,
};
use crate::transaction::{Transactions, TxnError};

/// Metadata key: the id of the store that answered.
pub const STORE_ID_HEADER: &str = "x-tinykv-store-id";
/// Metadata key: the address of the region's leader, on a NotLeader answer.
pub const LEADER_ADDR_HEADER: &str = "x-tinykv-leader-addr";

/// The TinyKv service over storage `S`. Clones share everything.
pub struct TinyKvService<S: Storage> {
    inner: Arc<Inner<S>>,
}

impl<S: Storage> Clone for TinyKvService<S> {
    fn clone(&self) -> Self {
        TinyKvService {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S> {
    txn: Transactions<S>,
    store_id: u64,
    raft_router: Option<(StoreRouter, SnapManager)>,
    store_addrs: StoreResolver,
    max_value_size: usize,
    logger: Logger,
}

impl<S: Storage> TinyKvService<S> {
    /// A service over `storage` on store `store_id`. `raft_router` receives the `Raft` stream's
    /// messages (None: a standalone server, which refuses them); `store_addrs` maps store ids to
    /// addresses for leader hints (a map, or the resolver the transport fills); values over
    /// `max_value_size` bytes are refused.
    pub fn new(
        storage: S,
        store_id: u64,
        raft_router: Option<(StoreRouter, SnapManager)>,
        store_addrs: impl Into<StoreResolver>,
        max_value_size: usize,
        logger: Logger,
    ) -> Self {
        TinyKvService {
            inner: Arc::new(Inner {
                txn: Transactions::new(storage, max_value_size),
                store_id,
                raft_router,
                store_addrs: store_addrs.into(),
                max_value_size,
                logger,
            }),
        }
    }

    /// The transactional commands this service runs.
    pub fn transactions(&self) -> &Transactions<S> {
        &self.inner.txn
    }

    /// The address of the leader named by a NotLeader `region_error`, when it is known.
    fn leader_addr(&self, region_error: Option<&errorpb::Error>) -> Option<String> {
        let store = region_error?.not_leader.as_ref()?.leader.as_ref()?.store_id;
        self.inner.store_addrs.cached(store)
    }

    /// Wraps a response with the store-id header, and `leader`'s address (see
    /// [`Self::leader_addr`]) when given.
    fn respond<T>(&self, msg: T, leader: Option<&str>) -> Response<T> {
        let mut resp = Response::new(msg);
        let md = resp.metadata_mut();
        md.insert(STORE_ID_HEADER, MetadataValue::from(self.inner.store_id));
        if let Some(v) = leader.and_then(|a| a.parse().ok()) {
            md.insert(LEADER_ADDR_HEADER, v);
        }
        resp
    }

    /// RawGet (Project 1): the value of `req.key` in column family `cf`, read through a
    /// [`StorageReader`](crate::storage::StorageReader) of the storage (`self.inner.txn.storage()`);
    /// `not_found` is set when the key is missing. A storage error goes in `region_error` when
    /// [`split_error`] makes it one, else it is the call's gRPC status.
    async fn get(&self, req: RawGetRequest) -> Result<RawGetResponse, Status> {
        check_key(&req.key)?;
        let cf = check_cf(&req.cf).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let ctx = req.context.unwrap_or_default();
        // STAGE 1: read req.key from cf through a storage reader; answer the value or not_found, a storage error in region_error
        let read = async {
            let reader = self.inner.txn.storage().reader(&ctx, &req.key).await?;
            reader.get_cf(cf, &req.key)
        };
        let mut resp = RawGetResponse::default();
        match read.await {
            Ok(Some(v)) => resp.value = v,
            Ok(None) => resp.not_found = true,
            Err(e) => resp.region_error = Some(split_error(e)?),
        }
        Ok(resp)
        // END STAGE 1
    }

    /// RawPut (Project 1): sets `req.key` to `req.value` in column family `cf`, written to the
    /// storage as a batch of one [`Modify`]. A storage error goes in `region_error` when
    /// [`split_error`] makes it one, else it is the call's gRPC status.
    async fn put(&self, req: RawPutRequest) -> Result<RawPutResponse, Status> {
        check_key(&req.key)?;
        self.check_value(&req.value)?;
        let cf = check_cf(&req.cf).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let ctx = req.context.unwrap_or_default();
        // STAGE 1: write one Modify::Put of the key and value in cf to the storage; a storage error goes in region_error
        let m = Modify::Put {
            cf: cf.to_string(),
            key: req.key,
            value: req.value,
        };
        let mut resp = RawPutResponse::default();
        if let Err(e) = self.inner.txn.storage().write(&ctx, vec![m]).await {
            resp.region_error = Some(split_error(e)?);
        }
        Ok(resp)
        // END STAGE 1
    }

    /// RawDelete (Project 1): removes `req.key` from column family `cf`, written to the storage
    /// as a batch of one [`Modify`]. A storage error goes in `region_error` when [`split_error`]
    /// makes it one, else it is the call's gRPC status.
    async fn delete(&self, req: RawDeleteRequest) -> Result<RawDeleteResponse, Status> {
        check_key(&req.key)?;
        let cf = check_cf(&req.cf).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let ctx = req.context.unwrap_or_default();
        // STAGE 1: write one Modify::Delete of the key in cf to the storage; a storage error goes in region_error
        let m = Modify::Delete {
            cf: cf.to_string(),
            key: req.key,
        };
        let mut resp = RawDeleteResponse::default();
        if let Err(e) = self.inner.txn.storage().write(&ctx, vec![m]).await {
            resp.region_error = Some(split_error(e)?);
        }
        Ok(resp)
        // END STAGE 1
    }

    /// RawScan (Project 1): the pairs of column family `cf` from `req.start_key` on, in key
    /// order, at most `req.limit` of them, read through one
    /// [`StorageReader`](crate::storage::StorageReader) of the storage. The answer must fit in
    /// one gRPC message: the size of the pairs collected is counted in `bytes` (a pair's encoded
    /// length plus 8), the scan stops once it passes `max_bytes`, and such an answer is then
    /// refused. A storage error goes in `region_error` when [`split_error`] makes it one, else
    /// it is the call's gRPC status.
    async fn scan(&self, req: RawScanRequest) -> Result<RawScanResponse, Status> {
        if req.start_key.len() > MAX_KEY_SIZE {
            return Err(Status::invalid_argument(format!(
                "start key of {} bytes is over the limit of {MAX_KEY_SIZE} bytes",
                req.start_key.len()
            )));
        }
        let cf = check_cf(&req.cf).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut resp = RawScanResponse::default();
        if req.limit == 0 {
            return Ok(resp);
        }
        let ctx = req.context.unwrap_or_default();
        let limit = req.limit as usize;
        // The answer must fit in one gRPC message (unary or batched): a scan that would outgrow
        // it is refused, not cut short (a short answer reads as the end of the range).
        let max_bytes = MAX_GRPC_MESSAGE - ENTRY_OVERHEAD;
        let mut bytes = 0;
        // STAGE 1: collect up to limit pairs of cf from req.start_key into resp.kvs through a storage reader, counting their size in bytes (stop past max_bytes); a storage error goes in region_error
        let scan = async {
            let storage = self.inner.txn.storage();
            let reader = storage.reader(&ctx, &req.start_key).await?;
            let mut kvs = Vec::new();
            reader.scan_cf(cf, &req.start_key, &mut |k, v| {
                let pair = KvPair {
                    error: None,
                    key: k.to_vec(),
                    value: v.to_vec(),
                };
                bytes += pair.encoded_len() + 8;
                kvs.push(pair);
                kvs.len() < limit && bytes <= max_bytes
            })?;
            Ok::<_, StorageError>(kvs)
        };
        match scan.await {
            Ok(kvs) => resp.kvs = kvs,
            Err(e) => resp.region_error = Some(split_error(e)?),
        }
        // END STAGE 1
        if bytes > max_bytes {
            return Err(Status::out_of_range(format!(
                "the scan's answer reached {bytes} bytes, over the message limit of {max_bytes}: \
                 ask for fewer pairs"
            )));
        }
        Ok(resp)
    }

    /// Serves one request of a BatchRaw stream, the way its unary call would.
    async fn serve_one(&self, req: RawRequest) -> RawResponse {
        let answer = match req.cmd {
            None => Err(Status::invalid_argument(
                "a batched request must name a command",
            )),
            Some(raw_request::Cmd::Get(r)) => self.get(r).await.map(raw_response::Cmd::Get),
            Some(raw_request::Cmd::Put(r)) => self.put(r).await.map(raw_response::Cmd::Put),
            Some(raw_request::Cmd::Delete(r)) => {
                self.delete(r).await.map(raw_response::Cmd::Delete)
            }
            Some(raw_request::Cmd::Scan(r)) => self.scan(r).await.map(raw_response::Cmd::Scan),
        };
        match answer {
            Ok(cmd) => RawResponse {
                leader_addr: self.leader_addr(cmd.region_error()).unwrap_or_default(),
                cmd: Some(cmd),
                code: 0,
                message: String::new(),
            },
            Err(status) => RawResponse {
                cmd: None,
                code: status.code() as i32,
                message: status.message().to_string(),
                leader_addr: String::new(),
            },
        }
    }

    fn check_value(&self, value: &[u8]) -> Result<(), Status> {
        if value.len() > self.inner.max_value_size {
            return Err(Status::invalid_argument(format!(
                "value of {} bytes is over the limit of {} bytes (the raft entry limit less {} bytes)",
                value.len(),
                self.inner.max_value_size,
                ENTRY_OVERHEAD
            )));
        }
        Ok(())
    }
}

fn check_key(key: &[u8]) -> Result<(), Status> {
    if key.is_empty() {
        return Err(Status::invalid_argument("key must not be empty"));
    }
    if key.len() > MAX_KEY_SIZE {
        return Err(Status::invalid_argument(format!(
            "key of {} bytes is over the limit of {MAX_KEY_SIZE} bytes",
            key.len()
        )));
    }
    Ok(())
}

impl raw_response::Cmd {
    /// The answer's region error, if it has one.
    pub fn region_error(&self) -> Option<&errorpb::Error> {
        match self {
            raw_response::Cmd::Get(r) => r.region_error.as_ref(),
            raw_response::Cmd::Put(r) => r.region_error.as_ref(),
            raw_response::Cmd::Delete(r) => r.region_error.as_ref(),
            raw_response::Cmd::Scan(r) => r.region_error.as_ref(),
        }
    }
}

/// The gRPC status of a transactional command that could not be answered.
fn txn_status(e: TxnError) -> Status {
    match e {
        TxnError::InvalidArgument(m) => Status::invalid_argument(m),
        TxnError::Storage(e) => match split_error(e) {
            Ok(region) => {
                Status::internal(format!("an unexpected region error: {}", region.message))
            }
            Err(status) => status,
        },
        TxnError::Corrupt(e) => Status::internal(e.to_string()),
    }
}

/// Splits a storage error into a region error (for the response) or a gRPC status.
fn split_error(e: StorageError) -> Result<errorpb::Error, Status> {
    match e {
        StorageError::Region(e) => Ok(*e),
        StorageError::InvalidArgument(m) => Err(Status::invalid_argument(m)),
        e @ (StorageError::Timeout(_) | StorageError::ShuttingDown) => {
            Err(Status::unavailable(e.to_string()))
        }
        e @ StorageError::Engine(_) => Err(Status::internal(e.to_string())),
    }
}

/// A finished request of a BatchRaw stream: its id, its answer, and its slot among the requests
/// in progress, which is given back only once the answer is in an outgoing message (so a client
/// that reads no answers stops the server from reading more requests).
type Answered = (u64, RawResponse, OwnedSemaphorePermit);

/// The answer stream of one BatchRaw call: each item carries every answer finished since the
/// last one (at most [`MAX_BATCH_ANSWERS`] and [`MAX_BATCH_BYTES`], or one larger answer alone),
/// so answers that finish together share a message.
struct BatchAnswers {
    rx: mpsc::UnboundedReceiver<Result<Answered, Status>>,
    /// An answer that did not fit in the last message: the first of the next.
    carry: Option<Answered>,
    /// An error seen while collecting a message: the stream's last item, after that message.
    error: Option<Status>,
    done: bool,
}

/// The answer stream type of `BatchRaw` (what tonic's generated trait asks for).
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl Stream for BatchAnswers {
    type Item = Result<BatchRawResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(status) = self.error.take() {
            self.done = true;
            return Poll::Ready(Some(Err(status)));
        }
        let first = match self.carry.take() {
            Some(a) => a,
            None => match ready!(self.rx.poll_recv(cx)) {
                None => return Poll::Ready(None),
                Some(Err(status)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                Some(Ok(a)) => a,
            },
        };
        let mut out = BatchRawResponse::default();
        let mut bytes = first.1.encoded_len();
        out.request_ids.push(first.0);
        out.responses.push(first.1);
        // The slots are given back when this message is handed to the transport.
        let mut slots = vec![first.2];
        while out.responses.len() < MAX_BATCH_ANSWERS {
            match self.rx.try_recv() {
                Ok(Ok((id, r, slot))) => {
                    let len = r.encoded_len();
                    if bytes + len > MAX_BATCH_BYTES {
                        self.carry = Some((id, r, slot));
                        break;
                    }
                    bytes += len;
                    out.request_ids.push(id);
                    out.responses.push(r);
                    slots.push(slot);
                }
                // An error ends the stream; it is seen by the next poll, after these answers.
                Ok(Err(status)) => {
                    self.error = Some(status);
                    break;
                }
                Err(_) => break,
            }
        }
        drop(slots);
        Poll::Ready(Some(Ok(out)))
    }
}

/// Serves a transactional call with [`Transactions`]' method `$method`: its answer, with the
/// leader's address when the answer is NotLeader; a command that cannot be answered is a status.
macro_rules! txn_call {
    ($svc:ident, $method:ident, $request:ident) => {{
        let resp = $svc
            .inner
            .txn
            .$method($request.into_inner())
            .await
            .map_err(txn_status)?;
        let leader = $svc.leader_addr(resp.region_error.as_ref());
        Ok($svc.respond(resp, leader.as_deref()))
    }};
}

#[tonic::async_trait]
impl<S: Storage> TinyKv for TinyKvService<S> {
    async fn kv_get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        txn_call!(self, get, request)
    }

    async fn kv_scan(
        &self,
        request: Request<ScanRequest>,
    ) -> Result<Response<ScanResponse>, Status> {
        txn_call!(self, scan, request)
    }

    async fn kv_prewrite(
        &self,
        request: Request<PrewriteRequest>,
    ) -> Result<Response<PrewriteResponse>, Status> {
        txn_call!(self, prewrite, request)
    }

    async fn kv_commit(
        &self,
        request: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        txn_call!(self, commit, request)
    }

    async fn kv_check_txn_status(
        &self,
        request: Request<CheckTxnStatusRequest>,
    ) -> Result<Response<CheckTxnStatusResponse>, Status> {
        txn_call!(self, check_txn_status, request)
    }

    async fn kv_batch_rollback(
        &self,
        request: Request<BatchRollbackRequest>,
    ) -> Result<Response<BatchRollbackResponse>, Status> {
        txn_call!(self, batch_rollback, request)
    }

    async fn kv_resolve_lock(
        &self,
        request: Request<ResolveLockRequest>,
    ) -> Result<Response<ResolveLockResponse>, Status> {
        txn_call!(self, resolve_lock, request)
    }

    async fn raw_get(
        &self,
        request: Request<RawGetRequest>,
    ) -> Result<Response<RawGetResponse>, Status> {
        let resp = self.get(request.into_inner()).await?;
        let leader = self.leader_addr(resp.region_error.as_ref());
        Ok(self.respond(resp, leader.as_deref()))
    }

    async fn raw_put(
        &self,
        request: Request<RawPutRequest>,
    ) -> Result<Response<RawPutResponse>, Status> {
        let resp = self.put(request.into_inner()).await?;
        let leader = self.leader_addr(resp.region_error.as_ref());
        Ok(self.respond(resp, leader.as_deref()))
    }

    async fn raw_delete(
        &self,
        request: Request<RawDeleteRequest>,
    ) -> Result<Response<RawDeleteResponse>, Status> {
        let resp = self.delete(request.into_inner()).await?;
        let leader = self.leader_addr(resp.region_error.as_ref());
        Ok(self.respond(resp, leader.as_deref()))
    }

    async fn raw_scan(
        &self,
        request: Request<RawScanRequest>,
    ) -> Result<Response<RawScanResponse>, Status> {
        let resp = self.scan(request.into_inner()).await?;
        let leader = self.leader_addr(resp.region_error.as_ref());
        Ok(self.respond(resp, leader.as_deref()))
    }

    async fn batch_raw(
        &self,
        request: Request<Streaming<BatchRawRequest>>,
    ) -> Result<Response<BoxStream<BatchRawResponse>>, Status> {
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let svc = self.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_BATCH_INFLIGHT));
            loop {
                let batch = match requests.message().await {
                    Ok(Some(b)) => b,
                    Ok(None) => break,
                    Err(status) => {
                        debug!(svc.inner.logger, "batch stream broke"; "err" => %status);
                        break;
                    }
                };
                if batch.requests.len() != batch.request_ids.len() {
                    let _ = tx.send(Err(Status::invalid_argument(format!(
                        "a batch of {} requests with {} request ids",
                        batch.requests.len(),
                        batch.request_ids.len()
                    ))));
                    break;
                }
                for (id, req) in batch.request_ids.into_iter().zip(batch.requests) {
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let (svc, tx) = (svc.clone(), tx.clone());
                    tokio::spawn(async move {
                        let answer = svc.serve_one(req).await;
                        // The client may have gone: then nobody wants the answer.
                        let _ = tx.send(Ok((id, answer, slot)));
                    });
                }
            }
            // The answer stream ends when the last request in progress has answered.
        });
        let answers: BoxStream<BatchRawResponse> = Box::pin(BatchAnswers {
            rx,
            carry: None,
            error: None,
            done: false,
        });
        Ok(self.respond(answers, None))
    }

    async fn raft(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Done>, Status> {
        let Some((router, _)) = &self.inner.raft_router else {
            return Err(Status::failed_precondition(
                "this is a standalone server: it takes no raft messages",
            ));
        };
        let remote = request.remote_addr();
        let mut stream = request.into_inner();
        while let Some(msg) = stream.message().await? {
            if router.send(StoreMsg::Raft(msg)).is_err() {
                return Err(Status::unavailable("the store is shutting down"));
            }
        }
        debug!(self.inner.logger, "raft stream closed"; "remote" => ?remote);
        Ok(Response::new(Done {}))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<Done>, Status> {
        let Some((router, snap_mgr)) = &self.inner.raft_router else {
            return Err(Status::failed_precondition(
                "this is a standalone server: it takes no snapshots",
            ));
        };
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let msg = first.message.ok_or_else(|| {
            Status::invalid_argument("the first snapshot chunk must carry the raft message")
        })?;
        let logger = self.inner.logger.new(slog::o!("region_id" => msg.region_id,
            "from_store" => msg.from_peer.map_or(0, |p| p.store_id)));
        let refuse = |what: &str, e: &dyn std::fmt::Display| {
            warn!(logger, "snapshot rejected"; "reason" => what, "err" => %e);
            Status::data_loss(format!("snapshot rejected: {what}: {e}"))
        };
        let mgr = snap_mgr.clone();
        let m = msg.clone();
        let mut receiver = tokio::task::spawn_blocking(move || mgr.receiver(&m))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| refuse("bad metadata", &e))?;
        let mut bytes = 0u64;
        let mut pending = Some(first.data).filter(|d| !d.is_empty());
        loop {
            let data = match pending.take() {
                Some(d) => d,
                None => match stream.message().await? {
                    Some(chunk) => chunk.data,
                    None => break,
                },
            };
            bytes += data.len() as u64;
            // File writes block: keep them off the async workers.
            receiver =
                tokio::task::spawn_blocking(move || receiver.write(&data).map(|()| receiver))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                    .map_err(|e| refuse("bad data", &e))?;
        }
        let key = tokio::task::spawn_blocking(move || receiver.finish())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| refuse("incomplete", &e))?;
        info!(logger, "snapshot received"; "snapshot" => %key, "bytes" => bytes);
        router
            .send(StoreMsg::Raft(msg))
            .map_err(|_| Status::unavailable("the store is shutting down"))?;
        Ok(Response::new(Done {}))
    }
}
