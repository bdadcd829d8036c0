//! The background work a store's handlers ask for (`Task`: log GC, snapshot generation and
//! installation, split checks) and what a finished task reports back (`TaskResult`). A driver runs the tasks
//! off the handler thread (`worker::run_task`) and hands each result back to the store.

use std::sync::Arc;

use proto::eraftpb::Snapshot;
use proto::metapb::Region;

use crate::engine::KvSnapshot;
use crate::snap::SnapKey;

/// Background work a handler asks for; a driver runs it off the handler thread
/// (`worker::run_task`) and hands any [`TaskResult`] back to the store.
#[derive(Clone)]
pub enum Task {
    /// Delete the raft-log entries `[start_idx, end_idx)` of a region from the raft engine.
    RaftLogGc {
        /// The region.
        region_id: u64,
        /// First index to delete.
        start_idx: u64,
        /// One past the last index to delete.
        end_idx: u64,
    },
    /// Write the snapshot `key` of `region` from `snap`, a view of the kv engine taken on the
    /// poller exactly at the applied index `key.index`.
    GenSnapshot {
        /// The snapshot to make.
        key: SnapKey,
        /// The region as of that index.
        region: Region,
        /// The kv engine at that index.
        snap: Arc<dyn KvSnapshot>,
    },
    /// Install the received snapshot `key`: clear `clear` in every data CF, write the files, then
    /// the final apply and region (`region`, `Normal`) states.
    ApplySnapshot {
        /// The snapshot.
        key: SnapKey,
        /// The region the snapshot carries.
        region: Region,
        /// Key ranges `[start, end)` (empty end: unbounded) whose old data is deleted first.
        clear: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Measure `region` in `snap` (a view of the kv engine taken on the poller) and, when it
    /// holds more than `max_size` bytes, find where to split it: the first key past
    /// `split_size` bytes (TinyKV's `kv/raftstore/runner/split_checker.go`).
    SplitCheck {
        /// The region as the leader knew it (its epoch guards the split).
        region: Region,
        /// The kv engine to measure.
        snap: Arc<dyn KvSnapshot>,
        /// The region size past which it splits.
        max_size: u64,
        /// Where the split cuts.
        split_size: u64,
    },
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Task::RaftLogGc {
                region_id,
                start_idx,
                end_idx,
            } => write!(f, "RaftLogGc({region_id}, [{start_idx}, {end_idx}))"),
            Task::GenSnapshot { key, .. } => write!(f, "GenSnapshot({key})"),
            Task::ApplySnapshot { key, .. } => write!(f, "ApplySnapshot({key})"),
            Task::SplitCheck { region, .. } => write!(f, "SplitCheck({})", region.id),
        }
    }
}

/// What a finished background task reports to its store.
#[derive(Debug)]
pub enum TaskResult {
    /// A snapshot generation finished: the raft snapshot to send, or why there is none.
    SnapshotGenerated {
        /// The snapshot.
        key: SnapKey,
        /// The raft snapshot (metadata and `RaftSnapshotData`), or the error.
        result: std::result::Result<Snapshot, String>,
    },
    /// A snapshot application finished.
    SnapshotApplied {
        /// The snapshot.
        key: SnapKey,
        /// Whether the data and the final states are written.
        result: std::result::Result<(), String>,
    },
    /// A split check finished.
    SplitChecked {
        /// The region as it was measured.
        region: Region,
        /// Its bytes in the default CF (a lower bound when the walk stopped early at
        /// `max_size`).
        size: u64,
        /// Where to split it, when it is past `max_size`.
        split_key: Option<Vec<u8>>,
    },
}
