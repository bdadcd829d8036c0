//! The test network and builders of TinyKV's `raft_test.go`: a set of nodes (or black holes) that
//! exchange messages synchronously, with drops, cuts, isolation and ignored message types.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{Deref, DerefMut};

use raft::eraftpb::{Entry, HardState, Message, MessageType};
use raft::{default_logger, Config, MemStorage, Raft, Storage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A node on the test network: a raft node, or a black hole that swallows everything.
pub struct Interface {
    pub raft: Option<Raft<MemStorage>>,
}

impl Interface {
    pub fn new(r: Raft<MemStorage>) -> Self {
        Interface { raft: Some(r) }
    }

    pub fn black_hole() -> Self {
        Interface { raft: None }
    }

    fn step(&mut self, m: Message) {
        if let Some(r) = &mut self.raft {
            let _ = r.step(m);
        }
    }

    fn read_messages(&mut self) -> Vec<Message> {
        match &mut self.raft {
            Some(r) => r.read_messages(),
            None => Vec::new(),
        }
    }
}

impl Deref for Interface {
    type Target = Raft<MemStorage>;
    fn deref(&self) -> &Raft<MemStorage> {
        self.raft.as_ref().expect("a black hole has no raft")
    }
}

impl DerefMut for Interface {
    fn deref_mut(&mut self) -> &mut Raft<MemStorage> {
        self.raft.as_mut().expect("a black hole has no raft")
    }
}

/// A black hole (TinyKV's `nopStepper`).
pub fn black_hole() -> Option<Interface> {
    Some(Interface::black_hole())
}

/// Wraps a raft for `Network::new`.
pub fn peer(r: Raft<MemStorage>) -> Option<Interface> {
    Some(Interface::new(r))
}

/// A filter over delivered messages: false drops the message.
pub type MsgHook = Box<dyn Fn(&Message) -> bool>;

/// A synchronous network of test nodes.
pub struct Network {
    pub peers: BTreeMap<u64, Interface>,
    pub storage: BTreeMap<u64, MemStorage>,
    dropm: HashMap<(u64, u64), f64>,
    ignorem: BTreeSet<i32>,
    /// Called on every message that passed the other filters; false drops it.
    pub msg_hook: Option<MsgHook>,
    rng: ChaCha8Rng,
}

impl Network {
    /// Nodes 1..=n by position: `None` is a new node with a fresh storage, election tick 10 and
    /// heartbeat tick 1, whose peers are all n nodes; otherwise the given black hole or node. A
    /// given node gets its position as id and is otherwise left as built: its peers, term and log
    /// are its own.
    pub fn new(peers: Vec<Option<Interface>>) -> Network {
        Network::new_with_config(None, peers)
    }

    /// Like `new`, with `config_fn` adjusting the config of each new node.
    pub fn new_with_config(
        config_fn: Option<&dyn Fn(&mut Config)>,
        peers: Vec<Option<Interface>>,
    ) -> Network {
        let size = peers.len();
        let ids = ids_by_size(size);
        let mut npeers = BTreeMap::new();
        let mut nstorage = BTreeMap::new();
        for (p, id) in peers.into_iter().zip(ids.iter().copied()) {
            match p {
                None => {
                    let s = MemStorage::new();
                    let mut c = new_test_config(id, ids.clone(), 10, 1);
                    if let Some(f) = config_fn {
                        f(&mut c);
                    }
                    let r = Raft::new(&c, s.clone(), &default_logger()).expect("new raft");
                    nstorage.insert(id, s);
                    npeers.insert(id, Interface::new(r));
                }
                Some(mut iface) => {
                    // Only the id is set, as TinyKV's `newNetworkWithConfig` does: the raft keeps
                    // the peers, term and log it was built with.
                    if let Some(r) = &mut iface.raft {
                        r.id = id;
                        nstorage.insert(id, r.raft_log.store.clone());
                    }
                    npeers.insert(id, iface);
                }
            }
        }
        Network {
            peers: npeers,
            storage: nstorage,
            dropm: HashMap::new(),
            ignorem: BTreeSet::new(),
            msg_hook: None,
            rng: ChaCha8Rng::seed_from_u64(42),
        }
    }

    /// Delivers the messages and everything they cause, until the network is quiet.
    pub fn send(&mut self, msgs: Vec<Message>) {
        let mut queue: std::collections::VecDeque<Message> = msgs.into();
        while let Some(m) = queue.pop_front() {
            let p = self
                .peers
                .get_mut(&m.to)
                .expect("message to an unknown node");
            p.step(m);
            let out = p.read_messages();
            queue.extend(self.filter(out));
        }
    }

    /// Drops messages from `from` to `to` with probability `perc`.
    pub fn drop(&mut self, from: u64, to: u64, perc: f64) {
        self.dropm.insert((from, to), perc);
    }

    /// Drops every message between `one` and `other`.
    pub fn cut(&mut self, one: u64, other: u64) {
        self.drop(one, other, 2.0);
        self.drop(other, one, 2.0);
    }

    /// Drops every message to and from `id`.
    pub fn isolate(&mut self, id: u64) {
        for i in 0..self.peers.len() as u64 {
            let nid = i + 1;
            if nid != id {
                self.drop(id, nid, 1.0);
                self.drop(nid, id, 1.0);
            }
        }
    }

    /// Drops every message of type `t`.
    pub fn ignore(&mut self, t: MessageType) {
        self.ignorem.insert(t as i32);
    }

    /// Clears drops and ignores.
    pub fn recover(&mut self) {
        self.dropm.clear();
        self.ignorem.clear();
    }

    fn filter(&mut self, msgs: Vec<Message>) -> Vec<Message> {
        let mut out = Vec::new();
        for m in msgs {
            if self.ignorem.contains(&m.msg_type) {
                continue;
            }
            assert_ne!(
                m.msg_type(),
                MessageType::MsgHup,
                "unexpected MsgHup on the network"
            );
            let perc = self.dropm.get(&(m.from, m.to)).copied().unwrap_or(0.0);
            if perc > 0.0 && self.rng.random::<f64>() < perc {
                continue;
            }
            if let Some(hook) = &self.msg_hook {
                if !hook(&m) {
                    continue;
                }
            }
            out.push(m);
        }
        out
    }
}

/// Ids 1..=size.
pub fn ids_by_size(size: usize) -> Vec<u64> {
    (1..=size as u64).collect()
}

/// TinyKV's `newTestConfig`.
pub fn new_test_config(id: u64, peers: Vec<u64>, election: usize, heartbeat: usize) -> Config {
    Config {
        id,
        peers,
        election_tick: election,
        heartbeat_tick: heartbeat,
        ..Default::default()
    }
}

/// TinyKV's `newTestRaft`.
pub fn new_test_raft(
    id: u64,
    peers: Vec<u64>,
    election: usize,
    heartbeat: usize,
    storage: MemStorage,
) -> Raft<MemStorage> {
    let c = new_test_config(id, peers, election, heartbeat);
    Raft::new(&c, storage, &default_logger()).expect("new raft")
}

/// A message with the given endpoints and type.
pub fn new_message(from: u64, to: u64, t: MessageType) -> Message {
    let mut m = Message {
        from,
        to,
        ..Default::default()
    };
    m.set_msg_type(t);
    m
}

/// A message carrying `n` entries with data "somedata".
pub fn new_message_with_entries(from: u64, to: u64, t: MessageType, n: usize) -> Message {
    let mut m = new_message(from, to, t);
    m.entries = (0..n)
        .map(|_| Entry {
            data: b"somedata".to_vec(),
            ..Default::default()
        })
        .collect();
    m
}

/// An entry of the given index and term.
pub fn new_entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
}

/// An entry of the given index and term with data.
pub fn entry_with_data(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec(),
        ..Default::default()
    }
}

/// TinyKV's `entsWithConfig`: a node whose storage holds entries 1.. with the given terms, at the
/// last term.
pub fn ents_with_config(
    config_fn: Option<&dyn Fn(&mut Config)>,
    id: u64,
    terms: &[u64],
) -> Raft<MemStorage> {
    let s = MemStorage::new();
    let ents: Vec<Entry> = terms
        .iter()
        .enumerate()
        .map(|(i, &t)| new_entry(i as u64 + 1, t))
        .collect();
    s.wl().append(&ents).unwrap();
    let mut c = new_test_config(id, vec![], 5, 1);
    if let Some(f) = config_fn {
        f(&mut c);
    }
    let mut r = Raft::new(&c, s, &default_logger()).expect("new raft");
    r.term = terms.last().copied().unwrap_or(0);
    r
}

/// TinyKV's `votedWithConfig`: a node that voted for `vote` in `term`, with an empty log.
pub fn voted_with_config(
    config_fn: Option<&dyn Fn(&mut Config)>,
    id: u64,
    vote: u64,
    term: u64,
) -> Raft<MemStorage> {
    let s = MemStorage::new();
    s.wl().set_hard_state(HardState {
        term,
        vote,
        commit: 0,
    });
    let mut c = new_test_config(id, vec![], 5, 1);
    if let Some(f) = config_fn {
        f(&mut c);
    }
    let mut r = Raft::new(&c, s, &default_logger()).expect("new raft");
    r.term = term;
    r
}

/// TinyKV's `nextEnts`: persists the unstable entries into `s`, then returns the committed entries
/// not applied and marks them applied.
pub fn next_ents(r: &mut Raft<MemStorage>, s: &MemStorage) -> Vec<Entry> {
    let unstable = r.raft_log.unstable_entries().to_vec();
    s.wl().append(&unstable).unwrap();
    if let Some(last) = unstable.last() {
        r.raft_log.stable_to(last.index, last.term);
    }
    let ents = r.raft_log.next_entries();
    let committed = r.raft_log.committed;
    r.raft_log.applied_to(committed);
    ents
}

/// TinyKV's `ltoa`: the committed and applied indexes and every entry, as text.
pub fn ltoa<T: Storage>(l: &raft::RaftLog<T>) -> String {
    let mut s = format!("committed: {}\napplied:  {}\n", l.committed, l.applied);
    for (i, e) in l.all_entries().iter().enumerate() {
        s += &format!("#{}: {:?}\n", i, e);
    }
    s
}

/// TinyKV's `commitNoopEntry`: the leader replicates its no-op to everyone, which acks it, and the
/// entries are persisted and applied.
pub fn commit_noop_entry(r: &mut Raft<MemStorage>, s: &MemStorage) {
    assert_eq!(
        r.state,
        raft::StateRole::Leader,
        "it should only be used when it is the leader"
    );
    r.bcast_append();
    // simulate the response of MsgAppend
    let msgs = r.read_messages();
    for m in msgs {
        assert!(
            m.msg_type() == MessageType::MsgAppend
                && m.entries.len() == 1
                && m.entries[0].data.is_empty(),
            "not a message to append noop entry"
        );
        r.step(accept_and_reply(&m)).unwrap();
    }
    // ignore further messages to refresh followers' commit index
    r.read_messages();
    let unstable = r.raft_log.unstable_entries().to_vec();
    s.wl().append(&unstable).unwrap();
    let committed = r.raft_log.committed;
    r.raft_log.applied_to(committed);
    let (li, lt) = (r.raft_log.last_index(), r.raft_log.last_term());
    r.raft_log.stable_to(li, lt);
}

/// TinyKV's `acceptAndReply`: the accepting response to a MsgAppend.
pub fn accept_and_reply(m: &Message) -> Message {
    assert_eq!(
        m.msg_type(),
        MessageType::MsgAppend,
        "type should be MsgAppend"
    );
    let mut r = new_message(m.to, m.from, MessageType::MsgAppendResponse);
    r.term = m.term;
    r.index = m.index + m.entries.len() as u64;
    r
}

/// Messages sorted by their debug text (TinyKV's `messageSlice`), for order-free comparison.
pub fn sorted_messages(mut msgs: Vec<Message>) -> Vec<Message> {
    msgs.sort_by_key(|m| format!("{m:?}"));
    msgs
}
