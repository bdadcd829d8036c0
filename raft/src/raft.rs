//! `Raft`: the consensus state machine of one node — roles, terms, votes, replication and commit.
//!
//! Everything arrives through `step` (messages, local or from peers) and `tick` (time); everything
//! leaves through `msgs` (messages to send) and the `RaftLog` (entries to persist, entries to apply).
//! No I/O, no clock, no threads: randomness comes from an RNG seeded by `Config::seed`.
//!
//! `step` first handles what every role shares — comparing terms, stepping down, answering vote
//! requests — and then hands the message to one function per role (`step_leader`,
//! `step_candidate`, `step_follower`), so what a follower does can be read top to bottom in one
//! place. `tick` is per role too (`tick_election`, `tick_heartbeat`).

use std::collections::{BTreeMap, BTreeSet};

use prost::Message as _;
use proto::eraftpb::{ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slog::{debug, info, o, warn, Logger};

use crate::config::Config;
use crate::errors::{Error, Result, StorageError};
use crate::progress::{Progress, ProgressState};
use crate::quorum::{self, VoteResult};
use crate::raft_log::RaftLog;
use crate::read_only::{ReadOnly, ReadOnlyOption, ReadState};
use crate::storage::Storage;
use crate::util::{is_empty_snap, vote_resp_msg_type, INVALID_ID, NO_LIMIT};

/// The context of vote requests sent because of a leader transfer: they bypass the leader lease.
pub const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

/// The role of a node (TinyKV's `StateType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StateRole {
    /// Follows a leader (or waits for one).
    #[default]
    Follower,
    /// Campaigns for leadership in a new term.
    Candidate,
    /// Leads its term.
    Leader,
    /// Asks whether it could win an election, without raising its term (pre-vote only).
    PreCandidate,
}

/// The volatile state the application may want to watch: who leads, and in which role we are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SoftState {
    /// The known leader, or `INVALID_ID`.
    pub leader_id: u64,
    /// This node's role.
    pub raft_state: StateRole,
}

/// Why a node campaigns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CampaignType {
    PreElection,
    Election,
    Transfer,
}

/// Whether a snapshot sent to a follower arrived (see `RawNode::report_snapshot`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// The follower received and applied it.
    Finish,
    /// Sending failed; the leader will probe again.
    Failure,
}

fn msg(to: u64, t: MessageType) -> Message {
    Message {
        to,
        msg_type: t as i32,
        ..Default::default()
    }
}

/// One raft node. Fields are public so tests and tools can inspect (and, in tests, arrange) them.
pub struct Raft<T: Storage> {
    /// This node's id.
    pub id: u64,
    /// The current term.
    pub term: u64,
    /// Whom this node voted for in the current term, or `INVALID_ID`.
    pub vote: u64,
    /// The log.
    pub raft_log: RaftLog<T>,
    /// Replication progress of every member, this node included (TinyKV's `Prs`). Ordered, so
    /// broadcasts go out in id order and runs replay exactly.
    pub prs: BTreeMap<u64, Progress>,
    /// This node's role.
    pub state: StateRole,
    /// Votes received in the current election (member -> granted?).
    pub votes: BTreeMap<u64, bool>,
    /// Messages to send, drained by `RawNode::ready` (or `read_messages` in tests).
    pub msgs: Vec<Message>,
    /// The leader of the current term, or `INVALID_ID`.
    pub lead: u64,
    /// Ticks between heartbeats.
    pub heartbeat_timeout: usize,
    /// The base election timeout in ticks.
    pub election_timeout: usize,
    /// The current election timeout, drawn from `[election_timeout, 2 * election_timeout)`.
    pub randomized_election_timeout: usize,
    /// Ticks since the last heartbeat (leader only).
    pub heartbeat_elapsed: usize,
    /// Ticks since the last election timeout reset: since hearing from the leader (follower), since
    /// the campaign began (candidate), or since the last quorum check (leader).
    pub election_elapsed: usize,
    /// The node leadership is being handed to, if a transfer is in progress.
    pub lead_transferee: Option<u64>,
    /// Index of the latest membership change proposed; another may only be proposed once the log is
    /// applied past it.
    pub pending_conf_index: u64,
    /// Reads confirmed and ready to be served once applied (drained by `RawNode::ready`).
    pub read_states: Vec<ReadState>,
    /// ReadIndex requests waiting for a heartbeat quorum.
    pub read_only: ReadOnly,
    /// ReadIndex requests that arrived before this leader committed an entry of its term.
    pending_read_index_messages: Vec<Message>,
    /// A MsgTimeoutNow arrived while a committed membership change was not applied yet: this
    /// node campaigns (as the end of a transfer) once it is (`RawNode::advance`).
    pub campaign_on_apply: bool,
    /// Byte limit of the entries of one MsgAppend.
    pub max_msg_size: u64,
    max_inflight: usize,
    /// Whether elections start with a pre-vote round.
    pub pre_vote: bool,
    /// Whether the leader checks for an active quorum, and followers honour the leader lease.
    pub check_quorum: bool,
    rng: ChaCha8Rng,
    /// The node's logger (carries `raft_id`).
    pub logger: Logger,
}

impl<T: Storage> Raft<T> {
    /// A node restarted from `store` (or started: an empty store and `config.peers`), as a follower.
    pub fn new(config: &Config, store: T, logger: &Logger) -> Result<Self> {
        config.validate()?;
        let raft_state = store.initial_state()?;
        let logger = logger.new(o!("raft_id" => config.id));
        let raft_log = RaftLog::new(store, logger.clone());
        let peers = if raft_state.conf_state.nodes.is_empty() {
            config.peers.clone()
        } else {
            if !config.peers.is_empty() {
                let mut p = config.peers.clone();
                p.sort_unstable();
                let mut n = raft_state.conf_state.nodes.clone();
                n.sort_unstable();
                if p != n {
                    warn!(logger, "config peers differ from the stored membership; using the stored one";
                        "config_peers" => ?p, "stored" => ?n);
                }
            }
            raft_state.conf_state.nodes.clone()
        };
        let seed = config.seed ^ config.id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut r = Raft {
            id: config.id,
            term: 0,
            vote: INVALID_ID,
            raft_log,
            prs: BTreeMap::new(),
            state: StateRole::Follower,
            votes: BTreeMap::new(),
            msgs: Vec::new(),
            lead: INVALID_ID,
            heartbeat_timeout: config.heartbeat_tick,
            election_timeout: config.election_tick,
            randomized_election_timeout: config.election_tick,
            heartbeat_elapsed: 0,
            election_elapsed: 0,
            lead_transferee: None,
            pending_conf_index: 0,
            read_states: Vec::new(),
            read_only: ReadOnly::new(config.read_only_option),
            pending_read_index_messages: Vec::new(),
            campaign_on_apply: false,
            max_msg_size: config.max_size_per_msg,
            max_inflight: config.max_inflight_msgs,
            pre_vote: config.pre_vote,
            check_quorum: config.check_quorum,
            rng: ChaCha8Rng::seed_from_u64(seed),
            logger,
        };
        for id in peers {
            r.prs.insert(id, Progress::new(1, r.max_inflight));
        }
        if raft_state.hard_state != HardState::default() {
            r.load_state(&raft_state.hard_state);
        }
        if config.applied > 0 {
            r.raft_log.applied_to(config.applied);
        }
        let term = r.term;
        r.become_follower(term, INVALID_ID);
        info!(r.logger, "newRaft";
            "peers" => ?r.prs.keys().collect::<Vec<_>>(),
            "term" => r.term,
            "commit" => r.raft_log.committed,
            "applied" => r.raft_log.applied,
            "last_index" => r.raft_log.last_index(),
            "last_term" => r.raft_log.last_term());
        Ok(r)
    }

    fn load_state(&mut self, hs: &HardState) {
        assert!(
            hs.commit >= self.raft_log.committed && hs.commit <= self.raft_log.last_index(),
            "hard state commit {} is out of range [{}, {}]",
            hs.commit,
            self.raft_log.committed,
            self.raft_log.last_index()
        );
        self.raft_log.committed = hs.commit;
        self.term = hs.term;
        self.vote = hs.vote;
    }

    /// The volatile state.
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            leader_id: self.lead,
            raft_state: self.state,
        }
    }

    /// The state that must be persisted.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.raft_log.committed,
        }
    }

    /// Drains the outgoing messages (tests use this; applications use `RawNode::ready`).
    pub fn read_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.msgs)
    }

    /// The ids of the members, ascending (TinyKV's `nodes(r)`).
    pub fn nodes(&self) -> Vec<u64> {
        self.prs.keys().copied().collect()
    }

    /// Whether this node may become leader: it is a member.
    pub fn promotable(&self) -> bool {
        self.prs.contains_key(&self.id)
    }

    fn quorum(&self) -> usize {
        quorum::majority(self.prs.len())
    }

    /// Queues a message. `from` is this node; `term` is the current term, except for messages that
    /// carry their own (vote requests and responses) and forwarded local requests (term 0).
    fn send(&mut self, mut m: Message) {
        let t = m.msg_type();
        if t != MessageType::MsgTransferLeader || m.from == INVALID_ID {
            m.from = self.id;
        }
        match t {
            MessageType::MsgRequestVote
            | MessageType::MsgRequestPreVote
            | MessageType::MsgRequestVoteResponse
            | MessageType::MsgRequestPreVoteResponse => {
                assert!(m.term != 0, "term should be set when sending {t:?}");
            }
            MessageType::MsgPropose
            | MessageType::MsgReadIndex
            | MessageType::MsgTransferLeader => {
                m.term = 0;
            }
            _ => m.term = self.term,
        }
        self.msgs.push(m);
    }

    // ---- sending ----------------------------------------------------------------------------

    /// Sends entries (or a snapshot, when the follower needs compacted entries) to `to`, even an
    /// empty append (to carry the commit index). Returns whether a message was sent.
    pub fn send_append(&mut self, to: u64) -> bool {
        self.maybe_send_append(to, true)
    }

    fn maybe_send_append(&mut self, to: u64, send_if_empty: bool) -> bool {
        let Some(pr) = self.prs.get(&to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let next = pr.next_idx;
        let term = self.raft_log.term(next - 1);
        let ents = self.raft_log.entries(next, self.max_msg_size);
        if !send_if_empty && ents.as_ref().is_ok_and(|e| e.is_empty()) {
            return false;
        }
        let mut m = msg(to, MessageType::MsgAppend);
        match (term, ents) {
            (Ok(term), Ok(ents)) => {
                // STAGE 2AB else: fill in the MsgAppend: the entry before `next` (index, term) and the leader's commit index
                m.index = next - 1;
                m.log_term = term;
                m.commit = self.raft_log.committed;
                // ELSE
                // // Until then a leader sends no MsgAppend at all.
                // return false;
                // END STAGE 2AB
                if let Some(last) = ents.last().map(|e| e.index) {
                    let pr = self.prs.get_mut(&to).expect("progress checked above");
                    match pr.state {
                        ProgressState::Replicate => {
                            pr.optimistic_update(last);
                            pr.ins.add(last);
                        }
                        ProgressState::Probe => pr.pause(),
                        ProgressState::Snapshot => {
                            panic!("{} is sending append in the snapshot state", to)
                        }
                    }
                }
                m.entries = ents;
            }
            _ => {
                // STAGE 2C: the entries were compacted: send the snapshot instead, and move `to` to the snapshot state
                // The entries were compacted: the follower needs a snapshot.
                let snap = match self.raft_log.snapshot(next - 1) {
                    Ok(s) => s,
                    Err(Error::Store(StorageError::SnapshotTemporarilyUnavailable)) => {
                        debug!(self.logger, "snapshot temporarily unavailable, will retry"; "to" => to);
                        return false;
                    }
                    Err(e) => panic!("unexpected error getting a snapshot for {to}: {e}"),
                };
                assert!(!is_empty_snap(&snap), "need a non-empty snapshot");
                let meta = snap.metadata.clone().unwrap_or_default();
                debug!(self.logger, "sending snapshot";
                    "to" => to, "snapshot_index" => meta.index, "snapshot_term" => meta.term,
                    "first_index" => self.raft_log.first_index(),
                    "committed" => self.raft_log.committed);
                let pr = self.prs.get_mut(&to).expect("progress checked above");
                pr.become_snapshot(meta.index);
                m.set_msg_type(MessageType::MsgSnapshot);
                m.snapshot = Some(snap);
                // END STAGE 2C
            }
        }
        self.send(m);
        true
    }

    /// Sends a heartbeat to `to`, carrying the commit index up to what `to` is known to match, so a
    /// heartbeat never makes a follower commit entries it may not have.
    pub fn send_heartbeat(&mut self, to: u64) {
        self.send_heartbeat_with_ctx(to, Vec::new());
    }

    fn send_heartbeat_with_ctx(&mut self, to: u64, ctx: Vec<u8>) {
        // STAGE 2AA: send `to` a MsgHeartbeat with the commit index capped at what `to` matched, carrying `ctx`
        let matched = self.prs.get(&to).map_or(0, |p| p.matched);
        let mut m = msg(to, MessageType::MsgHeartbeat);
        m.commit = matched.min(self.raft_log.committed);
        m.context = ctx;
        self.send(m);
        // END STAGE 2AA
    }

    fn peer_ids(&self) -> Vec<u64> {
        self.prs
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect()
    }

    /// Sends appends to every follower.
    pub fn bcast_append(&mut self) {
        for id in self.peer_ids() {
            self.send_append(id);
        }
    }

    /// Sends heartbeats to every follower (carrying the newest pending ReadIndex context, if any).
    pub fn bcast_heartbeat(&mut self) {
        let ctx = self
            .read_only
            .last_pending_request_ctx()
            .unwrap_or_default();
        self.bcast_heartbeat_with_ctx(ctx);
    }

    fn bcast_heartbeat_with_ctx(&mut self, ctx: Vec<u8>) {
        for id in self.peer_ids() {
            self.send_heartbeat_with_ctx(id, ctx.clone());
        }
    }

    fn send_timeout_now(&mut self, to: u64) {
        self.send(msg(to, MessageType::MsgTimeoutNow));
    }

    // ---- log --------------------------------------------------------------------------------

    /// Appends entries in the current term (assigning their indexes) and counts the leader's own
    /// replica, which may commit them at once in a single-node group (when the commit index moves,
    /// the ReadIndex requests waiting for it are released: `release_pending_read_index_messages`).
    pub fn append_entry(&mut self, es: &mut [Entry]) {
        let li = self.raft_log.last_index();
        for (i, e) in es.iter_mut().enumerate() {
            e.term = self.term;
            e.index = li + 1 + i as u64;
        }
        let li = self.raft_log.append(es);
        if let Some(pr) = self.prs.get_mut(&self.id) {
            pr.maybe_update(li);
        }
        if self.maybe_commit() {
            self.release_pending_read_index_messages();
        }
    }

    /// Raises the commit index to the highest index a quorum has matched (see `quorum`), if that
    /// entry is of the current term (`RaftLog::maybe_commit`). Returns whether it moved.
    pub fn maybe_commit(&mut self) -> bool {
        // STAGE 2AB else
        let mci = quorum::committed_index(self.prs.values().map(|p| p.matched).collect());
        self.raft_log.maybe_commit(mci, self.term)
        // ELSE
        // // Until then nothing is ever committed.
        // false
        // END STAGE 2AB
    }

    fn committed_entry_in_current_term(&self) -> bool {
        self.raft_log
            .zero_term_on_compacted(self.raft_log.committed)
            == self.term
    }

    // ---- roles ------------------------------------------------------------------------------

    /// Moves to `term` (clearing the vote when the term changes) and resets the leader, timers,
    /// votes, progress and pending reads. Role transitions use it; tests use it to arrange a node.
    pub fn reset(&mut self, term: u64) {
        // STAGE 2AA: move to `term` (clearing the vote only if the term changes), reset leader, timers, votes and every member's progress
        if self.term != term {
            self.term = term;
            self.vote = INVALID_ID;
        }
        self.lead = INVALID_ID;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.abort_leader_transfer();
        self.votes.clear();
        let last = self.raft_log.last_index();
        let (id, cap) = (self.id, self.max_inflight);
        for (&pid, pr) in self.prs.iter_mut() {
            *pr = Progress::new(last + 1, cap);
            if pid == id {
                pr.matched = last;
                pr.recent_active = true;
            }
        }
        // END STAGE 2AA
        self.pending_conf_index = 0;
        self.campaign_on_apply = false;
        self.read_only = ReadOnly::new(self.read_only.option);
        self.pending_read_index_messages.clear();
    }

    fn reset_randomized_election_timeout(&mut self) {
        let et = self.election_timeout;
        self.randomized_election_timeout = self.rng.random_range(et..2 * et);
    }

    /// Becomes a follower of `lead` (or of nobody) in `term`.
    pub fn become_follower(&mut self, term: u64, lead: u64) {
        // STAGE 2AA: reset to `term`, then follow `lead`
        self.reset(term);
        self.lead = lead;
        self.state = StateRole::Follower;
        info!(self.logger, "became follower"; "term" => term, "lead" => lead);
        // END STAGE 2AA
    }

    /// Becomes a candidate: a new term, voting for itself.
    ///
    /// # Panics
    /// When called on a leader.
    pub fn become_candidate(&mut self) {
        assert!(
            self.state != StateRole::Leader,
            "invalid transition [leader -> candidate]"
        );
        // STAGE 2AA: start the next term, voting for itself
        let term = self.term + 1;
        self.reset(term);
        self.vote = self.id;
        self.state = StateRole::Candidate;
        info!(self.logger, "became candidate"; "term" => self.term);
        // END STAGE 2AA
    }

    /// Becomes a pre-candidate: same term and vote, asking peers whether it could win.
    ///
    /// # Panics
    /// When called on a leader.
    pub fn become_pre_candidate(&mut self) {
        assert!(
            self.state != StateRole::Leader,
            "invalid transition [leader -> pre-candidate]"
        );
        self.votes.clear();
        self.lead = INVALID_ID;
        self.state = StateRole::PreCandidate;
        info!(self.logger, "became pre-candidate"; "term" => self.term);
    }

    /// Becomes leader of the current term and appends a no-op entry in it (which is what lets it
    /// commit entries of earlier terms).
    ///
    /// # Panics
    /// When called on a follower.
    pub fn become_leader(&mut self) {
        assert!(
            self.state != StateRole::Follower,
            "invalid transition [follower -> leader]"
        );
        // STAGE 2AA: reset (same term) and lead; after the line below, append the no-op entry with `append_entry`
        let term = self.term;
        self.reset(term);
        self.lead = self.id;
        self.state = StateRole::Leader;
        // END STAGE 2AA
        // Any conf change in the log might still be pending: allow the next one only once
        // everything up to here is applied.
        self.pending_conf_index = self.raft_log.last_index();
        // STAGE 2AA remove
        self.append_entry(&mut [Entry::default()]);
        info!(self.logger, "became leader"; "term" => self.term);
        // END STAGE 2AA
    }

    /// Whether a committed entry not applied yet is a membership change (a node does not
    /// campaign then: it would count votes under a membership that is no longer the latest).
    fn has_unapplied_conf_change(&self) -> bool {
        let (lo, hi) = (self.raft_log.applied + 1, self.raft_log.committed + 1);
        lo < hi
            && self
                .raft_log
                .slice(lo, hi, NO_LIMIT)
                .unwrap_or_default()
                .iter()
                .any(|e| e.entry_type() == EntryType::EntryConfChange)
    }

    /// Called when the application has applied more of the log: a campaign a MsgTimeoutNow
    /// asked for while a membership change waited to be applied starts now.
    pub(crate) fn on_applied(&mut self) {
        if self.campaign_on_apply && !self.has_unapplied_conf_change() {
            self.campaign_on_apply = false;
            if self.state != StateRole::Leader {
                info!(self.logger, "the membership change is applied; campaigning as asked";
                    "term" => self.term);
                self.hup(true);
            }
        }
    }

    fn hup(&mut self, transfer: bool) {
        // STAGE 2AA: a leader, or a node that is not a member, does not campaign (then the checks below run)
        if self.state == StateRole::Leader {
            debug!(self.logger, "ignoring MsgHup because already leader");
            return;
        }
        if !self.promotable() {
            warn!(self.logger, "is unpromotable and can not campaign");
            return;
        }
        // END STAGE 2AA
        if self.has_unapplied_conf_change() {
            warn!(self.logger, "cannot campaign: there are unapplied conf changes";
                "term" => self.term);
            return;
        }
        info!(self.logger, "starting a new election"; "term" => self.term);
        if transfer {
            self.campaign(CampaignType::Transfer);
        } else if self.pre_vote {
            self.campaign(CampaignType::PreElection);
        } else {
            self.campaign(CampaignType::Election);
        }
    }

    /// Starts a campaign: a pre-election makes this node a pre-candidate asking for pre-votes for
    /// the next term (its term does not change); an election (or a transfer's) makes it a
    /// candidate of a new term asking for votes. Its own vote counts first; otherwise every peer
    /// is sent the request, which carries the term asked for and this node's last log index and
    /// term (and, for a transfer, the `CAMPAIGN_TRANSFER` context, which lets it through the
    /// leader lease).
    fn campaign(&mut self, t: CampaignType) {
        let (vote_msg, term) = if t == CampaignType::PreElection {
            self.become_pre_candidate();
            // Pre-vote requests carry the term the node would campaign in, without moving to it.
            (MessageType::MsgRequestPreVote, self.term + 1)
        } else {
            self.become_candidate();
            (MessageType::MsgRequestVote, self.term)
        };
        let id = self.id;
        if self.poll(id, vote_resp_msg_type(vote_msg), true) == VoteResult::Won {
            // A single-node group wins at once.
            if t == CampaignType::PreElection {
                self.campaign(CampaignType::Election);
            } else {
                // STAGE 2AA: the candidate's own vote is a majority: it wins
                self.become_leader();
                // END STAGE 2AA
            }
            return;
        }
        // STAGE 2AA: ask every peer for its vote: a `vote_msg` in `term` carrying this node's last log index and term
        let (last_index, last_term) = (self.raft_log.last_index(), self.raft_log.last_term());
        for to in self.peer_ids() {
            info!(self.logger, "sent vote request";
                "msg_type" => ?vote_msg, "to" => to, "term" => term,
                "log_index" => last_index, "log_term" => last_term);
            let mut m = msg(to, vote_msg);
            m.term = term;
            m.index = last_index;
            m.log_term = last_term;
            if t == CampaignType::Transfer {
                m.context = CAMPAIGN_TRANSFER.to_vec();
            }
            self.send(m);
        }
        // END STAGE 2AA
    }

    fn poll(&mut self, id: u64, t: MessageType, granted: bool) -> VoteResult {
        // STAGE 2AA: record the first answer of `id` only, then count the votes (see `quorum`)
        if granted {
            info!(self.logger, "received vote"; "from" => id, "msg_type" => ?t, "term" => self.term);
        } else {
            info!(self.logger, "received rejection"; "from" => id, "msg_type" => ?t, "term" => self.term);
        }
        self.votes.entry(id).or_insert(granted);
        quorum::vote_result(self.prs.keys(), &self.votes)
        // END STAGE 2AA
    }

    // ---- time -------------------------------------------------------------------------------

    /// Advances time by one tick.
    pub fn tick(&mut self) {
        // STAGE 2AA: a leader ticks its heartbeat timer, every other role its election timer
        match self.state {
            StateRole::Leader => self.tick_heartbeat(),
            _ => self.tick_election(),
        }
        // END STAGE 2AA
    }

    fn local(&self, t: MessageType) -> Message {
        let mut m = msg(self.id, t);
        m.from = self.id;
        m
    }

    fn tick_election(&mut self) {
        // STAGE 2AA: once the randomized election timeout has passed, a member steps a local MsgHup
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            let m = self.local(MessageType::MsgHup);
            let _ = self.step(m);
        }
        // END STAGE 2AA
    }

    fn tick_heartbeat(&mut self) {
        // STAGE 2AA remove
        self.heartbeat_elapsed += 1;
        // END STAGE 2AA
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.election_elapsed = 0;
            if self.check_quorum {
                let m = self.local(MessageType::MsgCheckQuorum);
                let _ = self.step(m);
            }
            // A transfer that did not finish within an election timeout is abandoned.
            if self.state == StateRole::Leader && self.lead_transferee.is_some() {
                // STAGE 3A: the transfer took longer than an election timeout: give it up
                self.abort_leader_transfer();
                // END STAGE 3A
            }
        }
        if self.state != StateRole::Leader {
            return;
        }
        // STAGE 2AA: count the tick on the heartbeat timer; when it reaches the heartbeat timeout, step a local MsgBeat
        if self.heartbeat_elapsed >= self.heartbeat_timeout {
            self.heartbeat_elapsed = 0;
            let m = self.local(MessageType::MsgBeat);
            let _ = self.step(m);
        }
        // END STAGE 2AA
    }

    // ---- step -------------------------------------------------------------------------------

    /// Handles one message: a local request (term 0) or one from a peer.
    ///
    /// First the terms: a message of a higher term makes this node a follower of that term (whose
    /// leader is the sender when the message is a MsgAppend, MsgHeartbeat or MsgSnapshot), except
    /// pre-vote traffic and vote requests within the leader lease; a message of a lower term is
    /// dropped, but a stale leader's MsgAppend or MsgHeartbeat is answered so that it learns the
    /// newer term. Then MsgHup starts an election, vote requests are answered, and every other
    /// message goes to the function of the node's role (`step_follower`, `step_candidate`,
    /// `step_leader`).
    pub fn step(&mut self, m: Message) -> Result<()> {
        let t = m.msg_type();
        if m.term == 0 {
            // Local message.
        } else if m.term > self.term {
            if matches!(
                t,
                MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
            ) {
                let force = m.context == CAMPAIGN_TRANSFER;
                let in_lease = self.check_quorum
                    && self.lead != INVALID_ID
                    && self.election_elapsed < self.election_timeout;
                if !force && in_lease {
                    info!(self.logger, "ignored vote request within the leader lease";
                        "msg_type" => ?t, "from" => m.from, "msg_term" => m.term,
                        "term" => self.term, "lead" => self.lead,
                        "remaining_ticks" => self.election_timeout - self.election_elapsed);
                    return Ok(());
                }
            }
            if t == MessageType::MsgRequestPreVote
                || (t == MessageType::MsgRequestPreVoteResponse && !m.reject)
            {
                // Pre-vote traffic never changes terms: a granted pre-vote response carries the
                // term the candidate would move to, not a newer term of the cluster.
            } else {
                // STAGE 2AA: a higher term: follow it, with the sender as leader if the message comes from a leader
                info!(self.logger, "received a message with higher term";
                    "msg_type" => ?t, "from" => m.from, "msg_term" => m.term, "term" => self.term);
                if matches!(
                    t,
                    MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
                ) {
                    self.become_follower(m.term, m.from);
                } else {
                    self.become_follower(m.term, INVALID_ID);
                }
                // END STAGE 2AA
            }
        } else if m.term < self.term {
            match t {
                MessageType::MsgAppend | MessageType::MsgHeartbeat => {
                    // STAGE 2AA: answer a stale leader (a MsgAppendResponse carries our newer term), so it steps down
                    // Tell a stale leader about the newer term, so it steps down.
                    self.send(msg(m.from, MessageType::MsgAppendResponse));
                    // END STAGE 2AA
                }
                MessageType::MsgRequestPreVote => {
                    let mut resp = msg(m.from, MessageType::MsgRequestPreVoteResponse);
                    resp.term = self.term;
                    resp.reject = true;
                    self.send(resp);
                }
                _ => {
                    debug!(self.logger, "ignored a message with lower term";
                        "msg_type" => ?t, "from" => m.from, "msg_term" => m.term, "term" => self.term);
                }
            }
            return Ok(());
        }

        // STAGE 2AA: MsgHup starts an election (`hup`), vote requests are answered, the rest goes to the role's step function
        match t {
            MessageType::MsgHup => {
                self.hup(false);
                Ok(())
            }
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => {
                self.handle_vote_request(m);
                Ok(())
            }
            _ => match self.state {
                StateRole::Follower => self.step_follower(m),
                StateRole::Candidate | StateRole::PreCandidate => self.step_candidate(m),
                StateRole::Leader => self.step_leader(m),
            },
        }
        // END STAGE 2AA
    }

    /// Answers a MsgRequestVote (or MsgRequestPreVote) of the current term: grants it when this
    /// node may vote for the candidate (it already voted for it, or has voted for nobody and knows
    /// no leader; a pre-vote for a later term may always be granted) and the candidate's log is at
    /// least as up to date as its own (`RaftLog::is_up_to_date`); a granted real vote is recorded
    /// and resets the election timer. The response carries the request's term when granted, and
    /// this node's term with `reject` set otherwise.
    fn handle_vote_request(&mut self, m: Message) {
        // STAGE 2AA: decide whether the vote can be granted, answer, and record a granted (real) vote
        let t = m.msg_type();
        // We may vote again for the node we voted for; otherwise only when we have not voted and
        // know no leader in this term; a pre-vote for a future term is always considered.
        let can_vote = self.vote == m.from
            || (self.vote == INVALID_ID && self.lead == INVALID_ID)
            || (t == MessageType::MsgRequestPreVote && m.term > self.term);
        let mut resp = msg(m.from, vote_resp_msg_type(t));
        if can_vote && self.raft_log.is_up_to_date(m.index, m.log_term) {
            info!(self.logger, "cast vote";
                "msg_type" => ?t, "candidate" => m.from, "term" => self.term,
                "candidate_log_term" => m.log_term, "candidate_index" => m.index);
            // A vote response carries the term of the request: for a real vote it is ours now; for
            // a pre-vote it is the term the candidate would move to.
            resp.term = m.term;
            self.send(resp);
            if t == MessageType::MsgRequestVote {
                self.election_elapsed = 0;
                self.vote = m.from;
            }
        } else {
            info!(self.logger, "rejected vote";
                "msg_type" => ?t, "candidate" => m.from, "term" => self.term, "vote" => self.vote,
                "candidate_log_term" => m.log_term, "candidate_index" => m.index);
            resp.term = self.term;
            resp.reject = true;
            self.send(resp);
        }
        // END STAGE 2AA
    }

    fn step_leader(&mut self, mut m: Message) -> Result<()> {
        match m.msg_type() {
            MessageType::MsgBeat => {
                // STAGE 2AA: a leader answers MsgBeat by sending every follower a heartbeat
                self.bcast_heartbeat();
                return Ok(());
                // END STAGE 2AA
            }
            MessageType::MsgCheckQuorum => {
                if !self.check_quorum_active() {
                    warn!(
                        self.logger,
                        "stepped down to follower since quorum is not active"
                    );
                    let term = self.term;
                    self.become_follower(term, INVALID_ID);
                }
                return Ok(());
            }
            MessageType::MsgPropose => {
                if m.entries.is_empty() {
                    warn!(self.logger, "dropped a proposal without entries");
                    return Err(Error::ProposalDropped);
                }
                if !self.prs.contains_key(&self.id) {
                    // Removed from the group while still leading: stop taking proposals.
                    return Err(Error::ProposalDropped);
                }
                if let Some(t) = self.lead_transferee {
                    // STAGE 3A: no proposals while leadership is being handed over
                    debug!(self.logger, "proposal dropped: leader transfer in progress"; "transferee" => t);
                    return Err(Error::ProposalDropped);
                    // END STAGE 3A
                }
                let conf_changes: Vec<usize> = m
                    .entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.entry_type() == EntryType::EntryConfChange)
                    .map(|(i, _)| i)
                    .collect();
                if !conf_changes.is_empty() {
                    // STAGE 3A: one conf change at a time: drop it unless the last one is applied, else remember its index
                    if conf_changes.len() > 1 || self.pending_conf_index > self.raft_log.applied {
                        info!(self.logger, "proposal of a conf change dropped: one is already pending";
                            "pending_conf_index" => self.pending_conf_index,
                            "applied" => self.raft_log.applied);
                        return Err(Error::ProposalDropped);
                    }
                    self.pending_conf_index =
                        self.raft_log.last_index() + 1 + conf_changes[0] as u64;
                    // END STAGE 3A
                }
                // STAGE 2AB else: append the proposed entries to the leader's log and replicate them to every follower
                self.append_entry(&mut m.entries);
                self.bcast_append();
                return Ok(());
                // ELSE
                // // Until then a proposal is taken and dropped (2AA's tests propose, and check
                // // only the heartbeats).
                // return Ok(());
                // END STAGE 2AB
            }
            MessageType::MsgReadIndex => {
                if m.entries.len() != 1 {
                    warn!(
                        self.logger,
                        "dropped a read index request without exactly one context entry"
                    );
                    return Err(Error::ProposalDropped);
                }
                if self.quorum() == 1 && self.promotable() {
                    let committed = self.raft_log.committed;
                    self.respond_to_read_index(m, committed);
                    return Ok(());
                }
                if !self.committed_entry_in_current_term() {
                    // A new leader does not know the commit index of the cluster until it commits
                    // an entry of its own term; the read waits until then.
                    self.pending_read_index_messages.push(m);
                    return Ok(());
                }
                self.handle_ready_read_index(m);
                return Ok(());
            }
            _ => {}
        }
        if !self.prs.contains_key(&m.from) {
            // STAGE 3A: ignore a non-member: a late answer of a removed node, or a transfer to a node outside the group
            debug!(self.logger, "no progress available"; "from" => m.from);
            return Ok(());
            // END STAGE 3A
        }
        match m.msg_type() {
            MessageType::MsgAppendResponse => self.handle_append_response(&m),
            MessageType::MsgHeartbeatResponse => self.handle_heartbeat_response(&m),
            MessageType::MsgTransferLeader => self.handle_transfer_leader(&m),
            _ => {}
        }
        Ok(())
    }

    fn handle_ready_read_index(&mut self, m: Message) {
        let committed = self.raft_log.committed;
        match self.read_only.option {
            ReadOnlyOption::Safe => {
                let ctx = m.entries[0].data.clone();
                self.read_only.add_request(committed, m);
                let id = self.id;
                self.read_only.recv_ack(id, &ctx);
                self.bcast_heartbeat_with_ctx(ctx);
            }
            ReadOnlyOption::LeaseBased => self.respond_to_read_index(m, committed),
        }
    }

    fn release_pending_read_index_messages(&mut self) {
        if self.pending_read_index_messages.is_empty() || !self.committed_entry_in_current_term() {
            return;
        }
        for m in std::mem::take(&mut self.pending_read_index_messages) {
            self.handle_ready_read_index(m);
        }
    }

    fn respond_to_read_index(&mut self, req: Message, index: u64) {
        if req.from == INVALID_ID || req.from == self.id {
            self.read_states.push(ReadState {
                index,
                request_ctx: req.entries[0].data.clone(),
            });
        } else {
            let mut resp = msg(req.from, MessageType::MsgReadIndexResp);
            resp.index = index;
            resp.entries = req.entries;
            self.send(resp);
        }
    }

    fn check_quorum_active(&mut self) -> bool {
        let id = self.id;
        let mut active = 0;
        for (&pid, pr) in self.prs.iter_mut() {
            if pid == id || pr.recent_active {
                active += 1;
            }
            if pid != id {
                pr.recent_active = false;
            }
        }
        active >= self.quorum()
    }

    /// Handles a follower's MsgAppendResponse. A rejection moves the follower's next index back
    /// (`Progress::maybe_decr_to`, helped by the follower's hint; a replicating follower goes back
    /// to probing) and sends again. An acceptance updates its progress (`Progress::maybe_update`;
    /// a probing follower, or one whose snapshot it has caught up with, starts replicating; the
    /// inflight window frees what was acknowledged); when a quorum now matches a newer entry of
    /// this term, the leader commits it, releases the ReadIndex requests waiting for that, and
    /// tells everyone the new commit index; otherwise a follower that was paused is sent to again.
    /// Either way the leader then keeps sending to the follower while it has more to send.
    fn handle_append_response(&mut self, m: &Message) {
        let from = m.from;
        // STAGE 2AB: on a rejection back off and resend; on success update the follower's progress, commit what a quorum has, and send more
        if m.reject {
            debug!(self.logger, "received a rejection of append";
                "from" => from, "rejected_index" => m.index, "hint" => m.reject_hint,
                "hint_term" => m.log_term);
            // Fast backtracking: skip every entry of ours whose term is above the follower's term
            // at its hint index, instead of one index per round trip.
            let next_probe = if m.log_term > 0 {
                self.raft_log
                    .find_conflict_by_term(m.reject_hint, m.log_term)
                    .0
            } else {
                m.reject_hint
            };
            let pr = self.prs.get_mut(&from).expect("checked by caller");
            pr.recent_active = true;
            if pr.maybe_decr_to(m.index, next_probe) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(from);
            }
            return;
        }
        let pr = self.prs.get_mut(&from).expect("checked by caller");
        pr.recent_active = true;
        let old_paused = pr.is_paused();
        if !pr.maybe_update(m.index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot if pr.is_snapshot_caught_up() => {
                debug!(self.logger, "snapshot caught up, resuming replication";
                    "to" => from, "matched" => pr.matched);
                pr.become_probe();
                pr.become_replicate();
            }
            ProgressState::Replicate => pr.ins.free_to(m.index),
            ProgressState::Snapshot => {}
        }
        if self.maybe_commit() {
            self.release_pending_read_index_messages();
            self.bcast_append();
        } else if old_paused {
            self.send_append(from);
        }
        // Fill the window while there is more to send.
        while self.maybe_send_append(from, false) {}
        // END STAGE 2AB
        if self.lead_transferee == Some(from)
            && self.prs[&from].matched == self.raft_log.last_index()
        {
            // STAGE 3A: the transferee has caught up: tell it to campaign now
            info!(self.logger, "sent MsgTimeoutNow after the transferee caught up"; "to" => from);
            self.send_timeout_now(from);
            // END STAGE 3A
        }
    }

    fn handle_heartbeat_response(&mut self, m: &Message) {
        let last = self.raft_log.last_index();
        let pr = self.prs.get_mut(&m.from).expect("checked by caller");
        pr.recent_active = true;
        pr.resume();
        if pr.state == ProgressState::Replicate && pr.ins.full() {
            pr.ins.free_first_one();
        }
        if pr.matched < last {
            // STAGE 2AB else
            self.send_append(m.from);
            // ELSE
            // // The follower lacks entries: send them.
            // END STAGE 2AB
        }
        if self.read_only.option != ReadOnlyOption::Safe || m.context.is_empty() {
            return;
        }
        let acked = match self.read_only.recv_ack(m.from, &m.context) {
            Some(acks) => acks.iter().filter(|id| self.prs.contains_key(id)).count(),
            None => return,
        };
        if acked < self.quorum() {
            return;
        }
        for rs in self.read_only.advance(&m.context) {
            self.respond_to_read_index(rs.req, rs.index);
        }
    }

    /// Handles a MsgTransferLeader (its `from` is the transferee). A transfer to itself is ignored,
    /// and asking again for the transfer in progress only resends what it needs; a transfer to
    /// another node replaces the one in progress. The leader records the transferee (the transfer
    /// must finish within an election timeout) and sends it a MsgTimeoutNow when its log is up to
    /// date, or the entries it lacks first (MsgTimeoutNow follows once it has caught up: see
    /// `handle_append_response`). Proposals are refused while a transfer is in progress.
    fn handle_transfer_leader(&mut self, m: &Message) {
        // STAGE 3A: record the transferee and send it MsgTimeoutNow once its log is up to date (or what it lacks first)
        let transferee = m.from;
        if let Some(last) = self.lead_transferee {
            if last == transferee {
                // Asked again (the transfer's deadline stays): the messages that carry it may
                // have been lost, so send them again: MsgTimeoutNow when the transferee has
                // caught up, else the entries it lacks. A second MsgTimeoutNow is harmless: a
                // transferee that already won has a higher term than the one it carries.
                info!(self.logger, "transfer leadership already in progress"; "to" => transferee);
                if self.prs.get(&transferee).map(|p| p.matched) == Some(self.raft_log.last_index())
                {
                    self.send_timeout_now(transferee);
                } else {
                    self.send_append(transferee);
                }
                return;
            }
            self.abort_leader_transfer();
            info!(self.logger, "abort previous leader transfer"; "to" => last);
        }
        if transferee == self.id {
            debug!(self.logger, "already leader; transfer to self ignored");
            return;
        }
        info!(self.logger, "starts to transfer leadership"; "to" => transferee);
        // The transfer must finish within an election timeout.
        self.election_elapsed = 0;
        self.lead_transferee = Some(transferee);
        if self.prs[&transferee].matched == self.raft_log.last_index() {
            self.send_timeout_now(transferee);
        } else {
            self.send_append(transferee);
        }
        // END STAGE 3A
    }

    /// Stops a leader transfer in progress.
    pub fn abort_leader_transfer(&mut self) {
        self.lead_transferee = None;
    }

    /// A (pre-)candidate's messages: proposals are dropped (no leader); a MsgAppend, MsgHeartbeat
    /// or MsgSnapshot of its term means a leader was elected, which it follows; vote responses are
    /// counted (`poll`): winning makes a pre-candidate campaign and a candidate lead, losing makes
    /// it a follower.
    fn step_candidate(&mut self, m: Message) -> Result<()> {
        let my_resp = if self.state == StateRole::PreCandidate {
            MessageType::MsgRequestPreVoteResponse
        } else {
            MessageType::MsgRequestVoteResponse
        };
        match m.msg_type() {
            MessageType::MsgPropose => {
                info!(self.logger, "no leader; dropping proposal"; "term" => self.term);
                return Err(Error::ProposalDropped);
            }
            MessageType::MsgReadIndex => {
                info!(self.logger, "no leader; dropping read index request"; "term" => self.term);
                return Err(Error::ProposalDropped);
            }
            MessageType::MsgAppend => {
                // STAGE 2AA: a leader of this term exists: follow it, then handle its message as a follower does
                self.become_follower(m.term, m.from);
                self.handle_append_entries(&m);
                // END STAGE 2AA
            }
            MessageType::MsgHeartbeat => {
                // STAGE 2AA: a leader of this term exists: follow it, then handle its message as a follower does
                self.become_follower(m.term, m.from);
                self.handle_heartbeat(&m);
                // END STAGE 2AA
            }
            MessageType::MsgSnapshot => {
                // STAGE 2AA: a leader of this term exists: follow it, then handle its message as a follower does
                self.become_follower(m.term, m.from);
                self.handle_snapshot(&m);
                // END STAGE 2AA
            }
            t if t == my_resp => match self.poll(m.from, t, !m.reject) {
                VoteResult::Won => {
                    if self.state == StateRole::PreCandidate {
                        self.campaign(CampaignType::Election);
                    } else {
                        // STAGE 2AA: a candidate that won leads, and sends every follower its log
                        self.become_leader();
                        self.bcast_append();
                        // END STAGE 2AA
                    }
                }
                VoteResult::Lost => {
                    // STAGE 2AA: lost: go back to following, with no known leader
                    let term = self.term;
                    self.become_follower(term, INVALID_ID);
                    // END STAGE 2AA
                }
                VoteResult::Pending => {}
            },
            MessageType::MsgTimeoutNow => {
                debug!(self.logger, "ignored MsgTimeoutNow as a candidate"; "from" => m.from);
            }
            _ => {}
        }
        Ok(())
    }

    /// A follower's messages: proposals (and leader transfers) go on to the leader; a MsgAppend,
    /// MsgHeartbeat or MsgSnapshot from the leader resets the election timer, sets the leader and
    /// is handled; a MsgTimeoutNow starts an election at once.
    fn step_follower(&mut self, mut m: Message) -> Result<()> {
        match m.msg_type() {
            MessageType::MsgPropose => {
                if self.lead == INVALID_ID {
                    info!(self.logger, "no leader; dropping proposal"; "term" => self.term);
                    return Err(Error::ProposalDropped);
                }
                m.to = self.lead;
                self.send(m);
            }
            MessageType::MsgAppend => {
                // STAGE 2AA: the leader spoke: reset the election timer, remember the leader, handle the message
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_append_entries(&m);
                // END STAGE 2AA
            }
            MessageType::MsgHeartbeat => {
                // STAGE 2AA: the leader spoke: reset the election timer, remember the leader, handle the message
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_heartbeat(&m);
                // END STAGE 2AA
            }
            MessageType::MsgSnapshot => {
                // STAGE 2AA: the leader spoke: reset the election timer, remember the leader, handle the message
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_snapshot(&m);
                // END STAGE 2AA
            }
            MessageType::MsgTransferLeader => {
                // STAGE 3A: pass the request on to the leader (drop it when there is none)
                if self.lead == INVALID_ID {
                    info!(self.logger, "no leader; dropping leader transfer"; "term" => self.term);
                    return Ok(());
                }
                m.to = self.lead;
                self.send(m);
                // END STAGE 3A
            }
            MessageType::MsgTimeoutNow => {
                // A leader that removed itself says what it committed (the commit a heartbeat
                // would carry: at most what this follower has of its log), so the election runs
                // under the membership it committed; a transfer's MsgTimeoutNow carries 0. When
                // that commits a membership change, the campaign waits until it is applied.
                self.raft_log.commit_to(m.commit);
                if self.promotable() && self.has_unapplied_conf_change() {
                    info!(self.logger, "received MsgTimeoutNow; campaigning once the committed membership change is applied";
                        "from" => m.from, "term" => self.term);
                    self.campaign_on_apply = true;
                    return Ok(());
                }
                // STAGE 3A: a member campaigns at once, bypassing the leader lease (`hup(true)`)
                if self.promotable() {
                    info!(self.logger, "received MsgTimeoutNow; starting an election to take leadership";
                        "from" => m.from, "term" => self.term);
                    self.hup(true);
                } else {
                    info!(self.logger, "received MsgTimeoutNow but is not a member"; "from" => m.from);
                }
                // END STAGE 3A
            }
            MessageType::MsgReadIndex => {
                if self.lead == INVALID_ID {
                    info!(self.logger, "no leader; dropping read index request"; "term" => self.term);
                    return Err(Error::ProposalDropped);
                }
                m.to = self.lead;
                self.send(m);
            }
            MessageType::MsgReadIndexResp => {
                if m.entries.len() != 1 {
                    warn!(self.logger, "invalid read index response"; "from" => m.from,
                        "entries" => m.entries.len());
                    return Ok(());
                }
                self.read_states.push(ReadState {
                    index: m.index,
                    request_ctx: m.entries[0].data.clone(),
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// Handles a MsgAppend and answers it with a MsgAppendResponse. A MsgAppend whose previous
    /// entry (`index`) is below the commit index is answered with the commit index. When the log
    /// has the previous entry (`index`, `log_term`), the entries are appended after it (replacing
    /// any conflicting tail, see `RaftLog::maybe_append`), the commit index follows the leader's
    /// (but not past the last new entry), and the answer carries the last new index. Otherwise it
    /// is rejected (`reject`, `index` = the message's index) with a hint of where the logs may
    /// match: `reject_hint` and `log_term` from `RaftLog::find_conflict_by_term`.
    pub fn handle_append_entries(&mut self, m: &Message) {
        // STAGE 2AB else
        if m.index < self.raft_log.committed {
            let mut resp = msg(m.from, MessageType::MsgAppendResponse);
            resp.index = self.raft_log.committed;
            self.send(resp);
            return;
        }
        let mut resp = msg(m.from, MessageType::MsgAppendResponse);
        match self
            .raft_log
            .maybe_append(m.index, m.log_term, m.commit, &m.entries)
        {
            Some(last_new) => {
                resp.index = last_new;
            }
            None => {
                let hint = m.index.min(self.raft_log.last_index());
                let (hint_index, hint_term) = self.raft_log.find_conflict_by_term(hint, m.log_term);
                debug!(self.logger, "rejected append";
                    "from" => m.from, "index" => m.index, "log_term" => m.log_term,
                    "local_term" => self.raft_log.zero_term_on_compacted(m.index),
                    "hint_index" => hint_index, "hint_term" => hint_term);
                resp.index = m.index;
                resp.reject = true;
                resp.reject_hint = hint_index;
                resp.log_term = hint_term;
            }
        }
        self.send(resp);
        // ELSE
        // // Until then a follower neither appends nor answers.
        // let _ = m;
        // END STAGE 2AB
    }

    /// Handles a MsgHeartbeat: commits up to what the leader says (never past what this node
    /// matched, as the leader caps it) and answers, echoing any ReadIndex context.
    pub fn handle_heartbeat(&mut self, m: &Message) {
        // STAGE 2AA: commit up to the heartbeat's commit index, then answer with a MsgHeartbeatResponse carrying its context
        self.raft_log.commit_to(m.commit);
        let mut resp = msg(m.from, MessageType::MsgHeartbeatResponse);
        resp.context = m.context.clone();
        self.send(resp);
        // END STAGE 2AA
    }

    /// Handles a MsgSnapshot: installs it (`restore`) when it is newer than what is committed, and
    /// answers with a MsgAppendResponse whose index is the new last index, or the commit index
    /// when the snapshot was not installed.
    pub fn handle_snapshot(&mut self, m: &Message) {
        // STAGE 2C: install the snapshot with `restore`, then answer with the index this node now has
        let snap = m.snapshot.clone().unwrap_or_default();
        let meta = snap.metadata.clone().unwrap_or_default();
        let mut resp = msg(m.from, MessageType::MsgAppendResponse);
        if self.restore(snap) {
            info!(self.logger, "restored snapshot";
                "snapshot_index" => meta.index, "snapshot_term" => meta.term,
                "commit" => self.raft_log.committed);
            resp.index = self.raft_log.last_index();
        } else {
            info!(self.logger, "ignored snapshot";
                "snapshot_index" => meta.index, "snapshot_term" => meta.term,
                "commit" => self.raft_log.committed);
            resp.index = self.raft_log.committed;
        }
        self.send(resp);
        // END STAGE 2C
    }

    /// Installs a snapshot: the log, the commit index and the membership. Returns false when it is
    /// not newer than the commit index, or when the log already has its last entry (then only the
    /// commit index moves).
    ///
    /// A node that is not a follower refuses it. When the log replaces the old one, every member
    /// of the snapshot's `conf_state` gets a fresh progress (this node's own matched at the
    /// snapshot's index).
    pub fn restore(&mut self, snap: Snapshot) -> bool {
        // STAGE 2C: ignore an old snapshot; fast-forward the commit if the log has its last entry; otherwise restore the log and the members
        let meta = snap.metadata.clone().unwrap_or_default();
        if meta.index <= self.raft_log.committed {
            return false;
        }
        if self.state != StateRole::Follower {
            // Defensive: only a follower installs snapshots.
            warn!(self.logger, "non-follower attempted to restore a snapshot"; "state" => ?self.state);
            let term = self.term + 1;
            self.become_follower(term, INVALID_ID);
            return false;
        }
        if self.raft_log.match_term(meta.index, meta.term) {
            info!(self.logger, "fast-forwarded commit to snapshot";
                "snapshot_index" => meta.index, "snapshot_term" => meta.term);
            self.raft_log.commit_to(meta.index);
            return false;
        }
        let nodes = meta.conf_state.clone().unwrap_or_default().nodes;
        self.raft_log.restore(snap);
        let last = self.raft_log.last_index();
        self.prs.clear();
        for id in nodes {
            let mut pr = Progress::new(last + 1, self.max_inflight);
            if id == self.id {
                pr.matched = last;
            }
            self.prs.insert(id, pr);
        }
        self.pending_conf_index = 0;
        true
        // END STAGE 2C
    }

    // ---- membership -------------------------------------------------------------------------

    /// Adds a member (when its conf change is applied); adding a member again changes nothing.
    pub fn add_node(&mut self, id: u64) {
        // STAGE 3A: a new member (none if already one) gets a progress starting after the leader's last index
        if self.prs.contains_key(&id) {
            return;
        }
        let mut pr = Progress::new(self.raft_log.last_index() + 1, self.max_inflight);
        // Treat it as active, or check-quorum could depose the leader before it ever spoke.
        pr.recent_active = true;
        self.prs.insert(id, pr);
        // END STAGE 3A
    }

    /// Removes a member (when its conf change is applied). The quorum shrinks, which may commit
    /// entries, and confirm reads, that were waiting for the removed node; a transfer to the
    /// removed node is given up. (A leader that removed itself steps down.)
    pub fn remove_node(&mut self, id: u64) {
        // STAGE 3A: forget the member's progress
        self.prs.remove(&id);
        // END STAGE 3A
        if self.state != StateRole::Leader {
            return;
        }
        if id == self.id {
            // A leader that removed itself steps down, so the remaining members elect a new one
            // instead of following a leader that can no longer take proposals.
            info!(self.logger, "stepping down: removed from the configuration"; "term" => self.term);
            let term = self.term;
            self.become_follower(term, INVALID_ID);
            return;
        }
        if self.prs.is_empty() {
            return;
        }
        // STAGE 3A: the quorum shrank: commit what it now has (releasing waiting reads) and tell the followers
        if self.maybe_commit() {
            self.release_pending_read_index_messages();
            self.bcast_append();
        }
        // END STAGE 3A
        self.confirm_reads_by_current_quorum();
        if self.lead_transferee == Some(id) {
            // STAGE 3A: the transferee is gone: give up the transfer
            self.abort_leader_transfer();
            // END STAGE 3A
        }
    }

    /// Answers the reads whose acknowledgements, counted among the current members only, now
    /// make a quorum (and every read queued before them). Acks are otherwise only counted when
    /// one arrives, so a read waiting for a removed member would never be answered, least of all
    /// when the leader is left alone and no ack will ever come.
    fn confirm_reads_by_current_quorum(&mut self) {
        if self.read_only.option != ReadOnlyOption::Safe {
            return;
        }
        let (prs, quorum) = (&self.prs, self.quorum());
        let confirmed =
            |acks: &BTreeSet<u64>| acks.iter().filter(|id| prs.contains_key(id)).count() >= quorum;
        let Some(ctx) = self.read_only.newest_confirmed(confirmed) else {
            return;
        };
        for rs in self.read_only.advance(&ctx) {
            self.respond_to_read_index(rs.req, rs.index);
        }
    }

    /// The current membership.
    pub fn conf_state(&self) -> ConfState {
        ConfState {
            nodes: self.nodes(),
        }
    }

    /// The follower `id` could not be reached: stop streaming to it and probe instead.
    pub fn report_unreachable(&mut self, id: u64) {
        if self.state != StateRole::Leader {
            return;
        }
        if let Some(pr) = self.prs.get_mut(&id) {
            if pr.state == ProgressState::Replicate {
                pr.become_probe();
            }
        }
    }

    /// Reports whether the snapshot sent to `id` arrived. On failure, the leader probes again after
    /// the next heartbeat response, which asks for a new snapshot if still needed.
    pub fn report_snapshot(&mut self, id: u64, status: SnapshotStatus) {
        if self.state != StateRole::Leader {
            return;
        }
        let Some(pr) = self.prs.get_mut(&id) else {
            return;
        };
        if pr.state != ProgressState::Snapshot {
            return;
        }
        if status == SnapshotStatus::Failure {
            pr.snapshot_failure();
        }
        pr.become_probe();
        // Wait for the follower's answer (or the next heartbeat response) before sending again.
        pr.pause();
        debug!(self.logger, "snapshot reported"; "to" => id, "status" => ?status);
    }

    /// Encodes a conf change into the data of an `EntryConfChange` entry.
    pub fn conf_change_entry(cc: &proto::eraftpb::ConfChange) -> Entry {
        Entry {
            entry_type: EntryType::EntryConfChange as i32,
            data: cc.encode_to_vec(),
            ..Default::default()
        }
    }
}
