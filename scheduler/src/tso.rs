//! The timestamp oracle (TinyKV's `scheduler/server/tso/tso.go`): timestamps
//! `physical_ms << 18 | logical` that only grow, handed out in batches, across restarts too.
//!
//! The physical part follows the wall clock; within one millisecond the logical part counts up
//! (2^18 per millisecond). When a batch would overflow the logical part, the physical part steps
//! one millisecond ahead of the clock. Before a physical value is handed out, an upper bound
//! above it is saved (synced) — a window of [`SAVE_WINDOW_MS`] ahead, so the disk is touched once
//! per window, not per request — and after a restart the oracle starts at that bound: no
//! timestamp is handed out twice or goes backwards, even if the wall clock went back.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::storage::{Result, Storage};

/// Bits of the logical part.
pub const LOGICAL_BITS: u32 = 18;
/// The logical part is below this.
pub const MAX_LOGICAL: u64 = 1 << LOGICAL_BITS;
/// How far ahead of the newest physical value handed out the saved bound is set.
pub const SAVE_WINDOW_MS: u64 = 3000;

/// Combines a physical (ms) and a logical part into one timestamp.
pub fn compose(physical_ms: u64, logical: u64) -> u64 {
    physical_ms << LOGICAL_BITS | logical
}

/// Milliseconds since the Unix epoch by the wall clock.
pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct State {
    physical: u64,
    /// The last logical value handed out at `physical` (0: none yet).
    logical: u64,
    /// Saved: every physical value handed out is below it.
    bound: u64,
}

/// The timestamp oracle.
pub struct Tso {
    storage: Arc<Storage>,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
    state: Mutex<State>,
}

impl Tso {
    /// An oracle on `storage`, reading the wall clock.
    pub fn new(storage: Arc<Storage>) -> Result<Tso> {
        Tso::with_clock(storage, Box::new(wall_clock_ms))
    }

    /// An oracle with a given clock (milliseconds), for tests.
    pub fn with_clock(
        storage: Arc<Storage>,
        clock: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Result<Tso> {
        let saved = storage.tso_bound()?;
        // Everything handed out before the restart had a physical part below `saved`.
        let physical = clock().max(saved);
        let bound = physical + SAVE_WINDOW_MS;
        storage.save_tso_bound(bound)?;
        Ok(Tso {
            storage,
            clock,
            state: Mutex::new(State {
                physical,
                logical: 0,
                bound,
            }),
        })
    }

    /// Hands out `count` (> 0) consecutive timestamps; returns the physical part and the logical
    /// part of the LAST one (TinyKV's answer: the batch is `logical - count + 1 ..= logical`).
    pub fn get(&self, count: u32) -> Result<(u64, u64)> {
        let count = u64::from(count.max(1)).min(MAX_LOGICAL - 1);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = (self.clock)();
        if now > s.physical {
            s.physical = now;
            s.logical = 0;
        }
        if s.logical + count >= MAX_LOGICAL {
            // This millisecond is used up: step ahead of the clock.
            s.physical += 1;
            s.logical = 0;
        }
        if s.physical >= s.bound {
            let bound = s.physical + SAVE_WINDOW_MS;
            self.storage.save_tso_bound(bound)?;
            s.bound = bound;
        }
        s.logical += count;
        crate::metrics::TSO_TIMESTAMPS.inc_by(count);
        Ok((s.physical, s.logical))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn manual_clock(start: u64) -> (Arc<AtomicU64>, Box<dyn Fn() -> u64 + Send + Sync>) {
        let t = Arc::new(AtomicU64::new(start));
        let t2 = t.clone();
        (t, Box::new(move || t2.load(Ordering::SeqCst)))
    }

    #[test]
    fn test_timestamps_grow_within_and_across_milliseconds() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path()).unwrap());
        let (clock, f) = manual_clock(1_000);
        let tso = Tso::with_clock(storage, f).unwrap();
        let mut last = 0;
        for i in 0..1000u32 {
            let (p, l) = tso.get(i % 7 + 1).unwrap();
            let first = compose(p, l - u64::from(i % 7 + 1) + 1);
            assert!(first > last, "batch {i} starts at {first}, after {last}");
            last = compose(p, l);
            if i % 100 == 0 {
                clock.fetch_add(1, Ordering::SeqCst);
            }
        }
        // The clock going back changes nothing.
        clock.store(10, Ordering::SeqCst);
        let (p, l) = tso.get(1).unwrap();
        assert!(compose(p, l) > last);
    }

    #[test]
    fn test_a_full_millisecond_steps_ahead_of_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path()).unwrap());
        let (_clock, f) = manual_clock(5_000);
        let tso = Tso::with_clock(storage, f).unwrap();
        let (p1, l1) = tso.get(200_000).unwrap();
        let (p2, l2) = tso.get(100_000).unwrap();
        assert_eq!((p1, l1), (5_000, 200_000));
        assert_eq!(
            (p2, l2),
            (5_001, 100_000),
            "the second batch moves to the next ms"
        );
    }

    #[test]
    fn test_no_timestamp_repeats_across_a_restart_even_if_the_clock_went_back() {
        let dir = tempfile::tempdir().unwrap();
        let last;
        {
            let storage = Arc::new(Storage::open(dir.path()).unwrap());
            let (clock, f) = manual_clock(50_000);
            let tso = Tso::with_clock(storage, f).unwrap();
            for _ in 0..10 {
                clock.fetch_add(1_000, Ordering::SeqCst);
                tso.get(10).unwrap();
            }
            let (p, l) = tso.get(10).unwrap();
            last = compose(p, l);
        }
        let storage = Arc::new(Storage::open(dir.path()).unwrap());
        let (_clock, f) = manual_clock(40_000);
        let tso = Tso::with_clock(storage, f).unwrap();
        let (p, l) = tso.get(1).unwrap();
        assert!(compose(p, l) > last, "{} after {last}", compose(p, l));
    }
}
