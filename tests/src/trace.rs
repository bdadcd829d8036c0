//! The simulator's tracer: what a traced run records (the format is `tinykv_trace::record`).
//! The simulator calls it at each thing it does (a message sent, delivered or dropped, a
//! command and its answer, a crash, a restart, a filter, a snapshot's steps) and, after each
//! event a store handled, [`Tracer::observe`] reads that store's replicas (role, term, leader,
//! commit and applied index, region) and records what changed. Observing only reads, and the
//! tracer draws no random number, so a traced run is the same run as an untraced one: the same
//! digest, and the same trace on every replay.
//!
//! Which runs are traced ([`TraceTarget`]): every run when `TINYKV_TRACE=PATH` is set; else a
//! failing seed is run again, traced, into `<target dir>/tinykv-traces/`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use proto::eraftpb::MessageType;
use proto::raft_cmdpb::{CmdType, RaftCmdRequest};
use proto::raft_serverpb::{RaftApplyState, RaftLocalState, RaftMessage};
use raftstore::engine::mem::MemEngine;
use raftstore::engine::{Engine, Engines, CF_DEFAULT, CF_RAFT};
use raftstore::{keys, Store};
use tinykv_trace::record::{
    self, push_term, Apply, ClientEnd, ClientStart, Commit, Crash, Deliver, Drop, Kind, Lost, Note,
    Role, Send, Start,
};
use tinykv_trace::{hash64, TraceWriter};

/// What the tracer last saw of one replica.
#[derive(Clone, PartialEq, Eq)]
struct Seen {
    peer: u64,
    role: u32,
    term: u64,
    leader: u64,
    vote: u64,
    commit: u64,
    applied: u64,
    region: (Vec<u8>, Vec<u8>, u64, u64, Vec<u64>),
}

/// Answers to traced commands, pushed by their callbacks (which may run anywhere) and recorded
/// by the simulator after the event that produced them.
pub type Answers = Arc<Mutex<Vec<(u64, String)>>>;

/// A run's trace while it is being recorded.
pub struct Tracer {
    w: TraceWriter,
    seen: BTreeMap<(u64, u64), Seen>,
    answers: Answers,
}

/// The role numbers of the trace (`record::Role::role`).
fn role_number(r: raft::StateRole) -> u32 {
    match r {
        raft::StateRole::Follower => 0,
        raft::StateRole::Candidate => 1,
        raft::StateRole::Leader => 2,
        raft::StateRole::PreCandidate => 3,
    }
}

/// A key as a trace shows it: printable bytes as they are, others escaped.
pub fn show_key(key: &[u8]) -> String {
    key.iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}

/// A command in a few words: `put k1`, `get k1`, `snap`, `admin Split`, ...
pub fn describe_command(req: &RaftCmdRequest) -> String {
    if let Some(a) = &req.admin_request {
        let mut s = format!("admin {}", a.cmd_type().as_str_name());
        if let Some(cp) = &a.change_peer {
            let p = cp.peer.unwrap_or_default();
            s += &format!(
                " {} peer {} on store {}",
                cp.change_type().as_str_name(),
                p.id,
                p.store_id
            );
        }
        if let Some(t) = &a.transfer_leader {
            s += &format!(" to peer {}", t.peer.unwrap_or_default().id);
        }
        if let Some(sp) = &a.split {
            s += &format!(
                " at {} as region {}",
                show_key(&sp.split_key),
                sp.new_region_id
            );
        }
        if let Some(c) = &a.compact_log {
            s += &format!(" to {}", c.compact_index);
        }
        return s;
    }
    let parts: Vec<String> = req
        .requests
        .iter()
        .map(|r| match r.cmd_type() {
            CmdType::Put => format!("put {}", show_key(&r.put.clone().unwrap_or_default().key)),
            CmdType::Get => format!("get {}", show_key(&r.get.clone().unwrap_or_default().key)),
            CmdType::Delete => format!(
                "delete {}",
                show_key(&r.delete.clone().unwrap_or_default().key)
            ),
            CmdType::Snap => "snap".to_string(),
            other => other.as_str_name().to_lowercase(),
        })
        .collect();
    if parts.is_empty() {
        "empty command".into()
    } else {
        parts.join(", ")
    }
}

impl Tracer {
    /// A trace of `scenario`'s `seed` on `stores`; `replay` is the command that replays it.
    pub fn new(scenario: &str, seed: u64, stores: Vec<u64>, replay: String) -> Tracer {
        let mut w = TraceWriter::new();
        w.record(
            Duration::ZERO,
            Kind::Header(record::Header {
                scenario: scenario.to_string(),
                seed,
                stores,
                replay,
            }),
        );
        Tracer {
            w,
            seen: BTreeMap::new(),
            answers: Arc::default(),
        }
    }

    /// Records `kind` at `at`.
    pub fn record(&mut self, at: Duration, kind: Kind) {
        self.w.record(at, kind)
    }

    /// Records a raft message leaving a store; returns its id (for its delivery or loss).
    pub fn send(&mut self, at: Duration, msg: &RaftMessage) -> u64 {
        let id = self.w.next_id();
        let m = msg.message.clone().unwrap_or_default();
        let epoch = msg.region_epoch.unwrap_or_default();
        let (from, to) = (
            msg.from_peer.unwrap_or_default(),
            msg.to_peer.unwrap_or_default(),
        );
        self.w.record(
            at,
            Kind::Send(Send {
                id,
                region: msg.region_id,
                from_store: from.store_id,
                to_store: to.store_id,
                from_peer: from.id,
                to_peer: to.id,
                msg_type: m.msg_type,
                term: m.term,
                log_term: m.log_term,
                index: m.index,
                entries: m.entries.len() as u32,
                commit: m.commit,
                reject: m.reject,
                snapshot_index: m
                    .snapshot
                    .as_ref()
                    .and_then(|s| s.metadata.as_ref())
                    .map_or(0, |md| md.index),
                version: epoch.version,
                conf_ver: epoch.conf_ver,
                hash: hash64(&msg.encode_to_vec()),
            }),
        );
        id
    }

    /// Records that message `id` reached its store.
    pub fn deliver(&mut self, at: Duration, id: u64) {
        self.w.record(at, Kind::Deliver(Deliver { id }));
    }

    /// Records that message `id` was lost, and why.
    pub fn drop_msg(&mut self, at: Duration, id: u64, reason: &str) {
        self.w.record(
            at,
            Kind::Drop(Drop {
                id,
                reason: reason.to_string(),
            }),
        );
    }

    /// Records a command reaching `store`; returns its id, and where its callback must push the
    /// answer.
    pub fn command(&mut self, at: Duration, store: u64, req: &RaftCmdRequest) -> (u64, Answers) {
        let id = self.w.next_id();
        let h = req.header.unwrap_or_default();
        self.w.record(
            at,
            Kind::Command(record::Command {
                id,
                store,
                region: h.region_id,
                peer: h.peer.map_or(0, |p| p.id),
                what: describe_command(req),
            }),
        );
        (id, self.answers.clone())
    }

    /// Records the answers pushed since the last call.
    pub fn drain_answers(&mut self, at: Duration) {
        let answers = std::mem::take(&mut *self.answers.lock().unwrap());
        for (id, error) in answers {
            self.w
                .record(at, Kind::Response(record::Response { id, error }));
        }
    }

    /// Records a test client's operation beginning; returns its id.
    pub fn client_start(&mut self, at: Duration, op: &str, key: &[u8]) -> u64 {
        let id = self.w.next_id();
        self.w.record(
            at,
            Kind::ClientStart(ClientStart {
                id,
                op: op.to_string(),
                key: key.to_vec(),
            }),
        );
        id
    }

    /// Records a test client's operation ending.
    pub fn client_end(&mut self, at: Duration, id: u64, ok: bool, detail: String) {
        self.w
            .record(at, Kind::ClientEnd(ClientEnd { id, ok, detail }));
    }

    /// Records a note.
    pub fn note(&mut self, at: Duration, store: u64, region: u64, text: String) {
        self.w.record(
            at,
            Kind::Note(Note {
                store,
                region,
                text,
            }),
        );
    }

    /// Records what changed in `store`'s replicas since it was last observed; `cause` says what
    /// the store was doing ("tick", "message", "round", ...).
    pub fn observe(
        &mut self,
        at: Duration,
        store_id: u64,
        store: &Store<MemEngine, MemEngine>,
        cause: &str,
    ) {
        let ids = store.region_ids();
        // Replicas gone since the last look: destroyed.
        let gone: Vec<u64> = self
            .seen
            .range((store_id, 0)..=(store_id, u64::MAX))
            .map(|(&(_, r), _)| r)
            .filter(|r| store.peer(*r).is_none())
            .collect();
        for region in gone {
            let old = self.seen.remove(&(store_id, region)).expect("seen");
            self.w.record(
                at,
                Kind::Region(record::Region {
                    store: store_id,
                    region,
                    peer: old.peer,
                    what: "destroyed".into(),
                    ..Default::default()
                }),
            );
        }
        for region in ids {
            let Some(peer) = store.peer(region) else {
                continue;
            };
            let raft = peer.raft();
            let r = peer.region();
            let epoch = r.region_epoch.unwrap_or_default();
            let members: Vec<u64> = r.peers.iter().flat_map(|p| [p.id, p.store_id]).collect();
            let now = Seen {
                peer: raft.id,
                role: role_number(raft.state),
                term: raft.term,
                leader: raft.lead,
                vote: raft.vote,
                commit: raft.raft_log.committed,
                applied: peer.storage().applied_index(),
                region: (
                    r.start_key.clone(),
                    r.end_key.clone(),
                    epoch.version,
                    epoch.conf_ver,
                    members.clone(),
                ),
            };
            let old = self.seen.get(&(store_id, region));
            if old == Some(&now) {
                continue;
            }
            let region_change = match old {
                None => Some("created"),
                Some(o) if o.region != now.region || o.peer != now.peer => Some("changed"),
                _ => None,
            };
            if let Some(what) = region_change {
                self.w.record(
                    at,
                    Kind::Region(record::Region {
                        store: store_id,
                        region,
                        peer: now.peer,
                        what: what.into(),
                        start_key: r.start_key.clone(),
                        end_key: r.end_key.clone(),
                        version: epoch.version,
                        conf_ver: epoch.conf_ver,
                        members,
                    }),
                );
            }
            let (o_role, o_term, o_leader, o_vote, o_commit, o_applied) = old
                .map_or((u32::MAX, 0, 0, 0, now.commit, now.applied), |o| {
                    (o.role, o.term, o.leader, o.vote, o.commit, o.applied)
                });
            if (o_role, o_term, o_leader, o_vote) != (now.role, now.term, now.leader, now.vote) {
                self.w.record(
                    at,
                    Kind::Role(Role {
                        store: store_id,
                        region,
                        peer: now.peer,
                        role: now.role,
                        term: now.term,
                        leader: now.leader,
                        vote: now.vote,
                        cause: cause.to_string(),
                        last_index: raft.raft_log.last_index(),
                    }),
                );
            }
            let terms = |from: u64, to: u64| {
                let mut runs = Vec::new();
                for i in from + 1..=to {
                    push_term(&mut runs, i, raft.raft_log.term(i).unwrap_or(0));
                }
                runs
            };
            if now.commit > o_commit {
                self.w.record(
                    at,
                    Kind::Commit(Commit {
                        store: store_id,
                        region,
                        peer: now.peer,
                        from: o_commit,
                        to: now.commit,
                        terms: terms(o_commit, now.commit),
                    }),
                );
            }
            if now.applied > o_applied {
                let runs = terms(o_applied, now.applied);
                let snapshot = cause == "snapshot applied" || runs.chunks(2).all(|p| p[1] == 0);
                self.w.record(
                    at,
                    Kind::Apply(Apply {
                        store: store_id,
                        region,
                        peer: now.peer,
                        from: o_applied,
                        to: now.applied,
                        terms: if snapshot { Vec::new() } else { runs },
                        snapshot,
                    }),
                );
            }
            self.seen.insert((store_id, region), now);
        }
    }

    /// Before a crash of `store`: each replica's raft state in memory.
    pub fn before_crash(store: &Store<MemEngine, MemEngine>) -> Vec<Lost> {
        store
            .region_ids()
            .into_iter()
            .filter_map(|id| store.peer(id).map(|p| (id, p)))
            .map(|(region, p)| {
                let raft = p.raft();
                Lost {
                    region,
                    peer: raft.id,
                    last_index: raft.raft_log.last_index(),
                    term: raft.term,
                    vote: raft.vote,
                    commit: raft.raft_log.committed,
                    applied: p.storage().applied_index(),
                    ..Default::default()
                }
            })
            .collect()
    }

    /// Records a crash of `store`: `lost` (from [`Tracer::before_crash`]) completed with what
    /// its engines kept. Forgets what it saw of the store (a restart shows every replica anew).
    pub fn crash(
        &mut self,
        at: Duration,
        store: u64,
        unsynced_batches: u64,
        mut lost: Vec<Lost>,
        engines: &Engines<MemEngine, MemEngine>,
    ) {
        for l in &mut lost {
            let raft_state: Option<RaftLocalState> = engines
                .raft
                .get_msg_cf(CF_DEFAULT, &keys::raft_state_key(l.region))
                .ok()
                .flatten();
            if let Some(st) = raft_state {
                let hs = st.hard_state.unwrap_or_default();
                l.durable_last_index = st.last_index;
                l.durable_term = hs.term;
                l.durable_vote = hs.vote;
                l.durable_commit = hs.commit;
            }
            let apply: Option<RaftApplyState> = engines
                .kv
                .get_msg_cf(CF_RAFT, &keys::apply_state_key(l.region))
                .ok()
                .flatten();
            l.durable_applied = apply.map_or(0, |a| a.applied_index);
        }
        self.w.record(
            at,
            Kind::Crash(Crash {
                store,
                unsynced_batches,
                lost,
            }),
        );
        let keys: Vec<(u64, u64)> = self
            .seen
            .range((store, 0)..=(store, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.seen.remove(&k);
        }
    }

    /// Records a filter installed (`added`, with the stores of each side of a cut), or every
    /// filter removed.
    pub fn filter(&mut self, at: Duration, added: bool, text: String, sides: Vec<u64>) {
        self.w
            .record(at, Kind::Filter(record::Filter { added, text, sides }));
    }

    /// Records a store's start.
    pub fn start(&mut self, at: Duration, store: u64) {
        self.w.record(at, Kind::Start(Start { store }));
    }

    /// Ends the trace: the failure if the run failed, then the footer with the run's digest.
    pub fn finish(
        mut self,
        at: Duration,
        digest: u64,
        failure: Option<record::Failure>,
    ) -> Vec<u8> {
        self.drain_answers(at);
        if let Some(f) = failure {
            self.w.record(at, Kind::Failure(f));
        }
        self.w.finish(at, digest)
    }
}

/// A region error in a few words (as a trace records a command's answer).
pub fn describe_region_error(e: &proto::errorpb::Error) -> String {
    if let Some(nl) = &e.not_leader {
        return match &nl.leader {
            Some(p) => format!("not leader (leader: peer {} on store {})", p.id, p.store_id),
            None => "not leader (no leader known)".into(),
        };
    }
    if e.stale_command.is_some() {
        return "stale command".into();
    }
    if e.epoch_not_match.is_some() {
        return "epoch not match".into();
    }
    if let Some(r) = &e.region_not_found {
        return format!("region {} not found", r.region_id);
    }
    if let Some(k) = &e.key_not_in_region {
        return format!("key {} not in region {}", show_key(&k.key), k.region_id);
    }
    if e.message.is_empty() {
        "region error".into()
    } else {
        e.message.clone()
    }
}

/// A scheduler operator reaching a store, in a few words.
pub fn describe_operator(resp: &proto::schedulerpb::RegionHeartbeatResponse) -> String {
    if let Some(cp) = &resp.change_peer {
        let p = cp.peer.unwrap_or_default();
        return format!(
            "scheduler: {} peer {} on store {}",
            cp.change_type().as_str_name(),
            p.id,
            p.store_id
        );
    }
    if let Some(t) = &resp.transfer_leader {
        return format!(
            "scheduler: transfer leader to peer {}",
            t.peer.unwrap_or_default().id
        );
    }
    "scheduler: an answer with no operator".into()
}

/// The name of a raft message type as traces and timelines show it (`MsgAppend`).
pub fn msg_type_name(t: i32) -> &'static str {
    MessageType::try_from(t).map_or("Unknown", |t| t.as_str_name())
}

/// Where the traces of a scenario's runs go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceTarget {
    /// `TINYKV_TRACE=PATH`: every run is traced; `PATH` ending in `.trace` is the file (with more
    /// than one seed, `-seed<n>` goes before the extension), else a directory.
    Always(PathBuf),
    /// A failing seed is run again, traced, into this directory.
    OnFailure(PathBuf),
}

impl TraceTarget {
    /// From `TINYKV_TRACE`, else the default: on failure, into `<target dir>/tinykv-traces`.
    pub fn from_env() -> TraceTarget {
        match std::env::var_os("TINYKV_TRACE").filter(|v| !v.is_empty()) {
            Some(p) => TraceTarget::Always(PathBuf::from(p)),
            None => TraceTarget::OnFailure(default_trace_dir()),
        }
    }

    /// The file of `scenario`'s `seed` (`several`: whether more than one seed runs).
    pub fn path(&self, scenario: &str, seed: u64, several: bool) -> PathBuf {
        let name = format!("{}-seed{seed}.trace", scenario.replace("::", "-"));
        match self {
            TraceTarget::Always(p) if p.extension().is_some_and(|e| e == "trace") => {
                if several {
                    let stem = p
                        .file_stem()
                        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
                    p.with_file_name(format!("{stem}-seed{seed}.trace"))
                } else {
                    p.clone()
                }
            }
            TraceTarget::Always(dir) | TraceTarget::OnFailure(dir) => dir.join(name),
        }
    }
}

/// `<target dir>/tinykv-traces`: the target dir is three levels above a test binary
/// (`target/debug/deps/test_2b-<hash>`); the temp dir if that cannot be found.
fn default_trace_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(|p| p.to_path_buf()))
        .unwrap_or_else(std::env::temp_dir)
        .join("tinykv-traces")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_paths() {
        let t = TraceTarget::Always(PathBuf::from("/tmp/x/run.trace"));
        assert_eq!(
            t.path("sim::a", 3, false),
            PathBuf::from("/tmp/x/run.trace")
        );
        assert_eq!(
            t.path("sim::a", 3, true),
            PathBuf::from("/tmp/x/run-seed3.trace")
        );
        let d = TraceTarget::Always(PathBuf::from("/tmp/x"));
        assert_eq!(
            d.path("sim::a", 3, true),
            PathBuf::from("/tmp/x/sim-a-seed3.trace")
        );
        assert!(default_trace_dir().ends_with("tinykv-traces"));
    }

    #[test]
    fn commands_are_described() {
        use proto::raft_cmdpb::{PutRequest, Request};
        let req = RaftCmdRequest {
            requests: vec![Request {
                cmd_type: CmdType::Put as i32,
                put: Some(PutRequest {
                    cf: String::new(),
                    key: b"k\x01".to_vec(),
                    value: b"v".to_vec(),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(describe_command(&req), "put k\\x01");
        assert_eq!(msg_type_name(MessageType::MsgAppend as i32), "MsgAppend");
    }
}
