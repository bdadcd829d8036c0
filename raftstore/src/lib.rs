//! The multi-raft store: one raft group per region replica, on a raft engine and a kv engine.
//!
//! - [`engine`]: the [`Engine`](engine::Engine) trait both engines of a store implement, atomic
//!   [`WriteBatch`](engine::WriteBatch)es, snapshots and explicit durability, with two
//!   implementations: [`RocksEngine`](engine::RocksEngine) (production) and
//!   [`MemEngine`](engine::MemEngine) (the simulator's, which loses unsynced writes on a crash);
//!   [`keys`]: TinyKV's encodings of the local keys (raft log, raft/apply/region states, store
//!   ident).
//! - [`peer_storage`]: a replica's raft log and states as `raft::Storage`.
//! - [`peer`]: a replica's handlers, a file per operation (propose, read, ready, apply,
//!   snapshot) beside the peer itself, its ticks and log GC.
//! - [`store`]: the store's handlers over all its replicas, and `Store::round`, where one round's
//!   writes are made (one synced raft-engine write for every replica: group commit), the same
//!   steps for both drivers; [`context`]: what the handlers hand to the driver
//!   ([`StoreContext`]) and the applies' kv write ([`context::ApplyContext`]); [`task`]: the
//!   background tasks they ask for.
//! - [`snap`]: snapshot files — generation, chunked transfer with checksums, reading them back;
//!   [`worker`]: background tasks (log GC, snapshot generation and application).
//! - [`bootstrap`]: the store ident and the first region.
//! - [`scheduler`]: what a store asks of the scheduler (heartbeats, split ids), the client trait
//!   drivers run it with, and the admin commands the answers become.
//! - [`runtime`]: the threaded driver (crossbeam mailboxes, a poller thread, a ticker, workers).
//! - [`metrics`]: the store's Prometheus metrics and their registry (docs/METRICS.md).
//!
//! The handlers are sans-IO beyond the engines: they never spawn, sleep or read a clock (but to
//! time a batch of applies for [`metrics`], which nothing reads back). Their effects (messages,
//! callbacks, tasks, scheduler heartbeats) are collected in a [`StoreContext`] that each driver
//! drains its own way; the simulator in the `test_raftstore` crate is the other driver.

#![deny(missing_docs)]

pub mod bootstrap;
pub mod callback;
pub mod config;
pub mod context;
pub mod engine;
pub mod errors;
pub mod keys;
pub mod metrics;
pub mod peer;
pub mod peer_storage;
mod read_queue;
pub mod runtime;
pub mod scheduler;
pub mod snap;
pub mod store;
pub mod task;
pub mod util;
pub mod worker;

pub use crate::callback::{Callback, CmdResponse, RegionSnapshot};
pub use crate::config::Config;
pub use crate::context::StoreContext;
pub use crate::engine::KvSnapshot;
pub use crate::errors::{Error, Result};
pub use crate::snap::{SnapKey, SnapManager};
pub use crate::store::{Store, StoreStats};
pub use crate::task::{Task, TaskResult};
