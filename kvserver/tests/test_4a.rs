//! Project 4A: the MVCC layer, TinyKV's `kv/transaction/mvcc/transaction_test.go` tests with
//! the `4A` suffix (`TestEncodeKey`/`TestDecodeKey` live in `kvserver/src/transaction/codec.rs`).
//! Each test builds a snapshot of a fresh in-memory storage (TinyKV's raw lock-key layout), runs
//! an [`MvccTxn`] over it, and checks what it reads or the exact changes (column family, key and
//! value bytes) it collects.

use kvserver::storage::mem::MemStorage;
use kvserver::storage::{Modify, Storage, StorageReader};
use kvserver::transaction::codec::encode_key;
use kvserver::transaction::mvcc::{Lock, MvccTxn, Write, WriteKind};
use proto::kvrpcpb::Context;
use raftstore::engine::{CF_DEFAULT, CF_LOCK, CF_WRITE};

/// A reader of a fresh [`MemStorage`] after `setup` filled it (TinyKV's `testTxn` without the
/// txn: [`MvccTxn`] borrows its reader, so each test makes its txn over this).
fn snapshot(setup: impl FnOnce(&MemStorage)) -> Box<dyn StorageReader> {
    let mem = MemStorage::new();
    setup(&mem);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(mem.reader(&Context::default(), b""))
        .unwrap()
}

/// Leaves the storage empty (Go's `nil` setup).
fn empty(_: &MemStorage) {}

/// Asserts that `txn` collected exactly one change, a put of `value` at `key` in `cf`.
fn assert_put_in_txn(txn: &MvccTxn, key: Vec<u8>, value: Vec<u8>, cf: &str) {
    assert_eq!(
        txn.writes(),
        [Modify::Put {
            cf: cf.to_string(),
            key,
            value,
        }]
    );
}

/// Asserts that `txn` collected exactly one change, a delete of `key` in `cf`.
fn assert_delete_in_txn(txn: &MvccTxn, key: Vec<u8>, cf: &str) {
    assert_eq!(
        txn.writes(),
        [Modify::Delete {
            cf: cf.to_string(),
            key,
        }]
    );
}

/// The lock record of `TestPutLock4A` and `TestGetLock4A`.
fn rollback_lock() -> Lock {
    Lock {
        primary: vec![16],
        ts: 100,
        ttl: 100000,
        kind: WriteKind::Rollback,
    }
}

/// TestPutLock4A: `put_lock` collects exactly one change, a put of the lock's bytes under the raw
/// key in the lock CF.
#[test]
fn test_put_lock_4a() {
    let reader = snapshot(empty);
    let mut txn = MvccTxn::new(&*reader, 42);
    let lock = rollback_lock();

    txn.put_lock(&[1], &lock);
    assert_put_in_txn(&txn, vec![1], lock.to_bytes(), CF_LOCK);
}

/// TestPutWrite4A: `put_write` collects exactly one change, a put of the write's bytes in the write
/// CF under the key encoded with the commit ts.
#[test]
fn test_put_write_4a() {
    let reader = snapshot(empty);
    let mut txn = MvccTxn::new(&*reader, 0);
    let write = Write {
        start_ts: 100,
        kind: WriteKind::Delete,
    };

    txn.put_write(&[16, 240], 0, &write);
    assert_put_in_txn(&txn, encode_key(&[16, 240], 0), write.to_bytes(), CF_WRITE);
}

/// TestPutValue4A: `put_value` collects exactly one change, a put of the value in the default CF
/// under the key encoded with the txn's start ts.
#[test]
fn test_put_value_4a() {
    let reader = snapshot(empty);
    let mut txn = MvccTxn::new(&*reader, 453325345);
    let value = vec![1, 1, 2, 3, 5, 8, 13];

    txn.put_value(&[32], value.clone());
    assert_put_in_txn(&txn, encode_key(&[32], 453325345), value, CF_DEFAULT);
}

/// TestGetLock4A: `get_lock` decodes a stored lock back to the lock written, and returns None for a
/// key without one.
#[test]
fn test_get_lock_4a() {
    let lock = rollback_lock();
    let reader = snapshot(|m| m.set(CF_LOCK, vec![1], lock.to_bytes()));
    let txn = MvccTxn::new(&*reader, 42);

    let got_lock = txn.get_lock(&[1]).unwrap();
    assert_eq!(got_lock, Some(lock));

    let empty_lock = txn.get_lock(&[2]).unwrap();
    assert_eq!(empty_lock, None);
}

/// TestDeleteLock4A: `delete_lock` collects exactly one change, a delete of the raw key in the lock
/// CF.
#[test]
fn test_delete_lock_4a() {
    let reader = snapshot(empty);
    let mut txn = MvccTxn::new(&*reader, 42);
    txn.delete_lock(&[1]);
    assert_delete_in_txn(&txn, vec![1], CF_LOCK);
}

/// TestDeleteValue4A: `delete_value` collects exactly one change, a delete in the default CF of the
/// key encoded with the txn's start ts.
#[test]
fn test_delete_value_4a() {
    let reader = snapshot(empty);
    let mut txn = MvccTxn::new(&*reader, 63454245);
    txn.delete_value(&[17, 255, 0]);
    assert_delete_in_txn(&txn, encode_key(&[17, 255, 0], 63454245), CF_DEFAULT);
}

/// One committed put of `[16, 240]`: value `[1, 2, 3]` started at 40, committed at 42.
fn single_entry(m: &MemStorage) {
    m.set(CF_DEFAULT, encode_key(&[16, 240], 40), vec![1, 2, 3]);
    let write = Write {
        start_ts: 40,
        kind: WriteKind::Put,
    };
    m.set(CF_WRITE, encode_key(&[16, 240], 42), write.to_bytes());
}

/// TestGetValueSimple4A: a txn at ts 43 reads the value put at 40 and committed at 42.
#[test]
fn test_get_value_simple_4a() {
    let reader = snapshot(single_entry);
    let txn = MvccTxn::new(&*reader, 43);

    let value = txn.get_value(&[16, 240]).unwrap();
    assert_eq!(value, Some(vec![1, 2, 3]));
}

/// TestGetValueMissing4A: a txn at ts 43 reads None for a key with no write ([16, 241], next to the
/// committed [16, 240]).
#[test]
fn test_get_value_missing_4a() {
    let reader = snapshot(single_entry);
    let txn = MvccTxn::new(&*reader, 43);

    let value = txn.get_value(&[16, 241]).unwrap();
    assert_eq!(value, None);
}

/// TestGetValueTooEarly4A: a txn at ts 41 reads None for a value committed at 42.
#[test]
fn test_get_value_too_early_4a() {
    let reader = snapshot(single_entry);
    let txn = MvccTxn::new(&*reader, 41);

    let value = txn.get_value(&[16, 240]).unwrap();
    assert_eq!(value, None);
}

/// Two committed puts of `[16, 240]`: `[1, 2, 3]` (started 40, committed 42), then
/// `[255, 0, 255]` (started 50, committed 52).
fn two_entries(m: &MemStorage) {
    m.set(CF_DEFAULT, encode_key(&[16, 240], 40), vec![1, 2, 3]);
    let write1 = Write {
        start_ts: 40,
        kind: WriteKind::Put,
    };
    m.set(CF_WRITE, encode_key(&[16, 240], 42), write1.to_bytes());

    m.set(CF_DEFAULT, encode_key(&[16, 240], 50), vec![255, 0, 255]);
    let write2 = Write {
        start_ts: 50,
        kind: WriteKind::Put,
    };
    m.set(CF_WRITE, encode_key(&[16, 240], 52), write2.to_bytes());
}

/// TestGetValueOverwritten4A: of two puts of a key committed at 42 and 52, a txn at ts 52 reads the
/// newer value.
#[test]
fn test_get_value_overwritten_4a() {
    let reader = snapshot(two_entries);
    let txn = MvccTxn::new(&*reader, 52);

    let value = txn.get_value(&[16, 240]).unwrap();
    assert_eq!(value, Some(vec![255, 0, 255]));
}

/// TestGetValueNotOverwritten4A: of two puts of a key committed at 42 and 52, a txn at ts 50 reads
/// the older value.
#[test]
fn test_get_value_not_overwritten_4a() {
    let reader = snapshot(two_entries);
    let txn = MvccTxn::new(&*reader, 50);

    let value = txn.get_value(&[16, 240]).unwrap();
    assert_eq!(value, Some(vec![1, 2, 3]));
}

/// `[16, 240]` put as `[1, 2, 3]` (started 40, committed 42), then deleted (started 50,
/// committed 52).
fn deleted(m: &MemStorage) {
    m.set(CF_DEFAULT, encode_key(&[16, 240], 40), vec![1, 2, 3]);
    let write1 = Write {
        start_ts: 40,
        kind: WriteKind::Put,
    };
    m.set(CF_WRITE, encode_key(&[16, 240], 42), write1.to_bytes());

    let write2 = Write {
        start_ts: 50,
        kind: WriteKind::Delete,
    };
    m.set(CF_WRITE, encode_key(&[16, 240], 52), write2.to_bytes());
}

/// TestGetValueDeleted4A: a key put (committed at 42) then deleted (committed at 52) reads None at
/// ts 500.
#[test]
fn test_get_value_deleted_4a() {
    let reader = snapshot(deleted);
    let txn = MvccTxn::new(&*reader, 500);

    let value = txn.get_value(&[16, 240]).unwrap();
    assert_eq!(value, None);
}

/// TestGetValueNotDeleted4A: a key put (committed at 42) then deleted (committed at 52) still reads
/// its value at ts 45.
#[test]
fn test_get_value_not_deleted_4a() {
    let reader = snapshot(deleted);
    let txn = MvccTxn::new(&*reader, 45);

    let value = txn.get_value(&[16, 240]).unwrap();
    assert_eq!(value, Some(vec![1, 2, 3]));
}

/// TestCurrentWrite4A: `current_write` finds the write started at the txn's ts, with its commit ts:
/// (50, 52) at ts 50, (40, 42) at ts 40, None at ts 41.
#[test]
fn test_current_write_4a() {
    let reader = snapshot(two_entries);
    let txn = MvccTxn::new(&*reader, 50);

    let write = txn.current_write(&[16, 240]).unwrap();
    assert_eq!(
        write,
        Some((
            Write {
                start_ts: 50,
                kind: WriteKind::Put,
            },
            52
        ))
    );

    // Go sets `txn.StartTS = 40`; the start ts is not settable here, so a new txn over the same
    // snapshot stands in for it (the txn has collected no changes).
    let txn = MvccTxn::new(&*reader, 40);
    let write = txn.current_write(&[16, 240]).unwrap();
    assert_eq!(
        write,
        Some((
            Write {
                start_ts: 40,
                kind: WriteKind::Put,
            },
            42
        ))
    );

    // Go: `txn.StartTS = 41`, and (nil, 0) expected.
    let txn = MvccTxn::new(&*reader, 41);
    let write = txn.current_write(&[16, 240]).unwrap();
    assert_eq!(write, None);
}

/// TestMostRecentWrite4A: `most_recent_write` returns a key's newest write (a Delete too) and
/// commit ts at any txn ts (1, 50, 5000); None for an empty DB or another key.
#[test]
fn test_most_recent_write_4a() {
    // Empty DB.
    let reader = snapshot(empty);
    let txn = MvccTxn::new(&*reader, 50);
    let write = txn.most_recent_write(&[16, 240]).unwrap();
    assert_eq!(write, None);

    // Simple case - key exists.
    let reader = snapshot(two_entries);
    let txn = MvccTxn::new(&*reader, 50);
    let write = txn.most_recent_write(&[16, 240]).unwrap();
    assert_eq!(
        write,
        Some((
            Write {
                start_ts: 50,
                kind: WriteKind::Put,
            },
            52
        ))
    );
    // No entry for other keys.
    let write = txn.most_recent_write(&[16]).unwrap();
    assert_eq!(write, None);

    // Deleted key.
    let reader = snapshot(deleted);
    let txn = MvccTxn::new(&*reader, 50);
    let write = txn.most_recent_write(&[16, 240]).unwrap();
    assert_eq!(
        write,
        Some((
            Write {
                start_ts: 50,
                kind: WriteKind::Delete,
            },
            52
        ))
    );

    // Result does not depend on txn ts.
    let reader = snapshot(two_entries);
    let txn = MvccTxn::new(&*reader, 5000);
    let write = txn.most_recent_write(&[16, 240]).unwrap();
    assert_eq!(
        write,
        Some((
            Write {
                start_ts: 50,
                kind: WriteKind::Put,
            },
            52
        ))
    );

    // Result does not depend on txn ts.
    let reader = snapshot(two_entries);
    let txn = MvccTxn::new(&*reader, 1);
    let write = txn.most_recent_write(&[16, 240]).unwrap();
    assert_eq!(
        write,
        Some((
            Write {
                start_ts: 50,
                kind: WriteKind::Put,
            },
            52
        ))
    );
}
