//! `RaftLog`: one view of the whole log, stitched from the persisted part (`Storage`) and the
//! unstable tail, with the commit and apply positions.
//!
//! ```text
//!   snapshot/first.....applied....committed....stabled.....last
//!   --------|------------------------------------------------|
//!                             log entries
//! ```
//! Invariants: `applied <= committed <= last_index()`; everything up to `stabled()` is persisted.

use proto::eraftpb::{Entry, Snapshot};
use slog::Logger;

use crate::errors::{Error, Result, StorageError};
use crate::log_unstable::Unstable;
use crate::storage::Storage;
use crate::util::{limit_size, NO_LIMIT};

/// The log of one raft node.
pub struct RaftLog<T: Storage> {
    /// Everything persisted.
    pub store: T,
    /// Everything not persisted yet.
    pub unstable: Unstable,
    /// The highest index known to be committed (on a quorum's stable storage).
    pub committed: u64,
    /// The highest index the application has applied. `applied <= committed`.
    pub applied: u64,
    logger: Logger,
}

impl<T: Storage> RaftLog<T> {
    /// A log over `store`: nothing unstable, committed and applied at the storage's first index - 1.
    pub fn new(store: T, logger: Logger) -> Self {
        let first = store.first_index().expect("storage first index");
        let last = store.last_index().expect("storage last index");
        RaftLog {
            store,
            unstable: Unstable::new(last + 1),
            committed: first - 1,
            applied: first - 1,
            logger,
        }
    }

    /// The first index still held (after the snapshot).
    pub fn first_index(&self) -> u64 {
        self.unstable
            .maybe_first_index()
            .unwrap_or_else(|| self.store.first_index().expect("storage first index"))
    }

    /// The last index of the log: that of the unstable tail (or pending snapshot) when there is
    /// one, else the storage's.
    pub fn last_index(&self) -> u64 {
        // STAGE 2AA: ask the unstable tail first (see `first_index`), then the storage
        self.unstable
            .maybe_last_index()
            .unwrap_or_else(|| self.store.last_index().expect("storage last index"))
        // END STAGE 2AA
    }

    /// The last index that is persisted (TinyKV's `stabled`).
    pub fn stabled(&self) -> u64 {
        self.unstable.offset - 1
    }

    /// The term of the entry at `idx`. 0 for an index outside `[first_index() - 1, last_index()]`;
    /// a storage error when the storage cannot tell.
    pub fn term(&self, idx: u64) -> Result<u64> {
        // STAGE 2AA: 0 out of range; else the unstable tail's term if it knows it, else the storage's
        let dummy = self.first_index() - 1;
        if idx < dummy || idx > self.last_index() {
            return Ok(0);
        }
        if let Some(t) = self.unstable.maybe_term(idx) {
            return Ok(t);
        }
        self.store.term(idx)
        // END STAGE 2AA
    }

    /// The term of the last entry.
    pub fn last_term(&self) -> u64 {
        self.term(self.last_index())
            .expect("the last entry's term is always known")
    }

    /// The term of `idx`, with 0 for a compacted index.
    pub fn zero_term_on_compacted(&self, idx: u64) -> u64 {
        match self.term(idx) {
            Ok(t) => t,
            Err(Error::Store(StorageError::Compacted)) => 0,
            Err(e) => panic!("unexpected error reading term {idx}: {e}"),
        }
    }

    /// Whether the entry at `idx` has term `term`.
    pub fn match_term(&self, idx: u64, term: u64) -> bool {
        self.term(idx).is_ok_and(|t| t == term)
    }

    /// Whether a log ending at (`last_index`, `term`) is at least as up to date as this one.
    /// (Raft's election restriction: a later last term wins; with equal last terms, the longer
    /// log.)
    pub fn is_up_to_date(&self, last_index: u64, term: u64) -> bool {
        // STAGE 2AB else
        term > self.last_term() || (term == self.last_term() && last_index >= self.last_index())
        // ELSE
        // // Until then every candidate counts as up to date.
        // let _ = (last_index, term);
        // true
        // END STAGE 2AB
    }

    /// Appends a leader's entries that follow (`idx`, `term`), when this log has that entry:
    /// finds the first conflict, truncates from there, appends the rest and commits up to
    /// `min(committed, last new index)`. Returns the last new index, or None on mismatch.
    ///
    /// # Panics
    /// When the conflict is at or below the commit index (a committed entry would change).
    pub fn maybe_append(
        &mut self,
        idx: u64,
        term: u64,
        committed: u64,
        ents: &[Entry],
    ) -> Option<u64> {
        // STAGE 2AB: check the previous entry, append from the first conflict (`find_conflict`) on, then commit
        if !self.match_term(idx, term) {
            return None;
        }
        let last_new = idx + ents.len() as u64;
        let conflict = self.find_conflict(ents);
        if conflict != 0 {
            assert!(
                conflict > self.committed,
                "entry {} conflicts with committed entry (committed {})",
                conflict,
                self.committed
            );
            let start = (conflict - (idx + 1)) as usize;
            self.append(&ents[start..]);
        }
        self.commit_to(committed.min(last_new));
        Some(last_new)
        // END STAGE 2AB
    }

    /// The index of the first entry of `ents` whose term differs from this log's (or that this log
    /// lacks); 0 when all match.
    pub fn find_conflict(&self, ents: &[Entry]) -> u64 {
        // STAGE 2AB: the first entry whose (index, term) this log does not have
        for e in ents {
            if !self.match_term(e.index, e.term) {
                if e.index <= self.last_index() {
                    slog::info!(self.logger, "found conflict";
                        "index" => e.index, "term" => self.zero_term_on_compacted(e.index),
                        "conflicting_term" => e.term);
                }
                return e.index;
            }
        }
        0
        // END STAGE 2AB
    }

    /// For fast backtracking: the largest index `<= idx` whose term is `<= term`, with its term.
    /// A leader whose entry at (`idx`, `term`) was rejected can skip every index above it.
    pub fn find_conflict_by_term(&self, idx: u64, term: u64) -> (u64, u64) {
        let mut i = idx.min(self.last_index());
        loop {
            match self.term(i) {
                Ok(t) if t > term && i > 0 => i -= 1,
                Ok(t) => return (i, t),
                Err(_) => return (i, 0),
            }
        }
    }

    /// Appends entries (replacing any conflicting tail). Returns the new last index.
    ///
    /// # Panics
    /// When the entries would replace a committed entry.
    pub fn append(&mut self, ents: &[Entry]) -> u64 {
        if ents.is_empty() {
            return self.last_index();
        }
        let after = ents[0].index - 1;
        assert!(
            after >= self.committed,
            "append after {} is below committed {}",
            after,
            self.committed
        );
        self.unstable.truncate_and_append(ents);
        self.last_index()
    }

    /// The entries not yet persisted.
    pub fn unstable_entries(&self) -> &[Entry] {
        // STAGE 2AB: they are the unstable tail's
        &self.unstable.entries
        // END STAGE 2AB
    }

    /// The committed entries not yet applied (TinyKV's `nextEnts`).
    pub fn next_entries(&self) -> Vec<Entry> {
        // STAGE 2AB: the entries after `applied` (and not before the first index) up to `committed`
        let off = (self.applied + 1).max(self.first_index());
        if self.committed + 1 > off {
            return self
                .slice(off, self.committed + 1, NO_LIMIT)
                .expect("committed entries are available");
        }
        Vec::new()
        // END STAGE 2AB
    }

    /// Whether there are committed entries to apply.
    pub fn has_next_entries(&self) -> bool {
        // STAGE 2AB: whether `next_entries` would return any
        self.committed + 1 > (self.applied + 1).max(self.first_index())
        // END STAGE 2AB
    }

    /// The snapshot to send: the pending one, or the storage's.
    pub fn snapshot(&self, request_index: u64) -> Result<Snapshot> {
        if let Some(s) = &self.unstable.snapshot {
            return Ok(s.clone());
        }
        self.store.snapshot(request_index)
    }

    /// The entries from `idx` to the end, limited to about `max_size` bytes.
    pub fn entries(&self, idx: u64, max_size: u64) -> Result<Vec<Entry>> {
        if idx > self.last_index() {
            return Ok(Vec::new());
        }
        self.slice(idx, self.last_index() + 1, max_size)
    }

    /// Every entry held, from the first index on (a test and debugging helper).
    pub fn all_entries(&self) -> Vec<Entry> {
        // STAGE 2AB: the entries from the first index to the last (retry if a compaction raced the read)
        match self.entries(self.first_index(), NO_LIMIT) {
            Ok(ents) => ents,
            Err(Error::Store(StorageError::Compacted)) => self.all_entries(),
            Err(e) => panic!("reading all entries: {e}"),
        }
        // END STAGE 2AB
    }

    /// Raises the commit index to `to`.
    ///
    /// # Panics
    /// When `to` is past the last index (the log would be corrupt).
    pub fn commit_to(&mut self, to: u64) {
        if self.committed < to {
            assert!(
                self.last_index() >= to,
                "commit index {} is out of range [last index {}]; the log is corrupt, truncated or lost",
                to,
                self.last_index()
            );
            self.committed = to;
        }
    }

    /// Commits up to `max_index` when that entry is of term `term` (a leader only commits entries of
    /// its own term by counting replicas). Returns whether the commit index moved.
    pub fn maybe_commit(&mut self, max_index: u64, term: u64) -> bool {
        // STAGE 2AB: commit only forward, and only an entry of `term`
        if max_index > self.committed && self.zero_term_on_compacted(max_index) == term {
            self.commit_to(max_index);
            return true;
        }
        false
        // END STAGE 2AB
    }

    /// The application applied up to `idx`.
    ///
    /// # Panics
    /// When `idx` is not within `[applied, committed]`.
    pub fn applied_to(&mut self, idx: u64) {
        if idx == 0 {
            return;
        }
        assert!(
            self.committed >= idx && idx >= self.applied,
            "applied({}) is out of range [prev applied({}), committed({})]",
            idx,
            self.applied,
            self.committed
        );
        self.applied = idx;
    }

    /// The application persisted entries up to (`idx`, `term`).
    pub fn stable_to(&mut self, idx: u64, term: u64) {
        self.unstable.stable_to(idx, term);
    }

    /// The application persisted the snapshot at `idx`.
    pub fn stable_snap_to(&mut self, idx: u64) {
        self.unstable.stable_snap_to(idx);
    }

    /// Replaces the log with a snapshot; it becomes committed.
    pub fn restore(&mut self, snap: Snapshot) {
        // STAGE 2C: the snapshot's index becomes the commit index, and the unstable tail restarts from the snapshot
        let meta = snap.metadata.clone().unwrap_or_default();
        slog::info!(self.logger, "log starts to restore snapshot";
            "index" => meta.index, "term" => meta.term);
        self.committed = meta.index;
        self.unstable.restore(snap);
        // END STAGE 2C
    }

    /// Entries `[lo, hi)` from storage and the unstable tail, limited to about `max_size` bytes.
    pub fn slice(&self, lo: u64, hi: u64, max_size: u64) -> Result<Vec<Entry>> {
        if lo == hi {
            return Ok(Vec::new());
        }
        assert!(lo < hi, "invalid slice {lo} > {hi}");
        let first = self.first_index();
        if lo < first {
            return Err(StorageError::Compacted.into());
        }
        let upper = self.last_index() + 1;
        assert!(
            hi <= upper,
            "slice [{lo}, {hi}) out of bound [{first}, {upper})"
        );
        let mut ents = Vec::new();
        if lo < self.unstable.offset {
            let stored = self
                .store
                .entries(lo, hi.min(self.unstable.offset), max_size)?;
            // The storage stopped early because of the size limit: that is all.
            if (stored.len() as u64) < hi.min(self.unstable.offset) - lo {
                return Ok(stored);
            }
            ents = stored;
        }
        if hi > self.unstable.offset {
            let from = lo.max(self.unstable.offset);
            ents.extend_from_slice(self.unstable.slice(from, hi));
        }
        limit_size(&mut ents, max_size);
        Ok(ents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;
    use crate::util::default_logger;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn log_with(prev: &[Entry]) -> RaftLog<MemStorage> {
        let mut l = RaftLog::new(MemStorage::new(), default_logger());
        l.append(prev);
        l
    }

    #[test]
    fn test_find_conflict() {
        let prev = [ent(1, 1), ent(2, 2), ent(3, 3)];
        let cases: Vec<(Vec<Entry>, u64)> = vec![
            (vec![], 0),
            (vec![ent(1, 1), ent(2, 2), ent(3, 3)], 0),
            (vec![ent(2, 2), ent(3, 3)], 0),
            (vec![ent(3, 3)], 0),
            (vec![ent(1, 1), ent(2, 2), ent(3, 3), ent(4, 4)], 4),
            (vec![ent(4, 4), ent(5, 4)], 4),
            (vec![ent(1, 4), ent(2, 4)], 1),
            (vec![ent(2, 1), ent(3, 4), ent(4, 4)], 2),
            (vec![ent(3, 1), ent(4, 2), ent(5, 4)], 3),
        ];
        for (ents, want) in cases {
            assert_eq!(log_with(&prev).find_conflict(&ents), want, "{ents:?}");
        }
    }

    #[test]
    fn test_find_conflict_by_term() {
        let l = log_with(&[ent(1, 1), ent(2, 1), ent(3, 2), ent(4, 4), ent(5, 4)]);
        assert_eq!(l.find_conflict_by_term(5, 4), (5, 4));
        assert_eq!(l.find_conflict_by_term(5, 3), (3, 2));
        assert_eq!(l.find_conflict_by_term(5, 1), (2, 1));
        assert_eq!(
            l.find_conflict_by_term(9, 2),
            (3, 2),
            "clamped to the last index"
        );
        assert_eq!(l.find_conflict_by_term(5, 0), (0, 0));
    }

    #[test]
    fn test_maybe_append_and_commit() {
        let prev = [ent(1, 1), ent(2, 2), ent(3, 3)];
        // matching append: commit = min(leader commit, last new)
        let mut l = log_with(&prev);
        assert_eq!(l.maybe_append(3, 3, 5, &[ent(4, 4)]), Some(4));
        assert_eq!(l.committed, 4);
        // mismatch
        let mut l = log_with(&prev);
        assert_eq!(l.maybe_append(3, 2, 3, &[ent(4, 4)]), None);
        assert_eq!(l.committed, 0);
        // conflict replaces the tail
        let mut l = log_with(&prev);
        assert_eq!(l.maybe_append(1, 1, 1, &[ent(2, 4)]), Some(2));
        assert_eq!(l.last_index(), 2);
        assert_eq!(l.term(2).unwrap(), 4);
        assert_eq!(l.committed, 1);
    }

    #[test]
    #[should_panic(expected = "conflicts with committed")]
    fn test_maybe_append_conflict_below_commit_panics() {
        let mut l = log_with(&[ent(1, 1), ent(2, 2), ent(3, 3)]);
        l.commit_to(3);
        l.maybe_append(1, 1, 3, &[ent(2, 4)]);
    }

    #[test]
    fn test_next_entries_and_applied() {
        let s = MemStorage::new();
        s.wl()
            .apply_snapshot(Snapshot {
                metadata: Some(proto::eraftpb::SnapshotMetadata {
                    index: 3,
                    term: 1,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .unwrap();
        let mut l = RaftLog::new(s, default_logger());
        assert_eq!((l.committed, l.applied), (3, 3), "start at the snapshot");
        l.append(&[ent(4, 1), ent(5, 1), ent(6, 1)]);
        l.commit_to(5);
        assert_eq!(l.next_entries(), vec![ent(4, 1), ent(5, 1)]);
        l.applied_to(4);
        assert_eq!(l.next_entries(), vec![ent(5, 1)]);
        assert!(l.has_next_entries());
        l.applied_to(5);
        assert!(!l.has_next_entries());
    }

    #[test]
    fn test_slice_across_storage_and_unstable() {
        let s = MemStorage::new();
        s.wl().append(&[ent(1, 1), ent(2, 1), ent(3, 1)]).unwrap();
        let mut l = RaftLog::new(s, default_logger());
        l.append(&[ent(4, 2), ent(5, 2)]);
        assert_eq!(l.stabled(), 3);
        assert_eq!(
            l.slice(2, 5, NO_LIMIT).unwrap(),
            vec![ent(2, 1), ent(3, 1), ent(4, 2)]
        );
        assert_eq!(l.slice(2, 6, 0).unwrap(), vec![ent(2, 1)]);
        assert_eq!(l.all_entries().len(), 5);
        l.store.wl().compact(2).unwrap();
        assert_eq!(l.slice(1, 3, NO_LIMIT), Err(StorageError::Compacted.into()));
        let tail = l.unstable_entries().to_vec();
        l.store.wl().append(&tail).unwrap();
        l.stable_to(5, 2);
        assert!(l.unstable_entries().is_empty());
        assert_eq!(l.stabled(), 5);
    }
}
