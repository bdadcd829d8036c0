//! The TinyKV server as a library: the `TinyKv` gRPC service over a storage (standalone RocksDB for
//! Project 1, the raftstore from Project 2 on), the gRPC raft transport between stores, the
//! server's configuration and start-up, and the client the CLI, the load generator and the tests
//! share.
//!
//! - [`storage`]: the storage interface (TinyKV's `kv/storage/storage.go`) and its two
//!   implementations;
//! - [`service`]: the `TinyKv` service (raw API, `Raft` stream);
//! - [`gc`]: MVCC garbage collection below the scheduler's GC safe point;
//! - [`transaction`]: Percolator transactions (TinyKV's Project 4): MVCC, latches, commands;
//! - [`transport`]: the raftstore `Transport` over gRPC streams;
//! - [`config`] and [`server`]: flags and TOML, bootstrap or resume, serve, stop;
//! - [`node`], [`scheduler_client`], [`resolver`], [`store_stats`]: running with a scheduler
//!   (TinyKV's Project 3C): the start-up, the scheduler's client, store addresses from the
//!   scheduler, the disk figures of store heartbeats;
//! - [`units`]: sizes and durations with units in the configuration;
//! - [`limits`]: the size limits (gRPC message, key, value room, BatchRaw bounds) the others share;
//! - [`client`]: a raw-API client that finds the leader and retries within a deadline;
//! - [`region_cache`]: the client's region cache for a cluster run by a scheduler;
//! - [`logging`]: the slog logger of the binaries.

#![deny(missing_docs)]

pub mod client;
pub mod config;
pub mod gc;
pub mod limits;
pub mod logging;
pub mod node;
pub mod region_cache;
pub mod resolver;
pub mod scheduler_client;
pub mod server;
pub mod service;
pub mod storage;
pub mod store_stats;
pub mod store_task;
pub mod transaction;
pub mod transport;
pub mod units;

/// The generated gRPC client and server of `service TinyKv`.
#[allow(missing_docs, clippy::all)]
pub mod tinykvpb {
    tonic::include_proto!("tinykvpb");
}
