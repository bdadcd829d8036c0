//! Background tasks, as plain functions over the engines and the snapshot directory: a driver runs
//! them on a worker thread (threaded runtime) or as a later event (simulator), and hands the
//! [`TaskResult`] back to the store as an event of its own.
//!
//! - log GC deletes exactly the raft-log entries it is asked to;
//! - snapshot generation streams a point-in-time view of the kv engine into snapshot files;
//! - snapshot application clears the region's old data in every data CF, writes the received
//!   files in batches of about [`APPLY_BATCH_SIZE`] bytes, then the final apply state
//!   (applied = truncated = the snapshot's index) and region state (`Normal`) in one synced batch.
//!   Until that batch the region state on disk says `Applying`, so a crash in between redoes the
//!   whole application from the files on restart: the install is crash-atomic without ever holding
//!   the region in memory;
//! - a split check measures a region's data and finds where to split it ([`split_check`]).

use prost::Message as _;
use proto::eraftpb::{Snapshot, SnapshotMetadata};
use proto::metapb::Region;
use proto::raft_serverpb::{PeerState, RaftApplyState, RaftTruncatedState};

use crate::engine::{Engine, Engines, WriteBatch, CF_DEFAULT, CF_RAFT, DATA_CFS};
use crate::errors::Result;
use crate::keys;
use crate::peer_storage::put_region_state;
use crate::snap::{SnapError, SnapKey, SnapManager};
use crate::task::{Task, TaskResult};
use crate::util::conf_state_from_region;

/// Bytes of snapshot data per write batch when a snapshot is applied.
pub const APPLY_BATCH_SIZE: usize = 4 << 20;

/// Runs a task to completion. Log GC reports nothing back (an engine error is returned); snapshot
/// tasks always report back, their failure included, so the store can go on.
pub fn run_task<K: Engine, R: Engine>(
    engines: &Engines<K, R>,
    snap_mgr: &SnapManager,
    task: Task,
) -> Result<Option<TaskResult>> {
    match task {
        Task::RaftLogGc {
            region_id,
            start_idx,
            end_idx,
        } => {
            if start_idx >= end_idx {
                return Ok(None);
            }
            let mut wb = WriteBatch::default();
            wb.delete_range_cf(
                CF_DEFAULT,
                keys::raft_log_key(region_id, start_idx),
                keys::raft_log_key(region_id, end_idx),
            );
            // Not synced: losing a deletion only leaves garbage that the next GC removes again.
            engines.raft.write(&wb, false)?;
            Ok(None)
        }
        Task::GenSnapshot { key, region, snap } => {
            let result = snap_mgr
                .generate(key, &*snap, &region)
                .map(|data| Snapshot {
                    data: data.encode_to_vec(),
                    metadata: Some(SnapshotMetadata {
                        conf_state: Some(conf_state_from_region(&region)),
                        index: key.index,
                        term: key.term,
                    }),
                })
                .map_err(|e| e.to_string());
            Ok(Some(TaskResult::SnapshotGenerated { key, result }))
        }
        Task::ApplySnapshot { key, region, clear } => {
            let result =
                apply_snapshot(engines, snap_mgr, key, &region, &clear).map_err(|e| e.to_string());
            Ok(Some(TaskResult::SnapshotApplied { key, result }))
        }
        Task::SplitCheck {
            region,
            snap,
            max_size,
            split_size,
        } => {
            let (size, split_key) = split_check(&*snap, &region, max_size, split_size)?;
            Ok(Some(TaskResult::SplitChecked {
                region,
                size,
                split_key,
            }))
        }
    }
}

/// Walks the default CF of `region` in `snap`, adding up key and value bytes: the split key is
/// the first key at which the running size passes `split_size`; the walk stops once it passes
/// `max_size` (the region splits) or at the region's end (it splits only past `max_size`).
/// Returns the size seen and the split key. A key that ends in an MVCC timestamp is cut to its
/// user key, so that every version of a key stays in one region; a split key equal to the
/// region's start (every byte in one user key) is no split.
pub fn split_check(
    snap: &dyn crate::engine::KvSnapshot,
    region: &Region,
    max_size: u64,
    split_size: u64,
) -> Result<(u64, Option<Vec<u8>>)> {
    let mut size = 0u64;
    let mut split_key: Option<Vec<u8>> = None;
    snap.scan(
        CF_DEFAULT,
        &region.start_key,
        &region.end_key,
        &mut |k, v| {
            size += (k.len() + v.len()) as u64;
            if split_key.is_none() && size > split_size {
                split_key = Some(keys::user_key_of(k).to_vec());
            }
            Ok(size <= max_size)
        },
    )?;
    if size <= max_size {
        return Ok((size, None));
    }
    let split_key = split_key.filter(|k| k.as_slice() > region.start_key.as_slice());
    Ok((size, split_key))
}

/// Installs the received snapshot `key` of `region` (see the module documentation); `clear` are
/// the key ranges whose old data goes first.
fn apply_snapshot<K: Engine, R: Engine>(
    engines: &Engines<K, R>,
    snap_mgr: &SnapManager,
    key: SnapKey,
    region: &Region,
    clear: &[(Vec<u8>, Vec<u8>)],
) -> Result<()> {
    let mut wb = WriteBatch::default();
    for (start, end) in clear {
        for cf in DATA_CFS {
            wb.delete_range_cf(cf, start.clone(), end.clone());
        }
    }
    engines.kv.write(&wb, false)?;
    wb.clear();
    for cf in DATA_CFS {
        snap_mgr.scan_received(key, cf, &mut |k, v| {
            wb.put_cf(cf, k, v);
            if wb.data_size() >= APPLY_BATCH_SIZE {
                engines.kv.write(&wb, false).map_err(SnapError::from)?;
                wb.clear();
            }
            Ok(())
        })?;
    }
    wb.put_msg_cf(
        CF_RAFT,
        keys::apply_state_key(key.region_id),
        &RaftApplyState {
            applied_index: key.index,
            truncated_state: Some(RaftTruncatedState {
                index: key.index,
                term: key.term,
            }),
        },
    );
    put_region_state(&mut wb, region, PeerState::Normal);
    // One synced write makes the data batches before it durable too.
    engines.kv.write(&wb, true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::mem::MemEngine;
    use crate::engine::ALL_CFS;
    use proto::raft_serverpb::RegionLocalState;

    /// The split check adds key and value bytes in key order: no split at or below the maximum;
    /// past it, the split key is the first key past the split size, cut to its user key when
    /// it is an MVCC key; only the region's own range counts.
    #[test]
    fn test_split_check() {
        let kv = MemEngine::new(&ALL_CFS);
        let mut wb = WriteBatch::default();
        // 10 keys of 2 + 8 = 10 bytes each: "k0".."k9".
        for i in 0..10u8 {
            wb.put_cf(CF_DEFAULT, vec![b'k', b'0' + i], vec![0; 8]);
        }
        wb.put_cf(CF_DEFAULT, b"z".to_vec(), vec![0; 1000]);
        kv.write(&wb, false).unwrap();
        let region = Region {
            id: 1,
            start_key: b"k".to_vec(),
            end_key: b"l".to_vec(),
            ..Default::default()
        };
        let snap = kv.snapshot();
        assert_eq!(split_check(&snap, &region, 100, 50).unwrap(), (100, None));
        // Past 95 bytes: the walk stops at k9 (100 bytes); the split key is past 45 bytes: k4.
        let (size, key) = split_check(&snap, &region, 95, 45).unwrap();
        assert_eq!((size, key), (100, Some(b"k4".to_vec())));
        // Versions of one MVCC key are never split apart.
        let mut encoded = b"u".to_vec();
        encoded.extend_from_slice(&[0; 7]);
        encoded.push(0xFF - 7);
        let mut wb = WriteBatch::default();
        for ts in 0..10u64 {
            let mut k = encoded.clone();
            k.extend_from_slice(&(u64::MAX - ts).to_be_bytes());
            wb.put_cf(CF_DEFAULT, k, vec![0; 10]);
        }
        kv.write(&wb, false).unwrap();
        let mvcc = Region {
            id: 2,
            start_key: b"t".to_vec(),
            end_key: b"v".to_vec(),
            ..Default::default()
        };
        let (_, key) = split_check(&kv.snapshot(), &mvcc, 100, 50).unwrap();
        assert_eq!(key, Some(encoded), "cut to the user key");
    }

    #[test]
    fn test_gc_raft_log() {
        let engines = Engines {
            kv: MemEngine::new(&ALL_CFS),
            raft: MemEngine::new(&[CF_DEFAULT]),
        };
        let dir = tempfile::tempdir().unwrap();
        let snap_mgr = SnapManager::new(dir.path()).unwrap();
        let mut wb = WriteBatch::default();
        for i in 0..100u64 {
            wb.put_cf(CF_DEFAULT, keys::raft_log_key(1, i), b"e");
            wb.put_cf(CF_DEFAULT, keys::raft_log_key(2, i), b"e");
        }
        engines.raft.write(&wb, true).unwrap();
        let count = |region| {
            let mut n = 0;
            engines
                .raft
                .scan_cf(
                    CF_DEFAULT,
                    &keys::raft_log_key(region, 0),
                    &keys::raft_log_key(region, u64::MAX),
                    &mut |_, _| {
                        n += 1;
                        Ok(true)
                    },
                )
                .unwrap();
            n
        };
        let gc = |start, end| {
            let r = run_task(
                &engines,
                &snap_mgr,
                Task::RaftLogGc {
                    region_id: 1,
                    start_idx: start,
                    end_idx: end,
                },
            )
            .unwrap();
            assert!(r.is_none())
        };
        gc(0, 10);
        assert_eq!(count(1), 90, "exactly [0, 10) deleted");
        gc(10, 50);
        assert_eq!(count(1), 50);
        gc(50, 50);
        assert_eq!(count(1), 50, "an empty range deletes nothing");
        gc(50, 60);
        assert_eq!(count(1), 40);
        assert_eq!(count(2), 100, "other regions untouched");
    }

    fn scan(e: &MemEngine, cf: &str, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        e.scan_cf(cf, start, end, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })
        .unwrap();
        out
    }

    fn engines() -> Engines<MemEngine, MemEngine> {
        Engines::new(MemEngine::new(&ALL_CFS), MemEngine::new(&[CF_DEFAULT]))
    }

    #[test]
    fn test_snapshot_generate_apply_round_trip() {
        use crate::snap::copy_snapshot;
        use proto::eraftpb::{Message, MessageType};
        use proto::metapb::Peer;
        use proto::raft_serverpb::RaftMessage;

        let region = Region {
            id: 3,
            start_key: b"b".to_vec(),
            end_key: b"y".to_vec(),
            peers: vec![Peer { id: 7, store_id: 1 }],
            ..Default::default()
        };
        let key = SnapKey {
            region_id: 3,
            term: 8,
            index: 99,
        };
        let src = engines();
        let dst = engines();
        let mut wb = WriteBatch::default();
        for cf in DATA_CFS {
            for k in ["a", "b", "m", "x", "y", "z"] {
                wb.put_cf(cf, k, format!("src {cf} {k}"));
                // The receiver's stale data: in the range it must go, outside it must stay.
                let mut stale = WriteBatch::default();
                stale.put_cf(cf, format!("{k}{k}"), "stale");
                stale.put_cf(cf, k, format!("dst {cf} {k}"));
                dst.kv.write(&stale, true).unwrap();
            }
        }
        src.kv.write(&wb, true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (sm, dm) = (
            SnapManager::new(dir.path().join("src")).unwrap(),
            SnapManager::new(dir.path().join("dst")).unwrap(),
        );
        let gen = run_task(
            &src,
            &sm,
            Task::GenSnapshot {
                key,
                region: region.clone(),
                snap: std::sync::Arc::new(src.kv.snapshot()),
            },
        )
        .unwrap();
        let Some(TaskResult::SnapshotGenerated {
            result: Ok(snap), ..
        }) = gen
        else {
            panic!("{gen:?}");
        };
        let meta = snap.metadata.clone().unwrap();
        assert_eq!((meta.index, meta.term), (99, 8));
        assert_eq!(meta.conf_state.unwrap().nodes, vec![7]);
        let mut m = Message {
            snapshot: Some(snap),
            ..Default::default()
        };
        m.set_msg_type(MessageType::MsgSnapshot);
        let msg = RaftMessage {
            region_id: 3,
            message: Some(m),
            ..Default::default()
        };
        copy_snapshot(&sm, &dm, &msg, &mut |_, _| {}).unwrap();
        let apply = |engines: &Engines<MemEngine, MemEngine>| {
            let r = run_task(
                engines,
                &dm,
                Task::ApplySnapshot {
                    key,
                    region: region.clone(),
                    clear: vec![(region.start_key.clone(), region.end_key.clone())],
                },
            )
            .unwrap();
            assert!(
                matches!(r, Some(TaskResult::SnapshotApplied { result: Ok(()), .. })),
                "{r:?}"
            );
        };
        apply(&dst);
        let check = |e: &MemEngine| {
            for cf in DATA_CFS {
                assert_eq!(
                    scan(e, cf, b"b", b"y"),
                    scan(&src.kv, cf, b"b", b"y"),
                    "{cf}"
                );
                let outside = [scan(e, cf, b"", b"b"), scan(e, cf, b"y", b"")].concat();
                let want: Vec<(Vec<u8>, Vec<u8>)> = ["a", "aa", "y", "yy", "z", "zz"]
                    .iter()
                    .map(|k| {
                        let v = if k.len() == 2 {
                            "stale".to_string()
                        } else {
                            format!("dst {cf} {k}")
                        };
                        (k.as_bytes().to_vec(), v.into_bytes())
                    })
                    .collect();
                assert_eq!(outside, want, "{cf}: outside the region");
            }
            let st: RaftApplyState = e
                .get_msg_cf(CF_RAFT, &keys::apply_state_key(3))
                .unwrap()
                .unwrap();
            assert_eq!(st.applied_index, 99);
            assert_eq!(st.truncated_state.unwrap().term, 8);
            let rs: RegionLocalState = e
                .get_msg_cf(CF_RAFT, &keys::region_state_key(3))
                .unwrap()
                .unwrap();
            assert_eq!(rs.state(), PeerState::Normal);
            assert_eq!(rs.region.unwrap(), region);
        };
        check(&dst.kv);
        // The install ends with a synced write: a crash keeps all of it.
        dst.kv.crash();
        check(&dst.kv);
        // Redoing it (as a restart after a crash in the middle would) changes nothing.
        apply(&dst);
        check(&dst.kv);
    }
}
