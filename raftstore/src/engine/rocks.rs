//! [`RocksEngine`]: the production [`Engine`], over RocksDB (the `rocksdb` crate).
//!
//! One RocksDB instance per engine, one RocksDB column family per engine column family. Writes go
//! through RocksDB's write-ahead log, so an unsynced write survives a process crash but not a power
//! loss; a synced write (`WriteOptions::set_sync`) or [`Engine::sync`] fsyncs the WAL.
//!
//! Tuning (the same for the kv and the raft engine; both are small and write-heavy):
//! - `max_background_jobs = 2`: flushes and compactions must not compete with the raft poller and
//!   the apply work for the few cores a store has;
//! - 16 MiB write buffers per CF: a test cluster runs several stores in one process, each with two
//!   engines, so memtables are kept small; a raft engine does not need big ones either, since log
//!   entries are read back from the memtable soon after being written and then deleted by log GC;
//! - one 32 MiB block cache shared by all CFs of an engine (RocksDB's default is one per CF), with
//!   10-bit bloom filters to make point reads of absent keys cheap;
//! - LZ4 compression (fast; the only codec this build links);
//! - `bytes_per_sync = 1 MiB` so SST writes reach the disk gradually instead of in one burst that
//!   would stall a WAL fsync, and `max_total_wal_size = 128 MiB` so a rarely written CF cannot pin old
//!   WAL files forever;
//! - at most 4 info LOG files of 8 MiB;
//! - `recycle_log_file_num = 4`: obsolete WAL files are overwritten instead of new ones created,
//!   so a synced append usually does not grow the file and its fdatasync has no inode (size) to
//!   journal, which makes it markedly cheaper, alone and with three stores syncing at once (figures
//!   in docs/PERFORMANCE.md; RocksDB's default WAL recovery mode, point-in-time, reads the
//!   recyclable record format correctly);
//! - RocksDB's flush and compaction threads run at the lowest CPU priority (nice 19; the threads
//!   of the process-wide default `Env`, shared by every engine of the process): a flush of a full
//!   16 MiB memtable takes tens of milliseconds of CPU, and on a machine whose cores the stores
//!   share it would take them from the pollers in the middle of their rounds. At the lowest
//!   priority it runs in the time they leave (and when writes outrun it, RocksDB's memtable limit
//!   slows them down until it catches up). With 3 stores on 2 cores and 64 writing clients this
//!   lowered p99 at the same throughput (see docs/PERFORMANCE.md, "Background work").
//!
//! Synced appends are cheap by default: a synced write is one WAL append plus one fsync, and RocksDB
//! groups concurrent writers into one fsync. The store additionally group-commits a whole poll round
//! into one synced batch (the round in `store.rs`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::IntCounter;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options,
    ReadOptions, WriteOptions, DB,
};

use super::{Engine, EngineError, EngineSnapshot, Result, ScanCallback, WriteBatch, WriteOp};

/// Size of each column family's memtable.
const WRITE_BUFFER_SIZE: usize = 16 << 20;
/// Bytes a WAL file holds before its memtable fills and RocksDB switches to the next one, with
/// room to spare: the size for [`RocksEngine::preallocate_wal`] of an engine with one busy CF.
pub const WAL_FILE_BYTES: u64 = WRITE_BUFFER_SIZE as u64 * 5 / 4;
/// Block cache shared by the column families of one engine.
const BLOCK_CACHE_SIZE: usize = 32 << 20;

/// A [`Engine`] over a RocksDB database. Cloning shares the database.
#[derive(Clone)]
pub struct RocksEngine {
    db: Arc<DB>,
    path: Arc<PathBuf>,
    sync_count: Arc<AtomicU64>,
    /// A metric counting the syncs too (`RocksEngine::with_fsync_counter`).
    fsync_counter: Option<IntCounter>,
}

impl RocksEngine {
    /// Opens (creating the directory, the database and any missing column family) the database at
    /// `path` with column families `cfs`. Column families that exist on disk but are not in `cfs`
    /// are opened too (RocksDB requires it). Opening a directory that is already open, by this
    /// process or another one, fails with RocksDB's message about its `LOCK` file.
    pub fn open(path: impl AsRef<Path>, cfs: &[&str]) -> Result<Self> {
        let path = path.as_ref();
        std::fs::create_dir_all(path)?;
        let opts = db_options();
        let cache = Cache::new_lru_cache(BLOCK_CACHE_SIZE);

        let mut names: Vec<String> = cfs.iter().map(|cf| cf.to_string()).collect();
        if path.join("CURRENT").exists() {
            let existing = DB::list_cf(&opts, path).map_err(|e| open_error(path, e))?;
            for cf in existing {
                if !names.contains(&cf) {
                    names.push(cf);
                }
            }
        }
        let descriptors = names
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(name, cf_options(&cache)));
        let db =
            DB::open_cf_descriptors(&opts, path, descriptors).map_err(|e| open_error(path, e))?;
        Ok(RocksEngine {
            db: Arc::new(db),
            path: Arc::new(path.to_path_buf()),
            sync_count: Arc::new(AtomicU64::new(0)),
            fsync_counter: None,
        })
    }

    /// This engine, whose syncs (synced writes and [`Engine::sync`] calls, by the clones made
    /// from it afterwards too) also count in `counter`: a metric of `crate::metrics`.
    pub fn with_fsync_counter(mut self, counter: IntCounter) -> Self {
        self.fsync_counter = Some(counter);
        self
    }

    fn count_sync(&self) {
        self.sync_count.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = &self.fsync_counter {
            c.inc();
        }
    }

    /// The directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many times this engine (any clone of it) was synced: synced writes plus
    /// [`Engine::sync`] calls.
    pub fn sync_count(&self) -> u64 {
        self.sync_count.load(Ordering::Relaxed)
    }

    /// Makes the write-ahead log run in files that are already written to their full size, so
    /// that a synced append overwrites blocks on disk instead of growing the file: an
    /// `fdatasync` that extends a file must also write its inode, one that overwrites need not
    /// (the figures, alone and with three stores syncing at once, are in docs/PERFORMANCE.md).
    /// PostgreSQL zero-fills new WAL segments for the same reason. RocksDB does it by itself only once obsolete WAL files come back through
    /// `recycle_log_file_num`, which at a low write rate takes a minute or more after each start.
    ///
    /// Until `files` WAL files of at least `bytes` bytes exist and the newest (the one in use) is
    /// one of them, each round fills the current WAL up to `bytes` with a log-only record
    /// (`PutLogData`: in the WAL, never in a memtable, never replayed into the data), synced,
    /// and flushes the memtables so that the file becomes obsolete and RocksDB recycles it at the
    /// next switch. No data changes (a scratch key is written and deleted to make the memtable
    /// flushable). Returns the rounds it took; gives up after `files + 3` rounds, which leaves
    /// the engine correct, only slower to sync until RocksDB recycles files by itself.
    pub fn preallocate_wal(&self, bytes: u64, files: usize) -> Result<usize> {
        const CHUNK: usize = 1 << 20;
        const SCRATCH_KEY: &[u8] = b"\xfftinykv-wal-preallocate";
        let cf_names = DB::list_cf(&Options::default(), self.path.as_path())?;
        let filler = vec![0u8; CHUNK];
        for round in 0..files + 3 {
            let wals = wal_files(&self.path)?;
            let full = wals.iter().filter(|(_, size)| *size >= bytes).count();
            if full >= files && wals.last().is_some_and(|(_, size)| *size >= bytes) {
                return Ok(round);
            }
            // One chunk per write batch, so no more than a chunk is in memory at once.
            let mut missing = bytes.saturating_sub(wals.last().map_or(0, |(_, size)| *size));
            while missing > 0 {
                let n = missing.min(CHUNK as u64) as usize;
                let mut batch = rocksdb::WriteBatch::default();
                batch.put_log_data(&filler[..n]);
                self.db.write(batch)?;
                missing -= n as u64;
            }
            let mut batch = rocksdb::WriteBatch::default();
            batch.put(SCRATCH_KEY, b"");
            batch.delete(SCRATCH_KEY);
            let mut opts = WriteOptions::default();
            opts.set_sync(true);
            self.db.write_opt(batch, &opts)?;
            let mut flush = rocksdb::FlushOptions::default();
            flush.set_wait(true);
            for name in &cf_names {
                self.db.flush_cf_opt(cf_handle(&self.db, name)?, &flush)?;
            }
        }
        Ok(files + 3)
    }

    /// The underlying RocksDB handle, for what the [`Engine`] trait does not cover (properties,
    /// manual compaction, SST ingestion).
    pub fn raw(&self) -> &DB {
        &self.db
    }

    fn to_rocks_batch(&self, wb: &WriteBatch) -> Result<rocksdb::WriteBatch> {
        let mut batch = rocksdb::WriteBatch::default();
        // Largest key put so far in this batch, per CF: an unbounded range delete must cover it.
        let mut max_put: Vec<(&str, &[u8])> = Vec::new();
        for op in wb.ops() {
            let cf = cf_handle(&self.db, op.cf())?;
            match op {
                WriteOp::Put { key, value, .. } => {
                    batch.put_cf(cf, key, value);
                    match max_put.iter_mut().find(|(name, _)| *name == op.cf()) {
                        Some((_, max)) if *max >= key.as_slice() => {}
                        Some((_, max)) => *max = key.as_slice(),
                        None => max_put.push((op.cf(), key)),
                    }
                }
                WriteOp::Delete { key, .. } => batch.delete_cf(cf, key),
                WriteOp::DeleteRange { start, end, .. } if end.is_empty() => {
                    // RocksDB needs a finite end: one past the largest key of the CF, counting keys
                    // this batch put earlier. A key another thread writes between this scan and the
                    // write below may survive; each engine has a single writer in the store.
                    let mut it = self.db.raw_iterator_cf(cf);
                    it.seek_to_last();
                    it.status()?;
                    let in_db = it.key().map(<[u8]>::to_vec);
                    let in_batch = max_put
                        .iter()
                        .find(|(name, _)| *name == op.cf())
                        .map(|(_, k)| k.to_vec());
                    if let Some(last) = in_db.max(in_batch) {
                        if last.as_slice() >= start.as_slice() {
                            let mut end = last;
                            end.push(0);
                            batch.delete_range_cf(cf, start, &end);
                        }
                    }
                }
                WriteOp::DeleteRange { start, end, .. } => {
                    if start < end {
                        batch.delete_range_cf(cf, start, end);
                    }
                }
            }
        }
        Ok(batch)
    }
}

/// The WAL files (`NNNNNN.log`) in the database directory `dir` with their sizes, oldest
/// (lowest number) first: the last one is the WAL in use.
fn wal_files(dir: &Path) -> Result<Vec<(u64, u64)>> {
    let mut logs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        logs.push((number, entry.metadata()?.len()));
    }
    logs.sort_unstable();
    Ok(logs)
}

/// Options of the database (shared by all its column families where RocksDB allows).
fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    opts.set_bytes_per_sync(1 << 20);
    opts.set_max_total_wal_size(128 << 20);
    opts.set_keep_log_file_num(4);
    opts.set_max_log_file_size(8 << 20);
    opts.set_recycle_log_file_num(4);
    // `Env::new` is the process's default Env (not a new one), whose thread pools every engine
    // shares; it only fails when RocksDB cannot hand it out, and then the defaults stay.
    if let Ok(mut env) = rocksdb::Env::new() {
        env.lower_thread_pool_cpu_priority();
        env.lower_high_priority_thread_pool_cpu_priority();
        opts.set_env(&env);
    }
    opts
}

/// Options of each column family; `cache` is the engine's shared block cache.
fn cf_options(cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    let mut opts = Options::default();
    opts.set_write_buffer_size(WRITE_BUFFER_SIZE);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_block_based_table_factory(&table);
    opts
}

fn open_error(path: &Path, e: rocksdb::Error) -> EngineError {
    EngineError::Rocks(format!("open {}: {}", path.display(), e.into_string()))
}

fn cf_handle<'a>(db: &'a DB, cf: &str) -> Result<&'a ColumnFamily> {
    db.cf_handle(cf)
        .ok_or_else(|| EngineError::Other(format!("unknown column family {cf:?}")))
}

/// Scans `[start, end)` of `cf` (empty `end` = unbounded) with read options `opts` (which carry the
/// snapshot when reading one).
fn scan_cf(
    db: &DB,
    cf: &str,
    start: &[u8],
    end: &[u8],
    mut opts: ReadOptions,
    f: &mut ScanCallback<'_>,
) -> Result<()> {
    let cf = cf_handle(db, cf)?;
    if !end.is_empty() {
        if start >= end {
            return Ok(());
        }
        opts.set_iterate_upper_bound(end);
    }
    opts.set_iterate_lower_bound(start);
    // Without an explicit snapshot the iterator pins the state of the database at its creation,
    // so the scan is consistent either way.
    let mut it = db.raw_iterator_cf_opt(cf, opts);
    it.seek(start);
    while let Some((k, v)) = it.item() {
        if !f(k, v)? {
            return Ok(());
        }
        it.next();
    }
    Ok(it.status()?)
}

impl fmt::Debug for RocksEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksEngine")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Engine for RocksEngine {
    type Snapshot = RocksSnapshot;

    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(cf_handle(&self.db, cf)?, key)?)
    }

    fn write(&self, wb: &WriteBatch, sync: bool) -> Result<()> {
        if wb.is_empty() {
            return if sync { self.sync() } else { Ok(()) };
        }
        let batch = self.to_rocks_batch(wb)?;
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(batch, &opts)?;
        if sync {
            self.count_sync();
        }
        Ok(())
    }

    fn scan_cf(&self, cf: &str, start: &[u8], end: &[u8], f: &mut ScanCallback<'_>) -> Result<()> {
        scan_cf(&self.db, cf, start, end, ReadOptions::default(), f)
    }

    fn snapshot(&self) -> RocksSnapshot {
        let db = Arc::clone(&self.db);
        // SAFETY: the reference is to the `DB` inside the `Arc` allocation, which never moves and
        // lives as long as any `Arc` to it. The snapshot is stored in the same `RocksSnapshot` as a
        // clone of that `Arc`, in a field declared *before* it, so it is dropped (and released
        // through this reference) before the `Arc` is; nothing else can drop the `Arc` while the
        // `RocksSnapshot` exists. The `'static` lifetime never escapes: `RocksSnapshot` exposes
        // neither the snapshot nor the reference, and iterators made from them do not outlive the
        // method that makes them.
        let db_ref: &'static DB = unsafe { &*Arc::as_ptr(&db) };
        RocksSnapshot {
            snap: db_ref.snapshot(),
            db,
        }
    }

    fn sync(&self) -> Result<()> {
        // With automatic WAL flushing (the default) every write is already in the WAL file, and
        // `flush_wal(true)` fsyncs it.
        self.db.flush_wal(true)?;
        self.count_sync();
        Ok(())
    }
}

/// An owned, point-in-time view of a [`RocksEngine`]: a RocksDB snapshot plus the database handle
/// that keeps it valid. `Send + Sync`, usable from any thread while the engine keeps changing.
pub struct RocksSnapshot {
    // Field order matters: `snap` must be dropped (released) before `db`. See `Engine::snapshot`.
    snap: rocksdb::Snapshot<'static>,
    db: Arc<DB>,
}

impl RocksSnapshot {
    /// Read options that read as of this snapshot.
    fn read_options(&self) -> ReadOptions {
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&self.snap);
        opts
    }
}

impl fmt::Debug for RocksSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksSnapshot")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

impl EngineSnapshot for RocksSnapshot {
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let handle = cf_handle(&self.db, cf)?;
        Ok(self.db.get_cf_opt(handle, key, &self.read_options())?)
    }

    fn scan_cf(&self, cf: &str, start: &[u8], end: &[u8], f: &mut ScanCallback<'_>) -> Result<()> {
        scan_cf(&self.db, cf, start, end, self.read_options(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{suite, ALL_CFS, CF_DEFAULT, CF_RAFT};

    fn with_engine(test: impl FnOnce(&RocksEngine)) {
        let dir = tempfile::tempdir().unwrap();
        let e = RocksEngine::open(dir.path().join("kv"), &ALL_CFS).unwrap();
        test(&e);
    }

    #[test]
    fn write_get_delete() {
        with_engine(suite::write_get_delete);
    }

    #[test]
    fn atomic_ordered_batch() {
        with_engine(suite::atomic_ordered_batch);
    }

    #[test]
    fn scan_bounds() {
        with_engine(suite::scan_bounds);
    }

    #[test]
    fn snapshot_isolation() {
        with_engine(suite::snapshot_isolation);
    }

    #[test]
    fn snapshot_outlives_every_engine_handle() {
        let dir = tempfile::tempdir().unwrap();
        let e = RocksEngine::open(dir.path(), &[CF_DEFAULT]).unwrap();
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, &b"k"[..], &b"v"[..]);
        e.write(&wb, false).unwrap();
        let snap = e.snapshot();
        drop(e);
        let snap = std::thread::spawn(move || {
            assert_eq!(snap.get_cf(CF_DEFAULT, b"k").unwrap(), Some(b"v".to_vec()));
            snap
        })
        .join()
        .unwrap();
        // The database stays open (and locked) until the last snapshot is gone.
        assert!(RocksEngine::open(dir.path(), &[CF_DEFAULT]).is_err());
        drop(snap);
        RocksEngine::open(dir.path(), &[CF_DEFAULT]).unwrap();
    }

    #[test]
    fn unbounded_delete_range_covers_keys_put_earlier_in_the_batch() {
        with_engine(|e| {
            let mut wb = WriteBatch::new();
            wb.put_cf(CF_DEFAULT, &b"b"[..], &b"1"[..]);
            e.write(&wb, false).unwrap();
            let mut wb = WriteBatch::new();
            wb.put_cf(CF_DEFAULT, vec![0xFF; 4], &b"1"[..]);
            wb.put_cf(CF_DEFAULT, &b"c"[..], &b"1"[..]);
            wb.delete_range_cf(CF_DEFAULT, &b"a"[..], &b""[..]);
            wb.put_cf(CF_DEFAULT, &b"z"[..], &b"after"[..]);
            e.write(&wb, false).unwrap();
            let all = suite::scan_all(|f| e.scan_cf(CF_DEFAULT, b"", b"", f));
            assert_eq!(all, vec![(b"z".to_vec(), b"after".to_vec())]);
        });
    }

    #[test]
    fn reopen_keeps_synced_data_and_creates_missing_cfs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("raft");
        {
            let e = RocksEngine::open(&path, &[CF_DEFAULT]).unwrap();
            assert_eq!(e.path(), path.as_path());
            let mut wb = WriteBatch::new();
            wb.put_cf(CF_DEFAULT, &b"synced"[..], &b"1"[..]);
            e.write(&wb, true).unwrap();
            let mut wb = WriteBatch::new();
            wb.put_cf(CF_DEFAULT, &b"then synced"[..], &b"2"[..]);
            e.write(&wb, false).unwrap();
            e.sync().unwrap();
            assert_eq!(e.sync_count(), 2);
            assert_eq!(e.clone().sync_count(), 2);
        }
        // Reopen with one more CF: it is created, the old data is there.
        let e = RocksEngine::open(&path, &ALL_CFS).unwrap();
        assert_eq!(
            e.get_cf(CF_DEFAULT, b"synced").unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(
            e.get_cf(CF_DEFAULT, b"then synced").unwrap(),
            Some(b"2".to_vec())
        );
        assert_eq!(e.get_cf(CF_RAFT, b"synced").unwrap(), None);
        assert_eq!(e.sync_count(), 0);
        drop(e);
        // Reopen with fewer CFs than exist on disk: the others are opened anyway.
        let e = RocksEngine::open(&path, &[CF_DEFAULT]).unwrap();
        assert_eq!(e.get_cf(CF_RAFT, b"x").unwrap(), None);
    }

    #[test]
    fn metrics_fsync_counter_counts_synced_writes_and_syncs_of_every_clone() {
        let dir = tempfile::tempdir().unwrap();
        let counter = IntCounter::new("tinykv_test_fsyncs", "a test counter").unwrap();
        let e = RocksEngine::open(dir.path(), &[CF_DEFAULT])
            .unwrap()
            .with_fsync_counter(counter.clone());
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, &b"k"[..], &b"v"[..]);
        e.write(&wb, false).unwrap();
        assert_eq!(counter.get(), 0, "an unsynced write is no fsync");
        e.write(&wb, true).unwrap();
        e.clone().sync().unwrap();
        assert_eq!(counter.get(), 2);
        assert_eq!(e.sync_count(), 2);
    }

    #[test]
    fn second_open_of_an_open_dir_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let first = RocksEngine::open(dir.path(), &ALL_CFS).unwrap();
        let err = RocksEngine::open(dir.path(), &ALL_CFS).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, EngineError::Rocks(_)), "{msg}");
        assert!(msg.contains("LOCK"), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        // Clones share the one open database; dropping all of them releases the lock.
        let clone = first.clone();
        drop(first);
        assert!(RocksEngine::open(dir.path(), &ALL_CFS).is_err());
        drop(clone);
        RocksEngine::open(dir.path(), &ALL_CFS).unwrap();
    }

    #[test]
    fn preallocated_wal_is_overwritten_not_grown() {
        const MIB: u64 = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft");
        {
            let e = RocksEngine::open(&path, &[CF_DEFAULT]).unwrap();
            let mut wb = WriteBatch::new();
            wb.put_cf(CF_DEFAULT, &b"before"[..], &b"1"[..]);
            e.write(&wb, true).unwrap();
            let rounds = e.preallocate_wal(MIB, 2).unwrap();
            assert!((1..5).contains(&rounds), "took {rounds} rounds");
            let wals = wal_files(&path).unwrap();
            assert!(
                wals.iter().filter(|(_, size)| *size >= MIB).count() >= 2,
                "{wals:?}"
            );
            let (in_use, size) = *wals.last().unwrap();
            assert!(size >= MIB, "{wals:?}");
            assert_eq!(e.preallocate_wal(MIB, 2).unwrap(), 0, "already done");
            // Synced writes go into the full-size file without growing it.
            for i in 0..100u32 {
                let mut wb = WriteBatch::new();
                wb.put_cf(CF_DEFAULT, format!("k{i}"), vec![1u8; 300]);
                e.write(&wb, true).unwrap();
            }
            assert_eq!(*wal_files(&path).unwrap().last().unwrap(), (in_use, size));
        }
        // The data survives a reopen (replayed from the recycled file), the filler does not
        // show, and the scratch key is gone.
        let e = RocksEngine::open(&path, &[CF_DEFAULT]).unwrap();
        assert_eq!(
            e.get_cf(CF_DEFAULT, b"before").unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(e.get_cf(CF_DEFAULT, b"k99").unwrap(), Some(vec![1u8; 300]));
        let mut keys = 0;
        e.scan_cf(CF_DEFAULT, b"", b"", &mut |_, _| {
            keys += 1;
            Ok(true)
        })
        .unwrap();
        assert_eq!(keys, 101);
    }

    #[test]
    fn recycled_wal_files_replay_only_their_new_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft");
        let value = vec![7u8; 4096];
        let mut recycled = 0;
        {
            let e = RocksEngine::open(&path, &[CF_DEFAULT]).unwrap();
            for round in 0..6u32 {
                let mut wb = WriteBatch::new();
                for i in 0..64u32 {
                    wb.put_cf(CF_DEFAULT, format!("r{round}-{i}"), value.clone());
                }
                wb.put_cf(CF_DEFAULT, &b"k"[..], round.to_string());
                e.write(&wb, true).unwrap();
                // The memtable goes to an SST file: the WAL that held it is obsolete, and the
                // next WAL switch may take it over (keeping its size) instead of a new file.
                e.db.flush().unwrap();
                let (_, size) = *wal_files(&path).unwrap().last().expect("a WAL file");
                if size > 0 {
                    recycled += 1;
                }
            }
            // Written into a recycled file only; a stale record of an earlier life of that file
            // (k = an older round) must not come back.
            let mut wb = WriteBatch::new();
            wb.put_cf(CF_DEFAULT, &b"k"[..], &b"last"[..]);
            wb.delete_cf(CF_DEFAULT, &b"r0-0"[..]);
            e.write(&wb, true).unwrap();
        }
        assert!(recycled > 0, "no WAL file was recycled");
        let e = RocksEngine::open(&path, &[CF_DEFAULT]).unwrap();
        assert_eq!(e.get_cf(CF_DEFAULT, b"k").unwrap(), Some(b"last".to_vec()));
        assert_eq!(e.get_cf(CF_DEFAULT, b"r0-0").unwrap(), None);
        for round in 0..6u32 {
            let key = format!("r{round}-63");
            assert_eq!(
                e.get_cf(CF_DEFAULT, key.as_bytes()).unwrap(),
                Some(value.clone())
            );
        }
    }
}
