//! TinyKV's `GenericTest` (`kv/test_raftstore/test_test.go`): concurrent clients appending and
//! scanning, network chaos, random membership changes, small regions that split, crashes of
//! every store, and at the end of each iteration a check that every acknowledged append is there
//! exactly once and in order (and, as asked, that logs were trimmed and the regions split).

use std::collections::HashMap;
use std::time::Duration;

use raftstore::Config;

use crate::cluster::{election_timeout, Cluster};
use crate::env::{sleep, spawn, Flag};
use crate::filter::{DropFilter, PartitionFilter};
use crate::scheduler::find_peer;

/// What a generic test run does (TinyKV's parameters).
#[derive(Clone, Copy, Debug, Default)]
pub struct Params {
    /// Concurrent clients.
    pub nclients: usize,
    /// Drop about 10% of messages.
    pub unreliable: bool,
    /// Stop and restart every store at the end of each iteration.
    pub crash: bool,
    /// Install random 2-way partitions.
    pub partitions: bool,
    /// Raft-log GC count limit (None: the default, so no GC), and check the logs were trimmed.
    pub maxraftlog: Option<u64>,
    /// Add and remove peers at random while the clients run (the `confchanger`).
    pub confchange: bool,
    /// Small regions ([`SPLIT_REGION_MAX_SIZE`], [`SPLIT_REGION_SPLIT_SIZE`]), and check at the
    /// end of each iteration that the first region was split.
    pub split: bool,
}

/// `region_max_size` of the split runs (TinyKV's `GenericTest` sets `RegionMaxSize = 300`).
pub const SPLIT_REGION_MAX_SIZE: u64 = 300;
/// `region_split_size` of the split runs (TinyKV's `RegionSplitSize = 200`).
pub const SPLIT_REGION_SPLIT_SIZE: u64 = 200;

/// The stores' configuration for a run with `p` (TinyKV's `GenericTest` derives it from
/// `NewTestConfig`): the log-GC limit of `maxraftlog`, and the small regions of `split`. The
/// drivers take the configuration when they build the cluster, so a suite passes this to them.
pub fn generic_config(p: &Params) -> Config {
    let mut cfg = Config::test_config();
    if let Some(limit) = p.maxraftlog {
        cfg.raft_log_gc_count_limit = limit;
    }
    if p.split {
        cfg.region_max_size = SPLIT_REGION_MAX_SIZE;
        cfg.region_split_size = SPLIT_REGION_SPLIT_SIZE;
    }
    cfg
}

/// Deletes of a client's keys in flight at once after each iteration.
const DELETES_IN_FLIGHT: usize = 32;

/// How many iterations, and how long the clients run in each (TinyKV: 3 and 5 s).
pub const ITERATIONS: usize = 3;
/// How long clients run per iteration.
pub const RUN_TIME: Duration = Duration::from_secs(5);

fn key(cli: usize, j: u64) -> Vec<u8> {
    format!("{cli} {j:08}").into_bytes()
}

fn value(cli: usize, j: u64) -> String {
    format!("x {cli} {j} y")
}

/// Checks that `values` (a client's scan, concatenated) holds each of its `count` appends exactly
/// once, in order (TinyKV's `checkClntAppends`: a substring search per append).
///
/// An append `x {cli} {j} y` has one `x`, at its start, and one `y`, at its end, so each of its
/// occurrences in `values` starts at an `x` and ends at the first `y` after it, with no other `x`
/// in between. Indexing those pieces once answers every search exactly as the substring search
/// would, in time linear in `values` instead of `count` times its length.
pub fn check_clnt_appends(cli: usize, values: &str, count: u64) {
    let mut pieces: HashMap<&str, (usize, u32)> = HashMap::new();
    let bytes = values.as_bytes();
    let mut start = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'x' => start = Some(i),
            b'y' => {
                if let Some(s) = start.take() {
                    let e = pieces.entry(&values[s..=i]).or_insert((s, 0));
                    e.1 += 1;
                }
            }
            _ => {}
        }
    }
    let mut last = 0usize;
    for j in 0..count {
        let wanted = value(cli, j);
        let Some(&(off, n)) = pieces.get(wanted.as_str()) else {
            panic!("client {cli}: missing element {wanted:?} in append result {values:?}");
        };
        if n > 1 {
            panic!("client {cli}: duplicate element {wanted:?} in append result");
        }
        assert!(
            off >= last || j == 0,
            "client {cli}: wrong order for element {j} in append result"
        );
        last = off;
    }
}

/// One client: until `done`, either appends a new key or scans its keys and compares them with
/// what it appended. Returns how many keys it appended.
async fn client(c: Cluster, cli: usize, done: Flag) -> u64 {
    let mut j = 0u64;
    let mut expected = String::new();
    while !done.get() {
        if c.env.random() % 2 == 0 {
            let v = value(cli, j);
            c.must_put(&key(cli, j), v.as_bytes()).await;
            expected.push_str(&v);
            j += 1;
        } else {
            // Compared value by value against what was acknowledged, without building the
            // concatenation: the scans grow with the appends and dominate the simulated runs.
            let want = expected.as_bytes();
            let (mut off, mut count) = (0usize, 0u64);
            let mut first_bad: Option<(u64, String)> = None;
            c.scan_with(&key(cli, 0), &key(cli, j), |_, v| {
                if first_bad.is_none() && want.get(off..off + v.len()) != Some(v) {
                    first_bad = Some((count, String::from_utf8_lossy(v).into_owned()));
                }
                off += v.len();
                count += 1;
            })
            .await;
            if let Some((i, v)) = first_bad {
                panic!(
                    "client {cli}: scan of its {j} appends does not match what was acknowledged: \
                     value {i} is {v:?}; acknowledged: {expected:?}"
                );
            }
            assert_eq!(
                off,
                want.len(),
                "client {cli}: scan of its {j} appends returned {count} values, a prefix of what \
                 was acknowledged: {expected:?}"
            );
        }
    }
    j
}

/// Partitions or drops until `done`, every election timeout plus up to 200 ms, as TinyKV's
/// `networkchaos`: each window adds one more drop filter (a new partition clears them first), so
/// without partitions the drops compound over an iteration (about 10%, 19%, 27%, ...).
async fn network_chaos(c: Cluster, unreliable: bool, partitions: bool, done: Flag) {
    let stores = c.env.store_ids();
    let et = election_timeout(&c.env);
    while !done.get() {
        if partitions {
            let mut s1 = Vec::new();
            let mut s2 = Vec::new();
            for &s in &stores {
                if c.env.random() % 2 == 0 {
                    s1.push(s);
                } else {
                    s2.push(s);
                }
            }
            c.clear_filters();
            c.add_filter(PartitionFilter { s1, s2 });
        }
        if unreliable {
            c.add_filter(DropFilter::default());
        }
        let jitter = Duration::from_millis(c.env.random() % 200);
        c.sleep(et + jitter).await;
    }
}

/// Adds and removes peers until `done`, TinyKV's `confchanger`: picks a region with a known
/// leader and a random store; removes the region's peer there if it has one and is not alone,
/// else adds a new peer there; then waits up to 200 ms.
async fn confchanger(c: Cluster, done: Flag) {
    let stores = c.env.store_ids();
    while !done.get() {
        if let Some(region) = c.get_random_region() {
            let store = stores[(c.env.random() % stores.len() as u64) as usize];
            match find_peer(&region, store) {
                Some(p) => {
                    if region.peers.len() > 1 {
                        c.must_remove_peer(region.id, p).await;
                    }
                }
                None => {
                    let p = c.alloc_peer(store);
                    c.must_add_peer(region.id, p).await;
                }
            }
        }
        let pause = Duration::from_millis(c.env.random() % 200);
        c.sleep(pause).await;
    }
}

/// TinyKV's `GenericTest` on a 5-store cluster's `Cluster`, built with [`generic_config`] of
/// `p`.
///
/// The confchanger runs in the first iteration only, as it does in TinyKV's: there its stop flag
/// is raised after the first iteration and never lowered again, so later iterations' confchangers
/// stop at once. Here it is also awaited (with the network healed) before the iteration's checks.
/// (Run in every iteration, the sustained churn leaves two-peer regions whose new peer still
/// waits for its snapshot unavailable for longer than a client's 5 s budget on some seeds.)
pub async fn generic_test(c: Cluster, p: Params) {
    let cfg = c.env.config();
    if p.split {
        assert_eq!(
            (cfg.region_max_size, cfg.region_split_size),
            (SPLIT_REGION_MAX_SIZE, SPLIT_REGION_SPLIT_SIZE),
            "a split run needs the cluster built with generic_config"
        );
    }
    let et = election_timeout(&c.env);
    c.sleep(2 * et).await;
    for iteration in 0..ITERATIONS {
        let done = Flag::default();
        let mut clients = Vec::new();
        for cli in 0..p.nclients {
            clients.push(spawn(&c.env, client(c.clone(), cli, done.clone())));
        }
        let chaos = if p.unreliable || p.partitions {
            let (c2, d2) = (c.clone(), done.clone());
            Some(spawn(&c.env, async move {
                sleep(&c2.env, Duration::from_millis(300)).await;
                network_chaos(c2, p.unreliable, p.partitions, d2).await;
            }))
        } else {
            None
        };
        let changer = if p.confchange && iteration == 0 {
            let (c2, d2) = (c.clone(), done.clone());
            // As TinyKV: 100 ms after the chaos started (300 ms after the clients), or after the
            // clients.
            let delay = if chaos.is_some() { 400 } else { 100 };
            Some(spawn(&c.env, async move {
                sleep(&c2.env, Duration::from_millis(delay)).await;
                confchanger(c2, d2).await;
            }))
        } else {
            None
        };
        c.sleep(RUN_TIME).await;
        done.set();
        // As TinyKV: the network heals before the clients are awaited, since a client's request in
        // flight may need it (under compounded drops, or sent to a minority) to be answered.
        if let Some(h) = chaos {
            h.await;
            c.clear_filters();
            c.sleep(et).await;
        }
        if let Some(h) = changer {
            h.await;
        }
        let mut counts = Vec::with_capacity(clients.len());
        for h in clients {
            counts.push(h.await);
        }
        if p.crash {
            for s in c.env.store_ids() {
                c.stop_store(s);
            }
            c.sleep(et).await;
            for s in c.env.store_ids() {
                c.start_store(s);
            }
        }
        for (cli, &count) in counts.iter().enumerate() {
            let kvs = c.scan(&key(cli, 0), &key(cli, count)).await;
            let got: String = kvs
                .iter()
                .map(|(_, v)| String::from_utf8_lossy(v))
                .collect();
            check_clnt_appends(cli, &got, count);
            // As TinyKV, every appended key is deleted; DELETES_IN_FLIGHT at a time (each is a
            // raft write of its own: one after another they were most of a real-time run).
            let keys: Vec<Vec<u8>> = (0..count).map(|j| key(cli, j)).collect();
            for chunk in keys.chunks(DELETES_IN_FLIGHT) {
                let deletes: Vec<_> = chunk
                    .iter()
                    .map(|k| {
                        let (c2, k) = (c.clone(), k.clone());
                        spawn(&c.env, async move { c2.must_delete(&k).await })
                    })
                    .collect();
                for d in deletes {
                    d.await;
                }
            }
        }
        if let Some(limit) = p.maxraftlog {
            c.sleep(Duration::from_secs(1)).await;
            check_logs_trimmed(&c, limit);
        }
        if p.split {
            let r = c.get_region(b"").await;
            assert!(!r.end_key.is_empty(), "region is not split");
        }
    }
}

/// Every store's apply state keeps applied - truncated <= 2 x limit (`GenericTest`'s check of
/// `maxraftlog`).
pub fn check_logs_trimmed(c: &Cluster, limit: u64) {
    let regions = c.env.scheduler().lock().unwrap().regions();
    for region in regions {
        for s in c.env.store_ids() {
            let Some(state) = c.env.apply_state(s, region.id) else {
                continue;
            };
            let truncated = state.truncated_state.map_or(0, |t| t.index);
            assert!(
                state.applied_index - truncated <= 2 * limit,
                "logs were not trimmed on store {s}: applied {} truncated {truncated} limit {limit}",
                state.applied_index
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concat(cli: usize, js: &[u64]) -> String {
        js.iter().map(|&j| value(cli, j)).collect()
    }

    #[test]
    fn test_check_clnt_appends_accepts_each_append_once_in_order() {
        check_clnt_appends(3, &concat(3, &[0, 1, 2, 10, 11]), 0);
        check_clnt_appends(3, &concat(3, &[0, 1, 2]), 3);
        // Other clients' values and later appends are not this check's business.
        let mixed = concat(1, &[0]) + &concat(3, &[0, 1]) + &concat(3, &[7]);
        check_clnt_appends(3, &mixed, 2);
    }

    #[test]
    #[should_panic(expected = "missing element")]
    fn test_check_clnt_appends_finds_a_missing_append() {
        check_clnt_appends(3, &concat(3, &[0, 2]), 3);
    }

    #[test]
    #[should_panic(expected = "missing element")]
    fn test_check_clnt_appends_does_not_take_a_longer_value_for_an_append() {
        // "x 3 1 y" is not in "x 3 11 y".
        check_clnt_appends(3, &concat(3, &[0, 11]), 2);
    }

    #[test]
    #[should_panic(expected = "duplicate element")]
    fn test_check_clnt_appends_finds_a_duplicate() {
        check_clnt_appends(3, &concat(3, &[0, 1, 1]), 2);
    }

    #[test]
    #[should_panic(expected = "wrong order")]
    fn test_check_clnt_appends_finds_a_wrong_order() {
        check_clnt_appends(3, &concat(3, &[0, 2, 1]), 3);
    }
}
