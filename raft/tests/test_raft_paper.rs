//! TinyKV's `raft_paper_test.go`, ported: the scenarios of the Raft paper (sections 5.1-5.4), each
//! checked against the implementation by arranging a node, stepping messages into it and checking
//! its state and outgoing messages (leader election, 2AA; log replication, 2AB).

#[path = "common/network.rs"]
mod network;

use std::collections::HashMap;

use network::*;
use raft::eraftpb::{Entry, Message, MessageType};
use raft::{MemStorage, StateRole, INVALID_ID};

/// A message of type `t` with the given endpoints and term (the other fields zero).
fn msg(from: u64, to: u64, t: MessageType, term: u64) -> Message {
    let mut m = new_message(from, to, t);
    m.term = term;
    m
}

/// A proposal of one entry with `data`, from node 1 to itself.
fn propose(data: &[u8]) -> Message {
    let mut m = new_message(1, 1, MessageType::MsgPropose);
    m.entries = vec![Entry {
        data: data.to_vec(),
        ..Default::default()
    }];
    m
}

/// Whether `r` voted for itself in its current election (Go's `r.votes[r.id]`).
fn voted_for_self(r: &raft::Raft<MemStorage>) -> bool {
    r.votes.get(&r.id).copied().unwrap_or(false)
}

/// A follower: updates its term from a MsgAppend with a larger term.
#[test]
fn test_follower_update_term_from_message_2aa() {
    update_term_from_message(StateRole::Follower);
}

/// A candidate: updates its term from a MsgAppend with a larger term and reverts to follower.
#[test]
fn test_candidate_update_term_from_message_2aa() {
    update_term_from_message(StateRole::Candidate);
}

/// A leader: updates its term from a MsgAppend with a larger term and reverts to follower.
#[test]
fn test_leader_update_term_from_message_2aa() {
    update_term_from_message(StateRole::Leader);
}

/// If one server's current term is smaller than the other's, it updates its current term to the
/// larger value; a candidate or leader that discovers its term is out of date reverts to follower.
/// Reference: section 5.1
fn update_term_from_message(state: StateRole) {
    let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemStorage::new());
    match state {
        StateRole::Follower => r.become_follower(1, 2),
        StateRole::Candidate => r.become_candidate(),
        StateRole::Leader => {
            r.become_candidate();
            r.become_leader();
        }
        StateRole::PreCandidate => unreachable!(),
    }

    let _ = r.step(msg(0, 0, MessageType::MsgAppend, 2));

    assert_eq!(r.term, 2, "term");
    assert_eq!(r.state, StateRole::Follower, "state");
}

/// When servers start up, they begin as followers. Reference: section 5.2
#[test]
fn test_start_as_follower_2aa() {
    let r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemStorage::new());
    assert_eq!(r.state, StateRole::Follower, "state");
}

/// On a heartbeat tick the leader sends a MsgHeartbeat (index 0, log term 0, no entries) to every
/// follower. Reference: section 5.2
#[test]
fn test_leader_bcast_beat_2aa() {
    // heartbeat interval
    let hi = 1;
    let mut r = new_test_raft(1, vec![1, 2, 3], 10, hi, MemStorage::new());
    r.become_candidate();
    r.become_leader();

    let mut m = new_message(0, 0, MessageType::MsgPropose);
    m.entries = vec![Entry::default()];
    let _ = r.step(m);
    r.read_messages(); // clear message

    for _ in 0..hi {
        r.tick();
    }

    let msgs = sorted_messages(r.read_messages());
    let wmsgs = vec![
        msg(1, 2, MessageType::MsgHeartbeat, 1),
        msg(1, 3, MessageType::MsgHeartbeat, 1),
    ];
    assert_eq!(msgs, wmsgs);
}

/// A follower that hears nothing for an election timeout starts an election.
#[test]
fn test_follower_start_election_2aa() {
    nonleader_start_election(StateRole::Follower);
}

/// A candidate that gets no majority times out and starts a new election.
#[test]
fn test_candidate_start_new_election_2aa() {
    nonleader_start_election(StateRole::Candidate);
}

/// A follower that receives no communication over the election timeout begins an election: it
/// increments its term, becomes candidate, votes for itself and sends RequestVote to every other
/// server. A candidate that fails to obtain a majority times out and does the same.
/// Reference: section 5.2
fn nonleader_start_election(state: StateRole) {
    // election timeout
    let et = 10;
    let mut r = new_test_raft(1, vec![1, 2, 3], et, 1, MemStorage::new());
    match state {
        StateRole::Follower => r.become_follower(1, 2),
        StateRole::Candidate => r.become_candidate(),
        _ => unreachable!(),
    }

    for _ in 1..2 * et {
        r.tick();
    }

    assert_eq!(r.term, 2, "term");
    assert_eq!(r.state, StateRole::Candidate, "state");
    assert!(voted_for_self(&r), "vote for self = false, want true");
    let msgs = sorted_messages(r.read_messages());
    let wmsgs = vec![
        msg(1, 2, MessageType::MsgRequestVote, 2),
        msg(1, 3, MessageType::MsgRequestVote, 2),
    ];
    assert_eq!(msgs, wmsgs);
}

/// All outcomes of one round of RequestVote: the candidate wins, loses or cannot tell yet.
/// Reference: section 5.2
#[test]
fn test_leader_election_in_one_round_rpc_2aa() {
    // (cluster size, votes received (voter, granted), wanted state)
    type Case = (usize, Vec<(u64, bool)>, StateRole);
    let tests: Vec<Case> = vec![
        // win the election when receiving votes from a majority of the servers
        (1, vec![], StateRole::Leader),
        (3, vec![(2, true), (3, true)], StateRole::Leader),
        (3, vec![(2, true)], StateRole::Leader),
        (
            5,
            vec![(2, true), (3, true), (4, true), (5, true)],
            StateRole::Leader,
        ),
        (5, vec![(2, true), (3, true), (4, true)], StateRole::Leader),
        (5, vec![(2, true), (3, true)], StateRole::Leader),
        // stay in candidate if it does not obtain the majority
        (3, vec![], StateRole::Candidate),
        (5, vec![(2, true)], StateRole::Candidate),
        (5, vec![(2, false), (3, false)], StateRole::Candidate),
        (5, vec![], StateRole::Candidate),
    ];
    for (i, (size, votes, state)) in tests.into_iter().enumerate() {
        let mut r = new_test_raft(1, ids_by_size(size), 10, 1, MemStorage::new());

        let _ = r.step(new_message(1, 1, MessageType::MsgHup));
        for (id, vote) in votes {
            let mut m = msg(id, 1, MessageType::MsgRequestVoteResponse, r.term);
            m.reject = !vote;
            let _ = r.step(m);
        }

        assert_eq!(r.state, state, "#{i}: state");
        assert_eq!(r.term, 1, "#{i}: term");
    }
}

/// A follower votes for at most one candidate in a term, first come first served.
/// Reference: section 5.2
#[test]
fn test_follower_vote_2aa() {
    let tests = [
        (INVALID_ID, 1, false),
        (INVALID_ID, 2, false),
        (1, 1, false),
        (2, 2, false),
        (1, 2, true),
        (2, 1, true),
    ];
    for (i, &(vote, nvote, wreject)) in tests.iter().enumerate() {
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemStorage::new());
        r.term = 1;
        r.vote = vote;

        let _ = r.step(msg(nvote, 1, MessageType::MsgRequestVote, 1));

        let msgs = r.read_messages();
        let mut w = msg(1, nvote, MessageType::MsgRequestVoteResponse, 1);
        w.reject = wreject;
        let wmsgs = vec![w];
        assert_eq!(msgs, wmsgs, "#{i}");
    }
}

/// A candidate receiving a MsgAppend from a leader whose term is at least its own returns to
/// follower. Reference: section 5.2
#[test]
fn test_candidate_fallback_2aa() {
    let tests = [
        msg(2, 1, MessageType::MsgAppend, 1),
        msg(2, 1, MessageType::MsgAppend, 2),
    ];
    for (i, tt) in tests.into_iter().enumerate() {
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemStorage::new());
        let _ = r.step(new_message(1, 1, MessageType::MsgHup));
        assert_eq!(r.state, StateRole::Candidate, "unexpected state");

        let term = tt.term;
        let _ = r.step(tt);

        assert_eq!(r.state, StateRole::Follower, "#{i}: state");
        assert_eq!(r.term, term, "#{i}: term");
    }
}

/// A follower's election timeout is randomized.
#[test]
fn test_follower_election_timeout_randomized_2aa() {
    nonleader_election_timeout_randomized(StateRole::Follower);
}

/// A candidate's election timeout is randomized.
#[test]
fn test_candidate_election_timeout_randomized_2aa() {
    nonleader_election_timeout_randomized(StateRole::Candidate);
}

/// The election timeout of a follower or candidate is randomized: over many rounds, every number
/// of ticks in `(et, 2 * et)` is seen. Reference: section 5.2
fn nonleader_election_timeout_randomized(state: StateRole) {
    let et = 10;
    let mut r = new_test_raft(1, vec![1, 2, 3], et, 1, MemStorage::new());
    let mut timeouts: HashMap<usize, bool> = HashMap::new();
    for _round in 0..50 * et {
        match state {
            StateRole::Follower => {
                let term = r.term + 1;
                r.become_follower(term, 2);
            }
            StateRole::Candidate => r.become_candidate(),
            _ => unreachable!(),
        }

        let mut time = 0;
        while r.read_messages().is_empty() {
            r.tick();
            time += 1;
        }
        timeouts.insert(time, true);
    }

    for d in et + 1..2 * et {
        assert!(
            timeouts.get(&d).copied().unwrap_or(false),
            "timeout in {d} ticks should happen"
        );
    }
}

/// Followers rarely time out on the same tick.
#[test]
fn test_followers_election_timeout_nonconflict_2aa() {
    nonleaders_election_timeout_nonconflict(StateRole::Follower);
}

/// Candidates rarely time out on the same tick.
#[test]
fn test_candidates_election_timeout_nonconflict_2aa() {
    nonleaders_election_timeout_nonconflict(StateRole::Candidate);
}

/// In most rounds only a single follower or candidate times out, which makes split votes
/// unlikely. Reference: section 5.2
fn nonleaders_election_timeout_nonconflict(state: StateRole) {
    let et = 10;
    let size = 5;
    let ids = ids_by_size(size);
    let mut rs: Vec<_> = ids
        .iter()
        .map(|&id| new_test_raft(id, ids.clone(), et, 1, MemStorage::new()))
        .collect();
    let mut conflicts = 0;
    for _round in 0..1000 {
        for r in rs.iter_mut() {
            match state {
                StateRole::Follower => {
                    let term = r.term + 1;
                    r.become_follower(term, INVALID_ID);
                }
                StateRole::Candidate => r.become_candidate(),
                _ => unreachable!(),
            }
        }

        let mut timeout_num = 0;
        while timeout_num == 0 {
            for r in rs.iter_mut() {
                r.tick();
                if !r.read_messages().is_empty() {
                    timeout_num += 1;
                }
            }
        }
        // several rafts time out at the same tick
        if timeout_num > 1 {
            conflicts += 1;
        }
    }

    let g = conflicts as f64 / 1000.0;
    assert!(g <= 0.3, "probability of conflicts = {g}, want <= 0.3");
}

/// On a proposal the leader appends a new entry and sends AppendEntries carrying the index and
/// term of the preceding entry to every other server; the entry is unstable (to be persisted).
/// Reference: section 5.3
#[test]
fn test_leader_start_replication_2ab() {
    let s = MemStorage::new();
    let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, s.clone());
    r.become_candidate();
    r.become_leader();
    commit_noop_entry(&mut r, &s);
    let li = r.raft_log.last_index();

    let _ = r.step(propose(b"some data"));

    assert_eq!(r.raft_log.last_index(), li + 1, "lastIndex");
    assert_eq!(r.raft_log.committed, li, "committed");
    let msgs = sorted_messages(r.read_messages());
    let ent = entry_with_data(li + 1, 1, b"some data");
    let wents = [ent.clone()];
    let wmsg = |to: u64| {
        let mut m = msg(1, to, MessageType::MsgAppend, 1);
        m.index = li;
        m.log_term = 1;
        m.entries = vec![ent.clone()];
        m.commit = li;
        m
    };
    let wmsgs = vec![wmsg(2), wmsg(3)];
    assert_eq!(msgs, wmsgs);
    assert_eq!(r.raft_log.unstable_entries(), &wents[..], "ents");
}

/// Once an entry is safely replicated the leader commits it, hands it out to be applied, and
/// includes the new commit index in later AppendEntries. Reference: section 5.3
#[test]
fn test_leader_commit_entry_2ab() {
    let s = MemStorage::new();
    let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, s.clone());
    r.become_candidate();
    r.become_leader();
    commit_noop_entry(&mut r, &s);
    let li = r.raft_log.last_index();
    let _ = r.step(propose(b"some data"));

    for m in r.read_messages() {
        let _ = r.step(accept_and_reply(&m));
    }

    assert_eq!(r.raft_log.committed, li + 1, "committed");
    let wents = vec![entry_with_data(li + 1, 1, b"some data")];
    assert_eq!(r.raft_log.next_entries(), wents, "nextEnts");
    let msgs = sorted_messages(r.read_messages());
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.to, i as u64 + 2, "to");
        assert_eq!(m.msg_type(), MessageType::MsgAppend, "type");
        assert_eq!(m.commit, li + 1, "commit");
    }
}

/// An entry is committed once the leader that created it has replicated it on a majority.
/// Reference: section 5.3
#[test]
fn test_leader_acknowledge_commit_2ab() {
    let tests: Vec<(usize, Vec<u64>, bool)> = vec![
        (1, vec![], true),
        (3, vec![], false),
        (3, vec![2], true),
        (3, vec![2, 3], true),
        (5, vec![], false),
        (5, vec![2], false),
        (5, vec![2, 3], true),
        (5, vec![2, 3, 4], true),
        (5, vec![2, 3, 4, 5], true),
    ];
    for (i, (size, acceptors, wack)) in tests.into_iter().enumerate() {
        let s = MemStorage::new();
        let mut r = new_test_raft(1, ids_by_size(size), 10, 1, s.clone());
        r.become_candidate();
        r.become_leader();
        commit_noop_entry(&mut r, &s);
        let li = r.raft_log.last_index();
        let _ = r.step(propose(b"some data"));

        for m in r.read_messages() {
            if acceptors.contains(&m.to) {
                let _ = r.step(accept_and_reply(&m));
            }
        }

        assert_eq!(r.raft_log.committed > li, wack, "#{i}: ack commit");
    }
}

/// Committing an entry also commits every preceding entry, including those of earlier leaders,
/// and they are applied in log order. Reference: section 5.3
#[test]
fn test_leader_commit_preceding_entries_2ab() {
    let tests: Vec<Vec<Entry>> = vec![
        vec![],
        vec![new_entry(1, 2)],
        vec![new_entry(1, 1), new_entry(2, 2)],
        vec![new_entry(1, 1)],
    ];
    for (i, tt) in tests.into_iter().enumerate() {
        let storage = MemStorage::new();
        storage.wl().append(&tt).unwrap();
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, storage);
        r.term = 2;
        r.become_candidate();
        r.become_leader();
        let _ = r.step(propose(b"some data"));

        for m in r.read_messages() {
            let _ = r.step(accept_and_reply(&m));
        }

        let li = tt.len() as u64;
        let mut wents = tt.clone();
        wents.push(new_entry(li + 1, 3));
        wents.push(entry_with_data(li + 2, 3, b"some data"));
        assert_eq!(r.raft_log.next_entries(), wents, "#{i}: ents");
    }
}

/// Once a follower learns an entry is committed, it applies it (in log order).
/// Reference: section 5.3
#[test]
fn test_follower_commit_entry_2ab() {
    let tests: Vec<(Vec<Entry>, u64)> = vec![
        (vec![entry_with_data(1, 1, b"some data")], 1),
        (
            vec![
                entry_with_data(1, 1, b"some data"),
                entry_with_data(2, 1, b"some data2"),
            ],
            2,
        ),
        (
            vec![
                entry_with_data(1, 1, b"some data2"),
                entry_with_data(2, 1, b"some data"),
            ],
            2,
        ),
        (
            vec![
                entry_with_data(1, 1, b"some data"),
                entry_with_data(2, 1, b"some data2"),
            ],
            1,
        ),
    ];
    for (i, (ents, commit)) in tests.into_iter().enumerate() {
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemStorage::new());
        r.become_follower(1, 2);

        let mut m = msg(2, 1, MessageType::MsgAppend, 1);
        m.entries = ents.clone();
        m.commit = commit;
        let _ = r.step(m);

        assert_eq!(r.raft_log.committed, commit, "#{i}: committed");
        let wents = ents[..commit as usize].to_vec();
        assert_eq!(r.raft_log.next_entries(), wents, "#{i}: nextEnts");
    }
}

/// A follower refuses a MsgAppend whose (index, log term) is not in its log, and accepts it
/// otherwise. Reference: section 5.3
#[test]
fn test_follower_check_msg_append_2ab() {
    let ents = vec![new_entry(1, 1), new_entry(2, 2)];
    let tests = [
        // match with committed entries
        (0, 0, false),
        (ents[0].term, ents[0].index, false),
        // match with uncommitted entries
        (ents[1].term, ents[1].index, false),
        // unmatch with existing entry
        (ents[0].term, ents[1].index, true),
        // unexisting entry
        (ents[1].term + 1, ents[1].index + 1, true),
    ];
    for (i, &(term, index, wreject)) in tests.iter().enumerate() {
        let storage = MemStorage::new();
        storage.wl().append(&ents).unwrap();
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, storage);
        r.raft_log.committed = 1;
        r.become_follower(2, 2);
        r.read_messages(); // clear message

        let mut m = msg(2, 1, MessageType::MsgAppend, 2);
        m.log_term = term;
        m.index = index;
        let _ = r.step(m);

        let msgs = r.read_messages();
        assert_eq!(msgs.len(), 1, "#{i}: len(msgs)");
        assert_eq!(msgs[0].term, 2, "#{i}: term");
        assert_eq!(msgs[0].reject, wreject, "#{i}: reject");
    }
}

/// On a valid MsgAppend the follower deletes the conflicting entry and all that follow it, and
/// appends the new entries (which become unstable, to be persisted). Reference: section 5.3
#[test]
fn test_follower_append_entries_2ab() {
    // (index, term, lterm, ents, wents, wunstable): the MsgAppend's previous entry (index, term),
    // the leader's own term `lterm` (never below the terms of the entries it sends; TinyKV PR #299
    // replaced a fixed term 2 by these), the entries sent, then the log and the unstable entries
    // wanted.
    type Case = (u64, u64, u64, Vec<Entry>, Vec<Entry>, Vec<Entry>);
    let tests: Vec<Case> = vec![
        (
            2,
            2,
            3,
            vec![new_entry(3, 3)],
            vec![new_entry(1, 1), new_entry(2, 2), new_entry(3, 3)],
            vec![new_entry(3, 3)],
        ),
        (
            1,
            1,
            4,
            vec![new_entry(2, 3), new_entry(3, 4)],
            vec![new_entry(1, 1), new_entry(2, 3), new_entry(3, 4)],
            vec![new_entry(2, 3), new_entry(3, 4)],
        ),
        (
            0,
            0,
            2,
            vec![new_entry(1, 1)],
            vec![new_entry(1, 1), new_entry(2, 2)],
            vec![],
        ),
        (
            0,
            0,
            3,
            vec![new_entry(1, 3)],
            vec![new_entry(1, 3)],
            vec![new_entry(1, 3)],
        ),
    ];
    for (i, (index, term, lterm, ents, wents, wunstable)) in tests.into_iter().enumerate() {
        let storage = MemStorage::new();
        storage
            .wl()
            .append(&[new_entry(1, 1), new_entry(2, 2)])
            .unwrap();
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, storage);
        r.become_follower(2, 2);

        let mut m = msg(2, 1, MessageType::MsgAppend, lterm);
        m.log_term = term;
        m.index = index;
        m.entries = ents;
        let _ = r.step(m);

        assert_eq!(r.term, lterm, "#{i}: term");
        assert_eq!(r.raft_log.all_entries(), wents, "#{i}: ents");
        assert_eq!(
            r.raft_log.unstable_entries(),
            &wunstable[..],
            "#{i}: unstableEnts"
        );
    }
}

/// The leader brings a follower's log into consistency with its own (figure 7).
/// Reference: section 5.3, figure 7
#[test]
fn test_leader_sync_follower_log_2ab() {
    /// Entries with the given terms at indexes 1.., after a dummy zero entry (as in Go).
    fn log(terms: &[u64]) -> Vec<Entry> {
        let mut ents = vec![Entry::default()];
        ents.extend(
            terms
                .iter()
                .enumerate()
                .map(|(i, &t)| new_entry(i as u64 + 1, t)),
        );
        ents
    }
    let ents = log(&[1, 1, 1, 4, 4, 5, 5, 6, 6, 6]);
    let term = 8u64;
    let tests = [
        log(&[1, 1, 1, 4, 4, 5, 5, 6, 6]),
        log(&[1, 1, 1, 4]),
        log(&[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        log(&[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        log(&[1, 1, 1, 4, 4, 4, 4]),
        log(&[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ];
    for (i, tt) in tests.iter().enumerate() {
        let lead_storage = MemStorage::new();
        lead_storage.wl().append(&ents).unwrap();
        let mut lead = new_test_raft(1, vec![1, 2, 3], 10, 1, lead_storage);
        lead.term = term;
        lead.raft_log.committed = lead.raft_log.last_index();
        let follower_storage = MemStorage::new();
        follower_storage.wl().append(tt).unwrap();
        let mut follower = new_test_raft(2, vec![1, 2, 3], 10, 1, follower_storage);
        follower.term = term - 1;
        // It is necessary to have a three-node cluster.
        // The second may have more up-to-date log than the first one, so the
        // first node needs the vote from the third node to become the leader.
        let mut n = Network::new(vec![peer(lead), peer(follower), black_hole()]);
        n.send(vec![new_message(1, 1, MessageType::MsgHup)]);
        // The election occurs in the term after the one we loaded with
        // lead's term and commited index setted up above.
        n.send(vec![msg(
            3,
            1,
            MessageType::MsgRequestVoteResponse,
            term + 1,
        )]);

        let mut p = new_message(1, 1, MessageType::MsgPropose);
        p.entries = vec![Entry::default()];
        n.send(vec![p]);

        // Go's diffu(ltoa(lead), ltoa(follower)) == "": the two texts are equal.
        assert_eq!(
            ltoa(&n.peers[&1].raft_log),
            ltoa(&n.peers[&2].raft_log),
            "#{i}: log diff"
        );
    }
}

/// A vote request carries the candidate's last log index and term and goes to every other node.
/// Reference: section 5.4.1
#[test]
fn test_vote_request_2ab() {
    let tests: Vec<(Vec<Entry>, u64)> = vec![
        (vec![new_entry(1, 1)], 2),
        (vec![new_entry(1, 1), new_entry(2, 2)], 3),
    ];
    for (j, (ents, wterm)) in tests.into_iter().enumerate() {
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemStorage::new());
        let mut m = msg(2, 1, MessageType::MsgAppend, wterm - 1);
        m.log_term = 0;
        m.index = 0;
        m.entries = ents.clone();
        let _ = r.step(m);
        r.read_messages();

        while r.state != StateRole::Candidate {
            r.tick();
        }

        let msgs = sorted_messages(r.read_messages());
        assert_eq!(msgs.len(), 2, "#{j}: len(msg)");
        let last = ents.last().unwrap();
        let (windex, wlogterm) = (last.index, last.term);
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(m.msg_type(), MessageType::MsgRequestVote, "#{i}: msgType");
            assert_eq!(m.to, i as u64 + 2, "#{i}: to");
            assert_eq!(m.term, wterm, "#{i}: term");
            assert_eq!(m.index, windex, "#{i}: index");
            assert_eq!(m.log_term, wlogterm, "#{i}: logterm");
        }
    }
}

/// A voter denies its vote when its own log is more up to date than the candidate's. (TinyKV's
/// `raft/raft_paper_test.go` names it `TestVoter2AB`; before TinyKV PR
/// #294 it was suffixed 2AA.)
/// Reference: section 5.4.1
#[test]
fn test_voter_2ab() {
    let tests: Vec<(Vec<Entry>, u64, u64, bool)> = vec![
        // same logterm
        (vec![new_entry(1, 1)], 1, 1, false),
        (vec![new_entry(1, 1)], 1, 2, false),
        (vec![new_entry(1, 1), new_entry(2, 1)], 1, 1, true),
        // candidate higher logterm
        (vec![new_entry(1, 1)], 2, 1, false),
        (vec![new_entry(1, 1)], 2, 2, false),
        (vec![new_entry(1, 1), new_entry(2, 1)], 2, 1, false),
        // voter higher logterm
        (vec![new_entry(1, 2)], 1, 1, true),
        (vec![new_entry(1, 2)], 1, 2, true),
        (vec![new_entry(1, 2), new_entry(2, 1)], 1, 1, true),
    ];
    for (i, (ents, logterm, index, wreject)) in tests.into_iter().enumerate() {
        let storage = MemStorage::new();
        storage.wl().append(&ents).unwrap();
        let mut r = new_test_raft(1, vec![1, 2], 10, 1, storage);

        let mut m = msg(2, 1, MessageType::MsgRequestVote, 3);
        m.log_term = logterm;
        m.index = index;
        let _ = r.step(m);

        let msgs = r.read_messages();
        assert_eq!(msgs.len(), 1, "#{i}: len(msg)");
        let m = &msgs[0];
        assert_eq!(
            m.msg_type(),
            MessageType::MsgRequestVoteResponse,
            "#{i}: msgType"
        );
        assert_eq!(m.reject, wreject, "#{i}: reject");
    }
}

/// Only entries of the leader's current term are committed by counting replicas.
/// Reference: section 5.4.2
#[test]
fn test_leader_only_commits_log_from_current_term_2ab() {
    let ents = vec![new_entry(1, 1), new_entry(2, 2)];
    let tests = [
        // do not commit log entries in previous terms
        (1, 0),
        (2, 0),
        // commit log in current term
        (3, 3),
    ];
    for (i, &(index, wcommit)) in tests.iter().enumerate() {
        let storage = MemStorage::new();
        storage.wl().append(&ents).unwrap();
        let mut r = new_test_raft(1, vec![1, 2], 10, 1, storage);
        r.term = 2;
        // become leader at term 3
        r.become_candidate();
        r.become_leader();
        r.read_messages();
        // propose a entry to current term
        let mut p = new_message(1, 1, MessageType::MsgPropose);
        p.entries = vec![Entry::default()];
        let _ = r.step(p);

        let mut m = msg(2, 1, MessageType::MsgAppendResponse, r.term);
        m.index = index;
        let _ = r.step(m);
        assert_eq!(r.raft_log.committed, wcommit, "#{i}: commit");
    }
}
