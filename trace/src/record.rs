//! The records of a trace: one per thing that happened in a simulated run, in the order the
//! simulator did them, each stamped with the run's virtual time. They are protobuf messages
//! (prost), written length-delimited (see `file.rs`), so a trace is compact and a newer tool can
//! read an older trace (unknown fields and records are skipped).

/// One thing that happened, at virtual time `at_ns` (nanoseconds since the run began).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    /// Virtual time of the event, in nanoseconds.
    #[prost(uint64, tag = "1")]
    pub at_ns: u64,
    /// What happened.
    #[prost(
        oneof = "Kind",
        tags = "2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20"
    )]
    pub kind: Option<Kind>,
}

/// What a record says happened.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    /// The first record: which run this is.
    #[prost(message, tag = "2")]
    Header(Header),
    /// A raft message left a store.
    #[prost(message, tag = "3")]
    Send(Send),
    /// A message sent earlier reached its store.
    #[prost(message, tag = "4")]
    Deliver(Deliver),
    /// A message sent earlier was lost.
    #[prost(message, tag = "5")]
    Drop(Drop),
    /// A replica's raft role, term or known leader changed.
    #[prost(message, tag = "6")]
    Role(Role),
    /// A replica's commit index moved.
    #[prost(message, tag = "7")]
    Commit(Commit),
    /// A replica applied entries (or a snapshot).
    #[prost(message, tag = "8")]
    Apply(Apply),
    /// A command reached a store (a proposal, a read, an admin command).
    #[prost(message, tag = "9")]
    Command(Command),
    /// A store answered a command.
    #[prost(message, tag = "10")]
    Response(Response),
    /// A test client began an operation.
    #[prost(message, tag = "11")]
    ClientStart(ClientStart),
    /// A test client's operation ended.
    #[prost(message, tag = "12")]
    ClientEnd(ClientEnd),
    /// A store crashed: what its engines had not synced is gone.
    #[prost(message, tag = "13")]
    Crash(Crash),
    /// A store started (again) from its engines.
    #[prost(message, tag = "14")]
    Start(Start),
    /// A network filter was installed, or all were removed.
    #[prost(message, tag = "15")]
    Filter(Filter),
    /// A step of a snapshot's life: generated, sent, received, applied, or failed.
    #[prost(message, tag = "16")]
    Snapshot(Snapshot),
    /// A replica was created, changed its region (range, epoch, members) or was destroyed.
    #[prost(message, tag = "17")]
    Region(Region),
    /// The run failed: the check that did not hold.
    #[prost(message, tag = "18")]
    Failure(Failure),
    /// The last record of a complete trace.
    #[prost(message, tag = "19")]
    Footer(Footer),
    /// Anything else worth a line (e.g. a scheduler operator reaching a store).
    #[prost(message, tag = "20")]
    Note(Note),
}

/// Which run a trace is of.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Header {
    /// The scenario (test) name.
    #[prost(string, tag = "1")]
    pub scenario: String,
    /// The seed.
    #[prost(uint64, tag = "2")]
    pub seed: u64,
    /// The stores of the cluster.
    #[prost(uint64, repeated, tag = "3")]
    pub stores: Vec<u64>,
    /// The command that replays the run.
    #[prost(string, tag = "4")]
    pub replay: String,
}

/// A raft message that left `from_store` for `to_store`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Send {
    /// The message's number in this trace (a Deliver or Drop names it).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The region it belongs to.
    #[prost(uint64, tag = "2")]
    pub region: u64,
    /// Sending store.
    #[prost(uint64, tag = "3")]
    pub from_store: u64,
    /// Receiving store.
    #[prost(uint64, tag = "4")]
    pub to_store: u64,
    /// Sending peer.
    #[prost(uint64, tag = "5")]
    pub from_peer: u64,
    /// Receiving peer.
    #[prost(uint64, tag = "6")]
    pub to_peer: u64,
    /// `eraftpb::MessageType`.
    #[prost(int32, tag = "7")]
    pub msg_type: i32,
    /// The sender's term.
    #[prost(uint64, tag = "8")]
    pub term: u64,
    /// The log term the message names (of `index`).
    #[prost(uint64, tag = "9")]
    pub log_term: u64,
    /// The log index the message names.
    #[prost(uint64, tag = "10")]
    pub index: u64,
    /// How many entries it carries.
    #[prost(uint32, tag = "11")]
    pub entries: u32,
    /// The sender's commit index.
    #[prost(uint64, tag = "12")]
    pub commit: u64,
    /// A rejection (of a vote or an append).
    #[prost(bool, tag = "13")]
    pub reject: bool,
    /// The index of the snapshot it carries, if any.
    #[prost(uint64, tag = "14")]
    pub snapshot_index: u64,
    /// The region epoch's version and conf_ver the sender had.
    #[prost(uint64, tag = "15")]
    pub version: u64,
    /// See `version`.
    #[prost(uint64, tag = "16")]
    pub conf_ver: u64,
    /// A 64-bit hash of the message's bytes (two sends of one message have the same).
    #[prost(fixed64, tag = "17")]
    pub hash: u64,
}

/// Message `id` reached its store.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Deliver {
    /// The Send's id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

/// Message `id` was lost.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Drop {
    /// The Send's id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Why: "filter" (a partition or a random drop), "receiver down", ...
    #[prost(string, tag = "2")]
    pub reason: String,
}

/// A replica's raft state after a change of role, term or leader.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Role {
    /// Store.
    #[prost(uint64, tag = "1")]
    pub store: u64,
    /// Region.
    #[prost(uint64, tag = "2")]
    pub region: u64,
    /// Peer.
    #[prost(uint64, tag = "3")]
    pub peer: u64,
    /// 0 follower, 1 candidate, 2 leader, 3 pre-candidate.
    #[prost(uint32, tag = "4")]
    pub role: u32,
    /// Term.
    #[prost(uint64, tag = "5")]
    pub term: u64,
    /// The peer it knows as leader (0: none).
    #[prost(uint64, tag = "6")]
    pub leader: u64,
    /// The vote it cast in this term (0: none).
    #[prost(uint64, tag = "7")]
    pub vote: u64,
    /// What the store was doing when it changed: "tick" (an election timeout), "message", ...
    #[prost(string, tag = "8")]
    pub cause: String,
    /// Its last log index then.
    #[prost(uint64, tag = "9")]
    pub last_index: u64,
}

/// Runs of log terms: `(first index, term)` pairs, each run lasting until the next one's first
/// index (the last run until the record's `to`). A term of 0 means unknown (already compacted).
pub type TermRuns = Vec<u64>;

/// A replica's commit index moved from `from` to `to`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Commit {
    /// Store.
    #[prost(uint64, tag = "1")]
    pub store: u64,
    /// Region.
    #[prost(uint64, tag = "2")]
    pub region: u64,
    /// Peer.
    #[prost(uint64, tag = "3")]
    pub peer: u64,
    /// The commit index before.
    #[prost(uint64, tag = "4")]
    pub from: u64,
    /// The commit index now.
    #[prost(uint64, tag = "5")]
    pub to: u64,
    /// The terms of the entries `from + 1 ..= to` in the replica's log, as [`TermRuns`].
    #[prost(uint64, repeated, tag = "6")]
    pub terms: Vec<u64>,
}

/// A replica's applied index moved from `from` to `to`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Apply {
    /// Store.
    #[prost(uint64, tag = "1")]
    pub store: u64,
    /// Region.
    #[prost(uint64, tag = "2")]
    pub region: u64,
    /// Peer.
    #[prost(uint64, tag = "3")]
    pub peer: u64,
    /// The applied index before.
    #[prost(uint64, tag = "4")]
    pub from: u64,
    /// The applied index now.
    #[prost(uint64, tag = "5")]
    pub to: u64,
    /// The terms of the entries applied, as [`TermRuns`] (empty for a snapshot).
    #[prost(uint64, repeated, tag = "6")]
    pub terms: Vec<u64>,
    /// Whether a snapshot was installed (no entry applied one by one).
    #[prost(bool, tag = "7")]
    pub snapshot: bool,
}

/// A command reached a store.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Command {
    /// Its number in this trace (the Response names it).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Store.
    #[prost(uint64, tag = "2")]
    pub store: u64,
    /// Region.
    #[prost(uint64, tag = "3")]
    pub region: u64,
    /// The peer addressed.
    #[prost(uint64, tag = "4")]
    pub peer: u64,
    /// What it asks, in a few words (`put k1`, `get k1`, `snap`, `admin Split`, ...).
    #[prost(string, tag = "5")]
    pub what: String,
}

/// A store answered command `id`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    /// The Command's id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The region error, empty when it succeeded.
    #[prost(string, tag = "2")]
    pub error: String,
}

/// A test client began operation `id`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientStart {
    /// Its number in this trace.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// What it does (`put`, `get`, `delete`, `scan`, ...).
    #[prost(string, tag = "2")]
    pub op: String,
    /// The key it is routed by.
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
}

/// A test client's operation `id` ended.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientEnd {
    /// The ClientStart's id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Whether it succeeded.
    #[prost(bool, tag = "2")]
    pub ok: bool,
    /// How many tries it took, or why it failed.
    #[prost(string, tag = "3")]
    pub detail: String,
}

/// What a crash cost one replica: its raft state in memory just before, and on disk after.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Lost {
    /// Region.
    #[prost(uint64, tag = "1")]
    pub region: u64,
    /// Peer.
    #[prost(uint64, tag = "2")]
    pub peer: u64,
    /// Last log index in memory before the crash.
    #[prost(uint64, tag = "3")]
    pub last_index: u64,
    /// Last log index that survived.
    #[prost(uint64, tag = "4")]
    pub durable_last_index: u64,
    /// Term before.
    #[prost(uint64, tag = "5")]
    pub term: u64,
    /// Term that survived.
    #[prost(uint64, tag = "6")]
    pub durable_term: u64,
    /// Vote before.
    #[prost(uint64, tag = "7")]
    pub vote: u64,
    /// Vote that survived.
    #[prost(uint64, tag = "8")]
    pub durable_vote: u64,
    /// Commit index before.
    #[prost(uint64, tag = "9")]
    pub commit: u64,
    /// Commit index that survived.
    #[prost(uint64, tag = "10")]
    pub durable_commit: u64,
    /// Applied index before.
    #[prost(uint64, tag = "11")]
    pub applied: u64,
    /// Applied index that survived.
    #[prost(uint64, tag = "12")]
    pub durable_applied: u64,
}

/// A store crashed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Crash {
    /// Store.
    #[prost(uint64, tag = "1")]
    pub store: u64,
    /// Write batches of its engines that were not synced (lost).
    #[prost(uint64, tag = "2")]
    pub unsynced_batches: u64,
    /// Each replica's state before and after.
    #[prost(message, repeated, tag = "3")]
    pub lost: Vec<Lost>,
}

/// A store started.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Start {
    /// Store.
    #[prost(uint64, tag = "1")]
    pub store: u64,
}

/// A filter was installed (`added`), or every filter was removed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Filter {
    /// Installed (true) or all cleared (false).
    #[prost(bool, tag = "1")]
    pub added: bool,
    /// The filter, as its Debug shows it (e.g. a partition's two sides).
    #[prost(string, tag = "2")]
    pub text: String,
    /// For a partition: the stores of each side, side 1 then a 0 then side 2.
    #[prost(uint64, repeated, tag = "3")]
    pub sides: Vec<u64>,
}

/// A step of a snapshot.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Snapshot {
    /// The store where it happened.
    #[prost(uint64, tag = "1")]
    pub store: u64,
    /// The other store (sender or receiver), 0 if none.
    #[prost(uint64, tag = "2")]
    pub peer_store: u64,
    /// Region.
    #[prost(uint64, tag = "3")]
    pub region: u64,
    /// The snapshot's index.
    #[prost(uint64, tag = "4")]
    pub index: u64,
    /// The snapshot's term.
    #[prost(uint64, tag = "5")]
    pub term: u64,
    /// "generated", "transferred", "transfer failed", "applied", "apply failed".
    #[prost(string, tag = "6")]
    pub what: String,
}

/// A replica's region as it now knows it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Region {
    /// Store.
    #[prost(uint64, tag = "1")]
    pub store: u64,
    /// Region.
    #[prost(uint64, tag = "2")]
    pub region: u64,
    /// The replica's peer id.
    #[prost(uint64, tag = "3")]
    pub peer: u64,
    /// "created", "changed" or "destroyed".
    #[prost(string, tag = "4")]
    pub what: String,
    /// Start key.
    #[prost(bytes = "vec", tag = "5")]
    pub start_key: Vec<u8>,
    /// End key (empty: unbounded).
    #[prost(bytes = "vec", tag = "6")]
    pub end_key: Vec<u8>,
    /// Epoch version (splits).
    #[prost(uint64, tag = "7")]
    pub version: u64,
    /// Epoch conf_ver (membership changes).
    #[prost(uint64, tag = "8")]
    pub conf_ver: u64,
    /// Members as `peer id, store id` pairs.
    #[prost(uint64, repeated, tag = "9")]
    pub members: Vec<u64>,
}

/// The run failed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Failure {
    /// The panic message: which check failed, with what.
    #[prost(string, tag = "1")]
    pub message: String,
    /// Where (`file:line`), when known.
    #[prost(string, tag = "2")]
    pub location: String,
}

/// The end of a complete trace.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Footer {
    /// The run's digest (the one its report line prints).
    #[prost(fixed64, tag = "1")]
    pub digest: u64,
    /// Records before this one.
    #[prost(uint64, tag = "2")]
    pub records: u64,
}

/// A line about something else.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Note {
    /// Store (0: the cluster).
    #[prost(uint64, tag = "1")]
    pub store: u64,
    /// Region (0: none).
    #[prost(uint64, tag = "2")]
    pub region: u64,
    /// The line.
    #[prost(string, tag = "3")]
    pub text: String,
}

/// Appends `(index, term)` to term runs, starting a new run only when the term changes.
pub fn push_term(runs: &mut TermRuns, index: u64, term: u64) {
    if runs.len() >= 2 && runs[runs.len() - 1] == term {
        return;
    }
    runs.push(index);
    runs.push(term);
}

/// The term of `index` in runs covering `from + 1 ..= to`; None outside them or when unknown.
pub fn term_at(runs: &[u64], to: u64, index: u64) -> Option<u64> {
    if index > to {
        return None;
    }
    let mut found = None;
    for pair in runs.chunks_exact(2) {
        if pair[0] <= index {
            found = Some(pair[1]);
        } else {
            break;
        }
    }
    found.filter(|&t| t != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_runs_compress_and_answer() {
        let mut runs = Vec::new();
        for (i, t) in [(5, 1), (6, 1), (7, 2), (8, 2), (9, 2), (10, 0)] {
            push_term(&mut runs, i, t);
        }
        assert_eq!(runs, vec![5, 1, 7, 2, 10, 0]);
        assert_eq!(term_at(&runs, 10, 4), None);
        assert_eq!(term_at(&runs, 10, 6), Some(1));
        assert_eq!(term_at(&runs, 10, 9), Some(2));
        assert_eq!(term_at(&runs, 10, 10), None, "unknown");
        assert_eq!(term_at(&runs, 10, 11), None);
    }
}
