//! Snapshot files: how a region's data leaves one store and arrives on another without ever being
//! held in memory whole, and without travelling inside raft messages.
//!
//! A [`SnapManager`] owns a directory (`<data>/snap`). A snapshot is named by a [`SnapKey`]
//! (region, term, index) and consists of one file per data column family (`default`, `lock`,
//! `write`), each a sequence of records `klen (u32 BE) | vlen (u32 BE) | key | value` in key order,
//! with its size and CRC-32 recorded in a `SnapshotMeta`. The raft `Snapshot.data` of a MsgSnapshot
//! carries only a `RaftSnapshotData { region, file_size, meta }`, never the data.
//!
//! - **Generation** ([`SnapManager::generate`]) streams a point-in-time view of the kv engine into
//!   `gen_<region>_<term>_<index>_<cf>.snap` files (written under a temporary name, then renamed).
//! - **Transfer**: on the sending side a [`SnapChunkReader`] yields the files' bytes as bounded
//!   chunks (the concatenation of the CF files in `meta.cf_files` order); on the receiving side a
//!   [`SnapReceiver`] writes the chunks to temporary files, checks every file's size and checksum,
//!   and only then (in [`SnapReceiver::finish`]) renames them to `rev_..._<cf>.snap` and writes a
//!   `rev_<region>_<term>_<index>.meta` file, whose presence means "received and verified". A
//!   corrupt or truncated transfer fails with a [`SnapError`] and leaves no file behind.
//!   [`copy_snapshot`] does both ends in one process (the harness's transports).
//! - **Application** (`worker::run_task`) reads the received files record by record
//!   ([`SnapManager::scan_received`]) into bounded write batches.
//!
//! The manager holds no state besides its directory: two managers over one directory are the same
//! manager, and every operation is safe to repeat.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message as _;
use proto::eraftpb::{MessageType, Snapshot};
use proto::metapb::Region;
use proto::raft_serverpb::{RaftMessage, RaftSnapshotData, SnapshotCfFile, SnapshotMeta};
use thiserror::Error;

use crate::engine::{EngineError, KvSnapshot, DATA_CFS};

/// Largest chunk a [`SnapChunkReader`] yields (the unit of transfer).
pub const SNAP_CHUNK_SIZE: usize = 1024 * 1024;

/// Buffer size of the snapshot files' readers and writers.
const IO_BUFFER: usize = 256 * 1024;

/// What can go wrong with a snapshot file.
#[derive(Debug, Error)]
pub enum SnapError {
    /// A file-system operation failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The kv engine failed while a snapshot was generated.
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    /// A received file's checksum differs from the sender's.
    #[error("checksum mismatch in the {cf} file: expected {expected:#010x}, got {actual:#010x}")]
    ChecksumMismatch {
        /// The column family of the file.
        cf: String,
        /// The checksum the sender recorded.
        expected: u32,
        /// The checksum of the bytes received.
        actual: u32,
    },
    /// A transfer carried fewer or more bytes than the snapshot's files hold.
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The size the sender recorded.
        expected: u64,
        /// The bytes received (or read).
        actual: u64,
    },
    /// The snapshot's metadata or a file's records are malformed.
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
}

/// The result type of snapshot-file operations.
pub type Result<T> = std::result::Result<T, SnapError>;

/// Called with each `(key, value)` record of a snapshot file.
pub type RecordCallback<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// Names a snapshot: a region's state as of log entry (`term`, `index`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapKey {
    /// The region.
    pub region_id: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// The applied index the snapshot covers.
    pub index: u64,
}

impl SnapKey {
    /// The key of a raft snapshot of `region_id` (from its metadata).
    pub fn from_snapshot(region_id: u64, snap: &Snapshot) -> SnapKey {
        let meta = snap.metadata.clone().unwrap_or_default();
        SnapKey {
            region_id,
            term: meta.term,
            index: meta.index,
        }
    }

    /// The key of the snapshot a MsgSnapshot carries; `None` for any other message.
    pub fn from_msg(msg: &RaftMessage) -> Option<SnapKey> {
        let m = msg.message.as_ref()?;
        if m.msg_type() != MessageType::MsgSnapshot {
            return None;
        }
        Some(SnapKey::from_snapshot(msg.region_id, m.snapshot.as_ref()?))
    }
}

impl std::fmt::Display for SnapKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}_{}", self.region_id, self.term, self.index)
    }
}

/// Whether `msg` carries a snapshot (its files must travel with it: see [`copy_snapshot`]).
pub fn is_snapshot_msg(msg: &RaftMessage) -> bool {
    SnapKey::from_msg(msg).is_some()
}

/// Decodes the `RaftSnapshotData` of a raft snapshot, checking its file list.
pub fn snapshot_data(snap: &Snapshot) -> Result<RaftSnapshotData> {
    let data = RaftSnapshotData::decode(snap.data.as_slice())
        .map_err(|e| SnapError::Corrupt(format!("snapshot data does not decode: {e}")))?;
    check_meta(&data)?;
    Ok(data)
}

fn snapshot_data_of_msg(msg: &RaftMessage) -> Result<(SnapKey, RaftSnapshotData)> {
    let key =
        SnapKey::from_msg(msg).ok_or_else(|| SnapError::Corrupt("not a MsgSnapshot".into()))?;
    let snap = msg
        .message
        .as_ref()
        .and_then(|m| m.snapshot.as_ref())
        .expect("checked by from_msg");
    Ok((key, snapshot_data(snap)?))
}

/// Checks that the file list names each data CF at most once (the names become file names, so
/// anything else is refused) and that the sizes add up to `file_size`.
fn check_meta(data: &RaftSnapshotData) -> Result<()> {
    let files = data.meta.as_ref().map_or(&[][..], |m| &m.cf_files[..]);
    let mut total = 0u64;
    for (i, f) in files.iter().enumerate() {
        if !DATA_CFS.contains(&f.cf.as_str()) {
            return Err(SnapError::Corrupt(format!(
                "unknown column family {:?}",
                f.cf
            )));
        }
        if files[..i].iter().any(|g| g.cf == f.cf) {
            return Err(SnapError::Corrupt(format!(
                "column family {:?} twice",
                f.cf
            )));
        }
        total = total
            .checked_add(f.size)
            .ok_or_else(|| SnapError::Corrupt("file sizes overflow".into()))?;
    }
    if total != data.file_size {
        return Err(SnapError::Corrupt(format!(
            "file sizes add up to {total}, file_size says {}",
            data.file_size
        )));
    }
    Ok(())
}

/// The snapshot files of one store, in one directory.
#[derive(Clone, Debug)]
pub struct SnapManager {
    dir: Arc<PathBuf>,
    sync: bool,
}

const GEN: &str = "gen";
const REV: &str = "rev";

impl SnapManager {
    /// A manager over `dir` (created if missing). Files are fsynced before they count as written.
    pub fn new(dir: impl Into<PathBuf>) -> Result<SnapManager> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(SnapManager {
            dir: Arc::new(dir),
            sync: true,
        })
    }

    /// The same manager, syncing files or not. Not syncing is for the simulator, whose crashes
    /// keep files (only the engines lose unsynced writes there).
    pub fn with_sync(mut self, sync: bool) -> SnapManager {
        self.sync = sync;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn cf_path(&self, kind: &str, key: SnapKey, cf: &str) -> PathBuf {
        self.dir.join(format!("{kind}_{key}_{cf}.snap"))
    }

    fn meta_path(&self, key: SnapKey) -> PathBuf {
        self.dir.join(format!("{REV}_{key}.meta"))
    }

    fn tmp(path: &Path) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".tmp");
        PathBuf::from(p)
    }

    fn finish_file(&self, w: BufWriter<File>) -> Result<()> {
        let f = w.into_inner().map_err(|e| e.into_error())?;
        if self.sync {
            f.sync_all()?;
        }
        Ok(())
    }

    fn sync_dir(&self) -> Result<()> {
        if self.sync {
            File::open(self.dir.as_path())?.sync_all()?;
        }
        Ok(())
    }

    /// Writes the data of `region` in every data CF of `snap` (a point-in-time view of the kv
    /// engine) to the generated files of `key`, one record at a time; returns the snapshot data to
    /// put in the raft snapshot.
    pub fn generate(
        &self,
        key: SnapKey,
        snap: &dyn KvSnapshot,
        region: &Region,
    ) -> Result<RaftSnapshotData> {
        let mut cf_files = Vec::with_capacity(DATA_CFS.len());
        for cf in DATA_CFS {
            let path = self.cf_path(GEN, key, cf);
            let tmp = Self::tmp(&path);
            let mut w = BufWriter::with_capacity(IO_BUFFER, File::create(&tmp)?);
            let mut hasher = crc32fast::Hasher::new();
            let mut size = 0u64;
            snap.scan(cf, &region.start_key, &region.end_key, &mut |k, v| {
                let header = record_header(k, v)?;
                for part in [&header[..], k, v] {
                    w.write_all(part)?;
                    hasher.update(part);
                }
                size += (header.len() + k.len() + v.len()) as u64;
                Ok(true)
            })?;
            self.finish_file(w)?;
            fs::rename(&tmp, &path)?;
            cf_files.push(SnapshotCfFile {
                cf: cf.to_string(),
                size,
                checksum: hasher.finalize(),
            });
        }
        self.sync_dir()?;
        let file_size = cf_files.iter().map(|f| f.size).sum();
        Ok(RaftSnapshotData {
            region: Some(region.clone()),
            file_size,
            data: Vec::new(),
            meta: Some(SnapshotMeta { cf_files }),
        })
    }

    /// Whether the snapshot `key` was received and verified (and not deleted since).
    pub fn has_received(&self, key: SnapKey) -> bool {
        self.meta_path(key).exists()
    }

    /// The data of a received snapshot, from its meta file.
    pub fn received_data(&self, key: SnapKey) -> Result<RaftSnapshotData> {
        let bytes = fs::read(self.meta_path(key))?;
        let data = RaftSnapshotData::decode(bytes.as_slice())
            .map_err(|e| SnapError::Corrupt(format!("meta file of {key} does not decode: {e}")))?;
        check_meta(&data)?;
        Ok(data)
    }

    /// Calls `f(key, value)` for every record of the received snapshot's `cf` file, in order, and
    /// checks the file's size and checksum at the end (the file was verified when received; this
    /// catches a disk that corrupted it since).
    pub fn scan_received(&self, key: SnapKey, cf: &str, f: &mut RecordCallback<'_>) -> Result<()> {
        let data = self.received_data(key)?;
        let Some(file) = data
            .meta
            .as_ref()
            .and_then(|m| m.cf_files.iter().find(|c| c.cf == cf))
        else {
            return Ok(());
        };
        let mut r = BufReader::with_capacity(IO_BUFFER, File::open(self.cf_path(REV, key, cf))?);
        let mut hasher = crc32fast::Hasher::new();
        let mut size = 0u64;
        let (mut k, mut v) = (Vec::new(), Vec::new());
        loop {
            let mut header = [0u8; 8];
            match read_full(&mut r, &mut header)? {
                0 => break,
                8 => {}
                n => {
                    return Err(SnapError::Corrupt(format!(
                        "{cf} file of {key} ends inside a record header ({n} bytes)"
                    )))
                }
            }
            let klen = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
            let vlen = u32::from_be_bytes(header[4..].try_into().expect("4 bytes")) as usize;
            k.resize(klen, 0);
            v.resize(vlen, 0);
            r.read_exact(&mut k)?;
            r.read_exact(&mut v)?;
            for part in [&header[..], &k[..], &v[..]] {
                hasher.update(part);
            }
            size += (8 + klen + vlen) as u64;
            f(&k, &v)?;
        }
        if size != file.size {
            return Err(SnapError::SizeMismatch {
                expected: file.size,
                actual: size,
            });
        }
        let actual = hasher.finalize();
        if actual != file.checksum {
            return Err(SnapError::ChecksumMismatch {
                cf: cf.to_string(),
                expected: file.checksum,
                actual,
            });
        }
        Ok(())
    }

    /// A reader of the chunks to send for the MsgSnapshot `msg`, over this (the sender's) manager's
    /// generated files. The files are opened now, so a later regeneration does not disturb it.
    pub fn chunk_reader(&self, msg: &RaftMessage) -> Result<SnapChunkReader> {
        let (key, data) = snapshot_data_of_msg(msg)?;
        let mut files = Vec::new();
        for f in data.meta.unwrap_or_default().cf_files {
            let file = File::open(self.cf_path(GEN, key, &f.cf))?;
            files.push((BufReader::with_capacity(IO_BUFFER, file), f.size));
        }
        Ok(SnapChunkReader {
            files,
            current: 0,
            chunk_size: SNAP_CHUNK_SIZE,
        })
    }

    /// A receiver for the chunks of the MsgSnapshot `msg`, into this (the receiver's) manager.
    pub fn receiver(&self, msg: &RaftMessage) -> Result<SnapReceiver> {
        let (key, data) = snapshot_data_of_msg(msg)?;
        let files = data.meta.clone().unwrap_or_default().cf_files;
        let mut r = SnapReceiver {
            mgr: self.clone(),
            key,
            data,
            files,
            current: 0,
            writer: None,
            written: 0,
            received: 0,
            hasher: crc32fast::Hasher::new(),
            tmps: Vec::new(),
            finished: false,
        };
        r.open_next()?;
        Ok(r)
    }

    /// Deletes the generated files of `key` (missing files are fine).
    pub fn delete_generated(&self, key: SnapKey) {
        for cf in DATA_CFS {
            let _ = fs::remove_file(self.cf_path(GEN, key, cf));
        }
    }

    /// Deletes the received files of `key`, meta file first (missing files are fine).
    pub fn delete_received(&self, key: SnapKey) {
        let _ = fs::remove_file(self.meta_path(key));
        for cf in DATA_CFS {
            let _ = fs::remove_file(self.cf_path(REV, key, cf));
        }
    }

    /// Deletes every file of the directory except the received snapshots in `keep` (a store
    /// starting up keeps those its regions are still applying; anything else is garbage of an
    /// earlier run). Returns how many files were deleted.
    pub fn gc(&self, keep: &[SnapKey]) -> Result<usize> {
        let kept: Vec<String> = keep
            .iter()
            .flat_map(|&k| {
                let mut names: Vec<String> = DATA_CFS
                    .iter()
                    .map(|cf| format!("{REV}_{k}_{cf}.snap"))
                    .collect();
                names.push(format!("{REV}_{k}.meta"));
                names
            })
            .collect();
        let mut deleted = 0;
        for entry in fs::read_dir(self.dir.as_path())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if kept.contains(&name) || !entry.file_type()?.is_file() {
                continue;
            }
            fs::remove_file(entry.path())?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

fn record_header(k: &[u8], v: &[u8]) -> std::result::Result<[u8; 8], EngineError> {
    let len = |b: &[u8]| {
        u32::try_from(b.len())
            .map_err(|_| EngineError::Other(format!("a snapshot record of {} bytes", b.len())))
    };
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&len(k)?.to_be_bytes());
    h[4..].copy_from_slice(&len(v)?.to_be_bytes());
    Ok(h)
}

/// Reads until `buf` is full or the end of the input; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(m) => n += m,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The sending end of a transfer: the bytes of a generated snapshot's files, in chunks of at most
/// [`SNAP_CHUNK_SIZE`] bytes (a chunk never spans two files). Memory: one chunk.
pub struct SnapChunkReader {
    files: Vec<(BufReader<File>, u64)>,
    current: usize,
    chunk_size: usize,
}

impl SnapChunkReader {
    /// The same reader with chunks of at most `size` bytes.
    pub fn with_chunk_size(mut self, size: usize) -> SnapChunkReader {
        self.chunk_size = size.max(1);
        self
    }

    /// The next chunk, or `None` after the last one. A file shorter than the metadata says is an
    /// error.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        while let Some((file, remaining)) = self.files.get_mut(self.current) {
            if *remaining == 0 {
                self.current += 1;
                continue;
            }
            let n = (*remaining).min(self.chunk_size as u64) as usize;
            let mut chunk = vec![0u8; n];
            file.read_exact(&mut chunk)?;
            *remaining -= n as u64;
            return Ok(Some(chunk));
        }
        Ok(None)
    }
}

impl Iterator for SnapChunkReader {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

/// The receiving end of a transfer: writes chunks to temporary files, checking each file's size
/// and checksum as it completes; [`SnapReceiver::finish`] makes the snapshot visible. Dropped
/// without `finish` (or after an error), it deletes what it wrote. Memory: the write buffer.
pub struct SnapReceiver {
    mgr: SnapManager,
    key: SnapKey,
    data: RaftSnapshotData,
    files: Vec<SnapshotCfFile>,
    current: usize,
    writer: Option<BufWriter<File>>,
    written: u64,
    received: u64,
    hasher: crc32fast::Hasher,
    tmps: Vec<(PathBuf, PathBuf)>,
    finished: bool,
}

impl SnapReceiver {
    /// The snapshot being received.
    pub fn key(&self) -> SnapKey {
        self.key
    }

    /// Opens the file of `files[current]`, first completing (and verifying) any empty files.
    fn open_next(&mut self) -> Result<()> {
        while let Some(f) = self.files.get(self.current) {
            let path = self.mgr.cf_path(REV, self.key, &f.cf);
            let tmp = SnapManager::tmp(&path);
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            self.tmps.push((tmp, path));
            self.writer = Some(BufWriter::with_capacity(IO_BUFFER, file));
            self.written = 0;
            self.hasher = crc32fast::Hasher::new();
            if f.size > 0 {
                return Ok(());
            }
            self.close_current()?;
        }
        Ok(())
    }

    /// Verifies and closes the completed current file, and moves to the next.
    fn close_current(&mut self) -> Result<()> {
        let f = &self.files[self.current];
        let actual = std::mem::take(&mut self.hasher).finalize();
        if actual != f.checksum {
            return Err(SnapError::ChecksumMismatch {
                cf: f.cf.clone(),
                expected: f.checksum,
                actual,
            });
        }
        let w = self.writer.take().expect("a file is open");
        self.mgr.finish_file(w)?;
        self.current += 1;
        Ok(())
    }

    /// Writes the next chunk. More bytes than the snapshot holds, or a checksum mismatch of a file
    /// the chunk completes, is an error.
    pub fn write(&mut self, mut chunk: &[u8]) -> Result<()> {
        self.received += chunk.len() as u64;
        while !chunk.is_empty() {
            let Some(f) = self.files.get(self.current) else {
                return Err(SnapError::SizeMismatch {
                    expected: self.data.file_size,
                    actual: self.received,
                });
            };
            let room = f.size - self.written;
            let n = (room.min(chunk.len() as u64)) as usize;
            let (now, rest) = chunk.split_at(n);
            self.writer
                .as_mut()
                .expect("a file is open")
                .write_all(now)?;
            self.hasher.update(now);
            self.written += n as u64;
            chunk = rest;
            if self.written == f.size {
                self.close_current()?;
                self.open_next()?;
            }
        }
        Ok(())
    }

    /// Completes the transfer: every file must be complete and verified. Renames the files to
    /// their final names and writes the meta file last; returns the snapshot's key.
    pub fn finish(mut self) -> Result<SnapKey> {
        if self.current < self.files.len() {
            return Err(SnapError::SizeMismatch {
                expected: self.data.file_size,
                actual: self.received,
            });
        }
        for (tmp, path) in &self.tmps {
            fs::rename(tmp, path)?;
        }
        let meta = self.mgr.meta_path(self.key);
        let tmp = SnapManager::tmp(&meta);
        let mut w = BufWriter::new(File::create(&tmp)?);
        w.write_all(&self.data.encode_to_vec())?;
        self.mgr.finish_file(w)?;
        fs::rename(&tmp, &meta)?;
        self.mgr.sync_dir()?;
        self.finished = true;
        Ok(self.key)
    }
}

impl Drop for SnapReceiver {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.writer = None;
        for (tmp, _) in &self.tmps {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// Moves the snapshot of the MsgSnapshot `msg` from the sender's manager `from` to the receiver's
/// manager `to` in chunks; `corrupt` may alter a chunk on the way (the simulator's faults). On
/// success the receiver may be given `msg`.
pub fn copy_snapshot(
    from: &SnapManager,
    to: &SnapManager,
    msg: &RaftMessage,
    corrupt: &mut dyn FnMut(usize, &mut Vec<u8>),
) -> Result<SnapKey> {
    let mut reader = from.chunk_reader(msg)?;
    let mut receiver = to.receiver(msg)?;
    let mut i = 0;
    while let Some(mut chunk) = reader.next_chunk()? {
        corrupt(i, &mut chunk);
        receiver.write(&chunk)?;
        i += 1;
    }
    receiver.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, MemEngine, WriteBatch, ALL_CFS, CF_DEFAULT, CF_LOCK, CF_WRITE};
    use proto::eraftpb::{Message, SnapshotMetadata};
    use proto::metapb::Peer;

    fn region(start: &[u8], end: &[u8]) -> Region {
        Region {
            id: 1,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            peers: vec![Peer { id: 1, store_id: 1 }],
            ..Default::default()
        }
    }

    const KEY: SnapKey = SnapKey {
        region_id: 1,
        term: 6,
        index: 42,
    };

    /// An engine with keys in every data CF, inside and outside `[b, y)`.
    fn engine() -> MemEngine {
        let e = MemEngine::new(&ALL_CFS);
        let mut wb = WriteBatch::new();
        for (i, cf) in DATA_CFS.iter().enumerate() {
            for k in ["a", "b", "c", "k1", "k2", "y", "z"] {
                wb.put_cf(cf, k, format!("{cf}-{k}-{i}").repeat(i + 1));
            }
        }
        // A big value that spans chunks.
        wb.put_cf(CF_WRITE, &b"big"[..], vec![7u8; 3 * 1000 + 17]);
        e.write(&wb, true).unwrap();
        e
    }

    fn msg_for(data: &RaftSnapshotData) -> RaftMessage {
        let mut m = Message {
            snapshot: Some(Snapshot {
                data: data.encode_to_vec(),
                metadata: Some(SnapshotMetadata {
                    index: KEY.index,
                    term: KEY.term,
                    conf_state: None,
                }),
            }),
            ..Default::default()
        };
        m.set_msg_type(MessageType::MsgSnapshot);
        RaftMessage {
            region_id: KEY.region_id,
            message: Some(m),
            ..Default::default()
        }
    }

    fn received(mgr: &SnapManager, cf: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        mgr.scan_received(KEY, cf, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        out
    }

    fn in_engine(e: &MemEngine, cf: &str, r: &Region) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        e.scan_cf(cf, &r.start_key, &r.end_key, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })
        .unwrap();
        out
    }

    fn setup() -> (tempfile::TempDir, SnapManager, SnapManager) {
        let dir = tempfile::tempdir().unwrap();
        let a = SnapManager::new(dir.path().join("a")).unwrap();
        let b = SnapManager::new(dir.path().join("b")).unwrap();
        (dir, a, b)
    }

    #[test]
    fn test_snapshot_round_trip_every_cf() {
        let (_dir, sender, receiver) = setup();
        let e = engine();
        let r = region(b"b", b"y");
        let data = sender.generate(KEY, &e.snapshot(), &r).unwrap();
        let files = &data.meta.as_ref().unwrap().cf_files;
        assert_eq!(
            files.iter().map(|f| f.cf.as_str()).collect::<Vec<_>>(),
            DATA_CFS.to_vec()
        );
        assert_eq!(data.file_size, files.iter().map(|f| f.size).sum::<u64>());
        let msg = msg_for(&data);
        // Small chunks, so records and files span chunk boundaries.
        let mut reader = sender.chunk_reader(&msg).unwrap().with_chunk_size(100);
        let mut rx = receiver.receiver(&msg).unwrap();
        let mut chunks = 0;
        while let Some(c) = reader.next_chunk().unwrap() {
            assert!(c.len() <= 100);
            rx.write(&c).unwrap();
            chunks += 1;
        }
        assert!(chunks > 30);
        assert!(!receiver.has_received(KEY), "visible only after finish");
        assert_eq!(rx.finish().unwrap(), KEY);
        assert!(receiver.has_received(KEY));
        assert_eq!(receiver.received_data(KEY).unwrap(), data);
        for cf in DATA_CFS {
            let got = received(&receiver, cf);
            assert_eq!(got, in_engine(&e, cf, &r), "{cf}");
            assert!(got
                .iter()
                .all(|(k, _)| k.as_slice() >= &b"b"[..] && k.as_slice() < &b"y"[..]));
            assert!(!got.is_empty(), "{cf}");
        }
        // An unbounded region takes everything.
        let all = region(b"", b"");
        let key2 = SnapKey { index: 43, ..KEY };
        let data = sender.generate(key2, &e.snapshot(), &all).unwrap();
        let mut m = msg_for(&data);
        m.message
            .as_mut()
            .unwrap()
            .snapshot
            .as_mut()
            .unwrap()
            .metadata
            .as_mut()
            .unwrap()
            .index = 43;
        copy_snapshot(&sender, &receiver, &m, &mut |_, _| {}).unwrap();
        let mut n = 0;
        receiver
            .scan_received(key2, CF_LOCK, &mut |_, _| {
                n += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 7);
    }

    #[test]
    fn test_snapshot_lock_cf_only() {
        // TestOneSnapshot2C writes only the lock CF: the other files are empty and still verify.
        let (_dir, sender, receiver) = setup();
        let e = MemEngine::new(&ALL_CFS);
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_LOCK, &b"k1"[..], &b"v1"[..]);
        e.write(&wb, true).unwrap();
        let data = sender
            .generate(KEY, &e.snapshot(), &region(b"", b""))
            .unwrap();
        let sizes: Vec<u64> = data
            .meta
            .as_ref()
            .unwrap()
            .cf_files
            .iter()
            .map(|f| f.size)
            .collect();
        assert_eq!(sizes, vec![0, 8 + 2 + 2, 0]);
        copy_snapshot(&sender, &receiver, &msg_for(&data), &mut |_, _| {}).unwrap();
        assert_eq!(
            received(&receiver, CF_LOCK),
            vec![(b"k1".to_vec(), b"v1".to_vec())]
        );
        assert!(received(&receiver, CF_DEFAULT).is_empty());
    }

    fn leftovers(mgr: &SnapManager) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(mgr.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn test_snapshot_checksum_mismatch_rejected() {
        let (_dir, sender, receiver) = setup();
        let data = sender
            .generate(KEY, &engine().snapshot(), &region(b"", b""))
            .unwrap();
        let msg = msg_for(&data);
        let err = copy_snapshot(&sender, &receiver, &msg, &mut |i, c| {
            if i == 0 {
                c[5] ^= 0x40;
            }
        })
        .unwrap_err();
        assert!(matches!(err, SnapError::ChecksumMismatch { .. }), "{err}");
        assert!(!receiver.has_received(KEY));
        assert!(
            leftovers(&receiver).is_empty(),
            "{:?}",
            leftovers(&receiver)
        );
        // A checksum in the metadata that does not match the files is caught the same way.
        let mut bad = data.clone();
        bad.meta.as_mut().unwrap().cf_files[2].checksum ^= 1;
        let err = copy_snapshot(&sender, &receiver, &msg_for(&bad), &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, SnapError::ChecksumMismatch { ref cf, .. } if cf == CF_WRITE));
        assert!(leftovers(&receiver).is_empty());
        // The genuine one goes through.
        copy_snapshot(&sender, &receiver, &msg, &mut |_, _| {}).unwrap();
        assert!(receiver.has_received(KEY));
    }

    #[test]
    fn test_snapshot_truncated_rejected() {
        let (_dir, sender, receiver) = setup();
        let data = sender
            .generate(KEY, &engine().snapshot(), &region(b"", b""))
            .unwrap();
        let msg = msg_for(&data);
        // Stream all but the last chunk: finish refuses.
        let chunks: Vec<Vec<u8>> = sender
            .chunk_reader(&msg)
            .unwrap()
            .with_chunk_size(64)
            .map(|c| c.unwrap())
            .collect();
        let mut rx = receiver.receiver(&msg).unwrap();
        for c in &chunks[..chunks.len() - 1] {
            rx.write(c).unwrap();
        }
        let err = rx.finish().unwrap_err();
        assert!(matches!(err, SnapError::SizeMismatch { .. }), "{err}");
        assert!(leftovers(&receiver).is_empty());
        // Extra bytes after the end are refused too.
        let mut rx = receiver.receiver(&msg).unwrap();
        for c in &chunks {
            rx.write(c).unwrap();
        }
        assert!(matches!(
            rx.write(b"x"),
            Err(SnapError::SizeMismatch { .. })
        ));
        drop(rx);
        assert!(leftovers(&receiver).is_empty());
        // A generated file that lost its tail cannot be sent.
        let path = sender.cf_path(GEN, KEY, CF_WRITE);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let err = copy_snapshot(&sender, &receiver, &msg, &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, SnapError::Io(_)), "{err}");
        assert!(!receiver.has_received(KEY));
    }

    #[test]
    fn test_snapshot_meta_checked() {
        let (_dir, sender, receiver) = setup();
        let data = sender
            .generate(KEY, &engine().snapshot(), &region(b"", b""))
            .unwrap();
        let mut evil = data.clone();
        evil.meta.as_mut().unwrap().cf_files[0].cf = "../../etc".into();
        assert!(matches!(
            receiver.receiver(&msg_for(&evil)),
            Err(SnapError::Corrupt(_))
        ));
        let mut wrong = data.clone();
        wrong.file_size += 1;
        assert!(receiver.receiver(&msg_for(&wrong)).is_err());
        let mut not_snap = msg_for(&data);
        not_snap
            .message
            .as_mut()
            .unwrap()
            .set_msg_type(MessageType::MsgAppend);
        assert!(!is_snapshot_msg(&not_snap));
        assert!(receiver.receiver(&not_snap).is_err());
    }

    #[test]
    fn test_snapshot_gc_keeps_only_what_is_asked() {
        let (_dir, sender, receiver) = setup();
        let e = engine();
        let data = sender
            .generate(KEY, &e.snapshot(), &region(b"", b""))
            .unwrap();
        copy_snapshot(&sender, &receiver, &msg_for(&data), &mut |_, _| {}).unwrap();
        assert_eq!(leftovers(&receiver).len(), 4);
        assert_eq!(receiver.gc(&[KEY]).unwrap(), 0);
        assert_eq!(receiver.gc(&[]).unwrap(), 4);
        assert!(!receiver.has_received(KEY));
        assert_eq!(sender.gc(&[]).unwrap(), 3);
        assert!(leftovers(&sender).is_empty());
    }
}
