//! The `Storage` trait through which raft reads its durable log, and `MemStorage`, the in-memory
//! implementation used by tests (TinyKV's `MemoryStorage`, with the same semantics).
//!
//! A storage keeps a "dummy" entry in front of the first real one: its index and term are those of
//! the last compacted entry (or of the snapshot), so `term(first_index() - 1)` always answers.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use proto::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};

use crate::errors::{Result, StorageError};
use crate::util::limit_size;

/// What a node restarts from: its hard state and its membership.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RaftState {
    /// Term, vote and commit as last persisted.
    pub hard_state: HardState,
    /// The members as of the last snapshot or applied membership change.
    pub conf_state: ConfState,
}

/// The durable side of the raft log, read by raft and written by the application.
///
/// The application persists what `Ready` hands it (entries, hard state, snapshots); raft only reads.
/// Every method answers from what was persisted, never from the unstable tail.
pub trait Storage {
    /// The hard state and membership to start from.
    fn initial_state(&self) -> Result<RaftState>;
    /// Entries in `[low, high)`, limited to about `max_size` bytes (at least one entry when the range
    /// is not empty). `StorageError::Compacted` when `low` was compacted away.
    fn entries(&self, low: u64, high: u64, max_size: u64) -> Result<Vec<Entry>>;
    /// The term of entry `idx`, valid for `[first_index() - 1, last_index()]`.
    fn term(&self, idx: u64) -> Result<u64>;
    /// The index of the first entry still held (older ones were compacted into a snapshot).
    fn first_index(&self) -> Result<u64>;
    /// The index of the last entry held.
    fn last_index(&self) -> Result<u64>;
    /// The latest snapshot, covering at least `request_index` where the storage can do so.
    /// `StorageError::SnapshotTemporarilyUnavailable` while one is being built: raft asks again later.
    fn snapshot(&self, request_index: u64) -> Result<Snapshot>;
}

/// The state behind a `MemStorage`. Its methods are TinyKV's `MemoryStorage` methods.
#[derive(Clone, Debug)]
pub struct MemStorageCore {
    hard_state: HardState,
    snapshot: Snapshot,
    /// `entries[0]` is the dummy entry, carrying the snapshot's index and term.
    entries: Vec<Entry>,
}

impl Default for MemStorageCore {
    fn default() -> Self {
        let snapshot = Snapshot {
            data: Vec::new(),
            metadata: Some(SnapshotMetadata {
                conf_state: Some(ConfState::default()),
                index: 0,
                term: 0,
            }),
        };
        MemStorageCore {
            hard_state: HardState::default(),
            snapshot,
            entries: vec![Entry::default()],
        }
    }
}

fn snapshot_meta(s: &Snapshot) -> SnapshotMetadata {
    s.metadata.clone().unwrap_or_default()
}

impl MemStorageCore {
    fn offset(&self) -> u64 {
        self.entries[0].index
    }

    fn last(&self) -> u64 {
        self.entries[0].index + self.entries.len() as u64 - 1
    }

    /// Replaces the persisted hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Replaces the membership recorded with the current snapshot.
    pub fn set_conf_state(&mut self, cs: ConfState) {
        let mut meta = snapshot_meta(&self.snapshot);
        meta.conf_state = Some(cs);
        self.snapshot.metadata = Some(meta);
    }

    /// Replaces everything with the snapshot: the log becomes just its dummy entry.
    /// `SnapshotOutOfDate` when the storage already has a snapshot at least as new.
    pub fn apply_snapshot(&mut self, snap: Snapshot) -> Result<()> {
        let meta = snapshot_meta(&snap);
        if snapshot_meta(&self.snapshot).index >= meta.index {
            return Err(StorageError::SnapshotOutOfDate.into());
        }
        self.entries = vec![Entry {
            term: meta.term,
            index: meta.index,
            ..Default::default()
        }];
        if self.hard_state.term < meta.term {
            self.hard_state.term = meta.term;
        }
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
        self.snapshot = snap;
        Ok(())
    }

    /// Makes a snapshot at `idx` (which must be held) with the given membership and data.
    /// `SnapshotOutOfDate` when `idx` is not newer than the current snapshot.
    ///
    /// # Panics
    /// When `idx` is past the last entry.
    pub fn create_snapshot(
        &mut self,
        idx: u64,
        cs: Option<ConfState>,
        data: Vec<u8>,
    ) -> Result<Snapshot> {
        let mut meta = snapshot_meta(&self.snapshot);
        if idx <= meta.index {
            return Err(StorageError::SnapshotOutOfDate.into());
        }
        assert!(
            idx <= self.last(),
            "snapshot index {} is out of bound (last index {})",
            idx,
            self.last()
        );
        meta.index = idx;
        meta.term = self.entries[(idx - self.offset()) as usize].term;
        if let Some(cs) = cs {
            meta.conf_state = Some(cs);
        }
        self.snapshot = Snapshot {
            data,
            metadata: Some(meta),
        };
        Ok(self.snapshot.clone())
    }

    /// Drops every entry before `compact_index`; the entry at `compact_index` becomes the dummy.
    /// `Compacted` when that already happened.
    ///
    /// # Panics
    /// When `compact_index` is past the last entry.
    pub fn compact(&mut self, compact_index: u64) -> Result<()> {
        let offset = self.offset();
        if compact_index <= offset {
            return Err(StorageError::Compacted.into());
        }
        assert!(
            compact_index <= self.last(),
            "compact index {} is out of bound (last index {})",
            compact_index,
            self.last()
        );
        let i = (compact_index - offset) as usize;
        let mut dummy = self.entries[i].clone();
        dummy.data.clear();
        dummy.entry_type = 0;
        let mut rest = self.entries.split_off(i + 1);
        self.entries = Vec::with_capacity(rest.len() + 1);
        self.entries.push(dummy);
        self.entries.append(&mut rest);
        Ok(())
    }

    /// Appends entries, ignoring those already compacted and replacing any conflicting suffix.
    ///
    /// # Panics
    /// When the first new entry leaves a gap after the last one held.
    pub fn append(&mut self, ents: &[Entry]) -> Result<()> {
        if ents.is_empty() {
            return Ok(());
        }
        let first = self.offset() + 1;
        let last = ents[0].index + ents.len() as u64 - 1;
        if last < first {
            return Ok(());
        }
        let ents = if first > ents[0].index {
            &ents[(first - ents[0].index) as usize..]
        } else {
            ents
        };
        let offset = ents[0].index - self.offset();
        assert!(
            offset <= self.entries.len() as u64,
            "missing log entry [last: {}, append at: {}]",
            self.last(),
            ents[0].index
        );
        self.entries.truncate(offset as usize);
        self.entries.extend_from_slice(ents);
        Ok(())
    }

    /// Copies the entries `[low, high)` with no size limit (test helper).
    pub fn all_entries(&self) -> Vec<Entry> {
        self.entries[1..].to_vec()
    }
}

/// An in-memory `Storage`, shared by handle: clones see the same log (tests hand one clone to raft
/// and keep another to persist `Ready`s into).
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    core: Arc<RwLock<MemStorageCore>>,
}

impl MemStorage {
    /// An empty storage: no entries, zero hard state, no members.
    pub fn new() -> Self {
        Self::default()
    }

    /// A storage whose membership is `voters` (what a new cluster starts with).
    pub fn new_with_conf_state(voters: Vec<u64>) -> Self {
        let s = Self::new();
        s.wl().set_conf_state(ConfState { nodes: voters });
        s
    }

    /// A storage whose entry vector is exactly `ents`, the first one being the dummy (TinyKV's
    /// `newMemoryStorageWithEnts`).
    pub fn new_with_entries(ents: Vec<Entry>) -> Self {
        assert!(!ents.is_empty(), "the entry vector needs its dummy entry");
        let s = Self::new();
        s.wl().entries = ents;
        s
    }

    /// Read access to the core.
    pub fn rl(&self) -> RwLockReadGuard<'_, MemStorageCore> {
        self.core.read().expect("MemStorage lock poisoned")
    }

    /// Write access to the core.
    pub fn wl(&self) -> RwLockWriteGuard<'_, MemStorageCore> {
        self.core.write().expect("MemStorage lock poisoned")
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> Result<RaftState> {
        let core = self.rl();
        Ok(RaftState {
            hard_state: core.hard_state,
            conf_state: snapshot_meta(&core.snapshot).conf_state.unwrap_or_default(),
        })
    }

    fn entries(&self, low: u64, high: u64, max_size: u64) -> Result<Vec<Entry>> {
        let core = self.rl();
        let offset = core.offset();
        if low <= offset {
            return Err(StorageError::Compacted.into());
        }
        assert!(
            high <= core.last() + 1,
            "entries' hi({}) is out of bound lastindex({})",
            high,
            core.last()
        );
        if core.entries.len() == 1 && low < high {
            return Err(StorageError::Unavailable.into());
        }
        let mut ents = core.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        limit_size(&mut ents, max_size);
        Ok(ents)
    }

    fn term(&self, idx: u64) -> Result<u64> {
        let core = self.rl();
        let offset = core.offset();
        if idx < offset {
            return Err(StorageError::Compacted.into());
        }
        match core.entries.get((idx - offset) as usize) {
            Some(e) => Ok(e.term),
            None => Err(StorageError::Unavailable.into()),
        }
    }

    fn first_index(&self) -> Result<u64> {
        Ok(self.rl().offset() + 1)
    }

    fn last_index(&self) -> Result<u64> {
        Ok(self.rl().last())
    }

    fn snapshot(&self, _request_index: u64) -> Result<Snapshot> {
        Ok(self.rl().snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Error;
    use prost::Message as _;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn three() -> MemStorage {
        MemStorage::new_with_entries(vec![ent(3, 3), ent(4, 4), ent(5, 5)])
    }

    fn compacted() -> Error {
        StorageError::Compacted.into()
    }

    #[test]
    fn test_storage_term() {
        let cases: Vec<(u64, Result<u64>)> = vec![
            (2, Err(compacted())),
            (3, Ok(3)),
            (4, Ok(4)),
            (5, Ok(5)),
            (6, Err(StorageError::Unavailable.into())),
        ];
        for (i, want) in cases {
            assert_eq!(three().term(i), want, "term({i})");
        }
    }

    #[test]
    fn test_storage_entries() {
        let s = MemStorage::new_with_entries(vec![ent(3, 3), ent(4, 4), ent(5, 5), ent(6, 6)]);
        let size = ent(4, 4).encoded_len() as u64;
        let cases: Vec<(u64, u64, u64, Result<Vec<Entry>>)> = vec![
            (2, 6, u64::MAX, Err(compacted())),
            (3, 4, u64::MAX, Err(compacted())),
            (4, 5, u64::MAX, Ok(vec![ent(4, 4)])),
            (4, 6, u64::MAX, Ok(vec![ent(4, 4), ent(5, 5)])),
            (4, 7, u64::MAX, Ok(vec![ent(4, 4), ent(5, 5), ent(6, 6)])),
            // a limit of zero still returns one entry
            (4, 7, 0, Ok(vec![ent(4, 4)])),
            (4, 7, size * 2, Ok(vec![ent(4, 4), ent(5, 5)])),
            (4, 7, size * 3 - 1, Ok(vec![ent(4, 4), ent(5, 5)])),
            (4, 7, size * 3, Ok(vec![ent(4, 4), ent(5, 5), ent(6, 6)])),
        ];
        for (lo, hi, max, want) in cases {
            assert_eq!(s.entries(lo, hi, max), want, "entries({lo}, {hi}, {max})");
        }
        let empty = MemStorage::new();
        assert_eq!(empty.entries(1, 1, u64::MAX), Ok(vec![]));
        let with_dummy_only = MemStorage::new_with_entries(vec![ent(3, 3)]);
        assert_eq!(
            with_dummy_only.entries(4, 4, u64::MAX),
            Ok(vec![]),
            "an empty range is fine"
        );
    }

    #[test]
    #[should_panic(expected = "out of bound")]
    fn test_storage_entries_past_end_panics() {
        let _ = three().entries(4, 7, u64::MAX);
    }

    #[test]
    fn test_storage_first_and_last_index() {
        let s = three();
        assert_eq!(s.first_index(), Ok(4));
        assert_eq!(s.last_index(), Ok(5));
        s.wl().append(&[ent(6, 5)]).unwrap();
        assert_eq!(s.last_index(), Ok(6));
        s.wl().compact(4).unwrap();
        assert_eq!(s.first_index(), Ok(5));
    }

    #[test]
    fn test_storage_compact() {
        let cases: Vec<(u64, Result<()>, u64, u64, usize)> = vec![
            (2, Err(compacted()), 3, 3, 3),
            (3, Err(compacted()), 3, 3, 3),
            (4, Ok(()), 4, 4, 2),
            (5, Ok(()), 5, 5, 1),
        ];
        for (i, want, windex, wterm, wlen) in cases {
            let s = three();
            assert_eq!(s.wl().compact(i), want, "compact({i})");
            let core = s.rl();
            assert_eq!(core.entries[0].index, windex);
            assert_eq!(core.entries[0].term, wterm);
            assert_eq!(core.entries.len(), wlen);
        }
    }

    #[test]
    fn test_storage_create_snapshot() {
        let cs = ConfState {
            nodes: vec![1, 2, 3],
        };
        let data = b"data".to_vec();
        let cases: Vec<(u64, Result<(u64, u64)>)> = vec![
            (4, Ok((4, 4))),
            (5, Ok((5, 5))),
            (3, Err(StorageError::SnapshotOutOfDate.into())),
        ];
        for (i, want) in cases {
            let s = three();
            if i == 3 {
                s.wl().create_snapshot(4, None, vec![]).unwrap();
                s.wl().compact(4).unwrap();
            }
            let got = s
                .wl()
                .create_snapshot(i, Some(cs.clone()), data.clone())
                .map(|snap| {
                    let m = snap.metadata.unwrap();
                    assert_eq!(m.conf_state, Some(cs.clone()));
                    assert_eq!(snap.data, data);
                    (m.index, m.term)
                });
            assert_eq!(got, want, "create_snapshot({i})");
        }
    }

    #[test]
    fn test_storage_append() {
        let cases: Vec<(Vec<Entry>, Vec<Entry>)> = vec![
            (
                vec![ent(1, 1), ent(2, 2)],
                vec![ent(3, 3), ent(4, 4), ent(5, 5)],
            ),
            (
                vec![ent(3, 3), ent(4, 4), ent(5, 5)],
                vec![ent(3, 3), ent(4, 4), ent(5, 5)],
            ),
            (
                vec![ent(3, 3), ent(4, 6), ent(5, 6)],
                vec![ent(3, 3), ent(4, 6), ent(5, 6)],
            ),
            (
                vec![ent(3, 3), ent(4, 4), ent(5, 5), ent(6, 5)],
                vec![ent(3, 3), ent(4, 4), ent(5, 5), ent(6, 5)],
            ),
            // truncate incoming entries, truncate the existing entries and append
            (
                vec![ent(2, 3), ent(3, 3), ent(4, 5)],
                vec![ent(3, 3), ent(4, 5)],
            ),
            // truncate the existing entries and append
            (vec![ent(4, 5)], vec![ent(3, 3), ent(4, 5)]),
            // direct append
            (
                vec![ent(6, 5)],
                vec![ent(3, 3), ent(4, 4), ent(5, 5), ent(6, 5)],
            ),
        ];
        for (i, (ents, want)) in cases.into_iter().enumerate() {
            let s = three();
            s.wl().append(&ents).unwrap();
            assert_eq!(s.rl().entries, want, "case {i}");
        }
    }

    #[test]
    #[should_panic(expected = "missing log entry")]
    fn test_storage_append_gap_panics() {
        three().wl().append(&[ent(7, 5)]).unwrap();
    }

    #[test]
    fn test_storage_apply_snapshot() {
        let cs = ConfState {
            nodes: vec![1, 2, 3],
        };
        let snap = |index, term| Snapshot {
            data: b"data".to_vec(),
            metadata: Some(SnapshotMetadata {
                conf_state: Some(cs.clone()),
                index,
                term,
            }),
        };
        let s = MemStorage::new();
        s.wl().apply_snapshot(snap(4, 4)).unwrap();
        assert_eq!(s.first_index(), Ok(5));
        assert_eq!(s.last_index(), Ok(4));
        assert_eq!(s.term(4), Ok(4));
        assert_eq!(s.initial_state().unwrap().conf_state, cs);
        assert_eq!(
            s.wl().apply_snapshot(snap(3, 3)),
            Err(StorageError::SnapshotOutOfDate.into())
        );
    }
}
