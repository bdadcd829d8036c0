//! `Unstable`: the tail of the log that raft holds in memory until the application has persisted it,
//! and an incoming snapshot not yet persisted.
//!
//! Invariants kept here:
//! - `entries[i].index == offset + i`;
//! - with a snapshot, `offset == snapshot index + 1` at the time it was restored;
//! - everything before `offset` is in the `Storage` (or in the snapshot).

use proto::eraftpb::{Entry, Snapshot};

/// Entries and a snapshot not yet persisted.
#[derive(Clone, Debug, Default)]
pub struct Unstable {
    /// An incoming snapshot, until the application persists it.
    pub snapshot: Option<Snapshot>,
    /// Entries not yet persisted, starting at `offset`.
    pub entries: Vec<Entry>,
    /// The index of `entries[0]` (or of the next entry when there is none).
    pub offset: u64,
}

fn snap_index(s: &Snapshot) -> u64 {
    s.metadata.as_ref().map_or(0, |m| m.index)
}

fn snap_term(s: &Snapshot) -> u64 {
    s.metadata.as_ref().map_or(0, |m| m.term)
}

impl Unstable {
    /// An empty tail that starts at `offset`.
    pub fn new(offset: u64) -> Self {
        Unstable {
            offset,
            ..Default::default()
        }
    }

    /// The first index, when a snapshot is pending.
    pub fn maybe_first_index(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| snap_index(s) + 1)
    }

    /// The last index, when there are unstable entries or a pending snapshot.
    pub fn maybe_last_index(&self) -> Option<u64> {
        match self.entries.last() {
            Some(e) => Some(e.index),
            None => self.snapshot.as_ref().map(snap_index),
        }
    }

    /// The term of `idx`, when it is known here.
    pub fn maybe_term(&self, idx: u64) -> Option<u64> {
        if idx < self.offset {
            let s = self.snapshot.as_ref()?;
            return (snap_index(s) == idx).then(|| snap_term(s));
        }
        let last = self.maybe_last_index()?;
        if idx > last {
            return None;
        }
        Some(self.entries[(idx - self.offset) as usize].term)
    }

    /// The application persisted entries up to `idx` (of term `term`): drop them from the tail.
    /// Ignored when the entry at `idx` was replaced since (its term differs).
    pub fn stable_to(&mut self, idx: u64, term: u64) {
        if idx < self.offset {
            return;
        }
        if self.maybe_term(idx) == Some(term) {
            let n = (idx + 1 - self.offset) as usize;
            self.entries.drain(..n);
            self.offset = idx + 1;
        }
    }

    /// The application persisted the snapshot at `idx`.
    pub fn stable_snap_to(&mut self, idx: u64) {
        if self.snapshot.as_ref().is_some_and(|s| snap_index(s) == idx) {
            self.snapshot = None;
        }
    }

    /// Replaces everything with an incoming snapshot.
    pub fn restore(&mut self, snap: Snapshot) {
        self.entries.clear();
        self.offset = snap_index(&snap) + 1;
        self.snapshot = Some(snap);
    }

    /// Appends `ents` (consecutive, non-empty), replacing any entries from `ents[0].index` on. When
    /// `ents` starts at or before `offset`, the tail restarts at `ents[0].index` (the storage
    /// truncates the persisted entries it replaces when they are persisted).
    pub fn truncate_and_append(&mut self, ents: &[Entry]) {
        let after = ents[0].index;
        if after == self.offset + self.entries.len() as u64 {
            // The common case: directly after the tail.
        } else if after <= self.offset {
            // Replaces the whole tail (and possibly persisted entries: the storage's append will
            // truncate those when this tail is persisted).
            self.offset = after;
            self.entries.clear();
        } else {
            // Keeps the tail before `after`.
            self.entries.truncate((after - self.offset) as usize);
        }
        self.entries.extend_from_slice(ents);
    }

    /// The entries `[lo, hi)`, which must lie within the tail.
    pub fn slice(&self, lo: u64, hi: u64) -> &[Entry] {
        assert!(lo <= hi, "invalid unstable slice {lo} > {hi}");
        let upper = self.offset + self.entries.len() as u64;
        assert!(
            lo >= self.offset && hi <= upper,
            "unstable slice [{lo}, {hi}) out of bound [{}, {upper})",
            self.offset
        );
        &self.entries[(lo - self.offset) as usize..(hi - self.offset) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::eraftpb::SnapshotMetadata;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn snap(index: u64, term: u64) -> Snapshot {
        Snapshot {
            metadata: Some(SnapshotMetadata {
                index,
                term,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn test_unstable_terms_and_bounds() {
        let mut u = Unstable::new(5);
        u.truncate_and_append(&[ent(5, 1), ent(6, 1)]);
        assert_eq!(u.maybe_last_index(), Some(6));
        assert_eq!(u.maybe_first_index(), None);
        assert_eq!(u.maybe_term(5), Some(1));
        assert_eq!(u.maybe_term(4), None);
        assert_eq!(u.maybe_term(7), None);
        u.restore(snap(9, 2));
        assert_eq!(u.maybe_first_index(), Some(10));
        assert_eq!(u.maybe_last_index(), Some(9));
        assert_eq!(u.maybe_term(9), Some(2));
        assert_eq!(u.offset, 10);
    }

    #[test]
    fn test_unstable_stable_to() {
        let mut u = Unstable::new(5);
        u.truncate_and_append(&[ent(5, 1), ent(6, 1), ent(7, 2)]);
        u.stable_to(6, 2);
        assert_eq!(u.offset, 5, "wrong term: ignored");
        u.stable_to(6, 1);
        assert_eq!(u.offset, 7);
        assert_eq!(u.entries, vec![ent(7, 2)]);
        u.stable_to(3, 1);
        assert_eq!(u.offset, 7, "below the tail: ignored");
    }

    #[test]
    fn test_unstable_truncate_and_append() {
        let base = || {
            let mut u = Unstable::new(5);
            u.truncate_and_append(&[ent(5, 1), ent(6, 1), ent(7, 1)]);
            u
        };
        let mut u = base();
        u.truncate_and_append(&[ent(8, 1)]);
        assert_eq!(u.entries.len(), 4);
        let mut u = base();
        u.truncate_and_append(&[ent(6, 2), ent(7, 2)]);
        assert_eq!(u.entries, vec![ent(5, 1), ent(6, 2), ent(7, 2)]);
        let mut u = base();
        u.truncate_and_append(&[ent(4, 2)]);
        assert_eq!((u.offset, u.entries.clone()), (4, vec![ent(4, 2)]));
    }
}
