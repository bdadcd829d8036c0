//! Many-region benchmark (issue "3B"): what a store's idle regions cost. Numbers, not pass/fail.
//!
//! Three stores on in-memory engines host `N` regions, each with a peer on every store, driven
//! in-process the way the simulator drives them but with no latency: each base tick, every store
//! ticks every replica, then rounds run and messages are delivered until the cluster is quiet.
//! After the regions have elected their leaders (spread over the stores), the steady state is
//! measured: raft heartbeats every 2 ticks, scheduler heartbeats every 10, split checks every
//! 100, nothing written. Reported per store: the cost of one base tick (the tick handlers, the
//! rounds and the message handling it leads to), per region, and the share of a core it takes at
//! the default 100 ms base tick; and the cost of a round that has nothing to do.
//!
//! Run: `cargo bench --workspace --bench regions [-- 100 1000 10000]` (region counts; default
//! 100, 1000 and 3000). Not part of `make test`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proto::metapb::{Peer, Region, RegionEpoch};
use raftstore::bootstrap::{bootstrap_store, prepare_bootstrap_region};
use raftstore::engine::mem::MemEngine;
use raftstore::engine::{Engines, ALL_CFS, CF_DEFAULT};
use raftstore::{Config, SnapManager, Store, StoreContext};

const STORES: u64 = 3;

type MemStore = Store<MemEngine, MemEngine>;

/// Region `i` of `n`: keys `r{i:06}` up to the next region's; peer id `i * 10 + store`.
fn region(i: u64, n: u64) -> Region {
    let key = |i: u64| format!("r{i:06}").into_bytes();
    Region {
        id: i + 1,
        start_key: if i == 0 { Vec::new() } else { key(i) },
        end_key: if i + 1 == n { Vec::new() } else { key(i + 1) },
        region_epoch: Some(RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: (1..=STORES)
            .map(|s| Peer {
                id: (i + 1) * 10 + s,
                store_id: s,
            })
            .collect(),
    }
}

struct Cluster {
    stores: BTreeMap<u64, (MemStore, StoreContext)>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn new(n: u64) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let cfg = Config::default();
        let mut stores = BTreeMap::new();
        for s in 1..=STORES {
            let engines = Engines::new(MemEngine::new(&ALL_CFS), MemEngine::new(&[CF_DEFAULT]));
            bootstrap_store(&engines, 0, s).expect("bootstrap store");
            for i in 0..n {
                prepare_bootstrap_region(&engines, &region(i, n)).expect("bootstrap region");
            }
            let snaps = SnapManager::new(dir.path().join(format!("s{s}"))).expect("snap dir");
            let cfg = Config {
                seed: s,
                ..cfg.clone()
            };
            let store = Store::new(cfg, engines, snaps, &logger).expect("store");
            stores.insert(s, (store, StoreContext::default()));
        }
        Cluster { stores, _dir: dir }
    }

    /// One base tick: every store ticks, then rounds run and messages move until quiet.
    /// Returns the time spent in store 1's handlers.
    fn tick(&mut self) -> Duration {
        let mut spent = Duration::ZERO;
        for (&s, (store, ctx)) in self.stores.iter_mut() {
            let t = Instant::now();
            store.on_tick(ctx);
            if s == 1 {
                spent += t.elapsed();
            }
        }
        loop {
            let mut moved = Vec::new();
            for (&s, (store, ctx)) in self.stores.iter_mut() {
                let t = Instant::now();
                store.round(ctx, |_| {}).expect("round");
                if s == 1 {
                    spent += t.elapsed();
                }
                moved.append(&mut ctx.messages);
                ctx.tasks.clear();
                ctx.scheduler_tasks.clear();
                ctx.responses.clear();
            }
            if moved.is_empty() {
                return spent;
            }
            for m in moved {
                let to = m.to_peer.as_ref().map_or(0, |p| p.store_id);
                let (store, ctx) = self.stores.get_mut(&to).expect("store");
                let t = Instant::now();
                store.on_raft_message(ctx, m);
                if to == 1 {
                    spent += t.elapsed();
                }
            }
        }
    }

    fn leaders(&self) -> usize {
        self.stores
            .values()
            .map(|(st, _)| {
                st.region_ids()
                    .into_iter()
                    .filter(|&id| st.peer(id).is_some_and(|p| p.is_leader()))
                    .count()
            })
            .sum()
    }
}

fn main() {
    let counts: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![100, 1000, 3000]
    } else {
        counts
    };
    let base_tick = Config::default().raft_base_tick_interval;
    println!("regions  store-1 leaders  tick (us)  per region (ns)  core share at {base_tick:?}  idle round (ns)");
    for n in counts {
        let mut c = Cluster::new(n);
        let mut ticks = 0;
        while c.leaders() < n as usize && ticks < 500 {
            c.tick();
            ticks += 1;
        }
        assert_eq!(c.leaders(), n as usize, "every region elected a leader");
        // Let the elections' aftermath settle.
        for _ in 0..20 {
            c.tick();
        }
        let measured = 200u32;
        let mut spent = Duration::ZERO;
        for _ in 0..measured {
            spent += c.tick();
        }
        let per_tick = spent / measured;
        let (store, ctx) = c.stores.get_mut(&1).expect("store 1");
        let led = store
            .region_ids()
            .into_iter()
            .filter(|&id| store.peer(id).is_some_and(|p| p.is_leader()))
            .count();
        let rounds = 10_000u32;
        let t = Instant::now();
        for _ in 0..rounds {
            store.round(ctx, |_| {}).expect("round");
        }
        let idle_round = t.elapsed() / rounds;
        println!(
            "{n:>7}  {led:>15}  {:>9.1}  {:>15.0}  {:>19.2} %  {:>15}",
            per_tick.as_secs_f64() * 1e6,
            per_tick.as_secs_f64() * 1e9 / n as f64,
            100.0 * per_tick.as_secs_f64() / base_tick.as_secs_f64(),
            idle_round.as_nanos()
        );
    }
}
