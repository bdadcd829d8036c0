//! The 2C suite, TinyKV's 2C tests of `kv/test_raftstore/test_test.go`: raft-log GC and
//! snapshots. Every scenario runs on the deterministic simulator over seeds (`sim::`) and once on
//! the threaded runtime with RocksDB and real time (`threaded::`), as the 2B suite does. On the
//! simulator the scenarios also show that snapshots were sent and installed: on every seed for
//! TestOneSnapshot2C (its follower cannot catch up otherwise), on some seed of the set for the
//! unreliable generic scenarios (TinyKV's workload needs one only when a follower falls behind
//! the GC); the restart-only ones rarely or never need one, and assert nothing (`RESTARTS_ONLY`).

use std::time::Duration;

use raftstore::engine::CF_LOCK;
use raftstore::keys::{RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM};
use raftstore::Config;
use test_raftstore::cluster::Cluster;
use test_raftstore::filter::PartitionFilter;
use test_raftstore::generic::{check_logs_trimmed, generic_test, Params};
use test_raftstore::sim::Snapshots;

/// The log-GC limit of the generic 2C scenarios (TinyKV's `maxraftlog` of 100).
const MAX_RAFT_LOG: u64 = 100;
/// What the restart-only scenarios (no drops, no partitions) show about snapshots: nothing. All
/// five stores stop and start together, so a follower falls behind the log GC only when it lags
/// at the moment of a compaction: of seeds 0..50, TestSnapshotRecover2C sent a snapshot on none
/// and TestSnapshotRecoverManyClients2C on 5.
const RESTARTS_ONLY: Snapshots = Snapshots::Any;
/// The log-GC limit of TestOneSnapshot2C.
const ONE_SNAPSHOT_GC_LIMIT: u64 = 10;
/// Simulated seeds per scenario unless `TINYKV_SEEDS` says otherwise.
const SEEDS: u64 = 10;
/// TestSnapshotRecoverManyClients2C's 20 clients scanning their growing ranges make it by far the
/// costliest scenario (several times the CPU of any other per simulated seed): it runs fewer
/// default seeds.
const MANY_CLIENTS_SEEDS: u64 = 2;

fn params(nclients: usize, unreliable: bool, crash: bool, partitions: bool) -> Params {
    Params {
        nclients,
        unreliable,
        crash,
        partitions,
        maxraftlog: Some(MAX_RAFT_LOG),
        confchange: false,
        split: false,
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("v{i}").into_bytes()
}

/// TestOneSnapshot2C: a follower cut off while the leader compacts its log catches up by a
/// snapshot, which carries the lock CF (the only one written), deletions included, and survives
/// a restart.
async fn one_snapshot(c: Cluster) {
    let cf = CF_LOCK;
    c.must_put_cf(cf, b"k1", b"v1").await;
    c.must_put_cf(cf, b"k2", b"v2").await;
    c.must_get_cf_equal(1, cf, b"k1", b"v1").await;
    c.must_get_cf_equal(1, cf, b"k2", b"v2").await;
    for s in c.env.store_ids() {
        let state = c.env.apply_state(s, 1).expect("an apply state");
        let t = state.truncated_state.unwrap_or_default();
        assert_eq!(
            (t.index, t.term),
            (RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM),
            "store {s}: unexpected truncated state"
        );
    }
    c.add_filter(PartitionFilter {
        s1: vec![1],
        s2: vec![2, 3],
    });
    // Enough writes for the majority to compact its log past what store 1 has.
    for i in 100..115 {
        c.must_put_cf(cf, &key(i), &value(i)).await;
    }
    c.must_delete_cf(cf, b"k2").await;
    c.sleep(Duration::from_millis(500)).await;
    c.must_get_cf_none(1, cf, &key(100)).await;
    let majority_truncated = [2, 3]
        .iter()
        .filter_map(|&s| c.env.apply_state(s, 1))
        .filter_map(|a| a.truncated_state.map(|t| t.index))
        .max()
        .unwrap_or(0);
    assert!(
        majority_truncated > RAFT_INIT_LOG_INDEX,
        "the majority did not compact its log"
    );
    c.clear_filters();
    // Now a snapshot must be applied on store 1.
    c.must_get_cf_equal(1, cf, b"k1", b"v1").await;
    c.must_get_cf_equal(1, cf, &key(100), &value(100)).await;
    c.must_get_cf_none(1, cf, b"k2").await;
    let truncated = c
        .env
        .apply_state(1, 1)
        .and_then(|a| a.truncated_state)
        .map_or(0, |t| t.index);
    assert!(
        truncated > RAFT_INIT_LOG_INDEX,
        "store 1 caught up without compacting its log"
    );
    c.stop_store(1);
    c.start_store(1);
    c.must_get_cf_equal(1, cf, b"k1", b"v1").await;
    c.must_get_cf_equal(1, cf, &key(114), &value(114)).await;
    check_logs_trimmed(&c, ONE_SNAPSHOT_GC_LIMIT);
}

macro_rules! suite {
    ($driver:ident, $run:expr) => {
        mod $driver {
            use super::*;

            #[test]
            fn test_one_snapshot_2c() {
                let cfg = Config {
                    raft_log_gc_count_limit: ONE_SNAPSHOT_GC_LIMIT,
                    ..Config::test_config()
                };
                $run(
                    "test_one_snapshot_2c",
                    3,
                    SEEDS,
                    Snapshots::EverySeed,
                    cfg,
                    one_snapshot,
                );
            }

            /// TestSnapshotRecover2C: 1 client appends, log GC at 100 entries, every store
            /// restarted each round; appends all there in order, logs trimmed to <= 200 entries.
            #[test]
            fn test_snapshot_recover_2c() {
                $run(
                    "test_snapshot_recover_2c",
                    5,
                    SEEDS,
                    RESTARTS_ONLY,
                    gc_config(),
                    |c| generic_test(c, params(1, false, true, false)),
                );
            }

            /// TestSnapshotRecoverManyClients2C: 20 clients append with log GC at 100 entries,
            /// every store restarted each round; appends all there in order, logs trimmed.
            #[test]
            fn test_snapshot_recover_many_clients_2c() {
                $run(
                    "test_snapshot_recover_many_clients_2c",
                    5,
                    MANY_CLIENTS_SEEDS,
                    RESTARTS_ONLY,
                    gc_config(),
                    |c| generic_test(c, params(20, false, true, false)),
                );
            }

            /// TestSnapshotUnreliable2C: 5 clients append on a lossy network with log GC at 100;
            /// appends all there in order, logs trimmed, a snapshot installed on some seed.
            #[test]
            fn test_snapshot_unreliable_2c() {
                $run(
                    "test_snapshot_unreliable_2c",
                    5,
                    SEEDS,
                    Snapshots::SomeSeed,
                    gc_config(),
                    |c| generic_test(c, params(5, true, false, false)),
                );
            }

            /// TestSnapshotUnreliableRecover2C: 5 clients, lossy network, log GC at 100, every
            /// store restarted each round; appends in order, logs trimmed, a snapshot on some seed.
            #[test]
            fn test_snapshot_unreliable_recover_2c() {
                $run(
                    "test_snapshot_unreliable_recover_2c",
                    5,
                    SEEDS,
                    Snapshots::SomeSeed,
                    gc_config(),
                    |c| generic_test(c, params(5, true, true, false)),
                );
            }

            /// TestSnapshotUnreliableRecoverConcurrentPartition2C: 5 clients, partitions, drops,
            /// restarts, log GC at 100; appends in order, logs trimmed, a snapshot on some seed.
            #[test]
            fn test_snapshot_unreliable_recover_concurrent_partition_2c() {
                $run(
                    "test_snapshot_unreliable_recover_concurrent_partition_2c",
                    5,
                    SEEDS,
                    Snapshots::SomeSeed,
                    gc_config(),
                    |c| generic_test(c, params(5, true, true, true)),
                );
            }
        }
    };
}

/// The test configuration with TinyKV's `maxraftlog` of 100.
fn gc_config() -> Config {
    Config {
        raft_log_gc_count_limit: MAX_RAFT_LOG,
        ..Config::test_config()
    }
}

fn run_sim<F, Fut>(name: &str, stores: u64, seeds: u64, snapshots: Snapshots, cfg: Config, test: F)
where
    F: Fn(Cluster) -> Fut + Sync,
    Fut: std::future::Future<Output = ()>,
{
    test_raftstore::sim::run_scenario(&format!("sim::{name}"), seeds, stores, cfg, snapshots, test);
}

/// The threaded runtime counts no snapshots: `snapshots` is the simulator's check only.
fn run_threaded<F, Fut>(
    _name: &str,
    stores: u64,
    _seeds: u64,
    _snapshots: Snapshots,
    cfg: Config,
    test: F,
) where
    F: Fn(Cluster) -> Fut + Sync,
    Fut: std::future::Future<Output = ()>,
{
    test_raftstore::threaded::run(stores, cfg, test);
}

suite!(sim, run_sim);
suite!(threaded, run_threaded);
