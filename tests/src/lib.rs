//! The cluster test harness behind the staged raftstore suites (2B, 2C, 3B), over two drivers:
//!
//! - `sim`: the deterministic simulator — one thread, virtual time, in-memory engines that lose
//!   unsynced writes on a crash, a seeded RNG for latency, drops and partitions; every run prints
//!   `seed=<n> digest=<hex>` with its operation and snapshot counts, and replays exactly from its
//!   seed (which seeds run: [`seeds`]);
//! - `threaded`: the production runtime — real threads, RocksDB in temp directories, real time.
//!
//! Tests are async functions over a [`cluster::Cluster`] (the API of TinyKV's
//! `kv/test_raftstore/cluster.go`: requests routed to leaders with retries, key-value helpers,
//! scans, engine assertions, filters, store stop/start), so one test body runs on both drivers.
//! `generic::generic_test` is TinyKV's randomized `GenericTest` (`kv/test_raftstore/test_test.go`)
//! with clients, chaos and crashes.

/// The allocator of every binary built on the harness (the staged suites, the benches): the
/// simulator allocates and frees a message, a write batch and an event at every step, and the
/// server binaries run on the same allocator (see docs/PERFORMANCE.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod cluster;
pub mod env;
pub mod exec;
pub mod filter;
pub mod generic;
pub mod scheduler;
pub mod seeds;
pub mod sim;
pub mod threaded;
pub mod trace;
