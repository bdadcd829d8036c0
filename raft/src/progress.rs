//! The leader's view of one follower: how much of the log it has (`matched`), what to send next
//! (`next_idx`), and the flow-control state that decides how much may be sent before it answers.
//!
//! The three states, as in etcd raft:
//! - **Probe**: the leader does not know where the follower's log ends. It sends one MsgAppend and
//!   waits (paused) for the answer or the next heartbeat response before sending another.
//! - **Replicate**: the follower is known to match; the leader streams appends optimistically,
//!   advancing `next_idx` as it sends, within a window of `max_inflight_msgs` unacknowledged appends.
//! - **Snapshot**: the follower needs a snapshot; nothing else is sent until it is applied or fails.

use std::collections::VecDeque;

/// Flow-control state of a follower's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProgressState {
    /// One append at a time until the match point is found.
    #[default]
    Probe,
    /// Stream appends within the inflight window.
    Replicate,
    /// Waiting for a snapshot to be applied.
    Snapshot,
}

/// A bounded window of in-flight appends, each remembered by the last index it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inflights {
    cap: usize,
    /// Last indexes of the appends not yet acknowledged, oldest first (strictly increasing).
    buffer: VecDeque<u64>,
}

impl Inflights {
    /// An empty window for at most `cap` appends.
    pub fn new(cap: usize) -> Self {
        Inflights {
            cap,
            buffer: VecDeque::with_capacity(cap.min(1024)),
        }
    }

    /// Whether no more appends may be sent.
    pub fn full(&self) -> bool {
        self.buffer.len() >= self.cap
    }

    /// The number of appends in flight.
    pub fn count(&self) -> usize {
        self.buffer.len()
    }

    /// Records an append whose last entry is `last`.
    ///
    /// # Panics
    /// When the window is full or `last` does not increase.
    pub fn add(&mut self, last: u64) {
        assert!(!self.full(), "cannot add into a full inflights window");
        debug_assert!(
            self.buffer.back().is_none_or(|&b| b < last),
            "inflight indexes must increase"
        );
        self.buffer.push_back(last);
    }

    /// Frees every append whose last index is `<= to`.
    pub fn free_to(&mut self, to: u64) {
        while self.buffer.front().is_some_and(|&f| f <= to) {
            self.buffer.pop_front();
        }
    }

    /// Frees the oldest append (a heartbeat answered, so the follower is alive: let one more go).
    pub fn free_first_one(&mut self) {
        self.buffer.pop_front();
    }

    /// Frees everything.
    pub fn reset(&mut self) {
        self.buffer.clear();
    }
}

/// A follower's progress as its leader sees it. The leader keeps one for itself too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The highest index known to be replicated on the node (TinyKV's `Match`).
    pub matched: u64,
    /// The index of the next entry to send (TinyKV's `Next`). Invariant: `matched < next_idx`.
    pub next_idx: u64,
    /// The flow-control state.
    pub state: ProgressState,
    /// In the Probe state: an append was sent and not yet answered, so sending is paused.
    pub probe_sent: bool,
    /// In the Snapshot state: the index of the snapshot sent.
    pub pending_snapshot: u64,
    /// Whether the node was heard from since the last quorum check.
    pub recent_active: bool,
    /// The window of unacknowledged appends (Replicate state).
    pub ins: Inflights,
}

impl Progress {
    /// A progress in the Probe state that will send from `next_idx`.
    pub fn new(next_idx: u64, ins_size: usize) -> Self {
        Progress {
            matched: 0,
            next_idx,
            state: ProgressState::Probe,
            probe_sent: false,
            pending_snapshot: 0,
            recent_active: false,
            ins: Inflights::new(ins_size),
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.state = state;
        self.ins.reset();
    }

    /// Enters the Probe state, sending next from just after what is known to match (or after the
    /// snapshot just sent, when leaving the Snapshot state).
    pub fn become_probe(&mut self) {
        if self.state == ProgressState::Snapshot {
            let pending = self.pending_snapshot;
            self.reset_state(ProgressState::Probe);
            self.next_idx = (self.matched + 1).max(pending + 1);
        } else {
            self.reset_state(ProgressState::Probe);
            self.next_idx = self.matched + 1;
        }
    }

    /// Enters the Replicate state.
    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next_idx = self.matched + 1;
    }

    /// Enters the Snapshot state for a snapshot at `snapshot_idx`.
    pub fn become_snapshot(&mut self, snapshot_idx: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_idx;
    }

    /// Records that the node has everything up to `n`. Returns whether `matched` moved.
    pub fn maybe_update(&mut self, n: u64) -> bool {
        let updated = self.matched < n;
        if updated {
            self.matched = n;
            self.probe_sent = false;
        }
        if self.next_idx < n + 1 {
            self.next_idx = n + 1;
        }
        updated
    }

    /// Advances `next_idx` past an append just sent in the Replicate state.
    pub fn optimistic_update(&mut self, n: u64) {
        self.next_idx = n + 1;
    }

    /// Handles a rejected append of `rejected` (the index it was sent after): moves `next_idx` back,
    /// to `match_hint + 1` when the follower gave a hint. Returns false when the rejection is stale.
    pub fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            // An old rejection: this index was already matched.
            if rejected <= self.matched {
                return false;
            }
            self.next_idx = self.matched + 1;
            return true;
        }
        // In Probe (or Snapshot), only the answer to the latest append counts.
        if self.next_idx == 0 || self.next_idx - 1 != rejected {
            return false;
        }
        self.next_idx = rejected.min(match_hint + 1).max(self.matched + 1).max(1);
        self.probe_sent = false;
        true
    }

    /// Whether sending is paused: a probe in flight, the window full, or a snapshot pending.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.ins.full(),
            ProgressState::Snapshot => true,
        }
    }

    /// Pauses a probe until it is answered.
    pub fn pause(&mut self) {
        self.probe_sent = true;
    }

    /// Lets a paused probe send again.
    pub fn resume(&mut self) {
        self.probe_sent = false;
    }

    /// The snapshot send failed: forget it, so the next probe asks for a new one.
    pub fn snapshot_failure(&mut self) {
        self.pending_snapshot = 0;
    }

    /// Whether the node has caught up with the snapshot it was sent.
    pub fn is_snapshot_caught_up(&self) -> bool {
        self.state == ProgressState::Snapshot && self.matched >= self.pending_snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_inflights_window() {
        let mut ins = Inflights::new(3);
        ins.add(1);
        ins.add(3);
        assert!(!ins.full());
        ins.add(5);
        assert!(ins.full());
        ins.free_to(2);
        assert_eq!(ins.count(), 2);
        ins.free_first_one();
        assert_eq!(ins.count(), 1);
        ins.free_to(10);
        assert_eq!(ins.count(), 0);
    }

    #[test]
    fn test_progress_maybe_decr_to() {
        // Replicate: a rejection at or below matched is stale; above it goes back to matched + 1.
        let mut p = Progress::new(10, 4);
        p.matched = 5;
        p.become_replicate();
        p.next_idx = 9;
        assert!(!p.maybe_decr_to(5, 5));
        assert_eq!(p.next_idx, 9);
        assert!(p.maybe_decr_to(6, 0));
        assert_eq!(p.next_idx, 6);

        // Probe: only the latest probe's rejection counts; the hint moves next back fast.
        let mut p = Progress::new(10, 4);
        assert!(!p.maybe_decr_to(5, 0), "not the probe in flight");
        p.pause();
        assert!(p.maybe_decr_to(9, 3));
        assert_eq!(p.next_idx, 4);
        assert!(!p.probe_sent);
        // Without a hint it never goes below 1.
        let mut p = Progress::new(1, 4);
        assert!(p.maybe_decr_to(0, 0));
        assert_eq!(p.next_idx, 1);
    }

    #[test]
    fn test_progress_paused_by_state() {
        let mut p = Progress::new(2, 1);
        assert!(!p.is_paused());
        p.pause();
        assert!(p.is_paused());
        p.maybe_update(1);
        assert!(!p.is_paused(), "an answer resumes a probe");
        p.become_replicate();
        p.ins.add(2);
        assert!(p.is_paused(), "window full");
        p.become_snapshot(10);
        assert!(p.is_paused());
        p.maybe_update(10);
        assert!(p.is_snapshot_caught_up());
        p.become_probe();
        assert_eq!(p.next_idx, 11);
    }
}
