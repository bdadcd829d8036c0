//! Raft's invariants checked over a trace, and the explanation of a failed run.
//!
//! The checks ([`check`]), each over every region of the run:
//! - **election safety**: at most one leader per term;
//! - **one vote per term**: a peer grants its vote to one candidate per term (a peer that forgot
//!   its vote in a crash grants a second one);
//! - **committed entries never change** (log matching on the committed prefix): every replica
//!   that commits index `i` commits it with the same term;
//! - **leader completeness**: a new leader's log reaches every index committed before its term;
//! - **apply follows commit**: a replica applies only what it has committed, and each applied
//!   entry has the term the committed log has at its index;
//! - **durability**: what a replica promised survives its crash: the entries it acknowledged
//!   (MsgAppendResponse) and the vote it granted are in what its engines kept.
//!
//! [`explain`] turns a trace into a few lines: the failure (which check, where), the first
//! violated invariant (the cause, when raft is at fault), and the events that led there.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::record::{term_at, Kind, Record};
use crate::Trace;

/// A broken invariant: which, where in the trace, and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name.
    pub invariant: &'static str,
    /// Index of the record that broke it.
    pub record: usize,
    /// Virtual time of that record, in nanoseconds.
    pub at_ns: u64,
    /// The region.
    pub region: u64,
    /// What happened, in one sentence.
    pub detail: String,
}

/// Where and when something was first seen.
#[derive(Clone, Copy, Debug)]
struct Witness {
    store: u64,
    peer: u64,
    at_ns: u64,
}

/// Seconds of virtual time, as traces print them.
pub fn secs(at_ns: u64) -> String {
    format!("{:.6}s", at_ns as f64 / 1e9)
}

/// Every invariant violation in the trace, in the order they happened.
pub fn check(trace: &Trace) -> Vec<Violation> {
    let mut out = Vec::new();
    // (region, term) -> the leader.
    let mut leaders: BTreeMap<(u64, u64), Witness> = BTreeMap::new();
    // (region, voter peer, term) -> (candidate, witness).
    let mut votes: BTreeMap<(u64, u64, u64), (u64, Witness)> = BTreeMap::new();
    // (region, index) -> (term, witness) of the committed log.
    let mut committed: BTreeMap<(u64, u64), (u64, Witness)> = BTreeMap::new();
    // region -> (highest committed index, term of the commit's replica then).
    let mut high: BTreeMap<u64, (u64, u64, Witness)> = BTreeMap::new();
    // (store, region) -> commit index of the replica.
    let mut commit_of: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    // (store, region) -> its term.
    let mut term_of: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    // (store, region, peer) -> the highest index it acknowledged, and when.
    let mut acked: BTreeMap<(u64, u64, u64), (u64, u64)> = BTreeMap::new();
    // (store, region, peer) -> the latest vote it granted: (term, candidate, when).
    let mut granted: BTreeMap<(u64, u64, u64), (u64, u64, u64)> = BTreeMap::new();
    for (i, r) in trace.records.iter().enumerate() {
        let at_ns = r.at_ns;
        let mut violate = |invariant, region, detail: String| {
            out.push(Violation {
                invariant,
                record: i,
                at_ns,
                region,
                detail,
            })
        };
        match &r.kind {
            Some(Kind::Role(role)) => {
                term_of.insert((role.store, role.region), role.term);
                if role.role != 2 {
                    continue;
                }
                let w = Witness {
                    store: role.store,
                    peer: role.peer,
                    at_ns,
                };
                match leaders.get(&(role.region, role.term)) {
                    Some(first) if first.peer != role.peer => violate(
                        "election safety",
                        role.region,
                        format!(
                            "term {} of region {} has two leaders: peer {} on store {} (at {}) \
                             and peer {} on store {}",
                            role.term,
                            role.region,
                            first.peer,
                            first.store,
                            secs(first.at_ns),
                            role.peer,
                            role.store
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        leaders.insert((role.region, role.term), w);
                    }
                }
                // Leader completeness: its log reaches what earlier terms committed.
                if let Some(&(index, term, by)) = high.get(&role.region) {
                    if term < role.term && role.last_index < index {
                        violate(
                            "leader completeness",
                            role.region,
                            format!(
                                "peer {} on store {} became leader of region {} in term {} \
                                 with last index {}, but index {index} was committed (term \
                                 {term}) by peer {} on store {} at {}",
                                role.peer,
                                role.store,
                                role.region,
                                role.term,
                                role.last_index,
                                by.peer,
                                by.store,
                                secs(by.at_ns)
                            ),
                        );
                    }
                }
            }
            Some(Kind::Send(s)) => {
                use proto::eraftpb::MessageType as M;
                let replica = (s.from_store, s.region, s.from_peer);
                // What a replica promised: the entries it acknowledged, the votes it granted.
                if s.msg_type == M::MsgAppendResponse as i32 && !s.reject {
                    let a = acked.entry(replica).or_insert((0, 0));
                    if s.index > a.0 {
                        *a = (s.index, at_ns);
                    }
                }
                // A granted vote: a MsgRequestVoteResponse that is no rejection.
                if s.msg_type != M::MsgRequestVoteResponse as i32 || s.reject {
                    continue;
                }
                let g = granted.entry(replica).or_insert((0, 0, 0));
                if s.term > g.0 {
                    *g = (s.term, s.to_peer, at_ns);
                }
                let w = Witness {
                    store: s.from_store,
                    peer: s.from_peer,
                    at_ns,
                };
                match votes.get(&(s.region, s.from_peer, s.term)) {
                    Some(&(cand, first)) if cand != s.to_peer => violate(
                        "one vote per term",
                        s.region,
                        format!(
                            "peer {} on store {} granted its vote in term {} of region {} to \
                             peer {cand} (at {}) and then to peer {}",
                            s.from_peer,
                            s.from_store,
                            s.term,
                            s.region,
                            secs(first.at_ns),
                            s.to_peer
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        votes.insert((s.region, s.from_peer, s.term), (s.to_peer, w));
                    }
                }
            }
            Some(Kind::Commit(c)) => {
                commit_of.insert((c.store, c.region), c.to);
                let w = Witness {
                    store: c.store,
                    peer: c.peer,
                    at_ns,
                };
                for index in c.from + 1..=c.to {
                    let Some(term) = term_at(&c.terms, c.to, index) else {
                        continue;
                    };
                    match committed.get(&(c.region, index)) {
                        Some(&(t, first)) if t != term => violate(
                            "committed entries never change",
                            c.region,
                            format!(
                                "entry {index} of region {} was committed with term {t} by \
                                 peer {} on store {} (at {}), and with term {term} by peer {} \
                                 on store {}",
                                c.region,
                                first.peer,
                                first.store,
                                secs(first.at_ns),
                                c.peer,
                                c.store
                            ),
                        ),
                        Some(_) => {}
                        None => {
                            committed.insert((c.region, index), (term, w));
                        }
                    }
                }
                let term = term_of.get(&(c.store, c.region)).copied().unwrap_or(0);
                if high.get(&c.region).is_none_or(|h| h.0 < c.to) {
                    high.insert(c.region, (c.to, term, w));
                }
            }
            Some(Kind::Apply(a)) => {
                let commit = commit_of.get(&(a.store, a.region)).copied();
                if let Some(commit) = commit.filter(|&c| a.to > c && !a.snapshot) {
                    violate(
                        "apply follows commit",
                        a.region,
                        format!(
                            "peer {} on store {} applied region {}'s log up to index {} but \
                             had committed only up to {commit}",
                            a.peer, a.store, a.region, a.to
                        ),
                    );
                }
                for index in a.from + 1..=a.to {
                    let Some(term) = term_at(&a.terms, a.to, index) else {
                        continue;
                    };
                    if let Some(&(t, by)) = committed.get(&(a.region, index)) {
                        if t != term {
                            violate(
                                "apply follows commit",
                                a.region,
                                format!(
                                    "peer {} on store {} applied index {index} term {term} of \
                                     region {}, but the committed entry {index} has term {t} \
                                     (committed by peer {} on store {} at {})",
                                    a.peer,
                                    a.store,
                                    a.region,
                                    by.peer,
                                    by.store,
                                    secs(by.at_ns)
                                ),
                            );
                            break;
                        }
                    }
                }
            }
            Some(Kind::Crash(c)) => {
                for l in &c.lost {
                    // A restarted replica's commit and term start again from what it kept.
                    commit_of.insert((c.store, l.region), l.durable_commit);
                    let replica = (c.store, l.region, l.peer);
                    if let Some(&(index, at)) = acked.get(&replica) {
                        if l.durable_last_index < index {
                            violate(
                                "durability",
                                l.region,
                                format!(
                                    "peer {} on store {} acknowledged region {}'s log up to \
                                     index {index} (at {}), but kept only up to {} through its \
                                     crash: it acknowledged entries before they were on disk",
                                    l.peer,
                                    c.store,
                                    l.region,
                                    secs(at),
                                    l.durable_last_index
                                ),
                            );
                        }
                    }
                    if let Some(&(term, cand, at)) = granted.get(&replica) {
                        let kept = l.durable_term > term
                            || (l.durable_term == term && l.durable_vote == cand);
                        if !kept {
                            violate(
                                "durability",
                                l.region,
                                format!(
                                    "peer {} on store {} granted its vote in term {term} of \
                                     region {} to peer {cand} (at {}), but its saved hard \
                                     state after the crash is term {} vote {}: it voted before \
                                     the vote was on disk",
                                    l.peer,
                                    c.store,
                                    l.region,
                                    secs(at),
                                    l.durable_term,
                                    l.durable_vote
                                ),
                            );
                        }
                    }
                    acked.remove(&replica);
                    granted.remove(&replica);
                }
            }
            _ => {}
        }
    }
    out
}

/// One line about a record, as `explain` and `dump` print it; None for a record not worth a line.
pub fn describe(r: &Record, sends: &BTreeMap<u64, crate::record::Send>) -> Option<String> {
    let t = secs(r.at_ns);
    let msg = |s: &crate::record::Send| {
        let name = proto::eraftpb::MessageType::try_from(s.msg_type)
            .map_or("Unknown", |t| t.as_str_name());
        let mut m = format!(
            "{name} region {} peer {}->{} (store {}->{}) term {}",
            s.region, s.from_peer, s.to_peer, s.from_store, s.to_store, s.term
        );
        if s.index != 0 || s.log_term != 0 {
            let _ = write!(m, " index {} log term {}", s.index, s.log_term);
        }
        if s.entries > 0 {
            let _ = write!(m, " entries {}", s.entries);
        }
        if s.commit != 0 {
            let _ = write!(m, " commit {}", s.commit);
        }
        if s.reject {
            m += " REJECT";
        }
        if s.snapshot_index != 0 {
            let _ = write!(m, " snapshot {}", s.snapshot_index);
        }
        m
    };
    Some(match r.kind.as_ref()? {
        Kind::Header(h) => format!(
            "{t} run {} seed {} on stores {:?}",
            h.scenario, h.seed, h.stores
        ),
        Kind::Send(s) => format!("{t} send #{} {}", s.id, msg(s)),
        Kind::Deliver(d) => match sends.get(&d.id) {
            Some(s) => format!("{t} deliver #{} {}", d.id, msg(s)),
            None => format!("{t} deliver #{}", d.id),
        },
        Kind::Drop(d) => match sends.get(&d.id) {
            Some(s) => format!("{t} DROP #{} {} ({})", d.id, msg(s), d.reason),
            None => format!("{t} DROP #{} ({})", d.id, d.reason),
        },
        Kind::Role(x) => format!(
            "{t} store {} region {} peer {} is {} in term {} (leader {}, vote {}, last index \
             {}; on {})",
            x.store,
            x.region,
            x.peer,
            role_name(x.role),
            x.term,
            x.leader,
            x.vote,
            x.last_index,
            x.cause
        ),
        Kind::Commit(c) => format!(
            "{t} store {} region {} peer {} committed {}..={} (terms {})",
            c.store,
            c.region,
            c.peer,
            c.from + 1,
            c.to,
            show_runs(&c.terms)
        ),
        Kind::Apply(a) => format!(
            "{t} store {} region {} peer {} applied {}..={}{}",
            a.store,
            a.region,
            a.peer,
            a.from + 1,
            a.to,
            if a.snapshot {
                " from a snapshot".to_string()
            } else {
                format!(" (terms {})", show_runs(&a.terms))
            }
        ),
        Kind::Command(c) => format!(
            "{t} command #{} to store {} region {} peer {}: {}",
            c.id, c.store, c.region, c.peer, c.what
        ),
        Kind::Response(x) => {
            if x.error.is_empty() {
                format!("{t} answer to command #{}: ok", x.id)
            } else {
                format!("{t} answer to command #{}: {}", x.id, x.error)
            }
        }
        Kind::ClientStart(c) => format!(
            "{t} client op #{} {} {}",
            c.id,
            c.op,
            String::from_utf8_lossy(&c.key)
        ),
        Kind::ClientEnd(c) => format!(
            "{t} client op #{} {} ({})",
            c.id,
            if c.ok { "done" } else { "FAILED" },
            c.detail
        ),
        Kind::Crash(c) => {
            let mut s = format!(
                "{t} store {} CRASHED ({} unsynced write batches lost)",
                c.store, c.unsynced_batches
            );
            for l in &c.lost {
                let mut parts = Vec::new();
                if l.durable_last_index < l.last_index {
                    parts.push(format!(
                        "log {}..={} lost",
                        l.durable_last_index + 1,
                        l.last_index
                    ));
                }
                if (l.durable_term, l.durable_vote) != (l.term, l.vote) {
                    parts.push(format!(
                        "term/vote {}/{} -> {}/{}",
                        l.term, l.vote, l.durable_term, l.durable_vote
                    ));
                }
                if l.durable_commit < l.commit {
                    parts.push(format!("commit {} -> {}", l.commit, l.durable_commit));
                }
                if l.durable_applied < l.applied {
                    parts.push(format!("applied {} -> {}", l.applied, l.durable_applied));
                }
                if !parts.is_empty() {
                    let _ = write!(s, "; region {}: {}", l.region, parts.join(", "));
                }
            }
            s
        }
        Kind::Start(x) => format!("{t} store {} started", x.store),
        Kind::Filter(f) => {
            if f.added {
                format!("{t} network: {}", f.text)
            } else {
                format!("{t} network healed ({})", f.text)
            }
        }
        Kind::Snapshot(x) => {
            if x.peer_store != 0 {
                format!(
                    "{t} snapshot of region {} (index {}, term {}) from store {} to store {}: \
                     {}",
                    x.region, x.index, x.term, x.peer_store, x.store, x.what
                )
            } else {
                format!(
                    "{t} store {} snapshot of region {} (index {}, term {}) {}",
                    x.store, x.region, x.index, x.term, x.what
                )
            }
        }
        Kind::Region(x) => format!(
            "{t} store {} region {} peer {} {}: [{}, {}) version {} conf_ver {} members {}",
            x.store,
            x.region,
            x.peer,
            x.what,
            show_key(&x.start_key),
            show_key(&x.end_key),
            x.version,
            x.conf_ver,
            x.members
                .chunks(2)
                .map(|p| format!("{}@{}", p[0], p.get(1).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Kind::Failure(f) => format!("{t} FAILED at {}: {}", f.location, f.message),
        Kind::Footer(f) => format!("{t} end: digest {:016x}, {} records", f.digest, f.records),
        Kind::Note(n) => format!("{t} store {} region {}: {}", n.store, n.region, n.text),
    })
}

/// "follower", "candidate", "leader", "pre-candidate".
pub fn role_name(role: u32) -> &'static str {
    match role {
        0 => "follower",
        1 => "candidate",
        2 => "leader",
        3 => "pre-candidate",
        _ => "unknown",
    }
}

fn show_key(k: &[u8]) -> String {
    if k.is_empty() {
        return "''".into();
    }
    k.iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}

fn show_runs(runs: &[u64]) -> String {
    runs.chunks(2)
        .map(|p| match p[1] {
            0 => format!("?@{}", p[0]),
            t => format!("{t}@{}", p[0]),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The stores, regions and keys a failure message names (`store 3`, `region 12`, `key "k1"` /
/// `[107, 49]`): what `explain` looks for in the events before it.
fn named(message: &str) -> (Vec<u64>, Vec<u64>) {
    let words: Vec<&str> = message
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let (mut stores, mut regions) = (Vec::new(), Vec::new());
    for w in words.windows(2) {
        if let Ok(n) = w[1].parse::<u64>() {
            match w[0] {
                "store" => stores.push(n),
                "region" => regions.push(n),
                _ => {}
            }
        }
    }
    (stores, regions)
}

/// The key bytes a failure message shows as a Rust byte list (`[107, 49]`) or a quoted string.
fn named_keys(message: &str) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    let mut rest = message;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        let inner = &rest[open + 1..open + close];
        let bytes: Result<Vec<u8>, _> = inner.split(',').map(|b| b.trim().parse::<u8>()).collect();
        if let Ok(b) = bytes {
            if !b.is_empty() {
                keys.push(b);
            }
        }
        rest = &rest[open + close..];
    }
    keys
}

/// The explanation of a trace: the run, the failure, the cause, and what led to it.
pub fn explain(trace: &Trace, context: usize) -> String {
    let mut out = String::new();
    let records = &trace.records;
    let mut sends = BTreeMap::new();
    let mut header = None;
    let mut failure = None;
    for r in records {
        match &r.kind {
            Some(Kind::Header(h)) => header = Some(h.clone()),
            Some(Kind::Failure(f)) => failure = Some((r.at_ns, f.clone())),
            _ => {}
        }
    }
    let end_ns = records.last().map_or(0, |r| r.at_ns);
    match &header {
        Some(h) => {
            let _ = writeln!(
                out,
                "run: {} seed {} on stores {:?}: {} records, {} of virtual time{}",
                h.scenario,
                h.seed,
                h.stores,
                records.len(),
                secs(end_ns),
                trace
                    .digest()
                    .map_or(String::new(), |d| format!(", digest {d:016x}"))
            );
        }
        None => {
            let _ = writeln!(out, "run: (no header) {} records", records.len());
        }
    }
    if !trace.complete {
        let _ = writeln!(out, "note: the trace is cut short (no footer)");
    }
    match &failure {
        Some((at, f)) => {
            let _ = writeln!(
                out,
                "failed at {} ({}): {}",
                secs(*at),
                if f.location.is_empty() {
                    "location unknown"
                } else {
                    &f.location
                },
                f.message.lines().next().unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(out, "the run passed");
        }
    }
    let violations = check(trace);
    // The region the explanation follows: the first violation's, else the ones the message names.
    let (mut stores, mut regions) = failure
        .as_ref()
        .map_or((Vec::new(), Vec::new()), |(_, f)| named(&f.message));
    let keys = failure
        .as_ref()
        .map_or(Vec::new(), |(_, f)| named_keys(&f.message));
    let upto = match violations.first() {
        Some(v) => {
            let _ = writeln!(
                out,
                "cause: {} violated at {}: {}",
                v.invariant,
                secs(v.at_ns),
                v.detail
            );
            if violations.len() > 1 {
                let _ = writeln!(
                    out,
                    "  ({} more violations; `tinykv-trace check` lists them)",
                    violations.len() - 1
                );
            }
            regions = vec![v.region];
            let (s, _) = named(&v.detail);
            stores = s;
            v.record
        }
        None => {
            let _ = writeln!(
                out,
                "cause: no raft invariant was violated (election safety, one vote per term, \
                 committed entries never change, leader completeness, apply follows commit, \
                 durability)"
            );
            records.len().saturating_sub(1)
        }
    };
    // A client operation that failed: which region it was routed to, and what it was answered.
    if let Some(op) = records[..=upto.min(records.len().saturating_sub(1))]
        .iter()
        .rev()
        .find_map(|r| match &r.kind {
            Some(Kind::ClientEnd(c)) if !c.ok => Some(c.id),
            _ => None,
        })
    {
        let _ = writeln!(out, "{}", client_summary(records, op, &mut regions));
    }
    // The events that led there: the last `context` about the stores, regions or keys in question.
    for r in &records[..=upto.min(records.len().saturating_sub(1))] {
        if let Some(Kind::Send(s)) = &r.kind {
            sends.insert(s.id, s.clone());
        }
    }
    let relevant = |r: &Record| -> bool {
        let key_hit = |k: &[u8]| keys.iter().any(|x| x.as_slice() == k);
        match &r.kind {
            Some(Kind::Crash(_)) | Some(Kind::Start(_)) | Some(Kind::Filter(_)) => true,
            Some(Kind::Role(x)) => regions.contains(&x.region) || stores.contains(&x.store),
            Some(Kind::Commit(x)) => regions.contains(&x.region),
            Some(Kind::Apply(x)) => regions.contains(&x.region),
            Some(Kind::Region(x)) => regions.contains(&x.region),
            Some(Kind::Snapshot(x)) => regions.contains(&x.region),
            Some(Kind::ClientStart(c)) => key_hit(&c.key),
            Some(Kind::ClientEnd(_)) => false,
            Some(Kind::Drop(d)) => sends.get(&d.id).is_some_and(|s| {
                use proto::eraftpb::MessageType as M;
                let heartbeat = [M::MsgHeartbeat as i32, M::MsgHeartbeatResponse as i32];
                regions.contains(&s.region) && !heartbeat.contains(&s.msg_type)
            }),
            Some(Kind::Failure(_)) => true,
            _ => false,
        }
    };
    let picked: Vec<&Record> = if failure.is_none() && violations.is_empty() {
        Vec::new() // a run that passed needs no lead-up
    } else {
        records[..=upto.min(records.len().saturating_sub(1))]
            .iter()
            .filter(|r| relevant(r))
            .collect()
    };
    let from = picked.len().saturating_sub(context);
    if !picked.is_empty() {
        let _ = writeln!(
            out,
            "what led to it (the last {} events of region(s) {:?}{}, crashes and partitions):",
            picked.len() - from,
            regions,
            if stores.is_empty() {
                String::new()
            } else {
                format!(" and store(s) {stores:?}")
            }
        );
        for r in &picked[from..] {
            if let Some(line) = describe(r, &sends) {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    if let Some(h) = &header {
        if !h.replay.is_empty() {
            let _ = writeln!(out, "replay: {}", h.replay);
        }
    }
    out
}

/// What happened to client operation `op`: its key, the commands sent for it and their answers.
fn client_summary(records: &[Record], op: u64, regions: &mut Vec<u64>) -> String {
    let (mut start, mut end, mut key, mut what) = (0, u64::MAX, Vec::new(), String::new());
    for r in records {
        match &r.kind {
            Some(Kind::ClientStart(c)) if c.id == op => {
                start = r.at_ns;
                key = c.key.clone();
                what = c.op.clone();
            }
            Some(Kind::ClientEnd(c)) if c.id == op => end = r.at_ns,
            _ => {}
        }
    }
    // Commands for that key during the operation, by answer.
    let shown = String::from_utf8_lossy(&key).into_owned();
    let mut ids = BTreeMap::new();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for r in records {
        if r.at_ns < start || r.at_ns > end {
            continue;
        }
        match &r.kind {
            Some(Kind::Command(c)) if c.what.contains(&*shown) || what == "scan" => {
                ids.insert(c.id, (c.store, c.region));
                if !regions.contains(&c.region) {
                    regions.push(c.region);
                }
            }
            Some(Kind::Response(x)) if ids.contains_key(&x.id) => {
                let a = if x.error.is_empty() {
                    "ok".to_string()
                } else {
                    x.error.clone()
                };
                *answers.entry(a).or_default() += 1;
                ids.remove(&x.id);
            }
            _ => {}
        }
    }
    let mut s = format!(
        "client op #{op} ({what} {shown}) ran {} .. {}: ",
        secs(start),
        secs(end)
    );
    if answers.is_empty() && ids.is_empty() {
        s += "no command reached a store";
    } else {
        let mut parts: Vec<String> = answers.iter().map(|(a, n)| format!("{n} x {a}")).collect();
        if !ids.is_empty() {
            let stores: std::collections::BTreeSet<u64> = ids.values().map(|v| v.0).collect();
            parts.push(format!("{} x no answer (stores {stores:?})", ids.len()));
        }
        s += &parts.join(", ");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Apply, Commit, Role, Send};
    use crate::TraceWriter;
    use proto::eraftpb::MessageType;
    use std::time::Duration;

    fn trace(kinds: Vec<Kind>) -> Trace {
        let mut w = TraceWriter::new();
        for (i, k) in kinds.into_iter().enumerate() {
            w.record(Duration::from_millis(i as u64), k);
        }
        crate::parse(&w.finish(Duration::from_secs(1), 0), "t").unwrap()
    }

    fn role(store: u64, peer: u64, role: u32, term: u64, last_index: u64) -> Kind {
        Kind::Role(Role {
            store,
            region: 1,
            peer,
            role,
            term,
            last_index,
            ..Default::default()
        })
    }

    fn commit(store: u64, from: u64, to: u64, terms: Vec<u64>) -> Kind {
        Kind::Commit(Commit {
            store,
            region: 1,
            peer: store,
            from,
            to,
            terms,
        })
    }

    fn names(t: &Trace) -> Vec<&'static str> {
        check(t).into_iter().map(|v| v.invariant).collect()
    }

    #[test]
    fn two_leaders_in_a_term_break_election_safety() {
        let t = trace(vec![
            role(1, 1, 2, 3, 0),
            role(2, 2, 2, 3, 0),
            role(2, 2, 2, 4, 0),
        ]);
        let v = check(&t);
        assert_eq!(names(&t), vec!["election safety"]);
        assert!(
            v[0].detail.contains("term 3 of region 1 has two leaders"),
            "{v:?}"
        );
        assert_eq!(v[0].record, 1, "the second leader's record");
    }

    #[test]
    fn a_second_vote_in_a_term_is_caught() {
        let grant = |to_peer| {
            Kind::Send(Send {
                region: 1,
                from_store: 3,
                from_peer: 3,
                to_peer,
                msg_type: MessageType::MsgRequestVoteResponse as i32,
                term: 5,
                ..Default::default()
            })
        };
        let refuse = Kind::Send(Send {
            region: 1,
            from_peer: 3,
            to_peer: 2,
            msg_type: MessageType::MsgRequestVoteResponse as i32,
            term: 5,
            reject: true,
            ..Default::default()
        });
        assert!(names(&trace(vec![grant(1), grant(1), refuse.clone()])).is_empty());
        assert_eq!(
            names(&trace(vec![grant(1), refuse, grant(2)])),
            vec!["one vote per term"]
        );
    }

    #[test]
    fn a_committed_entry_with_two_terms_is_caught() {
        // Store 1 commits 1..=3 with terms 1,1,2; store 2 commits 3 with term 1.
        let ok = trace(vec![
            commit(1, 0, 3, vec![1, 1, 3, 2]),
            commit(2, 0, 3, vec![1, 1, 3, 2]),
        ]);
        assert!(names(&ok).is_empty());
        let bad = trace(vec![
            commit(1, 0, 3, vec![1, 1, 3, 2]),
            commit(2, 2, 3, vec![3, 1]),
        ]);
        let v = check(&bad);
        assert_eq!(names(&bad), vec!["committed entries never change"]);
        assert!(
            v[0].detail
                .contains("entry 3 of region 1 was committed with term 2"),
            "{v:?}"
        );
        // An unknown (compacted) term is no evidence either way.
        assert!(names(&trace(vec![
            commit(1, 0, 3, vec![1, 1]),
            commit(2, 0, 3, vec![1, 0])
        ]))
        .is_empty());
    }

    #[test]
    fn a_new_leader_missing_committed_entries_is_caught() {
        let t = trace(vec![
            role(1, 1, 2, 2, 5),
            commit(1, 0, 5, vec![1, 2]),
            role(2, 2, 2, 3, 4),
        ]);
        assert_eq!(names(&t), vec!["leader completeness"]);
        let fine = trace(vec![
            role(1, 1, 2, 2, 5),
            commit(1, 0, 5, vec![1, 2]),
            role(2, 2, 2, 3, 5),
        ]);
        assert!(names(&fine).is_empty());
    }

    #[test]
    fn applying_past_commit_or_another_term_is_caught() {
        let apply = |to, terms: Vec<u64>| {
            Kind::Apply(Apply {
                store: 2,
                region: 1,
                peer: 2,
                from: 0,
                to,
                terms,
                snapshot: false,
            })
        };
        let base = || {
            vec![
                commit(1, 0, 3, vec![1, 1, 3, 2]),
                commit(2, 0, 2, vec![1, 1]),
            ]
        };
        let mut past = base();
        past.push(apply(3, vec![1, 1, 3, 2]));
        assert_eq!(names(&trace(past)), vec!["apply follows commit"]);
        let mut other_term = base();
        other_term.push(commit(2, 2, 3, vec![3, 2]));
        other_term.push(apply(3, vec![1, 1, 3, 1]));
        let t = trace(other_term);
        let v = check(&t);
        assert_eq!(names(&t), vec!["apply follows commit"]);
        assert!(v[0].detail.contains("applied index 3 term 1"), "{v:?}");
    }

    #[test]
    fn promises_lost_in_a_crash_break_durability() {
        use crate::record::{Crash, Lost};
        let ack = |index| {
            Kind::Send(Send {
                region: 1,
                from_store: 2,
                from_peer: 2,
                to_peer: 1,
                msg_type: MessageType::MsgAppendResponse as i32,
                term: 3,
                index,
                ..Default::default()
            })
        };
        let vote = Kind::Send(Send {
            region: 1,
            from_store: 2,
            from_peer: 2,
            to_peer: 3,
            msg_type: MessageType::MsgRequestVoteResponse as i32,
            term: 3,
            ..Default::default()
        });
        let crash = |durable_last_index, durable_term, durable_vote| {
            Kind::Crash(Crash {
                store: 2,
                unsynced_batches: 0,
                lost: vec![Lost {
                    region: 1,
                    peer: 2,
                    durable_last_index,
                    durable_term,
                    durable_vote,
                    ..Default::default()
                }],
            })
        };
        let kept = trace(vec![vote.clone(), ack(7), crash(7, 3, 3)]);
        assert!(names(&kept).is_empty(), "{:?}", check(&kept));
        let lost_entries = trace(vec![vote.clone(), ack(7), crash(5, 3, 3)]);
        assert_eq!(names(&lost_entries), vec!["durability"]);
        assert!(check(&lost_entries)[0].detail.contains("up to index 7"));
        let lost_vote = trace(vec![vote, ack(7), crash(7, 3, 0)]);
        assert_eq!(names(&lost_vote), vec!["durability"]);
        assert!(check(&lost_vote)[0].detail.contains("term 3 vote 0"));
    }

    #[test]
    fn explain_names_the_failure_and_the_cause() {
        let t = trace(vec![
            role(1, 1, 2, 3, 0),
            role(2, 2, 2, 3, 0),
            Kind::Failure(crate::record::Failure {
                message: "region 1: store 2 read a stale value".into(),
                location: "tests/x.rs:10:5".into(),
            }),
        ]);
        let why = explain(&t, 10);
        assert!(why.contains("failed at"), "{why}");
        assert!(why.contains("tests/x.rs:10:5"), "{why}");
        assert!(why.contains("cause: election safety violated"), "{why}");
        assert!(
            why.contains("store 2 region 1 peer 2 is leader in term 3"),
            "{why}"
        );
    }
}
