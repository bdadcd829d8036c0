//! `PeerStorage`: a region replica's raft log and states on the store's two engines, seen by raft
//! through the `raft::Storage` trait (TinyKV's `kv/raftstore/peer_storage.go`).
//!
//! - raft engine: the log entries (`raft_log_key`) and `RaftLocalState` (hard state, last index
//!   and term);
//! - kv engine (CF `raft`): `RaftApplyState` (applied index, truncated state) and
//!   `RegionLocalState`.
//!
//! Entries before `truncated_state.index` are gone (compacted); `truncated_state` itself plays the
//! role of raft's dummy entry. Writes are never performed here directly: they go into the round's
//! write batches, which the store writes (and syncs) once for all peers. (One exception: opening a
//! replica whose snapshot install a crash interrupted repairs its raft state at once.)
//!
//! Reads of the log hit an entry cache of the newest entries first: raft reads back entries
//! written a round earlier (a leader sends and applies them, a follower applies them), and
//! serving those from memory saves a RocksDB scan and a decode per round on every replica (a
//! visible share of a follower's CPU under load: see docs/PERFORMANCE.md). Older entries, for a
//! lagging follower, are read from the raft engine.
//!
//! Snapshots: [`Storage::snapshot`] never builds one itself. It answers
//! `SnapshotTemporarilyUnavailable` and raises `snapshot_requested`, which the peer turns into a
//! generation task; once the generated snapshot is handed back (`generated_snapshot`), it is
//! answered until it becomes stale (older than the truncated index, or of an older epoch),
//! and then a new one is requested. [`PeerStorage::apply_snapshot`] records a received snapshot in
//! the states (the data itself is installed by a worker).

use std::cell::Cell;
use std::collections::VecDeque;

use prost::Message as _;
use proto::eraftpb::{Entry, HardState, Snapshot};
use proto::metapb::Region;
use proto::raft_serverpb::{
    PeerState, RaftApplyState, RaftLocalState, RaftTruncatedState, RegionLocalState,
};
use raft::{RaftState, Ready, Storage, StorageError};

use crate::engine::{Engine, Engines, WriteBatch, CF_DEFAULT, CF_RAFT};
use crate::errors::{Error, Result};
use crate::keys;
use crate::snap::{snapshot_data, SnapKey};
use crate::util::conf_state_from_region;

fn storage_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

/// Most bytes of log entries (encoded size) a replica keeps in its [`EntryCache`].
const ENTRY_CACHE_MAX_BYTES: usize = 4 << 20;

/// The newest entries of a replica's log, contiguous and exactly as added to the raft write
/// batches: appending over a suffix replaces it, appending after a gap starts afresh, and the
/// oldest entries are dropped past [`ENTRY_CACHE_MAX_BYTES`] or once compacted.
#[derive(Default)]
struct EntryCache {
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl EntryCache {
    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    fn pop_back(&mut self) {
        if let Some(e) = self.entries.pop_back() {
            self.bytes -= e.encoded_len();
        }
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.encoded_len();
        }
    }

    /// Adds `entries` (contiguous, non-empty), replacing every cached entry at or after the first.
    fn append(&mut self, entries: &[&Entry]) {
        let first = entries[0].index;
        let joins = match (self.entries.front(), self.entries.back()) {
            (Some(f), Some(b)) => first > f.index && first <= b.index + 1,
            _ => false,
        };
        if !joins {
            self.clear();
        }
        while self.entries.back().is_some_and(|e| e.index >= first) {
            self.pop_back();
        }
        for &e in entries {
            self.bytes += e.encoded_len();
            self.entries.push_back(e.clone());
        }
        while self.bytes > ENTRY_CACHE_MAX_BYTES {
            self.pop_front();
        }
    }

    /// Drops the entries at or before `index` (compacted).
    fn compact_to(&mut self, index: u64) {
        while self.entries.front().is_some_and(|e| e.index <= index) {
            self.pop_front();
        }
    }

    /// The index of the oldest cached entry.
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index)
    }

    /// The entry at `index`, if cached.
    fn get(&self, index: u64) -> Option<&Entry> {
        let first = self.first_index()?;
        self.entries
            .get(usize::try_from(index.checked_sub(first)?).ok()?)
    }

    /// Entries `[low, high)` limited to `max_size` bytes (at least one), as
    /// [`Storage::entries`]; None unless all of `[low, high)` is cached.
    fn slice(&self, low: u64, high: u64, max_size: u64) -> Option<Vec<Entry>> {
        let first = self.first_index()?;
        let last = self.entries.back()?.index;
        if low < first || high > last + 1 {
            return None;
        }
        let start = (low - first) as usize;
        let mut ents = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        for e in self.entries.range(start..start + (high - low) as usize) {
            size += e.encoded_len() as u64;
            if !ents.is_empty() && size > max_size {
                break;
            }
            ents.push(e.clone());
        }
        Some(ents)
    }
}

/// A region replica's durable raft state.
pub struct PeerStorage<K: Engine, R: Engine> {
    /// The store's engines.
    pub engines: Engines<K, R>,
    /// The region as this replica knows it.
    pub region: Region,
    /// Hard state, last index and last term, as written to the raft engine.
    pub raft_state: RaftLocalState,
    /// Applied index and truncated state, as written to the kv engine.
    pub apply_state: RaftApplyState,
    /// Set when raft asked for a snapshot; the peer schedules the generation.
    pub snapshot_requested: Cell<bool>,
    /// The last generated snapshot, handed to raft while it is not stale.
    pub generated_snapshot: std::cell::RefCell<Option<Snapshot>>,
    /// The snapshot whose install was interrupted by a crash (the region state on disk says
    /// `Applying`), found when the storage was opened.
    interrupted_snapshot: Option<SnapKey>,
    /// The newest log entries, in memory.
    cache: EntryCache,
}

/// The initial raft state of a region replica without one: a bootstrapped or split region (it has
/// peers) starts at term and index 5; a replica created by a message (no peers yet) starts empty and
/// receives a snapshot.
fn init_raft_state<R: Engine>(raft: &R, region: &Region) -> Result<RaftLocalState> {
    let stored = raft.get_msg_cf::<RaftLocalState>(CF_DEFAULT, &keys::raft_state_key(region.id))?;
    if let Some(s) = stored {
        if region.peers.is_empty() || s.last_index >= keys::RAFT_INIT_LOG_INDEX {
            return Ok(s);
        }
    }
    // A split-created region may find the empty state of the replica a message created here
    // before the split was applied (its term and vote are kept; the log starts at 5).
    let mut s = stored.unwrap_or_default();
    if !region.peers.is_empty() {
        let hs = s.hard_state.unwrap_or_default();
        s.last_index = keys::RAFT_INIT_LOG_INDEX;
        s.last_term = keys::RAFT_INIT_LOG_TERM;
        s.hard_state = Some(HardState {
            term: hs.term.max(keys::RAFT_INIT_LOG_TERM),
            commit: keys::RAFT_INIT_LOG_INDEX,
            vote: hs.vote,
        });
    }
    Ok(s)
}

fn init_apply_state<K: Engine>(kv: &K, region: &Region) -> Result<RaftApplyState> {
    if let Some(s) = kv.get_msg_cf::<RaftApplyState>(CF_RAFT, &keys::apply_state_key(region.id))? {
        return Ok(s);
    }
    if region.peers.is_empty() {
        return Ok(RaftApplyState::default());
    }
    Ok(initial_apply_state())
}

/// The apply state a region starts with when it is bootstrapped or split off: everything up to
/// index 5 (term 5) applied and truncated (TinyKV's `RaftInitLogIndex`/`RaftInitLogTerm`).
pub fn initial_apply_state() -> RaftApplyState {
    RaftApplyState {
        applied_index: keys::RAFT_INIT_LOG_INDEX,
        truncated_state: Some(RaftTruncatedState {
            index: keys::RAFT_INIT_LOG_INDEX,
            term: keys::RAFT_INIT_LOG_TERM,
        }),
    }
}

/// Adds `region`'s `RegionLocalState` in `state` to `wb`.
pub fn put_region_state(wb: &mut WriteBatch, region: &Region, state: PeerState) {
    wb.put_msg_cf(
        CF_RAFT,
        keys::region_state_key(region.id),
        &RegionLocalState {
            state: state as i32,
            region: Some(region.clone()),
        },
    );
}

impl<K: Engine, R: Engine> PeerStorage<K, R> {
    /// Loads (or initializes) the replica's states.
    pub fn new(engines: Engines<K, R>, region: Region) -> Result<Self> {
        let mut raft_state = init_raft_state(&engines.raft, &region)?;
        let apply_state = init_apply_state(&engines.kv, &region)?;
        let region_state = engines
            .kv
            .get_msg_cf::<RegionLocalState>(CF_RAFT, &keys::region_state_key(region.id))?;
        let mut interrupted_snapshot = None;
        if region_state.is_some_and(|s| s.state() == PeerState::Applying) {
            let truncated = apply_state.truncated_state.unwrap_or_default();
            interrupted_snapshot = Some(SnapKey {
                region_id: region.id,
                term: truncated.term,
                index: truncated.index,
            });
            let commit = raft_state.hard_state.map_or(0, |h| h.commit);
            if raft_state.last_index < truncated.index || commit < truncated.index {
                // The crash came between the synced `Applying` state and the raft state of the
                // same round: the raft state still describes the old log (shorter, or longer with
                // entries the snapshot replaces). Make it the snapshot's, as that round would have.
                let mut hs = raft_state.hard_state.unwrap_or_default();
                hs.commit = hs.commit.max(truncated.index);
                hs.term = hs.term.max(truncated.term);
                let mut wb = WriteBatch::default();
                wb.delete_range_cf(
                    CF_DEFAULT,
                    keys::raft_log_key(region.id, 0),
                    keys::raft_log_key(region.id, raft_state.last_index.max(truncated.index) + 1),
                );
                raft_state.hard_state = Some(hs);
                raft_state.last_index = truncated.index;
                raft_state.last_term = truncated.term;
                wb.put_msg_cf(CF_DEFAULT, keys::raft_state_key(region.id), &raft_state);
                engines.raft.write(&wb, true)?;
            }
        }
        // A leader applies entries it committed before their commit index is written with the
        // round's raft state (`Peer::handle_ready_early`), so a crash in between leaves the
        // applied index ahead of the persisted commit. Only committed entries are ever applied,
        // so the commit index is at least the applied one.
        if let Some(hs) = raft_state.hard_state.as_mut() {
            hs.commit = hs.commit.max(apply_state.applied_index);
        }
        if raft_state.last_index < apply_state.applied_index {
            return Err(Error::Other(format!(
                "region {}: raft log ends at {} but {} is applied: the raft engine lost synced data",
                region.id, raft_state.last_index, apply_state.applied_index
            )));
        }
        Ok(PeerStorage {
            engines,
            region,
            raft_state,
            apply_state,
            snapshot_requested: Cell::new(false),
            generated_snapshot: std::cell::RefCell::new(None),
            interrupted_snapshot,
            cache: EntryCache::default(),
        })
    }

    /// The snapshot whose install a crash interrupted, if any (found when opened).
    pub fn interrupted_snapshot(&self) -> Option<SnapKey> {
        self.interrupted_snapshot
    }

    /// Records the received snapshot `snap` in the states, in memory and in the round's batches:
    /// the old log entries are deleted and the raft state points at the snapshot (`raft_wb`); the
    /// apply state (applied = truncated = the snapshot's index and term) and the region state
    /// `Applying` with the snapshot's region go to `snap_wb`, which the store syncs first; the
    /// entry cache is emptied and `region` becomes the snapshot's. Returns the snapshot's key and
    /// region; the data is installed later by a worker.
    pub fn apply_snapshot(
        &mut self,
        snap: &Snapshot,
        snap_wb: &mut WriteBatch,
        raft_wb: &mut WriteBatch,
    ) -> Result<(SnapKey, Region)> {
        // STAGE 2C: replace the log by the snapshot's index and term in raft_state and apply_state, and record its region as Applying
        let key = SnapKey::from_snapshot(self.region.id, snap);
        let data = snapshot_data(snap)?;
        let region = data
            .region
            .ok_or_else(|| Error::Other(format!("snapshot {key} carries no region")))?;
        let id = self.region.id;
        raft_wb.delete_range_cf(
            CF_DEFAULT,
            keys::raft_log_key(id, 0),
            keys::raft_log_key(id, self.raft_state.last_index.max(key.index) + 1),
        );
        self.raft_state.last_index = key.index;
        self.raft_state.last_term = key.term;
        self.cache.clear();
        raft_wb.put_msg_cf(CF_DEFAULT, keys::raft_state_key(id), &self.raft_state);
        self.apply_state = RaftApplyState {
            applied_index: key.index,
            truncated_state: Some(RaftTruncatedState {
                index: key.index,
                term: key.term,
            }),
        };
        snap_wb.put_msg_cf(CF_RAFT, keys::apply_state_key(id), &self.apply_state);
        put_region_state(snap_wb, &region, PeerState::Applying);
        self.region = region.clone();
        Ok((key, region))
        // END STAGE 2C
    }

    /// Whether the replica has its region's metadata (a replica created by a message has not
    /// until it applies a snapshot).
    pub fn is_initialized(&self) -> bool {
        !self.region.peers.is_empty()
    }

    /// The index of the last compacted entry.
    pub fn truncated_index(&self) -> u64 {
        self.apply_state
            .truncated_state
            .as_ref()
            .map_or(0, |t| t.index)
    }

    /// The term of the last compacted entry.
    pub fn truncated_term(&self) -> u64 {
        self.apply_state
            .truncated_state
            .as_ref()
            .map_or(0, |t| t.term)
    }

    /// The applied index.
    pub fn applied_index(&self) -> u64 {
        self.apply_state.applied_index
    }

    fn hard_state(&self) -> HardState {
        self.raft_state.hard_state.unwrap_or_default()
    }

    fn check_range(&self, low: u64, high: u64) -> raft::Result<()> {
        if low > high {
            return Err(storage_err(format!(
                "low {low} is greater than high {high}"
            )));
        }
        if low <= self.truncated_index() {
            return Err(StorageError::Compacted.into());
        }
        if high > self.raft_state.last_index + 1 {
            return Err(storage_err(format!(
                "entries' high {} is out of bound, last index {}",
                high, self.raft_state.last_index
            )));
        }
        Ok(())
    }

    /// Adds `entries` to the round's raft write batch, deleting any older tail past the new last
    /// entry (it can never be committed), and updates `raft_state`'s last index and term (the
    /// caller writes the raft state). Entries at or before the truncated index are skipped; the
    /// entries added also go to the entry cache (`EntryCache::append`), which reads of the log
    /// try first.
    pub fn append(&mut self, entries: &[Entry], raft_wb: &mut WriteBatch) {
        // STAGE 2B: write the entries from the first index on, delete the stale tail, update raft_state
        let first = self.truncated_index() + 1;
        let entries: Vec<&Entry> = entries.iter().filter(|e| e.index >= first).collect();
        let Some(last) = entries.last() else {
            return;
        };
        let (last_index, last_term) = (last.index, last.term);
        let region_id = self.region.id;
        for e in &entries {
            raft_wb.put_msg_cf(CF_DEFAULT, keys::raft_log_key(region_id, e.index), *e);
        }
        for i in last_index + 1..=self.raft_state.last_index {
            raft_wb.delete_cf(CF_DEFAULT, keys::raft_log_key(region_id, i));
        }
        self.cache.append(&entries);
        self.raft_state.last_index = last_index;
        self.raft_state.last_term = last_term;
        // END STAGE 2B
    }

    /// Adds what a `Ready` asks to persist (entries, hard state) to the round's raft write batch,
    /// and to `raft_state` in memory; the raft state is written only when it changed. (A snapshot
    /// in the `Ready` was recorded by `apply_snapshot` before this.)
    pub fn save_ready_state(&mut self, ready: &Ready, raft_wb: &mut WriteBatch) {
        // STAGE 2B: append the Ready's entries, take its hard state, write raft_state if it changed
        let before = self.raft_state;
        self.append(&ready.entries, raft_wb);
        if let Some(hs) = &ready.hard_state {
            self.raft_state.hard_state = Some(*hs);
        }
        if self.raft_state != before {
            raft_wb.put_msg_cf(
                CF_DEFAULT,
                keys::raft_state_key(self.region.id),
                &self.raft_state,
            );
        }
        // END STAGE 2B
    }

    /// Records that the log is compacted up to `index` (inclusive), with `term`: the new
    /// truncated state, in memory (the caller writes the apply state).
    pub fn compact_to(&mut self, index: u64, term: u64) {
        self.apply_state.truncated_state = Some(RaftTruncatedState { index, term });
        self.cache.compact_to(index);
    }

    /// Deletes every meta key and log entry of the replica (when it is destroyed).
    pub fn clear_meta(&self, kv_wb: &mut WriteBatch, raft_wb: &mut WriteBatch) {
        let id = self.region.id;
        kv_wb.delete_cf(CF_RAFT, keys::region_state_key(id));
        kv_wb.delete_cf(CF_RAFT, keys::apply_state_key(id));
        clear_raft_meta(id, raft_wb);
    }
}

/// Adds what destroys a replica of `region` to the two batches: in `kv_wb` its apply state
/// deleted, a `Tombstone` region state with `region`, and, when it was initialized (it owns
/// `region`'s range here), its data in every data CF; in `raft_wb` its raft state and log. The
/// kv batch, written first and synced, is the point where the replica is gone.
pub fn destroy_writes(
    region: &Region,
    initialized: bool,
    kv_wb: &mut WriteBatch,
    raft_wb: &mut WriteBatch,
) {
    kv_wb.delete_cf(CF_RAFT, keys::apply_state_key(region.id));
    put_region_state(kv_wb, region, PeerState::Tombstone);
    if initialized {
        for cf in crate::engine::DATA_CFS {
            kv_wb.delete_range_cf(cf, region.start_key.clone(), region.end_key.clone());
        }
    }
    clear_raft_meta(region.id, raft_wb);
}

/// Adds the deletion of a region's raft state and every log entry to `raft_wb`.
pub fn clear_raft_meta(region_id: u64, raft_wb: &mut WriteBatch) {
    raft_wb.delete_cf(CF_DEFAULT, keys::raft_state_key(region_id));
    raft_wb.delete_range_cf(
        CF_DEFAULT,
        keys::raft_log_key(region_id, 0),
        keys::raft_log_key(region_id, u64::MAX),
    );
}

impl<K: Engine, R: Engine> Storage for PeerStorage<K, R> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        if !self.is_initialized() {
            return Ok(RaftState::default());
        }
        Ok(RaftState {
            hard_state: self.hard_state(),
            conf_state: conf_state_from_region(&self.region),
        })
    }

    fn entries(&self, low: u64, high: u64, max_size: u64) -> raft::Result<Vec<Entry>> {
        self.check_range(low, high)?;
        if low == high {
            return Ok(Vec::new());
        }
        if let Some(ents) = self.cache.slice(low, high, max_size) {
            return Ok(ents);
        }
        let region_id = self.region.id;
        let mut ents = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        let mut next = low;
        let mut limited = false;
        let mut decode_err = None;
        self.engines
            .raft
            .scan_cf(
                CF_DEFAULT,
                &keys::raft_log_key(region_id, low),
                &keys::raft_log_key(region_id, high),
                &mut |_, v| {
                    let e = match Entry::decode(v) {
                        Ok(e) => e,
                        Err(err) => {
                            decode_err = Some(err);
                            return Ok(false);
                        }
                    };
                    if e.index != next {
                        // A gap: the entries are not all there.
                        return Ok(false);
                    }
                    size += v.len() as u64;
                    if !ents.is_empty() && size > max_size {
                        limited = true;
                        return Ok(false);
                    }
                    next += 1;
                    ents.push(e);
                    Ok(true)
                },
            )
            .map_err(storage_err)?;
        if let Some(e) = decode_err {
            return Err(storage_err(e));
        }
        if limited || ents.len() as u64 == high - low {
            return Ok(ents);
        }
        Err(StorageError::Unavailable.into())
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated_index() {
            return Ok(self.truncated_term());
        }
        self.check_range(idx, idx + 1)?;
        if self.truncated_term() == self.raft_state.last_term || idx == self.raft_state.last_index {
            return Ok(self.raft_state.last_term);
        }
        if let Some(e) = self.cache.get(idx) {
            return Ok(e.term);
        }
        let e = self
            .engines
            .raft
            .get_msg_cf::<Entry>(CF_DEFAULT, &keys::raft_log_key(self.region.id, idx))
            .map_err(storage_err)?;
        match e {
            Some(e) => Ok(e.term),
            None => Err(StorageError::Unavailable.into()),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.raft_state.last_index)
    }

    fn snapshot(&self, _request_index: u64) -> raft::Result<Snapshot> {
        let mut generated = self.generated_snapshot.borrow_mut();
        if let Some(s) = generated.as_ref() {
            let idx = s.metadata.as_ref().map_or(0, |m| m.index);
            let epoch = |r: &Region| r.region_epoch.map(|e| (e.version, e.conf_ver));
            let snap_epoch = snapshot_data(s)
                .ok()
                .and_then(|d| d.region)
                .and_then(|r| epoch(&r));
            // A snapshot older than the log's start cannot help a follower, and one of an older
            // epoch would install a stale region: an older membership, or a range a split has
            // since cut (a follower holding the split-off region refuses it as overlapping, and
            // would refuse it again at every retry): make a new one.
            if idx >= self.truncated_index() && snap_epoch == epoch(&self.region) {
                return Ok(s.clone());
            }
            *generated = None;
        }
        self.snapshot_requested.set(true);
        Err(StorageError::SnapshotTemporarilyUnavailable.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::{first_region, prepare_bootstrap_region};
    use crate::engine::mem::MemEngine;
    use crate::engine::ALL_CFS;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    /// A peer storage whose log holds `ents`, with the first one as the truncated state (as
    /// TinyKV's `newTestPeerStorageFromEnts`).
    fn storage_with(ents: &[Entry]) -> PeerStorage<MemEngine, MemEngine> {
        let engines = Engines::new(MemEngine::new(&ALL_CFS), MemEngine::new(&[CF_DEFAULT]));
        let region = first_region(1, &[1]);
        prepare_bootstrap_region(&engines, &region).unwrap();
        let mut s = PeerStorage::new(engines, region).unwrap();
        s.apply_state.truncated_state = Some(RaftTruncatedState {
            index: ents[0].index,
            term: ents[0].term,
        });
        s.raft_state.last_index = ents[0].index;
        s.raft_state.last_term = ents[0].term;
        let mut raft_wb = WriteBatch::default();
        s.append(&ents[1..], &mut raft_wb);
        s.apply_state.applied_index = ents.last().unwrap().index;
        let mut kv_wb = WriteBatch::default();
        kv_wb.put_msg_cf(CF_RAFT, keys::apply_state_key(1), &s.apply_state);
        raft_wb.put_msg_cf(CF_DEFAULT, keys::raft_state_key(1), &s.raft_state);
        s.engines.raft.write(&raft_wb, true).unwrap();
        s.engines.kv.write(&kv_wb, true).unwrap();
        s
    }

    fn three() -> PeerStorage<MemEngine, MemEngine> {
        storage_with(&[ent(3, 3), ent(4, 4), ent(5, 5)])
    }

    fn compacted() -> raft::Error {
        StorageError::Compacted.into()
    }

    #[test]
    fn test_peer_storage_term() {
        let s = three();
        assert_eq!(s.term(2).unwrap_err(), compacted());
        assert_eq!(s.term(3).unwrap(), 3);
        assert_eq!(s.term(4).unwrap(), 4);
        assert_eq!(s.term(5).unwrap(), 5);
    }

    #[test]
    fn test_peer_storage_entries() {
        let s = storage_with(&[ent(3, 3), ent(4, 4), ent(5, 5), ent(6, 6)]);
        let size = ent(4, 4).encoded_len() as u64;
        assert_eq!(s.entries(2, 6, u64::MAX).unwrap_err(), compacted());
        assert_eq!(s.entries(3, 4, u64::MAX).unwrap_err(), compacted());
        assert_eq!(s.entries(4, 5, u64::MAX).unwrap(), vec![ent(4, 4)]);
        assert_eq!(
            s.entries(4, 6, u64::MAX).unwrap(),
            vec![ent(4, 4), ent(5, 5)]
        );
        assert_eq!(
            s.entries(4, 7, u64::MAX).unwrap(),
            vec![ent(4, 4), ent(5, 5), ent(6, 6)]
        );
        // A size limit still returns at least one entry.
        assert_eq!(s.entries(4, 7, 0).unwrap(), vec![ent(4, 4)]);
        assert_eq!(
            s.entries(4, 7, size * 2).unwrap(),
            vec![ent(4, 4), ent(5, 5)]
        );
        assert!(s.entries(4, 8, u64::MAX).is_err(), "past the last index");
    }

    #[test]
    fn test_peer_storage_append() {
        let cases: Vec<(Vec<Entry>, Vec<Entry>)> = vec![
            (
                vec![ent(3, 3), ent(4, 4), ent(5, 5)],
                vec![ent(4, 4), ent(5, 5)],
            ),
            (
                vec![ent(3, 3), ent(4, 6), ent(5, 6)],
                vec![ent(4, 6), ent(5, 6)],
            ),
            (
                vec![ent(3, 3), ent(4, 4), ent(5, 5), ent(6, 5)],
                vec![ent(4, 4), ent(5, 5), ent(6, 5)],
            ),
            // entries starting below the first index are trimmed
            (vec![ent(2, 3), ent(3, 3), ent(4, 5)], vec![ent(4, 5)]),
            // a shorter tail deletes the stale entries after it
            (vec![ent(4, 5)], vec![ent(4, 5)]),
            // direct append
            (vec![ent(6, 5)], vec![ent(4, 4), ent(5, 5), ent(6, 5)]),
        ];
        for (i, (append, want)) in cases.into_iter().enumerate() {
            let mut s = three();
            let mut wb = WriteBatch::default();
            s.append(&append, &mut wb);
            s.engines.raft.write(&wb, true).unwrap();
            let last = s.raft_state.last_index;
            let got = s.entries(4, last + 1, u64::MAX).unwrap();
            assert_eq!(got, want, "case {i}");
            // Nothing stale is left after the new last entry.
            let mut beyond = 0;
            s.engines
                .raft
                .scan_cf(
                    CF_DEFAULT,
                    &keys::raft_log_key(1, last + 1),
                    &keys::raft_log_key(1, u64::MAX),
                    &mut |_, _| {
                        beyond += 1;
                        Ok(true)
                    },
                )
                .unwrap();
            assert_eq!(beyond, 0, "case {i}: stale entries after the last index");
        }
    }

    #[test]
    fn test_peer_storage_clear_meta() {
        let s = storage_with(&[ent(3, 3), ent(4, 4), ent(5, 5)]);
        let count = |s: &PeerStorage<MemEngine, MemEngine>| {
            let mut n = 0;
            let mut f = |_: &[u8], _: &[u8]| {
                n += 1;
                Ok(true)
            };
            s.engines
                .kv
                .scan_cf(CF_RAFT, &keys::region_meta_prefix(1), &[], &mut f)
                .unwrap();
            s.engines
                .kv
                .scan_cf(
                    CF_RAFT,
                    &keys::region_raft_prefix(1),
                    &keys::region_meta_prefix(1),
                    &mut f,
                )
                .unwrap();
            s.engines
                .raft
                .scan_cf(CF_DEFAULT, &keys::region_raft_prefix(1), &[], &mut f)
                .unwrap();
            n
        };
        // region state, apply state, raft state and two log entries
        assert_eq!(count(&s), 5);
        let (mut kv_wb, mut raft_wb) = (WriteBatch::default(), WriteBatch::default());
        s.clear_meta(&mut kv_wb, &mut raft_wb);
        s.engines.kv.write(&kv_wb, true).unwrap();
        s.engines.raft.write(&raft_wb, true).unwrap();
        assert_eq!(count(&s), 0);
    }

    #[test]
    fn test_peer_storage_initial_state() {
        let s = three();
        let st = s.initial_state().unwrap();
        assert_eq!(st.conf_state.nodes, vec![1]);
        assert_eq!(st.hard_state.term, 5);
        // A replica created by a message has nothing yet.
        let engines = Engines::new(MemEngine::new(&ALL_CFS), MemEngine::new(&[CF_DEFAULT]));
        let s = PeerStorage::new(
            engines,
            Region {
                id: 9,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!s.is_initialized());
        assert_eq!(s.initial_state().unwrap(), RaftState::default());
        assert_eq!(s.first_index().unwrap(), 1);
        assert_eq!(s.last_index().unwrap(), 0);
    }

    /// Every read of `s` (whose cache is warm) equals the same read of a storage freshly opened
    /// on its engines (cold cache: every entry from the raft engine).
    fn assert_cache_agrees_with_engine(s: &PeerStorage<MemEngine, MemEngine>, step: &str) {
        let cold = PeerStorage::new(s.engines.clone(), s.region.clone()).unwrap();
        assert!(cold.cache.first_index().is_none());
        let (first, last) = (s.first_index().unwrap(), s.last_index().unwrap());
        assert_eq!(
            (cold.first_index().unwrap(), cold.last_index().unwrap()),
            (first, last)
        );
        for idx in first - 1..=last + 1 {
            assert_eq!(s.term(idx), cold.term(idx), "{step}: term({idx})");
        }
        for low in first - 1..=last + 1 {
            for high in low..=last + 2 {
                for max in [0, 1 << 20, 3 << 20, u64::MAX] {
                    assert_eq!(
                        s.entries(low, high, max),
                        cold.entries(low, high, max),
                        "{step}: entries({low}, {high}, {max})"
                    );
                }
            }
        }
    }

    #[test]
    fn test_peer_storage_entry_cache_matches_the_engine() {
        let big = |index, term| Entry {
            index,
            term,
            data: vec![index as u8; 1 << 20],
            ..Default::default()
        };
        let mut s = three();
        let write = |s: &mut PeerStorage<MemEngine, MemEngine>, ents: &[Entry]| {
            let mut raft_wb = WriteBatch::default();
            s.append(ents, &mut raft_wb);
            raft_wb.put_msg_cf(CF_DEFAULT, keys::raft_state_key(1), &s.raft_state);
            s.engines.raft.write(&raft_wb, true).unwrap();
        };
        assert_cache_agrees_with_engine(&s, "initial");
        write(&mut s, &[ent(6, 5), ent(7, 5)]);
        assert_cache_agrees_with_engine(&s, "appended");
        assert!(
            s.cache.slice(4, 8, u64::MAX).is_some(),
            "the newest entries are cached"
        );
        // A new leader's entries replace a suffix.
        write(&mut s, &[ent(6, 7), ent(7, 7), ent(8, 7)]);
        assert_cache_agrees_with_engine(&s, "conflicting suffix replaced");
        write(&mut s, &[ent(5, 8)]);
        assert_cache_agrees_with_engine(&s, "shorter tail");
        // Big entries push the oldest out of the cache: the reads spanning both go to the engine.
        write(
            &mut s,
            &[big(6, 8), big(7, 8), big(8, 8), big(9, 8), big(10, 8)],
        );
        assert!(
            s.cache.first_index().unwrap() > 6,
            "the oldest entries are evicted"
        );
        assert!(s.cache.bytes <= ENTRY_CACHE_MAX_BYTES);
        assert_cache_agrees_with_engine(&s, "evicted");
        // Compaction drops the cached entries it covers.
        s.compact_to(8, 8);
        let mut kv_wb = WriteBatch::default();
        kv_wb.put_msg_cf(CF_RAFT, keys::apply_state_key(1), &s.apply_state);
        s.engines.kv.write(&kv_wb, true).unwrap();
        assert_eq!(s.cache.first_index(), Some(9));
        assert_cache_agrees_with_engine(&s, "compacted");
        // Entries past a gap (a snapshot moved the log) start the cache afresh.
        s.cache.append(&[&ent(20, 9)]);
        assert_eq!(s.cache.first_index(), Some(20));
        assert_eq!(s.cache.entries.len(), 1);
    }

    /// A generated snapshot is answered while it is of the region's epoch; after a split (a new
    /// version, the same membership) or a membership change it is stale and a new one is asked
    /// for.
    #[test]
    fn test_a_generated_snapshot_of_an_older_epoch_is_not_reused() {
        use proto::metapb::RegionEpoch;
        use proto::raft_serverpb::RaftSnapshotData;
        let mut s = three();
        let snap_of = |region: &Region| Snapshot {
            data: RaftSnapshotData {
                region: Some(region.clone()),
                ..Default::default()
            }
            .encode_to_vec(),
            metadata: Some(proto::eraftpb::SnapshotMetadata {
                index: 5,
                term: 5,
                ..Default::default()
            }),
        };
        let current = s.region.clone();
        *s.generated_snapshot.borrow_mut() = Some(snap_of(&current));
        assert_eq!(s.snapshot(0).unwrap(), snap_of(&current));
        assert!(!s.snapshot_requested.get());

        for bump in [
            |e: &mut RegionEpoch| e.version += 1,
            |e: &mut RegionEpoch| e.conf_ver += 1,
        ] {
            s.region = current.clone();
            *s.generated_snapshot.borrow_mut() = Some(snap_of(&current));
            bump(s.region.region_epoch.as_mut().unwrap());
            assert!(matches!(
                s.snapshot(0),
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable
                ))
            ));
            assert!(s.snapshot_requested.replace(false));
            assert!(s.generated_snapshot.borrow().is_none());
        }
    }
}
