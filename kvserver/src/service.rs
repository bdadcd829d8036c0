//! The `TinyKv` gRPC service: the raw API for clients over a [`Storage`], and the store-to-store
//! `Raft` stream into the local store's mailbox and `Snapshot` stream into its snapshot files
//! (verified before the message reaches the store).
//!
//! Bad input is refused with `INVALID_ARGUMENT` and a message (empty key, key over
//! [`MAX_KEY_SIZE`], value over the configured limit, unknown column family); region errors go in
//! the response's `region_error`, so TinyKV clients can retry elsewhere. Every raw response carries
//! the metadata `x-tinykv-store-id`; a NotLeader answer whose leader is known also carries
//! `x-tinykv-leader-addr`, the leader store's address, so clients without a scheduler can follow it.
//! The transactional methods (Project 4) answer `UNIMPLEMENTED`.

use std::collections::HashMap;
use std::sync::Arc;

use crossbeam_channel::Sender;
use proto::errorpb;
use proto::kvrpcpb::{
    KvPair, RawDeleteRequest, RawDeleteResponse, RawGetRequest, RawGetResponse, RawPutRequest,
    RawPutResponse, RawScanRequest, RawScanResponse,
};
use proto::raft_serverpb::{Done, RaftMessage, SnapshotChunk};
use raftstore::runtime::StoreMsg;
use raftstore::SnapManager;
use slog::{debug, info, warn, Logger};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::storage::{check_cf, Modify, Storage, StorageError};
use crate::tinykvpb::tiny_kv_server::TinyKv;

/// Largest accepted key, in bytes.
pub const MAX_KEY_SIZE: usize = 4096;
/// Room kept in a raft entry for everything but the value (key, header, encoding).
pub const ENTRY_OVERHEAD: usize = 8 * 1024;
/// Metadata key: the id of the store that answered.
pub const STORE_ID_HEADER: &str = "x-tinykv-store-id";
/// Metadata key: the address of the region's leader, on a NotLeader answer.
pub const LEADER_ADDR_HEADER: &str = "x-tinykv-leader-addr";

/// The TinyKv service over storage `S`.
pub struct TinyKvService<S: Storage> {
    storage: S,
    store_id: u64,
    raft_router: Option<(Sender<StoreMsg>, SnapManager)>,
    store_addrs: Arc<HashMap<u64, String>>,
    max_value_size: usize,
    logger: Logger,
}

impl<S: Storage> TinyKvService<S> {
    /// A service over `storage` on store `store_id`. `raft_router` receives the `Raft` stream's
    /// messages (None: a standalone server, which refuses them); `store_addrs` maps store ids to
    /// addresses for leader hints; values over `max_value_size` bytes are refused.
    pub fn new(
        storage: S,
        store_id: u64,
        raft_router: Option<(Sender<StoreMsg>, SnapManager)>,
        store_addrs: HashMap<u64, String>,
        max_value_size: usize,
        logger: Logger,
    ) -> Self {
        TinyKvService {
            storage,
            store_id,
            raft_router,
            store_addrs: Arc::new(store_addrs),
            max_value_size,
            logger,
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), Status> {
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

    fn check_value(&self, value: &[u8]) -> Result<(), Status> {
        if value.len() > self.max_value_size {
            return Err(Status::invalid_argument(format!(
                "value of {} bytes is over the limit of {} bytes (the raft entry limit less {} bytes)",
                value.len(),
                self.max_value_size,
                ENTRY_OVERHEAD
            )));
        }
        Ok(())
    }

    /// Wraps a response with the store-id header, and the leader address on NotLeader.
    fn respond<T>(&self, msg: T, region_error: Option<&errorpb::Error>) -> Response<T> {
        let mut resp = Response::new(msg);
        let md = resp.metadata_mut();
        md.insert(STORE_ID_HEADER, MetadataValue::from(self.store_id));
        let leader_store = region_error
            .and_then(|e| e.not_leader.as_ref())
            .and_then(|nl| nl.leader.as_ref())
            .map(|p| p.store_id);
        if let Some(addr) = leader_store.and_then(|s| self.store_addrs.get(&s)) {
            if let Ok(v) = addr.parse() {
                md.insert(LEADER_ADDR_HEADER, v);
            }
        }
        resp
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

#[tonic::async_trait]
impl<S: Storage> TinyKv for TinyKvService<S> {
    async fn raw_get(
        &self,
        request: Request<RawGetRequest>,
    ) -> Result<Response<RawGetResponse>, Status> {
        let req = request.into_inner();
        self.check_key(&req.key)?;
        let cf = check_cf(&req.cf).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let ctx = req.context.unwrap_or_default();
        let read = async {
            let reader = self.storage.reader(&ctx, &req.key).await?;
            reader.get_cf(cf, &req.key)
        };
        let mut resp = RawGetResponse::default();
        match read.await {
            Ok(Some(v)) => resp.value = v,
            Ok(None) => resp.not_found = true,
            Err(e) => resp.region_error = Some(split_error(e)?),
        }
        let re = resp.region_error.clone();
        Ok(self.respond(resp, re.as_ref()))
    }

    async fn raw_put(
        &self,
        request: Request<RawPutRequest>,
    ) -> Result<Response<RawPutResponse>, Status> {
        let req = request.into_inner();
        self.check_key(&req.key)?;
        self.check_value(&req.value)?;
        let cf = check_cf(&req.cf).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let ctx = req.context.unwrap_or_default();
        let m = Modify::Put {
            cf: cf.to_string(),
            key: req.key,
            value: req.value,
        };
        let mut resp = RawPutResponse::default();
        if let Err(e) = self.storage.write(&ctx, vec![m]).await {
            resp.region_error = Some(split_error(e)?);
        }
        let re = resp.region_error.clone();
        Ok(self.respond(resp, re.as_ref()))
    }

    async fn raw_delete(
        &self,
        request: Request<RawDeleteRequest>,
    ) -> Result<Response<RawDeleteResponse>, Status> {
        let req = request.into_inner();
        self.check_key(&req.key)?;
        let cf = check_cf(&req.cf).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let ctx = req.context.unwrap_or_default();
        let m = Modify::Delete {
            cf: cf.to_string(),
            key: req.key,
        };
        let mut resp = RawDeleteResponse::default();
        if let Err(e) = self.storage.write(&ctx, vec![m]).await {
            resp.region_error = Some(split_error(e)?);
        }
        let re = resp.region_error.clone();
        Ok(self.respond(resp, re.as_ref()))
    }

    async fn raw_scan(
        &self,
        request: Request<RawScanRequest>,
    ) -> Result<Response<RawScanResponse>, Status> {
        let req = request.into_inner();
        if req.start_key.len() > MAX_KEY_SIZE {
            return Err(Status::invalid_argument(format!(
                "start key of {} bytes is over the limit of {MAX_KEY_SIZE} bytes",
                req.start_key.len()
            )));
        }
        let cf = check_cf(&req.cf).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut resp = RawScanResponse::default();
        if req.limit == 0 {
            return Ok(self.respond(resp, None));
        }
        let ctx = req.context.unwrap_or_default();
        let limit = req.limit as usize;
        let scan = async {
            let reader = self.storage.reader(&ctx, &req.start_key).await?;
            let mut kvs = Vec::new();
            reader.scan_cf(cf, &req.start_key, &mut |k, v| {
                kvs.push(KvPair {
                    error: None,
                    key: k.to_vec(),
                    value: v.to_vec(),
                });
                kvs.len() < limit
            })?;
            Ok::<_, StorageError>(kvs)
        };
        match scan.await {
            Ok(kvs) => resp.kvs = kvs,
            Err(e) => resp.region_error = Some(split_error(e)?),
        }
        let re = resp.region_error.clone();
        Ok(self.respond(resp, re.as_ref()))
    }

    async fn raft(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Done>, Status> {
        let Some((router, _)) = &self.raft_router else {
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
        debug!(self.logger, "raft stream closed"; "remote" => ?remote);
        Ok(Response::new(Done {}))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<Done>, Status> {
        let Some((router, snap_mgr)) = &self.raft_router else {
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
        let logger = self.logger.new(slog::o!("region_id" => msg.region_id,
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
