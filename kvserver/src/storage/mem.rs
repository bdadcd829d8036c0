//! In-memory storage (TinyKV's `kv/storage/mem_storage.go`), the double the transaction tests
//! run on: three ordered maps (`default`, `lock`, `write`), readers that see a copy taken when
//! they were made, and a record of which entries a test set up and which were written since, so
//! a test can tell "unchanged" from "rewritten with the same bytes".

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use proto::kvrpcpb::Context;
use raftstore::engine::{CF_DEFAULT, CF_LOCK, CF_WRITE};

use super::{check_cf, Modify, Storage, StorageError, StorageReader};

/// An entry: its value, and whether a test set it (true) or a write did (false).
type Entry = (Vec<u8>, bool);
/// The three column families.
type Cfs = [BTreeMap<Vec<u8>, Entry>; 3];

fn cf_index(cf: &str) -> Result<usize, StorageError> {
    Ok(match check_cf(cf)? {
        CF_DEFAULT => 0,
        CF_LOCK => 1,
        CF_WRITE => 2,
        other => {
            return Err(StorageError::InvalidArgument(format!(
                "no column family {other:?} in memory"
            )))
        }
    })
}

/// Storage in memory, shared by its clones. Lock keys are kept as the user keys themselves,
/// as TinyKV's tests expect (see [`Storage::encodes_lock_keys`]).
#[derive(Clone, Default)]
pub struct MemStorage {
    cfs: Arc<Mutex<Cfs>>,
}

impl MemStorage {
    /// Empty storage.
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Sets `key` = `value` in `cf` as a test's fixture (a fresh entry).
    pub fn set(&self, cf: &str, key: Vec<u8>, value: Vec<u8>) {
        let i = cf_index(cf).expect("a data column family");
        self.cfs.lock().unwrap()[i].insert(key, (value, true));
    }

    /// The value of `key` in `cf`.
    pub fn get(&self, cf: &str, key: &[u8]) -> Option<Vec<u8>> {
        let i = cf_index(cf).expect("a data column family");
        self.cfs.lock().unwrap()[i].get(key).map(|(v, _)| v.clone())
    }

    /// How many entries `cf` holds.
    pub fn len(&self, cf: &str) -> usize {
        let i = cf_index(cf).expect("a data column family");
        self.cfs.lock().unwrap()[i].len()
    }

    /// Whether no column family holds anything.
    pub fn is_empty(&self) -> bool {
        self.cfs.lock().unwrap().iter().all(BTreeMap::is_empty)
    }

    /// Whether `key` in `cf` is absent or was written through [`Storage::write`] (even with the
    /// bytes it had): false only for an entry a test set and nothing touched since.
    pub fn has_changed(&self, cf: &str, key: &[u8]) -> bool {
        let i = cf_index(cf).expect("a data column family");
        !matches!(self.cfs.lock().unwrap()[i].get(key), Some((_, true)))
    }

    /// Every entry of `cf`, in key order.
    pub fn entries(&self, cf: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let i = cf_index(cf).expect("a data column family");
        self.cfs.lock().unwrap()[i]
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    /// Applies `batch` at once.
    pub fn write_batch(&self, batch: Vec<Modify>) -> Result<(), StorageError> {
        let mut indexed = Vec::with_capacity(batch.len());
        for m in batch {
            indexed.push((cf_index(m.cf())?, m));
        }
        let mut cfs = self.cfs.lock().unwrap();
        for (i, m) in indexed {
            match m {
                Modify::Put { key, value, .. } => {
                    cfs[i].insert(key, (value, false));
                }
                Modify::Delete { key, .. } => {
                    cfs[i].remove(&key);
                }
            }
        }
        Ok(())
    }
}

impl Storage for MemStorage {
    async fn write(&self, _ctx: &Context, batch: Vec<Modify>) -> Result<(), StorageError> {
        self.write_batch(batch)
    }

    async fn reader(
        &self,
        _ctx: &Context,
        _key: &[u8],
    ) -> Result<Box<dyn StorageReader>, StorageError> {
        Ok(Box::new(MemReader {
            cfs: self.cfs.lock().unwrap().clone(),
        }))
    }

    fn encodes_lock_keys(&self) -> bool {
        false
    }
}

/// A copy of a [`MemStorage`] as it was when the reader was made.
pub struct MemReader {
    cfs: Cfs,
}

impl StorageReader for MemReader {
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.cfs[cf_index(cf)?].get(key).map(|(v, _)| v.clone()))
    }

    fn scan_cf(
        &self,
        cf: &str,
        start: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        for (k, (v, _)) in self.cfs[cf_index(cf)?].range(start.to_vec()..) {
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_entries_and_changes() {
        let s = MemStorage::new();
        s.set(CF_LOCK, b"a".to_vec(), b"1".to_vec());
        s.set(CF_LOCK, b"b".to_vec(), b"2".to_vec());
        assert!(!s.has_changed(CF_LOCK, b"a"));
        assert!(s.has_changed(CF_LOCK, b"zz"), "absent counts as changed");
        s.write_batch(vec![Modify::Put {
            cf: CF_LOCK.into(),
            key: b"a".to_vec(),
            value: b"1".to_vec(),
        }])
        .unwrap();
        assert!(
            s.has_changed(CF_LOCK, b"a"),
            "rewritten with the same bytes"
        );
        assert!(!s.has_changed(CF_LOCK, b"b"));
        assert_eq!((s.len(CF_LOCK), s.len(CF_DEFAULT)), (2, 0));
        let r = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(s.reader(&Context::default(), b""))
            .unwrap();
        s.write_batch(vec![Modify::Delete {
            cf: CF_LOCK.into(),
            key: b"b".to_vec(),
        }])
        .unwrap();
        assert_eq!(
            r.get_cf(CF_LOCK, b"b").unwrap(),
            Some(b"2".to_vec()),
            "a snapshot"
        );
        assert_eq!(s.get(CF_LOCK, b"b"), None);
        let mut seen = Vec::new();
        r.scan_cf(CF_LOCK, b"a\0", &mut |k, _| {
            seen.push(k.to_vec());
            true
        })
        .unwrap();
        assert_eq!(seen, [b"b".to_vec()]);
    }
}
