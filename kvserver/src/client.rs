//! A raw-API client for a static cluster: it keeps one HTTP/2 connection per endpoint, sends to
//! the leader it last saw, follows NotLeader answers (the `x-tinykv-leader-addr` hint, else the
//! next endpoint), and retries retryable failures (unreachable store, no leader yet, stale command,
//! timeout) until its deadline. Bad input fails at once with the server's message.
//!
//! Cloning is cheap and clones share connections and the leader guess, so many tasks can use one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::errorpb;
use proto::kvrpcpb::{RawDeleteRequest, RawGetRequest, RawPutRequest, RawScanRequest};
use thiserror::Error;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};

use crate::service::LEADER_ADDR_HEADER;
use crate::tinykvpb::tiny_kv_client::TinyKvClient;

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
    conns: HashMap<String, TinyKvClient<Channel>>,
    leader: Option<String>,
    next: usize,
}

/// A client of a cluster's raw API.
#[derive(Clone)]
pub struct Client {
    endpoints: Arc<Vec<String>>,
    shared: Arc<Mutex<Shared>>,
    timeout: Duration,
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
        };
        // Connections are made on first use (they need the caller's async runtime); the
        // addresses are checked now.
        for e in c.endpoints.iter() {
            Endpoint::from_shared(format!("http://{e}"))
                .map_err(|_| ClientError::BadEndpoint(e.clone()))?;
        }
        Ok(c)
    }

    fn conn(&self, addr: &str) -> Result<TinyKvClient<Channel>, ClientError> {
        let mut s = self.shared.lock().unwrap();
        if let Some(c) = s.conns.get(addr) {
            return Ok(c.clone());
        }
        let ep = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|_| ClientError::BadEndpoint(addr.to_string()))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true);
        let client = TinyKvClient::new(ep.connect_lazy())
            .max_decoding_message_size(crate::server::MAX_GRPC_MESSAGE)
            .max_encoding_message_size(crate::server::MAX_GRPC_MESSAGE);
        s.conns.insert(addr.to_string(), client.clone());
        Ok(client)
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

    async fn call<T, F, Fut>(&self, mut f: F) -> Result<T, ClientError>
    where
        F: FnMut(TinyKvClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Attempt<T>, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(5);
        let mut last;
        loop {
            let addr = self.pick();
            let client = self.conn(&addr)?;
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = match tokio::time::timeout(left, f(client)).await {
                Err(_) => Attempt::Retry {
                    err: format!("{addr}: timed out"),
                    leader_hint: None,
                    next_endpoint: true,
                },
                Ok(Ok(a)) => a,
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
                    if !hinted {
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
        self.call(|mut c| {
            let req = req.clone();
            async move {
                let resp = c.raw_put(req).await?;
                Ok(judge(&resp, resp.get_ref().region_error.as_ref(), |_| ()))
            }
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
        self.call(|mut c| {
            let req = req.clone();
            async move {
                let resp = c.raw_get(req).await?;
                if !resp.get_ref().error.is_empty() {
                    return Err(Status::internal(resp.get_ref().error.clone()));
                }
                Ok(judge(&resp, resp.get_ref().region_error.as_ref(), |r| {
                    (!r.not_found).then(|| r.value.clone())
                }))
            }
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
        self.call(|mut c| {
            let req = req.clone();
            async move {
                let resp = c.raw_delete(req).await?;
                Ok(judge(&resp, resp.get_ref().region_error.as_ref(), |_| ()))
            }
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
        self.call(|mut c| {
            let req = req.clone();
            async move {
                let resp = c.raw_scan(req).await?;
                Ok(judge(&resp, resp.get_ref().region_error.as_ref(), |r| {
                    r.kvs
                        .iter()
                        .map(|p| (p.key.clone(), p.value.clone()))
                        .collect()
                }))
            }
        })
        .await
    }
}

/// Done, or how to retry after a region error.
fn judge<M, T>(
    resp: &Response<M>,
    region_error: Option<&errorpb::Error>,
    ok: impl FnOnce(&M) -> T,
) -> Attempt<T> {
    let Some(e) = region_error else {
        return Attempt::Done(ok(resp.get_ref()));
    };
    let leader_hint = resp
        .metadata()
        .get(LEADER_ADDR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let err = describe(e);
    if e.not_leader.is_some() {
        Attempt::Retry {
            err,
            leader_hint,
            next_endpoint: true,
        }
    } else {
        // Stale command, epoch change, ...: the same store may well serve the retry.
        Attempt::Retry {
            err,
            leader_hint: None,
            next_endpoint: e.region_not_found.is_some(),
        }
    }
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
