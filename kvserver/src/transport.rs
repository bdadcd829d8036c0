//! The raftstore `Transport` over gRPC: one `Raft` client stream per peer store.
//!
//! The poller thread hands messages over without blocking: each peer store has a bounded queue,
//! drained by a task on the server's async runtime that keeps a stream open to that store. When
//! the store is down, the task reconnects with exponential back-off (50 ms up to 2 s) and the
//! queue's overflow is dropped (raft resends what matters). Message batching comes from the
//! stream itself: tonic encodes every queued message into one HTTP/2 write while the queue is
//! not empty.

use std::collections::HashMap;
use std::time::Duration;

use proto::raft_serverpb::RaftMessage;
use raftstore::runtime::Transport;
use slog::{debug, info, warn, Logger};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::tinykvpb::tiny_kv_client::TinyKvClient;

/// Messages queued for one peer store before new ones are dropped.
const QUEUE_CAPACITY: usize = 16 * 1024;
/// First reconnect delay.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Sends raft messages to peer stores over gRPC.
pub struct GrpcTransport {
    queues: HashMap<u64, mpsc::Sender<RaftMessage>>,
    logger: Logger,
    dropped: u64,
}

impl GrpcTransport {
    /// A transport from store `self_id` to every other store of `addrs` (store id -> address),
    /// whose connection tasks run on `rt`.
    pub fn new(self_id: u64, addrs: &HashMap<u64, String>, rt: &Handle, logger: &Logger) -> Self {
        let mut queues = HashMap::new();
        for (&id, addr) in addrs {
            if id == self_id {
                continue;
            }
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            let logger = logger.new(slog::o!("to_store" => id, "to_addr" => addr.clone()));
            rt.spawn(connection(addr.clone(), rx, logger));
            queues.insert(id, tx);
        }
        GrpcTransport {
            queues,
            logger: logger.clone(),
            dropped: 0,
        }
    }
}

impl Transport for GrpcTransport {
    fn send(&mut self, msg: RaftMessage) -> raftstore::Result<()> {
        let to = msg.to_peer.as_ref().map_or(0, |p| p.store_id);
        let Some(q) = self.queues.get(&to) else {
            return Err(raftstore::Error::Other(format!(
                "no address for store {to}"
            )));
        };
        if let Err(e) = q.try_send(msg) {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                debug!(self.logger, "raft message dropped"; "to_store" => to, "reason" => %e,
                    "dropped_total" => self.dropped);
            }
        }
        Ok(())
    }
}

/// Keeps a `Raft` stream open to `addr`, feeding it from `rx`, until the transport is dropped.
async fn connection(addr: String, mut rx: mpsc::Receiver<RaftMessage>, logger: Logger) {
    let endpoint = match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5)),
        Err(e) => {
            warn!(logger, "bad peer address; no raft messages will reach it"; "err" => %e);
            // Keep draining so the poller never sees a full queue for this store.
            while rx.recv().await.is_some() {}
            return;
        }
    };
    let mut backoff = BACKOFF_MIN;
    let mut was_down = false;
    loop {
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => {
                if !was_down {
                    warn!(logger, "peer store unreachable; retrying with back-off"; "err" => %e);
                    was_down = true;
                }
                // Messages queued while the store is down are stale by the time it is back.
                if drain_for(&mut rx, backoff).await.is_none() {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if was_down {
            info!(logger, "peer store reachable again");
            was_down = false;
        }
        backoff = BACKOFF_MIN;
        let mut client = TinyKvClient::new(channel)
            .max_encoding_message_size(usize::MAX)
            .max_decoding_message_size(usize::MAX);
        let (stx, srx) = mpsc::channel(1024);
        let call = client.raft(ReceiverStream::new(srx));
        tokio::pin!(call);
        loop {
            tokio::select! {
                res = &mut call => {
                    match res {
                        Ok(_) => debug!(logger, "raft stream closed by peer"),
                        Err(e) => warn!(logger, "raft stream failed; reconnecting"; "err" => %e),
                    }
                    break;
                }
                msg = rx.recv() => match msg {
                    Some(m) => {
                        if stx.send(m).await.is_err() {
                            break;
                        }
                    }
                    None => return,
                },
            }
        }
    }
}

/// Waits `d` while dropping whatever arrives on `rx`; None when the sender side is gone.
async fn drain_for(rx: &mut mpsc::Receiver<RaftMessage>, d: Duration) -> Option<()> {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Some(()),
            m = rx.recv() => { m?; }
        }
    }
}
