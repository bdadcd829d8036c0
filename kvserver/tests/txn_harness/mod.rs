//! The harness of the transactional command tests, a port of TinyKV's
//! `kv/transaction/commands_test.go`, shared by `test_4b.rs` and `test_4c.rs`
//! (each includes it with `mod txn_harness;`).
//!
//! A [`TestBuilder`] runs the seven commands of [`Transactions`] over a fresh [`MemStorage`],
//! with TinyKV's latch validation installed, on a tokio runtime it owns. It keeps the previous
//! timestamp (starting at 99) that the request helpers advance, sets fixture entries
//! ([`TestBuilder::init`]) and checks the storage afterwards ([`TestBuilder::assert`],
//! [`TestBuilder::assert_lens`]), where an entry given without a value must be unchanged
//! (`!has_changed`: set by the test and neither rewritten nor deleted).
//!
//! Go dispatches a request to the server's handler named after its type by reflection; here the
//! [`TxnRequest`] trait maps each request type to its [`Transactions`] method. As in Go, every
//! call must return without a (transport) error: the harness unwraps the `Result`.

// Each test binary uses only part of the harness.
#![allow(dead_code)]

use kvserver::storage::mem::MemStorage;
use kvserver::transaction::codec::encode_key;
use kvserver::transaction::latches::every_write_latched;
use kvserver::transaction::Transactions;
use proto::kvrpcpb::{
    BatchRollbackRequest, BatchRollbackResponse, CheckTxnStatusRequest, CheckTxnStatusResponse,
    CommitRequest, CommitResponse, GetRequest, GetResponse, Mutation, Op, PrewriteRequest,
    PrewriteResponse, ResolveLockRequest, ResolveLockResponse, ScanRequest, ScanResponse,
};
use raftstore::engine::{CF_DEFAULT, CF_LOCK, CF_WRITE};
use tokio::runtime::Runtime;

/// The largest prewrite (keys and values) the commands accept; far above what any test sends.
const MAX_VALUE_SIZE: usize = 1 << 20;

/// A key/value pair of one column family, as the harness sets or checks it (Go's `kv`).
#[derive(Debug, Clone)]
pub struct Kv {
    /// The column family.
    pub cf: &'static str,
    /// The user key (not encoded, no timestamp).
    pub key: Vec<u8>,
    /// The timestamp of a `default` or `write` key; 0 means the builder's previous timestamp.
    /// Ignored for `lock` keys, which are raw user keys.
    pub ts: u64,
    /// The value; None in a check means "unchanged" (in a fixture, an empty value).
    pub value: Option<Vec<u8>>,
}

/// A pair with a value (`ts` 0: the builder's previous timestamp).
pub fn kv(cf: &'static str, key: &[u8], ts: u64, value: &[u8]) -> Kv {
    Kv {
        cf,
        key: key.to_vec(),
        ts,
        value: Some(value.to_vec()),
    }
}

/// A pair without a value: in [`TestBuilder::assert`], the entry must be unchanged (`ts` 0: the
/// builder's previous timestamp).
pub fn unchanged(cf: &'static str, key: &[u8], ts: u64) -> Kv {
    Kv {
        cf,
        key: key.to_vec(),
        ts,
        value: None,
    }
}

/// Runs commands over a fresh [`MemStorage`] and checks what they stored (Go's `testBuilder`).
pub struct TestBuilder {
    rt: Runtime,
    txns: Transactions<MemStorage>,
    /// Always the storage under `txns` (a clone shares the data).
    mem: MemStorage,
    /// The last timestamp handed out.
    prev_ts: u64,
}

/// A builder over empty storage, with TinyKV's latch validation installed (every written key
/// must be latched) and the previous timestamp at 99 (Go's `newBuilder`).
pub fn new_builder() -> TestBuilder {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mem = MemStorage::new();
    let txns = Transactions::new(mem.clone(), MAX_VALUE_SIZE);
    txns.latches().set_validation(every_write_latched());
    TestBuilder {
        rt,
        txns,
        mem,
        prev_ts: 99,
    }
}

/// A request the harness can run: the [`Transactions`] command of its type, which must
/// return Ok (Go's reflective dispatch to the `Kv*` handler).
pub trait TxnRequest: Sized {
    /// The command's response.
    type Response;

    /// Runs the command on `builder`'s runtime; panics if it returns an error.
    fn run(self, builder: &TestBuilder) -> Self::Response;
}

/// Implements [`TxnRequest`] for a request type with the [`Transactions`] method that answers
/// it.
macro_rules! txn_request {
    ($req:ty, $resp:ty, $method:ident) => {
        impl TxnRequest for $req {
            type Response = $resp;

            fn run(self, builder: &TestBuilder) -> $resp {
                builder
                    .rt
                    .block_on(builder.txns.$method(self))
                    .unwrap_or_else(|e| {
                        panic!(concat!(stringify!($method), " returned an error: {:?}"), e)
                    })
            }
        }
    };
}

txn_request!(GetRequest, GetResponse, get);
txn_request!(PrewriteRequest, PrewriteResponse, prewrite);
txn_request!(CommitRequest, CommitResponse, commit);
txn_request!(ScanRequest, ScanResponse, scan);
txn_request!(
    CheckTxnStatusRequest,
    CheckTxnStatusResponse,
    check_txn_status
);
txn_request!(BatchRollbackRequest, BatchRollbackResponse, batch_rollback);
txn_request!(ResolveLockRequest, ResolveLockResponse, resolve_lock);

impl TestBuilder {
    /// The storage key of `kv`: `default`/`write` keys encoded with its ts (or the previous
    /// ts when 0), `lock` keys raw.
    fn storage_key(&self, kv: &Kv) -> Vec<u8> {
        let ts = if kv.ts == 0 { self.prev_ts } else { kv.ts };
        match kv.cf {
            CF_DEFAULT | CF_WRITE => encode_key(&kv.key, ts),
            CF_LOCK => kv.key.clone(),
            other => panic!("no column family {other:?} in the harness"),
        }
    }

    /// Sets `kvs` in the storage as fixture entries (Go's `init`); a pair without a value is
    /// set to an empty value (Go's `nil`).
    pub fn init(&self, kvs: &[Kv]) {
        for kv in kvs {
            let key = self.storage_key(kv);
            self.mem
                .set(kv.cf, key, kv.value.clone().unwrap_or_default());
        }
    }

    /// Runs `reqs` one after the other and returns their responses (Go's `runRequests`).
    pub fn run_requests<R: TxnRequest>(&self, reqs: Vec<R>) -> Vec<R::Response> {
        reqs.into_iter().map(|r| r.run(self)).collect()
    }

    /// Runs one request and returns its response (Go's `runOneRequest`).
    pub fn run_one_request<R: TxnRequest>(&self, req: R) -> R::Response {
        req.run(self)
    }

    /// Advances the timestamp and returns it.
    pub fn next_ts(&mut self) -> u64 {
        self.prev_ts += 1;
        self.prev_ts
    }

    /// The low byte of the previous timestamp (used inside expected byte strings).
    pub fn ts(&self) -> u8 {
        self.prev_ts as u8
    }

    /// Checks each of `kvs`: a given value must equal the stored bytes; no value means the entry
    /// is unchanged since the test set it (Go's `assert`).
    pub fn assert(&self, kvs: &[Kv]) {
        for kv in kvs {
            let key = self.storage_key(kv);
            match &kv.value {
                None => assert!(
                    !self.mem.has_changed(kv.cf, &key),
                    "{kv:?} changed (stored: {:?})",
                    self.mem.get(kv.cf, &key)
                ),
                Some(v) => assert_eq!(
                    self.mem.get(kv.cf, &key).as_ref(),
                    Some(v),
                    "the stored value of {kv:?}"
                ),
            }
        }
    }

    /// Checks how many entries `cf` holds (Go's `assertLen`).
    pub fn assert_len(&self, cf: &str, size: usize) {
        assert_eq!(self.mem.len(cf), size, "entries in column family {cf}");
    }

    /// Checks how many entries `default`, `lock` and `write` hold (Go's `assertLens`).
    pub fn assert_lens(&self, def: usize, lock: usize, write: usize) {
        self.assert_len(CF_DEFAULT, def);
        self.assert_len(CF_LOCK, lock);
        self.assert_len(CF_WRITE, write);
    }

    /// A prewrite of `muts` with primary `[1]`, at the next timestamp, ttl 0.
    pub fn prewrite_request(&mut self, muts: Vec<Mutation>) -> PrewriteRequest {
        PrewriteRequest {
            primary_lock: vec![1],
            start_version: self.next_ts(),
            mutations: muts,
            ..Default::default()
        }
    }

    /// A commit of `keys` started at the next timestamp, committed 10 later.
    pub fn commit_request(&mut self, keys: &[&[u8]]) -> CommitRequest {
        let start_version = self.next_ts();
        CommitRequest {
            start_version,
            commit_version: start_version + 10,
            keys: keys.iter().map(|k| k.to_vec()).collect(),
            ..Default::default()
        }
    }

    /// A rollback of `keys` started at the next timestamp.
    pub fn rollback_request(&mut self, keys: &[&[u8]]) -> BatchRollbackRequest {
        BatchRollbackRequest {
            start_version: self.next_ts(),
            keys: keys.iter().map(|k| k.to_vec()).collect(),
            ..Default::default()
        }
    }

    /// A status check of `key`: advances the timestamp, then `lock_ts` = `5·2^40 + ts` and
    /// `current_ts` = `6·2^40 + ts` (physical 20 971 520 and 25 165 824 ms).
    pub fn check_txn_status_request(&mut self, key: &[u8]) -> CheckTxnStatusRequest {
        self.next_ts();
        let ts = self.ts();
        CheckTxnStatusRequest {
            lock_ts: u64::from_be_bytes([0, 0, 5, 0, 0, 0, 0, ts]),
            current_ts: u64::from_be_bytes([0, 0, 6, 0, 0, 0, 0, ts]),
            primary_key: key.to_vec(),
            ..Default::default()
        }
    }

    /// A scan from `start_key` of at most `limit` pairs, at the next timestamp.
    pub fn scan_request(&mut self, start_key: &[u8], limit: u32) -> ScanRequest {
        ScanRequest {
            start_key: start_key.to_vec(),
            limit,
            version: self.next_ts(),
            ..Default::default()
        }
    }
}

/// A mutation of the one-byte key `[key]`.
pub fn mutation(key: u8, value: &[u8], op: Op) -> Mutation {
    Mutation {
        key: vec![key],
        value: value.to_vec(),
        op: op as i32,
    }
}

/// A resolve of the transaction started at `start_ts`: commit at `commit_ts`, or roll back
/// when it is 0.
pub fn resolve_request(start_ts: u64, commit_ts: u64) -> ResolveLockRequest {
    ResolveLockRequest {
        start_version: start_ts,
        commit_version: commit_ts,
        ..Default::default()
    }
}
