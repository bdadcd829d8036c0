//! TinyKV's scheduler (Project 3C; `scheduler/server` in TinyKV, PD in TiKV) as a library and a
//! process (`tinykv-scheduler`): it keeps the cluster's picture of stores and regions from their
//! heartbeats, hands out ids and timestamps, and moves regions and leaders between stores with
//! operators.
//!
//! - [`core`]: the model: regions (a range tree, per-store trees), stores, their statistics;
//! - [`schedule`]: operators and their controller, filters, selectors, options, the replica
//!   checker;
//! - [`schedulers`]: balance-leader and balance-region;
//! - [`cluster`]: `RaftCluster`, the state machine the service drives: region and store
//!   heartbeats, split ids, the schedulers' timer; it does no IO (its answers to stores are
//!   collected in an outbox the service drains);
//! - the service layer around it: [`server`] (the gRPC service and the process's serving loop),
//!   [`storage`] (its state in RocksDB), [`id`] and [`tso`] (ids and timestamps that never
//!   repeat), [`config`] and [`cmdline`] (settings, the binaries' command-line helpers);
//! - [`tso_client`]: the client side of timestamps, batching many callers on one stream;
//! - [`metrics`] and [`status`]: the scheduler's Prometheus metrics, and the status HTTP server
//!   (`--status-addr`, `GET /metrics`) both binaries serve their metrics on (docs/METRICS.md).

#![deny(missing_docs)]

pub mod cluster;
pub mod cmdline;
pub mod config;
pub mod core;
pub mod errors;
pub mod id;
pub mod metrics;
pub mod schedule;
pub mod schedulers;
pub mod server;
pub mod status;
pub mod storage;
pub mod tso;
pub mod tso_client;

/// The generated gRPC client and server of `service Scheduler`.
#[allow(missing_docs, clippy::all)]
pub mod schedulerpb {
    tonic::include_proto!("schedulerpb");
}
