//! `tinykv-scheduler`: the scheduler process of a TinyKV cluster (TinyKV's `scheduler`, PD in
//! TiKV): stores register with it, report their regions, and carry out what it decides.
//!
//! ```text
//! tinykv-scheduler --addr 127.0.0.1:2379 --data-dir data/scheduler [--config scheduler.toml] \
//!     [--status-addr 127.0.0.1:2381]
//! ```
//! With `--status-addr`, `GET /metrics` there answers its Prometheus metrics (docs/METRICS.md).
//! SIGINT and SIGTERM stop it cleanly; a restart on the same data dir resumes (ids and
//! timestamps never repeat). Every failure to start is one line on stderr and exit 1.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use scheduler::cmdline::{exit_on_error, parse_args_or_exit, shutdown_signal};
use scheduler::config::FileConfig;
use scheduler::server::{self, SchedulerService};
use scheduler::{metrics, status};
use slog::info;

/// The scheduler of a TinyKV cluster.
#[derive(Parser, Debug)]
#[command(name = "tinykv-scheduler", version, about)]
struct Cli {
    /// Address to serve gRPC on, HOST:PORT (default 127.0.0.1:2379).
    #[arg(long)]
    addr: Option<String>,
    /// Directory of the scheduler's state (created if missing; default data/scheduler).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Serve Prometheus metrics on GET /metrics at this address, HOST:PORT (default: no status
    /// server).
    #[arg(long)]
    status_addr: Option<String>,
    /// TOML file with any of the settings (flags win over it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log level: trace, debug, info, warn, error, off (default: $TINYKV_LOG, else info).
    #[arg(long)]
    log_level: Option<String>,
}

fn main() {
    let cli: Cli = parse_args_or_exit("tinykv-scheduler");
    exit_on_error("tinykv-scheduler", run(cli));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let file = match &cli.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let flags = FileConfig {
        addr: cli.addr,
        data_dir: cli.data_dir,
        status_addr: cli.status_addr,
        ..Default::default()
    };
    let cfg = FileConfig::resolve(flags, file)?;
    let logger = raft::util::binary_logger(cli.log_level.as_deref(), slog::o!())
        .map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tinykv-scheduler")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let shutdown =
            shutdown_signal(logger.clone()).context("cannot handle SIGINT and SIGTERM")?;
        let listener = server::bind(&cfg.addr).await?;
        let addr = listener.local_addr().context("the bound address")?;
        let status = match &cfg.status_addr {
            Some(a) => Some(status::bind(a).await?),
            None => None,
        };
        let svc = SchedulerService::open(&cfg, &addr.to_string(), logger.clone())?;
        info!(logger, "scheduler serving"; "addr" => %addr, "cluster_id" => svc.cluster_id(),
            "data_dir" => %cfg.data_dir.display());
        if let Some(l) = status {
            let at = l.local_addr().context("the status server's address")?;
            info!(logger, "status server listening"; "addr" => %at);
            status::spawn(l, vec![metrics::registry().clone()], logger.clone());
        }
        server::serve(svc, listener, shutdown).await?;
        info!(logger, "scheduler stopped");
        Ok(())
    })
}
