//! The scheduler's durable state, in an embedded RocksDB under its `--data-dir` (TinyKV keeps it in
//! etcd, `scheduler/server/core/storage.go`): the cluster id, whether it is bootstrapped, the id
//! allocator's and the timestamp oracle's upper bounds, the GC safe point, the cluster config, and
//! the metas of every store and region it has heard of.
//!
//! What must never repeat after a restart (ids, timestamps, the cluster id) is written with a
//! synced write; store and region metas are written unsynced (a lost one is resent by the next
//! heartbeat).

use std::path::Path;

use prost::Message;
use proto::metapb::{Cluster, Region, Store};

/// Errors of the scheduler's storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB failed.
    #[error("scheduler storage: {0}")]
    Engine(#[from] rocksdb::Error),
    /// A stored value did not decode.
    #[error("scheduler storage: corrupt value under {key}: {reason}")]
    Corrupt {
        /// The key whose value is bad.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Results of the storage.
pub type Result<T> = std::result::Result<T, StorageError>;

const CLUSTER_ID: &[u8] = b"meta/cluster_id";
const BOOTSTRAPPED: &[u8] = b"meta/bootstrapped";
const ALLOC_ID: &[u8] = b"meta/alloc_id";
const TSO: &[u8] = b"meta/tso";
const GC_SAFE_POINT: &[u8] = b"meta/gc_safe_point";
const CONFIG: &[u8] = b"meta/config";
const STORE_PREFIX: &[u8] = b"store/";
const REGION_PREFIX: &[u8] = b"region/";

fn store_key(id: u64) -> Vec<u8> {
    let mut k = STORE_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn region_key(id: u64) -> Vec<u8> {
    let mut k = REGION_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The scheduler's storage: one RocksDB.
pub struct Storage {
    db: rocksdb::DB,
    /// Orders the read-then-write of [`Storage::advance_gc_safe_point`].
    gc_lock: std::sync::Mutex<()>,
}

impl Storage {
    /// Opens (creating if missing) the storage in `dir`.
    pub fn open(dir: &Path) -> Result<Storage> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        Ok(Storage {
            db: rocksdb::DB::open(&opts, dir)?,
            gc_lock: std::sync::Mutex::new(()),
        })
    }

    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(sync);
        self.db.put_opt(key, value, &wo)?;
        Ok(())
    }

    fn get_u64(&self, key: &[u8]) -> Result<Option<u64>> {
        match self.db.get_pinned(key)? {
            None => Ok(None),
            Some(v) => {
                let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| StorageError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    reason: format!("{} bytes, not 8", v.len()),
                })?;
                Ok(Some(u64::from_be_bytes(bytes)))
            }
        }
    }

    fn put_u64(&self, key: &[u8], v: u64) -> Result<()> {
        self.put(key, &v.to_be_bytes(), true)
    }

    fn get_msg<M: Message + Default>(&self, key: &[u8]) -> Result<Option<M>> {
        match self.db.get_pinned(key)? {
            None => Ok(None),
            Some(v) => M::decode(v.as_ref())
                .map(Some)
                .map_err(|e| StorageError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    reason: e.to_string(),
                }),
        }
    }

    fn scan_msgs<M: Message + Default>(&self, prefix: &[u8]) -> Result<Vec<M>> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator(prefix) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push(M::decode(v.as_ref()).map_err(|e| StorageError::Corrupt {
                key: format!("{:?}", k),
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }

    /// The cluster id, if one was saved.
    pub fn cluster_id(&self) -> Result<Option<u64>> {
        self.get_u64(CLUSTER_ID)
    }

    /// Saves the cluster id (synced).
    pub fn save_cluster_id(&self, id: u64) -> Result<()> {
        self.put_u64(CLUSTER_ID, id)
    }

    /// Whether the cluster was bootstrapped.
    pub fn bootstrapped(&self) -> Result<bool> {
        Ok(self.db.get_pinned(BOOTSTRAPPED)?.is_some())
    }

    /// Records that the cluster is bootstrapped, with its config (synced).
    pub fn save_bootstrapped(&self, config: &Cluster) -> Result<()> {
        let mut batch = rocksdb::WriteBatch::default();
        batch.put(CONFIG, config.encode_to_vec());
        batch.put(BOOTSTRAPPED, b"1");
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    /// The id allocator's saved upper bound (every id handed out is at most it).
    pub fn alloc_id_bound(&self) -> Result<u64> {
        Ok(self.get_u64(ALLOC_ID)?.unwrap_or(0))
    }

    /// Saves the id allocator's upper bound (synced).
    pub fn save_alloc_id_bound(&self, bound: u64) -> Result<()> {
        self.put_u64(ALLOC_ID, bound)
    }

    /// The timestamp oracle's saved upper bound, in physical milliseconds (every timestamp handed
    /// out has a smaller physical part).
    pub fn tso_bound(&self) -> Result<u64> {
        Ok(self.get_u64(TSO)?.unwrap_or(0))
    }

    /// Saves the timestamp oracle's upper bound (synced).
    pub fn save_tso_bound(&self, bound_ms: u64) -> Result<()> {
        self.put_u64(TSO, bound_ms)
    }

    /// The GC safe point (0 if never set).
    pub fn gc_safe_point(&self) -> Result<u64> {
        Ok(self.get_u64(GC_SAFE_POINT)?.unwrap_or(0))
    }

    /// Moves the GC safe point to `sp` if that is forward (PD's rule: it never goes back), saved
    /// synced; returns the safe point after the call. Concurrent calls are ordered here.
    pub fn advance_gc_safe_point(&self, sp: u64) -> Result<u64> {
        let _order = self.gc_lock.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.gc_safe_point()?;
        if sp <= old {
            return Ok(old);
        }
        self.put_u64(GC_SAFE_POINT, sp)?;
        Ok(sp)
    }

    /// The cluster config, if saved.
    pub fn config(&self) -> Result<Option<Cluster>> {
        self.get_msg(CONFIG)
    }

    /// Saves the cluster config (synced).
    pub fn save_config(&self, config: &Cluster) -> Result<()> {
        self.put(CONFIG, &config.encode_to_vec(), true)
    }

    /// Saves a store's meta.
    pub fn save_store(&self, store: &Store) -> Result<()> {
        self.put(&store_key(store.id), &store.encode_to_vec(), false)
    }

    /// Every saved store meta, by id.
    pub fn stores(&self) -> Result<Vec<Store>> {
        self.scan_msgs(STORE_PREFIX)
    }

    /// Saves a region's meta and deletes those of the regions it replaced, in one write.
    pub fn save_region(&self, region: &Region, removed: &[u64]) -> Result<()> {
        let mut batch = rocksdb::WriteBatch::default();
        for id in removed {
            batch.delete(region_key(*id));
        }
        batch.put(region_key(region.id), region.encode_to_vec());
        self.db.write(batch)?;
        Ok(())
    }

    /// Every saved region meta, by id.
    pub fn regions(&self) -> Result<Vec<Region>> {
        self.scan_msgs(REGION_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::metapb::RegionEpoch;

    #[test]
    fn test_storage_keeps_everything_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path()).unwrap();
            assert_eq!(s.cluster_id().unwrap(), None);
            assert!(!s.bootstrapped().unwrap());
            s.save_cluster_id(42).unwrap();
            s.save_bootstrapped(&Cluster {
                id: 42,
                max_peer_count: 3,
            })
            .unwrap();
            s.save_alloc_id_bound(1000).unwrap();
            s.save_tso_bound(123_456).unwrap();
            assert_eq!(s.advance_gc_safe_point(7).unwrap(), 7);
            assert_eq!(s.advance_gc_safe_point(3).unwrap(), 7, "never back");
            for id in [2, 1, 300] {
                s.save_store(&Store {
                    id,
                    address: format!("h:{id}"),
                    ..Default::default()
                })
                .unwrap();
            }
            let r = |id, start: &[u8], end: &[u8]| Region {
                id,
                start_key: start.to_vec(),
                end_key: end.to_vec(),
                region_epoch: Some(RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                }),
                peers: vec![],
            };
            s.save_region(&r(1, b"", b""), &[]).unwrap();
            s.save_region(&r(2, b"", b"m"), &[1]).unwrap();
            s.save_region(&r(256, b"m", b""), &[]).unwrap();
        }
        let s = Storage::open(dir.path()).unwrap();
        assert_eq!(s.cluster_id().unwrap(), Some(42));
        assert!(s.bootstrapped().unwrap());
        assert_eq!(s.config().unwrap().unwrap().max_peer_count, 3);
        assert_eq!(s.alloc_id_bound().unwrap(), 1000);
        assert_eq!(s.tso_bound().unwrap(), 123_456);
        assert_eq!(s.gc_safe_point().unwrap(), 7);
        let stores: Vec<u64> = s.stores().unwrap().iter().map(|s| s.id).collect();
        assert_eq!(stores, vec![1, 2, 300]);
        let regions: Vec<u64> = s.regions().unwrap().iter().map(|r| r.id).collect();
        assert_eq!(regions, vec![2, 256], "region 1 was replaced by region 2");
    }
}
