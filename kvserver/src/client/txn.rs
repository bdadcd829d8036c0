//! The transactional client: Percolator's two-phase commit driven from the client, over the
//! `Kv*` commands of a multi-region cluster run by a scheduler (TinySQL drives TinyKV the same
//! way; see `docs/TRANSACTIONS.md`).
//!
//! - [`TxnClient::begin`] takes a start timestamp from the scheduler's TSO; the
//!   [`Transaction`] buffers its puts and deletes and reads a snapshot at that timestamp (its own
//!   buffered writes first).
//! - [`Transaction::commit`]: prewrite every key (the smallest is the primary, and its region
//!   goes first), take a commit timestamp, commit the primary (the transaction is committed
//!   exactly when this succeeds), then the secondaries (a failure there is left to readers, who
//!   resolve the locks from the primary's record). A write conflict or a lock that cannot be
//!   cleared rolls the prewritten keys back and fails with an error saying whether the
//!   transaction may simply be retried.
//! - A read or prewrite that meets another transaction's lock resolves it: the lock's primary
//!   says whether it committed (then the lock is committed too), was rolled back or expired
//!   (rolled back), or is alive (then the reader waits and asks again, within its deadline).
//! - While a commit is in progress its primary lock is kept alive: every third of the lock's
//!   TTL the primary is prewritten again with a TTL reaching further (TinyKV's protocol has no
//!   heartbeat command; a prewrite by the same transaction replaces its own lock, and one that
//!   arrives after the commit or a rollback is refused as a conflict, so it can do no harm).
//! - Keys are routed by `encode_bytes(key)` (regions are split in the encoded key space), and
//!   the keys of one request are grouped by region; region errors refresh the region cache and
//!   the group is formed again.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto::errorpb;
use proto::kvrpcpb::{
    BatchRollbackRequest, BatchRollbackResponse, CheckTxnStatusRequest, CheckTxnStatusResponse,
    CommitRequest, CommitResponse, Context, GetRequest, GetResponse, KeyError, LockInfo, Mutation,
    Op, PrewriteRequest, PrewriteResponse, ResolveLockRequest, ResolveLockResponse, ScanRequest,
    ScanResponse,
};
use proto::metapb::Region;
use scheduler::tso_client::{TsoClient, TsoError};
use thiserror::Error;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Response, Status};

use super::{leader_hint, rejection, Client, ClientError, Retry};
use crate::region_cache::{readable_key, RegionLocator, Route, SchedulerSource};
use crate::tinykvpb::tiny_kv_client::TinyKvClient;
use crate::transaction::codec::decode_bytes;
use crate::transaction::route_key;

/// The TTL of a transaction's locks when its commit starts; kept alive while it runs.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(3);

/// Why a transaction failed.
#[derive(Debug, Error)]
pub enum TxnClientError {
    /// A store refused a request, or none answered in time.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// No timestamp from the scheduler.
    #[error("timestamp: {0}")]
    Tso(#[from] TsoError),
    /// Another transaction wrote `key` after this one started: nothing was committed; the
    /// transaction may be run again (with a new start timestamp).
    #[error("write conflict on key {key}: committed at {conflict_ts}, after this transaction started at {start_ts}")]
    Conflict {
        /// The key, printed readably.
        key: String,
        /// This transaction's start.
        start_ts: u64,
        /// When the other transaction committed.
        conflict_ts: u64,
    },
    /// The transaction cannot commit (rolled back by others after its lock expired, or a store
    /// said abort): nothing was committed; it may be run again.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    /// The commit of the primary key got no answer: the transaction may or may not have
    /// committed (a later read tells).
    #[error("the commit's outcome is unknown: {0}")]
    Undetermined(String),
    /// A store answered with an error this client cannot act on.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

impl TxnClientError {
    /// Whether running the transaction again (with a new start timestamp) may succeed and
    /// nothing of this attempt was committed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            TxnClientError::Conflict { .. } | TxnClientError::Aborted(_)
        )
    }
}

/// Counters of what the client's transactions met, shared by its clones.
#[derive(Debug, Default)]
pub struct TxnStats {
    /// Locks of other transactions found committed and committed here.
    pub resolved_committed: AtomicU64,
    /// Locks of other transactions rolled back here (expired, or their transaction had been).
    pub resolved_rolled_back: AtomicU64,
    /// Times a live lock made a read or prewrite wait.
    pub lock_waits: AtomicU64,
    /// Primary locks kept alive by another prewrite.
    pub keepalives: AtomicU64,
    /// Secondary keys whose commit failed (left for readers to resolve).
    pub secondary_failures: AtomicU64,
}

impl TxnStats {
    /// Locks resolved, committed or rolled back.
    pub fn resolved(&self) -> u64 {
        self.resolved_committed.load(Ordering::Relaxed)
            + self.resolved_rolled_back.load(Ordering::Relaxed)
    }
}

/// Responses that may carry a region error.
trait RegionErrorOf {
    fn region_error_of(&self) -> Option<&errorpb::Error>;
}

macro_rules! region_error_of {
    ($($t:ty),*) => {$(
        impl RegionErrorOf for $t {
            fn region_error_of(&self) -> Option<&errorpb::Error> {
                self.region_error.as_ref()
            }
        }
    )*};
}
region_error_of!(
    GetResponse,
    ScanResponse,
    PrewriteResponse,
    CommitResponse,
    BatchRollbackResponse,
    CheckTxnStatusResponse,
    ResolveLockResponse
);

/// A client of a cluster's transactions. Clones share connections, the region cache, the
/// timestamp stream and the counters.
#[derive(Clone)]
pub struct TxnClient {
    raw: Client,
    scheduler: String,
    tso: Arc<tokio::sync::OnceCell<TsoClient>>,
    stats: Arc<TxnStats>,
    lock_ttl: Duration,
}

impl TxnClient {
    /// A client of the cluster whose scheduler is at `scheduler` (`HOST:PORT`); every request
    /// (and the resolution of a lock met on the way) retries for at most `timeout`.
    pub fn new(scheduler: String, timeout: Duration) -> Result<TxnClient, ClientError> {
        Ok(TxnClient {
            raw: Client::with_scheduler(scheduler.clone(), timeout)?,
            scheduler,
            tso: Arc::default(),
            stats: Arc::default(),
            lock_ttl: DEFAULT_LOCK_TTL,
        })
    }

    /// The same client with locks whose TTL starts at `ttl` (tests use short ones).
    pub fn with_lock_ttl(mut self, ttl: Duration) -> TxnClient {
        self.lock_ttl = ttl;
        self
    }

    /// What the client's transactions met so far.
    pub fn stats(&self) -> &TxnStats {
        &self.stats
    }

    /// A new timestamp from the scheduler.
    pub async fn timestamp(&self) -> Result<u64, TxnClientError> {
        let tso = self
            .tso
            .get_or_try_init(|| TsoClient::connect(&self.scheduler))
            .await?;
        Ok(tso.get_ts().await?)
    }

    /// Starts a transaction: a snapshot at a new timestamp, and an empty write buffer.
    pub async fn begin(&self) -> Result<Transaction, TxnClientError> {
        Ok(Transaction {
            client: self.clone(),
            start_ts: self.timestamp().await?,
            buffer: BTreeMap::new(),
        })
    }

    /// Sends one prewrite as it is (its context filled in), routed by its first mutation's key,
    /// retrying region errors: for tools, and for tests that play a client dying mid-commit.
    /// The mutations must lie in one region.
    pub async fn send_prewrite(
        &self,
        req: PrewriteRequest,
    ) -> Result<PrewriteResponse, TxnClientError> {
        let key = req
            .mutations
            .first()
            .map(|m| m.key.clone())
            .unwrap_or_default();
        let (resp, _) = self
            .call(&key, self.deadline(), |mut c, ctx| {
                let req = PrewriteRequest {
                    context: Some(ctx),
                    ..req.clone()
                };
                async move { c.kv_prewrite(req).await }
            })
            .await?;
        Ok(resp)
    }

    /// The status of the transaction started at `start_ts` whose primary key is `primary`
    /// (KvCheckTxnStatus with a fresh timestamp: an expired lock is rolled back on the way).
    pub async fn txn_status(
        &self,
        primary: &[u8],
        start_ts: u64,
    ) -> Result<TxnStatus, TxnClientError> {
        let current_ts = self.timestamp().await?;
        let (r, _) = self
            .call(primary, self.deadline(), |mut c, ctx| {
                let req = CheckTxnStatusRequest {
                    context: Some(ctx),
                    primary_key: primary.to_vec(),
                    lock_ts: start_ts,
                    current_ts,
                };
                async move { c.kv_check_txn_status(req).await }
            })
            .await?;
        Ok(if r.lock_ttl > 0 {
            TxnStatus::Locked(r.lock_ttl)
        } else if r.commit_version > 0 {
            TxnStatus::Committed(r.commit_version)
        } else {
            TxnStatus::RolledBack
        })
    }

    /// Sends one read as it is, routed by its key (see [`Self::send_prewrite`]).
    pub async fn send_get(&self, req: GetRequest) -> Result<GetResponse, TxnClientError> {
        let (resp, _) = self
            .call(&req.key.clone(), self.deadline(), |mut c, ctx| {
                let req = GetRequest {
                    context: Some(ctx),
                    ..req.clone()
                };
                async move { c.kv_get(req).await }
            })
            .await?;
        Ok(resp)
    }

    /// Sends one commit as it is, routed by its first key (see [`Self::send_prewrite`]).
    pub async fn send_commit(&self, req: CommitRequest) -> Result<CommitResponse, TxnClientError> {
        let key = req.keys.first().cloned().unwrap_or_default();
        let (resp, _) = self
            .call(&key, self.deadline(), |mut c, ctx| {
                let req = CommitRequest {
                    context: Some(ctx),
                    ..req.clone()
                };
                async move { c.kv_commit(req).await }
            })
            .await?;
        Ok(resp)
    }

    fn locator(&self) -> &RegionLocator<SchedulerSource> {
        self.raw
            .region_locator()
            .expect("a transactional client is made with a scheduler")
    }

    /// One attempt of the request `send` builds (from the connection and the region's context)
    /// along `route`.
    async fn attempt<R, F, Fut>(&self, route: &Route, deadline: Instant, send: F) -> Attempted<R>
    where
        R: RegionErrorOf,
        F: FnOnce(TinyKvClient<Channel>, Context) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let loc = self.locator();
        let ctx = Context {
            region_id: route.region.id,
            region_epoch: route.region.region_epoch,
            peer: Some(route.peer),
            term: 0,
        };
        let conn = match self.raw.conn(&route.addr) {
            Ok(c) => c,
            Err(e) => {
                loc.on_store_failure(route);
                return Attempted::Retry(false, e.to_string());
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, send(conn.unary, ctx)).await {
            Err(_) => Attempted::Retry(false, format!("{}: timed out", route.addr)),
            Ok(Ok(resp)) => {
                let hint = leader_hint(&resp);
                let resp = resp.into_inner();
                match resp.region_error_of() {
                    None => {
                        loc.on_success(route);
                        Attempted::Answer(resp)
                    }
                    Some(e) => Attempted::Retry(
                        loc.on_region_error(route, e, hint),
                        format!(
                            "{} (region {}): {}",
                            route.addr,
                            route.region.id,
                            super::describe(e)
                        ),
                    ),
                }
            }
            Ok(Err(status)) => match rejection(&status) {
                Some(e) => Attempted::Fatal(e.into()),
                None => {
                    loc.on_store_failure(route);
                    Attempted::Retry(false, format!("{}: {}", route.addr, status.message()))
                }
            },
        }
    }

    /// Sends the request `send` builds to the leader of the region holding user key `key`,
    /// until it is answered without a region error or `deadline` passes. Returns the answer
    /// and the region that gave it.
    async fn call<R, F, Fut>(
        &self,
        key: &[u8],
        deadline: Instant,
        send: F,
    ) -> Result<(R, Region), TxnClientError>
    where
        R: RegionErrorOf,
        F: Fn(TinyKvClient<Channel>, Context) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let loc = self.locator();
        let routed = route_key(key);
        let mut retry = Retry::new(deadline, self.raw.timeout);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at_once, last) = match tokio::time::timeout(left, loc.locate(&routed)).await {
                Err(_) => (
                    false,
                    format!("scheduler {}: timed out", loc.source().addr()),
                ),
                Ok(Err(e)) => (false, e.to_string()),
                Ok(Ok(route)) => match self.attempt(&route, deadline, &send).await {
                    Attempted::Answer(r) => return Ok((r, route.region)),
                    Attempted::Fatal(e) => return Err(e),
                    Attempted::Retry(at_once, last) => (at_once, last),
                },
            };
            retry.pace(at_once, last).await?;
        }
    }

    /// Sends one request per region for `keys` (each built by `send` from the region's keys,
    /// in key order), until every key's region answered without a region error or `deadline`
    /// passes; a region that changed under a group has its keys grouped again. The answers,
    /// with the keys each covered, the group of the smallest key first.
    async fn call_regions<R, F, Fut>(
        &self,
        keys: &[Vec<u8>],
        deadline: Instant,
        send: F,
    ) -> Result<Vec<(Vec<Vec<u8>>, R)>, TxnClientError>
    where
        R: RegionErrorOf,
        F: Fn(TinyKvClient<Channel>, Context, Vec<Vec<u8>>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let loc = self.locator();
        let mut retry = Retry::new(deadline, self.raw.timeout);
        let mut pending: Vec<Vec<u8>> = keys.to_vec();
        pending.sort();
        pending.dedup();
        let mut out = Vec::new();
        while !pending.is_empty() {
            // Group by the cached regions, in key order.
            let mut groups: Vec<(Option<Route>, Vec<Vec<u8>>)> = Vec::new();
            let mut last = String::new();
            let mut at_once = true;
            for k in std::mem::take(&mut pending) {
                let left = deadline.saturating_duration_since(Instant::now());
                let route = match tokio::time::timeout(left, loc.locate(&route_key(&k))).await {
                    Ok(Ok(r)) => Some(r),
                    Ok(Err(e)) => {
                        last = e.to_string();
                        None
                    }
                    Err(_) => {
                        last = format!("scheduler {}: timed out", loc.source().addr());
                        None
                    }
                };
                let Some(route) = route else {
                    at_once = false;
                    pending.push(k);
                    continue;
                };
                match groups
                    .iter_mut()
                    .find(|(r, _)| r.as_ref().is_some_and(|r| r.region.id == route.region.id))
                {
                    Some((_, g)) => g.push(k),
                    None => groups.push((Some(route), vec![k])),
                }
            }
            for (route, group) in groups {
                let route = route.expect("grouped keys have a route");
                let held = group.clone();
                match self
                    .attempt(&route, deadline, |c, ctx| send(c, ctx, held))
                    .await
                {
                    Attempted::Answer(r) => out.push((group, r)),
                    Attempted::Fatal(e) => return Err(e),
                    Attempted::Retry(now, why) => {
                        at_once &= now;
                        last = why;
                        pending.extend(group);
                    }
                }
            }
            if !pending.is_empty() {
                pending.sort();
                retry.pace(at_once, last).await?;
            }
        }
        Ok(out)
    }

    fn deadline(&self) -> Instant {
        self.raw.deadline()
    }

    /// Clears `lock` (met by a request of the transaction started at `caller_ts`) if its
    /// transaction is over: committed (the lock is committed too) or rolled back or expired
    /// (the lock is rolled back). False when the lock is alive: the caller waits and asks again.
    async fn resolve(&self, lock: &LockInfo, deadline: Instant) -> Result<bool, TxnClientError> {
        let current_ts = self.timestamp().await?;
        let (status, _) = self
            .call(&lock.primary_lock, deadline, |mut c, ctx| {
                let req = CheckTxnStatusRequest {
                    context: Some(ctx),
                    primary_key: lock.primary_lock.clone(),
                    lock_ts: lock.lock_version,
                    current_ts,
                };
                async move { c.kv_check_txn_status(req).await }
            })
            .await?;
        if status.lock_ttl > 0 {
            self.stats.lock_waits.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        let commit_version = status.commit_version;
        let (resp, _) = self
            .call(&lock.key, deadline, |mut c, ctx| {
                let req = ResolveLockRequest {
                    context: Some(ctx),
                    start_version: lock.lock_version,
                    commit_version,
                };
                async move { c.kv_resolve_lock(req).await }
            })
            .await?;
        if let Some(e) = resp.error {
            return Err(TxnClientError::Unexpected(format!(
                "resolving the lock of {} (transaction {}): {}",
                readable_key(&lock.key),
                lock.lock_version,
                key_error_text(&e)
            )));
        }
        let counter = if commit_version > 0 {
            &self.stats.resolved_committed
        } else {
            &self.stats.resolved_rolled_back
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }
}

/// How one attempt went.
enum Attempted<R> {
    /// Answered without a region error.
    Answer(R),
    /// Try again (at once: the failure brought what the retry needs), after this failure.
    Retry(bool, String),
    /// Refused for good.
    Fatal(TxnClientError),
}

/// A key error in one line.
fn key_error_text(e: &KeyError) -> String {
    if let Some(l) = &e.locked {
        return format!(
            "key {} is locked by the transaction started at {}",
            readable_key(&l.key),
            l.lock_version
        );
    }
    if let Some(c) = &e.conflict {
        return format!(
            "write conflict on key {} (committed at {})",
            readable_key(&c.key),
            c.conflict_ts
        );
    }
    if !e.retryable.is_empty() {
        return e.retryable.clone();
    }
    if !e.abort.is_empty() {
        return e.abort.clone();
    }
    "a key error".into()
}

/// Waits before asking again about a live lock: 10 ms doubling to 500 ms; an error when the
/// deadline does not leave room.
struct LockBackoff {
    pause: Duration,
    deadline: Instant,
}

impl LockBackoff {
    fn new(deadline: Instant) -> LockBackoff {
        LockBackoff {
            pause: Duration::from_millis(10),
            deadline,
        }
    }

    async fn wait(&mut self, lock: &LockInfo) -> Result<(), TxnClientError> {
        if Instant::now() + self.pause >= self.deadline {
            return Err(TxnClientError::Client(ClientError::Timeout {
                timeout: self.pause,
                last: format!(
                    "key {} stayed locked by the live transaction started at {}",
                    readable_key(&lock.key),
                    lock.lock_version
                ),
            }));
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(500));
        Ok(())
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where a transaction stands, as its primary key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStatus {
    /// Committed at this timestamp.
    Committed(u64),
    /// Rolled back (or never prewrote its primary: it is rolled back now, so it never will).
    RolledBack,
    /// Its primary is locked, the lock alive for this many more milliseconds at most.
    Locked(u64),
}

/// One transaction: a snapshot at its start timestamp and the writes it buffers until
/// [`Transaction::commit`].
pub struct Transaction {
    client: TxnClient,
    start_ts: u64,
    /// Key -> the value to write (None: delete).
    buffer: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Transaction {
    /// The start timestamp: the snapshot the transaction reads.
    pub fn start_ts(&self) -> u64 {
        self.start_ts
    }

    /// Buffers `key` = `value`.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.buffer.insert(key.into(), Some(value.into()));
    }

    /// Buffers the deletion of `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.buffer.insert(key.into(), None);
    }

    /// The value of `key`: this transaction's own write if it made one, else the snapshot's.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, TxnClientError> {
        if let Some(v) = self.buffer.get(key) {
            return Ok(v.clone());
        }
        let c = &self.client;
        let deadline = c.deadline();
        let mut backoff = LockBackoff::new(deadline);
        loop {
            let (resp, _) = c
                .call(key, deadline, |mut conn, ctx| {
                    let req = GetRequest {
                        context: Some(ctx),
                        key: key.to_vec(),
                        version: self.start_ts,
                    };
                    async move { conn.kv_get(req).await }
                })
                .await?;
            match resp.error {
                None if resp.not_found => return Ok(None),
                None => return Ok(Some(resp.value)),
                Some(KeyError {
                    locked: Some(lock), ..
                }) => {
                    if !c.resolve(&lock, deadline).await? {
                        backoff.wait(&lock).await?;
                    }
                }
                Some(e) => return Err(TxnClientError::Unexpected(key_error_text(&e))),
            }
        }
    }

    /// At most `limit` pairs with keys in `[start, end)` (empty `end`: no end), in key order,
    /// as this transaction sees them (its own writes over the snapshot).
    pub async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, TxnClientError> {
        let in_range = |k: &[u8]| k >= start && (end.is_empty() || k < end);
        // Buffered deletes may hide stored pairs: ask for that many more.
        let hidden = self
            .buffer
            .iter()
            .filter(|(k, v)| v.is_none() && in_range(k))
            .count();
        let want = limit.saturating_add(hidden);
        let c = &self.client;
        let deadline = c.deadline();
        let mut backoff = LockBackoff::new(deadline);
        let mut stored: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut cursor = start.to_vec();
        'regions: while stored.len() < want {
            let remaining = (want - stored.len()).min(u32::MAX as usize) as u32;
            let (resp, region) = c
                .call(&cursor, deadline, |mut conn, ctx| {
                    let req = ScanRequest {
                        context: Some(ctx),
                        start_key: cursor.clone(),
                        limit: remaining,
                        version: self.start_ts,
                    };
                    async move { conn.kv_scan(req).await }
                })
                .await?;
            let answered = resp.pairs.len();
            let mut page = Vec::with_capacity(answered);
            for pair in resp.pairs {
                if let Some(e) = pair.error {
                    match e.locked {
                        Some(lock) => {
                            if !c.resolve(&lock, deadline).await? {
                                backoff.wait(&lock).await?;
                            }
                            // This region again, from the same cursor.
                            continue 'regions;
                        }
                        None => return Err(TxnClientError::Unexpected(key_error_text(&e))),
                    }
                }
                if !end.is_empty() && pair.key.as_slice() >= end {
                    break;
                }
                page.push((pair.key, pair.value));
            }
            let past_end = page.len() < answered;
            stored.extend(page);
            if past_end || answered >= remaining as usize || region.end_key.is_empty() {
                break;
            }
            // The next region, from its first user key.
            cursor = match decode_bytes(&region.end_key) {
                Ok((user, _)) => user,
                // A boundary no transaction wrote (raw data split the region): its bytes.
                Err(_) => region.end_key.clone(),
            };
            if !end.is_empty() && cursor.as_slice() >= end {
                break;
            }
        }
        // This transaction's own writes over what the snapshot holds.
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for (k, v) in self.buffer.range(start.to_vec()..) {
            if !in_range(k) {
                break;
            }
            match v {
                Some(v) => {
                    merged.insert(k.clone(), v.clone());
                }
                None => {
                    merged.remove(k);
                }
            }
        }
        Ok(merged.into_iter().take(limit).collect())
    }

    /// Commits the buffered writes; the commit timestamp (the start timestamp for a
    /// transaction that wrote nothing). See the module comment for the protocol and the errors.
    pub async fn commit(self) -> Result<u64, TxnClientError> {
        if self.buffer.is_empty() {
            return Ok(self.start_ts);
        }
        let c = self.client.clone();
        let mutations: Vec<Mutation> = self
            .buffer
            .iter()
            .map(|(k, v)| match v {
                Some(v) => Mutation {
                    op: Op::Put as i32,
                    key: k.clone(),
                    value: v.clone(),
                },
                None => Mutation {
                    op: Op::Del as i32,
                    key: k.clone(),
                    value: Vec::new(),
                },
            })
            .collect();
        let primary = mutations[0].key.clone();
        let keys: Vec<Vec<u8>> = mutations.iter().map(|m| m.key.clone()).collect();
        let started = Instant::now();
        let ttl_ms = c.lock_ttl.as_millis() as u64;

        // The keep-alive runs from the first prewrite to the primary's commit.
        let keepalive = {
            let (c, primary) = (c.clone(), mutations[0].clone());
            let start_ts = self.start_ts;
            tokio::spawn(async move {
                let every = (c.lock_ttl / 3).max(Duration::from_millis(10));
                loop {
                    tokio::time::sleep(every).await;
                    let ttl = started.elapsed().as_millis() as u64 + ttl_ms;
                    let deadline = Instant::now() + every;
                    let sent = c
                        .call(&primary.key, deadline, |mut conn, ctx| {
                            let req = PrewriteRequest {
                                context: Some(ctx),
                                mutations: vec![primary.clone()],
                                primary_lock: primary.key.clone(),
                                start_version: start_ts,
                                lock_ttl: ttl,
                            };
                            async move { conn.kv_prewrite(req).await }
                        })
                        .await;
                    match sent {
                        Ok((resp, _)) if resp.errors.is_empty() => {
                            c.stats.keepalives.fetch_add(1, Ordering::Relaxed);
                        }
                        // Committed, rolled back, or the store is away: the commit decides.
                        _ => {}
                    }
                }
            })
        };
        // Stopped when the commit ends, and also when its caller drops it half-way (a lock kept
        // alive for a client that gave up would block its keys for good).
        let _keepalive = AbortOnDrop(keepalive);
        self.two_phases(&c, &mutations, &primary, &keys, ttl_ms)
            .await
    }

    async fn two_phases(
        &self,
        c: &TxnClient,
        mutations: &[Mutation],
        primary: &[u8],
        keys: &[Vec<u8>],
        ttl_ms: u64,
    ) -> Result<u64, TxnClientError> {
        if let Err(e) = self.prewrite(c, mutations, primary, ttl_ms).await {
            // Nothing may stay locked for others to wait on: the prewritten keys are rolled
            // back (best effort: a lock left behind expires and is rolled back by its reader).
            let _ = self.rollback_keys(c, keys).await;
            return Err(e);
        }
        let commit_ts = c.timestamp().await?;
        // The primary decides.
        let deadline = c.deadline();
        let answers = c
            .call_regions(&[primary.to_vec()], deadline, |mut conn, ctx, held| {
                let req = CommitRequest {
                    context: Some(ctx),
                    start_version: self.start_ts,
                    keys: held,
                    commit_version: commit_ts,
                };
                async move { conn.kv_commit(req).await }
            })
            .await
            .map_err(|e| match e {
                TxnClientError::Client(ClientError::Timeout { .. }) => {
                    TxnClientError::Undetermined(e.to_string())
                }
                other => other,
            })?;
        for (_, resp) in &answers {
            if let Some(e) = &resp.error {
                return Err(TxnClientError::Aborted(key_error_text(e)));
            }
        }
        // Committed. The secondaries follow; one that fails is resolved by its next reader.
        let secondaries: Vec<Vec<u8>> = keys.iter().filter(|k| *k != primary).cloned().collect();
        if !secondaries.is_empty() {
            let done = c
                .call_regions(&secondaries, c.deadline(), |mut conn, ctx, held| {
                    let req = CommitRequest {
                        context: Some(ctx),
                        start_version: self.start_ts,
                        keys: held,
                        commit_version: commit_ts,
                    };
                    async move { conn.kv_commit(req).await }
                })
                .await;
            let failed = match done {
                Ok(answers) => answers
                    .iter()
                    .filter(|(_, r)| r.error.is_some())
                    .map(|(k, _)| k.len())
                    .sum(),
                Err(_) => secondaries.len(),
            };
            c.stats
                .secondary_failures
                .fetch_add(failed as u64, Ordering::Relaxed);
        }
        Ok(commit_ts)
    }

    /// Prewrites every mutation, region by region, resolving other transactions' locks met on
    /// the way; a write conflict or an abort ends it.
    async fn prewrite(
        &self,
        c: &TxnClient,
        mutations: &[Mutation],
        primary: &[u8],
        ttl_ms: u64,
    ) -> Result<(), TxnClientError> {
        let deadline = c.deadline();
        let mut backoff = LockBackoff::new(deadline);
        let by_key: BTreeMap<&[u8], &Mutation> =
            mutations.iter().map(|m| (m.key.as_slice(), m)).collect();
        let mut pending: Vec<Vec<u8>> = mutations.iter().map(|m| m.key.clone()).collect();
        while !pending.is_empty() {
            let answers = c
                .call_regions(&pending, deadline, |mut conn, ctx, held| {
                    let req = PrewriteRequest {
                        context: Some(ctx),
                        mutations: held.iter().map(|k| by_key[k.as_slice()].clone()).collect(),
                        primary_lock: primary.to_vec(),
                        start_version: self.start_ts,
                        lock_ttl: ttl_ms,
                    };
                    async move { conn.kv_prewrite(req).await }
                })
                .await?;
            let mut again = Vec::new();
            for (held, resp) in answers {
                if resp.errors.is_empty() {
                    continue;
                }
                for e in &resp.errors {
                    if let Some(cf) = &e.conflict {
                        return Err(TxnClientError::Conflict {
                            key: readable_key(&cf.key),
                            start_ts: self.start_ts,
                            conflict_ts: cf.conflict_ts,
                        });
                    }
                }
                for e in resp.errors {
                    match e.locked {
                        Some(lock) => {
                            if !c.resolve(&lock, deadline).await? {
                                backoff.wait(&lock).await?;
                            }
                        }
                        None => return Err(TxnClientError::Aborted(key_error_text(&e))),
                    }
                }
                // The region wrote nothing: all of its keys go again.
                again.extend(held);
            }
            pending = again;
        }
        Ok(())
    }

    /// Rolls this transaction back on `keys`.
    async fn rollback_keys(&self, c: &TxnClient, keys: &[Vec<u8>]) -> Result<(), TxnClientError> {
        c.call_regions(keys, c.deadline(), |mut conn, ctx, held| {
            let req = BatchRollbackRequest {
                context: Some(ctx),
                start_version: self.start_ts,
                keys: held,
            };
            async move { conn.kv_batch_rollback(req).await }
        })
        .await?;
        Ok(())
    }
}
