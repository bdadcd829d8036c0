//! The peer's part of a round (the store's `begin_round` and `finish_round` call these, in this
//! order): raft messages stepped in (`on_raft_message`), the `Ready` taken and its writes added
//! to the round's raft write batch (`collect_ready`), what a leader may do before that write is
//! durable (`handle_ready_early`), and the rest once it is (`post_ready`). With the raft engine
//! synced off the round (`Config::async_raft_sync`), the messages and applies that wait for a
//! sync are kept here and released by `on_synced`.

use proto::eraftpb;
use proto::raft_serverpb::{RaftLocalState, RaftMessage};
use raft::{Ready, StateRole};
use slog::{debug, info, warn};

use super::Peer;
use crate::context::{ApplyContext, StoreContext};
use crate::engine::{Engine, WriteBatch};
use crate::errors::{Error, Result};
use crate::snap::SnapKey;
use crate::util::is_initial_msg;

impl<K: Engine, R: Engine> Peer<K, R> {
    /// Steps a raft message from another replica. A MsgSnapshot is stepped only when its files
    /// were received; its files are deleted unless raft restores the snapshot.
    pub fn on_raft_message(&mut self, msg: RaftMessage) -> Result<()> {
        if let Some(from) = &msg.from_peer {
            self.peer_cache.insert(from.id, *from);
        }
        let snap_key = SnapKey::from_msg(&msg);
        let Some(m) = msg.message else {
            return Err(Error::InvalidRequest(
                "raft message without a message".into(),
            ));
        };
        if self.is_frozen() {
            // Keep the files of the snapshot being installed (a duplicate may bring the same).
            let pending = self.pending_snapshot();
            if let Some(key) = snap_key.filter(|&k| Some(k) != pending) {
                self.snap_mgr.delete_received(key);
            }
            debug!(self.logger, "dropping a message while a snapshot is pending";
                "msg_type" => ?m.msg_type(), "from" => m.from);
            return Ok(());
        }
        let Some(key) = snap_key else {
            if m.msg_type() == eraftpb::MessageType::MsgAppendResponse
                && !m.reject
                && m.index > self.synced_index()
                && self.is_leader()
            {
                self.held_acks.push(m);
                return Ok(());
            }
            self.raft_group.step(m)?;
            return Ok(());
        };
        if let Err(e) = self.check_snapshot(key, m.snapshot.as_ref()) {
            warn!(self.logger, "dropping a snapshot"; "snapshot" => %key, "err" => %e);
            self.snap_mgr.delete_received(key);
            return Ok(());
        }
        let stepped = self.raft_group.step(m);
        let restored = self
            .raft_group
            .raft
            .raft_log
            .unstable
            .snapshot
            .as_ref()
            .is_some_and(|s| SnapKey::from_snapshot(self.region_id, s) == key);
        if !restored {
            debug!(self.logger, "snapshot not restored by raft"; "snapshot" => %key);
            self.snap_mgr.delete_received(key);
        }
        stepped?;
        Ok(())
    }

    /// Whether `msg` comes from an earlier incarnation of its sender: a peer removed and added
    /// again with the same id (as TinyKV's tests do) whose old replica still runs, with an epoch
    /// older than the one that added the new one (a new replica starts with a zero epoch).
    pub fn from_earlier_incarnation(&self, msg: &RaftMessage) -> bool {
        let (Some(from), Some(epoch)) = (msg.from_peer, msg.region_epoch) else {
            return false;
        };
        self.added_at
            .get(&from.id)
            .is_some_and(|&added| epoch.conf_ver != 0 && epoch.conf_ver < added)
    }

    pub(super) fn send_raft_message(&self, ctx: &mut StoreContext, m: eraftpb::Message) {
        let Some(to_peer) = self.peer_cache.get(&m.to).cloned() else {
            warn!(self.logger, "dropping message to an unknown peer";
                "to" => m.to, "msg_type" => ?m.msg_type());
            return;
        };
        let region = self.region();
        let mut rm = RaftMessage {
            region_id: self.region_id,
            from_peer: Some(self.meta),
            to_peer: Some(to_peer),
            region_epoch: region.region_epoch,
            ..Default::default()
        };
        if is_initial_msg(&m) {
            // Lets a store that has no replica yet check the range before creating one.
            rm.start_key = region.start_key.clone();
            rm.end_key = region.end_key.clone();
        }
        rm.message = Some(m);
        ctx.messages.push(rm);
    }

    /// Phase one of a round: takes the replica's `Ready` and adds what it must persist to the
    /// round's raft write batch. A snapshot in the `Ready` also adds the `Applying` region state
    /// and the new apply state to `snap_wb` (synced before the raft write), freezes the replica
    /// and queues the install for a worker (`start_install`): the install clears the snapshot's
    /// range, and the old range too when the replica was initialized with another one. The
    /// snapshot's peers go into `peer_cache`, and the next log GC starts after its index.
    pub fn collect_ready(
        &mut self,
        raft_wb: &mut WriteBatch,
        snap_wb: &mut WriteBatch,
    ) -> Result<Option<Ready>> {
        if self.applying.is_some() || !self.raft_group.has_ready() {
            return Ok(None);
        }
        let rd = self.raft_group.ready();
        if let Some(snap) = &rd.snapshot {
            // STAGE 2C: record the snapshot in the storage's states, then freeze the replica while a worker installs its data
            let old = self.region().clone();
            let (key, region) = self.storage_mut().apply_snapshot(snap, snap_wb, raft_wb)?;
            for p in &region.peers {
                self.peer_cache.insert(p.id, *p);
            }
            let mut clear = vec![(region.start_key.clone(), region.end_key.clone())];
            if !old.peers.is_empty()
                && (old.start_key != region.start_key || old.end_key != region.end_key)
            {
                clear.push((old.start_key.clone(), old.end_key.clone()));
            }
            info!(self.logger, "installing a snapshot"; "snapshot" => %key);
            self.last_compacted_idx = key.index + 1;
            self.start_install(key, region, clear);
            // END STAGE 2C
        }
        self.storage_mut().save_ready_state(&rd, raft_wb);
        Ok(Some(rd))
    }

    /// Phase one and a half, before the round's raft write: what a leader may do while its own
    /// write is under way (Raft thesis 10.2.1). Its messages leave now, unless the Ready changes
    /// the term or the vote, which must be durable first: appends and heartbeats promise nothing
    /// about the leader's own disk. Raft counts the leader's new entries toward the quorum at
    /// once, but a commit that counts them needs acks for them, which arrive in a later round,
    /// after this write. And it applies the committed entries it had written before this round
    /// (up to `persisted.last_index`), answering their clients without waiting for this round's
    /// fsync: a committed entry is durable on a quorum, and the kv state never runs ahead of
    /// the local log.
    ///
    /// With `send_early` false (the Ready's commit index must be durable before anyone hears
    /// it), the messages wait for `post_ready`.
    pub fn handle_ready_early(
        &mut self,
        ctx: &mut StoreContext,
        rd: &mut Ready,
        persisted: &RaftLocalState,
        apply: &mut ApplyContext,
        send_early: bool,
    ) -> Result<()> {
        if !self.is_leader() {
            return Ok(());
        }
        let old = persisted.hard_state.unwrap_or_default();
        let durable_vote = rd
            .hard_state
            .as_ref()
            .is_none_or(|hs| hs.term == old.term && hs.vote == old.vote);
        if durable_vote && send_early {
            for m in std::mem::take(&mut rd.messages) {
                self.send_raft_message(ctx, m);
            }
        }
        let upto = persisted.last_index.min(self.synced_index());
        self.apply_committed(ctx, upto, apply)
    }

    /// Phase two, after the round's raft write batch is synced: sends the remaining messages,
    /// applies the remaining committed entries into the store's apply context, and advances raft.
    ///
    /// With `deferred` (the number of this round's raft write, left unsynced), the messages wait
    /// for that write's sync, and only entries synced before are applied (`on_synced` does the
    /// rest).
    pub fn post_ready(
        &mut self,
        ctx: &mut StoreContext,
        mut rd: Ready,
        deferred: Option<u64>,
        apply: &mut ApplyContext,
    ) -> Result<()> {
        if let Some(ss) = &rd.soft_state {
            if ss.raft_state == StateRole::Leader {
                info!(self.logger, "became leader"; "term" => self.term());
                self.heartbeat_scheduler(ctx);
            }
        }
        match deferred {
            Some(seq) => {
                if let Some(first) = rd.entries.first() {
                    self.unsynced.push_back((seq, first.index));
                }
                self.deferred_msgs
                    .extend(rd.messages.drain(..).map(|m| (seq, m)));
            }
            None => {
                for m in std::mem::take(&mut rd.messages) {
                    self.send_raft_message(ctx, m);
                }
            }
        }
        for rs in &rd.read_states {
            self.reads.confirm(&rs.request_ctx, rs.index);
        }
        if rd.soft_state.is_some() {
            self.fail_lost_reads(ctx);
        }
        let upto = self.synced_index();
        self.apply_committed(ctx, upto, apply)?;
        self.raft_group.advance(rd);
        Ok(())
    }

    /// Takes the committed entries of `rd` into the queue of entries to apply, leaving in `rd`
    /// only the last one (for `advance`, which marks them applied in raft).
    pub fn queue_committed(&mut self, rd: &mut Ready) {
        // A replica that restored a snapshot steps nothing more until it is installed, so its
        // Ready cannot carry entries committed past the snapshot; the snapshot supersedes what
        // was committed before and not applied yet.
        assert!(
            rd.snapshot.is_none() || rd.committed_entries.is_empty(),
            "committed entries in the Ready of a snapshot"
        );
        if rd.snapshot.is_some() {
            self.committed.clear();
        }
        let last = rd.committed_entries.last().cloned();
        self.committed.extend(rd.committed_entries.drain(..));
        rd.committed_entries.extend(last);
    }

    /// The last log index known durable here: everything before the first index an unsynced
    /// write wrote (no limit when every write is synced).
    pub fn synced_index(&self) -> u64 {
        self.unsynced
            .iter()
            .map(|&(_, first)| first.saturating_sub(1))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Whether a raft write of this replica, or a message waiting for one, is not synced yet.
    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty() || !self.deferred_msgs.is_empty()
    }

    /// Whether something waits for a sync of the raft engine.
    pub fn waits_for_sync(&self) -> bool {
        self.has_unsynced() || !self.held_acks.is_empty() || !self.committed.is_empty()
    }

    /// The raft writes up to number `seq` are synced: their messages leave, the entries now
    /// durable are applied, and held acks within the synced log are stepped.
    pub fn on_synced(
        &mut self,
        ctx: &mut StoreContext,
        seq: u64,
        apply: &mut ApplyContext,
    ) -> Result<()> {
        while self.unsynced.front().is_some_and(|&(s, _)| s <= seq) {
            self.unsynced.pop_front();
        }
        let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred_msgs)
            .into_iter()
            .partition(|&(s, _)| s <= seq);
        self.deferred_msgs = later;
        for (_, m) in ready {
            self.send_raft_message(ctx, m);
        }
        if !self.is_frozen() {
            self.apply_committed(ctx, self.synced_index(), apply)?;
        }
        let synced = self.synced_index();
        for m in std::mem::take(&mut self.held_acks) {
            if m.index > synced && self.is_leader() {
                self.held_acks.push(m);
            } else if let Err(e) = self.raft_group.step(m) {
                debug!(self.logger, "held ack not stepped"; "err" => %e);
            }
        }
        Ok(())
    }
}
