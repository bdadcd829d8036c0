//! Scenario tests of the raft crate's features beyond TinyKV — pre-vote, check-quorum (leader
//! lease), ReadIndex (safe and lease-based) and flow control (inflight window, message size limit,
//! fast log backtracking) — modeled on etcd raft's `raft_test.go` / `raft_flow_control_test.go`
//! and raft-rs's `test_raft.rs` / `test_raft_flow_control.rs`, over the shared test network.

#[path = "common/network.rs"]
mod network;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use network::*;
use raft::eraftpb::{Entry, HardState, Message, MessageType};
use raft::{
    default_logger, Config, Error, MemStorage, ProgressState, Raft, RawNode, ReadOnlyOption,
    ReadState, StateRole, INVALID_ID,
};

// ---- helpers --------------------------------------------------------------------------------

/// A raft built from `new_test_config(id, peers, election, heartbeat)` adjusted by `f`.
fn new_raft_with(
    id: u64,
    peers: Vec<u64>,
    election: usize,
    heartbeat: usize,
    storage: MemStorage,
    f: impl Fn(&mut Config),
) -> Raft<MemStorage> {
    let mut c = new_test_config(id, peers, election, heartbeat);
    f(&mut c);
    Raft::new(&c, storage, &default_logger()).expect("new raft")
}

fn prevote_config(c: &mut Config) {
    c.pre_vote = true;
}

/// `Some(prevote_config)` in the form the network builders take.
fn prevote() -> Option<&'static dyn Fn(&mut Config)> {
    let f: &'static dyn Fn(&mut Config) = &prevote_config;
    Some(f)
}

/// Pre-vote, with peers 1..=5: for rafts built by `ents_with_config` or `voted_with_config` and
/// passed to a five-node network, which (as TinyKV's) sets only their id.
fn prevote_five() -> Option<&'static dyn Fn(&mut Config)> {
    let f: &'static dyn Fn(&mut Config) = &|c: &mut Config| {
        prevote_config(c);
        c.peers = ids_by_size(5);
    };
    Some(f)
}

fn hup(id: u64) -> Message {
    new_message(id, id, MessageType::MsgHup)
}

fn beat(id: u64) -> Message {
    new_message(id, id, MessageType::MsgBeat)
}

/// A proposal to `id` with one "somedata" entry.
fn propose(id: u64) -> Message {
    new_message_with_entries(id, id, MessageType::MsgPropose, 1)
}

/// A proposal from `from` to `to` with one entry holding `data`.
fn propose_data(from: u64, to: u64, data: &[u8]) -> Message {
    let mut m = new_message(from, to, MessageType::MsgPropose);
    m.entries = vec![Entry {
        data: data.to_vec(),
        ..Default::default()
    }];
    m
}

/// A MsgReadIndex from `from` to `to` carrying the request context `ctx`.
fn read_index_msg(from: u64, to: u64, ctx: &[u8]) -> Message {
    let mut m = new_message(from, to, MessageType::MsgReadIndex);
    m.entries = vec![Entry {
        data: ctx.to_vec(),
        ..Default::default()
    }];
    m
}

/// A message of type `t` from `from` to `to` in `term`.
fn msg_with_term(from: u64, to: u64, t: MessageType, term: u64) -> Message {
    let mut m = new_message(from, to, t);
    m.term = term;
    m
}

fn vote_resp_type(t: MessageType) -> MessageType {
    match t {
        MessageType::MsgRequestVote => MessageType::MsgRequestVoteResponse,
        MessageType::MsgRequestPreVote => MessageType::MsgRequestPreVoteResponse,
        _ => panic!("not a vote message: {t:?}"),
    }
}

/// Entries `(index, term)` with no data.
fn ents(pairs: &[(u64, u64)]) -> Vec<Entry> {
    pairs.iter().map(|&(i, t)| new_entry(i, t)).collect()
}

/// etcd's `checkLeaderTransferState`.
fn check_leader_transfer_state(r: &Raft<MemStorage>, state: StateRole, lead: u64) {
    assert!(
        r.state == state && r.lead == lead,
        "after transferring, node has state {:?} lead {}, want state {:?} lead {}",
        r.state,
        r.lead,
        state,
        lead
    );
    assert_eq!(r.lead_transferee, None);
}

fn encoded_len(e: &Entry) -> u64 {
    prost::Message::encoded_len(e) as u64
}

// ---- pre-vote -------------------------------------------------------------------------------

/// etcd's `testVoteFromAnyState`: a node in any state answers a vote request of a higher term;
/// a real vote moves it to follower in that term, a pre-vote changes nothing.
fn vote_from_any_state(vt: MessageType) {
    for state in [
        StateRole::Follower,
        StateRole::Candidate,
        StateRole::PreCandidate,
        StateRole::Leader,
    ] {
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemStorage::new());
        r.term = 1;
        match state {
            StateRole::Follower => {
                let term = r.term;
                r.become_follower(term, 3);
            }
            StateRole::PreCandidate => r.become_pre_candidate(),
            StateRole::Candidate => r.become_candidate(),
            StateRole::Leader => {
                r.become_candidate();
                r.become_leader();
            }
        }
        // Setting the state above may have advanced the term past its initial value.
        let orig_term = r.term;
        let new_term = r.term + 1;

        let mut m = msg_with_term(2, 1, vt, new_term);
        m.log_term = new_term;
        m.index = 42;
        r.step(m)
            .unwrap_or_else(|e| panic!("{vt:?},{state:?}: step failed: {e}"));
        assert_eq!(
            r.msgs.len(),
            1,
            "{vt:?},{state:?}: {} response messages, want 1: {:?}",
            r.msgs.len(),
            r.msgs
        );
        let resp = &r.msgs[0];
        assert_eq!(
            resp.msg_type(),
            vote_resp_type(vt),
            "{vt:?},{state:?}: response message type"
        );
        assert!(!resp.reject, "{vt:?},{state:?}: unexpected rejection");

        if vt == MessageType::MsgRequestVote {
            // A real vote resets the state and the term.
            assert_eq!(r.state, StateRole::Follower, "{vt:?},{state:?}: state");
            assert_eq!(r.term, new_term, "{vt:?},{state:?}: term");
            assert_eq!(r.vote, 2, "{vt:?},{state:?}: vote");
        } else {
            // In a pre-vote, nothing changes.
            assert_eq!(r.state, state, "{vt:?},{state:?}: state");
            assert_eq!(r.term, orig_term, "{vt:?},{state:?}: term");
            // A follower or pre-candidate has not voted; a candidate or leader voted for itself.
            assert!(
                r.vote == INVALID_ID || r.vote == 1,
                "{vt:?},{state:?}: vote {}, want {} or 1",
                r.vote,
                INVALID_ID
            );
        }
    }
}

/// A node in any state grants a real vote of a higher term and becomes its follower.
#[test]
fn test_vote_from_any_state() {
    vote_from_any_state(MessageType::MsgRequestVote);
}

/// A node in any state answers MsgRequestPreVote without changing its state, term or vote.
#[test]
fn test_prevote_from_any_state() {
    vote_from_any_state(MessageType::MsgRequestPreVote);
}

/// etcd's `TestLeaderElectionPreVote`: elections with pre-vote; a failed one leaves the node a
/// pre-candidate at term 0.
#[test]
fn test_prevote_leader_election() {
    let pv = prevote();
    let mut tests = [
        (
            Network::new_with_config(pv, vec![None, None, None]),
            StateRole::Leader,
            1,
        ),
        (
            Network::new_with_config(pv, vec![None, None, black_hole()]),
            StateRole::Leader,
            1,
        ),
        (
            Network::new_with_config(pv, vec![None, black_hole(), black_hole()]),
            StateRole::PreCandidate,
            0,
        ),
        (
            Network::new_with_config(pv, vec![None, black_hole(), black_hole(), None]),
            StateRole::PreCandidate,
            0,
        ),
        (
            Network::new_with_config(pv, vec![None, black_hole(), black_hole(), None, None]),
            StateRole::Leader,
            1,
        ),
        // Three logs further along than 0, but in the same term so rejections are returned
        // instead of the votes being ignored.
        (
            Network::new_with_config(
                pv,
                vec![
                    None,
                    peer(ents_with_config(prevote_five(), 2, &[1])),
                    peer(ents_with_config(prevote_five(), 3, &[1])),
                    peer(ents_with_config(prevote_five(), 4, &[1, 1])),
                    None,
                ],
            ),
            StateRole::Follower,
            1,
        ),
    ];
    for (i, (nt, state, term)) in tests.iter_mut().enumerate() {
        nt.send(vec![hup(1)]);
        let r = &nt.peers[&1];
        assert_eq!(r.state, *state, "#{i}: state");
        assert_eq!(r.term, *term, "#{i}: term");
    }
}

/// etcd's `TestLeaderCyclePreVote`: with pre-vote, each node in turn can campaign and win.
#[test]
fn test_prevote_leader_cycle() {
    let mut nt = Network::new_with_config(prevote(), vec![None, None, None]);
    for campaigner in 1..=3u64 {
        nt.send(vec![hup(campaigner)]);
        for (&id, r) in &nt.peers {
            if id == campaigner {
                assert_eq!(r.state, StateRole::Leader, "campaigning node {id}");
            } else {
                assert_eq!(
                    r.state,
                    StateRole::Follower,
                    "after campaign of node {campaigner}, node {id}"
                );
            }
        }
    }
}

/// etcd's `TestLeaderElectionOverwriteNewerLogsPreVote`: a leader without the newest-term entries
/// is elected (after a failed pre-vote pushes its term) and overwrites them.
#[test]
fn test_prevote_leader_election_overwrite_newer_logs() {
    let pv = prevote_five();
    // - Node 1 won the election in term 1.
    // - Node 1 replicated a log entry to node 2 but died before sending it to other nodes.
    // - Node 3 won the second election in term 2.
    // - Node 3 wrote an entry to its logs but died without sending it to any other nodes.
    let mut nt = Network::new_with_config(
        pv,
        vec![
            peer(ents_with_config(pv, 1, &[1])), // Node 1: won the first election
            peer(ents_with_config(pv, 2, &[1])), // Node 2: got logs from node 1
            peer(ents_with_config(pv, 3, &[2])), // Node 3: won the second election
            peer(voted_with_config(pv, 4, 3, 2)), // Node 4: voted but didn't get logs
            peer(voted_with_config(pv, 5, 3, 2)), // Node 5: voted but didn't get logs
        ],
    );

    // Node 1 campaigns. The election fails because a quorum of nodes know about the election
    // that already happened at term 2. Node 1's term is pushed ahead to 2.
    nt.send(vec![hup(1)]);
    assert_eq!(nt.peers[&1].state, StateRole::Follower);
    assert_eq!(nt.peers[&1].term, 2);

    // Node 1 campaigns again with a higher term. This time it succeeds.
    nt.send(vec![hup(1)]);
    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&1].term, 3);

    // Now all nodes agree on a log entry with term 1 at index 1 (and term 3 at index 2).
    for (id, r) in &nt.peers {
        let entries = r.raft_log.all_entries();
        assert_eq!(entries.len(), 2, "node {id}: entries");
        assert_eq!(entries[0].term, 1, "node {id}: term at index 1");
        assert_eq!(entries[1].term, 3, "node {id}: term at index 2");
    }
}

/// etcd's `TestDuelingPreCandidates`: a pre-candidate with a short log never disrupts the leader,
/// before or after the partition heals.
#[test]
fn test_prevote_dueling_pre_candidates() {
    let a = new_raft_with(1, vec![1, 2, 3], 10, 1, MemStorage::new(), prevote_config);
    let b = new_raft_with(2, vec![1, 2, 3], 10, 1, MemStorage::new(), prevote_config);
    let c = new_raft_with(3, vec![1, 2, 3], 10, 1, MemStorage::new(), prevote_config);
    let mut nt = Network::new(vec![peer(a), peer(b), peer(c)]);
    nt.cut(1, 3);

    nt.send(vec![hup(1)]);
    nt.send(vec![hup(3)]);

    // 1 becomes leader since it receives votes from 1 and 2.
    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    // 3 campaigns then reverts to follower when its pre-vote is rejected.
    assert_eq!(nt.peers[&3].state, StateRole::Follower);

    nt.recover();

    // Candidate 3 now campaigns again. With pre-vote, it does not disrupt the leader.
    nt.send(vec![hup(3)]);

    // id, state, term, (committed, applied, last index)
    let wants = [
        (1, StateRole::Leader, 1, (1, 0, 1)),
        (2, StateRole::Follower, 1, (1, 0, 1)),
        (3, StateRole::Follower, 1, (0, 0, 0)),
    ];
    for (id, state, term, (committed, applied, last)) in wants {
        let r = &nt.peers[&id];
        assert_eq!(r.state, state, "node {id}: state");
        assert_eq!(r.term, term, "node {id}: term");
        assert_eq!(r.raft_log.committed, committed, "node {id}: committed");
        assert_eq!(r.raft_log.applied, applied, "node {id}: applied");
        assert_eq!(r.raft_log.last_index(), last, "node {id}: last index");
    }
}

/// A node isolated for many election timeouts with pre-vote on keeps its term (it only ever
/// pre-campaigns); after healing, the leader and the term are unchanged and it catches up.
#[test]
fn test_prevote_partitioned_node_does_not_disrupt() {
    let mut nt = Network::new_with_config(prevote(), vec![None, None, None]);
    nt.send(vec![hup(1)]);
    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&1].term, 1);

    nt.isolate(3);
    for _ in 0..3 {
        nt.send(vec![propose(1)]);
    }
    assert_eq!(nt.peers[&1].raft_log.committed, 4);

    // Node 3 times out again and again while isolated.
    let timeout = nt.peers[&3].election_timeout;
    let mut pre_campaigns = 0;
    for _ in 0..20 * timeout {
        let n3 = nt.peers.get_mut(&3).unwrap();
        n3.tick();
        let msgs = n3.read_messages();
        for m in &msgs {
            assert_ne!(
                m.msg_type(),
                MessageType::MsgRequestVote,
                "an isolated pre-vote node must not start a real election"
            );
            if m.msg_type() == MessageType::MsgRequestPreVote {
                // Pre-vote requests carry the term the node would move to, not its own.
                assert_eq!(m.term, 2);
            }
        }
        if msgs
            .iter()
            .any(|m| m.msg_type() == MessageType::MsgRequestPreVote)
        {
            pre_campaigns += 1;
        }
        nt.send(msgs); // all dropped: node 3 is isolated
        assert_eq!(
            nt.peers[&3].term, 1,
            "the isolated node's term must not grow"
        );
    }
    assert!(
        pre_campaigns >= 10,
        "node 3 pre-campaigned {pre_campaigns} times"
    );
    assert_eq!(nt.peers[&3].state, StateRole::PreCandidate);

    // Heal: node 3 campaigns once more; its log is behind, so it loses the pre-vote.
    nt.recover();
    nt.send(vec![hup(3)]);
    for id in 1..=3u64 {
        assert_eq!(nt.peers[&id].term, 1, "node {id}: term");
    }
    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&2].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].state, StateRole::Follower);

    // The leader's heartbeat brings node 3 back under it and its log catches up.
    nt.send(vec![beat(1)]);
    nt.send(vec![propose(1)]);
    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&1].term, 1);
    assert_eq!(nt.peers[&3].lead, 1);
    assert_eq!(
        nt.peers[&3].raft_log.all_entries(),
        nt.peers[&1].raft_log.all_entries()
    );
    for id in 1..=3u64 {
        assert_eq!(nt.peers[&id].raft_log.committed, 5, "node {id}: committed");
    }
}

/// With pre-vote and check-quorum, an isolated node whose log is NOT behind still cannot disrupt
/// the leader after healing: its pre-votes are ignored within the leader lease.
#[test]
fn test_prevote_check_quorum_partitioned_up_to_date_node_does_not_disrupt() {
    let mut nt = Network::new_with_config(
        Some(&|c: &mut Config| {
            c.pre_vote = true;
            c.check_quorum = true;
        }),
        vec![None, None, None],
    );
    nt.send(vec![hup(1)]);
    assert_eq!(nt.peers[&1].state, StateRole::Leader);

    nt.isolate(3);
    let timeout = nt.peers[&3].election_timeout;
    for _ in 0..10 * timeout {
        let n3 = nt.peers.get_mut(&3).unwrap();
        n3.tick();
        let msgs = n3.read_messages();
        nt.send(msgs);
        assert_eq!(nt.peers[&3].term, 1);
    }
    assert_eq!(nt.peers[&3].state, StateRole::PreCandidate);

    nt.recover();
    nt.send(vec![hup(3)]);
    // Nobody answered: node 1 leads and node 2 hears from it, both within their lease.
    assert_eq!(nt.peers[&3].state, StateRole::PreCandidate);
    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    for id in 1..=3u64 {
        assert_eq!(nt.peers[&id].term, 1, "node {id}: term");
    }

    // The leader's heartbeat turns node 3 back into its follower.
    nt.send(vec![beat(1)]);
    assert_eq!(nt.peers[&3].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].lead, 1);
    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&1].term, 1);
}

/// With pre-vote on, an election runs a pre-vote round at term+1 without moving any term, then
/// elects a leader at term+1 only.
#[test]
fn test_prevote_candidate_becomes_leader() {
    let mut nt = Network::new_with_config(prevote(), vec![None, None, None]);

    // Without pre-vote responses the node stays a pre-candidate, and no term moves.
    nt.ignore(MessageType::MsgRequestPreVoteResponse);
    nt.send(vec![hup(1)]);
    assert_eq!(nt.peers[&1].state, StateRole::PreCandidate);
    for id in 1..=3u64 {
        assert_eq!(nt.peers[&id].term, 0, "node {id}: term");
        assert_eq!(nt.peers[&id].vote, INVALID_ID, "node {id}: vote");
    }
    nt.recover();

    let seen: Rc<RefCell<Vec<Message>>> = Rc::default();
    let rec = seen.clone();
    nt.msg_hook = Some(Box::new(move |m: &Message| {
        rec.borrow_mut().push(m.clone());
        true
    }));
    nt.send(vec![hup(1)]);

    for id in 1..=3u64 {
        let r = &nt.peers[&id];
        assert_eq!(r.term, 1, "node {id}: term");
        assert_eq!(r.vote, 1, "node {id}: vote");
        assert_eq!(r.lead, 1, "node {id}: lead");
    }
    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&2].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].state, StateRole::Follower);

    // Pre-votes (term 1, sent from term 0) come first, the real votes only once the pre-vote won.
    let seen = seen.borrow();
    let kinds: Vec<MessageType> = seen.iter().map(|m| m.msg_type()).collect();
    let first_vote = kinds
        .iter()
        .position(|&t| t == MessageType::MsgRequestVote)
        .expect("a real vote request");
    let granted_prevotes = seen[..first_vote]
        .iter()
        .filter(|m| m.msg_type() == MessageType::MsgRequestPreVoteResponse && !m.reject)
        .count();
    assert!(granted_prevotes >= 1, "messages: {kinds:?}");
    for m in seen.iter() {
        match m.msg_type() {
            MessageType::MsgRequestPreVote
            | MessageType::MsgRequestPreVoteResponse
            | MessageType::MsgRequestVote
            | MessageType::MsgRequestVoteResponse => assert_eq!(m.term, 1, "{m:?}"),
            _ => {}
        }
    }
    assert_eq!(
        kinds
            .iter()
            .filter(|&&t| t == MessageType::MsgRequestPreVote)
            .count(),
        2
    );
    assert!(kinds[..first_vote]
        .iter()
        .all(|&t| t != MessageType::MsgRequestVoteResponse));
}

/// etcd's `TestPreVoteWithSplitVote`: after a split vote, the cluster completes the next election.
#[test]
fn test_prevote_with_split_vote() {
    let peers = (1..=3u64)
        .map(|id| {
            let mut r = new_raft_with(id, vec![1, 2, 3], 10, 1, MemStorage::new(), prevote_config);
            r.become_follower(1, INVALID_ID);
            peer(r)
        })
        .collect();
    let mut nt = Network::new(peers);
    nt.send(vec![hup(1)]);

    // Simulate the leader down; the followers start a split vote.
    nt.isolate(1);
    nt.send(vec![hup(2), hup(3)]);

    assert_eq!(nt.peers[&2].term, 3, "peer 2 term");
    assert_eq!(nt.peers[&3].term, 3, "peer 3 term");
    assert_eq!(nt.peers[&2].state, StateRole::Candidate, "peer 2 state");
    assert_eq!(nt.peers[&3].state, StateRole::Candidate, "peer 3 state");

    // Node 2's election times out first.
    nt.send(vec![hup(2)]);

    assert_eq!(nt.peers[&2].term, 4, "peer 2 term");
    assert_eq!(nt.peers[&3].term, 4, "peer 3 term");
    assert_eq!(nt.peers[&2].state, StateRole::Leader, "peer 2 state");
    assert_eq!(nt.peers[&3].state, StateRole::Follower, "peer 3 state");
}

/// etcd's `TestPreVoteWithCheckQuorum`: a pre-candidate still answers the pre-vote of another
/// node once the leader is gone, so the cluster elects a new leader.
#[test]
fn test_prevote_with_check_quorum() {
    let bootstrap = |id: u64| {
        let mut r = new_raft_with(id, vec![1, 2, 3], 10, 1, MemStorage::new(), |c| {
            c.pre_vote = true;
            c.check_quorum = true;
        });
        r.become_follower(1, INVALID_ID);
        peer(r)
    };
    let mut nt = Network::new(vec![bootstrap(1), bootstrap(2), bootstrap(3)]);
    nt.send(vec![hup(1)]);

    // Cause a network partition to isolate node 3. Node 3 has leader info.
    nt.cut(1, 3);
    nt.cut(2, 3);

    assert_eq!(nt.peers[&1].state, StateRole::Leader, "peer 1 state");
    assert_eq!(nt.peers[&2].state, StateRole::Follower, "peer 2 state");

    nt.send(vec![hup(3)]);
    assert_eq!(nt.peers[&3].state, StateRole::PreCandidate, "peer 3 state");

    // Term + 2, so that node 2 will ignore node 3's pre-vote.
    nt.send(vec![new_message(2, 1, MessageType::MsgTransferLeader)]);
    nt.send(vec![new_message(1, 2, MessageType::MsgTransferLeader)]);

    assert_eq!(nt.peers[&1].term, 4, "peer 1 term");
    assert_eq!(nt.peers[&2].term, 4, "peer 2 term");
    assert_eq!(nt.peers[&3].term, 2, "peer 3 term");
    assert_eq!(nt.peers[&1].state, StateRole::Leader, "peer 1 state");
    assert_eq!(nt.peers[&2].state, StateRole::Follower, "peer 2 state");
    assert_eq!(nt.peers[&3].state, StateRole::PreCandidate, "peer 3 state");

    // Recover the network then immediately isolate node 1, the leader, to emulate its crash.
    nt.recover();
    nt.cut(1, 2);
    nt.cut(1, 3);

    // Call for election. Node 3 must not ignore node 2's pre-vote.
    let timeout = nt.peers[&3].randomized_election_timeout;
    for _ in 0..timeout {
        nt.peers.get_mut(&3).unwrap().tick();
    }
    nt.send(vec![hup(2)]);

    assert_eq!(nt.peers[&2].state, StateRole::Leader, "peer 2 state");
    assert_eq!(nt.peers[&3].state, StateRole::Follower, "peer 3 state");
}

/// etcd's `TestNodeWithSmallerTermCanCompleteElection`: a node that fell behind in a partition
/// rejoins while the leader is cut off, and with pre-vote the cluster still elects a leader.
#[test]
fn test_prevote_node_with_smaller_term_can_complete_election() {
    let mut peers = Vec::new();
    for id in 1..=3u64 {
        let mut r = new_raft_with(id, vec![1, 2, 3], 10, 1, MemStorage::new(), prevote_config);
        r.become_follower(1, INVALID_ID);
        peers.push(peer(r));
    }
    let mut nt = Network::new_with_config(prevote(), peers);

    // Cause a network partition to isolate node 3.
    nt.cut(1, 3);
    nt.cut(2, 3);

    nt.send(vec![hup(1)]);
    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&2].state, StateRole::Follower);

    nt.send(vec![hup(3)]);
    assert_eq!(nt.peers[&3].state, StateRole::PreCandidate);

    nt.send(vec![hup(2)]);

    assert_eq!(nt.peers[&1].term, 3);
    assert_eq!(nt.peers[&2].term, 3);
    assert_eq!(nt.peers[&3].term, 1);
    assert_eq!(nt.peers[&1].state, StateRole::Follower);
    assert_eq!(nt.peers[&2].state, StateRole::Leader);
    assert_eq!(nt.peers[&3].state, StateRole::PreCandidate);

    // Recover the network then immediately isolate node 2, the leader, to emulate its crash.
    nt.recover();
    nt.cut(2, 1);
    nt.cut(2, 3);

    // Call for election.
    nt.send(vec![hup(3)]);
    nt.send(vec![hup(1)]);

    assert!(
        nt.peers[&1].state == StateRole::Leader || nt.peers[&3].state == StateRole::Leader,
        "no leader"
    );
}

/// etcd's `newPreVoteMigrationCluster`: n1 leads at term 2, n2 follows at term 2, n3 (pre-vote
/// off until the end) was partitioned and campaigned to term 4 with a shorter log.
fn new_prevote_migration_cluster() -> Network {
    let mut n1 = new_raft_with(1, vec![1, 2, 3], 10, 1, MemStorage::new(), prevote_config);
    let mut n2 = new_raft_with(2, vec![1, 2, 3], 10, 1, MemStorage::new(), prevote_config);
    // Pre-vote is intentionally off on n3: a rolling upgrade mixes both kinds of replica.
    let mut n3 = new_test_raft(3, vec![1, 2, 3], 10, 1, MemStorage::new());
    n1.become_follower(1, INVALID_ID);
    n2.become_follower(1, INVALID_ID);
    n3.become_follower(1, INVALID_ID);

    let mut nt = Network::new(vec![peer(n1), peer(n2), peer(n3)]);
    nt.send(vec![hup(1)]);

    // Cause a network partition to isolate n3.
    nt.isolate(3);
    nt.send(vec![propose(1)]);
    nt.send(vec![hup(3)]);
    nt.send(vec![hup(3)]);

    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&2].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].state, StateRole::Candidate);
    assert_eq!(nt.peers[&1].term, 2);
    assert_eq!(nt.peers[&2].term, 2);
    assert_eq!(nt.peers[&3].term, 4);

    // Enable pre-vote on n3, then recover the network.
    nt.peers.get_mut(&3).unwrap().pre_vote = true;
    nt.recover();
    nt
}

/// etcd's `TestPreVoteMigrationCanCompleteElection`: in a mixed cluster being migrated to
/// pre-vote, an election still completes once the leader is gone.
#[test]
fn test_prevote_migration_can_complete_election() {
    let mut nt = new_prevote_migration_cluster();

    // Simulate the leader down.
    nt.isolate(1);

    // Call for elections from both n2 and n3.
    nt.send(vec![hup(3)]);
    nt.send(vec![hup(2)]);

    assert_eq!(nt.peers[&2].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].state, StateRole::PreCandidate);

    nt.send(vec![hup(3)]);
    nt.send(vec![hup(2)]);

    // Do we have a leader?
    assert!(nt.peers[&2].state == StateRole::Leader || nt.peers[&3].state == StateRole::Follower);
}

/// etcd's `TestPreVoteMigrationWithFreeStuckPreCandidate`: a pre-candidate stuck at a higher term
/// is freed when the leader's heartbeat makes the leader adopt that term.
#[test]
fn test_prevote_migration_with_free_stuck_pre_candidate() {
    let mut nt = new_prevote_migration_cluster();

    nt.send(vec![hup(3)]);
    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&2].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].state, StateRole::PreCandidate);

    // Pre-vote again for safety.
    nt.send(vec![hup(3)]);
    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&2].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].state, StateRole::PreCandidate);

    let term = nt.peers[&1].term;
    nt.send(vec![msg_with_term(1, 3, MessageType::MsgHeartbeat, term)]);

    // Disrupt the leader so that the stuck peer is freed.
    assert_eq!(nt.peers[&1].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].term, nt.peers[&1].term);
}

/// etcd's `TestDisruptiveFollowerPreVote`: an isolated follower with a shorter log times out into
/// a pre-candidate and, thanks to pre-vote, does not force the leader to step down.
#[test]
fn test_prevote_disruptive_follower() {
    let mut peers = Vec::new();
    for id in 1..=3u64 {
        let mut r = new_raft_with(id, vec![1, 2, 3], 10, 1, MemStorage::new(), |c| {
            c.check_quorum = true;
        });
        r.become_follower(1, INVALID_ID);
        peers.push(peer(r));
    }
    let mut nt = Network::new(peers);
    nt.send(vec![hup(1)]);

    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&2].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].state, StateRole::Follower);

    nt.isolate(3);
    nt.send(vec![propose(1)]);
    nt.send(vec![propose(1)]);
    nt.send(vec![propose(1)]);
    for id in 1..=3u64 {
        nt.peers.get_mut(&id).unwrap().pre_vote = true;
    }
    nt.recover();
    nt.send(vec![hup(3)]);

    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&2].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].state, StateRole::PreCandidate);
    assert_eq!(nt.peers[&1].term, 2);
    assert_eq!(nt.peers[&2].term, 2);
    assert_eq!(nt.peers[&3].term, 2);

    // A delayed leader heartbeat does not force the current leader to step down.
    let term = nt.peers[&1].term;
    nt.send(vec![msg_with_term(1, 3, MessageType::MsgHeartbeat, term)]);
    assert_eq!(nt.peers[&1].state, StateRole::Leader);
}

/// raft-rs's `test_pre_campaign_while_leader`: MsgHup to a single-node leader with pre-vote is a
/// no-op (no new term).
#[test]
fn test_prevote_campaign_while_leader() {
    let mut r = new_raft_with(1, vec![1], 5, 1, MemStorage::new(), prevote_config);
    assert_eq!(r.state, StateRole::Follower);
    // A single node wins the pre-vote and the vote at once.
    r.step(hup(1)).unwrap();
    assert_eq!(r.state, StateRole::Leader);
    assert_eq!(r.term, 1);
    let term = r.term;
    r.step(hup(1)).unwrap();
    assert_eq!(r.state, StateRole::Leader);
    assert_eq!(r.term, term);
}

// ---- check-quorum ---------------------------------------------------------------------------

fn check_quorum_config(c: &mut Config) {
    c.check_quorum = true;
}

/// etcd's `TestLeaderStepdownWhenQuorumActive`: a leader that keeps hearing from a quorum stays.
#[test]
fn test_leader_stays_when_quorum_active_check_quorum() {
    let mut r = new_raft_with(
        1,
        vec![1, 2, 3],
        5,
        1,
        MemStorage::new(),
        check_quorum_config,
    );
    r.become_candidate();
    r.become_leader();
    for _ in 0..=r.election_timeout {
        let term = r.term;
        r.step(msg_with_term(2, 1, MessageType::MsgHeartbeatResponse, term))
            .unwrap();
        r.tick();
    }
    assert_eq!(r.state, StateRole::Leader);
}

/// etcd's `TestLeaderStepdownWhenQuorumLost`: a leader that hears from nobody for an election
/// timeout steps down.
#[test]
fn test_leader_stepdown_when_quorum_lost_check_quorum() {
    let mut r = new_raft_with(
        1,
        vec![1, 2, 3],
        5,
        1,
        MemStorage::new(),
        check_quorum_config,
    );
    r.become_candidate();
    r.become_leader();
    for _ in 0..=r.election_timeout {
        r.tick();
    }
    assert_eq!(r.state, StateRole::Follower);
    assert_eq!(r.term, 1, "stepping down keeps the term");
    assert_eq!(r.lead, INVALID_ID);
}

/// In a network, a leader cut off from both followers steps down after an election timeout,
/// while without check-quorum it would stay leader forever.
#[test]
fn test_leader_stepdown_isolated_in_network_check_quorum() {
    for check_quorum in [true, false] {
        let mut nt = Network::new_with_config(
            Some(&move |c: &mut Config| c.check_quorum = check_quorum),
            vec![None, None, None],
        );
        nt.send(vec![hup(1)]);
        assert_eq!(nt.peers[&1].state, StateRole::Leader);
        nt.isolate(1);
        let timeout = nt.peers[&1].election_timeout;
        for _ in 0..2 * timeout {
            let r = nt.peers.get_mut(&1).unwrap();
            r.tick();
            let msgs = r.read_messages();
            nt.send(msgs);
        }
        let want = if check_quorum {
            StateRole::Follower
        } else {
            StateRole::Leader
        };
        assert_eq!(nt.peers[&1].state, want, "check_quorum = {check_quorum}");
        assert_eq!(nt.peers[&1].term, 1, "check_quorum = {check_quorum}");
    }
}

/// etcd's `TestLeaderSupersedingWithCheckQuorum`: followers ignore vote requests while they hear
/// from the leader (the lease); once the lease ran out, a new leader can be elected.
#[test]
fn test_leader_superseding_with_check_quorum() {
    let a = new_raft_with(
        1,
        vec![1, 2, 3],
        10,
        1,
        MemStorage::new(),
        check_quorum_config,
    );
    let b = new_raft_with(
        2,
        vec![1, 2, 3],
        10,
        1,
        MemStorage::new(),
        check_quorum_config,
    );
    let c = new_raft_with(
        3,
        vec![1, 2, 3],
        10,
        1,
        MemStorage::new(),
        check_quorum_config,
    );
    let mut nt = Network::new(vec![peer(a), peer(b), peer(c)]);

    let b_election_timeout = nt.peers[&2].election_timeout;
    // Prevent campaigning from b.
    nt.peers.get_mut(&2).unwrap().randomized_election_timeout = b_election_timeout + 1;
    for _ in 0..b_election_timeout {
        nt.peers.get_mut(&2).unwrap().tick();
    }
    nt.send(vec![hup(1)]);

    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&3].state, StateRole::Follower);

    nt.send(vec![hup(3)]);

    // Peer b rejected c's vote since its election_elapsed had not reached the election timeout.
    assert_eq!(nt.peers[&3].state, StateRole::Candidate);

    // Let b's election_elapsed reach the election timeout.
    for _ in 0..b_election_timeout {
        nt.peers.get_mut(&2).unwrap().tick();
    }
    nt.send(vec![hup(3)]);
    assert_eq!(nt.peers[&3].state, StateRole::Leader);
}

/// etcd's `TestLeaderElectionWithCheckQuorum`: votes are cast freely right after creation, and
/// after the lease expired on a quorum, another node can take over.
#[test]
fn test_leader_election_with_check_quorum() {
    let a = new_raft_with(
        1,
        vec![1, 2, 3],
        10,
        1,
        MemStorage::new(),
        check_quorum_config,
    );
    let b = new_raft_with(
        2,
        vec![1, 2, 3],
        10,
        1,
        MemStorage::new(),
        check_quorum_config,
    );
    let c = new_raft_with(
        3,
        vec![1, 2, 3],
        10,
        1,
        MemStorage::new(),
        check_quorum_config,
    );
    let mut nt = Network::new(vec![peer(a), peer(b), peer(c)]);

    // Make the randomized timeouts larger than the election timeout, to remove the randomness.
    let a_et = nt.peers[&1].election_timeout;
    let b_et = nt.peers[&2].election_timeout;
    nt.peers.get_mut(&1).unwrap().randomized_election_timeout = a_et + 1;
    nt.peers.get_mut(&2).unwrap().randomized_election_timeout = b_et + 2;

    // Immediately after creation, votes are cast regardless of the election timeout.
    nt.send(vec![hup(1)]);

    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&3].state, StateRole::Follower);

    // Reset the randomized timeouts again: state changes drew new ones.
    nt.peers.get_mut(&1).unwrap().randomized_election_timeout = a_et + 1;
    nt.peers.get_mut(&2).unwrap().randomized_election_timeout = b_et + 2;
    for _ in 0..a_et {
        nt.peers.get_mut(&1).unwrap().tick();
    }
    for _ in 0..b_et {
        nt.peers.get_mut(&2).unwrap().tick();
    }
    nt.send(vec![hup(3)]);

    assert_eq!(nt.peers[&1].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].state, StateRole::Leader);
}

/// etcd's `TestFreeStuckCandidateWithCheckQuorum`: a candidate with a higher term can disrupt the
/// leader even if the leader still holds the lease; the leader adopts the candidate's term.
#[test]
fn test_free_stuck_candidate_with_check_quorum() {
    let a = new_raft_with(
        1,
        vec![1, 2, 3],
        10,
        1,
        MemStorage::new(),
        check_quorum_config,
    );
    let b = new_raft_with(
        2,
        vec![1, 2, 3],
        10,
        1,
        MemStorage::new(),
        check_quorum_config,
    );
    let c = new_raft_with(
        3,
        vec![1, 2, 3],
        10,
        1,
        MemStorage::new(),
        check_quorum_config,
    );
    let mut nt = Network::new(vec![peer(a), peer(b), peer(c)]);

    let b_et = nt.peers[&2].election_timeout;
    nt.peers.get_mut(&2).unwrap().randomized_election_timeout = b_et + 1;
    for _ in 0..b_et {
        nt.peers.get_mut(&2).unwrap().tick();
    }
    nt.send(vec![hup(1)]);

    nt.isolate(1);
    nt.send(vec![hup(3)]);

    assert_eq!(nt.peers[&2].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].state, StateRole::Candidate);
    assert_eq!(nt.peers[&3].term, nt.peers[&2].term + 1);

    // Vote again for safety.
    nt.send(vec![hup(3)]);

    assert_eq!(nt.peers[&2].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].state, StateRole::Candidate);
    assert_eq!(nt.peers[&3].term, nt.peers[&2].term + 2);

    nt.recover();
    let term = nt.peers[&1].term;
    nt.send(vec![msg_with_term(1, 3, MessageType::MsgHeartbeat, term)]);

    // Disrupt the leader so that the stuck peer is freed.
    assert_eq!(nt.peers[&1].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].term, nt.peers[&1].term);

    // Vote again, should become leader this time.
    nt.send(vec![hup(3)]);
    assert_eq!(nt.peers[&3].state, StateRole::Leader);
}

/// etcd's `TestNonPromotableVoterWithCheckQuorum`: a node that is not a member never campaigns,
/// but still votes and follows the leader.
#[test]
fn test_non_promotable_voter_with_check_quorum() {
    let a = new_raft_with(1, vec![1, 2], 10, 1, MemStorage::new(), check_quorum_config);
    let b = new_raft_with(2, vec![1], 10, 1, MemStorage::new(), check_quorum_config);
    let mut nt = Network::new(vec![peer(a), peer(b)]);

    let b_et = nt.peers[&2].election_timeout;
    nt.peers.get_mut(&2).unwrap().randomized_election_timeout = b_et + 1;

    // The network keeps b's peers as built: b is not among them, so it is not promotable.
    assert!(!nt.peers[&2].promotable());

    for _ in 0..b_et {
        nt.peers.get_mut(&2).unwrap().tick();
    }
    nt.send(vec![hup(1)]);

    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&2].state, StateRole::Follower);
    assert_eq!(nt.peers[&2].lead, 1);
}

/// etcd's `TestDisruptiveFollower`: with check-quorum but no pre-vote, an isolated follower that
/// times out becomes a candidate, and its answer to a late heartbeat forces the leader down.
#[test]
fn test_disruptive_follower_check_quorum() {
    let mut peers = Vec::new();
    for id in 1..=3u64 {
        let mut r = new_raft_with(
            id,
            vec![1, 2, 3],
            10,
            1,
            MemStorage::new(),
            check_quorum_config,
        );
        r.become_follower(1, INVALID_ID);
        peers.push(peer(r));
    }
    let mut nt = Network::new(peers);
    nt.send(vec![hup(1)]);

    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&2].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].state, StateRole::Follower);

    // Leader messages are delayed while ticks elapse on node 3.
    let et = nt.peers[&3].election_timeout;
    nt.peers.get_mut(&3).unwrap().randomized_election_timeout = et + 2;
    let timeout = nt.peers[&3].randomized_election_timeout;
    for _ in 0..timeout - 1 {
        nt.peers.get_mut(&3).unwrap().tick();
    }
    // The last tick elapses before any message from the leader arrives: node 3 campaigns.
    nt.peers.get_mut(&3).unwrap().tick();

    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&2].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].state, StateRole::Candidate);
    assert_eq!(nt.peers[&1].term, 2);
    assert_eq!(nt.peers[&2].term, 2);
    assert_eq!(nt.peers[&3].term, 3);

    // While its vote requests are still queued, the late leader heartbeat (of a lower term)
    // arrives at candidate 3, which answers with its higher term: the leader steps down.
    let term = nt.peers[&1].term;
    nt.send(vec![msg_with_term(1, 3, MessageType::MsgHeartbeat, term)]);

    assert_eq!(nt.peers[&1].state, StateRole::Follower);
    assert_eq!(nt.peers[&2].state, StateRole::Follower);
    assert_eq!(nt.peers[&3].state, StateRole::Candidate);
    assert_eq!(nt.peers[&1].term, 3);
    assert_eq!(nt.peers[&2].term, 2);
    assert_eq!(nt.peers[&3].term, 3);
}

/// etcd's `TestAddNodeCheckQuorum`: a node just added counts as active for the next quorum check,
/// but the leader steps down after another election timeout without hearing from it.
#[test]
fn test_add_node_check_quorum() {
    let mut r = new_raft_with(1, vec![1], 10, 1, MemStorage::new(), check_quorum_config);
    r.become_candidate();
    r.become_leader();
    for _ in 0..r.election_timeout - 1 {
        r.tick();
    }
    r.add_node(2);

    // This tick reaches the election timeout, which triggers a quorum check.
    r.tick();
    // Node 1 is still the leader after a single tick.
    assert_eq!(r.state, StateRole::Leader);

    // After another election timeout without hearing from node 2, node 1 steps down.
    for _ in 0..r.election_timeout {
        r.tick();
    }
    assert_eq!(r.state, StateRole::Follower);
}

/// etcd's `TestLeaderTransferWithCheckQuorum`: a leader transfer works even while the current
/// leader holds its lease (the transfer's vote requests bypass it).
#[test]
fn test_leader_transfer_with_check_quorum() {
    let mut nt = Network::new(vec![None, None, None]);
    for id in 1..=3u64 {
        let r = nt.peers.get_mut(&id).unwrap();
        r.check_quorum = true;
        let et = r.election_timeout;
        r.randomized_election_timeout = et + id as usize;
    }

    // Let peer 2's election_elapsed reach the timeout so that it can vote for peer 1.
    let b_et = nt.peers[&2].election_timeout;
    nt.peers.get_mut(&2).unwrap().randomized_election_timeout = b_et + 1;
    for _ in 0..b_et {
        nt.peers.get_mut(&2).unwrap().tick();
    }
    nt.send(vec![hup(1)]);
    assert_eq!(nt.peers[&1].lead, 1);

    // Transfer leadership to 2.
    nt.send(vec![new_message(2, 1, MessageType::MsgTransferLeader)]);
    check_leader_transfer_state(&nt.peers[&1], StateRole::Follower, 2);

    // After some log replication, transfer leadership back to 1.
    nt.send(vec![propose(1)]);
    nt.send(vec![new_message(1, 2, MessageType::MsgTransferLeader)]);
    check_leader_transfer_state(&nt.peers[&1], StateRole::Leader, 1);
}

// ---- ReadIndex ------------------------------------------------------------------------------

/// (node, proposals, want read index, contexts, pending)
type SafeReadCase = (u64, usize, u64, [&'static [u8]; 2], bool);

/// raft-rs's `test_read_only_option_safe`: with the safe option, reads on the leader and on
/// followers (forwarded to the leader) get the leader's commit index once a heartbeat round is
/// acknowledged by a quorum; a repeated context is confirmed once, a later context confirms every
/// read queued before it.
#[test]
fn test_read_index_option_safe() {
    let mut nt = Network::new(vec![None, None, None]);

    // Remove the randomness: make b's randomized timeout larger than the election timeout.
    let b_et = nt.peers[&2].election_timeout;
    nt.peers.get_mut(&2).unwrap().randomized_election_timeout = b_et + 1;
    for _ in 0..b_et {
        nt.peers.get_mut(&2).unwrap().tick();
    }
    nt.send(vec![hup(1)]);
    assert_eq!(nt.peers[&1].state, StateRole::Leader);

    let tests: [SafeReadCase; 6] = [
        (1, 10, 11, [b"ctx1", b"ctx11"], false),
        (2, 10, 21, [b"ctx2", b"ctx22"], false),
        (3, 10, 31, [b"ctx3", b"ctx33"], false),
        (1, 10, 41, [b"ctx4", b"ctx44"], true),
        (2, 10, 51, [b"ctx5", b"ctx55"], true),
        (3, 10, 61, [b"ctx6", b"ctx66"], true),
    ];
    for (i, (id, proposals, wri, wctx, pending)) in tests.into_iter().enumerate() {
        for _ in 0..proposals {
            nt.send(vec![propose(1)]);
        }
        let msg1 = read_index_msg(id, id, wctx[0]);
        let msg2 = read_index_msg(id, id, wctx[1]);

        // `pending`: the reads are not confirmed at once and stay queued on the leader.
        if pending {
            // Drop heartbeat responses so the leader cannot confirm the reads in this round.
            nt.ignore(MessageType::MsgHeartbeatResponse);
            nt.send(vec![msg1.clone(), msg1.clone(), msg2.clone()]);
            nt.recover();
            // A read with the last context makes the leader confirm the pending reads.
            nt.send(vec![msg2.clone()]);
        } else {
            nt.send(vec![msg1.clone(), msg1.clone(), msg2.clone()]);
        }

        let read_states = std::mem::take(&mut nt.peers.get_mut(&id).unwrap().read_states);
        assert!(!read_states.is_empty(), "#{i}: read_states is empty");
        assert_eq!(read_states.len(), wctx.len(), "#{i}: {read_states:?}");
        for (rs, ctx) in read_states.iter().zip(wctx) {
            assert_eq!(rs.index, wri, "#{i}: read index");
            assert_eq!(rs.request_ctx, ctx.to_vec(), "#{i}: request ctx");
        }
    }
}

/// With the safe option, a leader's own read waits for a heartbeat round: no ReadState until a
/// quorum (itself and one follower) acknowledged the heartbeat carrying the read's context.
#[test]
fn test_read_index_safe_waits_for_heartbeat_quorum() {
    let mut nt = Network::new(vec![None, None, None]);
    nt.send(vec![hup(1)]);
    nt.send(vec![propose(1)]);
    assert_eq!(nt.peers[&1].raft_log.committed, 2);

    let leader = nt.peers.get_mut(&1).unwrap();
    leader.step(read_index_msg(1, 1, b"ctx")).unwrap();
    assert!(
        leader.read_states.is_empty(),
        "no read state before the quorum"
    );
    assert_eq!(leader.read_only.pending_read_count(), 1);
    let hbs = sorted_messages(leader.read_messages());
    assert_eq!(hbs.len(), 2);
    for (m, to) in hbs.iter().zip([2, 3]) {
        assert_eq!(m.msg_type(), MessageType::MsgHeartbeat);
        assert_eq!(m.to, to);
        assert_eq!(m.context, b"ctx".to_vec());
    }

    // Follower 2 answers; its response echoes the context.
    let f2 = nt.peers.get_mut(&2).unwrap();
    f2.step(hbs[0].clone()).unwrap();
    let resp = f2.read_messages();
    assert_eq!(resp.len(), 1);
    assert_eq!(resp[0].msg_type(), MessageType::MsgHeartbeatResponse);
    assert_eq!(resp[0].context, b"ctx".to_vec());

    // An acknowledgement carrying another context confirms nothing.
    let leader = nt.peers.get_mut(&1).unwrap();
    let mut other = resp[0].clone();
    other.context = b"other".to_vec();
    leader.step(other).unwrap();
    assert!(leader.read_states.is_empty());

    // One follower plus the leader is a quorum of 3.
    leader.step(resp[0].clone()).unwrap();
    assert_eq!(
        leader.read_states,
        vec![ReadState {
            index: 2,
            request_ctx: b"ctx".to_vec()
        }]
    );
    assert_eq!(leader.read_only.pending_read_count(), 0);

    // The late acknowledgement of follower 3 changes nothing.
    let f3 = nt.peers.get_mut(&3).unwrap();
    f3.step(hbs[1].clone()).unwrap();
    let resp3 = f3.read_messages();
    let leader = nt.peers.get_mut(&1).unwrap();
    leader.step(resp3[0].clone()).unwrap();
    assert_eq!(leader.read_states.len(), 1);
}

/// A read waiting for a heartbeat quorum is answered when a membership change shrinks the
/// quorum to the acknowledgements it already has: here the leader of {1, 2} is left alone, and
/// no acknowledgement would ever come again.
#[test]
fn test_read_index_confirmed_when_the_quorum_shrinks() {
    let mut nt = Network::new(vec![None, None]);
    nt.send(vec![hup(1)]);
    nt.send(vec![propose(1)]);
    let leader = nt.peers.get_mut(&1).unwrap();
    let committed = leader.raft_log.committed;
    leader.step(read_index_msg(1, 1, b"first")).unwrap();
    leader.read_messages();
    assert!(leader.read_states.is_empty(), "waits for follower 2");

    leader.remove_node(2);
    assert_eq!(
        leader.read_states,
        vec![ReadState {
            index: committed,
            request_ctx: b"first".to_vec()
        }]
    );
    assert_eq!(leader.read_only.pending_read_count(), 0);
}

/// A second request to transfer leadership to the same peer sends the lost MsgTimeoutNow again
/// (the first one's deadline is kept: `test_leader_transfer_second_transfer_to_same_node_3a`).
#[test]
fn test_leader_transfer_repeated_request_resends_timeout_now() {
    let mut nt = Network::new(vec![None, None, None]);
    nt.send(vec![hup(1)]);
    let transfer = new_message(2, 1, MessageType::MsgTransferLeader);
    nt.ignore(MessageType::MsgTimeoutNow);
    nt.send(vec![transfer.clone()]);
    assert_eq!(
        nt.peers[&1].state,
        StateRole::Leader,
        "the MsgTimeoutNow was lost"
    );
    assert_eq!(nt.peers[&1].lead_transferee, Some(2));
    nt.recover();
    nt.send(vec![transfer]);
    assert_eq!(nt.peers[&2].state, StateRole::Leader);
    assert_eq!(nt.peers[&1].state, StateRole::Follower);
}

/// raft-rs's `test_raft_frees_read_only_mem`: a confirmed read is removed from the leader's
/// pending queue.
#[test]
fn test_read_index_frees_read_only_mem() {
    let mut sm = new_test_raft(1, vec![1, 2], 5, 1, MemStorage::new());
    sm.become_candidate();
    sm.become_leader();
    let last_index = sm.raft_log.last_index();
    sm.raft_log.commit_to(last_index);

    let ctx = b"ctx".to_vec();

    // The leader starts a linearizable read request (Raft thesis 6.4, step 2).
    sm.step(read_index_msg(2, 1, &ctx)).unwrap();
    let msgs = sm.read_messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].msg_type(), MessageType::MsgHeartbeat);
    assert_eq!(msgs[0].context, ctx);
    assert_eq!(sm.read_only.pending_read_count(), 1);
    assert_eq!(sm.read_only.last_pending_request_ctx(), Some(ctx.clone()));

    // Heartbeat responses from a majority of followers (1 here) acknowledge the leader's
    // authority (Raft thesis 6.4, step 3).
    let term = sm.term;
    let mut m = msg_with_term(2, 1, MessageType::MsgHeartbeatResponse, term);
    m.context = ctx.clone();
    sm.step(m).unwrap();
    assert_eq!(sm.read_only.pending_read_count(), 0);
    assert_eq!(sm.read_only.last_pending_request_ctx(), None);

    // The read came from node 2: it is answered with a MsgReadIndexResp.
    let msgs = sm.read_messages();
    let resp: Vec<&Message> = msgs
        .iter()
        .filter(|m| m.msg_type() == MessageType::MsgReadIndexResp)
        .collect();
    assert_eq!(resp.len(), 1);
    assert_eq!(resp[0].to, 2);
    assert_eq!(resp[0].index, last_index);
    assert_eq!(resp[0].entries.len(), 1);
    assert_eq!(resp[0].entries[0].data, ctx);
}

/// raft-rs's `test_read_only_option_lease`: with lease-based reads (and check-quorum), reads on
/// the leader and on followers are answered with the leader's commit index.
#[test]
fn test_read_index_option_lease() {
    let lease = |c: &mut Config| {
        c.read_only_option = ReadOnlyOption::LeaseBased;
        c.check_quorum = true;
    };
    let a = new_raft_with(1, vec![1, 2, 3], 10, 1, MemStorage::new(), lease);
    let b = new_raft_with(2, vec![1, 2, 3], 10, 1, MemStorage::new(), lease);
    let c = new_raft_with(3, vec![1, 2, 3], 10, 1, MemStorage::new(), lease);
    let mut nt = Network::new(vec![peer(a), peer(b), peer(c)]);

    let b_et = nt.peers[&2].election_timeout;
    nt.peers.get_mut(&2).unwrap().randomized_election_timeout = b_et + 1;
    for _ in 0..b_et {
        nt.peers.get_mut(&2).unwrap().tick();
    }
    nt.send(vec![hup(1)]);
    assert_eq!(nt.peers[&1].state, StateRole::Leader);

    let tests: [(u64, usize, u64, &[u8]); 6] = [
        (1, 10, 11, b"ctx1"),
        (2, 10, 21, b"ctx2"),
        (3, 10, 31, b"ctx3"),
        (1, 10, 41, b"ctx4"),
        (2, 10, 51, b"ctx5"),
        (3, 10, 61, b"ctx6"),
    ];
    for (i, (id, proposals, wri, wctx)) in tests.into_iter().enumerate() {
        for _ in 0..proposals {
            nt.send(vec![propose(1)]);
        }
        nt.send(vec![read_index_msg(id, id, wctx)]);
        let read_states = std::mem::take(&mut nt.peers.get_mut(&id).unwrap().read_states);
        assert!(!read_states.is_empty(), "#{i}: read_states is empty");
        assert_eq!(read_states[0].index, wri, "#{i}: read index");
        assert_eq!(
            read_states[0].request_ctx,
            wctx.to_vec(),
            "#{i}: request ctx"
        );
    }
}

/// With lease-based reads, the leader answers at once from its lease: no heartbeat is sent and
/// nothing waits in the pending queue.
#[test]
fn test_read_index_lease_answers_without_heartbeat() {
    let mut nt = Network::new_with_config(
        Some(&|c: &mut Config| {
            c.read_only_option = ReadOnlyOption::LeaseBased;
            c.check_quorum = true;
        }),
        vec![None, None, None],
    );
    nt.send(vec![hup(1)]);
    nt.send(vec![propose(1)]);

    let leader = nt.peers.get_mut(&1).unwrap();
    assert_eq!(leader.raft_log.committed, 2);
    leader.step(read_index_msg(1, 1, b"lease")).unwrap();
    assert!(
        leader.read_messages().is_empty(),
        "a lease read sends no heartbeat"
    );
    assert_eq!(leader.read_only.pending_read_count(), 0);
    assert_eq!(
        std::mem::take(&mut leader.read_states),
        vec![ReadState {
            index: 2,
            request_ctx: b"lease".to_vec()
        }]
    );

    // A follower's read is forwarded and answered directly, with no heartbeat round.
    let f2 = nt.peers.get_mut(&2).unwrap();
    f2.step(read_index_msg(2, 2, b"f2")).unwrap();
    let fwd = f2.read_messages();
    assert_eq!(fwd.len(), 1);
    assert_eq!(fwd[0].msg_type(), MessageType::MsgReadIndex);
    assert_eq!(fwd[0].to, 1);
    let leader = nt.peers.get_mut(&1).unwrap();
    leader.step(fwd[0].clone()).unwrap();
    let out = leader.read_messages();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].msg_type(), MessageType::MsgReadIndexResp);
    assert_eq!(out[0].to, 2);
    nt.send(out);
    assert_eq!(
        nt.peers[&2].read_states,
        vec![ReadState {
            index: 2,
            request_ctx: b"f2".to_vec()
        }]
    );
}

/// Lease-based reads rely on the leader lease, so a config asking for them without check-quorum
/// is refused.
#[test]
fn test_read_index_lease_requires_check_quorum() {
    let mut c = new_test_config(1, vec![1, 2, 3], 10, 1);
    c.read_only_option = ReadOnlyOption::LeaseBased;
    assert!(matches!(
        Raft::new(&c, MemStorage::new(), &default_logger()),
        Err(Error::ConfigInvalid(_))
    ));
    c.check_quorum = true;
    assert!(Raft::new(&c, MemStorage::new(), &default_logger()).is_ok());
}

/// etcd's `TestReadOnlyForNewLeader`: a new leader postpones reads until it has committed an entry
/// of its own term, then answers them (and later ones) with that commit index.
#[test]
fn test_read_index_for_new_leader() {
    // (id, committed, applied, compact index)
    let node_configs = [(1, 1, 1, 0), (2, 2, 2, 2), (3, 2, 2, 2)];
    let mut peers = Vec::new();
    for (id, committed, applied, compact_index) in node_configs {
        let storage = MemStorage::new();
        storage.wl().append(&ents(&[(1, 1), (2, 1)])).unwrap();
        storage.wl().set_hard_state(HardState {
            term: 1,
            commit: committed,
            ..Default::default()
        });
        if compact_index != 0 {
            storage.wl().compact(compact_index).unwrap();
        }
        let mut cfg = new_test_config(id, vec![1, 2, 3], 10, 1);
        cfg.applied = applied;
        peers.push(peer(
            Raft::new(&cfg, storage, &default_logger()).expect("new raft"),
        ));
    }
    let mut nt = Network::new(peers);

    // Drop MsgAppend so peer 1 cannot commit any entry of its term after it becomes leader.
    nt.ignore(MessageType::MsgAppend);
    // Force peer 1 to become leader.
    nt.send(vec![hup(1)]);
    assert_eq!(nt.peers[&1].state, StateRole::Leader);

    // The read is postponed.
    let windex = 4;
    let wctx = b"ctx".to_vec();
    nt.send(vec![read_index_msg(1, 1, &wctx)]);
    assert_eq!(nt.peers[&1].read_states.len(), 0);

    nt.recover();

    // Force peer 1 to commit an entry of its term.
    let heartbeat_timeout = nt.peers[&1].heartbeat_timeout;
    for _ in 0..heartbeat_timeout {
        nt.peers.get_mut(&1).unwrap().tick();
    }
    nt.send(vec![propose(1)]);
    assert_eq!(nt.peers[&1].raft_log.committed, 4);
    let committed = nt.peers[&1].raft_log.committed;
    let last_log_term = nt.peers[&1].raft_log.zero_term_on_compacted(committed);
    assert_eq!(last_log_term, nt.peers[&1].term);

    // The postponed read was processed once an entry of the term was committed.
    assert_eq!(nt.peers[&1].read_states.len(), 1);
    let rs = &nt.peers[&1].read_states[0];
    assert_eq!(rs.index, windex);
    assert_eq!(rs.request_ctx, wctx);

    // Peer 1 accepts reads now.
    nt.send(vec![read_index_msg(1, 1, &wctx)]);
    assert_eq!(nt.peers[&1].read_states.len(), 2);
    let rs = &nt.peers[&1].read_states[1];
    assert_eq!(rs.index, windex);
    assert_eq!(rs.request_ctx, wctx);
}

/// A single-node group answers a read at once with its commit index (through `RawNode`).
#[test]
fn test_read_index_single_node_raw_node() {
    let s = MemStorage::new();
    let cfg = new_test_config(1, vec![1], 10, 1);
    let mut rn = RawNode::new(&cfg, s.clone(), &default_logger()).unwrap();
    rn.campaign().unwrap();
    assert_eq!(rn.raft.state, StateRole::Leader);
    let rd = rn.ready();
    s.wl().append(&rd.entries).unwrap();
    if let Some(hs) = &rd.hard_state {
        s.wl().set_hard_state(*hs);
    }
    rn.advance(rd);
    assert_eq!(rn.raft.raft_log.committed, 1);

    rn.read_index(b"single".to_vec()).unwrap();
    assert!(rn.has_ready());
    let rd = rn.ready();
    assert!(rd.messages.is_empty(), "a single node needs no heartbeat");
    assert_eq!(
        rd.read_states,
        vec![ReadState {
            index: 1,
            request_ctx: b"single".to_vec()
        }]
    );
    rn.advance(rd);
    assert!(!rn.has_ready());
}

/// A read request with no known leader (a fresh follower, a candidate, a pre-candidate) is
/// refused with `ProposalDropped`.
#[test]
fn test_read_index_no_leader_dropped() {
    let cfg = new_test_config(1, vec![1, 2, 3], 10, 1);
    let mut rn = RawNode::new(&cfg, MemStorage::new(), &default_logger()).unwrap();
    assert_eq!(
        rn.read_index(b"ctx".to_vec()).unwrap_err(),
        Error::ProposalDropped
    );
    assert!(rn.ready().read_states.is_empty());

    rn.campaign().unwrap();
    assert_eq!(rn.raft.state, StateRole::Candidate);
    assert_eq!(
        rn.read_index(b"ctx".to_vec()).unwrap_err(),
        Error::ProposalDropped
    );

    let mut r = new_raft_with(1, vec![1, 2, 3], 10, 1, MemStorage::new(), prevote_config);
    r.step(hup(1)).unwrap();
    assert_eq!(r.state, StateRole::PreCandidate);
    assert_eq!(
        r.step(read_index_msg(1, 1, b"ctx")).unwrap_err(),
        Error::ProposalDropped
    );
    assert!(r.read_states.is_empty());
}

/// Three `RawNode`s driven through their `Ready` loop: a read on a follower is forwarded to the
/// leader, confirmed by a heartbeat round, and comes back as a ReadState in the follower's
/// `Ready`; a read on the leader comes back in the leader's.
#[test]
fn test_read_index_raw_node_follower_forwarded() {
    let mut nodes: BTreeMap<u64, (RawNode<MemStorage>, MemStorage)> = BTreeMap::new();
    for id in 1..=3u64 {
        let s = MemStorage::new();
        let cfg = new_test_config(id, vec![1, 2, 3], 10, 1);
        let rn = RawNode::new(&cfg, s.clone(), &default_logger()).unwrap();
        nodes.insert(id, (rn, s));
    }
    // Runs the Ready loop of every node until nothing is left; returns the read states seen.
    let stabilize = |nodes: &mut BTreeMap<u64, (RawNode<MemStorage>, MemStorage)>| {
        let mut reads: BTreeMap<u64, Vec<ReadState>> = BTreeMap::new();
        loop {
            let mut msgs = Vec::new();
            for (&id, (rn, s)) in nodes.iter_mut() {
                if !rn.has_ready() {
                    continue;
                }
                let rd = rn.ready();
                s.wl().append(&rd.entries).unwrap();
                if let Some(hs) = &rd.hard_state {
                    s.wl().set_hard_state(*hs);
                }
                msgs.extend(rd.messages.iter().cloned());
                reads
                    .entry(id)
                    .or_default()
                    .extend(rd.read_states.iter().cloned());
                rn.advance(rd);
            }
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let to = m.to;
                nodes.get_mut(&to).unwrap().0.step(m).unwrap();
            }
        }
        reads
    };

    nodes.get_mut(&1).unwrap().0.campaign().unwrap();
    stabilize(&mut nodes);
    assert_eq!(nodes[&1].0.raft.state, StateRole::Leader);
    for id in 1..=3u64 {
        assert_eq!(nodes[&id].0.raft.raft_log.committed, 1, "node {id}");
    }

    nodes
        .get_mut(&2)
        .unwrap()
        .0
        .read_index(b"follower-read".to_vec())
        .unwrap();
    let reads = stabilize(&mut nodes);
    assert_eq!(
        reads.get(&2).cloned().unwrap_or_default(),
        vec![ReadState {
            index: 1,
            request_ctx: b"follower-read".to_vec()
        }]
    );
    assert!(reads.get(&1).is_none_or(|r| r.is_empty()));

    nodes
        .get_mut(&1)
        .unwrap()
        .0
        .read_index(b"leader-read".to_vec())
        .unwrap();
    let reads = stabilize(&mut nodes);
    assert_eq!(
        reads.get(&1).cloned().unwrap_or_default(),
        vec![ReadState {
            index: 1,
            request_ctx: b"leader-read".to_vec()
        }]
    );
}

// ---- flow control ---------------------------------------------------------------------------

/// The default `max_inflight_msgs` of `new_test_config`.
const MAX_INFLIGHT: usize = 256;

/// A leader of [1, 2] whose progress of 2 is in the replicate state, with the inflight window
/// filled by `MAX_INFLIGHT` proposals.
fn leader_with_full_window() -> Raft<MemStorage> {
    let cfg = new_test_config(1, vec![1, 2], 5, 1);
    assert_eq!(cfg.max_inflight_msgs, MAX_INFLIGHT);
    let mut r = Raft::new(&cfg, MemStorage::new(), &default_logger()).unwrap();
    r.become_candidate();
    r.become_leader();
    // Force the progress to be in the replicate state.
    r.prs.get_mut(&2).unwrap().become_replicate();
    // Fill in the inflights window.
    for i in 0..MAX_INFLIGHT {
        r.step(propose(1)).unwrap();
        let ms = r.read_messages();
        assert_eq!(ms.len(), 1, "#{i}: ms count");
    }
    r
}

/// etcd's `TestMsgAppFlowControlFull`: appends fill the sending window until it is full; then the
/// progress is paused and proposals send nothing.
#[test]
fn test_msg_app_flow_control_full() {
    let mut r = leader_with_full_window();

    // Ensure 1: the window is full and the progress paused.
    let pr = &r.prs[&2];
    assert!(pr.ins.full());
    assert_eq!(pr.ins.count(), MAX_INFLIGHT);
    assert_eq!(pr.state, ProgressState::Replicate);
    assert!(pr.is_paused());

    // Ensure 2: no more MsgAppend can be sent.
    for i in 0..10 {
        r.step(propose(1)).unwrap();
        let ms = r.read_messages();
        assert!(ms.is_empty(), "#{i}: ms count = {}, want 0", ms.len());
    }
}

/// etcd's `TestMsgAppFlowControlMoveForward`: a valid MsgAppendResponse frees every inflight
/// append up to its index; an out-of-date one has no effect on the window.
#[test]
fn test_msg_app_flow_control_move_forward() {
    let mut r = leader_with_full_window();

    // 1 is the no-op, 2 the first proposal just sent: start with 2.
    for tt in 2..MAX_INFLIGHT as u64 {
        // Move the window forward.
        let mut m = msg_with_term(2, 1, MessageType::MsgAppendResponse, r.term);
        m.index = tt;
        r.step(m).unwrap();
        r.read_messages();

        // Fill the window again.
        r.step(propose(1)).unwrap();
        let ms = r.read_messages();
        assert_eq!(ms.len(), 1, "#{tt}: ms count");

        // Ensure 1: full again.
        assert!(r.prs[&2].ins.full(), "#{tt}: window not full");

        // Ensure 2: out-of-date acks free nothing.
        for i in 0..tt {
            let mut m = msg_with_term(2, 1, MessageType::MsgAppendResponse, r.term);
            m.index = i;
            r.step(m).unwrap();
            assert!(
                r.prs[&2].ins.full(),
                "#{tt}.{i}: inflights.full = false, want true"
            );
        }
    }
}

/// etcd's `TestMsgAppFlowControlRecvHeartbeat`: a heartbeat response frees exactly one slot of a
/// full window.
#[test]
fn test_msg_app_flow_control_recv_heartbeat() {
    let mut r = leader_with_full_window();

    for tt in 1..5 {
        assert!(
            r.prs[&2].ins.full(),
            "#{tt}: inflights.full = false, want true"
        );

        // Receive tt heartbeat responses and expect one free slot.
        for i in 0..tt {
            let term = r.term;
            r.step(msg_with_term(2, 1, MessageType::MsgHeartbeatResponse, term))
                .unwrap();
            r.read_messages();
            assert!(
                !r.prs[&2].ins.full(),
                "#{tt}.{i}: inflights.full = true, want false"
            );
        }

        // One slot.
        r.step(propose(1)).unwrap();
        let ms = r.read_messages();
        assert_eq!(ms.len(), 1, "#{tt}: free slot = 0, want 1");

        // And just one slot.
        for i in 0..10 {
            r.step(propose(1)).unwrap();
            let ms1 = r.read_messages();
            assert!(ms1.is_empty(), "#{tt}.{i}: ms1 should be empty");
        }

        // Clear all pending messages.
        let term = r.term;
        r.step(msg_with_term(2, 1, MessageType::MsgHeartbeatResponse, term))
            .unwrap();
        r.read_messages();
    }
}

/// raft-rs's `test_progress_flow_control`: in probe state one append at a time; once acked, the
/// replicate state streams appends of at most `max_size_per_msg` bytes within a window of
/// `max_inflight_msgs` appends.
#[test]
fn test_flow_control_progress_size_and_inflight() {
    let mut cfg = new_test_config(1, vec![1, 2], 5, 1);
    cfg.max_inflight_msgs = 3;
    cfg.max_size_per_msg = 2048;
    let mut r = Raft::new(&cfg, MemStorage::new(), &default_logger()).unwrap();
    r.become_candidate();
    r.become_leader();

    // Throw away all the messages relating to the initial election.
    r.read_messages();

    // While node 2 is in probe state, propose a bunch of entries.
    r.prs.get_mut(&2).unwrap().become_probe();
    let data = vec![b'a'; 1000];
    for _ in 0..10 {
        r.step(propose_data(1, 1, &data)).unwrap();
    }

    let ms = r.read_messages();
    // The first append has two entries: the no-op confirming the election and the first
    // proposal (only one proposal is sent because of the probe state).
    assert_eq!(ms.len(), 1);
    assert_eq!(ms[0].msg_type(), MessageType::MsgAppend);
    assert_eq!(ms[0].entries.len(), 2);
    assert_eq!(ms[0].entries[0].data.len(), 0);
    assert_eq!(ms[0].entries[1].data.len(), 1000);

    // When this append is acked, the progress moves to replicate and may send several at once.
    let mut m = msg_with_term(2, 1, MessageType::MsgAppendResponse, r.term);
    m.index = ms[0].entries[1].index;
    r.step(m).unwrap();
    let ms = r.read_messages();
    assert_eq!(ms.len(), 3);
    for (i, m) in ms.iter().enumerate() {
        assert_eq!(m.msg_type(), MessageType::MsgAppend, "{i}: type");
        assert_eq!(m.entries.len(), 2, "{i}: entries");
    }

    // Ack all three of those messages together and get the last two messages (three entries).
    let mut m = msg_with_term(2, 1, MessageType::MsgAppendResponse, r.term);
    m.index = ms[2].entries[1].index;
    r.step(m).unwrap();
    let ms = r.read_messages();
    assert_eq!(ms.len(), 2);
    for (i, m) in ms.iter().enumerate() {
        assert_eq!(m.msg_type(), MessageType::MsgAppend, "{i}: type");
    }
    assert_eq!(ms[0].entries.len(), 2);
    assert_eq!(ms[1].entries.len(), 1);
}

/// Checks that the appends `msgs` carry the consecutive entries `first..=last`, each message at
/// least one entry and at most `limit` bytes of entries (unless it holds a single entry), and that
/// each message is as full as the limit allows.
fn check_size_limited(msgs: &[Message], limit: u64, first: u64, last: u64) {
    let mut next = first;
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.msg_type(), MessageType::MsgAppend, "#{i}: type");
        assert!(
            !m.entries.is_empty(),
            "#{i}: an append carries at least one entry"
        );
        assert_eq!(m.index + 1, next, "#{i}: appends must be consecutive");
        let size: u64 = m.entries.iter().map(encoded_len).sum();
        assert!(
            size <= limit || m.entries.len() == 1,
            "#{i}: {} entries of {size} bytes exceed the limit {limit}",
            m.entries.len()
        );
        for (k, e) in m.entries.iter().enumerate() {
            assert_eq!(e.index, next + k as u64, "#{i}: entry {k}");
        }
        next += m.entries.len() as u64;
        if let Some(n) = msgs.get(i + 1) {
            assert!(
                size + encoded_len(&n.entries[0]) > limit,
                "#{i}: the next entry would have fit in this append"
            );
        }
    }
    assert_eq!(next, last + 1, "appends must cover {first}..={last}");
}

/// A MsgAppend carries at most `max_size_per_msg` bytes of entries, and always at least one
/// entry even when a single entry is larger than the limit — for entries in the unstable log
/// and for entries read back from storage.
#[test]
fn test_flow_control_max_size_per_msg() {
    // Entries in the leader's unstable log.
    let limit = 500;
    let mut cfg = new_test_config(1, vec![1, 2], 5, 1);
    cfg.max_size_per_msg = limit;
    let mut r = Raft::new(&cfg, MemStorage::new(), &default_logger()).unwrap();
    r.become_candidate();
    r.become_leader();
    r.read_messages();
    let data = vec![b'x'; 100];
    for _ in 0..20 {
        r.step(propose_data(1, 1, &data)).unwrap();
    }
    // Probe: one append (the no-op and the first proposal), then paused.
    let ms = r.read_messages();
    assert_eq!(ms.len(), 1);
    assert_eq!(ms[0].entries.len(), 2);
    let mut m = msg_with_term(2, 1, MessageType::MsgAppendResponse, r.term);
    m.index = 2;
    r.step(m).unwrap();
    let ms: Vec<Message> = r
        .read_messages()
        .into_iter()
        .filter(|m| m.to == 2)
        .collect();
    let last = r.raft_log.last_index();
    assert_eq!(last, 21);
    check_size_limited(&ms, limit, 3, last);
    // 106-byte entries: four fit in 500 bytes.
    let sizes: Vec<usize> = ms.iter().map(|m| m.entries.len()).collect();
    assert_eq!(sizes, vec![4, 4, 4, 4, 3]);

    // Entries read back from storage, with a limit smaller than any entry: one entry per append.
    let s = MemStorage::new();
    let stored: Vec<Entry> = (1..=10)
        .map(|i| entry_with_data(i, 1, &[b'y'; 100]))
        .collect();
    s.wl().append(&stored).unwrap();
    s.wl().set_hard_state(HardState {
        term: 1,
        ..Default::default()
    });
    let mut cfg = new_test_config(1, vec![1, 2], 5, 1);
    cfg.max_size_per_msg = 1;
    let mut r = Raft::new(&cfg, s, &default_logger()).unwrap();
    r.become_candidate();
    r.become_leader(); // the no-op is entry 11
    r.read_messages();
    r.prs.get_mut(&2).unwrap().become_replicate(); // sends from 1
    r.step(propose(1)).unwrap(); // entry 12
    let ms = r.read_messages();
    check_size_limited(&ms, 1, 1, 1);
    let mut m = msg_with_term(2, 1, MessageType::MsgAppendResponse, r.term);
    m.index = 1;
    r.step(m).unwrap();
    let ms = r.read_messages();
    check_size_limited(&ms, 1, 2, 12);
    assert!(ms.iter().all(|m| m.entries.len() == 1));

    // Over the network, a limited leader still brings a lagging follower fully up to date.
    let mut nt = Network::new_with_config(
        Some(&|c: &mut Config| c.max_size_per_msg = 150),
        vec![None, None, None],
    );
    nt.send(vec![hup(1)]);
    nt.isolate(3);
    for _ in 0..10 {
        nt.send(vec![propose_data(1, 1, &data)]);
    }
    nt.recover();
    let max_ents = Rc::new(Cell::new(0usize));
    let seen = max_ents.clone();
    nt.msg_hook = Some(Box::new(move |m: &Message| {
        if m.msg_type() == MessageType::MsgAppend {
            let size: u64 = m.entries.iter().map(encoded_len).sum();
            assert!(size <= 150 || m.entries.len() == 1, "{m:?}");
            seen.set(seen.get().max(m.entries.len()));
        }
        true
    }));
    nt.send(vec![beat(1)]);
    nt.send(vec![propose_data(1, 1, &data)]);
    assert_eq!(max_ents.get(), 1, "one 106-byte entry per 150-byte append");
    assert_eq!(
        nt.peers[&3].raft_log.all_entries(),
        nt.peers[&1].raft_log.all_entries()
    );
    assert_eq!(nt.peers[&3].raft_log.committed, 12);
}

/// etcd's `TestFastLogRejection`: a rejected append carries a hint (index, term) from which the
/// leader skips whole terms, so its next probe lands at (or near) the point of divergence.
#[test]
fn test_flow_control_fast_log_rejection() {
    struct Case {
        leader_log: Vec<Entry>,
        follower_log: Vec<Entry>,
        reject_hint_term: u64,
        reject_hint_index: u64,
        next_append_term: u64,
        next_append_index: u64,
    }
    let case = |l: &[(u64, u64)], f: &[(u64, u64)], rht, rhi, nat, nai| Case {
        leader_log: ents(l),
        follower_log: ents(f),
        reject_hint_term: rht,
        reject_hint_index: rhi,
        next_append_term: nat,
        next_append_index: nai,
    };
    let cases = [
        // The leader finds the conflict index quickly: first (index 7, log term 4), after the
        // rejection (index 3, log term 2).
        case(
            &[(1, 1), (2, 2), (3, 2), (4, 4), (5, 4), (6, 4), (7, 4)],
            &[
                (1, 1),
                (2, 2),
                (3, 2),
                (4, 3),
                (5, 3),
                (6, 3),
                (7, 3),
                (8, 3),
                (9, 3),
                (10, 3),
                (11, 3),
            ],
            3,
            7,
            2,
            3,
        ),
        // First (index 8, log term 5), after the rejection (index 4, log term 3).
        case(
            &[
                (1, 1),
                (2, 2),
                (3, 2),
                (4, 3),
                (5, 4),
                (6, 4),
                (7, 4),
                (8, 5),
            ],
            &[
                (1, 1),
                (2, 2),
                (3, 2),
                (4, 3),
                (5, 3),
                (6, 3),
                (7, 3),
                (8, 3),
                (9, 3),
                (10, 3),
                (11, 3),
            ],
            3,
            8,
            3,
            4,
        ),
        // The follower finds the conflict index quickly: first (index 4, log term 1), after the
        // rejection (index 1, log term 1).
        case(
            &[(1, 1), (2, 1), (3, 1), (4, 1)],
            &[(1, 1), (2, 2), (3, 2), (4, 4)],
            1,
            1,
            1,
            1,
        ),
        // Like the previous case, with a longer uncommitted tail on the leader.
        case(
            &[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1)],
            &[(1, 1), (2, 2), (3, 2), (4, 4)],
            1,
            1,
            1,
            1,
        ),
        // Like the previous case, with a longer uncommitted tail on the follower.
        case(
            &[(1, 1), (2, 1), (3, 1), (4, 1)],
            &[(1, 1), (2, 2), (3, 2), (4, 4), (5, 4), (6, 4)],
            1,
            1,
            1,
            1,
        ),
        // No conflict, the follower is just behind: first (index 5, log term 5), after the
        // rejection (index 4, log term 4).
        case(
            &[(1, 1), (2, 1), (3, 1), (4, 4), (5, 5)],
            &[(1, 1), (2, 1), (3, 1), (4, 4)],
            4,
            4,
            4,
            4,
        ),
        // The example in the comment of etcd's stepLeader (on the leader).
        case(
            &[
                (1, 2),
                (2, 5),
                (3, 5),
                (4, 5),
                (5, 5),
                (6, 5),
                (7, 5),
                (8, 5),
                (9, 5),
            ],
            &[(1, 2), (2, 4), (3, 4), (4, 4), (5, 4), (6, 4)],
            4,
            6,
            2,
            1,
        ),
        // The example in the comment of etcd's handleAppendEntries (on the follower).
        case(
            &[(1, 2), (2, 2), (3, 2), (4, 2), (5, 2)],
            &[
                (1, 2),
                (2, 4),
                (3, 4),
                (4, 4),
                (5, 4),
                (6, 4),
                (7, 4),
                (8, 4),
            ],
            2,
            1,
            2,
            1,
        ),
    ];

    for (i, c) in cases.iter().enumerate() {
        let last = c.leader_log.last().unwrap().clone();
        let s1 = MemStorage::new();
        s1.wl().append(&c.leader_log).unwrap();
        s1.wl().set_hard_state(HardState {
            term: last.term - 1,
            commit: last.index,
            ..Default::default()
        });
        let mut n1 = new_test_raft(1, vec![1, 2, 3], 10, 1, s1);
        n1.become_candidate(); // bumps the term to last.term
        n1.become_leader();

        let s2 = MemStorage::new();
        s2.wl().append(&c.follower_log).unwrap();
        s2.wl().set_hard_state(HardState {
            term: last.term,
            vote: 1,
            commit: 0,
        });
        let mut n2 = new_test_raft(2, vec![1, 2, 3], 10, 1, s2);

        n2.step(msg_with_term(1, 2, MessageType::MsgHeartbeat, n1.term))
            .unwrap();
        let msgs = n2.read_messages();
        assert_eq!(msgs.len(), 1, "#{i}: can't read 1 message from peer 2");
        assert_eq!(
            msgs[0].msg_type(),
            MessageType::MsgHeartbeatResponse,
            "#{i}"
        );

        n1.step(msgs[0].clone()).unwrap();
        let msgs = n1.read_messages();
        assert_eq!(msgs.len(), 1, "#{i}: can't read 1 message from peer 1");
        assert_eq!(msgs[0].msg_type(), MessageType::MsgAppend, "#{i}");

        n2.step(msgs[0].clone()).unwrap();
        let msgs = n2.read_messages();
        assert_eq!(msgs.len(), 1, "#{i}: can't read 1 message from peer 2");
        assert_eq!(msgs[0].msg_type(), MessageType::MsgAppendResponse, "#{i}");
        assert!(msgs[0].reject, "#{i}: expected a rejected append response");
        assert_eq!(msgs[0].log_term, c.reject_hint_term, "#{i}: hint log term");
        assert_eq!(msgs[0].reject_hint, c.reject_hint_index, "#{i}: hint index");

        n1.step(msgs[0].clone()).unwrap();
        let msgs = n1.read_messages();
        assert_eq!(msgs[0].msg_type(), MessageType::MsgAppend, "#{i}");
        assert_eq!(
            msgs[0].log_term, c.next_append_term,
            "#{i}: next append log term"
        );
        assert_eq!(
            msgs[0].index, c.next_append_index,
            "#{i}: next append index"
        );
    }
}

/// A follower whose log diverges from the leader's over 100 entries is brought in sync after a
/// single rejected probe, thanks to the reject hint, instead of one rejection per entry.
#[test]
fn test_flow_control_fast_backtracking() {
    // Node 1 and 3: entry 1 of term 1, then 50 entries of term 3.
    // Node 2: entry 1 of term 1, then 100 entries of term 2 (never committed elsewhere).
    let make = |id: u64, tail_term: u64, tail_len: u64| {
        let s = MemStorage::new();
        let mut log = vec![new_entry(1, 1)];
        log.extend((2..=tail_len + 1).map(|i| new_entry(i, tail_term)));
        s.wl().append(&log).unwrap();
        s.wl().set_hard_state(HardState {
            term: 3,
            vote: 0,
            commit: 1,
        });
        peer(new_test_raft(id, vec![1, 2, 3], 10, 1, s))
    };
    let mut nt = Network::new(vec![make(1, 3, 50), make(2, 2, 100), make(3, 3, 50)]);
    let differing = 100;

    let rejections = Rc::new(Cell::new(0u64));
    let appends_to_2 = Rc::new(Cell::new(0u64));
    let (rej, app) = (rejections.clone(), appends_to_2.clone());
    nt.msg_hook = Some(Box::new(move |m: &Message| {
        if m.msg_type() == MessageType::MsgAppendResponse && m.from == 2 && m.reject {
            rej.set(rej.get() + 1);
        }
        if m.msg_type() == MessageType::MsgAppend && m.to == 2 {
            app.set(app.get() + 1);
        }
        true
    }));

    // Node 1's log is more up to date (last term 3 > 2): it wins at term 4.
    nt.send(vec![hup(1)]);
    assert_eq!(nt.peers[&1].state, StateRole::Leader);
    assert_eq!(nt.peers[&1].term, 4);

    // One rejection: the leader learns node 2 has nothing of term 3 and jumps back to entry 1.
    assert_eq!(
        rejections.get(),
        1,
        "rejections for {differing} differing entries"
    );
    assert!(
        appends_to_2.get() <= 3,
        "appends to 2: {}",
        appends_to_2.get()
    );

    let leader_log = nt.peers[&1].raft_log.all_entries();
    assert_eq!(leader_log.len(), 52);
    assert_eq!(nt.peers[&2].raft_log.all_entries(), leader_log);
    assert_eq!(nt.peers[&1].raft_log.committed, 52);
    assert_eq!(nt.peers[&2].raft_log.committed, 52);
    assert_eq!(nt.peers[&1].prs[&2].matched, 52);
    assert_eq!(nt.peers[&1].prs[&2].state, ProgressState::Replicate);

    // Replication goes on normally afterwards.
    nt.send(vec![propose(1)]);
    assert_eq!(rejections.get(), 1);
    for id in 1..=3u64 {
        assert_eq!(nt.peers[&id].raft_log.committed, 53, "node {id}");
    }
}
