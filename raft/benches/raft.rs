//! Criterion benchmarks of the raft core's hot path: how fast entries go through
//! `RawNode`/`Ready` over `MemStorage`, in one thread, with no I/O and no real network. They report
//! numbers (time per iteration and throughput), never pass/fail.
//!
//! - `propose_ready_advance/<size>`: a single-node leader; one iteration proposes one entry of
//!   `size` bytes, takes the `Ready`, persists its entries and hard state to the `MemStorage` and
//!   advances (the entry commits at once, so the `Ready` also carries it as committed).
//! - `ready_large_batch/<n>`: `n` proposals of 128 B queued on a single-node leader, then one
//!   `ready()` + persist + `advance` over the whole batch (the setup is not timed).
//! - `pipeline_3_nodes/<batch>`: a 3-node cluster driven by the Ready loop (persist to each node's
//!   `MemStorage`, deliver messages by stepping them into the destination `RawNode`, apply committed
//!   entries); one iteration proposes `batch` entries of 128 B at the leader and runs Ready rounds
//!   until the leader's commit index covers them. Measures committed entries per second.
//!
//! Not timed: building the payloads (the application owns them before it proposes) and compacting
//! the `MemStorage`s between chunks of iterations, which only keeps memory bounded.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use raft::eraftpb::{Entry, Message};
use raft::{default_logger, Config, MemStorage, RawNode, Ready, StateRole, Storage};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// The payload size of the batch and pipeline benchmarks.
const ENTRY_SIZE: usize = 128;

/// One node: the `RawNode` and the application's handle on its storage.
struct Node {
    raw: RawNode<MemStorage>,
    store: MemStorage,
}

impl Node {
    /// A fresh node `id` of a cluster whose members are `voters`.
    fn new(id: u64, voters: &[u64]) -> Self {
        let store = MemStorage::new_with_conf_state(voters.to_vec());
        let cfg = Config {
            id,
            election_tick: 10,
            heartbeat_tick: 2,
            max_size_per_msg: MIB as u64,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        let raw = RawNode::new(&cfg, store.clone(), &default_logger()).expect("new raw node");
        Node { raw, store }
    }

    /// One turn of the Ready loop, when there is something to do: persist, queue the messages in
    /// `out`, apply the committed entries, advance. Returns whether there was a `Ready`.
    fn handle_ready(&mut self, out: &mut Vec<Message>) -> bool {
        if !self.raw.has_ready() {
            return false;
        }
        let mut rd = self.raw.ready();
        persist(&self.store, &rd);
        out.append(&mut rd.messages);
        apply(&rd.committed_entries);
        self.raw.advance(rd);
        true
    }

    /// Drops the persisted log up to `idx` (when that moves the first index).
    fn compact_to(&self, idx: u64) {
        let first = self.store.first_index().expect("first index");
        if idx >= first {
            self.store.wl().compact(idx).expect("compact");
        }
    }
}

/// Writes what a `Ready` asks to persist into the storage.
fn persist(store: &MemStorage, rd: &Ready) {
    assert!(rd.snapshot.is_none(), "no snapshot is expected here");
    let mut core = store.wl();
    core.append(&rd.entries).expect("append");
    if let Some(hs) = rd.hard_state {
        core.set_hard_state(hs);
    }
}

/// The state machine: touches every committed entry's payload.
fn apply(entries: &[Entry]) {
    for e in entries {
        black_box(e.data.len());
    }
}

/// Payloads of `size` bytes, built outside the timed region.
fn payloads(count: usize, size: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| vec![i as u8; size]).collect()
}

/// A single-node leader with its first `Ready` (election, no-op entry) handled.
fn single_node_leader() -> Node {
    let mut n = Node::new(1, &[1]);
    n.raw.campaign().expect("campaign");
    let mut msgs = Vec::new();
    while n.handle_ready(&mut msgs) {}
    assert!(msgs.is_empty(), "a single node sends nothing");
    assert_eq!(n.raw.raft.state, StateRole::Leader);
    n
}

fn bench_propose_ready_advance(c: &mut Criterion) {
    let mut group = c.benchmark_group("propose_ready_advance");
    for size in [0, 128, KIB, 4 * KIB, 64 * KIB] {
        if size == 0 {
            group.throughput(Throughput::Elements(1));
        } else {
            group.throughput(Throughput::Bytes(size as u64));
        }
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            let mut node = single_node_leader();
            // Iterations run in chunks of at most 16 MiB of payload; the log is compacted between
            // chunks, untimed.
            let chunk = (16 * MIB / size.max(1)).clamp(1, 4096) as u64;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let n = chunk.min(iters - done);
                    let data = payloads(n as usize, size);
                    let start = Instant::now();
                    for p in data {
                        node.raw.propose(p).expect("propose");
                        let rd = node.raw.ready();
                        persist(&node.store, &rd);
                        apply(&rd.committed_entries);
                        node.raw.advance(rd);
                    }
                    total += start.elapsed();
                    done += n;
                    node.compact_to(node.raw.raft.raft_log.applied);
                }
                total
            });
        });
    }
    group.finish();
}

fn bench_ready_large_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("ready_large_batch");
    for n in [1000usize, 10_000] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_batched(
                || {
                    let mut node = single_node_leader();
                    for p in payloads(n, ENTRY_SIZE) {
                        node.raw.propose(p).expect("propose");
                    }
                    node
                },
                |mut node| {
                    let rd = node.raw.ready();
                    assert_eq!(rd.entries.len(), n);
                    persist(&node.store, &rd);
                    apply(&rd.committed_entries);
                    node.raw.advance(rd);
                    // Returned, so that dropping the node is not timed.
                    node
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

/// Three nodes in one thread; node 1 leads.
struct Cluster {
    nodes: Vec<Node>,
    msgs: Vec<Message>,
}

impl Cluster {
    fn new() -> Self {
        let voters = [1, 2, 3];
        let nodes = voters.iter().map(|&id| Node::new(id, &voters)).collect();
        let mut c = Cluster {
            nodes,
            msgs: Vec::new(),
        };
        c.leader().raw.campaign().expect("campaign");
        while c.round() {}
        assert_eq!(c.leader().raw.raft.state, StateRole::Leader);
        let committed = c.leader().raw.raft.raft_log.committed;
        for n in &c.nodes {
            assert_eq!(
                n.raw.raft.raft_log.applied, committed,
                "settled after election"
            );
        }
        c
    }

    fn leader(&mut self) -> &mut Node {
        &mut self.nodes[0]
    }

    /// One Ready round: every node handles its `Ready`, then every message is stepped into its
    /// destination. Returns whether anything happened.
    fn round(&mut self) -> bool {
        let mut busy = false;
        for n in &mut self.nodes {
            busy |= n.handle_ready(&mut self.msgs);
        }
        for m in self.msgs.drain(..) {
            busy = true;
            let to = (m.to - 1) as usize;
            self.nodes[to].raw.step(m).expect("step");
        }
        busy
    }

    /// Proposes the payloads at the leader and runs rounds until the leader has committed them.
    fn propose_and_commit(&mut self, data: impl Iterator<Item = Vec<u8>>) {
        let leader = self.leader();
        for p in data {
            leader.raw.propose(p).expect("propose");
        }
        let target = leader.raw.raft.raft_log.last_index();
        while self.leader().raw.raft.raft_log.committed < target {
            assert!(self.round(), "stalled below commit target {target}");
        }
    }

    /// Compacts every storage up to what every node applied and the leader knows every follower
    /// matched, so nothing that is still needed is dropped.
    fn compact(&mut self) {
        let leader = &self.nodes[0].raw.raft;
        let matched = leader.prs.values().map(|p| p.matched).min().unwrap_or(0);
        let applied = self.nodes.iter().map(|n| n.raw.raft.raft_log.applied);
        let idx = applied.fold(matched, u64::min);
        for n in &self.nodes {
            n.compact_to(idx);
        }
    }
}

fn bench_pipeline_3_nodes(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline_3_nodes");
    for batch in [1usize, 64, 1024] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            let mut cluster = Cluster::new();
            // Chunks of about 64k entries; the logs are compacted between chunks, untimed.
            let chunk = (65_536 / batch).max(1) as u64;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let n = chunk.min(iters - done);
                    let mut data = payloads(n as usize * batch, ENTRY_SIZE).into_iter();
                    let start = Instant::now();
                    for _ in 0..n {
                        cluster.propose_and_commit(data.by_ref().take(batch));
                    }
                    total += start.elapsed();
                    done += n;
                    cluster.compact();
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_propose_ready_advance,
    bench_ready_large_batch,
    bench_pipeline_3_nodes
);
criterion_main!(benches);
