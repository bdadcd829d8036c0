//! The transactional commands of the `TinyKv` service (TinyKV's `kv/server/server.go` `Kv*`
//! handlers), each as a method of [`Transactions`]:
//!
//! - a command that writes latches every key it may write ([`super::latches`]), reads one
//!   snapshot, collects its changes in an [`MvccTxn`], and writes them as one batch (one raft
//!   command on a store), then lets the latches go;
//! - a region error (not leader, epoch changed, key not in region, ...) is returned in the
//!   response's `region_error`, a per-key problem in its key error fields; only what no client
//!   can act on by retrying elsewhere (bad input, a corrupt record, a store shutting down) is a
//!   [`TxnError`] (a gRPC status in the service);
//! - a command that fails on one key writes nothing (KvScan reports per key and goes on).
//!
//! The order of checks and the answers are TinyKV's (its `commands4b_test.go` and
//! `commands4c_test.go` pin them); `docs/TRANSACTIONS.md` explains each command and where this
//! port says more than TinyKV (bad input refused, scans that see first-write locks, reads and
//! transactions below the GC safe point refused).

use proto::errorpb;
use proto::kvrpcpb::{
    Action, BatchRollbackRequest, BatchRollbackResponse, CheckTxnStatusRequest,
    CheckTxnStatusResponse, CommitRequest, CommitResponse, Context, GetRequest, GetResponse,
    KeyError, KvPair, Op, PrewriteRequest, PrewriteResponse, ResolveLockRequest,
    ResolveLockResponse, ScanRequest, ScanResponse, WriteConflict,
};
use raftstore::engine::CF_LOCK;
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

use super::codec::physical_time;
use super::latches::Latches;
use super::mvcc::{Lock, MvccError, MvccTxn, Scanner, Visible, Write, WriteKind};
use super::{route_key, store_writes, user_reader};
use crate::limits::MAX_KEY_SIZE;
use crate::storage::{Storage, StorageError, StorageReader};

/// Why a command could not be answered at all.
#[derive(Debug, Error)]
pub enum TxnError {
    /// The request is malformed: nothing was read or written.
    #[error("{0}")]
    InvalidArgument(String),
    /// The storage failed (not a region error: those go in the response).
    #[error(transparent)]
    Storage(StorageError),
    /// A stored record does not parse.
    #[error("{0}")]
    Corrupt(MvccError),
}

/// What a command's body fails with: a region error for the response, or a [`TxnError`].
enum Failed {
    Region(Box<errorpb::Error>),
    Txn(TxnError),
}

impl From<MvccError> for Failed {
    fn from(e: MvccError) -> Failed {
        match e {
            MvccError::Storage(s) => s.into(),
            other => Failed::Txn(TxnError::Corrupt(other)),
        }
    }
}

impl From<StorageError> for Failed {
    fn from(e: StorageError) -> Failed {
        match e {
            StorageError::Region(r) => Failed::Region(r),
            StorageError::InvalidArgument(m) => Failed::Txn(TxnError::InvalidArgument(m)),
            other => Failed::Txn(TxnError::Storage(other)),
        }
    }
}

/// Splits a body's outcome: Ok(Ok(t)), Ok(Err(region error)), or Err.
fn settle<T>(r: Result<T, Failed>) -> Result<Result<T, errorpb::Error>, TxnError> {
    match r {
        Ok(t) => Ok(Ok(t)),
        Err(Failed::Region(e)) => Ok(Err(*e)),
        Err(Failed::Txn(e)) => Err(e),
    }
}

fn invalid(msg: String) -> TxnError {
    TxnError::InvalidArgument(msg)
}

/// Refuses an empty key or one over [`MAX_KEY_SIZE`].
fn check_key(what: &str, key: &[u8]) -> Result<(), TxnError> {
    if key.is_empty() {
        return Err(invalid(format!("{what} is empty")));
    }
    if key.len() > MAX_KEY_SIZE {
        return Err(invalid(format!(
            "{what} of {} bytes is over the limit of {MAX_KEY_SIZE} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// `keys` without repeats, in first-seen order (a key listed twice is one key's work).
fn unique(keys: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut seen = std::collections::HashSet::new();
    keys.iter()
        .filter(|k| seen.insert(k.as_slice()))
        .cloned()
        .collect()
}

fn abort(msg: String) -> KeyError {
    KeyError {
        abort: msg,
        ..Default::default()
    }
}

/// The transactional commands over storage `S`, with the latches of the store.
pub struct Transactions<S> {
    storage: S,
    latches: Latches,
    max_value_size: usize,
    /// The GC safe point this store knows (0: none): versions below it may be gone.
    gc_safe_point: AtomicU64,
}

impl<S: Storage> Transactions<S> {
    /// Commands over `storage`; a prewrite whose keys and values together exceed
    /// `max_value_size` bytes (what one raft command may carry) is refused.
    pub fn new(storage: S, max_value_size: usize) -> Transactions<S> {
        Transactions {
            storage,
            latches: Latches::new(),
            max_value_size,
            gc_safe_point: AtomicU64::new(0),
        }
    }

    /// Raises the GC safe point this store knows (it never goes back): from now on reads below
    /// it and prewrites of transactions that started at or before it are refused with `abort`
    /// (the versions they need may have been collected, see `crate::gc`).
    pub fn set_gc_safe_point(&self, safe_point: u64) {
        self.gc_safe_point.fetch_max(safe_point, Ordering::Relaxed);
    }

    /// The GC safe point this store knows (0: none).
    pub fn gc_safe_point(&self) -> u64 {
        self.gc_safe_point.load(Ordering::Relaxed)
    }

    /// An `abort` error when a read at `version` is older than the GC safe point.
    fn too_old(&self, version: u64, what: &str) -> Option<KeyError> {
        let sp = self.gc_safe_point();
        (version < sp).then(|| {
            abort(format!(
                "{what} at {version} is older than the GC safe point {sp}: the versions it needs \
                 may have been collected; start a new transaction"
            ))
        })
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The latches (tests install a validation hook on them).
    pub fn latches(&self) -> &Latches {
        &self.latches
    }

    /// A reader for `ctx`'s region (routed by `key`, a user key, when `ctx` names none), that
    /// speaks in user lock keys.
    async fn reader(&self, ctx: &Context, key: &[u8]) -> Result<Box<dyn StorageReader>, Failed> {
        let reader = self.storage.reader(ctx, &route_key(key)).await?;
        Ok(user_reader(&self.storage, reader))
    }

    /// Writes `txn`'s changes, after showing them to the validation hook with the latched keys.
    async fn write(
        &self,
        ctx: &Context,
        txn: MvccTxn<'_>,
        latched: &[Vec<u8>],
    ) -> Result<(), Failed> {
        self.latches.validate(txn.writes(), latched);
        let writes = txn.into_writes();
        if writes.is_empty() {
            return Ok(());
        }
        self.storage
            .write(ctx, store_writes(&self.storage, writes))
            .await?;
        Ok(())
    }

    /// KvGet: the value of `key` at `version` (`not_found` when there is none), or, when a lock
    /// blocks reading it ([`Lock::is_locked_for`]), a `locked` key error. Reads one snapshot
    /// ([`Self::reader`]); a region error goes in `region_error` (see [`settle`]).
    pub async fn get(&self, req: GetRequest) -> Result<GetResponse, TxnError> {
        check_key("the key", &req.key)?;
        if let Some(e) = self.too_old(req.version, "a read") {
            return Ok(GetResponse {
                error: Some(e),
                ..Default::default()
            });
        }
        let ctx = req.context.unwrap_or_default();
        // STAGE 4B: over a snapshot at version, answer the blocking lock as a locked error, else the value or not_found
        let body = async {
            let reader = self.reader(&ctx, &req.key).await?;
            let txn = MvccTxn::new(&*reader, req.version);
            let mut resp = GetResponse::default();
            if let Some(lock) = txn.get_lock(&req.key)? {
                if lock.is_locked_for(&req.key, req.version) {
                    resp.error = Some(KeyError {
                        locked: Some(lock.info(&req.key)),
                        ..Default::default()
                    });
                    return Ok(resp);
                }
            }
            match txn.get_value(&req.key)? {
                Some(v) => resp.value = v,
                None => resp.not_found = true,
            }
            Ok(resp)
        };
        Ok(match settle(body.await)? {
            Ok(resp) => resp,
            Err(e) => GetResponse {
                region_error: Some(e),
                ..Default::default()
            },
        })
        // END STAGE 4B
    }

    /// KvPrewrite: locks every mutation's key for the transaction (a [`Lock`] with the primary,
    /// the start ts, the ttl and the mutation's kind) and writes its value (or deletes it, for a
    /// `Del`), unless a key has a write record committed at or after the start ts (a `conflict`
    /// error) or is locked by another transaction (a `locked` error); then nothing is written
    /// and every such key's error is returned. No mutations: an empty answer. The keys are
    /// latched while the command reads and writes ([`Latches::acquire`]); the changes are
    /// written as one batch ([`Self::write`]); a region error goes in `region_error`.
    pub async fn prewrite(&self, req: PrewriteRequest) -> Result<PrewriteResponse, TxnError> {
        // STAGE 4B remove
        if req.mutations.is_empty() {
            return Ok(PrewriteResponse::default());
        }
        // END STAGE 4B
        check_key("the primary lock", &req.primary_lock)?;
        let mut bytes = 0usize;
        for m in &req.mutations {
            check_key("a mutation's key", &m.key)?;
            match Op::try_from(m.op) {
                Ok(Op::Put) | Ok(Op::Del) => {}
                _ => {
                    return Err(invalid(format!(
                        "a prewrite takes Put and Del mutations, not op {}",
                        m.op
                    )))
                }
            }
            bytes += m.key.len() + m.value.len();
        }
        if bytes > self.max_value_size {
            return Err(invalid(format!(
                "a prewrite of {bytes} bytes of keys and values is over the limit of {} bytes of \
                 one command: split the transaction's keys into several prewrites",
                self.max_value_size
            )));
        }
        // A transaction older than the safe point might find no trace of a newer write or a
        // rollback that GC removed: it must not lock anything.
        let sp = self.gc_safe_point();
        if sp > 0 && req.start_version <= sp {
            return Ok(PrewriteResponse {
                errors: vec![abort(format!(
                    "a transaction started at {} is not after the GC safe point {sp}: start a \
                     new transaction",
                    req.start_version
                ))],
                ..Default::default()
            });
        }
        let ctx = req.context.unwrap_or_default();
        // STAGE 4B: latch the keys, then over one snapshot check each mutation for a newer write (conflict) or another's lock (locked), else lock it and write its value; write nothing if any key failed
        let keys: Vec<Vec<u8>> = req.mutations.iter().map(|m| m.key.clone()).collect();
        let guard = self.latches.acquire(keys.clone()).await;
        let start_ts = req.start_version;
        let body = async {
            let reader = self.reader(&ctx, &keys[0]).await?;
            let mut txn = MvccTxn::new(&*reader, start_ts);
            let mut errors = Vec::new();
            for m in &req.mutations {
                let key = &m.key;
                if let Some((_, commit_ts)) = txn.most_recent_write(key)? {
                    if commit_ts >= start_ts {
                        errors.push(KeyError {
                            conflict: Some(WriteConflict {
                                start_ts,
                                conflict_ts: commit_ts,
                                key: key.clone(),
                                primary: req.primary_lock.clone(),
                            }),
                            ..Default::default()
                        });
                        continue;
                    }
                }
                if let Some(lock) = txn.get_lock(key)? {
                    if lock.ts != start_ts {
                        errors.push(KeyError {
                            locked: Some(lock.info(key)),
                            ..Default::default()
                        });
                        continue;
                    }
                }
                let kind = if m.op == Op::Put as i32 {
                    txn.put_value(key, m.value.clone());
                    WriteKind::Put
                } else {
                    txn.delete_value(key);
                    WriteKind::Delete
                };
                txn.put_lock(
                    key,
                    &Lock {
                        primary: req.primary_lock.clone(),
                        ts: start_ts,
                        ttl: req.lock_ttl,
                        kind,
                    },
                );
            }
            if errors.is_empty() {
                self.write(&ctx, txn, guard.keys()).await?;
            }
            Ok(errors)
        };
        let outcome = settle(body.await);
        drop(guard);
        Ok(match outcome? {
            Ok(errors) => PrewriteResponse {
                errors,
                ..Default::default()
            },
            Err(e) => PrewriteResponse {
                region_error: Some(e),
                ..Default::default()
            },
        })
        // END STAGE 4B
    }

    /// KvCommit: makes the transaction's locked keys visible at `commit_version`, each as
    /// [`commit_key`] says; the first key error is the answer, and then nothing is written. No
    /// keys: an empty answer. The keys are latched while the command reads and writes
    /// ([`Latches::acquire`]); the changes are written as one batch ([`Self::write`]); a region
    /// error goes in `region_error`.
    pub async fn commit(&self, req: CommitRequest) -> Result<CommitResponse, TxnError> {
        let keys = unique(&req.keys);
        // STAGE 4B remove
        if keys.is_empty() {
            return Ok(CommitResponse::default());
        }
        // END STAGE 4B
        for k in &keys {
            check_key("a key", k)?;
        }
        if req.commit_version <= req.start_version {
            return Err(invalid(format!(
                "commit version {} is not after start version {}",
                req.commit_version, req.start_version
            )));
        }
        let ctx = req.context.unwrap_or_default();
        // STAGE 4B: latch the keys, commit each over one snapshot (the first key error is the answer), then write the changes
        let guard = self.latches.acquire(keys.clone()).await;
        let body = async {
            let reader = self.reader(&ctx, &keys[0]).await?;
            let mut txn = MvccTxn::new(&*reader, req.start_version);
            for k in &keys {
                if let Some(e) = commit_key(&mut txn, k, req.commit_version)? {
                    return Ok(Some(e));
                }
            }
            self.write(&ctx, txn, guard.keys()).await?;
            Ok(None)
        };
        let outcome = settle(body.await);
        drop(guard);
        Ok(match outcome? {
            Ok(error) => CommitResponse {
                error,
                ..Default::default()
            },
            Err(e) => CommitResponse {
                region_error: Some(e),
                ..Default::default()
            },
        })
        // END STAGE 4B
    }

    /// KvScan: up to `limit` pairs from `start_key` on (to the region's end) as of `version`,
    /// read with a [`Scanner`] over one snapshot; a key locked for the read is a pair with its
    /// `locked` key error (and no value). A limit of 0: an empty answer. A region error goes in
    /// `region_error`.
    pub async fn scan(&self, req: ScanRequest) -> Result<ScanResponse, TxnError> {
        if req.start_key.len() > MAX_KEY_SIZE {
            return Err(invalid(format!(
                "the start key of {} bytes is over the limit of {MAX_KEY_SIZE} bytes",
                req.start_key.len()
            )));
        }
        // STAGE 4C remove
        if req.limit == 0 {
            return Ok(ScanResponse::default());
        }
        // END STAGE 4C
        if let Some(e) = self.too_old(req.version, "a scan") {
            return Ok(ScanResponse {
                pairs: vec![KvPair {
                    error: Some(e),
                    key: req.start_key,
                    value: Vec::new(),
                }],
                ..Default::default()
            });
        }
        let ctx = req.context.unwrap_or_default();
        // STAGE 4C: walk a Scanner over a snapshot at version from start_key, collecting up to limit pairs (a blocking lock as a locked error)
        let body = async {
            let reader = self.reader(&ctx, &req.start_key).await?;
            let txn = MvccTxn::new(&*reader, req.version);
            let mut scanner = Scanner::new(&req.start_key, &txn);
            let mut pairs = Vec::new();
            while pairs.len() < req.limit as usize {
                let Some((key, found)) = scanner.next_checked()? else {
                    break;
                };
                pairs.push(match found {
                    Visible::Value(value) => KvPair {
                        key,
                        value,
                        error: None,
                    },
                    Visible::Locked(lock) => KvPair {
                        error: Some(KeyError {
                            locked: Some(lock.info(&key)),
                            ..Default::default()
                        }),
                        key,
                        value: Vec::new(),
                    },
                });
            }
            Ok(pairs)
        };
        Ok(match settle(body.await)? {
            Ok(pairs) => ScanResponse {
                pairs,
                ..Default::default()
            },
            Err(e) => ScanResponse {
                region_error: Some(e),
                ..Default::default()
            },
        })
        // END STAGE 4C
    }

    /// KvCheckTxnStatus: whether the transaction of `primary_key` started at `lock_ts` is
    /// locked, committed or rolled back; an expired lock is rolled back, and a transaction with
    /// neither lock nor record gets a rollback record (so it can never commit later).
    ///
    /// Its lock on the key: expired when the physical time of `current_ts` has reached that of
    /// `lock_ts` plus the lock's ttl ([`physical_time`]): then its lock and value go, a rollback
    /// record is written, and the action is `TtlExpireRollback`; else `NoAction` with the lock's
    /// ttl. No lock of it: its write record says committed (`commit_version`) or rolled back
    /// (`NoAction` both); no record either: a rollback record and `LockNotExistRollback`. The
    /// key is latched while the command reads and writes; a region error goes in `region_error`.
    pub async fn check_txn_status(
        &self,
        req: CheckTxnStatusRequest,
    ) -> Result<CheckTxnStatusResponse, TxnError> {
        check_key("the primary key", &req.primary_key)?;
        let ctx = req.context.unwrap_or_default();
        // STAGE 4C: latch the primary key; over a snapshot at lock_ts, roll back an expired lock, report a live one, else answer from its write record (none: write a rollback record)
        let key = req.primary_key.clone();
        let guard = self.latches.acquire([key.clone()]).await;
        let body = async {
            let reader = self.reader(&ctx, &key).await?;
            let mut txn = MvccTxn::new(&*reader, req.lock_ts);
            let mut resp = CheckTxnStatusResponse::default();
            match txn.get_lock(&key)? {
                Some(lock) if lock.ts == req.lock_ts => {
                    let expires = physical_time(lock.ts).saturating_add(lock.ttl);
                    if physical_time(req.current_ts) >= expires {
                        txn.delete_lock(&key);
                        txn.delete_value(&key);
                        rollback_record(&mut txn, &key);
                        resp.action = Action::TtlExpireRollback as i32;
                    } else {
                        resp.action = Action::NoAction as i32;
                        resp.lock_ttl = lock.ttl;
                    }
                }
                _ => match txn.current_write(&key)? {
                    Some((w, commit_ts)) if w.kind != WriteKind::Rollback => {
                        resp.commit_version = commit_ts;
                        resp.action = Action::NoAction as i32;
                    }
                    Some(_) => resp.action = Action::NoAction as i32,
                    None => {
                        rollback_record(&mut txn, &key);
                        resp.action = Action::LockNotExistRollback as i32;
                    }
                },
            }
            self.write(&ctx, txn, guard.keys()).await?;
            Ok(resp)
        };
        let outcome = settle(body.await);
        drop(guard);
        Ok(match outcome? {
            Ok(resp) => resp,
            Err(e) => CheckTxnStatusResponse {
                region_error: Some(e),
                ..Default::default()
            },
        })
        // END STAGE 4C
    }

    /// KvBatchRollback: rolls the transaction back on `keys`, each as [`rollback_key`] says
    /// (removing its locks and values and leaving rollback records), unless one of them is
    /// already committed (abort): the first key error is the answer, and then nothing is
    /// written. No keys: an empty answer. The keys are latched while the command reads and
    /// writes; a region error goes in `region_error`.
    pub async fn batch_rollback(
        &self,
        req: BatchRollbackRequest,
    ) -> Result<BatchRollbackResponse, TxnError> {
        let keys = unique(&req.keys);
        // STAGE 4C remove
        if keys.is_empty() {
            return Ok(BatchRollbackResponse::default());
        }
        // END STAGE 4C
        for k in &keys {
            check_key("a key", k)?;
        }
        let ctx = req.context.unwrap_or_default();
        // STAGE 4C: latch the keys, roll each back over one snapshot (the first key error is the answer), then write the changes
        let guard = self.latches.acquire(keys.clone()).await;
        let body = async {
            let reader = self.reader(&ctx, &keys[0]).await?;
            let mut txn = MvccTxn::new(&*reader, req.start_version);
            for k in &keys {
                if let Some(e) = rollback_key(&mut txn, k)? {
                    return Ok(Some(e));
                }
            }
            self.write(&ctx, txn, guard.keys()).await?;
            Ok(None)
        };
        let outcome = settle(body.await);
        drop(guard);
        Ok(match outcome? {
            Ok(error) => BatchRollbackResponse {
                error,
                ..Default::default()
            },
            Err(e) => BatchRollbackResponse {
                region_error: Some(e),
                ..Default::default()
            },
        })
        // END STAGE 4C
    }

    /// KvResolveLock: commits (at `commit_version`, as [`commit_key`] does) or, when it is 0,
    /// rolls back (as [`rollback_key`] does) every lock of the transaction started at
    /// `start_version` in the region ([`locks_of_txn`] finds them); the first key error is the
    /// answer, and then nothing is written. The keys are latched while the command reads and
    /// writes; a region error goes in `region_error`.
    pub async fn resolve_lock(
        &self,
        req: ResolveLockRequest,
    ) -> Result<ResolveLockResponse, TxnError> {
        if req.commit_version != 0 && req.commit_version <= req.start_version {
            return Err(invalid(format!(
                "commit version {} is not after start version {}",
                req.commit_version, req.start_version
            )));
        }
        let ctx = req.context.unwrap_or_default();
        // STAGE 4C: find the transaction's locks, latch their keys, then commit or roll back each over a snapshot taken under the latches
        let body = async {
            // The transaction's locks, as of now; the latches are taken on those keys and the
            // commit or rollback reads a snapshot taken under them.
            let keys = {
                let reader = self.reader(&ctx, b"").await?;
                locks_of_txn(&*reader, req.start_version)?
            };
            if keys.is_empty() {
                return Ok(None);
            }
            let guard = self.latches.acquire(keys.clone()).await;
            let reader = self.reader(&ctx, &keys[0]).await?;
            let mut txn = MvccTxn::new(&*reader, req.start_version);
            for key in &keys {
                let error = if req.commit_version == 0 {
                    rollback_key(&mut txn, key)?
                } else {
                    commit_key(&mut txn, key, req.commit_version)?
                };
                if let Some(e) = error {
                    return Ok(Some(e));
                }
            }
            self.write(&ctx, txn, guard.keys()).await?;
            Ok(None)
        };
        Ok(match settle(body.await)? {
            Ok(error) => ResolveLockResponse {
                error,
                ..Default::default()
            },
            Err(e) => ResolveLockResponse {
                region_error: Some(e),
                ..Default::default()
            },
        })
        // END STAGE 4C
    }
}

/// The keys locked by the transaction started at `start_ts`, in key order (TinyKV's
/// `AllLocksForTxn`).
fn locks_of_txn(reader: &dyn StorageReader, start_ts: u64) -> Result<Vec<Vec<u8>>, MvccError> {
    let mut keys = Vec::new();
    let mut bad = None;
    reader.scan_cf(CF_LOCK, b"", &mut |k, v| {
        match Lock::parse(v) {
            Some(lock) if lock.ts == start_ts => keys.push(k.to_vec()),
            Some(_) => {}
            None => {
                bad = Some(k.to_vec());
                return false;
            }
        }
        true
    })?;
    match bad {
        Some(key) => Err(MvccError::Corrupt { what: "lock", key }),
        None => Ok(keys),
    }
}

// STAGE 4C remove
/// A rollback record of `txn` for `key`.
fn rollback_record(txn: &mut MvccTxn<'_>, key: &[u8]) {
    let start_ts = txn.start_ts();
    txn.put_write(
        key,
        start_ts,
        &Write {
            start_ts,
            kind: WriteKind::Rollback,
        },
    );
}
// END STAGE 4C

/// Commits `txn` on `key` at `commit_ts`: its lock becomes a write record at `commit_ts` (of
/// the lock's kind) and goes. No lock and committed already (or never prewritten here): no
/// change, no error. Another transaction's lock: a `retryable` key error. Rolled back: an
/// `abort` key error.
fn commit_key(
    txn: &mut MvccTxn<'_>,
    key: &[u8],
    commit_ts: u64,
) -> Result<Option<KeyError>, MvccError> {
    // STAGE 4B: turn this transaction's lock on key into a write record at commit_ts; else tell another's lock (retryable) from a rollback (abort)
    match txn.get_lock(key)? {
        Some(lock) if lock.ts == txn.start_ts() => {
            txn.put_write(
                key,
                commit_ts,
                &Write {
                    start_ts: txn.start_ts(),
                    kind: lock.kind,
                },
            );
            txn.delete_lock(key);
            Ok(None)
        }
        Some(lock) => Ok(Some(KeyError {
            retryable: format!(
                "key {key:?} is locked by another transaction (started at {}): the commit of \
                 the transaction started at {} finds its lock gone",
                lock.ts,
                txn.start_ts()
            ),
            ..Default::default()
        })),
        None => match txn.current_write(key)? {
            Some((w, _)) if w.kind == WriteKind::Rollback => Ok(Some(abort(format!(
                "the transaction started at {} was rolled back on key {key:?}",
                txn.start_ts()
            )))),
            // Committed already, or never prewritten here: nothing to do (TinyKV's
            // TestCommitMissingPrewrite4B expects no error).
            _ => Ok(None),
        },
    }
    // END STAGE 4B
}

/// Rolls `txn` back on `key`: its lock and value go, a rollback record stays (also when there
/// was no lock, so a late prewrite cannot succeed). Rolled back already: no change. Committed:
/// abort.
fn rollback_key(txn: &mut MvccTxn<'_>, key: &[u8]) -> Result<Option<KeyError>, MvccError> {
    // STAGE 4C: from key's write record of this transaction: rolled back already, committed (abort), or none; then drop its lock and value and write a rollback record
    let current = txn.current_write(key)?;
    match current {
        Some((w, _)) if w.kind == WriteKind::Rollback => return Ok(None),
        Some((_, commit_ts)) => {
            return Ok(Some(abort(format!(
                "the transaction started at {} committed key {key:?} at {commit_ts}: it cannot \
                 be rolled back",
                txn.start_ts()
            ))))
        }
        None => {}
    }
    if let Some(lock) = txn.get_lock(key)? {
        if lock.ts == txn.start_ts() {
            txn.delete_lock(key);
            txn.delete_value(key);
        }
    }
    rollback_record(txn, key);
    Ok(None)
    // END STAGE 4C
}
