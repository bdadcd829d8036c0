//! The TinyKV server as a library: the `TinyKv` gRPC service over a storage (standalone RocksDB for
//! Project 1, the raftstore from Project 2 on), the gRPC raft transport between stores, the
//! server's configuration and start-up, and the client the CLI, the load generator and the tests
//! share.
//!
//! - [`storage`]: the storage interface (TinyKV's `kv/storage/storage.go`) and its two
//!   implementations;
//! - [`service`]: the `TinyKv` service (raw API, `Raft` stream);
//! - [`transport`]: the raftstore `Transport` over gRPC streams;
//! - [`config`] and [`server`]: flags and TOML, bootstrap or resume, serve, stop;
//! - [`limits`]: the size limits (gRPC message, key, value room, BatchRaw bounds) the others share;
//! - [`client`]: a raw-API client that finds the leader and retries within a deadline;
//! - [`logging`]: the slog logger of the binaries.

#![deny(missing_docs)]

pub mod client;
pub mod config;
pub mod limits;
pub mod logging;
pub mod server;
pub mod service;
pub mod storage;
pub mod store_task;
pub mod transport;

/// The generated gRPC client and server of `service TinyKv`.
#[allow(missing_docs, clippy::all)]
pub mod tinykvpb {
    tonic::include_proto!("tinykvpb");
}
