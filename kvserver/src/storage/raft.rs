//! Raft storage: every write and every read is a command sent to the local store's raftstore.
//! Writes go through the raft log and are acknowledged once applied on the leader after a quorum
//! persisted them; reads are linearizable without a log write: the leader confirms with a
//! heartbeat quorum that it still leads (ReadIndex) and serves from its applied state.
//!
//! A request whose `Context` names a region is sent as is (TinyKV clients route themselves). One
//! with an empty context is routed here: the storage keeps the regions this store hosts, read from
//! the kv engine, finds the one holding the key and addresses its local peer; when the region
//! changed under it (epoch, range), it reloads and tries once more.
//!
//! Answers come back from the store (a task of this runtime, `crate::store_task`) through one
//! channel to one responder task, not through a wake-up per request: the store answers a round's
//! commands in a burst, the responder takes the whole burst at once and completes the requests
//! one after another, so their gRPC answers leave together in one write on each connection
//! instead of one system call each.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::store_task::StoreRouter;
use proto::errorpb;
use proto::kvrpcpb::Context;
use proto::metapb::Region;
use proto::raft_cmdpb::{
    CmdType, DeleteRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request, SnapRequest,
};
use proto::raft_serverpb::{PeerState, RegionLocalState};
use raftstore::engine::rocks::RocksEngine;
use raftstore::engine::{Engine, CF_RAFT};
use raftstore::runtime::StoreMsg;
use raftstore::util::find_peer;
use raftstore::{keys, CmdResponse, KvSnapshot};
use tokio::sync::{mpsc, oneshot};

use super::{check_cf, Modify, Storage, StorageError, StorageReader};

/// Storage that proposes every request through the store's raft groups.
#[derive(Clone)]
pub struct RaftStorage {
    inner: Arc<Inner>,
}

/// A command's answer on its way to the request waiting for it.
type Answer = (oneshot::Sender<CmdResponse>, CmdResponse);

struct Inner {
    store_id: u64,
    router: StoreRouter,
    /// To the responder task.
    answers: mpsc::UnboundedSender<Answer>,
    kv: RocksEngine,
    regions: RwLock<Vec<Region>>,
    timeout: Duration,
}

impl RaftStorage {
    /// Storage over the store `store_id` whose mailbox is `router` and kv engine `kv`; a command
    /// not applied within `timeout` fails with [`StorageError::Timeout`]. Must be called inside
    /// the async runtime (it starts the responder task there).
    pub fn new(
        store_id: u64,
        router: StoreRouter,
        kv: RocksEngine,
        timeout: Duration,
    ) -> Result<Self, StorageError> {
        let (answers, rx) = mpsc::unbounded_channel();
        tokio::spawn(respond(rx));
        let s = RaftStorage {
            inner: Arc::new(Inner {
                store_id,
                router,
                answers,
                kv,
                regions: RwLock::new(Vec::new()),
                timeout,
            }),
        };
        s.reload_regions()?;
        Ok(s)
    }

    /// The store's id.
    pub fn store_id(&self) -> u64 {
        self.inner.store_id
    }

    /// Re-reads the regions this store hosts from the kv engine.
    pub fn reload_regions(&self) -> Result<(), StorageError> {
        let mut regions = Vec::new();
        let mut bad = None;
        self.inner.kv.scan_cf(
            CF_RAFT,
            keys::REGION_META_MIN_KEY,
            keys::REGION_META_MAX_KEY,
            &mut |k, v| {
                if let Ok((_, keys::REGION_STATE_SUFFIX)) = keys::decode_region_meta_key(k) {
                    match <RegionLocalState as prost::Message>::decode(v) {
                        Ok(state) if state.state == PeerState::Normal as i32 => {
                            regions.extend(state.region);
                        }
                        Ok(_) => {}
                        Err(e) => bad = Some(e),
                    }
                }
                Ok(true)
            },
        )?;
        if let Some(e) = bad {
            return Err(StorageError::Engine(e.into()));
        }
        *self.inner.regions.write().unwrap() = regions;
        Ok(())
    }

    /// The regions this store hosts, read afresh from the kv engine.
    pub fn hosted_regions(&self) -> Result<Vec<Region>, StorageError> {
        self.reload_regions()?;
        Ok(self.inner.regions.read().unwrap().clone())
    }

    fn route(&self, key: &[u8]) -> Option<Region> {
        self.inner
            .regions
            .read()
            .unwrap()
            .iter()
            .find(|r| raftstore::util::region_contains(r, key))
            .cloned()
    }

    fn header(&self, ctx: &Context, key: &[u8]) -> Result<RaftRequestHeader, StorageError> {
        if ctx.region_id != 0 {
            return Ok(RaftRequestHeader {
                region_id: ctx.region_id,
                peer: ctx.peer,
                region_epoch: ctx.region_epoch,
                term: ctx.term,
            });
        }
        let region = match self.route(key) {
            Some(r) => r,
            None => {
                self.reload_regions()?;
                self.route(key).ok_or_else(|| {
                    StorageError::Region(Box::new(errorpb::Error {
                        message: format!(
                            "store {} hosts no region holding key {key:?}",
                            self.inner.store_id
                        ),
                        ..Default::default()
                    }))
                })?
            }
        };
        Ok(RaftRequestHeader {
            region_id: region.id,
            peer: find_peer(&region, self.inner.store_id).copied(),
            region_epoch: region.region_epoch,
            term: 0,
        })
    }

    /// Proposes `requests` on the region of `key` (or the one `ctx` names) and waits for the result.
    pub async fn call(
        &self,
        ctx: &Context,
        key: &[u8],
        requests: Vec<Request>,
    ) -> Result<CmdResponse, StorageError> {
        let routed = ctx.region_id == 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = RaftCmdRequest {
                header: Some(self.header(ctx, key)?),
                requests: requests.clone(),
                admin_request: None,
            };
            let resp = self.send(req).await?;
            let Some(err) = resp.region_error() else {
                return Ok(resp);
            };
            let stale_route = err.epoch_not_match.is_some()
                || err.region_not_found.is_some()
                || err.key_not_in_region.is_some();
            if routed && stale_route && attempt == 1 {
                self.reload_regions()?;
                continue;
            }
            return Err(StorageError::Region(Box::new(err.clone())));
        }
    }

    async fn send(&self, req: RaftCmdRequest) -> Result<CmdResponse, StorageError> {
        let (tx, rx) = oneshot::channel();
        let answers = self.inner.answers.clone();
        let cb = Box::new(move |resp: CmdResponse| {
            let _ = answers.send((tx, resp));
        });
        self.inner
            .router
            .send(StoreMsg::Command(req, cb))
            .map_err(|_| StorageError::ShuttingDown)?;
        match tokio::time::timeout(self.inner.timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            // The store dropped the callback: it stopped.
            Ok(Err(_)) => Err(StorageError::ShuttingDown),
            Err(_) => Err(StorageError::Timeout(self.inner.timeout)),
        }
    }
}

/// The responder task: completes the waiting requests, a burst of answers at a time. It ends
/// when the storage and every callback still held by the store are gone.
async fn respond(mut rx: mpsc::UnboundedReceiver<Answer>) {
    let mut burst = Vec::with_capacity(256);
    while rx.recv_many(&mut burst, 4096).await > 0 {
        for (tx, resp) in burst.drain(..) {
            // The request may have timed out meanwhile; then nobody waits for the answer.
            let _ = tx.send(resp);
        }
    }
}

impl Storage for RaftStorage {
    async fn write(&self, ctx: &Context, batch: Vec<Modify>) -> Result<(), StorageError> {
        let Some(first) = batch.first() else {
            return Ok(());
        };
        let key = first.key().to_vec();
        let mut requests = Vec::with_capacity(batch.len());
        for m in batch {
            let cf = check_cf(m.cf())?.to_string();
            requests.push(match m {
                Modify::Put { key, value, .. } => Request {
                    cmd_type: CmdType::Put as i32,
                    put: Some(PutRequest { cf, key, value }),
                    ..Default::default()
                },
                Modify::Delete { key, .. } => Request {
                    cmd_type: CmdType::Delete as i32,
                    delete: Some(DeleteRequest { cf, key }),
                    ..Default::default()
                },
            });
        }
        self.call(ctx, &key, requests).await?;
        Ok(())
    }

    async fn reader(
        &self,
        ctx: &Context,
        key: &[u8],
    ) -> Result<Box<dyn StorageReader>, StorageError> {
        let snap = Request {
            cmd_type: CmdType::Snap as i32,
            snap: Some(SnapRequest {}),
            ..Default::default()
        };
        let resp = self.call(ctx, key, vec![snap]).await?;
        let snap = resp.snap.ok_or_else(|| {
            StorageError::Engine(raftstore::engine::EngineError::Other(
                "a Snap command returned no snapshot".into(),
            ))
        })?;
        Ok(Box::new(RegionReader {
            region: snap.region,
            snap: snap.snap,
        }))
    }
}

/// A read view of one region, as of the moment its Snap command was applied.
pub struct RegionReader {
    region: Region,
    snap: Arc<dyn KvSnapshot>,
}

impl RegionReader {
    fn check_key(&self, key: &[u8]) -> Result<(), StorageError> {
        raftstore::util::check_key_in_region(key, &self.region)
            .map_err(|e| StorageError::Region(Box::new(e.into_pb())))
    }
}

impl StorageReader for RegionReader {
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.check_key(key)?;
        Ok(self.snap.get(check_cf(cf)?, key)?)
    }

    fn scan_cf(
        &self,
        cf: &str,
        start: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let start = if start < self.region.start_key.as_slice() {
            self.region.start_key.as_slice()
        } else {
            start
        };
        self.snap
            .scan(check_cf(cf)?, start, &self.region.end_key, &mut |k, v| {
                Ok(f(k, v))
            })?;
        Ok(())
    }

    fn scan_cf_until(
        &self,
        cf: &str,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let start = if start < self.region.start_key.as_slice() {
            self.region.start_key.as_slice()
        } else {
            start
        };
        let region_end = self.region.end_key.as_slice();
        let end = match (end.is_empty(), region_end.is_empty()) {
            (true, _) => region_end,
            (false, true) => end,
            (false, false) => end.min(region_end),
        };
        self.snap
            .scan(check_cf(cf)?, start, end, &mut |k, v| Ok(f(k, v)))?;
        Ok(())
    }
}
