//! Background tasks, as plain functions over the engines: a driver runs them on a worker thread
//! (threaded runtime) or as a later event (simulator).

use crate::engine::{Engine, Engines, WriteBatch, CF_DEFAULT};
use crate::errors::Result;
use crate::keys;
use crate::store::Task;

/// Runs a task to completion.
pub fn run_task<K: Engine, R: Engine>(engines: &Engines<K, R>, task: &Task) -> Result<()> {
    match *task {
        Task::RaftLogGc {
            region_id,
            start_idx,
            end_idx,
        } => {
            if start_idx >= end_idx {
                return Ok(());
            }
            let mut wb = WriteBatch::default();
            wb.delete_range_cf(
                CF_DEFAULT,
                keys::raft_log_key(region_id, start_idx),
                keys::raft_log_key(region_id, end_idx),
            );
            // Not synced: losing a deletion only leaves garbage that the next GC removes again.
            engines.raft.write(&wb, false)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::mem::MemEngine;
    use crate::engine::ALL_CFS;

    #[test]
    fn test_gc_raft_log() {
        let engines = Engines {
            kv: MemEngine::new(&ALL_CFS),
            raft: MemEngine::new(&[CF_DEFAULT]),
        };
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
            run_task(
                &engines,
                &Task::RaftLogGc {
                    region_id: 1,
                    start_idx: start,
                    end_idx: end,
                },
            )
            .unwrap()
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
}
