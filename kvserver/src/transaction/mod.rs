//! Transactions (TinyKV's Project 4): Percolator's multi-version data and two-phase commit over
//! a [`Storage`], driven by clients.
//!
//! - [`codec`]: memcomparable keys, MVCC keys (user key, inverted timestamp), timestamps;
//! - [`mvcc`]: `Lock` and `Write` records with TinyKV's bytes, `MvccTxn`, the scanner;
//! - [`latches`]: per-key latches that serialize the commands writing the same keys;
//! - [`commands`]: the seven commands of the `TinyKv` service (`KvGet`, `KvPrewrite`,
//!   `KvCommit`, `KvScan`, `KvCheckTxnStatus`, `KvBatchRollback`, `KvResolveLock`) as
//!   [`Transactions`] methods.
//!
//! Where the bytes live. TinyKV keys the `lock` column family by the raw user key, while
//! `default` and `write` hold MVCC keys, whose memcomparable prefix is also what a region's
//! split key is cut to (`kv/raftstore/runner/split_checker.go`). Raw lock keys would then sort
//! into a different region than their versions near a boundary (the raw key `m` sorts before
//! the split key `encode_bytes("m")`, its versions after it): a prewrite of `m` would write to
//! two regions. So on the real stores the lock keys are stored encoded too
//! ([`Storage::encodes_lock_keys`]), and a transaction's key is routed by `encode_bytes(key)`;
//! [`MvccTxn`](mvcc::MvccTxn) always speaks in user keys, and only the boundary here
//! ([`EncodedLocks`], [`store_writes`]) translates. The in-memory storage of the tests keeps
//! TinyKV's raw layout, so their byte-for-byte expectations hold unchanged.

pub mod codec;
pub mod commands;
pub mod latches;
pub mod mvcc;

use raftstore::engine::CF_LOCK;

use crate::storage::{Modify, Storage, StorageError, StorageReader};
use codec::{decode_bytes, encode_bytes};

pub use commands::{Transactions, TxnError};

/// The key a transaction's user key is routed by: regions are split in the encoded key space.
pub fn route_key(key: &[u8]) -> Vec<u8> {
    encode_bytes(key)
}

/// A reader of a storage that keeps lock keys encoded, seen with user lock keys.
pub struct EncodedLocks(pub Box<dyn StorageReader>);

impl StorageReader for EncodedLocks {
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if cf == CF_LOCK {
            self.0.get_cf(cf, &encode_bytes(key))
        } else {
            self.0.get_cf(cf, key)
        }
    }

    fn scan_cf(
        &self,
        cf: &str,
        start: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        if cf != CF_LOCK {
            return self.0.scan_cf(cf, start, f);
        }
        self.scan_cf_until(cf, start, b"", f)
    }

    fn scan_cf_until(
        &self,
        cf: &str,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        if cf != CF_LOCK {
            return self.0.scan_cf_until(cf, start, end, f);
        }
        // The encoding keeps the order: the user range [start, end) is the encoded one.
        let end = if end.is_empty() {
            Vec::new()
        } else {
            encode_bytes(end)
        };
        self.0
            .scan_cf_until(cf, &encode_bytes(start), &end, &mut |k, v| {
                match decode_bytes(k) {
                    // A whole encoded key: a transaction's lock.
                    Ok((user, [])) => f(&user, v),
                    // Not a transaction's (the raw API may write here too): passed over.
                    _ => true,
                }
            })
    }
}

/// A reader of `storage` that speaks in user lock keys.
pub fn user_reader<S: Storage>(
    storage: &S,
    reader: Box<dyn StorageReader>,
) -> Box<dyn StorageReader> {
    if storage.encodes_lock_keys() {
        Box::new(EncodedLocks(reader))
    } else {
        reader
    }
}

/// A transaction's changes as `storage` keeps them (lock keys encoded where it wants them so).
pub fn store_writes<S: Storage>(storage: &S, writes: Vec<Modify>) -> Vec<Modify> {
    if !storage.encodes_lock_keys() {
        return writes;
    }
    writes
        .into_iter()
        .map(|m| match m {
            Modify::Put { cf, key, value } if cf == CF_LOCK => Modify::Put {
                key: encode_bytes(&key),
                cf,
                value,
            },
            Modify::Delete { cf, key } if cf == CF_LOCK => Modify::Delete {
                key: encode_bytes(&key),
                cf,
            },
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::mem::MemStorage;
    use proto::kvrpcpb::Context;

    /// Encoded lock keys are seen as user keys, a range's bounds included, and lock keys that
    /// are no encoding (raw-API data) are passed over.
    #[test]
    fn encoded_locks_read_as_user_keys() {
        let s = MemStorage::new();
        for k in [&b"a"[..], b"b", b"c", b"d"] {
            s.set(CF_LOCK, encode_bytes(k), k.to_vec());
        }
        s.set(CF_LOCK, b"raw".to_vec(), b"not a lock".to_vec());
        let reader = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(s.reader(&Context::default(), b""))
            .unwrap();
        let r = EncodedLocks(reader);
        assert_eq!(r.get_cf(CF_LOCK, b"c").unwrap().as_deref(), Some(&b"c"[..]));
        let mut seen = Vec::new();
        r.scan_cf_until(CF_LOCK, b"b", b"d", &mut |k, _| {
            seen.push(k.to_vec());
            true
        })
        .unwrap();
        assert_eq!(seen, [b"b".to_vec(), b"c".to_vec()]);
        seen.clear();
        r.scan_cf(CF_LOCK, b"", &mut |k, _| {
            seen.push(k.to_vec());
            true
        })
        .unwrap();
        assert_eq!(seen.len(), 4, "{seen:?}");
        // The in-memory storage keeps TinyKV's raw layout: nothing to translate.
        let raw = vec![Modify::Delete {
            cf: CF_LOCK.into(),
            key: b"k".to_vec(),
        }];
        assert_eq!(store_writes(&s, raw.clone()), raw);
    }
}
