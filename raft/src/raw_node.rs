//! `RawNode` and `Ready`: the interface an application drives raft through.
//!
//! # The Ready loop
//!
//! The application owns the `RawNode` and, in one loop:
//! 1. calls `tick()` on a timer and `step()` for each message from a peer, `propose()` for writes,
//!    `read_index()` for linearizable reads;
//! 2. when `has_ready()`, takes `ready()`, and in this order:
//!    - persists `snapshot` (if any), `entries` and `hard_state` (if any) to stable storage, and
//!      when `must_sync` syncs them: the messages may promise that they are durable (a vote, an
//!      acknowledgement of entries or of a snapshot);
//!    - sends `messages`;
//!    - applies `snapshot` and then `committed_entries` to the state machine (a conf-change entry
//!      is applied with `apply_conf_change`);
//!    - serves the reads in `read_states` once the applied index reaches their `index`;
//! 3. calls `advance(ready)` to tell raft all of that is done.
//!
//! After a restart, the first `Ready` holds only the committed entries not yet applied (from
//! `Config::applied` or the snapshot index on): no soft state, no hard state, nothing to persist.

use std::collections::BTreeMap;

use proto::eraftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, HardState, Message, MessageType, Snapshot,
};
use slog::Logger;

use crate::config::Config;
use crate::errors::{Error, Result};
use crate::progress::Progress;
use crate::raft::{Raft, SnapshotStatus, SoftState, StateRole};
use crate::read_only::ReadState;
use crate::storage::Storage;
use crate::util::{is_local_msg, is_response_msg, INVALID_ID};

/// Everything raft asks the application to do in one round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ready {
    /// The new soft state, when it changed (no need to persist it).
    pub soft_state: Option<SoftState>,
    /// The new hard state, when it changed: persist it before sending messages (synced when
    /// `must_sync`; when only its commit index moved, it may be written without a sync).
    pub hard_state: Option<HardState>,
    /// Reads confirmed by the leader: serve each once applied up to its index.
    pub read_states: Vec<ReadState>,
    /// Entries to persist, synced, before sending messages.
    pub entries: Vec<Entry>,
    /// A snapshot to persist, synced, before sending messages (they acknowledge it), then apply.
    pub snapshot: Option<Snapshot>,
    /// Committed entries to apply (they were persisted earlier, or are in `entries`).
    pub committed_entries: Vec<Entry>,
    /// Messages to send once the snapshot, entries and hard state are persisted (and synced when
    /// `must_sync`).
    pub messages: Vec<Message>,
    /// Whether everything this Ready persists must be synced to disk before any of its messages is
    /// sent. True when it holds a snapshot or new entries, or the term or vote changed: its
    /// messages may then grant a vote or acknowledge the entries or the snapshot, and a crash that
    /// lost them would break that promise. When false, the only thing to persist (if anything) is
    /// a hard state whose commit index alone moved; it may be written without a sync, since a
    /// node that loses it learns the commit index again from the leader.
    pub must_sync: bool,
}

/// A raft node with the `Ready` interface (thread-unsafe; one owner drives it).
pub struct RawNode<T: Storage> {
    /// The state machine (public, as in TinyKV, for tests and tools).
    pub raft: Raft<T>,
    prev_ss: SoftState,
    prev_hs: HardState,
}

impl<T: Storage> RawNode<T> {
    /// A node started or restarted from `store` (see `Raft::new`). Its current soft and hard
    /// states count as already known to the application, so that the first `Ready` only holds
    /// what changes from there.
    pub fn new(config: &Config, store: T, logger: &Logger) -> Result<Self> {
        // STAGE 2AC: build the Raft and remember its current soft and hard states
        let raft = Raft::new(config, store, logger)?;
        let prev_ss = raft.soft_state();
        let prev_hs = raft.hard_state();
        Ok(RawNode {
            raft,
            prev_ss,
            prev_hs,
        })
        // END STAGE 2AC
    }

    /// Advances time by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Starts an election now.
    pub fn campaign(&mut self) -> Result<()> {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHup);
        self.raft.step(m)
    }

    /// Proposes `data` to be appended to the log.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<()> {
        let mut m = Message {
            from: self.raft.id,
            entries: vec![Entry {
                data,
                ..Default::default()
            }],
            ..Default::default()
        };
        m.set_msg_type(MessageType::MsgPropose);
        self.raft.step(m)
    }

    /// Proposes several entries at once, in order: they are appended together and reach each
    /// follower in one MsgAppend, where proposing them one by one sends one MsgAppend per entry
    /// and follower. All or none are appended. An empty batch is refused (ProposalDropped).
    pub fn propose_batch(&mut self, data: Vec<Vec<u8>>) -> Result<()> {
        if data.is_empty() {
            return Err(Error::ProposalDropped);
        }
        let mut m = Message {
            from: self.raft.id,
            entries: data
                .into_iter()
                .map(|data| Entry {
                    data,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        m.set_msg_type(MessageType::MsgPropose);
        self.raft.step(m)
    }

    /// Proposes a membership change (applied, once committed, with `apply_conf_change`).
    pub fn propose_conf_change(&mut self, cc: &ConfChange) -> Result<()> {
        let mut m = Message {
            from: self.raft.id,
            entries: vec![Raft::<T>::conf_change_entry(cc)],
            ..Default::default()
        };
        m.set_msg_type(MessageType::MsgPropose);
        self.raft.step(m)
    }

    /// Applies a committed membership change; returns the new membership.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        if cc.node_id == INVALID_ID {
            return self.raft.conf_state();
        }
        match cc.change_type() {
            ConfChangeType::AddNode => self.raft.add_node(cc.node_id),
            ConfChangeType::RemoveNode => self.raft.remove_node(cc.node_id),
        }
        self.raft.conf_state()
    }

    /// Steps a message from a peer. Local messages and responses from non-members are refused.
    pub fn step(&mut self, m: Message) -> Result<()> {
        let t = m.msg_type();
        if is_local_msg(t) {
            return Err(Error::StepLocalMsg);
        }
        if is_response_msg(t) && !self.raft.prs.contains_key(&m.from) {
            return Err(Error::StepPeerNotFound);
        }
        self.raft.step(m)
    }

    /// Asks the leader (local or remote) to hand leadership to `transferee`.
    pub fn transfer_leader(&mut self, transferee: u64) {
        let mut m = Message {
            from: transferee,
            ..Default::default()
        };
        m.set_msg_type(MessageType::MsgTransferLeader);
        let _ = self.raft.step(m);
    }

    /// Requests a linearizable read; when confirmed, a `ReadState` with `rctx` comes in a `Ready`.
    pub fn read_index(&mut self, rctx: Vec<u8>) -> Result<()> {
        let mut m = Message {
            entries: vec![Entry {
                data: rctx,
                ..Default::default()
            }],
            ..Default::default()
        };
        m.set_msg_type(MessageType::MsgReadIndex);
        self.raft.step(m)
    }

    /// The follower `id` could not be reached.
    pub fn report_unreachable(&mut self, id: u64) {
        self.raft.report_unreachable(id);
    }

    /// Whether the snapshot sent to `id` arrived.
    pub fn report_snapshot(&mut self, id: u64, status: SnapshotStatus) {
        self.raft.report_snapshot(id, status);
    }

    /// What the application has to do now (see the module doc and the fields of `Ready`): the soft
    /// and hard states when they differ from those of the last `Ready` passed to `advance` (or
    /// from the start), the unstable entries, the pending snapshot, the committed entries not yet
    /// applied, and `must_sync`. Takes the pending messages and read states; call `advance` with
    /// it when done.
    pub fn ready(&mut self) -> Ready {
        // STAGE 2AC: gather everything the application must persist, send and apply (nothing is marked done here)
        let r = &mut self.raft;
        let ss = r.soft_state();
        let hs = r.hard_state();
        let entries = r.raft_log.unstable_entries().to_vec();
        let snapshot = r.raft_log.unstable.snapshot.clone();
        // A snapshot counts even when term, vote and entries are unchanged: this Ready's messages
        // acknowledge it, and the leader takes its index as matched.
        let must_sync = snapshot.is_some()
            || !entries.is_empty()
            || hs.term != self.prev_hs.term
            || hs.vote != self.prev_hs.vote;
        Ready {
            soft_state: (ss != self.prev_ss).then_some(ss),
            hard_state: (hs != self.prev_hs).then_some(hs),
            read_states: std::mem::take(&mut r.read_states),
            entries,
            snapshot,
            committed_entries: r.raft_log.next_entries(),
            messages: std::mem::take(&mut r.msgs),
            must_sync,
        }
        // END STAGE 2AC
    }

    /// Whether there is anything for the application to do: a changed soft state, a changed
    /// non-empty hard state, a pending snapshot, messages, unstable entries, committed entries to
    /// apply or read states.
    pub fn has_ready(&self) -> bool {
        // STAGE 2AC: whether `ready` would hold anything
        let r = &self.raft;
        if r.soft_state() != self.prev_ss {
            return true;
        }
        let hs = r.hard_state();
        if hs != HardState::default() && hs != self.prev_hs {
            return true;
        }
        r.raft_log.unstable.snapshot.is_some()
            || !r.msgs.is_empty()
            || !r.raft_log.unstable_entries().is_empty()
            || r.raft_log.has_next_entries()
            || !r.read_states.is_empty()
        // END STAGE 2AC
    }

    /// Tells raft that the application persisted, sent and applied what `rd` asked: its soft and
    /// hard states become the known ones, its snapshot and entries are stable, and the log is
    /// applied up to its snapshot and then its last committed entry.
    pub fn advance(&mut self, rd: Ready) {
        // STAGE 2AC: the states of `rd` become the known ones
        if let Some(ss) = rd.soft_state {
            self.prev_ss = ss;
        }
        if let Some(hs) = rd.hard_state {
            self.prev_hs = hs;
        }
        // END STAGE 2AC
        let log = &mut self.raft.raft_log;
        // STAGE 2AC: a snapshot is now stable, and applied
        if let Some(snap) = &rd.snapshot {
            let idx = snap.metadata.as_ref().map_or(0, |m| m.index);
            log.stable_snap_to(idx);
            log.applied_to(idx);
        }
        // END STAGE 2AC
        if let Some(last) = rd.entries.last() {
            log.stable_to(last.index, last.term);
        }
        // STAGE 2AC: the committed entries are now applied
        if let Some(last) = rd.committed_entries.last() {
            log.applied_to(last.index);
        }
        // END STAGE 2AC
        self.raft.on_applied();
    }

    /// The replication progress of every member, when this node leads (TinyKV's `GetProgress`).
    pub fn get_progress(&self) -> BTreeMap<u64, Progress> {
        if self.raft.state == StateRole::Leader {
            self.raft.prs.clone()
        } else {
            BTreeMap::new()
        }
    }

    /// The current soft state.
    pub fn soft_state(&self) -> SoftState {
        self.raft.soft_state()
    }
}
