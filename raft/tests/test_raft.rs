//! The 2AA (leader election) and 2AB (log replication) tests of TinyKV's `raft/raft_test.go`,
//! ported to Rust over the shared test network. The 2C and 3A tests of that file live elsewhere.

#[path = "common/network.rs"]
mod network;

use network::*;
use raft::eraftpb::{Entry, Message, MessageType};
use raft::{default_logger, Config, MemStorage, Raft, RaftLog, StateRole, INVALID_ID};

/// A log over a storage whose entry vector is exactly `ents` (dummy entry first), committed at
/// `committed` (TinyKV's `newLog(newMemoryStorageWithEnts(ents))` then `committed = ...`).
fn log_with_ents(ents: Vec<Entry>, committed: u64) -> RaftLog<MemStorage> {
    let mut l = RaftLog::new(MemStorage::new_with_entries(ents), default_logger());
    l.committed = committed;
    l
}

/// An empty log (TinyKV's `newLog(NewMemoryStorage())`).
fn empty_log() -> RaftLog<MemStorage> {
    RaftLog::new(MemStorage::new(), default_logger())
}

/// A local message of type `t` from `from` to `to` with term 0.
fn msg(from: u64, to: u64, t: MessageType) -> Message {
    new_message(from, to, t)
}

/// A proposal from `from` to `to` carrying one entry with `data`.
fn propose(from: u64, to: u64, data: &[u8]) -> Message {
    let mut m = new_message(from, to, MessageType::MsgPropose);
    m.entries = vec![Entry {
        data: data.to_vec(),
        ..Default::default()
    }];
    m
}

/// The leader's own progress tracks its last index (match = last, next = match + 1) as it appends.
#[test]
fn test_progress_leader_2ab() {
    let mut r = new_test_raft(1, vec![1, 2], 5, 1, MemStorage::new());
    r.become_candidate();
    r.become_leader();

    // Send proposals to r1. The first 5 entries should be appended to the log.
    let prop_msg = propose(1, 1, b"foo");
    for i in 0..5u64 {
        let pr = &r.prs[&r.id];
        assert!(
            pr.matched == i + 1 && pr.next_idx == pr.matched + 1,
            "unexpected progress {pr:?}"
        );
        if let Err(e) = r.step(prop_msg.clone()) {
            panic!("proposal resulted in error: {e:?}");
        }
    }
}

/// MsgHup on node 1 wins iff a majority of the network is alive; the term becomes 1.
#[test]
fn test_leader_election_2aa() {
    let cfg: Option<&dyn Fn(&mut Config)> = None;
    let mut tests = [
        (
            Network::new_with_config(cfg, vec![None, None, None]),
            StateRole::Leader,
            1,
        ),
        (
            Network::new_with_config(cfg, vec![None, None, black_hole()]),
            StateRole::Leader,
            1,
        ),
        (
            Network::new_with_config(cfg, vec![None, black_hole(), black_hole()]),
            StateRole::Candidate,
            1,
        ),
        (
            Network::new_with_config(cfg, vec![None, black_hole(), black_hole(), None]),
            StateRole::Candidate,
            1,
        ),
        (
            Network::new_with_config(cfg, vec![None, black_hole(), black_hole(), None, None]),
            StateRole::Leader,
            1,
        ),
    ];

    for (i, (nt, state, exp_term)) in tests.iter_mut().enumerate() {
        nt.send(vec![msg(1, 1, MessageType::MsgHup)]);
        let sm = &nt.peers[&1];
        assert_eq!(sm.state, *state, "#{i}: state");
        assert_eq!(sm.term, *exp_term, "#{i}: term");
    }
}

/// Each node of a cluster can campaign and be elected in turn (elections work when not starting
/// from a clean slate).
#[test]
fn test_leader_cycle_2aa() {
    let cfg: Option<&dyn Fn(&mut Config)> = None;
    let mut n = Network::new_with_config(cfg, vec![None, None, None]);
    for campaigner_id in 1..=3u64 {
        n.send(vec![msg(campaigner_id, campaigner_id, MessageType::MsgHup)]);

        for sm in n.peers.values() {
            if sm.id == campaigner_id {
                assert_eq!(
                    sm.state,
                    StateRole::Leader,
                    "campaigning node {} state",
                    sm.id
                );
            } else {
                assert_eq!(
                    sm.state,
                    StateRole::Follower,
                    "after campaign of node {campaigner_id}, node {} state",
                    sm.id
                );
            }
        }
    }
}

/// A newly elected leader without the newest (highest term) entries overwrites the higher-term
/// entries of the others with its lower-term ones.
#[test]
fn test_leader_election_overwrite_newer_logs_2ab() {
    let cfg = |c: &mut Config| {
        c.peers = ids_by_size(5);
    };
    let cfg: Option<&dyn Fn(&mut Config)> = Some(&cfg);
    // This network represents the results of the following sequence of events:
    // - Node 1 won the election in term 1.
    // - Node 1 replicated a log entry to node 2 but died before sending it to other nodes.
    // - Node 3 won the second election in term 2.
    // - Node 3 wrote an entry to its logs but died without sending it to any other nodes.
    //
    // At this point, nodes 1, 2, and 3 all have uncommitted entries in their logs and could win
    // an election at term 3. The winner's log entry overwrites the losers'.
    let mut n = Network::new_with_config(
        cfg,
        vec![
            peer(ents_with_config(cfg, 1, &[1])), // Node 1: Won first election
            peer(ents_with_config(cfg, 2, &[1])), // Node 2: Got logs from node 1
            peer(ents_with_config(cfg, 3, &[2])), // Node 3: Won second election
            peer(voted_with_config(cfg, 4, 3, 2)), // Node 4: Voted but didn't get logs
            peer(voted_with_config(cfg, 5, 3, 2)), // Node 5: Voted but didn't get logs
        ],
    );

    // Node 1 campaigns. The election fails because a quorum of nodes know about the election
    // that already happened at term 2. Node 1's term is pushed ahead to 2.
    n.send(vec![msg(1, 1, MessageType::MsgHup)]);
    assert_eq!(n.peers[&1].state, StateRole::Follower);
    assert_eq!(n.peers[&1].term, 2);

    // Node 1 campaigns again with a higher term. This time it succeeds.
    n.send(vec![msg(1, 1, MessageType::MsgHup)]);
    assert_eq!(n.peers[&1].state, StateRole::Leader);
    assert_eq!(n.peers[&1].term, 3);

    // Now all nodes agree on a log entry with term 1 at index 1 (and term 3 at index 2).
    // (Go reads the in-memory `entries` slice; `all_entries()` is the whole log here.)
    for (i, sm) in &n.peers {
        let entries = sm.raft_log.all_entries();
        assert_eq!(entries.len(), 2, "node {i}: len(entries)");
        assert_eq!(entries[0].term, 1, "node {i}: term at index 1");
        assert_eq!(entries[1].term, 3, "node {i}: term at index 2");
    }
}

/// From any state, a MsgRequestVote of a higher term is granted: one non-rejecting response,
/// and the node becomes a follower of the new term that voted for the candidate.
#[test]
fn test_vote_from_any_state_2aa() {
    let vt = MessageType::MsgRequestVote;
    let vt_resp = MessageType::MsgRequestVoteResponse;
    for st in [StateRole::Follower, StateRole::Candidate, StateRole::Leader] {
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemStorage::new());
        r.term = 1;

        match st {
            StateRole::Follower => {
                let term = r.term;
                r.become_follower(term, 3);
            }
            StateRole::Candidate => r.become_candidate(),
            StateRole::Leader => {
                r.become_candidate();
                r.become_leader();
            }
            StateRole::PreCandidate => unreachable!(),
        }
        r.read_messages(); // clear message

        // Note that setting our state above may have advanced r.term past its initial value.
        let new_term = r.term + 1;

        let mut m = new_message(2, 1, vt);
        m.term = new_term;
        m.log_term = new_term;
        m.index = 42;
        if let Err(e) = r.step(m) {
            panic!("{vt:?},{st:?}: Step failed: {e:?}");
        }
        assert_eq!(
            r.msgs.len(),
            1,
            "{vt:?},{st:?}: response messages, want 1: {:?}",
            r.msgs
        );
        let resp = &r.msgs[0];
        assert_eq!(
            resp.msg_type(),
            vt_resp,
            "{vt:?},{st:?}: response message type"
        );
        assert!(!resp.reject, "{vt:?},{st:?}: unexpected rejection");

        // If this was a vote, we reset our state and term.
        assert_eq!(r.state, StateRole::Follower, "{vt:?},{st:?}: state");
        assert_eq!(r.term, new_term, "{vt:?},{st:?}: term");
        assert_eq!(r.vote, 2, "{vt:?},{st:?}: vote");
    }
}

/// Proposals (also after a leader change) are replicated: every node commits them and applies
/// the proposed data in order.
#[test]
fn test_log_replication_2ab() {
    let mut tests = [
        (
            Network::new(vec![None, None, None]),
            vec![propose(1, 1, b"somedata")],
            2,
        ),
        (
            Network::new(vec![None, None, None]),
            vec![
                propose(1, 1, b"somedata"),
                msg(1, 2, MessageType::MsgHup),
                propose(1, 2, b"somedata"),
            ],
            4,
        ),
    ];

    for (i, (nt, msgs, wcommitted)) in tests.iter_mut().enumerate() {
        nt.send(vec![msg(1, 1, MessageType::MsgHup)]);

        for m in msgs.iter() {
            nt.send(vec![m.clone()]);
        }

        let ids: Vec<u64> = nt.peers.keys().copied().collect();
        for j in ids {
            let s = nt.storage[&j].clone();
            let sm = nt.peers.get_mut(&j).unwrap();

            assert_eq!(sm.raft_log.committed, *wcommitted, "#{i}.{j}: committed");

            let ents: Vec<Entry> = next_ents(sm, &s)
                .into_iter()
                .filter(|e| !e.data.is_empty())
                .collect();
            let props: Vec<&Message> = msgs
                .iter()
                .filter(|m| m.msg_type() == MessageType::MsgPropose)
                .collect();
            for (k, m) in props.iter().enumerate() {
                assert_eq!(ents[k].data, m.entries[0].data, "#{i}.{j}: data");
            }
        }
    }
}

/// A single node commits its no-op and two proposals at once (committed 3).
#[test]
fn test_single_node_commit_2ab() {
    let mut tt = Network::new(vec![None]);
    tt.send(vec![msg(1, 1, MessageType::MsgHup)]);
    tt.send(vec![propose(1, 1, b"some data")]);
    tt.send(vec![propose(1, 1, b"some data")]);

    assert_eq!(tt.peers[&1].raft_log.committed, 3);
}

/// Entries are committed when the leader changes, by the new leader's no-op entry, even with no
/// new proposal.
#[test]
fn test_commit_without_new_term_entry_2ab() {
    let mut tt = Network::new(vec![None, None, None, None, None]);
    tt.send(vec![msg(1, 1, MessageType::MsgHup)]);

    // 0 cannot reach 2,3,4
    tt.cut(1, 3);
    tt.cut(1, 4);
    tt.cut(1, 5);

    tt.send(vec![propose(1, 1, b"some data")]);
    tt.send(vec![propose(1, 1, b"some data")]);

    assert_eq!(tt.peers[&1].raft_log.committed, 1);

    // network recovery
    tt.recover();

    // elect 2 as the new leader with term 2
    // after append a ChangeTerm entry from the current term, all entries
    // should be committed
    tt.send(vec![msg(2, 2, MessageType::MsgHup)]);

    assert_eq!(tt.peers[&1].raft_log.committed, 4);
}

/// The leader sends its log to a follower whose heartbeat response shows it is behind.
#[test]
fn test_commit_with_heartbeat_2ab() {
    let mut tt = Network::new(vec![None, None, None, None, None]);
    tt.send(vec![msg(1, 1, MessageType::MsgHup)]);

    // isolate node 5
    tt.isolate(5);
    tt.send(vec![propose(1, 1, b"some data")]);
    tt.send(vec![propose(1, 1, b"some data")]);

    assert_eq!(tt.peers[&5].raft_log.committed, 1);

    // network recovery
    tt.recover();

    // leader broadcast heartbeat
    tt.send(vec![msg(1, 1, MessageType::MsgBeat)]);

    assert_eq!(tt.peers[&5].raft_log.committed, 3);
}

/// Two dueling candidates: the one with the longer log wins; the other one's later, higher-term
/// campaign only pushes everyone to term 2 as followers, logs unchanged.
#[test]
fn test_dueling_candidates_2ab() {
    let a = new_test_raft(1, vec![1, 2, 3], 10, 1, MemStorage::new());
    let b = new_test_raft(2, vec![1, 2, 3], 10, 1, MemStorage::new());
    let c = new_test_raft(3, vec![1, 2, 3], 10, 1, MemStorage::new());

    let mut nt = Network::new(vec![peer(a), peer(b), peer(c)]);
    nt.cut(1, 3);

    nt.send(vec![msg(1, 1, MessageType::MsgHup)]);
    nt.send(vec![msg(3, 3, MessageType::MsgHup)]);

    // 1 becomes leader since it receives votes from 1 and 2
    assert_eq!(nt.peers[&1].state, StateRole::Leader);

    // 3 stays as candidate since it receives a vote from 3 and a rejection from 2
    assert_eq!(nt.peers[&3].state, StateRole::Candidate);

    nt.recover();

    // candidate 3 now increases its term and tries to vote again
    // we expect it to disrupt the leader 1 since it has a higher term
    // 3 will be follower again since both 1 and 2 rejects its vote request since 3 does not have
    // a long enough log
    nt.send(vec![msg(3, 3, MessageType::MsgHup)]);

    let wlog = log_with_ents(vec![Entry::default(), new_entry(1, 1)], 1);
    let tests = [
        (1u64, StateRole::Follower, 2u64, ltoa(&wlog)),
        (2, StateRole::Follower, 2, ltoa(&wlog)),
        (3, StateRole::Follower, 2, ltoa(&empty_log())),
    ];

    for (i, (id, state, term, base)) in tests.iter().enumerate() {
        let sm = &nt.peers[id];
        assert_eq!(sm.state, *state, "#{i}: state");
        assert_eq!(sm.term, *term, "#{i}: term");
        assert_eq!(*base, ltoa(&sm.raft_log), "#{i}: log diff");
    }
}

/// An isolated candidate concedes to the leader elected meanwhile once the partition heals, and
/// every log ends up [noop(1,1), data(1,2)] committed at 2.
#[test]
fn test_candidate_concede_2ab() {
    let mut tt = Network::new(vec![None, None, None]);
    tt.isolate(1);

    tt.send(vec![msg(1, 1, MessageType::MsgHup)]);
    tt.send(vec![msg(3, 3, MessageType::MsgHup)]);

    // heal the partition
    tt.recover();
    // send heartbeat; reset wait
    tt.send(vec![msg(3, 3, MessageType::MsgBeat)]);

    let data = b"force follower";
    // send a proposal to 3 to flush out a MsgAppend to 1
    tt.send(vec![propose(3, 3, data)]);
    // send heartbeat; flush out commit
    tt.send(vec![msg(3, 3, MessageType::MsgBeat)]);

    let a = &tt.peers[&1];
    assert_eq!(a.state, StateRole::Follower);
    assert_eq!(a.term, 1);
    let wlog = log_with_ents(
        vec![
            Entry::default(),
            new_entry(1, 1),
            entry_with_data(2, 1, data),
        ],
        2,
    );
    let want_log = ltoa(&wlog);
    for (i, p) in &tt.peers {
        if let Some(sm) = &p.raft {
            assert_eq!(want_log, ltoa(&sm.raft_log), "#{i}: log diff");
        }
    }
}

/// A single node campaigning becomes leader.
#[test]
fn test_single_node_candidate_2aa() {
    let mut tt = Network::new(vec![None]);
    tt.send(vec![msg(1, 1, MessageType::MsgHup)]);

    assert_eq!(tt.peers[&1].state, StateRole::Leader);
}

/// A MsgAppend of an old term is ignored: the logs end identical, terms 1, 2, 3, 3 (data),
/// committed 4.
#[test]
fn test_old_messages_2ab() {
    let mut tt = Network::new(vec![None, None, None]);
    // make 0 leader @ term 3
    tt.send(vec![msg(1, 1, MessageType::MsgHup)]);
    tt.send(vec![msg(2, 2, MessageType::MsgHup)]);
    tt.send(vec![msg(1, 1, MessageType::MsgHup)]);
    // pretend we're an old leader trying to make progress; this entry is expected to be ignored.
    let mut m = new_message(2, 1, MessageType::MsgAppend);
    m.term = 2;
    m.entries = vec![new_entry(3, 2)];
    tt.send(vec![m]);
    // commit a new entry
    tt.send(vec![propose(1, 1, b"somedata")]);

    let ilog = log_with_ents(
        vec![
            Entry::default(),
            new_entry(1, 1),
            new_entry(2, 2),
            new_entry(3, 3),
            entry_with_data(4, 3, b"somedata"),
        ],
        4,
    );
    let base = ltoa(&ilog);
    for (i, p) in &tt.peers {
        if let Some(sm) = &p.raft {
            assert_eq!(base, ltoa(&sm.raft_log), "#{i}: log diff");
        }
    }
}

/// A proposal to a leader with a live majority is replicated and committed everywhere; without a
/// majority (no leader), every log stays empty. The term is 1 either way.
#[test]
fn test_proposal_2ab() {
    let mut tests = [
        (Network::new(vec![None, None, None]), true),
        (Network::new(vec![None, None, black_hole()]), true),
        (Network::new(vec![None, black_hole(), black_hole()]), false),
        (
            Network::new(vec![None, black_hole(), black_hole(), None]),
            false,
        ),
        (
            Network::new(vec![None, black_hole(), black_hole(), None, None]),
            true,
        ),
    ];

    for (j, (nt, success)) in tests.iter_mut().enumerate() {
        let data = b"somedata";

        // promote 1 to become leader
        nt.send(vec![msg(1, 1, MessageType::MsgHup)]);
        nt.send(vec![propose(1, 1, data)]);

        let want_log = if *success {
            log_with_ents(
                vec![
                    Entry::default(),
                    new_entry(1, 1),
                    entry_with_data(2, 1, data),
                ],
                2,
            )
        } else {
            empty_log()
        };
        let base = ltoa(&want_log);
        for (i, p) in &nt.peers {
            if let Some(sm) = &p.raft {
                assert_eq!(base, ltoa(&sm.raft_log), "#{j}.{i}: log diff");
            }
        }
        assert_eq!(nt.peers[&1].term, 1, "#{j}: term");
    }
}

/// handleAppendEntries: reject when the log lacks (Index, LogTerm); delete a conflicting suffix
/// and append the new entries; commit = min(leader commit, index of the last new entry).
#[test]
fn test_handle_msg_append_2ab() {
    let app = |term: u64, log_term: u64, index: u64, commit: u64, ents: Vec<Entry>| Message {
        msg_type: MessageType::MsgAppend as i32,
        term,
        log_term,
        index,
        commit,
        entries: ents,
        ..Default::default()
    };
    let tests = vec![
        // Ensure 1
        // (The leader's term is at least its log term: TinyKV PR #323 raised these from term 2.)
        (app(3, 3, 2, 3, vec![]), 2, 0, true), // previous log mismatch
        (app(3, 3, 3, 3, vec![]), 2, 0, true), // previous log non-exist
        // Ensure 2
        (app(2, 1, 1, 1, vec![]), 2, 1, false),
        (app(2, 0, 0, 1, vec![new_entry(1, 2)]), 1, 1, false),
        (
            app(2, 2, 2, 3, vec![new_entry(3, 2), new_entry(4, 2)]),
            4,
            3,
            false,
        ),
        (app(2, 2, 2, 4, vec![new_entry(3, 2)]), 3, 3, false),
        (app(2, 1, 1, 4, vec![new_entry(2, 2)]), 2, 2, false),
        // Ensure 3
        (app(2, 1, 1, 3, vec![]), 2, 1, false), // match entry 1, commit up to last new entry 1
        (app(2, 1, 1, 3, vec![new_entry(2, 2)]), 2, 2, false), // match entry 1, commit up to last new entry 2
        (app(2, 2, 2, 3, vec![]), 2, 2, false), // match entry 2, commit up to last new entry 2
        (app(2, 2, 2, 4, vec![]), 2, 2, false), // commit up to log.last()
    ];

    for (i, (m, w_index, w_commit, w_reject)) in tests.into_iter().enumerate() {
        let storage = MemStorage::new();
        storage
            .wl()
            .append(&[new_entry(1, 1), new_entry(2, 2)])
            .unwrap();
        let mut sm = new_test_raft(1, vec![1], 10, 1, storage);
        sm.become_follower(2, INVALID_ID);

        sm.handle_append_entries(&m);
        assert_eq!(sm.raft_log.last_index(), w_index, "#{i}: lastIndex");
        assert_eq!(sm.raft_log.committed, w_commit, "#{i}: committed");
        let msgs = sm.read_messages();
        assert_eq!(msgs.len(), 1, "#{i}: msgs");
        assert_eq!(msgs[0].reject, w_reject, "#{i}: reject");
    }
}

/// A voter grants a vote only to a candidate whose log is at least as up-to-date as its own, and
/// only once per term; a leader or candidate that voted for itself rejects.
/// (TinyKV's `raft/raft_test.go` names it `TestRecvMessageType_MsgRequestVote2AB`; before TinyKV
/// PR #294 it was suffixed 2AA.)
#[test]
fn test_recv_msg_request_vote_2ab() {
    let msg_type = MessageType::MsgRequestVote;
    let msg_resp_type = MessageType::MsgRequestVoteResponse;
    let tests = [
        (StateRole::Follower, 0, 0, INVALID_ID, true),
        (StateRole::Follower, 0, 1, INVALID_ID, true),
        (StateRole::Follower, 0, 2, INVALID_ID, true),
        (StateRole::Follower, 0, 3, INVALID_ID, false),
        (StateRole::Follower, 1, 0, INVALID_ID, true),
        (StateRole::Follower, 1, 1, INVALID_ID, true),
        (StateRole::Follower, 1, 2, INVALID_ID, true),
        (StateRole::Follower, 1, 3, INVALID_ID, false),
        (StateRole::Follower, 2, 0, INVALID_ID, true),
        (StateRole::Follower, 2, 1, INVALID_ID, true),
        (StateRole::Follower, 2, 2, INVALID_ID, false),
        (StateRole::Follower, 2, 3, INVALID_ID, false),
        (StateRole::Follower, 3, 0, INVALID_ID, true),
        (StateRole::Follower, 3, 1, INVALID_ID, true),
        (StateRole::Follower, 3, 2, INVALID_ID, false),
        (StateRole::Follower, 3, 3, INVALID_ID, false),
        (StateRole::Follower, 3, 2, 2, false),
        (StateRole::Follower, 3, 2, 1, true),
        (StateRole::Leader, 3, 3, 1, true),
        (StateRole::Candidate, 3, 3, 1, true),
    ];

    for (i, &(state, index, log_term, vote_for, wreject)) in tests.iter().enumerate() {
        let mut sm = new_test_raft(1, vec![1, 2], 10, 1, MemStorage::new());
        sm.state = state;
        sm.vote = vote_for;
        sm.raft_log = log_with_ents(vec![Entry::default(), new_entry(1, 2), new_entry(2, 2)], 0);

        // raft.term is greater than or equal to raft.raft_log.last_term. In this test we're only
        // testing MsgRequestVote responses when the campaigning node has a different raft log
        // compared to the recipient node. Additionally we're verifying behaviour when the
        // recipient node has already given out its vote for its current term. We're not testing
        // what the recipient node does when receiving a message with a different term number,
        // so we simply initialize both term numbers to be the same.
        let lterm = sm
            .raft_log
            .term(sm.raft_log.last_index())
            .unwrap_or_else(|e| panic!("unexpected error {e:?}"));
        let term = lterm.max(log_term);
        sm.term = term;
        let mut m = new_message(2, 0, msg_type);
        m.term = term;
        m.index = index;
        m.log_term = log_term;
        let _ = sm.step(m);

        let msgs = sm.read_messages();
        assert_eq!(msgs.len(), 1, "#{i}: len(msgs)");
        assert_eq!(msgs[0].msg_type(), msg_resp_type, "#{i}: m.MsgType");
        assert_eq!(msgs[0].reject, wreject, "#{i}: m.Reject");
    }
}

/// Every role steps down to follower on a MsgRequestVote or MsgAppend of a higher term (3); a
/// leader keeps its 1-entry log; the leader is the sender after MsgAppend, none after a vote.
#[test]
fn test_all_server_stepdown_2ab() {
    let tests = [
        (StateRole::Follower, StateRole::Follower, 3, 0),
        (StateRole::Candidate, StateRole::Follower, 3, 0),
        (StateRole::Leader, StateRole::Follower, 3, 1),
    ];

    let tmsg_types = [MessageType::MsgRequestVote, MessageType::MsgAppend];
    let tterm = 3;

    for (i, &(state, wstate, wterm, windex)) in tests.iter().enumerate() {
        let mut sm = new_test_raft(1, vec![1, 2, 3], 10, 1, MemStorage::new());
        match state {
            StateRole::Follower => sm.become_follower(1, INVALID_ID),
            StateRole::Candidate => sm.become_candidate(),
            StateRole::Leader => {
                sm.become_candidate();
                sm.become_leader();
            }
            StateRole::PreCandidate => unreachable!(),
        }

        for (j, &msg_type) in tmsg_types.iter().enumerate() {
            let mut m = new_message(2, 0, msg_type);
            m.term = tterm;
            m.log_term = tterm;
            let _ = sm.step(m);

            assert_eq!(sm.state, wstate, "#{i}.{j} state");
            assert_eq!(sm.term, wterm, "#{i}.{j} term");
            assert_eq!(sm.raft_log.last_index(), windex, "#{i}.{j} index");
            // Go reads the in-memory `entries` slice; `all_entries()` is the whole log here.
            assert_eq!(
                sm.raft_log.all_entries().len() as u64,
                windex,
                "#{i}.{j} len(ents)"
            );
            let wlead = if msg_type == MessageType::MsgRequestVote {
                INVALID_ID
            } else {
                2
            };
            assert_eq!(sm.lead, wlead, "#{i}, sm.Lead");
        }
    }
}

/// A candidate receiving a MsgHeartbeat from the leader adopts its term and reverts to follower.
#[test]
fn test_candidate_reset_term_msg_heartbeat_2aa() {
    candidate_reset_term(MessageType::MsgHeartbeat);
}

/// A candidate receiving a MsgAppend from the leader adopts its term and reverts to follower.
#[test]
fn test_candidate_reset_term_msg_append_2aa() {
    candidate_reset_term(MessageType::MsgAppend);
}

/// When a candidate receives a MsgHeartbeat or MsgAppend from the leader, `step` resets the term
/// to the leader's and reverts it to follower (TinyKV's `testCandidateResetTerm`).
fn candidate_reset_term(mt: MessageType) {
    let a = new_test_raft(1, vec![1, 2, 3], 10, 1, MemStorage::new());
    let b = new_test_raft(2, vec![1, 2, 3], 10, 1, MemStorage::new());
    let c = new_test_raft(3, vec![1, 2, 3], 10, 1, MemStorage::new());

    let mut nt = Network::new(vec![peer(a), peer(b), peer(c)]);

    nt.send(vec![msg(1, 1, MessageType::MsgHup)]);
    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&2].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].state, StateRole::Follower);

    // isolate 3 and increase term in rest
    nt.isolate(3);

    nt.send(vec![msg(2, 2, MessageType::MsgHup)]);
    nt.send(vec![msg(1, 1, MessageType::MsgHup)]);

    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&2].state, StateRole::Follower);

    while nt.peers[&3].state != StateRole::Candidate {
        nt.peers.get_mut(&3).unwrap().tick();
    }

    nt.recover();

    // leader sends to isolated candidate
    // and expects candidate to revert to follower
    let mut m = new_message(1, 3, mt);
    m.term = nt.peers[&1].term;
    nt.send(vec![m]);

    assert_eq!(nt.peers[&3].state, StateRole::Follower);

    // follower c term is reset with leader's
    assert_eq!(
        nt.peers[&1].term, nt.peers[&3].term,
        "follower term expected same term as leader's"
    );
}

/// An isolated follower times out into a candidate with a higher term; its answer to the
/// leader's late heartbeat carries that term and forces the leader to step down.
#[test]
fn test_disruptive_follower_2aa() {
    let mut n1 = new_test_raft(1, vec![1, 2, 3], 10, 1, MemStorage::new());
    let mut n2 = new_test_raft(2, vec![1, 2, 3], 10, 1, MemStorage::new());
    let mut n3 = new_test_raft(3, vec![1, 2, 3], 10, 1, MemStorage::new());

    n1.become_follower(1, INVALID_ID);
    n2.become_follower(1, INVALID_ID);
    n3.become_follower(1, INVALID_ID);

    let mut nt = Network::new(vec![peer(n1), peer(n2), peer(n3)]);

    nt.send(vec![msg(1, 1, MessageType::MsgHup)]);

    // check state
    assert_eq!(nt.peers[&1].state, StateRole::Leader, "node 1 state");
    assert_eq!(nt.peers[&2].state, StateRole::Follower, "node 2 state");
    assert_eq!(nt.peers[&3].state, StateRole::Follower, "node 3 state");

    // etcd server "advanceTicksForElection" on restart;
    // this is to expedite campaign trigger when given larger
    // election timeouts (e.g. multi-datacenter deploy)
    // Or leader messages are being delayed while ticks elapse
    while nt.peers[&3].state != StateRole::Candidate {
        nt.peers.get_mut(&3).unwrap().tick();
    }

    // n1 is still leader yet
    // while its heartbeat to candidate n3 is being delayed

    // check state
    assert_eq!(nt.peers[&1].state, StateRole::Leader, "node 1 state");
    assert_eq!(nt.peers[&2].state, StateRole::Follower, "node 2 state");
    assert_eq!(nt.peers[&3].state, StateRole::Candidate, "node 3 state");
    // check term
    assert_eq!(nt.peers[&1].term, 2, "node 1 term");
    assert_eq!(nt.peers[&2].term, 2, "node 2 term");
    assert_eq!(nt.peers[&3].term, 3, "node 3 term");

    // while outgoing vote requests are still queued in n3,
    // leader heartbeat finally arrives at candidate n3
    // however, due to delayed network from leader, leader
    // heartbeat was sent with lower term than candidate's
    let mut m = new_message(1, 3, MessageType::MsgHeartbeat);
    m.term = nt.peers[&1].term;
    nt.send(vec![m]);

    // then candidate n3 responds with "MsgAppendResponse" of higher term
    // and leader steps down from a message with higher term
    // this is to disrupt the current leader, so that candidate
    // with higher term can be freed with following election

    // check state
    assert_eq!(nt.peers[&1].state, StateRole::Follower, "node 1 state");

    // check term
    assert_eq!(nt.peers[&1].term, 3, "node 1 term");
}

/// A heartbeat must not raise the commit index of a stale (old leader) node past what it matched:
/// with MsgAppend dropped, its commit stays at most 1.
#[test]
fn test_heartbeat_update_commit_2ab() {
    let tests = [(1, 1), (5, 3), (5, 10)];
    for (i, &(fail_cnt, success_cnt)) in tests.iter().enumerate() {
        let sm1 = new_test_raft(1, vec![1, 2, 3], 10, 1, MemStorage::new());
        let sm2 = new_test_raft(2, vec![1, 2, 3], 10, 1, MemStorage::new());
        let sm3 = new_test_raft(3, vec![1, 2, 3], 10, 1, MemStorage::new());
        let mut nt = Network::new(vec![peer(sm1), peer(sm2), peer(sm3)]);
        nt.send(vec![msg(1, 1, MessageType::MsgHup)]);
        nt.isolate(1);
        // propose log to old leader should fail
        for _ in 0..fail_cnt {
            nt.send(vec![propose(1, 1, b"")]);
        }
        assert!(
            nt.peers[&1].raft_log.committed <= 1,
            "#{i}: unexpected commit: {}",
            nt.peers[&1].raft_log.committed
        );
        // propose log to cluster should success
        nt.send(vec![msg(2, 2, MessageType::MsgHup)]);
        for _ in 0..success_cnt {
            nt.send(vec![propose(2, 2, b"")]);
        }
        let w_commit = 2 + success_cnt as u64; // 2 elections
        assert_eq!(
            nt.peers[&2].raft_log.committed, w_commit,
            "#{i}: expected sm2 commit"
        );
        assert_eq!(
            nt.peers[&3].raft_log.committed, w_commit,
            "#{i}: expected sm3 commit"
        );

        nt.recover();
        nt.ignore(MessageType::MsgAppend);
        nt.send(vec![msg(2, 2, MessageType::MsgBeat)]);
        assert!(
            nt.peers[&1].raft_log.committed <= 1,
            "#{i}: expected sm1 commit: 1, got: {}",
            nt.peers[&1].raft_log.committed
        );
    }
}

/// MsgBeat makes a leader send a MsgHeartbeat to each follower; candidates and followers ignore it.
#[test]
fn test_recv_msg_beat_2aa() {
    let tests = [
        (StateRole::Leader, 2),
        // candidate and follower should ignore MsgBeat
        (StateRole::Candidate, 0),
        (StateRole::Follower, 0),
    ];

    for (i, &(state, w_msg)) in tests.iter().enumerate() {
        let mut sm = new_test_raft(1, vec![1, 2, 3], 10, 1, MemStorage::new());
        sm.raft_log = log_with_ents(vec![Entry::default(), new_entry(1, 0), new_entry(2, 1)], 0);
        sm.term = 1;
        sm.state = state;
        let _ = sm.step(msg(1, 1, MessageType::MsgBeat));

        let msgs = sm.read_messages();
        assert_eq!(msgs.len(), w_msg, "{i}: len(msgs)");
        for m in &msgs {
            assert_eq!(m.msg_type(), MessageType::MsgHeartbeat, "{i}: msg.MsgType");
        }
    }
}

/// After an election and a proposal, the leader's `next` for a caught-up follower is past the
/// previous entries, the no-op and the proposal (6).
#[test]
fn test_leader_increase_next_2ab() {
    let previous_ents = vec![new_entry(1, 1), new_entry(2, 1), new_entry(3, 1)];
    // previous entries + noop entry + propose + 1
    let wnext = previous_ents.len() as u64 + 1 + 1 + 1;

    let storage = MemStorage::new();
    storage.wl().append(&previous_ents).unwrap();
    let sm = new_test_raft(1, vec![1, 2], 10, 1, storage);
    let mut nt = Network::new(vec![peer(sm), None, None]);
    nt.send(vec![msg(1, 1, MessageType::MsgHup)]);

    nt.send(vec![propose(1, 1, b"somedata")]);

    let p = &nt.peers[&1].prs[&2];
    assert_eq!(p.next_idx, wnext, "next");
}

/// A single node is a follower when created, becomes leader on MsgHup, and stays leader in the
/// same term on a second MsgHup.
#[test]
fn test_campaign_while_leader_2aa() {
    let cfg = new_test_config(1, vec![1], 5, 1);
    let mut r = Raft::new(&cfg, MemStorage::new(), &default_logger()).unwrap();
    assert_eq!(
        r.state,
        StateRole::Follower,
        "expected new node to be follower"
    );
    // We don't call campaign() directly because it comes after the check
    // for our current state.
    let _ = r.step(msg(1, 1, MessageType::MsgHup));
    assert_eq!(
        r.state,
        StateRole::Leader,
        "expected single-node election to become leader"
    );
    let term = r.term;
    let _ = r.step(msg(1, 1, MessageType::MsgHup));
    assert_eq!(r.state, StateRole::Leader, "expected to remain leader");
    assert_eq!(r.term, term, "expected to remain in term");
}

/// After a split vote, the cluster completes the election in the next round.
#[test]
fn test_split_vote_2aa() {
    let mut n1 = new_test_raft(1, vec![1, 2, 3], 10, 1, MemStorage::new());
    let mut n2 = new_test_raft(2, vec![1, 2, 3], 10, 1, MemStorage::new());
    let mut n3 = new_test_raft(3, vec![1, 2, 3], 10, 1, MemStorage::new());

    n1.become_follower(1, INVALID_ID);
    n2.become_follower(1, INVALID_ID);
    n3.become_follower(1, INVALID_ID);

    let mut nt = Network::new(vec![peer(n1), peer(n2), peer(n3)]);
    nt.send(vec![msg(1, 1, MessageType::MsgHup)]);

    // simulate leader down. followers start split vote.
    nt.isolate(1);
    nt.send(vec![
        msg(2, 2, MessageType::MsgHup),
        msg(3, 3, MessageType::MsgHup),
    ]);

    // check whether the term values are expected
    assert_eq!(nt.peers[&2].term, 3, "peer 2 term");
    assert_eq!(nt.peers[&3].term, 3, "peer 3 term");

    // check state
    assert_eq!(nt.peers[&2].state, StateRole::Candidate, "peer 2 state");
    assert_eq!(nt.peers[&3].state, StateRole::Candidate, "peer 3 state");

    // node 2 election timeout first
    nt.send(vec![msg(2, 2, MessageType::MsgHup)]);

    // check whether the term values are expected
    assert_eq!(nt.peers[&2].term, 4, "peer 2 term");
    assert_eq!(nt.peers[&3].term, 4, "peer 3 term");

    // check state
    assert_eq!(nt.peers[&2].state, StateRole::Leader, "peer 2 state");
    assert_eq!(nt.peers[&3].state, StateRole::Follower, "peer 3 state");
}
