//! Standalone storage (Project 1): one RocksDB with the column families `default`, `lock` and
//! `write`, no replication. Writes are one atomic, synced write batch; a reader is a RocksDB
//! snapshot, so it keeps seeing the data as of its creation (snapshot isolation).

use std::path::Path;
use std::sync::Arc;

use proto::kvrpcpb::Context;
use raftstore::engine::rocks::{RocksEngine, RocksSnapshot};
use raftstore::engine::{Engine, EngineSnapshot, WriteBatch, DATA_CFS};

use super::{check_cf, Modify, Storage, StorageError, StorageReader};

/// Storage over one local RocksDB.
#[derive(Clone)]
pub struct StandaloneStorage {
    engine: RocksEngine,
}

impl StandaloneStorage {
    /// Opens (creating if needed) the database in `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        Ok(StandaloneStorage {
            engine: RocksEngine::open(path, &DATA_CFS)?,
        })
    }

    /// The engine underneath (tests read it directly).
    pub fn engine(&self) -> &RocksEngine {
        &self.engine
    }

    /// Applies `batch` atomically and durably: every put and delete, each in its column
    /// family (checked with `check_cf`), in one engine write that is synced before returning.
    pub fn write_batch(&self, batch: Vec<Modify>) -> Result<(), StorageError> {
        // STAGE 1: apply every Modify of the batch to its column family in one synced engine write
        let mut wb = WriteBatch::default();
        for m in batch {
            match m {
                Modify::Put { cf, key, value } => {
                    wb.put_cf(check_cf(&cf)?, key, value);
                }
                Modify::Delete { cf, key } => {
                    wb.delete_cf(check_cf(&cf)?, key);
                }
            }
        }
        self.engine.write(&wb, true)?;
        Ok(())
        // END STAGE 1
    }

    /// A reader over a snapshot of the database as it is now: later writes are not seen by it.
    pub fn snapshot_reader(&self) -> StandaloneReader {
        // STAGE 1: a reader over a snapshot of the engine taken now
        StandaloneReader {
            snap: Arc::new(self.engine.snapshot()),
        }
        // END STAGE 1
    }
}

impl Storage for StandaloneStorage {
    async fn write(&self, _ctx: &Context, batch: Vec<Modify>) -> Result<(), StorageError> {
        let this = self.clone();
        // A synced RocksDB write blocks for an fsync: keep it off the async workers.
        tokio::task::spawn_blocking(move || this.write_batch(batch))
            .await
            .map_err(|_| StorageError::ShuttingDown)?
    }

    async fn reader(
        &self,
        _ctx: &Context,
        _key: &[u8],
    ) -> Result<Box<dyn StorageReader>, StorageError> {
        Ok(Box::new(self.snapshot_reader()))
    }
}

/// A point-in-time view of a [`StandaloneStorage`].
pub struct StandaloneReader {
    snap: Arc<RocksSnapshot>,
}

impl StorageReader for StandaloneReader {
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        // STAGE 1: read key from column family cf (checked with check_cf) of the snapshot
        Ok(self.snap.get_cf(check_cf(cf)?, key)?)
        // END STAGE 1
    }

    fn scan_cf(
        &self,
        cf: &str,
        start: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        // STAGE 1: visit the pairs of cf in the snapshot from start on, until f returns false
        self.snap
            .scan_cf(check_cf(cf)?, start, &[], &mut |k, v| Ok(f(k, v)))?;
        Ok(())
        // END STAGE 1
    }

    fn scan_cf_until(
        &self,
        cf: &str,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        // STAGE 1: as scan_cf, letting the engine stop at end (empty: no end)
        self.snap
            .scan_cf(check_cf(cf)?, start, end, &mut |k, v| Ok(f(k, v)))?;
        Ok(())
        // END STAGE 1
    }
}
