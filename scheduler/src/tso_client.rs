//! A timestamp client (PD's and TinyKV's `scheduler/client` TSO dispatcher): many callers ask for
//! one timestamp each; their requests travel together on one `Tso` stream, one batch in flight
//! at a time, so the callers that arrive while a batch is on its way share the next message.
//!
//! The scheduler answers a batch of `count` with the LAST timestamp of the batch; the batch is
//! the `count` consecutive logical values ending there, handed to the callers in the order they
//! asked. A broken stream fails the batch in flight; the next batch opens a new stream.

use std::time::Duration;

use proto::schedulerpb::{GetMembersRequest, RequestHeader, TsoRequest, TsoResponse};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

use crate::schedulerpb::scheduler_client::SchedulerClient;
use crate::tso::{compose, LOGICAL_BITS};

/// The most timestamps one request asks for (callers beyond it wait for the next batch).
pub const MAX_BATCH: usize = 10_000;

/// Why a timestamp could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TsoError {
    /// The scheduler's address is not valid.
    #[error("bad scheduler address {0:?}")]
    BadAddress(String),
    /// The scheduler could not be reached or the stream broke.
    #[error("scheduler {addr}: {message}")]
    Unavailable {
        /// The scheduler's address.
        addr: String,
        /// What failed.
        message: String,
    },
    /// The scheduler answered with an error.
    #[error("scheduler {addr} refused: {message}")]
    Refused {
        /// The scheduler's address.
        addr: String,
        /// Its message.
        message: String,
    },
    /// The client was dropped while a caller waited.
    #[error("the timestamp client stopped")]
    Stopped,
}

type Waiter = oneshot::Sender<Result<u64, TsoError>>;

/// A cloneable handle to the dispatcher task; must be created inside a tokio runtime.
#[derive(Clone)]
pub struct TsoClient {
    tx: mpsc::UnboundedSender<Waiter>,
}

/// One open `Tso` stream.
struct Stream {
    requests: mpsc::Sender<TsoRequest>,
    responses: Streaming<TsoResponse>,
}

struct Dispatcher {
    addr: String,
    client: SchedulerClient<Channel>,
    cluster_id: u64,
    stream: Option<Stream>,
}

impl TsoClient {
    /// Connects to the scheduler at `addr` (`HOST:PORT`), learns its cluster id and starts the
    /// dispatcher task.
    pub async fn connect(addr: &str) -> Result<TsoClient, TsoError> {
        let url = if addr.starts_with("http://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let endpoint = Endpoint::from_shared(url)
            .map_err(|_| TsoError::BadAddress(addr.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let unavailable = |e: &dyn std::fmt::Display| TsoError::Unavailable {
            addr: addr.to_string(),
            message: e.to_string(),
        };
        let channel = endpoint.connect().await.map_err(|e| unavailable(&e))?;
        let mut client = SchedulerClient::new(channel);
        let members = client
            .get_members(GetMembersRequest { header: None })
            .await
            .map_err(|e| unavailable(&e.message()))?
            .into_inner();
        let cluster_id = members.header.map_or(0, |h| h.cluster_id);
        let (tx, rx) = mpsc::unbounded_channel();
        let d = Dispatcher {
            addr: addr.to_string(),
            client,
            cluster_id,
            stream: None,
        };
        tokio::spawn(d.run(rx));
        Ok(TsoClient { tx })
    }

    /// One new timestamp (`physical_ms << 18 | logical`), larger than any handed out before.
    pub async fn get_ts(&self) -> Result<u64, TsoError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| TsoError::Stopped)?;
        rx.await.map_err(|_| TsoError::Stopped)?
    }
}

impl Dispatcher {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Waiter>) {
        let mut batch: Vec<Waiter> = Vec::new();
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(w) => batch.push(w),
                    Err(_) => break,
                }
            }
            match self.fetch(batch.len() as u32).await {
                Ok(last) => {
                    let first = last - (batch.len() as u64 - 1);
                    for (i, w) in batch.drain(..).enumerate() {
                        let _ = w.send(Ok(first + i as u64));
                    }
                }
                Err(e) => {
                    // A stream that failed once is not trusted again.
                    self.stream = None;
                    for w in batch.drain(..) {
                        let _ = w.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Asks for `count` timestamps; returns the last one.
    async fn fetch(&mut self, count: u32) -> Result<u64, TsoError> {
        let unavailable = |message: String| TsoError::Unavailable {
            addr: self.addr.clone(),
            message,
        };
        if self.stream.is_none() {
            let (tx, rx) = mpsc::channel(16);
            let responses = self
                .client
                .tso(ReceiverStream::new(rx))
                .await
                .map_err(|e| unavailable(e.message().to_string()))?
                .into_inner();
            self.stream = Some(Stream {
                requests: tx,
                responses,
            });
        }
        let s = self.stream.as_mut().expect("opened above");
        let req = TsoRequest {
            header: Some(RequestHeader {
                cluster_id: self.cluster_id,
            }),
            count,
        };
        s.requests
            .send(req)
            .await
            .map_err(|_| unavailable("the stream closed".into()))?;
        let resp = match s.responses.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(unavailable("the stream ended".into())),
            Err(e) => return Err(unavailable(e.message().to_string())),
        };
        if let Some(err) = resp.header.as_ref().and_then(|h| h.error.as_ref()) {
            return Err(TsoError::Refused {
                addr: self.addr.clone(),
                message: err.message.clone(),
            });
        }
        let ts = resp
            .timestamp
            .ok_or_else(|| unavailable("an answer without a timestamp".into()))?;
        let logical = ts.logical as u64;
        if resp.count != count || logical + 1 < u64::from(count) || logical >> LOGICAL_BITS != 0 {
            return Err(unavailable(format!(
                "a malformed answer: count {} for {count}, logical {logical}",
                resp.count
            )));
        }
        Ok(compose(ts.physical as u64, logical))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{RunningScheduler, ServerConfig};

    #[test]
    fn test_concurrent_callers_get_distinct_growing_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let s = RunningScheduler::start(
            ServerConfig {
                addr: "127.0.0.1:0".into(),
                data_dir: dir.path().to_path_buf(),
                ..Default::default()
            },
            raft::util::default_logger(),
        )
        .unwrap();
        let addr = s.addr().to_string();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = TsoClient::connect(&addr).await.unwrap();
            let mut tasks = Vec::new();
            for _ in 0..32 {
                let c = c.clone();
                tasks.push(tokio::spawn(async move {
                    let mut last = 0;
                    let mut got = Vec::new();
                    for _ in 0..200 {
                        let ts = c.get_ts().await.unwrap();
                        assert!(ts > last, "a caller's timestamps grow");
                        last = ts;
                        got.push(ts);
                    }
                    got
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            let n = all.len();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), n, "no timestamp handed out twice");
        });
        drop(rt);
        s.stop().unwrap();
        // A stopped scheduler: a clear error, not a hang.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt
            .block_on(TsoClient::connect(&addr))
            .err()
            .expect("no scheduler there");
        assert!(e.to_string().contains(&addr), "{e}");
    }
}
