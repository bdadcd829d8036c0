//! Percolator's data model over the three column families (TinyKV's `kv/transaction/mvcc`):
//! [`Lock`] and [`Write`] records with TinyKV's exact bytes, and [`MvccTxn`], a transaction's
//! view of one storage snapshot that collects the changes a command makes, written all at once.
//! [`Scanner`] walks the values visible at a timestamp, one user key at a time.
//!
//! Layout (TinyKV's): `lock` keyed by the user key -> [`Lock`]; `default` keyed by
//! `encode_key(key, start_ts)` -> the value; `write` keyed by `encode_key(key, commit_ts)` ->
//! [`Write`] (a rollback is a Write of kind Rollback keyed by its own start ts). Where a
//! replicated store keeps the lock keys encoded instead, see [`super::LockKeys`]: the txn here
//! always speaks in user keys.

use proto::kvrpcpb::{LockInfo, Op};
use raftstore::engine::{CF_DEFAULT, CF_LOCK, CF_WRITE};
use thiserror::Error;

use super::codec::{decode_key, encode_key, CodecError, TS_MAX};
use crate::storage::{Modify, StorageError, StorageReader};

/// Why reading or decoding MVCC data failed.
#[derive(Debug, Error)]
pub enum MvccError {
    /// The storage failed, or the region cannot serve.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A key that should be an MVCC key does not decode.
    #[error("a bad MVCC key: {0}")]
    Codec(#[from] CodecError),
    /// A stored lock or write record that does not parse.
    #[error("a corrupt {what} record at key {key:02x?}")]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
        /// Where it is stored.
        key: Vec<u8>,
    },
}

/// What a committed (or rolled back) write did, and what a lock will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// A value was written.
    Put = 1,
    /// The key was deleted.
    Delete = 2,
    /// The transaction was rolled back.
    Rollback = 3,
}

impl WriteKind {
    /// The kind of a stored byte.
    pub fn from_byte(b: u8) -> Option<WriteKind> {
        match b {
            1 => Some(WriteKind::Put),
            2 => Some(WriteKind::Delete),
            3 => Some(WriteKind::Rollback),
            _ => None,
        }
    }

    /// The kind a mutation's op makes; None for `Op::Lock` (TinySQL's only, unsupported here:
    /// TinyKV panics on it).
    pub fn from_op(op: Op) -> Option<WriteKind> {
        match op {
            Op::Put => Some(WriteKind::Put),
            Op::Del => Some(WriteKind::Delete),
            Op::Rollback => Some(WriteKind::Rollback),
            Op::Lock => None,
        }
    }

    /// The op of this kind.
    pub fn to_op(self) -> Op {
        match self {
            WriteKind::Put => Op::Put,
            WriteKind::Delete => Op::Del,
            WriteKind::Rollback => Op::Rollback,
        }
    }
}

/// A record in the `write` column family: the transaction that started at `start_ts` committed
/// (or rolled back) at the timestamp in the record's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    /// The start timestamp of the transaction.
    pub start_ts: u64,
    /// What it did.
    pub kind: WriteKind,
}

impl Write {
    /// TinyKV's bytes: the kind, then the start ts big-endian (9 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.start_ts.to_be_bytes());
        out
    }

    /// Parses [`Self::to_bytes`]; None unless exactly 9 bytes of a known kind.
    pub fn parse(b: &[u8]) -> Option<Write> {
        if b.len() != 9 {
            return None;
        }
        Some(Write {
            kind: WriteKind::from_byte(b[0])?,
            start_ts: u64::from_be_bytes(b[1..9].try_into().ok()?),
        })
    }
}

/// A record in the `lock` column family: the key is being written by the transaction that
/// started at `ts`, whose primary key is `primary`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The transaction's primary key (its status lives there).
    pub primary: Vec<u8>,
    /// The transaction's start timestamp.
    pub ts: u64,
    /// Milliseconds after `ts`'s physical time at which the lock may be rolled back by others.
    pub ttl: u64,
    /// What the commit will write.
    pub kind: WriteKind,
}

impl Lock {
    /// TinyKV's bytes: the primary, the kind, the ts and the ttl (both big-endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.primary.len() + 17);
        out.extend_from_slice(&self.primary);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.ts.to_be_bytes());
        out.extend_from_slice(&self.ttl.to_be_bytes());
        out
    }

    /// Parses [`Self::to_bytes`]; None for fewer than 17 bytes or an unknown kind.
    pub fn parse(b: &[u8]) -> Option<Lock> {
        let p = b.len().checked_sub(17)?;
        Some(Lock {
            primary: b[..p].to_vec(),
            kind: WriteKind::from_byte(b[p])?,
            ts: u64::from_be_bytes(b[p + 1..p + 9].try_into().ok()?),
            ttl: u64::from_be_bytes(b[p + 9..p + 17].try_into().ok()?),
        })
    }

    /// What a `KeyError { locked }` tells a client about this lock on `key`.
    pub fn info(&self, key: &[u8]) -> LockInfo {
        LockInfo {
            primary_lock: self.primary.clone(),
            lock_version: self.ts,
            key: key.to_vec(),
            lock_ttl: self.ttl,
        }
    }

    /// Whether this lock on `key` blocks a read at `start_ts` (TinyKV's `IsLockedFor`): a lock
    /// from before the read does; a read at [`TS_MAX`] ignores the locks of
    /// secondary keys (their primary decides).
    pub fn is_locked_for(&self, key: &[u8], start_ts: u64) -> bool {
        if start_ts == TS_MAX && key != self.primary.as_slice() {
            return false;
        }
        self.ts <= start_ts
    }
}

/// A transaction's view of one storage snapshot (started at `start_ts`) and the changes it
/// collected, in the order they were made. Reads see the snapshot, never the collected
/// changes.
pub struct MvccTxn<'a> {
    reader: &'a dyn StorageReader,
    start_ts: u64,
    writes: Vec<Modify>,
}

impl<'a> MvccTxn<'a> {
    /// A transaction at `start_ts` over `reader`.
    pub fn new(reader: &'a dyn StorageReader, start_ts: u64) -> MvccTxn<'a> {
        MvccTxn {
            reader,
            start_ts,
            writes: Vec::new(),
        }
    }

    /// The transaction's start timestamp.
    pub fn start_ts(&self) -> u64 {
        self.start_ts
    }

    /// The changes collected so far, in call order.
    pub fn writes(&self) -> &[Modify] {
        &self.writes
    }

    /// The changes collected, to be written.
    pub fn into_writes(self) -> Vec<Modify> {
        self.writes
    }

    /// Records `write` for `key` at commit timestamp `ts`: a put in the `write` column family
    /// at `encode_key(key, ts)`.
    pub fn put_write(&mut self, key: &[u8], ts: u64, write: &Write) {
        // STAGE 4A: collect a put of the write record's bytes at key's MVCC key for ts in CF_WRITE
        self.writes.push(Modify::Put {
            cf: CF_WRITE.into(),
            key: encode_key(key, ts),
            value: write.to_bytes(),
        });
        // END STAGE 4A
    }

    /// The lock on `key` in the snapshot (the `lock` column family is keyed by the user key),
    /// if any; a record that does not parse is [`MvccError::Corrupt`].
    pub fn get_lock(&self, key: &[u8]) -> Result<Option<Lock>, MvccError> {
        // STAGE 4A: read key's record in CF_LOCK and parse it into a Lock
        match self.reader.get_cf(CF_LOCK, key)? {
            None => Ok(None),
            Some(b) => Lock::parse(&b).map(Some).ok_or(MvccError::Corrupt {
                what: "lock",
                key: key.to_vec(),
            }),
        }
        // END STAGE 4A
    }

    /// Locks `key` with `lock`: a put of the lock's bytes in the `lock` column family at the
    /// user key.
    pub fn put_lock(&mut self, key: &[u8], lock: &Lock) {
        // STAGE 4A: collect a put of the lock's bytes at key in CF_LOCK
        self.writes.push(Modify::Put {
            cf: CF_LOCK.into(),
            key: key.to_vec(),
            value: lock.to_bytes(),
        });
        // END STAGE 4A
    }

    /// Removes the lock on `key`: a delete in the `lock` column family.
    pub fn delete_lock(&mut self, key: &[u8]) {
        // STAGE 4A: collect a delete of key in CF_LOCK
        self.writes.push(Modify::Delete {
            cf: CF_LOCK.into(),
            key: key.to_vec(),
        });
        // END STAGE 4A
    }

    // STAGE 4A remove
    /// Visits the write records of `key` from commit timestamp `from_ts` down to the oldest,
    /// newest first, until `f` says stop (returns Some).
    fn walk_writes<T>(
        &self,
        key: &[u8],
        from_ts: u64,
        mut f: impl FnMut(Write, u64) -> Option<T>,
    ) -> Result<Option<T>, MvccError> {
        let mut out = None;
        let mut err = None;
        self.reader
            .scan_cf(CF_WRITE, &encode_key(key, from_ts), &mut |k, v| {
                let (user, commit_ts) = match decode_key(k) {
                    Ok(d) => d,
                    Err(e) => {
                        err = Some(MvccError::Codec(e));
                        return false;
                    }
                };
                if user != key {
                    // Past the last version of this user key.
                    return false;
                }
                let Some(w) = Write::parse(v) else {
                    err = Some(MvccError::Corrupt {
                        what: "write",
                        key: k.to_vec(),
                    });
                    return false;
                };
                out = f(w, commit_ts);
                out.is_none()
            })?;
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
    // END STAGE 4A

    /// The value of `key` visible to this transaction: the value (in `default`, at the writing
    /// transaction's start ts) of the newest write record of `key` committed at or before the
    /// start ts, rollbacks skipped; None when that record is a delete or there is none.
    pub fn get_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MvccError> {
        // STAGE 4A: find the newest non-rollback write of key committed at or before start_ts (scan CF_WRITE from its MVCC key), then read its value from CF_DEFAULT
        let newest = self.walk_writes(key, self.start_ts, |w, _| {
            (w.kind != WriteKind::Rollback).then_some(w)
        })?;
        match newest {
            Some(Write {
                kind: WriteKind::Put,
                start_ts,
            }) => Ok(self.reader.get_cf(CF_DEFAULT, &encode_key(key, start_ts))?),
            _ => Ok(None),
        }
        // END STAGE 4A
    }

    /// Writes `value` for `key` (at this transaction's start ts): a put in the `default`
    /// column family at `encode_key(key, start_ts)`.
    pub fn put_value(&mut self, key: &[u8], value: Vec<u8>) {
        // STAGE 4A: collect a put of value at key's MVCC key for the start ts in CF_DEFAULT
        self.writes.push(Modify::Put {
            cf: CF_DEFAULT.into(),
            key: encode_key(key, self.start_ts),
            value,
        });
        // END STAGE 4A
    }

    /// Removes this transaction's value of `key`: a delete in the `default` column family at
    /// `encode_key(key, start_ts)`.
    pub fn delete_value(&mut self, key: &[u8]) {
        // STAGE 4A: collect a delete of key's MVCC key for the start ts in CF_DEFAULT
        self.writes.push(Modify::Delete {
            cf: CF_DEFAULT.into(),
            key: encode_key(key, self.start_ts),
        });
        // END STAGE 4A
    }

    /// This transaction's write record of `key` (commit or rollback: the record whose start ts
    /// is this transaction's) and its commit ts; None if there is none. Only a commit at or
    /// after the start ts can be this transaction's, so the search stops below it.
    pub fn current_write(&self, key: &[u8]) -> Result<Option<(Write, u64)>, MvccError> {
        // STAGE 4A: walk key's write records from the newest down to the start ts, looking for the one with this start ts
        let start_ts = self.start_ts;
        let mut found = None;
        self.walk_writes(key, TS_MAX, |w, commit_ts| {
            if commit_ts < start_ts {
                return Some(());
            }
            if w.start_ts == start_ts {
                found = Some((w, commit_ts));
                return Some(());
            }
            None
        })?;
        Ok(found)
        // END STAGE 4A
    }

    /// The newest write record of `key` whatever its timestamp (a rollback included), and its
    /// commit ts; None if there is none.
    pub fn most_recent_write(&self, key: &[u8]) -> Result<Option<(Write, u64)>, MvccError> {
        // STAGE 4A: the first write record of key in CF_WRITE from its MVCC key at TS_MAX
        self.walk_writes(key, TS_MAX, |w, commit_ts| Some((w, commit_ts)))
        // END STAGE 4A
    }
}

/// What a scan finds at a user key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    /// The value visible at the start ts.
    Value(Vec<u8>),
    /// A lock that blocks reading the key at the start ts (see [`Lock::is_locked_for`]).
    Locked(Lock),
}

/// The values visible at a transaction's start ts, in user-key order from a start key: one
/// user key per call, reading only that key's versions (deleted keys and keys with nothing
/// visible are passed over).
///
/// As an [`Iterator`] it is TinyKV's scanner: it walks the keys that have write records and leaves
/// locks to the caller. [`Scanner::next_checked`] also walks the keys that only have a lock (a
/// transaction's first write of a key) and reports a lock that blocks the read instead of the
/// value: a snapshot read must not pass over a key whose writer may have committed before the
/// snapshot's timestamp.
pub struct Scanner<'t, 'a> {
    txn: &'t MvccTxn<'a>,
    /// The next user key to look at (None: the end).
    next_key: Option<Vec<u8>>,
}

impl<'t, 'a> Scanner<'t, 'a> {
    /// A scanner from `start` (inclusive) over `txn`'s snapshot.
    pub fn new(start: &[u8], txn: &'t MvccTxn<'a>) -> Scanner<'t, 'a> {
        Scanner {
            txn,
            next_key: Some(start.to_vec()),
        }
    }

    /// The first user key at or after `from` that has a write record (or, with `locks`, a lock).
    fn key_at_or_after(&self, from: &[u8], locks: bool) -> Result<Option<Vec<u8>>, MvccError> {
        let reader = self.txn.reader;
        let mut out: Option<Vec<u8>> = None;
        // STAGE 4C: set out to the user key of the first CF_WRITE entry at or after from's newest MVCC key
        let mut err = None;
        reader.scan_cf(CF_WRITE, &encode_key(from, TS_MAX), &mut |k, _| {
            match decode_key(k) {
                Ok((user, _)) => out = Some(user),
                Err(e) => err = Some(e),
            }
            false
        })?;
        if let Some(e) = err {
            return Err(e.into());
        }
        // END STAGE 4C
        if locks {
            // A lock only matters before the next written key, or on it: the probe ends just
            // past it (the lock column family is mostly deleted entries the engine would
            // otherwise step over to the region's end, once per key).
            let until = out.as_ref().map(|w| {
                let mut succ = w.clone();
                succ.push(0);
                succ
            });
            reader.scan_cf_until(
                CF_LOCK,
                from,
                until.as_deref().unwrap_or(b""),
                &mut |k, _| {
                    if out.as_deref().is_none_or(|w| k < w) {
                        out = Some(k.to_vec());
                    }
                    false
                },
            )?;
        }
        Ok(out)
    }

    fn advance(&mut self, locks: bool) -> Result<Option<Vec<u8>>, MvccError> {
        let Some(from) = self.next_key.take() else {
            return Ok(None);
        };
        let Some(key) = self.key_at_or_after(&from, locks)? else {
            return Ok(None);
        };
        // The smallest key after `key`.
        let mut succ = key.clone();
        succ.push(0);
        self.next_key = Some(succ);
        Ok(Some(key))
    }

    /// The next user key with a value visible at the start ts or a lock blocking it (see
    /// [`Lock::is_locked_for`]: a blocking lock is reported before the value), and what was
    /// found; None at the end. Keys with neither (deleted, or nothing committed by the start
    /// ts) are passed over.
    pub fn next_checked(&mut self) -> Result<Option<(Vec<u8>, Visible)>, MvccError> {
        // STAGE 4C: advance key by key (locks included); report a lock blocking the read, else the visible value, else go on
        let start_ts = self.txn.start_ts;
        while let Some(key) = self.advance(true)? {
            if let Some(lock) = self.txn.get_lock(&key)? {
                if lock.is_locked_for(&key, start_ts) {
                    return Ok(Some((key, Visible::Locked(lock))));
                }
            }
            if let Some(v) = self.txn.get_value(&key)? {
                return Ok(Some((key, Visible::Value(v))));
            }
        }
        Ok(None)
        // END STAGE 4C
    }
}

/// A user key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// TinyKV's scanner: the next user key with a value visible at the start ts, and that value
/// (keys without one are passed over, locks are not looked at); None at the end.
impl Iterator for Scanner<'_, '_> {
    type Item = Result<Pair, MvccError>;

    fn next(&mut self) -> Option<Self::Item> {
        // STAGE 4C: advance key by key (write records only) until a key has a value visible at the start ts
        loop {
            let key = match self.advance(false) {
                Ok(Some(key)) => key,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            match self.txn.get_value(&key) {
                Ok(Some(v)) => return Some(Ok((key, v))),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
        // END STAGE 4C
    }
}
