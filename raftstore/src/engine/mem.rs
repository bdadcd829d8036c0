//! [`MemEngine`]: the in-memory engine of the deterministic simulator, with crash semantics.
//!
//! It keeps two versions of every column family: the **current** view, which every read sees, and
//! the **durable** view, which is what a crash leaves behind. An unsynced write changes only the
//! current view and is remembered; a synced write (or [`Engine::sync`]) replays the remembered
//! batches onto the durable view, in order, so syncing costs the size of what was written since the
//! last sync, not a copy of the whole store. [`MemEngine::crash`] throws away every unsynced write.
//! This is how the simulator proves that the store syncs whatever must survive a crash: nothing is
//! durable unless it was written synced or synced afterwards.
//!
//! Each column family is a persistent B-tree (`imbl::OrdMap`) of shared byte strings:
//! [`Engine::snapshot`] clones the maps in O(1) each, and a write while a snapshot is alive copies only
//! the O(log n) nodes on its path (an earlier `Arc<BTreeMap>` copy-on-write design copied the whole
//! map on the first write after every snapshot, which dominated the simulated suites' run time).
//! Everything is ordered, so runs are deterministic.

use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Engine, EngineError, EngineSnapshot, Result, ScanCallback, WriteBatch, WriteOp};

/// A key or value, shared between the maps and their snapshots without copying.
type Bytes = Arc<[u8]>;

/// The contents of one column family.
type CfMap = imbl::OrdMap<Bytes, Bytes>;

/// Index of `cf` in `names`, or an error naming the unknown column family.
fn cf_index(names: &[String], cf: &str) -> Result<usize> {
    names
        .iter()
        .position(|n| n == cf)
        .ok_or_else(|| EngineError::Other(format!("unknown column family {cf:?}")))
}

/// One write of a batch, resolved for the maps: the index of its column family, and its key and
/// value already in the shared form the maps hold. A batch is converted once, then applied to the
/// current view and later (on a sync) to the durable view without copying any byte again.
enum MemOp {
    Put(usize, Bytes, Bytes),
    Delete(usize, Bytes),
    DeleteRange(usize, Vec<u8>, Vec<u8>),
}

/// Converts `wb` for the maps; fails on the first unknown column family, before anything changed.
fn resolve(names: &[String], wb: &WriteBatch) -> Result<Vec<MemOp>> {
    wb.ops()
        .iter()
        .map(|op| {
            let i = cf_index(names, op.cf())?;
            Ok(match op {
                WriteOp::Put { key, value, .. } => MemOp::Put(
                    i,
                    Bytes::from(key.as_slice()),
                    Bytes::from(value.as_slice()),
                ),
                WriteOp::Delete { key, .. } => MemOp::Delete(i, Bytes::from(key.as_slice())),
                WriteOp::DeleteRange { start, end, .. } => {
                    MemOp::DeleteRange(i, start.clone(), end.clone())
                }
            })
        })
        .collect()
}

/// Applies the writes of `batch` in order to `maps`.
fn apply(maps: &mut [CfMap], batch: &[MemOp]) {
    for op in batch {
        match op {
            MemOp::Put(i, key, value) => {
                maps[*i].insert(key.clone(), value.clone());
            }
            MemOp::Delete(i, key) => {
                let map = &mut maps[*i];
                // Do not copy nodes shared with a snapshot for a key that is not there.
                if map.contains_key(&**key) {
                    map.remove(&**key);
                }
            }
            MemOp::DeleteRange(i, start, end) => {
                let map = &mut maps[*i];
                let doomed: Vec<Bytes> = range(map, start, end).map(|(k, _)| k.clone()).collect();
                for k in &doomed {
                    map.remove(k);
                }
            }
        }
    }
}

/// The entries of `map` in `[start, end)`; an empty `end` is unbounded, `start >= end` is empty.
fn range<'a>(
    map: &'a CfMap,
    start: &[u8],
    end: &[u8],
) -> impl Iterator<Item = (&'a Bytes, &'a Bytes)> + 'a {
    let empty = !end.is_empty() && start >= end;
    let upper = if end.is_empty() || empty {
        Bound::Unbounded
    } else {
        Bound::Excluded(end)
    };
    // An inverted range may panic in `range`, so an empty range is answered by an empty slice.
    let start = if empty { end } else { start };
    map.range::<_, [u8]>((Bound::Included(start), upper))
        .take(if empty { 0 } else { usize::MAX })
}

/// Calls `f` on the entries of `map` in `[start, end)` until it returns `Ok(false)` or an error.
fn scan_map(map: &CfMap, start: &[u8], end: &[u8], f: &mut ScanCallback<'_>) -> Result<()> {
    for (k, v) in range(map, start, end) {
        if !f(k, v)? {
            break;
        }
    }
    Ok(())
}

/// The mutable state shared by every clone of a [`MemEngine`].
struct State {
    /// What reads see: durable state plus every unsynced write.
    current: Vec<CfMap>,
    /// What survives a crash.
    durable: Vec<CfMap>,
    /// Batches applied to `current` but not yet to `durable`, oldest first.
    unsynced: Vec<Vec<MemOp>>,
    /// Number of syncs: synced writes plus calls to [`Engine::sync`].
    sync_count: u64,
}

impl State {
    /// Replays the unsynced batches onto the durable view and counts one sync.
    fn sync(&mut self) {
        for batch in std::mem::take(&mut self.unsynced) {
            apply(&mut self.durable, &batch);
        }
        self.sync_count += 1;
    }
}

/// An in-memory [`Engine`] that loses unsynced writes on [`MemEngine::crash`].
///
/// Clones share the same state, like clones of a RocksDB handle.
#[derive(Clone)]
pub struct MemEngine {
    names: Arc<[String]>,
    state: Arc<Mutex<State>>,
}

impl MemEngine {
    /// An empty engine with the given column families.
    pub fn new(cfs: &[&str]) -> Self {
        let empty = || cfs.iter().map(|_| CfMap::new()).collect::<Vec<_>>();
        MemEngine {
            names: cfs.iter().map(|cf| cf.to_string()).collect(),
            state: Arc::new(Mutex::new(State {
                current: empty(),
                durable: empty(),
                unsynced: Vec::new(),
                sync_count: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied batch behind that matters to
        // the tests that caught it, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Simulates a crash of the machine: every write that was not synced is lost, and the engine
    /// continues from its durable state. Snapshots taken earlier are unaffected.
    pub fn crash(&self) {
        let mut st = self.lock();
        st.current = st.durable.clone();
        st.unsynced.clear();
    }

    /// How many times the engine was synced (synced writes plus [`Engine::sync`] calls).
    pub fn sync_count(&self) -> u64 {
        self.lock().sync_count
    }

    /// How many batches were written since the last sync (those a crash would lose).
    pub fn unsynced_batches(&self) -> usize {
        self.lock().unsynced.len()
    }
}

impl fmt::Debug for MemEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemEngine")
            .field("cfs", &self.names)
            .finish_non_exhaustive()
    }
}

impl Engine for MemEngine {
    type Snapshot = MemSnapshot;

    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let i = cf_index(&self.names, cf)?;
        Ok(self.lock().current[i].get(key).map(|v| v.to_vec()))
    }

    fn write(&self, wb: &WriteBatch, sync: bool) -> Result<()> {
        // Check every column family before changing anything: the batch is all or nothing.
        let batch = resolve(&self.names, wb)?;
        let mut st = self.lock();
        apply(&mut st.current, &batch);
        if sync {
            // Earlier unsynced batches first, then this one: the durable view sees the same order.
            st.sync();
            apply(&mut st.durable, &batch);
        } else if !batch.is_empty() {
            st.unsynced.push(batch);
        }
        Ok(())
    }

    fn scan_cf(&self, cf: &str, start: &[u8], end: &[u8], f: &mut ScanCallback<'_>) -> Result<()> {
        // Scan a snapshot, not under the lock: `f` may use the engine.
        let i = cf_index(&self.names, cf)?;
        let map = self.lock().current[i].clone();
        scan_map(&map, start, end, f)
    }

    fn snapshot(&self) -> MemSnapshot {
        MemSnapshot {
            names: Arc::clone(&self.names),
            maps: self.lock().current.clone(),
        }
    }

    fn sync(&self) -> Result<()> {
        self.lock().sync();
        Ok(())
    }
}

/// A point-in-time view of a [`MemEngine`]: its column family maps as they were, sharing their
/// unchanged nodes with the engine.
#[derive(Clone)]
pub struct MemSnapshot {
    names: Arc<[String]>,
    maps: Vec<CfMap>,
}

impl fmt::Debug for MemSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemSnapshot")
            .field("cfs", &self.names)
            .finish_non_exhaustive()
    }
}

impl EngineSnapshot for MemSnapshot {
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let i = cf_index(&self.names, cf)?;
        Ok(self.maps[i].get(key).map(|v| v.to_vec()))
    }

    fn scan_cf(&self, cf: &str, start: &[u8], end: &[u8], f: &mut ScanCallback<'_>) -> Result<()> {
        let i = cf_index(&self.names, cf)?;
        scan_map(&self.maps[i], start, end, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{suite, ALL_CFS, CF_DEFAULT, CF_RAFT};

    fn engine() -> MemEngine {
        MemEngine::new(&ALL_CFS)
    }

    fn put(e: &MemEngine, key: &str, value: &str, sync: bool) {
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, key, value);
        e.write(&wb, sync).unwrap();
    }

    fn get(e: &MemEngine, key: &str) -> Option<String> {
        e.get_cf(CF_DEFAULT, key.as_bytes())
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn write_get_delete() {
        suite::write_get_delete(&engine());
    }

    #[test]
    fn atomic_ordered_batch() {
        suite::atomic_ordered_batch(&engine());
    }

    #[test]
    fn scan_bounds() {
        suite::scan_bounds(&engine());
    }

    #[test]
    fn snapshot_isolation() {
        suite::snapshot_isolation(&engine());
    }

    #[test]
    fn crash_loses_unsynced_writes_and_keeps_synced_ones() {
        let e = engine();
        put(&e, "a", "synced", true);
        put(&e, "b", "unsynced", false);
        put(&e, "a", "overwritten, unsynced", false);
        let mut wb = WriteBatch::new();
        wb.delete_range_cf(CF_DEFAULT, &b""[..], &b""[..]);
        wb.put_cf(CF_RAFT, &b"meta"[..], &b"unsynced"[..]);
        e.write(&wb, false).unwrap();
        assert_eq!(get(&e, "a"), None);
        assert_eq!(e.unsynced_batches(), 3);

        e.crash();
        assert_eq!(get(&e, "a").as_deref(), Some("synced"));
        assert_eq!(get(&e, "b"), None);
        assert_eq!(e.get_cf(CF_RAFT, b"meta").unwrap(), None);
        assert_eq!(e.unsynced_batches(), 0);

        // The engine goes on normally after a crash, and a second crash changes nothing more.
        put(&e, "c", "after crash", true);
        e.crash();
        assert_eq!(get(&e, "a").as_deref(), Some("synced"));
        assert_eq!(get(&e, "c").as_deref(), Some("after crash"));
    }

    #[test]
    fn synced_write_makes_earlier_unsynced_writes_durable() {
        let e = engine();
        put(&e, "a", "1", false);
        put(&e, "b", "1", false);
        put(&e, "a", "2", true);
        e.crash();
        assert_eq!(get(&e, "a").as_deref(), Some("2"));
        assert_eq!(get(&e, "b").as_deref(), Some("1"));
    }

    #[test]
    fn sync_makes_earlier_writes_durable_and_is_counted() {
        let e = engine();
        assert_eq!(e.sync_count(), 0);
        put(&e, "a", "1", false);
        let mut wb = WriteBatch::new();
        wb.delete_cf(CF_DEFAULT, &b"a"[..]);
        wb.put_cf(CF_DEFAULT, &b"b"[..], &b"2"[..]);
        e.write(&wb, false).unwrap();
        assert_eq!(e.sync_count(), 0);
        e.sync().unwrap();
        assert_eq!(e.sync_count(), 1);
        put(&e, "c", "lost", false);
        e.crash();
        assert_eq!(get(&e, "a"), None);
        assert_eq!(get(&e, "b").as_deref(), Some("2"));
        assert_eq!(get(&e, "c"), None);

        put(&e, "d", "1", true);
        e.write(&WriteBatch::new(), true).unwrap();
        assert_eq!(
            e.sync_count(),
            3,
            "every synced write counts, even an empty one"
        );
        // Clones share the counter and the data.
        let clone = e.clone();
        clone.sync().unwrap();
        assert_eq!(e.sync_count(), 4);
        assert_eq!(get(&clone, "d").as_deref(), Some("1"));
    }

    #[test]
    fn snapshot_survives_crash() {
        let e = engine();
        put(&e, "a", "synced", true);
        put(&e, "b", "unsynced", false);
        let snap = e.snapshot();
        e.crash();
        assert_eq!(get(&e, "b"), None);
        assert_eq!(
            snap.get_cf(CF_DEFAULT, b"a").unwrap(),
            Some(b"synced".to_vec())
        );
        assert_eq!(
            snap.get_cf(CF_DEFAULT, b"b").unwrap(),
            Some(b"unsynced".to_vec())
        );
        let all = suite::scan_all(|f| snap.scan_cf(CF_DEFAULT, b"", b"", f));
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn snapshot_is_unchanged_by_later_writes_and_deletes() {
        let e = engine();
        for i in 0..1000 {
            put(&e, &format!("k{i:04}"), "1", false);
        }
        let snap = e.snapshot();
        put(&e, "k0001", "2", false);
        let mut wb = WriteBatch::new();
        wb.delete_range_cf(CF_DEFAULT, &b"k0100"[..], &b"k0200"[..]);
        wb.delete_cf(CF_DEFAULT, &b"k0500"[..]);
        e.write(&wb, false).unwrap();
        assert_eq!(get(&e, "k0001").as_deref(), Some("2"));
        assert_eq!(get(&e, "k0150"), None);
        assert_eq!(
            snap.get_cf(CF_DEFAULT, b"k0001").unwrap(),
            Some(b"1".to_vec())
        );
        let all = suite::scan_all(|f| snap.scan_cf(CF_DEFAULT, b"", b"", f));
        assert_eq!(all.len(), 1000);
        let now = suite::scan_all(|f| e.scan_cf(CF_DEFAULT, b"", b"", f));
        assert_eq!(now.len(), 899);
    }
}
