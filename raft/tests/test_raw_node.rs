//! TinyKV's `rawnode_test.go`, ported to the Rust API: starting and restarting a `RawNode` (stage
//! 2AC), restarting from a snapshot (2C), and proposing conf changes through it (3A). Tests of
//! our own carry no stage suffix (the stage sets hold TinyKV's tests only): `propose_batch`, the
//! `must_sync` of a Ready that installs a snapshot, a vote surviving a restart, and the
//! MsgTimeoutNow of a leader that removed itself (the commit it carries, the campaign it starts).

#[path = "common/network.rs"]
mod network;

use network::*;
use prost::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message, MessageType,
    Snapshot, SnapshotMetadata,
};
use raft::{default_logger, is_empty_hard_state, MemStorage, RawNode, Ready, Storage, NO_LIMIT};

/// `newTestConfig(id, peers, election, heartbeat, s)` then `NewRawNode`.
fn new_raw_node(id: u64, peers: Vec<u64>, s: &MemStorage) -> RawNode<MemStorage> {
    let cfg = new_test_config(id, peers, 10, 1);
    RawNode::new(&cfg, s.clone(), &default_logger()).expect("new raw node")
}

/// An `AddNode` conf change for `node_id`.
fn add_node(node_id: u64) -> ConfChange {
    let mut cc = ConfChange {
        node_id,
        ..Default::default()
    };
    cc.set_change_type(ConfChangeType::AddNode);
    cc
}

/// `RawNode::propose` and `RawNode::propose_conf_change` hand the proposal and the ConfChange to
/// the underlying raft.
#[test]
fn test_raw_node_propose_and_conf_change_3a() {
    let s = MemStorage::new();
    let mut raw_node = new_raw_node(1, vec![1], &s);
    let rd = raw_node.ready();
    s.wl().append(&rd.entries).unwrap();
    raw_node.advance(rd);

    let d = raw_node.ready();
    // Go's `!IsEmptyHardState(d.HardState)`: our Ready has `None` for an unchanged hard state.
    assert!(
        d.hard_state.as_ref().is_none_or(is_empty_hard_state) && d.entries.is_empty(),
        "expected empty hard state: {d:?}"
    );

    let _ = raw_node.campaign();
    let rd = raw_node.ready();
    assert_eq!(
        rd.soft_state.as_ref().expect("a soft state").leader_id,
        raw_node.raft.id,
        "expected become leader"
    );

    // propose a command and a ConfChange.
    let _ = raw_node.propose(b"somedata".to_vec());
    let cc = add_node(1);
    let ccdata = cc.encode_to_vec();
    let _ = raw_node.propose_conf_change(&cc);

    let entries = raw_node.raft.raft_log.all_entries();
    let l = entries.len();
    assert!(l >= 2, "len(entries) = {l}, want >= 2");
    let entries = &entries[l - 2..];
    assert_eq!(entries[0].data, b"somedata", "entries[0].Data");
    assert_eq!(
        entries[1].entry_type(),
        EntryType::EntryConfChange,
        "entries[1] type"
    );
    assert_eq!(entries[1].data, ccdata, "entries[1].Data");
}

/// Two proposals to add the same node do not affect a later proposal to add a new node.
#[test]
fn test_raw_node_propose_add_duplicate_node_3a() {
    let s = MemStorage::new();
    let mut raw_node = new_raw_node(1, vec![1], &s);
    let rd = raw_node.ready();
    s.wl().append(&rd.entries).unwrap();
    raw_node.advance(rd);

    let _ = raw_node.campaign();
    loop {
        let rd = raw_node.ready();
        s.wl().append(&rd.entries).unwrap();
        // Go dereferences `rd.SoftState` here, so a Ready without one would fail there too.
        let lead = rd.soft_state.as_ref().expect("a soft state").leader_id;
        raw_node.advance(rd);
        if lead == raw_node.raft.id {
            break;
        }
    }

    let mut propose_conf_change_and_apply = |cc: &ConfChange| {
        let _ = raw_node.propose_conf_change(cc);
        let rd = raw_node.ready();
        s.wl().append(&rd.entries).unwrap();
        for entry in &rd.committed_entries {
            if entry.entry_type() == EntryType::EntryConfChange {
                let cc = ConfChange::decode(entry.data.as_slice()).unwrap_or_default();
                raw_node.apply_conf_change(&cc);
            }
        }
        raw_node.advance(rd);
    };

    let cc1 = add_node(1);
    let ccdata1 = cc1.encode_to_vec();
    propose_conf_change_and_apply(&cc1);

    // try to add the same node again
    propose_conf_change_and_apply(&cc1);

    // the new node join should be ok
    let cc2 = add_node(2);
    let ccdata2 = cc2.encode_to_vec();
    propose_conf_change_and_apply(&cc2);

    let last_index = s.last_index().unwrap();

    // the last three entries should be: ConfChange cc1, cc1, cc2
    let entries = s.entries(last_index - 2, last_index + 1, NO_LIMIT).unwrap();
    assert_eq!(entries.len(), 3, "len(entries)");
    assert_eq!(entries[0].data, ccdata1, "entries[0].Data");
    assert_eq!(entries[2].data, ccdata2, "entries[2].Data");
}

/// A node starts correctly, and accepts and commits proposals.
#[test]
fn test_raw_node_start_2ac() {
    let storage = MemStorage::new();
    let mut raw_node = new_raw_node(1, vec![1], &storage);
    let _ = raw_node.campaign();
    let rd = raw_node.ready();
    storage.wl().append(&rd.entries).unwrap();
    raw_node.advance(rd);

    let _ = raw_node.propose(b"foo".to_vec());
    let rd = raw_node.ready();
    let el = rd.entries.len();
    assert!(
        el == rd.committed_entries.len() && el == 1,
        "got len(Entries): {el}, len(CommittedEntries): {}, want 1",
        rd.committed_entries.len()
    );
    assert!(
        rd.entries[0].data == rd.committed_entries[0].data && rd.entries[0].data == b"foo",
        "got {:?} {:?}, want {:?}",
        rd.entries[0].data,
        rd.committed_entries[0].data,
        b"foo"
    );
    storage.wl().append(&rd.entries).unwrap();
    raw_node.advance(rd);

    assert!(
        !raw_node.has_ready(),
        "unexpected Ready: {:?}",
        raw_node.ready()
    );
}

/// A restarted node's first Ready holds only the committed entries not yet applied; then nothing
/// is ready.
#[test]
fn test_raw_node_restart_2ac() {
    let entries = vec![new_entry(1, 1), entry_with_data(2, 1, b"foo")];
    let st = HardState {
        term: 1,
        commit: 1,
        ..Default::default()
    };

    // Go compares the whole Ready with reflect.DeepEqual: every field we have beyond TinyKV's
    // (`read_states`, `must_sync`) is expected at its default too.
    let want = Ready {
        entries: vec![],
        // commit up to commit index in st
        committed_entries: entries[..st.commit as usize].to_vec(),
        ..Default::default()
    };

    let storage = MemStorage::new();
    storage.wl().set_hard_state(st);
    storage.wl().append(&entries).unwrap();
    let mut raw_node = new_raw_node(1, vec![], &storage);
    let rd = raw_node.ready();
    assert_eq!(rd, want);
    raw_node.advance(rd);
    assert!(
        !raw_node.has_ready(),
        "unexpected Ready: {:?}",
        raw_node.ready()
    );
}

/// A node restarted from a snapshot plus one entry: the first Ready holds only the committed
/// entry after the snapshot; then nothing is ready.
#[test]
fn test_raw_node_restart_from_snapshot_2c() {
    let snap = Snapshot {
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState { nodes: vec![1, 2] }),
            index: 2,
            term: 1,
        }),
        ..Default::default()
    };
    let entries: Vec<Entry> = vec![entry_with_data(3, 1, b"foo")];
    let st = HardState {
        term: 1,
        commit: 3,
        ..Default::default()
    };

    // As in the restart test, the fields beyond TinyKV's Ready are expected at their defaults.
    let want = Ready {
        entries: vec![],
        // commit up to commit index in st
        committed_entries: entries.clone(),
        ..Default::default()
    };

    let s = MemStorage::new();
    s.wl().set_hard_state(st);
    s.wl().apply_snapshot(snap).unwrap();
    s.wl().append(&entries).unwrap();
    let mut raw_node = new_raw_node(1, vec![], &s);
    let rd = raw_node.ready();
    assert_eq!(rd, want);
    raw_node.advance(rd);
    assert!(
        !raw_node.has_ready(),
        "unexpected Ready: {}",
        raw_node.has_ready()
    );
}

/// `propose_batch` appends its entries together, in order, and sends each follower in the
/// replicate state one MsgAppend with all of them, where `propose` sends one per entry. (Our own
/// test, for our own API: no stage suffix.)
#[test]
fn test_raw_node_propose_batch() {
    let storage = MemStorage::new();
    let mut rn = new_raw_node(1, vec![1, 2, 3], &storage);
    rn.raft.become_candidate();
    rn.raft.become_leader();
    let persist = |rn: &mut RawNode<MemStorage>| {
        let rd = rn.ready();
        storage.wl().append(&rd.entries).unwrap();
        let msgs = rd.messages.clone();
        let entries = rd.entries.clone();
        rn.advance(rd);
        (entries, msgs)
    };
    persist(&mut rn);
    let noop = rn.raft.raft_log.last_index();
    for id in [2, 3] {
        let mut m = new_message(id, 1, MessageType::MsgAppendResponse);
        m.term = rn.raft.term;
        m.index = noop;
        rn.step(m).unwrap();
    }
    persist(&mut rn);

    let data: Vec<Vec<u8>> = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
    rn.propose_batch(data.clone()).unwrap();
    let (entries, msgs) = persist(&mut rn);
    assert_eq!(
        entries.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        data
    );
    let indexes: Vec<u64> = entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, vec![noop + 1, noop + 2, noop + 3]);
    assert!(entries.iter().all(|e| e.term == rn.raft.term));
    let appends: Vec<&Message> = msgs
        .iter()
        .filter(|m| m.msg_type() == MessageType::MsgAppend)
        .collect();
    let mut to: Vec<u64> = appends.iter().map(|m| m.to).collect();
    to.sort_unstable();
    assert_eq!(to, vec![2, 3], "one MsgAppend per follower: {appends:?}");
    for m in &appends {
        assert_eq!(m.entries.len(), 3);
        assert_eq!(m.index, noop);
    }

    // One by one: a MsgAppend per entry and follower.
    rn.propose(b"x".to_vec()).unwrap();
    rn.propose(b"y".to_vec()).unwrap();
    let (_, msgs) = persist(&mut rn);
    let appends = msgs
        .iter()
        .filter(|m| m.msg_type() == MessageType::MsgAppend)
        .count();
    assert_eq!(appends, 4);

    assert!(rn.propose_batch(Vec::new()).is_err(), "an empty batch");
    assert_eq!(rn.raft.raft_log.last_index(), noop + 5);
}

/// A Ready that installs a snapshot must be synced before its messages leave, even when term,
/// vote and entries are unchanged: its messages carry the follower's acknowledgement of the
/// snapshot, and the leader counts that index as matched. Were the snapshot lost in a crash, the
/// follower could restart with an older, uncommitted entry at that index and be told it is
/// committed. (Our own test, not one of TinyKV's: no stage suffix.)
#[test]
fn test_raw_node_snapshot_ready_must_sync() {
    let s = MemStorage::new_with_conf_state(vec![1, 2]);
    // A follower that voted for 2 in term 2 and already holds an uncommitted entry at index 2.
    s.wl()
        .append(&[new_entry(1, 1), entry_with_data(2, 1, b"old")])
        .unwrap();
    s.wl().set_hard_state(HardState {
        term: 2,
        vote: 2,
        commit: 1,
    });
    let mut raw_node = new_raw_node(1, vec![], &s);
    // The restarted node applies its committed entry 1.
    let rd = raw_node.ready();
    assert_eq!(rd.committed_entries, vec![new_entry(1, 1)]);
    raw_node.advance(rd);
    assert!(!raw_node.has_ready());

    // The leader of term 2 sends a snapshot at index 5.
    let mut m = new_message(2, 1, MessageType::MsgSnapshot);
    m.term = 2;
    m.snapshot = Some(Snapshot {
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState { nodes: vec![1, 2] }),
            index: 5,
            term: 2,
        }),
        ..Default::default()
    });
    raw_node.step(m).unwrap();

    let rd = raw_node.ready();
    assert!(rd.snapshot.is_some(), "the Ready installs the snapshot");
    assert!(rd.entries.is_empty(), "no new entries");
    let hs = rd
        .hard_state
        .expect("the commit index moved to the snapshot");
    assert_eq!((hs.term, hs.vote, hs.commit), (2, 2, 5));
    let ack = rd
        .messages
        .iter()
        .find(|m| m.msg_type() == MessageType::MsgAppendResponse && m.to == 2)
        .expect("the Ready acknowledges the snapshot");
    assert!(!ack.reject);
    assert_eq!(ack.index, 5, "the ack claims index 5 as matched");
    assert!(
        rd.must_sync,
        "a Ready with a snapshot must be synced before its acknowledgement is sent"
    );
}

/// A granted vote is in the hard state a Ready hands over for saving, and a node restarted from
/// what was saved keeps it: asked in the same term by another candidate, it refuses. A vote left
/// out of the saved state lets a restarted node vote twice in one term, and two leaders be
/// elected in it. (Our own test, not one of TinyKV's: no stage suffix.)
#[test]
fn test_raw_node_vote_survives_a_restart() {
    let s = MemStorage::new_with_conf_state(vec![1, 2, 3]);
    let mut raw_node = new_raw_node(1, vec![], &s);
    let vote_request = |from: u64| {
        let mut m = new_message(from, 1, MessageType::MsgRequestVote);
        m.term = 2;
        m
    };
    raw_node.step(vote_request(2)).unwrap();
    let rd = raw_node.ready();
    let granted = rd
        .messages
        .iter()
        .find(|m| m.to == 2 && m.msg_type() == MessageType::MsgRequestVoteResponse)
        .expect("an answer to candidate 2");
    assert!(
        !granted.reject,
        "the first candidate of term 2 gets the vote"
    );
    let hs = rd.hard_state.expect("a vote changes the hard state");
    assert_eq!((hs.term, hs.vote), (2, 2), "the hard state to save");
    s.wl().set_hard_state(hs);
    s.wl().append(&rd.entries).unwrap();
    raw_node.advance(rd);

    // A crash, then a restart from what was saved.
    let mut restarted = new_raw_node(1, vec![], &s);
    assert_eq!(restarted.raft.vote, 2, "the vote was restored");
    restarted.step(vote_request(3)).unwrap();
    let rd = restarted.ready();
    let answer = rd
        .messages
        .iter()
        .find(|m| m.to == 3 && m.msg_type() == MessageType::MsgRequestVoteResponse)
        .expect("an answer to candidate 3");
    assert!(answer.reject, "a second vote in term 2, after a restart");
}

/// A follower of term 1 whose log holds entries 1 and 2 and, at 3, the removal of node 1 (the
/// leader), with only entry 1 committed and applied.
fn follower_with_a_pending_removal() -> (MemStorage, RawNode<MemStorage>) {
    let s = MemStorage::new_with_conf_state(vec![1, 2, 3]);
    let mut cc = ConfChange {
        node_id: 1,
        ..Default::default()
    };
    cc.set_change_type(ConfChangeType::RemoveNode);
    let mut removal = Entry {
        index: 3,
        term: 1,
        data: cc.encode_to_vec(),
        ..Default::default()
    };
    removal.set_entry_type(EntryType::EntryConfChange);
    s.wl()
        .append(&[new_entry(1, 1), new_entry(2, 1), removal])
        .unwrap();
    s.wl().set_hard_state(HardState {
        term: 1,
        vote: 1,
        commit: 1,
    });
    let mut cfg = new_test_config(2, vec![], 10, 1);
    cfg.applied = 1;
    let raw_node = RawNode::new(&cfg, s.clone(), &default_logger()).expect("new raw node");
    (s, raw_node)
}

/// The MsgTimeoutNow a leader that removed itself sends its successor: term 1, with the commit
/// index it may learn.
fn farewell(commit: u64) -> Message {
    let mut m = new_message(1, 2, MessageType::MsgTimeoutNow);
    m.term = 1;
    m.commit = commit;
    m
}

/// The nodes a Ready asks for votes.
fn vote_requests(rd: &Ready) -> Vec<u64> {
    rd.messages
        .iter()
        .filter(|m| m.msg_type() == MessageType::MsgRequestVote)
        .map(|m| m.to)
        .collect()
}

/// A leader that applied its own removal sends its successor a MsgTimeoutNow carrying what it
/// committed (raftstore's apply_change_peer): the successor learns the commit, and since that
/// commits a membership change it campaigns once the change is applied, under the new
/// membership (it asks node 3 only), not at once under the old one.
#[test]
fn test_raw_node_timeout_now_after_a_removal_campaigns_once_it_is_applied() {
    let (s, mut raw_node) = follower_with_a_pending_removal();
    raw_node.step(farewell(3)).unwrap();
    assert_eq!(raw_node.raft.raft_log.committed, 3, "the commit is learned");
    let rd = raw_node.ready();
    assert_eq!(
        vote_requests(&rd),
        Vec::<u64>::new(),
        "no campaign before the removal is applied"
    );
    let last = rd
        .committed_entries
        .last()
        .expect("entries 2 and 3 to apply");
    assert_eq!(last.index, 3);
    let cc = ConfChange::decode(&last.data[..]).unwrap();
    raw_node.apply_conf_change(&cc);
    s.wl().set_hard_state(rd.hard_state.unwrap());
    raw_node.advance(rd);

    assert_eq!(
        raw_node.raft.term, 2,
        "campaigned once the change was applied"
    );
    assert_eq!(
        vote_requests(&raw_node.ready()),
        vec![3],
        "votes asked under the new membership"
    );
}

/// A MsgTimeoutNow whose commit covers no membership change (or a transfer's, which carries
/// none): the commit is learned and the campaign starts at once.
#[test]
fn test_raw_node_timeout_now_campaigns_at_once_without_a_pending_change() {
    let (_s, mut raw_node) = follower_with_a_pending_removal();
    raw_node.step(farewell(2)).unwrap();
    assert_eq!(raw_node.raft.raft_log.committed, 2);
    assert_eq!(raw_node.raft.term, 2, "campaigned at once");
    assert_eq!(vote_requests(&raw_node.ready()), vec![1, 3]);
}
