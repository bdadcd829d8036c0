//! Running a store: open (or bootstrap) its data directory, start the raftstore with the gRPC
//! transport, serve the `TinyKv` service until the shutdown signal, then stop cleanly.
//!
//! Start-up checks, each failing with one clear line: the listen address must be free; the data
//! directory must not be held by another running server (RocksDB's lock); a bootstrapped data
//! directory must belong to this store id and to this cluster (the hash of `--initial-cluster`).
//! The first start of a store bootstraps it: the store ident, then the single region `["", "")`
//! with one peer per store of `--initial-cluster` (peer id = store id), synced. Later starts resume.
//!
//! With `--scheduler` (TinyKV's Project 3C), the store's identity, the cluster's first region and
//! the store's registration come from the scheduler instead (`crate::node`); the raftstore then
//! runs with a [`GrpcSchedulerClient`] (region and store heartbeats, split ids, the scheduler's
//! operators), and the transport finds other stores through the scheduler
//! ([`StoreResolver`]).

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use proto::raft_serverpb::StoreIdent;
use raftstore::bootstrap::{
    bootstrap_store, first_region, load_store_ident, prepare_bootstrap_region,
};
use raftstore::engine::rocks::RocksEngine;
use raftstore::engine::{Engine, EngineError, Engines, ALL_CFS, CF_DEFAULT, CF_RAFT};
use raftstore::runtime::{NoScheduler, StoreMsg};
use raftstore::SnapManager;
use raftstore::{keys, metrics};
use scheduler::cmdline::serve_with_grace;
use scheduler::status::StatusError;
use slog::{debug, info, Logger};
use thiserror::Error;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::config::ServerConfig;
use crate::limits::{ENTRY_OVERHEAD, MAX_GRPC_MESSAGE};
use crate::resolver::StoreResolver;
use crate::scheduler_client::{Deliver, GrpcSchedulerClient, SchedulerConn, SchedulerError};
use crate::service::TinyKvService;
use crate::storage::raft::RaftStorage;
use crate::storage::standalone::StandaloneStorage;
use crate::storage::{Storage, StorageError};
use crate::store_stats::StatsSource;
use crate::store_task::StoreTask;
use crate::tinykvpb::tiny_kv_server::TinyKvServer;
use crate::transport::GrpcTransport;

/// HTTP/2 flow-control window of each stream the server receives (4 MiB).
const STREAM_WINDOW: u32 = 4 << 20;
/// HTTP/2 flow-control window of each connection the server receives (16 MiB).
const CONNECTION_WINDOW: u32 = 16 << 20;

/// Why a server could not start or keep running.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// Another running server holds the data directory.
    #[error("data dir {0} is in use by another running server (its RocksDB LOCK is held)")]
    DataDirInUse(String),
    /// The data directory belongs to another store or cluster, or cannot be read.
    #[error("{0}")]
    DataDir(String),
    /// A storage engine failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The raftstore failed.
    #[error("raftstore: {0}")]
    Raftstore(#[from] raftstore::Error),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The scheduler could not be reached, or refused a start-up step.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// The status server could not start.
    #[error(transparent)]
    Status(#[from] StatusError),
}

fn open_engine(path: &Path, cfs: &[&str]) -> Result<RocksEngine, ServerError> {
    RocksEngine::open(path, cfs).map_err(|e| engine_open_error(path, e))
}

fn engine_open_error(path: &Path, e: EngineError) -> ServerError {
    let msg = e.to_string();
    if msg.contains("LOCK") && (msg.contains("lock") || msg.contains("Resource")) {
        ServerError::DataDirInUse(path.display().to_string())
    } else {
        ServerError::DataDir(format!("cannot open {}: {msg}", path.display()))
    }
}

/// Opens the store's two engines (`kv` and `raft` under the data dir), their fsyncs counted in
/// `tinykv_engine_fsyncs_total` (`raftstore::metrics`).
pub fn open_engines(cfg: &ServerConfig) -> Result<Engines<RocksEngine, RocksEngine>, ServerError> {
    let kv = open_engine(&cfg.data_dir.join("kv"), &ALL_CFS)?
        .with_fsync_counter(metrics::KV_ENGINE_FSYNCS.clone());
    let raft = open_engine(&cfg.data_dir.join("raft"), &[CF_DEFAULT])?
        .with_fsync_counter(metrics::RAFT_ENGINE_FSYNCS.clone());
    Ok(Engines::new(kv, raft))
}

/// Static mode: opens the store's engines and bootstraps them on the first start; checks
/// identity otherwise.
pub fn open_store(
    cfg: &ServerConfig,
    logger: &Logger,
) -> Result<Engines<RocksEngine, RocksEngine>, ServerError> {
    let engines = open_engines(cfg)?;
    let cluster_id = cfg.cluster_id();
    let unreadable = |e: raftstore::Error| {
        ServerError::DataDir(format!(
            "unreadable state in {}: {e}",
            cfg.data_dir.display()
        ))
    };
    match load_store_ident(&engines.kv).map_err(unreadable)? {
        None => {
            bootstrap_store(&engines, cluster_id, cfg.store_id).map_err(unreadable)?;
            let region = first_region(1, &cfg.cluster.keys().copied().collect::<Vec<_>>());
            prepare_bootstrap_region(&engines, &region).map_err(unreadable)?;
            info!(logger, "bootstrapped a new store"; "store_id" => cfg.store_id,
                "cluster_id" => cluster_id, "stores" => cfg.cluster.len());
        }
        Some(StoreIdent {
            cluster_id: have_cluster,
            store_id: have_store,
        }) => {
            if have_store != cfg.store_id {
                return Err(ServerError::DataDir(format!(
                    "data dir {} belongs to store {have_store}, not store {}",
                    cfg.data_dir.display(),
                    cfg.store_id
                )));
            }
            if have_cluster != cluster_id {
                return Err(ServerError::DataDir(format!(
                    "data dir {} was bootstrapped for another cluster (id {have_cluster:x}); \
                     this --initial-cluster gives id {cluster_id:x}",
                    cfg.data_dir.display()
                )));
            }
            // A crash between the ident and the region states leaves no region: finish it.
            let mut any_region = false;
            engines
                .kv
                .scan_cf(
                    CF_RAFT,
                    keys::REGION_META_MIN_KEY,
                    keys::REGION_META_MAX_KEY,
                    &mut |_, _| {
                        any_region = true;
                        Ok(false)
                    },
                )
                .map_err(|e| unreadable(e.into()))?;
            if !any_region {
                let region = first_region(1, &cfg.cluster.keys().copied().collect::<Vec<_>>());
                prepare_bootstrap_region(&engines, &region).map_err(unreadable)?;
                info!(logger, "finished an interrupted bootstrap"; "store_id" => cfg.store_id);
            } else {
                info!(logger, "resuming store"; "store_id" => cfg.store_id,
                    "data_dir" => %cfg.data_dir.display());
            }
        }
    }
    // Only once the data dir is known to be this store's: a refused start writes nothing.
    preallocate_wal(cfg, &engines, logger)?;
    Ok(engines)
}

/// Writes out the raft engine's WAL files (`ServerConfig::raft_wal_preallocate`).
fn preallocate_wal(
    cfg: &ServerConfig,
    engines: &Engines<RocksEngine, RocksEngine>,
    logger: &Logger,
) -> Result<(), ServerError> {
    if cfg.raft_wal_preallocate > 0 {
        let started = std::time::Instant::now();
        let rounds = engines
            .raft
            .preallocate_wal(cfg.raft_wal_preallocate, 2)
            .map_err(|e| ServerError::DataDir(format!("cannot prepare the raft WAL: {e}")))?;
        info!(logger, "raft WAL files written out"; "bytes" => cfg.raft_wal_preallocate,
            "rounds" => rounds, "elapsed_ms" => started.elapsed().as_millis() as u64);
    }
    Ok(())
}

/// Binds the listen address.
pub async fn bind(addr: &str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Binds `addr` and serves the store's metrics there (`GET /metrics`: `raftstore::metrics`,
/// docs/METRICS.md) on a task of the current runtime, which ends with the runtime.
pub async fn start_status_server(addr: &str, logger: &Logger) -> Result<(), ServerError> {
    let listener = scheduler::status::bind(addr).await?;
    if let Ok(at) = listener.local_addr() {
        info!(logger, "status server listening"; "addr" => %at);
    }
    scheduler::status::spawn(listener, vec![metrics::registry().clone()], logger.clone());
    Ok(())
}

/// Serves `svc` on `incoming` until `shutdown` completes and then at most
/// `scheduler::cmdline::SHUTDOWN_GRACE`.
async fn serve<S: Storage>(
    svc: TinyKvService<S>,
    incoming: TcpIncoming,
    shutdown: impl Future<Output = ()> + Send + 'static,
    logger: &Logger,
) -> Result<(), ServerError> {
    let served = serve_with_grace(shutdown, |signal| {
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            // Fixed, large flow-control windows instead of BDP probing (a PING exchange per data
            // burst on every connection): small requests never wait for a window update, and a
            // snapshot stream keeps several 1 MiB chunks in flight.
            .initial_stream_window_size(Some(STREAM_WINDOW))
            .initial_connection_window_size(Some(CONNECTION_WINDOW))
            .add_service(
                TinyKvServer::new(svc)
                    .max_decoding_message_size(MAX_GRPC_MESSAGE)
                    .max_encoding_message_size(MAX_GRPC_MESSAGE),
            )
            .serve_with_incoming_shutdown(incoming, signal)
    })
    .await;
    match served {
        Some(r) => Ok(r?),
        None => {
            debug!(
                logger,
                "closing the connections still open after the grace period"
            );
            Ok(())
        }
    }
}

/// Runs a server per `cfg` on `listener` until `shutdown` completes, then stops it cleanly.
pub async fn run(
    cfg: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    logger: Logger,
) -> Result<(), ServerError> {
    let max_value = cfg.raft.raft_entry_max_size as usize - ENTRY_OVERHEAD;
    // Accepted connections need TCP_NODELAY too (the builder's setting covers only listeners it
    // binds itself): without it small answers wait for the peer's delayed ACK, ~40 ms each.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    if cfg.standalone {
        let storage = StandaloneStorage::open(&cfg.data_dir).map_err(|e| match e {
            StorageError::Engine(e) => engine_open_error(&cfg.data_dir, e),
            e => ServerError::Storage(e),
        })?;
        let svc = TinyKvService::new(
            storage,
            cfg.store_id,
            None,
            HashMap::new(),
            max_value,
            logger.clone(),
        );
        info!(logger, "standalone server listening"; "addr" => &cfg.addr,
            "data_dir" => %cfg.data_dir.display());
        serve(svc, incoming, shutdown, &logger).await?;
        info!(logger, "standalone server stopped");
        return Ok(());
    }

    let (engines, store_id, scheduler) = match &cfg.scheduler {
        None => (open_store(&cfg, &logger)?, cfg.store_id, None),
        Some(addr) => {
            // The engines first: a data dir in use is refused before any wait for the scheduler.
            let engines = open_engines(&cfg)?;
            let conn = SchedulerConn::connect(addr, cfg.scheduler_connect_timeout, &logger).await?;
            let store_id = crate::node::prepare_store(&cfg, &engines, &conn, &logger).await?;
            preallocate_wal(&cfg, &engines, &logger)?;
            (engines, store_id, Some(conn))
        }
    };
    let gc_conn = scheduler.clone();
    let resolver = match &scheduler {
        Some(conn) => StoreResolver::with_scheduler(conn.clone()),
        None => StoreResolver::fixed(cfg.cluster.clone().into_iter().collect::<HashMap<_, _>>()),
    };
    let snap_dir = cfg.data_dir.join("snap");
    let snap_mgr = SnapManager::new(&snap_dir)
        .map_err(|e| ServerError::DataDir(format!("cannot use {}: {e}", snap_dir.display())))?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = tokio::runtime::Handle::current();
    let transport = GrpcTransport::new(
        store_id,
        resolver.clone(),
        snap_mgr.clone(),
        tx.clone(),
        &rt,
        &logger,
    );
    let mut raft_cfg = cfg.raft.clone();
    raft_cfg.seed = store_id;
    let store = match scheduler {
        None => StoreTask::spawn(
            raft_cfg,
            engines.clone(),
            snap_mgr.clone(),
            transport,
            NoScheduler,
            &logger,
            tx.clone(),
            rx,
        )?,
        Some(conn) => {
            let mailbox = tx.clone();
            // The scheduler's operators go to the store like any other message.
            let deliver: Deliver = Arc::new(move |resp| {
                let _ = mailbox.send(StoreMsg::SchedulerResponse(resp));
            });
            let stats = StatsSource::new(&cfg.data_dir, cfg.capacity);
            let hb_logger = logger.new(slog::o!("store_id" => store_id));
            let client = GrpcSchedulerClient::new(conn, &rt, deliver, stats, &hb_logger);
            StoreTask::spawn(
                raft_cfg,
                engines.clone(),
                snap_mgr.clone(),
                transport,
                client,
                &logger,
                tx.clone(),
                rx,
            )?
        }
    };
    let storage = RaftStorage::new(
        store_id,
        tx.clone(),
        engines.kv.clone(),
        cfg.command_timeout,
    )?;
    let svc = TinyKvService::new(
        storage.clone(),
        store_id,
        Some((tx, snap_mgr)),
        resolver,
        max_value,
        logger.clone(),
    );
    if let (Some(conn), false) = (&gc_conn, cfg.gc_interval.is_zero()) {
        let gc_logger = logger.new(slog::o!("store_id" => store_id));
        tokio::spawn(crate::gc::run(
            svc.clone(),
            storage,
            conn.clone(),
            cfg.gc_interval,
            gc_logger,
        ));
    }
    info!(logger, "server listening"; "store_id" => store_id, "addr" => &cfg.addr,
        "data_dir" => %cfg.data_dir.display());
    let served = serve(svc, incoming, shutdown, &logger).await;
    info!(logger, "stopping the store"; "store_id" => store_id);
    // Waits for the store's task and worker threads; every acknowledged write is already synced.
    store.stop().await;
    served?;
    info!(logger, "server stopped"; "store_id" => store_id);
    Ok(())
}
