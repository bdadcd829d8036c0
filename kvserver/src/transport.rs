//! The raftstore `Transport` over gRPC: one `Raft` client stream per peer store, and a `Snapshot`
//! client stream per snapshot sent.
//!
//! The store hands messages over without blocking: each peer store has a bounded queue,
//! drained by a task on the server's async runtime that keeps a stream open to that store. When
//! the store is down, or refuses the stream, the task retries with exponential back-off (50 ms up
//! to 2 s; a stream that lived 5 s resets it) and the queue's overflow is dropped (raft resends
//! what matters). Message batching comes from the stream itself: tonic encodes every queued
//! message into one HTTP/2 write while the queue is not empty.
//!
//! A MsgSnapshot carries only the snapshot's metadata; its data is in files of this store's
//! [`SnapManager`]. Each one gets its own `Snapshot` stream: first a chunk with the message, then
//! the files in chunks of at most `SNAP_CHUNK_SIZE` bytes, read on a blocking thread with a few
//! chunks in flight (memory stays bounded whatever the region's size). The receiver verifies sizes
//! and checksums before it hands the message to its store. The outcome goes back to this store as
//! `StoreMsg::ReportSnapshot`: raft waits for it before replicating to that peer again, and sends
//! a new snapshot after a failure.
//!
//! Store addresses come from a [`StoreResolver`]: in static mode the fixed `--initial-cluster`
//! map (a connection task per store from the start); with a scheduler, a store first sent to
//! gets its queue and task then, and the task asks the resolver for the address before every
//! connection attempt, the cached address being dropped after a failed one.

use std::collections::HashMap;
use std::time::Duration;

use crate::resolver::StoreResolver;
use crate::store_task::StoreRouter;
use proto::raft_serverpb::{RaftMessage, SnapshotChunk};
use raft::SnapshotStatus;
use raftstore::runtime::{StoreMsg, Transport};
use raftstore::snap::is_snapshot_msg;
use raftstore::SnapManager;
use slog::{debug, info, warn, Logger};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::tinykvpb::tiny_kv_client::TinyKvClient;

/// Messages queued for one peer store before new ones are dropped.
const QUEUE_CAPACITY: usize = 16 * 1024;
/// First reconnect delay.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A raft stream that lasted this long was a working one: its end resets the back-off.
const STREAM_SETTLED: Duration = Duration::from_secs(5);

/// Snapshot chunks read ahead of the network, per transfer.
const SNAP_CHUNKS_IN_FLIGHT: usize = 4;
/// Longest a snapshot transfer may take before it is abandoned (and reported failed).
const SNAP_TIMEOUT: Duration = Duration::from_secs(600);

/// Sends raft messages to peer stores over gRPC.
pub struct GrpcTransport {
    self_id: u64,
    queues: HashMap<u64, mpsc::Sender<RaftMessage>>,
    resolver: StoreResolver,
    snap_mgr: SnapManager,
    store: StoreRouter,
    rt: Handle,
    logger: Logger,
    dropped: u64,
}

impl GrpcTransport {
    /// A transport from store `self_id` to the stores `resolver` knows or finds (store id ->
    /// address), whose connection tasks run on `rt`; snapshots are read from `snap_mgr` and
    /// their outcome reported to the store's mailbox `store`.
    pub fn new(
        self_id: u64,
        resolver: StoreResolver,
        snap_mgr: SnapManager,
        store: StoreRouter,
        rt: &Handle,
        logger: &Logger,
    ) -> Self {
        let mut t = GrpcTransport {
            self_id,
            queues: HashMap::new(),
            resolver,
            snap_mgr,
            store,
            rt: rt.clone(),
            logger: logger.clone(),
            dropped: 0,
        };
        let mut known: Vec<u64> = t.resolver.known().into_keys().collect();
        known.sort_unstable();
        for id in known {
            if id != self_id {
                t.open_queue(id);
            }
        }
        t
    }

    /// The queue to store `to` with its connection task, made now.
    fn open_queue(&mut self, to: u64) -> &mpsc::Sender<RaftMessage> {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let logger = self.logger.new(slog::o!("to_store" => to));
        self.rt
            .spawn(connection(to, self.resolver.clone(), rx, logger));
        self.queues.entry(to).or_insert(tx)
    }

    /// Streams the snapshot of `msg` to its store in the background.
    fn send_snapshot(&self, msg: RaftMessage) -> raftstore::Result<()> {
        let to = msg.to_peer.unwrap_or_default();
        if !self.resolver.is_dynamic() && self.resolver.cached(to.store_id).is_none() {
            return Err(raftstore::Error::Other(format!(
                "no address for store {}",
                to.store_id
            )));
        }
        let resolver = self.resolver.clone();
        let (mgr, store) = (self.snap_mgr.clone(), self.store.clone());
        let logger = self.logger.new(slog::o!("region_id" => msg.region_id,
            "to_store" => to.store_id, "to_peer" => to.id));
        let region_id = msg.region_id;
        self.rt.spawn(async move {
            let started = std::time::Instant::now();
            let send = async {
                let addr = resolver.resolve(to.store_id).await?;
                let sent = stream_snapshot(addr, mgr, msg).await;
                if sent.is_err() {
                    resolver.invalidate(to.store_id);
                }
                sent
            };
            let sent = tokio::time::timeout(SNAP_TIMEOUT, send).await;
            let status = match sent {
                Ok(Ok(bytes)) => {
                    info!(logger, "snapshot sent"; "bytes" => bytes,
                        "elapsed_ms" => started.elapsed().as_millis() as u64);
                    SnapshotStatus::Finish
                }
                Ok(Err(e)) => {
                    warn!(logger, "snapshot transfer failed; raft will retry"; "err" => %e);
                    SnapshotStatus::Failure
                }
                Err(_) => {
                    warn!(logger, "snapshot transfer timed out; raft will retry";
                        "timeout_s" => SNAP_TIMEOUT.as_secs());
                    SnapshotStatus::Failure
                }
            };
            let _ = store.send(StoreMsg::ReportSnapshot {
                region_id,
                to_peer_id: to.id,
                status,
            });
        });
        Ok(())
    }
}

/// Sends the snapshot of `msg` over one `Snapshot` stream to `addr`; returns the data bytes sent.
async fn stream_snapshot(addr: String, mgr: SnapManager, msg: RaftMessage) -> Result<u64, String> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let mut client = TinyKvClient::new(channel)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    let (tx, rx) = mpsc::channel::<SnapshotChunk>(SNAP_CHUNKS_IN_FLIGHT);
    let first = SnapshotChunk {
        message: Some(msg.clone()),
        data: Vec::new(),
    };
    tx.send(first).await.map_err(|e| e.to_string())?;
    // Files are read on a blocking thread; the bounded channel keeps a few chunks in memory.
    let reader = tokio::task::spawn_blocking(move || -> Result<u64, String> {
        let mut chunks = mgr.chunk_reader(&msg).map_err(|e| e.to_string())?;
        let mut bytes = 0;
        while let Some(data) = chunks.next_chunk().map_err(|e| e.to_string())? {
            bytes += data.len() as u64;
            let chunk = SnapshotChunk {
                message: None,
                data,
            };
            if tx.blocking_send(chunk).is_err() {
                return Err("the snapshot stream closed early".into());
            }
        }
        Ok(bytes)
    });
    let call = client.snapshot(ReceiverStream::new(rx));
    let (called, read) = tokio::join!(call, reader);
    let bytes = read.map_err(|e| e.to_string())??;
    called.map_err(|s| format!("{}: {}", addr, s.message()))?;
    Ok(bytes)
}

impl Transport for GrpcTransport {
    fn send(&mut self, msg: RaftMessage) -> raftstore::Result<()> {
        if is_snapshot_msg(&msg) {
            return self.send_snapshot(msg);
        }
        let to = msg.to_peer.as_ref().map_or(0, |p| p.store_id);
        let q = match self.queues.get(&to) {
            Some(q) => q,
            // With a scheduler, a store first sent to now: its address is looked up by the
            // new connection task.
            None if self.resolver.is_dynamic() && to != 0 && to != self.self_id => {
                self.open_queue(to)
            }
            None => {
                return Err(raftstore::Error::Other(format!(
                    "no address for store {to}"
                )))
            }
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

/// The endpoint of a peer store at `addr`.
fn peer_endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5)))
}

/// Keeps a `Raft` stream open to store `to`, found through `resolver`, feeding it from `rx`,
/// until the transport is dropped.
async fn connection(
    to: u64,
    resolver: StoreResolver,
    mut rx: mpsc::Receiver<RaftMessage>,
    logger: Logger,
) {
    let mut backoff = BACKOFF_MIN;
    // Since the last stream that lived: whether a failure was logged as a warning (its repeats
    // are debug lines), and whether the last failure was a failed connect.
    let mut failing = false;
    let mut unreachable = false;
    loop {
        let endpoint = match resolver.resolve(to).await {
            Ok(addr) => peer_endpoint(&addr).map_err(|e| (addr, e)),
            Err(e) => {
                if std::mem::replace(&mut failing, true) {
                    debug!(logger, "peer store address still unknown"; "err" => e);
                } else {
                    warn!(logger, "peer store address unknown; retrying with back-off"; "err" => e);
                }
                if drain_for(&mut rx, backoff).await.is_none() {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let endpoint = match endpoint {
            Ok(e) => e,
            Err((addr, e)) if !resolver.is_dynamic() => {
                warn!(logger, "bad peer address; no raft messages will reach it";
                    "to_addr" => addr, "err" => %e);
                // Keep draining so the store never sees a full queue for this store.
                while rx.recv().await.is_some() {}
                return;
            }
            Err((addr, e)) => {
                // The scheduler may learn a better address: ask again after the back-off.
                warn!(logger, "bad peer address from the scheduler"; "to_addr" => addr,
                    "err" => %e);
                resolver.invalidate(to);
                if drain_for(&mut rx, backoff).await.is_none() {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let failure = match endpoint.connect().await {
            Err(e) => {
                unreachable = true;
                format!("peer store unreachable: {e}")
            }
            Ok(channel) => {
                if std::mem::take(&mut unreachable) {
                    info!(logger, "peer store reachable again");
                }
                let opened = tokio::time::Instant::now();
                let Some(ended) = run_stream(channel, &mut rx).await else {
                    return;
                };
                if opened.elapsed() >= STREAM_SETTLED {
                    // A stream that lived: reconnect at once, with the back-off reset.
                    match ended {
                        Ok(()) => debug!(logger, "raft stream closed by peer"),
                        Err(e) => warn!(logger, "raft stream failed; reconnecting"; "err" => %e),
                    }
                    backoff = BACKOFF_MIN;
                    failing = false;
                    continue;
                }
                // One that ended soon after it opened (a peer that answers but refuses raft
                // messages: a standalone server, a store shutting down) fails like a connect.
                match ended {
                    Ok(()) => "raft stream closed by peer at once".to_string(),
                    Err(e) => format!("raft stream refused: {e}"),
                }
            }
        };
        let addr = endpoint.uri().authority().map(|a| a.to_string());
        if std::mem::replace(&mut failing, true) {
            debug!(logger, "raft stream to peer store still failing"; "to_addr" => addr,
                "err" => failure);
        } else {
            warn!(logger, "no raft stream to peer store; retrying with back-off";
                "to_addr" => addr, "err" => failure);
        }
        // With a scheduler, the store may have moved: look it up again next time.
        resolver.invalidate(to);
        // Messages queued meanwhile are stale by the time a stream is back.
        if drain_for(&mut rx, backoff).await.is_none() {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Feeds one `Raft` stream over `channel` from `rx` until it ends: how it ended, or None when
/// the transport was dropped.
async fn run_stream(
    channel: Channel,
    rx: &mut mpsc::Receiver<RaftMessage>,
) -> Option<Result<(), Status>> {
    let mut client = TinyKvClient::new(channel)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    let (stx, srx) = mpsc::channel(1024);
    let call = client.raft(ReceiverStream::new(srx));
    tokio::pin!(call);
    loop {
        tokio::select! {
            res = &mut call => return Some(res.map(drop)),
            msg = rx.recv() => {
                if stx.send(msg?).await.is_err() {
                    // The call dropped its side of the stream: it has ended.
                    return Some(call.await.map(drop));
                }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tonic::transport::server::TcpIncoming;

    use super::*;
    use crate::service::TinyKvService;
    use crate::storage::standalone::StandaloneStorage;
    use crate::tinykvpb::tiny_kv_server::TinyKvServer;

    /// A peer that accepts connections but refuses every raft stream (here a standalone server)
    /// is retried with the reconnect back-off, not in a loop as fast as the loopback allows.
    #[tokio::test]
    async fn refused_raft_streams_are_retried_with_back_off() {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let dir = tempfile::tempdir().unwrap();
        let storage = StandaloneStorage::open(dir.path().join("db")).unwrap();
        let svc = TinyKvService::new(storage, 1, None, HashMap::new(), 1024, logger.clone());
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let svc = TinyKvServer::with_interceptor(svc, move |req| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(req)
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let resolver = StoreResolver::fixed([(2, addr)].into());
        let task = tokio::spawn(connection(2, resolver, rx, logger));
        // Back-off of 50, 100, 200, 400 and 800 ms: about five streams in these 1.5 s; the loop
        // without it opened hundreds.
        for _ in 0..15 {
            let _ = tx.try_send(RaftMessage::default());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(tx);
        task.await.unwrap();
        let n = calls.load(Ordering::SeqCst);
        assert!(n >= 1, "the stream was tried");
        assert!(n <= 12, "{n} raft streams opened in 1.5 s");
    }
}
