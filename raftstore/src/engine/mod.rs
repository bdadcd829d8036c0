//! The storage engine abstraction shared by both engines of a store (TinyKV's
//! `kv/util/engine_util/engines.go` bundles the same two), with durability explicit.
//!
//! A store owns two engines, bundled as [`Engines`]:
//! - the **kv engine** uses every column family of [`ALL_CFS`]: the data CFs [`CF_DEFAULT`],
//!   [`CF_LOCK`] and [`CF_WRITE`] hold user keys as they are, and [`CF_RAFT`] holds the meta keys of
//!   [`crate::keys`] (store ident, region state, apply state). Keeping meta keys in a CF of their own
//!   means a user key can never collide with a meta key, whatever its bytes;
//! - the **raft engine** uses only [`CF_DEFAULT`], for raft log entries and `RaftLocalState`.
//!
//! Two implementations exist: [`RocksEngine`] (production) and [`MemEngine`] (the deterministic
//! simulator; it loses unsynced writes on a simulated crash). Writes are expressed as a
//! [`WriteBatch`], plain data built without touching an engine and applied atomically by
//! [`Engine::write`]; durability is explicit: a write is only guaranteed to survive a crash once it
//! was written with `sync = true` or followed by [`Engine::sync`].

mod cf;
mod errors;
pub mod mem;
pub mod rocks;
mod write_batch;

pub use cf::{ALL_CFS, CF_DEFAULT, CF_LOCK, CF_RAFT, CF_WRITE, DATA_CFS};
pub use errors::{EngineError, Result};
pub use mem::{MemEngine, MemSnapshot};
pub use rocks::{RocksEngine, RocksSnapshot};
pub use write_batch::{WriteBatch, WriteOp};

/// Decodes a stored protobuf value; a malformed value is an [`EngineError::Codec`].
fn decode_msg<M: prost::Message + Default>(value: Option<Vec<u8>>) -> Result<Option<M>> {
    match value {
        Some(bytes) => Ok(Some(M::decode(bytes.as_slice())?)),
        None => Ok(None),
    }
}

/// The callback of a scan: called with each `(key, value)`, returns `Ok(true)` to go on, `Ok(false)`
/// to stop, or an error that stops the scan and is returned by it.
pub type ScanCallback<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// A key-value store with column families, atomic write batches, point-in-time snapshots and
/// explicit durability.
///
/// Cloning an engine is cheap and yields another handle to the same store.
pub trait Engine: Clone + Send + Sync + 'static {
    /// The owned, point-in-time view returned by [`Engine::snapshot`].
    type Snapshot: EngineSnapshot;

    /// Reads the value of `key` in column family `cf`; `None` when absent. An unknown column family
    /// is an error.
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Reads `key` in `cf` and decodes it as protobuf message `M`; `None` when absent, an
    /// [`EngineError::Codec`] when the stored bytes are not a valid `M`.
    fn get_msg_cf<M: prost::Message + Default>(&self, cf: &str, key: &[u8]) -> Result<Option<M>> {
        decode_msg(self.get_cf(cf, key)?)
    }

    /// Applies every write of `wb`, in order, atomically: after a crash either all of them are
    /// visible or none. With `sync`, the batch and every earlier write are durable when this returns;
    /// without it, they may be lost by a crash until the next synced write or [`Engine::sync`].
    /// A write to an unknown column family fails the whole batch.
    fn write(&self, wb: &WriteBatch, sync: bool) -> Result<()>;

    /// Calls `f(key, value)` for every key of `cf` in `[start, end)`, in ascending key order; an
    /// empty `end` means no upper bound. Stops early when `f` returns `Ok(false)`, and returns the
    /// first error `f` returns. The scan sees a consistent view: writes that happen while it runs
    /// are not seen (so `f` may itself read or write the engine).
    fn scan_cf(&self, cf: &str, start: &[u8], end: &[u8], f: &mut ScanCallback<'_>) -> Result<()>;

    /// A consistent view of the whole engine as of now. It is owned (no borrow of `self`), can be
    /// sent to another thread, and keeps showing the same data however the engine changes later.
    fn snapshot(&self) -> Self::Snapshot;

    /// Makes every earlier write durable (an fsync of the write-ahead log).
    fn sync(&self) -> Result<()>;
}

/// A point-in-time, read-only view of an [`Engine`], from [`Engine::snapshot`].
pub trait EngineSnapshot: Send + Sync + 'static {
    /// Reads the value of `key` in column family `cf` as of the snapshot.
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Reads `key` in `cf` as of the snapshot and decodes it as protobuf message `M`.
    fn get_msg_cf<M: prost::Message + Default>(&self, cf: &str, key: &[u8]) -> Result<Option<M>>
    where
        Self: Sized,
    {
        decode_msg(self.get_cf(cf, key)?)
    }

    /// Calls `f(key, value)` for the keys of `cf` in `[start, end)` as of the snapshot, with the
    /// same semantics as [`Engine::scan_cf`].
    fn scan_cf(&self, cf: &str, start: &[u8], end: &[u8], f: &mut ScanCallback<'_>) -> Result<()>;
}

/// A consistent read view of the kv engine, object-safe so callbacks need no engine type.
pub trait KvSnapshot: Send + Sync {
    /// The value of `key` in `cf`, if any.
    fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Visits the keys of `cf` in `[start, end)` in order (empty `end`: unbounded) until `f`
    /// returns false.
    fn scan(&self, cf: &str, start: &[u8], end: &[u8], f: &mut ScanCallback<'_>) -> Result<()>;
}

impl<S: EngineSnapshot> KvSnapshot for S {
    fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_cf(cf, key)
    }

    fn scan(&self, cf: &str, start: &[u8], end: &[u8], f: &mut ScanCallback<'_>) -> Result<()> {
        self.scan_cf(cf, start, end, f)
    }
}

/// The two engines of a store: `kv` (data CFs and region/apply state) and `raft` (raft log and
/// raft state), as TinyKV's `kv/util/engine_util/engines.go`.
#[derive(Debug, Clone)]
pub struct Engines<K: Engine, R: Engine> {
    /// The kv engine: [`ALL_CFS`].
    pub kv: K,
    /// The raft engine: [`CF_DEFAULT`] only.
    pub raft: R,
}

impl<K: Engine, R: Engine> Engines<K, R> {
    /// Bundles a kv engine and a raft engine.
    pub fn new(kv: K, raft: R) -> Self {
        Self { kv, raft }
    }
}

/// The behaviour every [`Engine`] must show, run by the tests of each implementation.
#[cfg(test)]
pub(crate) mod suite {
    use super::*;
    use proto::raft_serverpb::{RaftLocalState, RegionLocalState};

    fn get<E: Engine>(e: &E, cf: &str, key: &[u8]) -> Option<Vec<u8>> {
        e.get_cf(cf, key).unwrap()
    }

    /// Collects every pair that `scan` passes to its callback.
    pub fn scan_all(
        scan: impl FnOnce(&mut ScanCallback<'_>) -> Result<()>,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        scan(&mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })
        .unwrap();
        out
    }

    fn scan<E: Engine>(e: &E, cf: &str, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        scan_all(|f| e.scan_cf(cf, start, end, f))
    }

    fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
        (k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    /// Put, get, delete and delete_range in every column family, kept apart per CF.
    pub fn write_get_delete<E: Engine>(e: &E) {
        for (i, cf) in ALL_CFS.iter().enumerate() {
            let mut wb = WriteBatch::new();
            wb.put_cf(cf, &b"a"[..], format!("a{i}"));
            wb.put_cf(cf, &b"b"[..], format!("b{i}"));
            wb.put_cf(cf, &b"c"[..], format!("c{i}"));
            wb.put_cf(cf, &b"d"[..], format!("d{i}"));
            e.write(&wb, false).unwrap();
        }
        for (i, cf) in ALL_CFS.iter().enumerate() {
            assert_eq!(get(e, cf, b"a"), Some(format!("a{i}").into_bytes()));
            assert_eq!(get(e, cf, b"zz"), None);
        }

        let mut wb = WriteBatch::new();
        wb.delete_cf(CF_LOCK, &b"a"[..]);
        wb.delete_cf(CF_LOCK, &b"missing"[..]);
        wb.delete_range_cf(CF_WRITE, &b"b"[..], &b"d"[..]);
        e.write(&wb, true).unwrap();
        assert_eq!(get(e, CF_LOCK, b"a"), None);
        assert_eq!(get(e, CF_LOCK, b"b"), Some(b"b1".to_vec()));
        assert_eq!(get(e, CF_DEFAULT, b"a"), Some(b"a0".to_vec()));
        assert_eq!(
            scan(e, CF_WRITE, b"", b""),
            vec![kv("a", "a2"), kv("d", "d2")],
            "delete_range is end-exclusive"
        );
        assert_eq!(get(e, CF_DEFAULT, b"c"), Some(b"c0".to_vec()));

        // An empty range deletes nothing; an empty end deletes to the end of the CF.
        let mut wb = WriteBatch::new();
        wb.delete_range_cf(CF_RAFT, &b"c"[..], &b"c"[..]);
        wb.delete_range_cf(CF_RAFT, &b"c"[..], &b"a"[..]);
        e.write(&wb, false).unwrap();
        assert_eq!(scan(e, CF_RAFT, b"", b"").len(), 4);
        let mut wb = WriteBatch::new();
        wb.delete_range_cf(CF_RAFT, &b"b"[..], &b""[..]);
        e.write(&wb, false).unwrap();
        assert_eq!(scan(e, CF_RAFT, b"", b""), vec![kv("a", "a3")]);

        // Protobuf values round trip; garbage is a typed decode error.
        let state = RaftLocalState {
            last_index: 7,
            last_term: 3,
            ..Default::default()
        };
        let mut wb = WriteBatch::new();
        wb.put_msg_cf(CF_RAFT, &b"state"[..], &state);
        wb.put_cf(CF_RAFT, &b"bad"[..], vec![0xFF; 3]);
        e.write(&wb, false).unwrap();
        assert_eq!(
            e.get_msg_cf::<RaftLocalState>(CF_RAFT, b"state").unwrap(),
            Some(state)
        );
        assert_eq!(
            e.get_msg_cf::<RaftLocalState>(CF_RAFT, b"none").unwrap(),
            None
        );
        assert!(matches!(
            e.get_msg_cf::<RegionLocalState>(CF_RAFT, b"bad"),
            Err(EngineError::Codec(_))
        ));

        // Unknown column families are errors.
        assert!(e.get_cf("nope", b"a").is_err());
        assert!(e.scan_cf("nope", b"", b"", &mut |_, _| Ok(true)).is_err());
    }

    /// Later writes of the same key in one batch win; a batch with a bad op applies nothing.
    pub fn atomic_ordered_batch<E: Engine>(e: &E) {
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, &b"k"[..], &b"1"[..]);
        wb.put_cf(CF_DEFAULT, &b"k"[..], &b"2"[..]);
        wb.put_cf(CF_DEFAULT, &b"gone"[..], &b"x"[..]);
        wb.delete_cf(CF_DEFAULT, &b"gone"[..]);
        wb.delete_range_cf(CF_DEFAULT, &b"r"[..], &b"s"[..]);
        wb.put_cf(CF_DEFAULT, &b"r1"[..], &b"after range delete"[..]);
        e.write(&wb, false).unwrap();
        assert_eq!(get(e, CF_DEFAULT, b"k"), Some(b"2".to_vec()));
        assert_eq!(get(e, CF_DEFAULT, b"gone"), None);
        assert_eq!(
            get(e, CF_DEFAULT, b"r1"),
            Some(b"after range delete".to_vec())
        );

        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, &b"k"[..], &b"3"[..]);
        wb.put_cf(CF_DEFAULT, &b"new"[..], &b"v"[..]);
        wb.put_cf("no-such-cf", &b"k"[..], &b"v"[..]);
        assert!(e.write(&wb, true).is_err());
        assert_eq!(get(e, CF_DEFAULT, b"k"), Some(b"2".to_vec()));
        assert_eq!(get(e, CF_DEFAULT, b"new"), None);

        e.write(&WriteBatch::new(), true).unwrap();
    }

    /// Scans respect `[start, end)`, an unbounded empty `end`, ascending order and early stop.
    pub fn scan_bounds<E: Engine>(e: &E) {
        let mut wb = WriteBatch::new();
        for k in ["k5", "k1", "k3", "k2", "k4"] {
            wb.put_cf(CF_WRITE, k, format!("v{k}"));
        }
        wb.put_cf(CF_DEFAULT, &b"k0"[..], &b"other cf"[..]);
        wb.put_cf(CF_WRITE, vec![0xFF, 0xFF], &b"max"[..]);
        e.write(&wb, false).unwrap();

        let keys = |start: &[u8], end: &[u8]| -> Vec<Vec<u8>> {
            scan(e, CF_WRITE, start, end)
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        let b = |s: &str| s.as_bytes().to_vec();
        assert_eq!(keys(b"k2", b"k4"), vec![b("k2"), b("k3")]);
        assert_eq!(keys(b"k2", b"k4\0"), vec![b("k2"), b("k3"), b("k4")]);
        assert_eq!(keys(b"k25", b"k4"), vec![b("k3")]);
        assert_eq!(keys(b"k4", b""), vec![b("k4"), b("k5"), vec![0xFF, 0xFF]]);
        assert_eq!(keys(b"", b"k2"), vec![b("k1")]);
        assert_eq!(keys(b"k3", b"k3"), Vec::<Vec<u8>>::new());
        assert_eq!(keys(b"k4", b"k2"), Vec::<Vec<u8>>::new());
        assert_eq!(scan(e, CF_WRITE, b"k1", b"k2"), vec![kv("k1", "vk1")]);

        // Early stop after two keys.
        let mut seen = Vec::new();
        e.scan_cf(CF_WRITE, b"", b"", &mut |k, _| {
            seen.push(k.to_vec());
            Ok(seen.len() < 2)
        })
        .unwrap();
        assert_eq!(seen, vec![b("k1"), b("k2")]);

        // An error from the callback stops the scan and is returned.
        let mut calls = 0;
        let err = e
            .scan_cf(CF_WRITE, b"", b"", &mut |_, _| {
                calls += 1;
                Err(EngineError::Other("stop".into()))
            })
            .unwrap_err();
        assert!(matches!(err, EngineError::Other(ref m) if m == "stop"));
        assert_eq!(calls, 1);

        // The callback may write to the engine; the running scan does not see it.
        let mut seen = 0;
        e.scan_cf(CF_WRITE, b"k1", b"k3", &mut |k, _| {
            seen += 1;
            let mut wb = WriteBatch::new();
            wb.put_cf(CF_WRITE, [k, &b"x"[..]].concat(), &b""[..]);
            e.write(&wb, false)?;
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen, 2);
        assert_eq!(get(e, CF_WRITE, b"k1x"), Some(Vec::new()));
    }

    /// A snapshot does not see writes made after it, also when read from another thread.
    pub fn snapshot_isolation<E: Engine>(e: &E) {
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, &b"a"[..], &b"1"[..]);
        wb.put_cf(CF_DEFAULT, &b"b"[..], &b"1"[..]);
        wb.put_cf(CF_RAFT, &b"m"[..], &b"1"[..]);
        e.write(&wb, false).unwrap();

        let snap = e.snapshot();

        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, &b"a"[..], &b"2"[..]);
        wb.delete_cf(CF_DEFAULT, &b"b"[..]);
        wb.put_cf(CF_DEFAULT, &b"c"[..], &b"2"[..]);
        wb.delete_range_cf(CF_RAFT, &b""[..], &b""[..]);
        e.write(&wb, true).unwrap();
        assert_eq!(get(e, CF_DEFAULT, b"a"), Some(b"2".to_vec()));
        assert_eq!(get(e, CF_RAFT, b"m"), None);

        let check = move || {
            assert_eq!(snap.get_cf(CF_DEFAULT, b"a").unwrap(), Some(b"1".to_vec()));
            assert_eq!(snap.get_cf(CF_DEFAULT, b"b").unwrap(), Some(b"1".to_vec()));
            assert_eq!(snap.get_cf(CF_DEFAULT, b"c").unwrap(), None);
            assert_eq!(snap.get_cf(CF_RAFT, b"m").unwrap(), Some(b"1".to_vec()));
            assert_eq!(
                scan_all(|f| snap.scan_cf(CF_DEFAULT, b"", b"", f)),
                vec![kv("a", "1"), kv("b", "1")]
            );
            assert!(snap.get_cf("nope", b"a").is_err());
            snap
        };
        let snap = std::thread::spawn(check).join().unwrap();

        // The engine keeps changing while the snapshot lives on another thread.
        let writer = e.clone();
        let reader = std::thread::spawn(move || {
            for _ in 0..100 {
                assert_eq!(snap.get_cf(CF_DEFAULT, b"a").unwrap(), Some(b"1".to_vec()));
                let n = scan_all(|f| snap.scan_cf(CF_DEFAULT, b"", b"", f)).len();
                assert_eq!(n, 2);
            }
            snap
        });
        for i in 0..100u32 {
            let mut wb = WriteBatch::new();
            wb.put_cf(CF_DEFAULT, &b"a"[..], i.to_be_bytes());
            wb.put_cf(CF_DEFAULT, format!("n{i}"), &b""[..]);
            writer.write(&wb, false).unwrap();
        }
        let snap = reader.join().unwrap();
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, &b"a"[..], &b"3"[..]);
        e.write(&wb, false).unwrap();
        assert_eq!(snap.get_cf(CF_DEFAULT, b"a").unwrap(), Some(b"1".to_vec()));
        // A snapshot taken now sees everything.
        let now = e.snapshot();
        assert_eq!(now.get_cf(CF_DEFAULT, b"a").unwrap(), Some(b"3".to_vec()));
        assert_eq!(now.get_cf(CF_DEFAULT, b"n99").unwrap(), Some(Vec::new()));
        drop(snap);
        drop(now);
    }
}
