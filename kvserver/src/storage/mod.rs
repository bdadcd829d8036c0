//! The storage interface (TinyKV's `kv/storage/storage.go`) that the gRPC service serves from,
//! and its implementations: [`standalone::StandaloneStorage`] (one RocksDB, no replication:
//! Project 1), [`raft::RaftStorage`] (commands proposed through the raftstore: Project 2
//! onwards) and [`mem::MemStorage`] (in memory: the transaction tests' double).
//!
//! Writes are batches of [`Modify`]; reads go through a [`StorageReader`], a consistent view that
//! later writes do not change (snapshot isolation).

pub mod mem;
pub mod raft;
pub mod standalone;

use std::future::Future;

use proto::errorpb;
use proto::kvrpcpb::Context;
use raftstore::engine::{EngineError, DATA_CFS};
use thiserror::Error;

/// One change of a write batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Modify {
    /// Sets `key` to `value` in column family `cf`.
    Put {
        /// Column family.
        cf: String,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Removes `key` from column family `cf`.
    Delete {
        /// Column family.
        cf: String,
        /// Key.
        key: Vec<u8>,
    },
}

impl Modify {
    /// The key the change is about.
    pub fn key(&self) -> &[u8] {
        match self {
            Modify::Put { key, .. } | Modify::Delete { key, .. } => key,
        }
    }

    /// The column family the change is about.
    pub fn cf(&self) -> &str {
        match self {
            Modify::Put { cf, .. } | Modify::Delete { cf, .. } => cf,
        }
    }
}

/// Why a storage operation failed.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The region cannot serve the request here (not leader, epoch changed, key not in region,
    /// ...). Clients retry elsewhere; the service returns it in the response's `region_error`.
    #[error("region error: {}", .0.message)]
    Region(Box<errorpb::Error>),
    /// The request is malformed (unknown column family, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The engine failed.
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    /// The command did not finish in time (no leader, or the cluster lost its quorum).
    #[error("timed out after {0:?} waiting for the command to be applied")]
    Timeout(std::time::Duration),
    /// The store is stopping or stopped.
    #[error("the store is shutting down")]
    ShuttingDown,
}

/// A consistent read view of the data column families.
pub trait StorageReader: Send + Sync {
    /// The value of `key` in `cf`; `None` when the key is missing.
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Visits the pairs of `cf` from `start` (inclusive) in key order, within the reader's range,
    /// until `f` returns false.
    fn scan_cf(
        &self,
        cf: &str,
        start: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError>;

    /// As [`Self::scan_cf`], for the keys before `end` (empty: no end). The engine stops there:
    /// it never steps over the deleted entries beyond `end` (a column family that churns, as
    /// `lock` does, holds many until compaction), so a probe for "the next key, if before
    /// `end`" costs what lies before `end`, not what lies after.
    fn scan_cf_until(
        &self,
        cf: &str,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        self.scan_cf(cf, start, &mut |k, v| {
            (end.is_empty() || k < end) && f(k, v)
        })
    }
}

/// Where the service's data lives.
pub trait Storage: Send + Sync + 'static {
    /// Applies `batch` atomically. `ctx` addresses the region (an empty context lets the storage
    /// route by key).
    fn write(
        &self,
        ctx: &Context,
        batch: Vec<Modify>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// A reader over a consistent view; `key` routes the read when `ctx` names no region.
    fn reader(
        &self,
        ctx: &Context,
        key: &[u8],
    ) -> impl Future<Output = Result<Box<dyn StorageReader>, StorageError>> + Send;

    /// Whether the transaction layer keeps the keys of the `lock` column family in the
    /// memcomparable encoding (`codec::encode_bytes`), the key space regions are split in, so a
    /// key's lock lies in the same region as its versions. TinyKV keeps them raw, and its tests
    /// read them raw: [`mem::MemStorage`] does (false); the stores do (true, the default). See
    /// `crate::transaction`.
    fn encodes_lock_keys(&self) -> bool {
        true
    }
}

/// Checks that `cf` names a data column family (an empty name means `default`), and returns it.
pub fn check_cf(cf: &str) -> Result<&str, StorageError> {
    if cf.is_empty() {
        return Ok(raftstore::engine::CF_DEFAULT);
    }
    if DATA_CFS.contains(&cf) {
        Ok(cf)
    } else {
        Err(StorageError::InvalidArgument(format!(
            "unknown column family {cf:?} (expected one of default, lock, write)"
        )))
    }
}
