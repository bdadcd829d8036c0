//! A raw-API client for a static cluster: it keeps one HTTP/2 connection per endpoint, sends to
//! the leader it last saw, follows NotLeader answers (the `x-tinykv-leader-addr` hint, else the
//! next endpoint), and retries retryable failures (unreachable store, no leader yet, stale command,
//! timeout) until its deadline. Bad input fails at once with the server's message.
//!
//! By default each request is its own unary call. [`Client::batched`] sends them instead on one
//! long-lived `BatchRaw` stream per store: requests issued while the previous message is on its
//! way go out together in the next one, and answers come back the same way, so many concurrent
//! callers share HTTP/2's per-message cost. A broken stream fails its requests in flight with
//! UNAVAILABLE (they are retried like any unreachable store's) and the next request opens a new one.
//!
//! Cloning is cheap and clones share connections and the leader guess, so many tasks can use one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use proto::errorpb;
use proto::kvrpcpb::{RawDeleteRequest, RawGetRequest, RawPutRequest, RawScanRequest};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};

use crate::limits::{MAX_BATCH_BYTES, MAX_GRPC_MESSAGE};
use crate::service::LEADER_ADDR_HEADER;
use crate::tinykvpb::tiny_kv_client::TinyKvClient;
use crate::tinykvpb::{raw_request, raw_response, BatchRawRequest, RawRequest, RawResponse};

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
        };
        // Connections are made on first use (they need the caller's async runtime); the
        // addresses are checked now.
        for e in c.endpoints.iter() {
            endpoint(e)?;
        }
        Ok(c)
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

    /// The endpoint the client currently believes is the leader, if any.
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

    /// Sends `cmd` until it is answered without a region error, and hands the answer to `ok`
    /// (None: the answer is of the wrong kind).
    async fn call<T>(
        &self,
        cmd: raw_request::Cmd,
        ok: impl Fn(raw_response::Cmd) -> Option<T>,
    ) -> Result<T, ClientError> {
        // A timeout past what `Instant` can hold means no deadline at all.
        let deadline = Instant::now()
            .checked_add(self.timeout)
            .unwrap_or_else(|| Instant::now() + FOREVER);
        let mut pause = Duration::from_millis(5);
        let mut followed_hint = false;
        let mut last;
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
                Ok(Err(status)) => match status.code() {
                    Code::InvalidArgument
                    | Code::FailedPrecondition
                    | Code::Unimplemented
                    | Code::OutOfRange
                    | Code::ResourceExhausted
                    | Code::PermissionDenied
                    | Code::Unauthenticated => {
                        return Err(ClientError::Rejected {
                            code: status.code(),
                            message: status.message().to_string(),
                        })
                    }
                    _ => Attempt::Retry {
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
                    last = err;
                    let hinted = leader_hint.is_some();
                    self.moved(&addr, leader_hint, next_endpoint);
                    // A hint is followed at once; a second one in a row (stores that disagree
                    // on the leader, as in an election) waits like any other retry.
                    let wait = !hinted || followed_hint;
                    followed_hint = hinted;
                    if wait {
                        if Instant::now() + pause >= deadline {
                            return Err(ClientError::Timeout {
                                timeout: self.timeout,
                                last,
                            });
                        }
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(200));
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout {
                    timeout: self.timeout,
                    last,
                });
            }
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
        self.call(raw_request::Cmd::Put(req), |a| {
            matches!(a, raw_response::Cmd::Put(_)).then_some(())
        })
        .await
    }

    /// The value of `key` in `cf`, or None when missing.
    pub async fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        let req = RawGetRequest {
            context: None,
            key: key.to_vec(),
            cf: cf.to_string(),
        };
        self.call(raw_request::Cmd::Get(req), |a| match a {
            raw_response::Cmd::Get(r) => Some((!r.not_found).then_some(r.value)),
            _ => None,
        })
        .await
    }

    /// Deletes `key` from `cf`.
    pub async fn delete(&self, cf: &str, key: &[u8]) -> Result<(), ClientError> {
        let req = RawDeleteRequest {
            context: None,
            key: key.to_vec(),
            cf: cf.to_string(),
        };
        self.call(raw_request::Cmd::Delete(req), |a| {
            matches!(a, raw_response::Cmd::Delete(_)).then_some(())
        })
        .await
    }

    /// At most `limit` pairs of `cf` from `start` on, in key order.
    pub async fn scan(
        &self,
        cf: &str,
        start: &[u8],
        limit: u32,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, ClientError> {
        let req = RawScanRequest {
            context: None,
            start_key: start.to_vec(),
            limit,
            cf: cf.to_string(),
        };
        self.call(raw_request::Cmd::Scan(req), |a| match a {
            raw_response::Cmd::Scan(r) => {
                Some(r.kvs.into_iter().map(|p| (p.key, p.value)).collect())
            }
            _ => None,
        })
        .await
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
