//! A raw-API client. For a static cluster ([`Client::new`]) it keeps one HTTP/2 connection per
//! endpoint, sends to the leader it last saw, follows NotLeader answers (the
//! `x-tinykv-leader-addr` hint, else the next endpoint), and retries retryable failures
//! (unreachable store, no leader yet, stale command, timeout) until its deadline. Bad input fails
//! at once with the server's message.
//!
//! For a multi-region cluster run by a scheduler ([`Client::with_scheduler`]) every request goes
//! to the leader of the region holding its key, found in a [`RegionLocator`] (a region cache
//! filled from the scheduler and corrected by the stores' region errors, see
//! [`crate::region_cache`]); the request names the region and its epoch, so a store whose region
//! changed answers EpochNotMatch instead of serving a different range. A scan walks the regions
//! from its start key: each region is scanned (the store stops at the region's end) until the
//! limit is reached or the key space ends, within one deadline for the whole scan.
//!
//! By default each request is its own unary call. [`Client::batched`] sends them instead on one
//! long-lived `BatchRaw` stream per store: requests issued while the previous message is on its
//! way go out together in the next one, and answers come back the same way, so many concurrent
//! callers share HTTP/2's per-message cost. A broken stream fails its requests in flight with
//! UNAVAILABLE (they are retried like any unreachable store's) and the next request opens a new one.
//!
//! Cloning is cheap and clones share connections and the leader guess, so many tasks can use one.
//!
//! [`txn`] is the transactional client (Percolator over the `Kv*` commands), built on the same
//! connections and region cache.

pub mod txn;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use proto::errorpb;
use proto::kvrpcpb::{Context, RawDeleteRequest, RawGetRequest, RawPutRequest, RawScanRequest};
use proto::metapb::Region;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};

use crate::limits::{MAX_BATCH_BYTES, MAX_GRPC_MESSAGE};
use crate::region_cache::{RegionLocator, Route, SchedulerSource, SourceError};
use crate::service::LEADER_ADDR_HEADER;
use crate::tinykvpb::tiny_kv_client::TinyKvClient;
use crate::tinykvpb::{raw_request, raw_response, BatchRawRequest, RawRequest, RawResponse};

/// The pacing of a request's retries, shared by the static and the routed paths: a retry that
/// brings new information (a leader hint, a fresher region) goes at once, but a second such one
/// in a row (stores that disagree, as in an election) waits like any other; waits double from
/// 5 ms up to 200 ms; past the deadline the request fails with the last error seen.
struct Retry {
    pause: Duration,
    went_at_once: bool,
    deadline: Instant,
    timeout: Duration,
}

impl Retry {
    fn new(deadline: Instant, timeout: Duration) -> Retry {
        Retry {
            pause: Duration::from_millis(5),
            went_at_once: false,
            deadline,
            timeout,
        }
    }

    /// Waits before the next attempt (unless `at_once` may go now), or fails with `last` when
    /// the deadline does not leave room for it.
    async fn pace(&mut self, at_once: bool, last: String) -> Result<(), ClientError> {
        let wait = !at_once || self.went_at_once;
        self.went_at_once = at_once;
        let timeout = || ClientError::Timeout {
            timeout: self.timeout,
            last: last.clone(),
        };
        if wait {
            if Instant::now() + self.pause >= self.deadline {
                return Err(timeout());
            }
            tokio::time::sleep(self.pause).await;
            self.pause = (self.pause * 2).min(Duration::from_millis(200));
        }
        if Instant::now() >= self.deadline {
            return Err(timeout());
        }
        Ok(())
    }
}

/// A deadline so far off that it never comes (a timeout too large for a clock reading).
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The longest span the command-line tools take for a timeout or a run: one week.
pub const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// Parses a command-line span in seconds (fractions allowed): positive, finite, at most
/// [`MAX_SECONDS`]. For clap's `value_parser`; the error is one line.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    match seconds(s) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "{s:?} is not a number of seconds more than 0 and at most {MAX_SECONDS}"
        )),
    }
}

/// As [`parse_seconds`], but 0 is allowed.
pub fn parse_seconds_or_zero(s: &str) -> Result<Duration, String> {
    seconds(s).ok_or_else(|| format!("{s:?} is not a number of seconds from 0 to {MAX_SECONDS}"))
}

/// `s` as a span of 0 to [`MAX_SECONDS`] seconds.
fn seconds(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().parse().ok()?;
    if !(0.0..=MAX_SECONDS).contains(&secs) {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok()
}

/// Why a client call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The server refused the request (bad input and the like); retrying will not help.
    #[error("{code:?}: {message}")]
    Rejected {
        /// The gRPC code.
        code: Code,
        /// The server's message.
        message: String,
    },
    /// No answer within the deadline; `last` says what the last attempt saw.
    #[error("no answer within {timeout:?} (last error: {last})")]
    Timeout {
        /// The deadline.
        timeout: Duration,
        /// The last failure.
        last: String,
    },
    /// An endpoint is not a valid address.
    #[error("bad endpoint {0:?}")]
    BadEndpoint(String),
    /// The scheduler's address is not valid.
    #[error("{0}")]
    BadScheduler(SourceError),
}

#[derive(Default)]
struct Shared {
    conns: HashMap<String, Conn>,
    leader: Option<String>,
    next: usize,
}

/// One store's connection: unary calls, and the batch stream when the client batches.
#[derive(Clone)]
struct Conn {
    unary: TinyKvClient<Channel>,
    batch: Option<Arc<BatchConn>>,
}

/// A client of a cluster's raw API.
#[derive(Clone)]
pub struct Client {
    endpoints: Arc<Vec<String>>,
    shared: Arc<Mutex<Shared>>,
    timeout: Duration,
    batched: bool,
    /// With a scheduler: where each key's region is led (None: a static cluster).
    regions: Option<Arc<RegionLocator<SchedulerSource>>>,
}

/// What one attempt came back with.
enum Attempt<T> {
    Done(T),
    Retry {
        err: String,
        leader_hint: Option<String>,
        next_endpoint: bool,
    },
}

impl Client {
    /// A client of the stores at `endpoints` (`host:port`); every call retries for at most
    /// `timeout`.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Result<Client, ClientError> {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(|e| e.trim().trim_start_matches("http://").to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(ClientError::BadEndpoint(String::new()));
        }
        let c = Client {
            endpoints: Arc::new(endpoints),
            shared: Arc::new(Mutex::new(Shared::default())),
            timeout,
            batched: false,
            regions: None,
        };
        // Connections are made on first use (they need the caller's async runtime); the
        // addresses are checked now.
        for e in c.endpoints.iter() {
            endpoint(e)?;
        }
        Ok(c)
    }

    /// A client of the multi-region cluster whose scheduler is at `scheduler` (`HOST:PORT`):
    /// each request goes to the leader of its key's region (see the module comment); every call
    /// retries for at most `timeout`. Nothing is contacted before the first request.
    pub fn with_scheduler(scheduler: String, timeout: Duration) -> Result<Client, ClientError> {
        let source = SchedulerSource::new(&scheduler).map_err(ClientError::BadScheduler)?;
        Ok(Client {
            endpoints: Arc::new(Vec::new()),
            shared: Arc::new(Mutex::new(Shared::default())),
            timeout,
            batched: false,
            regions: Some(Arc::new(RegionLocator::new(source))),
        })
    }

    /// The region cache of a client made with [`Client::with_scheduler`].
    pub fn region_locator(&self) -> Option<&RegionLocator<SchedulerSource>> {
        self.regions.as_deref()
    }

    /// The same client, sending its requests on `BatchRaw` streams instead of unary calls (see
    /// the module comment). Call it before the first request.
    pub fn batched(mut self) -> Client {
        self.batched = true;
        self
    }

    fn conn(&self, addr: &str) -> Result<Conn, ClientError> {
        let mut s = self.shared.lock().unwrap();
        if let Some(c) = s.conns.get(addr) {
            return Ok(c.clone());
        }
        let ep = endpoint(addr)?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true);
        let unary = TinyKvClient::new(ep.connect_lazy())
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE);
        let conn = Conn {
            batch: self.batched.then(|| {
                Arc::new(BatchConn {
                    client: unary.clone(),
                    session: Mutex::new(None),
                })
            }),
            unary,
        };
        s.conns.insert(addr.to_string(), conn.clone());
        Ok(conn)
    }

    /// The endpoint the client currently believes is the leader, if any (None with a scheduler:
    /// each region has its own).
    pub fn leader(&self) -> Option<String> {
        self.shared.lock().unwrap().leader.clone()
    }

    fn pick(&self) -> String {
        let mut s = self.shared.lock().unwrap();
        if let Some(l) = &s.leader {
            return l.clone();
        }
        let e = self.endpoints[s.next % self.endpoints.len()].clone();
        s.leader = Some(e.clone());
        e
    }

    fn moved(&self, from: &str, hint: Option<String>, next_endpoint: bool) {
        let mut s = self.shared.lock().unwrap();
        if s.leader.as_deref() != Some(from) {
            return; // Another task already moved on.
        }
        match hint {
            Some(h) => s.leader = Some(h),
            None if next_endpoint => {
                s.next += 1;
                s.leader = None;
            }
            None => {}
        }
    }

    /// When a call starting now must give up.
    fn deadline(&self) -> Instant {
        // A timeout past what `Instant` can hold means no deadline at all.
        Instant::now()
            .checked_add(self.timeout)
            .unwrap_or_else(|| Instant::now() + FOREVER)
    }

    /// Sends `cmd` until it is answered without a region error, and hands the answer to `ok`
    /// (None: the answer is of the wrong kind).
    async fn call<T>(
        &self,
        cmd: raw_request::Cmd,
        ok: impl Fn(raw_response::Cmd) -> Option<T>,
    ) -> Result<T, ClientError> {
        let deadline = self.deadline();
        let mut retry = Retry::new(deadline, self.timeout);
        loop {
            let addr = self.pick();
            let conn = self.conn(&addr)?;
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = match tokio::time::timeout(left, conn.send(cmd.clone())).await {
                Err(_) => Attempt::Retry {
                    err: format!("{addr}: timed out"),
                    leader_hint: None,
                    next_endpoint: true,
                },
                Ok(Ok((answer, leader_hint))) => match judge(&answer, leader_hint) {
                    Some(retry) => retry,
                    None => match ok(answer) {
                        Some(t) => Attempt::Done(t),
                        None => Attempt::Retry {
                            err: format!("{addr}: an answer of the wrong kind"),
                            leader_hint: None,
                            next_endpoint: true,
                        },
                    },
                },
                Ok(Err(status)) => match rejection(&status) {
                    Some(e) => return Err(e),
                    None => Attempt::Retry {
                        err: format!("{addr}: {}", status.message()),
                        leader_hint: None,
                        next_endpoint: true,
                    },
                },
            };
            match outcome {
                Attempt::Done(t) => return Ok(t),
                Attempt::Retry {
                    err,
                    leader_hint,
                    next_endpoint,
                } => {
                    let hinted = leader_hint.is_some();
                    self.moved(&addr, leader_hint, next_endpoint);
                    // A hint is followed at once; a second one in a row (stores that disagree
                    // on the leader, as in an election) waits like any other retry.
                    retry.pace(hinted, err).await?;
                }
            }
        }
    }

    /// Sends the command `cmd` builds for the region holding `key` to that region's leader
    /// until it is answered without a region error or `deadline` passes, and hands the answer to
    /// `ok` (None: the answer is of the wrong kind). Also returns the region that answered, as the
    /// request named it (its range is what the store served).
    async fn call_routed<T>(
        &self,
        loc: &RegionLocator<SchedulerSource>,
        key: &[u8],
        deadline: Instant,
        cmd: impl Fn(Context) -> raw_request::Cmd,
        ok: impl Fn(raw_response::Cmd) -> Option<T>,
    ) -> Result<(T, Region), ClientError> {
        let mut retry = Retry::new(deadline, self.timeout);
        let mut last;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Whether the failure brought what the retry needs, so it may go at once.
            let at_once = match tokio::time::timeout(left, loc.locate(key)).await {
                Err(_) => {
                    last = format!("scheduler {}: timed out", loc.source().addr());
                    false
                }
                Ok(Err(e)) => {
                    last = e.to_string();
                    false
                }
                Ok(Ok(route)) => match self.try_route(&route, deadline, &cmd).await {
                    Ok((answer, hint)) => match answer.region_error() {
                        Some(e) => {
                            last = format!(
                                "{} (region {}): {}",
                                route.addr,
                                route.region.id,
                                describe(e)
                            );
                            loc.on_region_error(&route, e, hint)
                        }
                        None => {
                            loc.on_success(&route);
                            match ok(answer) {
                                Some(t) => return Ok((t, route.region)),
                                None => {
                                    last = format!("{}: an answer of the wrong kind", route.addr);
                                    false
                                }
                            }
                        }
                    },
                    Err(Failure::Rejected(e)) => return Err(e),
                    Err(Failure::Store(err)) => {
                        last = err;
                        loc.on_store_failure(&route);
                        false
                    }
                    // The pace below ends the request: its deadline has passed.
                    Err(Failure::Deadline(err)) => {
                        last = err;
                        false
                    }
                },
            };
            retry.pace(at_once, last).await?;
        }
    }

    /// One attempt along `route`: the store's answer, region error or not, and the address of
    /// the leader a NotLeader answer names, when the store knows it.
    async fn try_route(
        &self,
        route: &Route,
        deadline: Instant,
        cmd: &impl Fn(Context) -> raw_request::Cmd,
    ) -> Result<(raw_response::Cmd, Option<String>), Failure> {
        let ctx = Context {
            region_id: route.region.id,
            region_epoch: route.region.region_epoch,
            peer: Some(route.peer),
            term: 0,
        };
        // A store address the scheduler has that is no address fails like an unreachable store.
        let conn = self
            .conn(&route.addr)
            .map_err(|e| Failure::Store(e.to_string()))?;
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.send(cmd(ctx))).await {
            Err(_) => Err(Failure::Deadline(format!("{}: timed out", route.addr))),
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(status)) => match rejection(&status) {
                Some(e) => Err(Failure::Rejected(e)),
                None => Err(Failure::Store(format!(
                    "{}: {}",
                    route.addr,
                    status.message()
                ))),
            },
        }
    }

    /// Puts `key` = `value` in `cf` (empty: default).
    pub async fn put(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        let req = RawPutRequest {
            context: None,
            key: key.to_vec(),
            value: value.to_vec(),
            cf: cf.to_string(),
        };
        let ok = |a| matches!(a, raw_response::Cmd::Put(_)).then_some(());
        let Some(loc) = &self.regions else {
            return self.call(raw_request::Cmd::Put(req), ok).await;
        };
        let cmd = |ctx| {
            raw_request::Cmd::Put(RawPutRequest {
                context: Some(ctx),
                ..req.clone()
            })
        };
        let (t, _) = self.call_routed(loc, key, self.deadline(), cmd, ok).await?;
        Ok(t)
    }

    /// The value of `key` in `cf`, or None when missing.
    pub async fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        let req = RawGetRequest {
            context: None,
            key: key.to_vec(),
            cf: cf.to_string(),
        };
        let ok = |a| match a {
            raw_response::Cmd::Get(r) => Some((!r.not_found).then_some(r.value)),
            _ => None,
        };
        let Some(loc) = &self.regions else {
            return self.call(raw_request::Cmd::Get(req), ok).await;
        };
        let cmd = |ctx| {
            raw_request::Cmd::Get(RawGetRequest {
                context: Some(ctx),
                ..req.clone()
            })
        };
        let (t, _) = self.call_routed(loc, key, self.deadline(), cmd, ok).await?;
        Ok(t)
    }

    /// Deletes `key` from `cf`.
    pub async fn delete(&self, cf: &str, key: &[u8]) -> Result<(), ClientError> {
        let req = RawDeleteRequest {
            context: None,
            key: key.to_vec(),
            cf: cf.to_string(),
        };
        let ok = |a| matches!(a, raw_response::Cmd::Delete(_)).then_some(());
        let Some(loc) = &self.regions else {
            return self.call(raw_request::Cmd::Delete(req), ok).await;
        };
        let cmd = |ctx| {
            raw_request::Cmd::Delete(RawDeleteRequest {
                context: Some(ctx),
                ..req.clone()
            })
        };
        let (t, _) = self.call_routed(loc, key, self.deadline(), cmd, ok).await?;
        Ok(t)
    }

    /// At most `limit` pairs of `cf` from `start` on, in key order. With a scheduler the scan
    /// crosses regions (see the module comment); the deadline covers the whole scan.
    pub async fn scan(
        &self,
        cf: &str,
        start: &[u8],
        limit: u32,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, ClientError> {
        let ok = |a| match a {
            raw_response::Cmd::Scan(r) => Some(
                r.kvs
                    .into_iter()
                    .map(|p| (p.key, p.value))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        };
        let Some(loc) = &self.regions else {
            let req = RawScanRequest {
                context: None,
                start_key: start.to_vec(),
                limit,
                cf: cf.to_string(),
            };
            return self.call(raw_request::Cmd::Scan(req), ok).await;
        };
        let deadline = self.deadline();
        let mut merge = ScanMerge::new(start, limit);
        while let Some((cursor, remaining)) = merge.next_request() {
            let cursor = cursor.to_vec();
            let cmd = |ctx| {
                raw_request::Cmd::Scan(RawScanRequest {
                    context: Some(ctx),
                    start_key: cursor.clone(),
                    limit: remaining,
                    cf: cf.to_string(),
                })
            };
            let (kvs, region) = self.call_routed(loc, &cursor, deadline, cmd, ok).await?;
            merge.add(&region.end_key, kvs);
        }
        Ok(merge.finish())
    }
}

/// Why an attempt along a route failed.
enum Failure {
    /// The store refused the request; retrying will not help.
    Rejected(ClientError),
    /// The store did not answer (or answered with a retryable status).
    Store(String),
    /// The request's own deadline ran out while the store worked on it: nothing is known of the
    /// store (it may be merely slow for this request), so the shared cache keeps its regions.
    Deadline(String),
}

/// The error to give up with when `status` refuses the request for good (bad input and the
/// like); None when a retry may succeed.
fn rejection(status: &Status) -> Option<ClientError> {
    match status.code() {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::Unimplemented
        | Code::OutOfRange
        | Code::ResourceExhausted
        | Code::PermissionDenied
        | Code::Unauthenticated => Some(ClientError::Rejected {
            code: status.code(),
            message: status.message().to_string(),
        }),
        _ => None,
    }
}

/// A scan that may span regions, put together region by region: ask for the pairs from
/// [`Self::next_request`]'s cursor within the region holding it, [`Self::add`] the answer with
/// that region's end key, until `next_request` says the scan is done (the limit is reached or the
/// last region of the key space answered).
struct ScanMerge {
    cursor: Vec<u8>,
    limit: usize,
    out: Vec<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl ScanMerge {
    fn new(start: &[u8], limit: u32) -> ScanMerge {
        ScanMerge {
            cursor: start.to_vec(),
            limit: limit as usize,
            out: Vec::new(),
            done: limit == 0,
        }
    }

    /// Where the next region's scan starts and how many pairs it may return; None when done.
    fn next_request(&self) -> Option<(&[u8], u32)> {
        let remaining = self.limit.saturating_sub(self.out.len());
        (!self.done && remaining > 0).then_some((self.cursor.as_slice(), remaining as u32))
    }

    /// The pairs one region (ending at `region_end`; empty: the key space's end) returned for
    /// [`Self::next_request`]. Pairs outside `[cursor, region_end)` are dropped (a store serves
    /// only its region, but the merge does not rely on it), as are pairs past the limit. An
    /// answer short of the limit means the region holds no more: the next one starts at its end.
    fn add(&mut self, region_end: &[u8], kvs: Vec<(Vec<u8>, Vec<u8>)>) {
        let remaining = self.limit.saturating_sub(self.out.len());
        let cursor = self.cursor.as_slice();
        let in_range = |k: &[u8]| k >= cursor && (region_end.is_empty() || k < region_end);
        self.out
            .extend(kvs.into_iter().filter(|(k, _)| in_range(k)).take(remaining));
        // A region that does not end after the cursor cannot be the cursor's region: stop rather
        // than ask for the same range forever.
        if self.out.len() >= self.limit || region_end.is_empty() || region_end <= cursor {
            self.done = true;
        } else {
            self.cursor = region_end.to_vec();
        }
    }

    /// Every pair, in key order.
    fn finish(self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.out
    }
}

/// The leader-address hint of a unary answer.
fn leader_hint<M>(resp: &Response<M>) -> Option<String> {
    resp.metadata()
        .get(LEADER_ADDR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl Conn {
    /// One attempt: the answer and the leader hint that came with it.
    async fn send(
        &self,
        cmd: raw_request::Cmd,
    ) -> Result<(raw_response::Cmd, Option<String>), Status> {
        let (answer, hint) = self.send_once(cmd).await?;
        if let raw_response::Cmd::Get(g) = &answer {
            if !g.error.is_empty() {
                return Err(Status::internal(g.error.clone()));
            }
        }
        Ok((answer, hint))
    }

    async fn send_once(
        &self,
        cmd: raw_request::Cmd,
    ) -> Result<(raw_response::Cmd, Option<String>), Status> {
        if let Some(batch) = &self.batch {
            let answer = batch.send(cmd).await?;
            if answer.code != 0 {
                return Err(Status::new(Code::from(answer.code), answer.message));
            }
            let cmd = answer
                .cmd
                .ok_or_else(|| Status::internal("a batched answer without a command"))?;
            let hint = Some(answer.leader_addr).filter(|a| !a.is_empty());
            return Ok((cmd, hint));
        }
        let mut c = self.unary.clone();
        // One unary call: its response as the answer, and the leader hint of its metadata.
        macro_rules! unary {
            ($method:ident, $variant:ident, $req:expr) => {{
                let resp = c.$method($req).await?;
                let hint = leader_hint(&resp);
                (raw_response::Cmd::$variant(resp.into_inner()), hint)
            }};
        }
        Ok(match cmd {
            raw_request::Cmd::Get(r) => unary!(raw_get, Get, r),
            raw_request::Cmd::Put(r) => unary!(raw_put, Put, r),
            raw_request::Cmd::Delete(r) => unary!(raw_delete, Delete, r),
            raw_request::Cmd::Scan(r) => unary!(raw_scan, Scan, r),
        })
    }
}

/// A request waiting for its batched answer.
type Pending = (
    raw_request::Cmd,
    oneshot::Sender<Result<RawResponse, Status>>,
);

/// Most requests in one BatchRaw request message.
const MAX_BATCH_REQUESTS: usize = 256;

/// The batch stream to one store: a session task owns the stream, and requests reach it through
/// `session` (None, or a closed sender: no live stream; the next request starts one).
struct BatchConn {
    client: TinyKvClient<Channel>,
    session: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
}

impl BatchConn {
    async fn send(&self, cmd: raw_request::Cmd) -> Result<RawResponse, Status> {
        let (tx, rx) = oneshot::channel();
        let mut pending = (cmd, tx);
        {
            let mut session = self.session.lock().unwrap();
            // The current stream, or if it has ended a new one; a new one that ends at once (the
            // runtime is shutting down) fails the request.
            for _ in 0..2 {
                let s = session.get_or_insert_with(|| start_session(self.client.clone()));
                match s.send(pending) {
                    Ok(()) => break,
                    Err(mpsc::error::SendError(p)) => {
                        *session = None;
                        pending = p;
                    }
                }
            }
        }
        rx.await
            .map_err(|_| Status::unavailable("the batch stream closed"))?
    }
}

/// Spawns the task of a new batch stream and returns the way in to it.
fn start_session(client: TinyKvClient<Channel>) -> mpsc::UnboundedSender<Pending> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run_session(client, rx));
    tx
}

/// Runs one batch stream: sends what arrives on `rx` in batches, hands each answer to its
/// waiter, and when the stream ends fails every request still in flight.
async fn run_session(mut client: TinyKvClient<Channel>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let in_flight: Mutex<HashMap<u64, oneshot::Sender<Result<RawResponse, Status>>>> =
        Mutex::default();
    let (req_tx, req_rx) = mpsc::channel::<BatchRawRequest>(4);
    let writer = async {
        let mut next_id = 0u64;
        while let Some(first) = rx.recv().await {
            let mut batch = BatchRawRequest::default();
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some((cmd, reply)) = next.take() {
                if batch.requests.len() + 1 < MAX_BATCH_REQUESTS && bytes < MAX_BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
                if reply.is_closed() {
                    // The caller gave up (its deadline passed): a late copy of its request
                    // could overtake the caller's later ones, so it is not sent at all.
                    continue;
                }
                next_id += 1;
                let req = RawRequest { cmd: Some(cmd) };
                bytes += req.encoded_len();
                in_flight.lock().unwrap().insert(next_id, reply);
                batch.request_ids.push(next_id);
                batch.requests.push(req);
            }
            if batch.requests.is_empty() {
                continue;
            }
            if req_tx.send(batch).await.is_err() {
                break;
            }
        }
    };
    let reader = async {
        let mut answers = client
            .batch_raw(ReceiverStream::new(req_rx))
            .await?
            .into_inner();
        while let Some(msg) = answers.message().await? {
            if msg.responses.len() != msg.request_ids.len() {
                return Err(Status::internal(format!(
                    "a batch of {} answers with {} request ids",
                    msg.responses.len(),
                    msg.request_ids.len()
                )));
            }
            let mut waiting = in_flight.lock().unwrap();
            for (id, answer) in msg.request_ids.into_iter().zip(msg.responses) {
                if let Some(reply) = waiting.remove(&id) {
                    // The caller may have given up (its deadline passed).
                    let _ = reply.send(Ok(answer));
                }
            }
        }
        Err::<(), _>(Status::unavailable("the store ended the batch stream"))
    };
    let status = tokio::select! {
        r = reader => r.err().unwrap_or_else(|| Status::unavailable("the batch stream ended")),
        () = writer => Status::unavailable("the batch stream closed"),
    };
    // Whatever ended the stream says nothing about the requests on it (one oversized answer
    // may have failed the stream): they are retried, as after a broken connection.
    for (_, reply) in in_flight.lock().unwrap().drain() {
        let _ = reply.send(Err(Status::unavailable(format!(
            "the batch stream failed: {}",
            status.message()
        ))));
    }
}

/// None when `answer` carries no region error; else how to retry.
fn judge<T>(answer: &raw_response::Cmd, leader_hint: Option<String>) -> Option<Attempt<T>> {
    let e = answer.region_error()?;
    let err = describe(e);
    Some(if e.not_leader.is_some() {
        Attempt::Retry {
            err,
            // A hint that is no address is no hint: the next endpoint is tried instead.
            leader_hint: leader_hint.filter(|h| endpoint(h).is_ok()),
            next_endpoint: true,
        }
    } else {
        // Stale command, epoch change, ...: the same store may well serve the retry.
        Attempt::Retry {
            err,
            leader_hint: None,
            next_endpoint: e.region_not_found.is_some(),
        }
    })
}

/// The gRPC endpoint of a store's `host:port`.
fn endpoint(addr: &str) -> Result<Endpoint, ClientError> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| ClientError::BadEndpoint(addr.to_string()))
}

/// One line about a region error.
pub fn describe(e: &errorpb::Error) -> String {
    if let Some(nl) = &e.not_leader {
        return match &nl.leader {
            Some(p) => format!("not leader (leader is store {})", p.store_id),
            None => "not leader (no leader known)".into(),
        };
    }
    if e.stale_command.is_some() {
        return "stale command".into();
    }
    if e.epoch_not_match.is_some() {
        return "region epoch changed".into();
    }
    if let Some(r) = &e.region_not_found {
        return format!("region {} not found", r.region_id);
    }
    if e.key_not_in_region.is_some() {
        return "key not in region".into();
    }
    if e.message.is_empty() {
        "region error".into()
    } else {
        e.message.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NotLeader answer's hint is followed only when it is an address; otherwise the client
    /// moves to its next endpoint, as with no hint.
    #[test]
    fn malformed_leader_hints_are_dropped() {
        let not_leader = raw_response::Cmd::Get(proto::kvrpcpb::RawGetResponse {
            region_error: Some(errorpb::Error {
                not_leader: Some(errorpb::NotLeader::default()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let hint_of = |h: &str| match judge::<()>(&not_leader, Some(h.to_string())) {
            Some(Attempt::Retry {
                leader_hint,
                next_endpoint,
                ..
            }) => {
                assert!(next_endpoint);
                leader_hint
            }
            _ => panic!("NotLeader is retried"),
        };
        assert_eq!(
            hint_of("127.0.0.1:20161").as_deref(),
            Some("127.0.0.1:20161")
        );
        assert_eq!(hint_of("not an address"), None);
    }

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    /// Runs a scan from `start` over a key space cut at `splits`, each region answering as a
    /// store does (its pairs from the cursor on, up to its end, at most the limit asked for).
    fn scan_regions(data: &[&str], splits: &[&str], start: &str, limit: u32) -> (Pairs, usize) {
        let mut merge = ScanMerge::new(start.as_bytes(), limit);
        let mut asked = 0;
        while let Some((cursor, n)) = merge.next_request() {
            asked += 1;
            let cursor = cursor.to_vec();
            let end = splits
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .find(|s| *s > cursor)
                .unwrap_or_default();
            let kvs: Pairs = data
                .iter()
                .map(|k| k.as_bytes().to_vec())
                .filter(|k| *k >= cursor && (end.is_empty() || *k < end))
                .take(n as usize)
                .map(|k| (k.clone(), k))
                .collect();
            merge.add(&end, kvs);
            assert!(asked <= splits.len() + 1, "a region asked twice");
        }
        (merge.finish(), asked)
    }

    #[test]
    fn a_scan_across_regions_is_one_ordered_answer_within_the_limit() {
        let data = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        let splits = ["c", "d", "f", "x"]; // [, c) [c, d) [d, f) [f, x) [x, )
        let expect = |start: &str, limit: usize| -> Pairs {
            data.iter()
                .filter(|k| **k >= start)
                .take(limit)
                .map(|k| (k.as_bytes().to_vec(), k.as_bytes().to_vec()))
                .collect()
        };
        for start in ["", "a", "b", "c", "cc", "e", "j", "k", "z"] {
            for limit in 0..12 {
                let (got, _) = scan_regions(&data, &splits, start, limit);
                assert_eq!(
                    got,
                    expect(start, limit as usize),
                    "from {start:?}, {limit}"
                );
            }
        }
        // The scan stops at the limit: the later regions are not asked.
        // ([, c) answers a, b: short of 3, so [c, d) is asked and its c completes the scan.)
        assert_eq!(scan_regions(&data, &splits, "", 3).1, 2);
        assert_eq!(scan_regions(&data, &splits, "", 4).1, 3);
        assert_eq!(scan_regions(&data, &splits, "", 2).1, 1);
        assert_eq!(scan_regions(&data, &splits, "", 0).1, 0);
        // Without a limit in sight, every region from the start's on is asked once.
        assert_eq!(scan_regions(&data, &splits, "", 100).1, 5);
        assert_eq!(scan_regions(&data, &splits, "e", 100).1, 3);
        // One region: one request.
        assert_eq!(scan_regions(&data, &[], "", 100), (expect("", 100), 1));
    }

    #[test]
    fn a_scan_drops_pairs_outside_the_region_asked() {
        let pair = |k: &str| (k.as_bytes().to_vec(), b"v".to_vec());
        let mut m = ScanMerge::new(b"c", 10);
        // A pair before the cursor and one at the region's end are not the region's.
        m.add(b"f", vec![pair("b"), pair("c"), pair("e"), pair("f")]);
        assert_eq!(m.next_request(), Some((&b"f"[..], 8)));
        m.add(b"", vec![pair("g"), pair("h")]);
        assert_eq!(m.next_request(), None);
        assert_eq!(m.finish(), vec![pair("c"), pair("e"), pair("g"), pair("h")]);
        // A region that does not end after the cursor ends the scan instead of looping.
        let mut m = ScanMerge::new(b"m", 10);
        m.add(b"k", vec![]);
        assert_eq!(m.next_request(), None);
    }

    #[test]
    fn a_scheduler_client_checks_its_address_and_gives_up_on_an_unreachable_scheduler() {
        assert!(matches!(
            Client::with_scheduler("no port".into(), Duration::from_secs(1)),
            Err(ClientError::BadScheduler(_))
        ));
        // A port nobody listens on (free a moment ago).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let client = Client::with_scheduler(addr.clone(), Duration::from_millis(300)).unwrap();
        assert!(client.region_locator().is_some());
        assert_eq!(client.leader(), None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        match rt.block_on(client.get("", b"k")) {
            Err(ClientError::Timeout { last, .. }) => {
                assert!(last.contains(&format!("scheduler {addr}")), "{last}")
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        match rt.block_on(client.scan("", b"", 10)) {
            Err(ClientError::Timeout { .. }) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
        // A zero limit asks nobody.
        assert_eq!(rt.block_on(client.scan("", b"", 0)).unwrap(), vec![]);
    }

    #[test]
    fn command_line_seconds_are_bounded_and_never_panic() {
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_seconds(" 10 "), Ok(Duration::from_secs(10)));
        assert_eq!(parse_seconds_or_zero("0"), Ok(Duration::ZERO));
        for bad in [
            "0", "-1", "inf", "NaN", "1e300", "1e19", "604801", "ten", "",
        ] {
            assert!(parse_seconds(bad).is_err(), "{bad:?}");
        }
        for bad in ["-0.5", "inf", "1e300", "x"] {
            assert!(parse_seconds_or_zero(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_seconds(&MAX_SECONDS.to_string()),
            Ok(Duration::from_secs(MAX_SECONDS as u64))
        );
    }
}
