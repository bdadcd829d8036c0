//! TinyKV's `raft_test.go` tests of snapshot handling (stage 2C) and of membership changes and
//! leader transfer (stage 3A), ported to the Rust API; and one of our own (no stage suffix: the
//! stage sets hold TinyKV's tests only), a stale snapshot behind a compacted log, and a snapshot
//! the log already covers.

#[path = "common/network.rs"]
mod network;

use network::*;
use prost::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message, MessageType, Snapshot,
    SnapshotMetadata,
};
use raft::{MemStorage, Raft, StateRole};

/// A snapshot with the given index, term and members, no data.
fn new_snapshot(index: u64, term: u64, nodes: Vec<u64>) -> Snapshot {
    Snapshot {
        metadata: Some(SnapshotMetadata {
            index,
            term,
            conf_state: Some(ConfState { nodes }),
        }),
        ..Default::default()
    }
}

/// `pb.Message{From: from, To: to, MsgType: MsgHup}`.
fn hup(from: u64, to: u64) -> Message {
    new_message(from, to, MessageType::MsgHup)
}

/// `pb.Message{From: from, To: to, MsgType: MsgPropose, Entries: []*pb.Entry{{}}}`.
fn propose_empty(from: u64, to: u64) -> Message {
    let mut m = new_message(from, to, MessageType::MsgPropose);
    m.entries = vec![Entry::default()];
    m
}

/// `pb.Message{From: from, To: to, MsgType: MsgTransferLeader}`.
fn transfer(from: u64, to: u64) -> Message {
    new_message(from, to, MessageType::MsgTransferLeader)
}

/// TinyKV's `checkLeaderTransferState`.
fn check_leader_transfer_state(r: &Raft<MemStorage>, state: StateRole, lead: u64) {
    assert!(
        r.state == state && r.lead == lead,
        "after transferring, node has state {:?} lead {}, want state {:?} lead {}",
        r.state,
        r.lead,
        state,
        lead
    );
}

/// Persists and applies node 1's log, then snapshots its storage at the applied index and compacts
/// it there (the setup shared by `TestSlowNodeRestore2C` and `TestLeaderTransferAfterSnapshot3A`).
fn snapshot_and_compact_leader(nt: &mut Network) {
    let s1 = nt.storage[&1].clone();
    let lead = nt.peers.get_mut(&1).unwrap();
    next_ents(lead, &s1);
    let applied = lead.raft_log.applied;
    let cs = ConfState {
        nodes: lead.nodes(),
    };
    s1.wl().create_snapshot(applied, Some(cs), vec![]).unwrap();
    s1.wl().compact(applied).unwrap();
}

// ---- 2C: snapshots --------------------------------------------------------------------------

/// `handle_snapshot` installs the snapshot: last index, its term and the membership come from it.
#[test]
fn test_restore_snapshot_2c() {
    let s = new_snapshot(11, 11, vec![1, 2, 3]); // magic numbers

    let storage = MemStorage::new();
    let mut sm = new_test_raft(1, vec![1, 2], 10, 1, storage);
    sm.handle_snapshot(&Message {
        snapshot: Some(s.clone()),
        ..Default::default()
    });

    let meta = s.metadata.unwrap();
    assert_eq!(sm.raft_log.last_index(), meta.index, "log.lastIndex");
    assert_eq!(
        sm.raft_log.term(meta.index).unwrap(),
        meta.term,
        "log.lastTerm"
    );
    assert_eq!(sm.nodes(), meta.conf_state.unwrap().nodes, "sm.Nodes");
}

/// A snapshot older than the commit index is ignored: the commit index stays.
#[test]
fn test_restore_ignore_snapshot_2c() {
    let previous_ents = vec![new_entry(1, 1), new_entry(2, 1), new_entry(3, 1)];
    let storage = MemStorage::new();
    storage.wl().append(&previous_ents).unwrap();
    let mut sm = new_test_raft(1, vec![1, 2], 10, 1, storage);
    sm.raft_log.committed = 3;

    let wcommit = 3;
    let commit = 1;
    let s = new_snapshot(commit, 1, vec![1, 2]);

    // ignore snapshot
    sm.handle_snapshot(&Message {
        snapshot: Some(s),
        ..Default::default()
    });
    assert_eq!(sm.raft_log.committed, wcommit, "commit");
}

/// A snapshot older than the commit index is ignored also when the follower's log was compacted
/// past it (so the log cannot tell it apart from a newer one): installing it would roll the log
/// and the commit index back below entries already committed and applied. TinyKV's test above
/// sends a stale snapshot whose last entry is still in the log, which a follower that installs
/// every snapshot passes by fast-forwarding. (Our own test: no stage suffix.)
#[test]
fn test_a_snapshot_behind_a_compacted_log_is_ignored() {
    let storage = MemStorage::new();
    storage
        .wl()
        .apply_snapshot(new_snapshot(5, 2, vec![1, 2]))
        .unwrap();
    storage
        .wl()
        .append(&[new_entry(6, 2), new_entry(7, 2)])
        .unwrap();
    let mut sm = new_test_raft(1, vec![], 10, 1, storage);
    sm.raft_log.committed = 7;
    sm.handle_snapshot(&Message {
        snapshot: Some(new_snapshot(3, 1, vec![1, 2])),
        ..Default::default()
    });
    assert_eq!(sm.raft_log.committed, 7, "the commit index went back");
    assert_eq!(sm.raft_log.first_index(), 6, "the log was replaced");
    assert_eq!(sm.raft_log.last_index(), 7, "the log was replaced");
}

/// A snapshot whose last entry the follower already has is not installed: the follower moves its
/// commit index up to it and keeps its log, the entries after the snapshot included (it may
/// have acknowledged them; installing would drop them). The second half of etcd's
/// `TestRestoreIgnoreSnapshot`, which TinyKV's port leaves out. (Our own test: no stage suffix.)
#[test]
fn test_a_snapshot_the_log_covers_fast_forwards_the_commit() {
    let storage = MemStorage::new();
    storage
        .wl()
        .append(&[new_entry(1, 1), new_entry(2, 1), new_entry(3, 1)])
        .unwrap();
    let mut sm = new_test_raft(1, vec![1, 2], 10, 1, storage);
    sm.raft_log.committed = 1;
    sm.handle_snapshot(&Message {
        snapshot: Some(new_snapshot(2, 1, vec![1, 2])),
        ..Default::default()
    });
    assert_eq!(
        sm.raft_log.committed, 2,
        "the commit index moves to the snapshot"
    );
    assert_eq!(
        sm.raft_log.last_index(),
        3,
        "the entry after the snapshot was dropped"
    );
    assert_eq!(sm.raft_log.first_index(), 1, "the log was replaced");
}

/// A leader whose log was compacted into a snapshot sends that snapshot to a follower needing
/// compacted entries.
#[test]
fn test_provide_snap_2c() {
    // restore the state machine from a snapshot so it has a compacted log and a snapshot
    let s = new_snapshot(11, 11, vec![1, 2]); // magic numbers
    let storage = MemStorage::new();
    let mut sm = new_test_raft(1, vec![1], 10, 1, storage);
    sm.handle_snapshot(&Message {
        snapshot: Some(s),
        ..Default::default()
    });

    sm.become_candidate();
    sm.become_leader();
    sm.read_messages(); // clear message

    // force set the next of node 2 to less than the SnapshotMetadata.Index, so that node 2 needs a
    // snapshot
    sm.prs.get_mut(&2).unwrap().next_idx = 10;
    let mut m = new_message(2, 1, MessageType::MsgPropose);
    m.entries = vec![Entry {
        data: b"somedata".to_vec(),
        ..Default::default()
    }];
    let _ = sm.step(m);

    let msgs = sm.read_messages();
    assert_eq!(msgs.len(), 1, "len(msgs): {msgs:?}");
    assert_eq!(msgs[0].msg_type(), MessageType::MsgSnapshot, "m.MsgType");
}

/// A follower stepping a MsgSnapshot learns the leader from it.
#[test]
fn test_restore_from_snap_msg_2c() {
    let s = new_snapshot(11, 11, vec![1, 2]); // magic numbers
    let mut m = new_message(1, 0, MessageType::MsgSnapshot);
    m.term = 2;
    m.snapshot = Some(s);

    let mut sm = new_test_raft(2, vec![1, 2], 10, 1, MemStorage::new());
    let _ = sm.step(m);

    assert_eq!(sm.lead, 1, "sm.Lead");
}

/// A MsgSnapshot whose membership overlaps the node's own replaces it: lead is the sender and the
/// progress map holds exactly the snapshot's nodes.
#[test]
fn test_restore_from_snap_with_overlaping_peers_msg_2c() {
    let s = new_snapshot(11, 11, vec![2, 3, 4]); // magic numbers
    let mut m = new_message(1, 0, MessageType::MsgSnapshot);
    m.term = 2;
    m.snapshot = Some(s.clone());

    let mut sm = new_test_raft(2, vec![1, 2, 3], 10, 1, MemStorage::new());
    let _ = sm.step(m);

    assert_eq!(sm.lead, 1, "sm.Lead");

    let nodes = s.metadata.unwrap().conf_state.unwrap().nodes;
    assert_eq!(sm.prs.len(), nodes.len(), "len(sm.Prs)");
    for p in nodes {
        assert!(sm.prs.contains_key(&p), "missing peer {p}");
    }
}

/// A node isolated while the leader compacted its log catches up through a snapshot and then
/// commits as far as the leader.
#[test]
fn test_slow_node_restore_2c() {
    let mut nt = Network::new(vec![None, None, None]);
    nt.send(vec![hup(1, 1)]);

    nt.isolate(3);
    for _ in 0..=100 {
        nt.send(vec![propose_empty(1, 1)]);
    }
    snapshot_and_compact_leader(&mut nt);

    nt.recover();

    // send heartbeats so that the leader can learn everyone is active.
    // node 3 will only be considered as active when node 1 receives a reply from it.
    nt.send(vec![new_message(1, 1, MessageType::MsgBeat)]);

    // trigger a snapshot
    nt.send(vec![propose_empty(1, 1)]);

    // trigger a commit
    nt.send(vec![propose_empty(1, 1)]);
    let follower_committed = nt.peers[&3].raft_log.committed;
    let lead_committed = nt.peers[&1].raft_log.committed;
    assert_eq!(follower_committed, lead_committed, "follower.committed");
}

// ---- 3A: membership changes -----------------------------------------------------------------

/// `add_node` adds the node to the membership.
#[test]
fn test_add_node_3a() {
    let mut r = new_test_raft(1, vec![1], 10, 1, MemStorage::new());
    r.add_node(2);
    assert_eq!(r.nodes(), vec![1, 2], "nodes");
}

/// `remove_node` removes the node from the membership, down to no node at all.
#[test]
fn test_remove_node_3a() {
    let mut r = new_test_raft(1, vec![1, 2], 10, 1, MemStorage::new());
    r.remove_node(2);
    assert_eq!(r.nodes(), vec![1], "nodes");

    // remove all nodes from cluster
    r.remove_node(1);
    assert_eq!(r.nodes(), Vec::<u64>::new(), "nodes");
}

/// Pending commands commit once a conf change reduces the quorum.
#[test]
fn test_commit_after_remove_node_3a() {
    // Create a cluster with two nodes.
    let s = MemStorage::new();
    let mut r = new_test_raft(1, vec![1, 2], 5, 1, s.clone());
    r.become_candidate();
    r.become_leader();

    // Begin to remove the second node.
    let mut cc = ConfChange {
        node_id: 2,
        ..Default::default()
    };
    cc.set_change_type(ConfChangeType::RemoveNode);
    let cc_data = cc.encode_to_vec();
    let mut m = new_message(0, 0, MessageType::MsgPropose);
    m.entries = vec![Entry {
        entry_type: EntryType::EntryConfChange as i32,
        data: cc_data,
        ..Default::default()
    }];
    let _ = r.step(m);
    // Stabilize the log and make sure nothing is committed yet.
    let ents = next_ents(&mut r, &s);
    assert!(ents.is_empty(), "unexpected committed entries: {ents:?}");
    let cc_index = r.raft_log.last_index();

    // While the config change is pending, make another proposal.
    let mut m = new_message(0, 0, MessageType::MsgPropose);
    m.entries = vec![Entry {
        entry_type: EntryType::EntryNormal as i32,
        data: b"hello".to_vec(),
        ..Default::default()
    }];
    let _ = r.step(m);

    // Node 2 acknowledges the config change, committing it.
    let mut m = new_message(2, 0, MessageType::MsgAppendResponse);
    m.index = cc_index;
    m.term = r.term;
    let _ = r.step(m);
    let ents = next_ents(&mut r, &s);
    assert_eq!(
        ents.len(),
        2,
        "expected two committed entries, got {ents:?}"
    );
    // Go: `ents[0].Data != nil`; an absent and an empty `bytes` field are the same in prost.
    assert!(
        ents[0].entry_type() == EntryType::EntryNormal && ents[0].data.is_empty(),
        "expected ents[0] to be empty, but got {:?}",
        ents[0]
    );
    assert_eq!(
        ents[1].entry_type(),
        EntryType::EntryConfChange,
        "expected ents[1] to be EntryConfChange, got {:?}",
        ents[1]
    );

    // Apply the config change. This reduces quorum requirements so the
    // pending command can now commit.
    r.remove_node(2);
    let ents = next_ents(&mut r, &s);
    assert!(
        ents.len() == 1
            && ents[0].entry_type() == EntryType::EntryNormal
            && ents[0].data == b"hello",
        "expected one committed EntryNormal, got {ents:?}"
    );
}

// ---- 3A: leader transfer --------------------------------------------------------------------

/// Transfer succeeds when the transferee's log is up to date (the request sent to the leader).
#[test]
fn test_leader_transfer_to_up_to_date_node_3a() {
    let mut nt = Network::new(vec![None, None, None]);
    nt.send(vec![hup(1, 1)]);

    assert_eq!(nt.peers[&1].lead, 1, "after election leader");

    // Transfer leadership to 2.
    nt.send(vec![transfer(2, 1)]);

    check_leader_transfer_state(&nt.peers[&1], StateRole::Follower, 2);

    // After some log replication, transfer leadership back to 1.
    nt.send(vec![propose_empty(1, 1)]);

    nt.send(vec![transfer(1, 2)]);

    check_leader_transfer_state(&nt.peers[&1], StateRole::Leader, 1);
}

/// Transfer succeeds when the transferee's log is up to date, every request being sent to a
/// follower (which forwards it to the leader).
#[test]
fn test_leader_transfer_to_up_to_date_node_from_follower_3a() {
    let mut nt = Network::new(vec![None, None, None]);
    nt.send(vec![hup(1, 1)]);

    assert_eq!(nt.peers[&1].lead, 1, "after election leader");

    // Transfer leadership to 2.
    nt.send(vec![transfer(2, 2)]);

    check_leader_transfer_state(&nt.peers[&1], StateRole::Follower, 2);

    // After some log replication, transfer leadership back to 1.
    nt.send(vec![propose_empty(1, 1)]);

    nt.send(vec![transfer(1, 1)]);

    check_leader_transfer_state(&nt.peers[&1], StateRole::Leader, 1);
}

/// A transferee lacking entries is caught up first, then takes over.
#[test]
fn test_leader_transfer_to_slow_follower_3a() {
    let mut nt = Network::new(vec![None, None, None]);
    nt.send(vec![hup(1, 1)]);

    nt.isolate(3);
    nt.send(vec![propose_empty(1, 1)]);

    nt.recover();
    assert_eq!(nt.peers[&1].prs[&3].matched, 1, "node 1's match for node 3");

    // Transfer leadership to 3 when node 3 is lack of log.
    nt.send(vec![transfer(3, 1)]);

    check_leader_transfer_state(&nt.peers[&1], StateRole::Follower, 3);
}

/// A transferee needing a snapshot gets it (triggered by its heartbeat response), then takes over.
#[test]
fn test_leader_transfer_after_snapshot_3a() {
    let mut nt = Network::new(vec![None, None, None]);
    nt.send(vec![hup(1, 1)]);

    nt.isolate(3);

    nt.send(vec![propose_empty(1, 1)]);
    snapshot_and_compact_leader(&mut nt);

    nt.recover();
    assert_eq!(nt.peers[&1].prs[&3].matched, 1, "node 1's match for node 3");

    // Transfer leadership to 3 when node 3 is lack of snapshot.
    nt.send(vec![transfer(3, 1)]);
    // Send MsgHeartbeatResponse to leader to trigger a snapshot for node 3.
    let mut m = new_message(3, 1, MessageType::MsgHeartbeatResponse);
    m.term = nt.peers[&1].term;
    nt.send(vec![m]);

    check_leader_transfer_state(&nt.peers[&1], StateRole::Follower, 3);
}

/// Transferring to the leader itself is a no-op.
#[test]
fn test_leader_transfer_to_self_3a() {
    let mut nt = Network::new(vec![None, None, None]);
    nt.send(vec![hup(1, 1)]);

    // Transfer leadership to self, there will be noop.
    nt.send(vec![transfer(1, 1)]);
    check_leader_transfer_state(&nt.peers[&1], StateRole::Leader, 1);
}

/// Transferring to a node outside the group is a no-op.
#[test]
fn test_leader_transfer_to_non_existing_node_3a() {
    let mut nt = Network::new(vec![None, None, None]);
    nt.send(vec![hup(1, 1)]);

    // Transfer leadership to non-existing node, there will be noop.
    nt.send(vec![transfer(4, 1)]);
    check_leader_transfer_state(&nt.peers[&1], StateRole::Leader, 1);
}

/// With a transfer pending to an isolated node, another node's election at a higher term wins
/// and the old leader follows it.
#[test]
fn test_leader_transfer_receive_higher_term_vote_3a() {
    let mut nt = Network::new(vec![None, None, None]);
    nt.send(vec![hup(1, 1)]);

    nt.isolate(3);

    // Transfer leadership to isolated node to let transfer pending.
    nt.send(vec![transfer(3, 1)]);
    let mut m = hup(2, 2);
    m.index = 1;
    m.term = 2;
    nt.send(vec![m]);

    check_leader_transfer_state(&nt.peers[&1], StateRole::Follower, 2);
}

/// Transferring to a node removed from the group is a no-op.
#[test]
fn test_leader_transfer_remove_node_3a() {
    let mut nt = Network::new(vec![None, None, None]);
    nt.send(vec![hup(1, 1)]);

    nt.peers.get_mut(&1).unwrap().remove_node(3);

    nt.send(vec![transfer(3, 1)]);

    check_leader_transfer_state(&nt.peers[&1], StateRole::Leader, 1);
}

/// A transfer back to the leader itself cancels the pending transfer.
#[test]
fn test_leader_transfer_back_3a() {
    let mut nt = Network::new(vec![None, None, None]);
    nt.send(vec![hup(1, 1)]);

    nt.isolate(3);

    nt.send(vec![transfer(3, 1)]);

    // Transfer leadership back to self.
    nt.send(vec![transfer(1, 1)]);

    check_leader_transfer_state(&nt.peers[&1], StateRole::Leader, 1);
}

/// A second transfer to another node replaces the pending one and succeeds.
#[test]
fn test_leader_transfer_second_transfer_to_another_node_3a() {
    let mut nt = Network::new(vec![None, None, None]);
    nt.send(vec![hup(1, 1)]);

    nt.isolate(3);

    nt.send(vec![transfer(3, 1)]);
    // Transfer leadership to another node.
    nt.send(vec![transfer(2, 1)]);

    check_leader_transfer_state(&nt.peers[&1], StateRole::Follower, 2);
}

/// A node removed from the group ignores MsgTimeoutNow and vote responses: it stays a follower.
#[test]
fn test_transfer_non_member_3a() {
    let mut r = new_test_raft(1, vec![2, 3, 4], 5, 1, MemStorage::new());
    let mut m = new_message(2, 1, MessageType::MsgTimeoutNow);
    m.term = r.term;
    let _ = r.step(m);

    let mut m = new_message(2, 1, MessageType::MsgRequestVoteResponse);
    m.term = r.term;
    let _ = r.step(m);
    let mut m = new_message(3, 1, MessageType::MsgRequestVoteResponse);
    m.term = r.term;
    let _ = r.step(m);
    assert_eq!(r.state, StateRole::Follower, "state");
}
