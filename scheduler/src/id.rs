//! The id allocator (TinyKV's `scheduler/server/id/id.go`): unique ids for stores, regions and
//! peers, never reused across restarts. Ids are reserved in steps of [`ID_STEP`]: the upper bound
//! of the reserved range is saved (synced) before any id of it is handed out, and a restart
//! continues after the saved bound.

use std::sync::{Arc, Mutex};

use crate::storage::{Result, Storage};

/// How many ids one saved bound reserves.
pub const ID_STEP: u64 = 1000;

struct State {
    /// The last id handed out.
    cur: u64,
    /// Saved: every id handed out is at most it.
    end: u64,
}

/// The id allocator.
pub struct IdAlloc {
    storage: Arc<Storage>,
    state: Mutex<State>,
}

impl IdAlloc {
    /// An allocator on `storage`, continuing after what was reserved before.
    pub fn new(storage: Arc<Storage>) -> Result<IdAlloc> {
        let end = storage.alloc_id_bound()?;
        Ok(IdAlloc {
            storage,
            state: Mutex::new(State { cur: end, end }),
        })
    }

    /// A new id (> 0).
    pub fn alloc(&self) -> Result<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.cur == s.end {
            let end = s.end + ID_STEP;
            self.storage.save_alloc_id_bound(end)?;
            s.end = end;
        }
        s.cur += 1;
        crate::metrics::IDS_ALLOCATED.inc();
        Ok(s.cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ids_are_unique_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            let storage = Arc::new(Storage::open(dir.path()).unwrap());
            let ids = IdAlloc::new(storage).unwrap();
            for _ in 0..(ID_STEP + 5) {
                let id = ids.alloc().unwrap();
                assert!(id > 0);
                assert!(seen.insert(id), "id {id} handed out twice");
            }
        }
    }
}
