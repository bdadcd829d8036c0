//! `tinykv-server`: one store of a TinyKV cluster run by a scheduler (Project 3C) or of a static
//! cluster, or a standalone server (Project 1).
//!
//! ```text
//! tinykv-server --scheduler 127.0.0.1:2379 --addr 127.0.0.1:20160 --data-dir data/store-1
//! tinykv-server --store-id 1 --addr 127.0.0.1:20160 --data-dir data/store-1 \
//!     --initial-cluster 1=127.0.0.1:20160,2=127.0.0.1:20161,3=127.0.0.1:20162
//! tinykv-server --standalone --addr 127.0.0.1:20160 --data-dir data/standalone
//! ```
//! With `--status-addr HOST:PORT`, `GET /metrics` there answers the store's Prometheus metrics
//! (docs/METRICS.md).
//! SIGINT and SIGTERM stop it cleanly. Every failure to start is one line on stderr and exit 1.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kvserver::config::{
    async_runtime, exit_on_error, parse_args_or_exit, shutdown_signal, FileConfig, ServerConfig,
};
use kvserver::units::{ReadableDuration, ReadableSize};
use kvserver::{logging, server};

/// mimalloc instead of glibc malloc: fewer cycles per allocation on the request path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One store of a TinyKV cluster.
#[derive(Parser, Debug)]
#[command(name = "tinykv-server", version, about)]
struct Cli {
    /// The scheduler's address, HOST:PORT: the scheduler allocates this store's id (kept in the
    /// data dir), bootstraps the cluster and tells stores each other's addresses. Excludes
    /// --store-id and --initial-cluster.
    #[arg(long)]
    scheduler: Option<String>,
    /// This store's id (> 0) in a static cluster; must appear in --initial-cluster.
    #[arg(long)]
    store_id: Option<u64>,
    /// Address to listen on, HOST:PORT.
    #[arg(long)]
    addr: Option<String>,
    /// Directory of this store's data (created if missing).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Every store of the cluster: 1=HOST:PORT,2=HOST:PORT,...; used to bootstrap on the first
    /// start and to reach the other stores.
    #[arg(long)]
    initial_cluster: Option<String>,
    /// TOML file with any of the settings (flags win over it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve the raw API from one local RocksDB, without raft (Project 1).
    #[arg(long)]
    standalone: bool,
    /// Log level: trace, debug, info, warn, error, off (default: $TINYKV_LOG, else info).
    #[arg(long)]
    log_level: Option<String>,
    /// Raft base tick, in milliseconds.
    #[arg(long)]
    raft_base_tick_ms: Option<u64>,
    /// Raft log GC count limit.
    #[arg(long)]
    raft_log_gc_count_limit: Option<u64>,
    /// Threads serving gRPC (default 1: one thread batches answers best on few cores).
    #[arg(long)]
    grpc_threads: Option<usize>,
    /// Split a region whose data grows past this size: bytes, or with a unit ("144MiB").
    #[arg(long)]
    region_max_size: Option<ReadableSize>,
    /// Where a split cuts: after this much of the region ("96MiB").
    #[arg(long)]
    region_split_size: Option<ReadableSize>,
    /// How often a leader checks its region's size: milliseconds, or with a unit ("10s").
    #[arg(long)]
    split_region_check_tick_interval: Option<ReadableDuration>,
    /// How long start-up keeps retrying an unreachable scheduler ("60s").
    #[arg(long)]
    scheduler_connect_timeout: Option<ReadableDuration>,
    /// Serve Prometheus metrics on GET /metrics at this address, HOST:PORT (default: no status
    /// server).
    #[arg(long)]
    status_addr: Option<String>,
    /// How often MVCC garbage collection asks the scheduler for its safe point ("10s"; "0s":
    /// never).
    #[arg(long)]
    gc_tick_interval: Option<ReadableDuration>,
}

fn main() {
    let cli: Cli = parse_args_or_exit("tinykv-server");
    exit_on_error("tinykv-server", run(cli));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let file = match &cli.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let flags = FileConfig {
        scheduler: cli.scheduler,
        region_max_size: cli.region_max_size,
        region_split_size: cli.region_split_size,
        split_region_check_tick_interval: cli.split_region_check_tick_interval,
        scheduler_connect_timeout: cli.scheduler_connect_timeout,
        store_id: cli.store_id,
        addr: cli.addr,
        data_dir: cli.data_dir,
        initial_cluster: cli.initial_cluster,
        raft_base_tick_ms: cli.raft_base_tick_ms,
        raft_log_gc_count_limit: cli.raft_log_gc_count_limit,
        grpc_threads: cli.grpc_threads,
        status_addr: cli.status_addr,
        gc_tick_interval: cli.gc_tick_interval,
        ..Default::default()
    };
    let cfg = ServerConfig::resolve(flags, file, cli.standalone)?;
    let logger =
        logging::logger(cli.log_level.as_deref(), slog::o!()).map_err(anyhow::Error::msg)?;
    let rt =
        async_runtime(cfg.grpc_threads, "tinykv-grpc").context("cannot start the async runtime")?;
    rt.block_on(async move {
        // Handlers first: a signal that arrives while the store opens must stop it cleanly,
        // not kill it.
        let shutdown =
            shutdown_signal(logger.clone()).context("cannot handle SIGINT and SIGTERM")?;
        let listener = server::bind(&cfg.addr).await?;
        if let Some(addr) = &cfg.status_addr {
            server::start_status_server(addr, &logger).await?;
        }
        server::run(cfg, listener, shutdown, logger).await?;
        Ok(())
    })
}
