//! The 3B suite, TinyKV's 3B tests of `kv/test_raftstore/test_test.go` (leader transfer,
//! membership change, region split) and `TestDifferentDBPath` of
//! `kv/test_raftstore/cluster_test.go`: every scenario on the deterministic simulator over seeds
//! (`sim::`) and once on the threaded runtime with RocksDB and real time (`threaded::`), as the
//! 2B suite does; the DB-path check runs on the threaded runtime only (the simulator's engines
//! have no directories).

use std::time::Duration;

use prost::Message;
use proto::eraftpb::MessageType;
use proto::metapb::Peer;
use proto::raft_cmdpb::{AdminCmdType, AdminRequest, SplitRequest};
use proto::raft_serverpb::StoreIdent;
use raftstore::engine::{CF_DEFAULT, CF_RAFT};
use raftstore::keys::STORE_IDENT_KEY;
use raftstore::Config;
use test_raftstore::cluster::{
    new_admin_request, new_get_cf_cmd, new_put_cf_cmd, new_request, Cluster,
};
use test_raftstore::env::call_command_on_store;
use test_raftstore::filter::{PartitionFilter, RegionMessageFilter};
use test_raftstore::generic::{generic_config, generic_test, Params};
use test_raftstore::scheduler::find_peer;

/// Simulated seeds per scenario unless `TINYKV_SEEDS` says otherwise.
const SEEDS: u64 = 10;
/// The 20-client scenarios cost several times any other per simulated seed (as in the 2C suite):
/// fewer default seeds.
const MANY_CLIENTS_SEEDS: u64 = 2;
/// The log-GC limit of the snapshot scenarios (TinyKV's `maxraftlog` of 100).
const MAX_RAFT_LOG: u64 = 100;
/// TestOneSplit3B's `region_max_size` (TinyKV: `RegionMaxSize = 800`, `RegionSplitSize = 500`).
const ONE_SPLIT_MAX_SIZE: u64 = 800;
/// TestOneSplit3B's `region_split_size`.
const ONE_SPLIT_SPLIT_SIZE: u64 = 500;

/// TinyKV's `GenericTest` parameters, in its order.
fn params(
    nclients: usize,
    unreliable: bool,
    crash: bool,
    partitions: bool,
    maxraftlog: Option<u64>,
    confchange: bool,
    split: bool,
) -> Params {
    Params {
        nclients,
        unreliable,
        crash,
        partitions,
        maxraftlog,
        confchange,
        split,
    }
}

fn peer(store_id: u64, id: u64) -> Peer {
    Peer { id, store_id }
}

/// TestTransferLeader3B: the leadership goes to each of the five peers in turn.
async fn transfer_leader(c: Cluster) {
    let region_id = c.get_region(b"").await.id;
    for i in 1..=5 {
        c.must_transfer_leader(region_id, peer(i, i)).await;
    }
}

/// TestBasicConfChange3B: peers removed and added one at a time; a removed store's data goes, an
/// added one catches up (by snapshot), and a store can host a new peer of a region its old peer
/// left.
async fn basic_conf_change(c: Cluster) {
    c.must_transfer_leader(1, peer(1, 1)).await;
    for i in 2..=5 {
        c.must_remove_peer(1, peer(i, i)).await;
    }

    c.must_put(b"k1", b"v1").await;
    c.must_get_none(2, b"k1").await;

    c.must_add_peer(1, peer(2, 2)).await;
    c.must_put(b"k2", b"v2").await;
    c.must_get(b"k2", b"v2").await;
    c.must_get_equal(2, b"k1", b"v1").await;
    c.must_get_equal(2, b"k2", b"v2").await;

    let epoch = c
        .get_region(b"k1")
        .await
        .region_epoch
        .expect("a region has an epoch");
    assert!(
        epoch.conf_ver > 1,
        "conf_ver {} after conf changes",
        epoch.conf_ver
    );

    c.must_get_none(5, b"k1").await;

    c.must_add_peer(1, peer(3, 3)).await;
    c.must_remove_peer(1, peer(2, 2)).await;

    c.must_put(b"k3", b"v3").await;
    c.must_get(b"k3", b"v3").await;
    c.must_get_equal(3, b"k1", b"v1").await;
    c.must_get_equal(3, b"k2", b"v2").await;
    c.must_get_equal(3, b"k3", b"v3").await;

    c.must_get_none(2, b"k1").await;
    c.must_get_none(2, b"k2").await;

    c.must_add_peer(1, peer(2, 2)).await;
    c.must_get_equal(2, b"k1", b"v1").await;
    c.must_get_equal(2, b"k2", b"v2").await;
    c.must_get_equal(2, b"k3", b"v3").await;

    c.must_remove_peer(1, peer(2, 2)).await;
    c.must_add_peer(1, peer(2, 4)).await;
    c.must_remove_peer(1, peer(3, 3)).await;

    c.must_put(b"k4", b"v4").await;
    c.must_get_equal(2, b"k1", b"v1").await;
    c.must_get_equal(2, b"k4", b"v4").await;
    c.must_get_none(3, b"k1").await;
    c.must_get_none(3, b"k4").await;
}

/// TestConfChangeRemoveLeader3B: the leader is removed, from a five-peer region and then from a
/// two-peer one, and the region keeps serving through the peers left.
async fn conf_change_remove_leader(c: Cluster) {
    c.must_transfer_leader(1, peer(1, 1)).await;
    c.must_remove_peer(1, peer(1, 1)).await;
    c.must_put(b"k0", b"v0").await;
    c.must_get_none(1, b"k0").await;

    c.must_add_peer(1, peer(1, 1)).await;
    c.must_transfer_leader(1, peer(1, 1)).await;
    c.must_put(b"k1", b"v1").await;
    c.must_get_equal(1, b"k0", b"v0").await;
    c.must_get_equal(1, b"k1", b"v1").await;

    c.must_remove_peer(1, peer(2, 2)).await;
    c.must_remove_peer(1, peer(3, 3)).await;
    c.must_remove_peer(1, peer(4, 4)).await;

    // The leader of a two-peer region, {1, 5}, removed.
    c.must_remove_peer(1, peer(1, 1)).await;

    c.must_put(b"k2", b"v2").await;
    c.must_get_none(1, b"k2").await;
    c.must_add_peer(1, peer(1, 1)).await;
    c.must_put(b"k3", b"v3").await;
    c.must_get_none(3, b"k3").await;
    c.must_get_equal(1, b"k3", b"v3").await;
}

/// TestOneSplit3B: writes split the region while store 5 is cut off; the two halves tile the old
/// range, the left one refuses a key of the right one, and store 5 catches up after healing.
async fn one_split(c: Cluster) {
    c.must_put(b"k1", b"v1").await;
    c.must_put(b"k2", b"v2").await;

    let region = c.get_region(b"k1").await;
    let region1 = c.get_region(b"k2").await;
    assert_eq!(region.id, region1.id, "k1 and k2 start in one region");

    c.add_filter(PartitionFilter {
        s1: vec![1, 2, 3, 4],
        s2: vec![5],
    });

    for i in 100..200 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        c.must_put(k.as_bytes(), v.as_bytes()).await;
    }

    c.sleep(Duration::from_millis(200)).await;
    c.clear_filters();

    let left = c.get_region(b"k1").await;
    let right = c.get_region(b"k2").await;

    assert_ne!(left.id, right.id, "k1 and k2 are in one region: no split");
    assert_eq!(region.start_key, left.start_key);
    assert_eq!(left.end_key, right.start_key);
    assert_eq!(right.end_key, region.end_key);

    let req = new_request(&left, None, vec![new_get_cf_cmd(CF_DEFAULT, b"k2")]);
    let resp = c
        .call_command_on_leader(req, Duration::from_secs(1))
        .await
        .expect("the left region's leader answers");
    let err = resp
        .region_error()
        .unwrap_or_else(|| panic!("Get(k2) on the left region succeeded: {:?}", resp.resp));
    assert!(
        err.key_not_in_region.is_some(),
        "Get(k2) on the left region: {err:?}, want KeyNotInRegion"
    );

    c.must_get_equal(5, b"k100", b"v100").await;
}

/// Ours (no stage suffix: not one of TinyKV's tests; the bug zoo runs it against
/// ignore-the-region-on-apply): a put proposed to a region before a split moves its key out,
/// and committed after that split, is refused when it is applied (EpochNotMatch: the apply path
/// checks every command's epoch, as TinyKV's `kv/raftstore/peer_msg_handler.go` does), never
/// written over the new region's data. Store 5 is made to apply the split, then a newer write of
/// the new region, and only then the stale put: it learns the split's commit from heartbeats
/// while the appends carrying the put are held back. Had it applied the put, the new region's
/// replica on store 5 would serve the stale value.
async fn stale_write_after_split(c: Cluster) {
    let leader = peer(1, 1);
    c.must_transfer_leader(1, leader).await;
    c.must_put(b"a", b"0").await;
    c.must_put(b"z", b"0").await;
    let region = c.get_region(b"").await;
    let hold_appends = |to_stores: Vec<u64>| RegionMessageFilter {
        region_id: region.id,
        msg_type: MessageType::MsgAppend,
        to_stores,
    };

    // 1. Only store 5 gets the split's entry: no quorum has it, so it is not committed.
    c.add_filter(hold_appends(vec![2, 3, 4]));
    let ids = c
        .env
        .scheduler()
        .lock()
        .unwrap()
        .ask_split(&region)
        .expect("ids for the split");
    let mut split = new_admin_request(
        &region,
        AdminRequest {
            cmd_type: AdminCmdType::Split as i32,
            split: Some(SplitRequest {
                split_key: b"m".to_vec(),
                new_region_id: ids.new_region_id,
                new_peer_ids: ids.new_peer_ids,
            }),
            ..Default::default()
        },
    );
    if let Some(h) = split.header.as_mut() {
        h.peer = Some(leader);
    }
    // A command to the leader's store, answered later (the test goes on meanwhile).
    let send = |req| {
        let env = c.env.clone();
        c.env.executor().spawn(async move {
            call_command_on_store(&env, 1, req, Duration::from_secs(10)).await
        })
    };
    let split_done = send(split);
    // Many round trips, even on a loaded machine (the real-time driver).
    c.sleep(Duration::from_millis(300)).await;

    // 2. The put, proposed while the region still holds "z"; no store gets it yet.
    c.clear_filters();
    c.add_filter(hold_appends(vec![2, 3, 4, 5]));
    let stale = new_request(
        &region,
        Some(leader),
        vec![new_put_cf_cmd(CF_DEFAULT, b"z", b"stale")],
    );
    let stale_done = send(stale);
    c.sleep(Duration::from_millis(300)).await;

    // 3. Stores 2-4 get both entries, which commit; store 5 hears in heartbeats that what it
    // has, the split, is committed, and applies it.
    c.clear_filters();
    c.add_filter(hold_appends(vec![5]));
    let resp = split_done.await.expect("the split is answered");
    assert!(
        resp.region_error().is_none(),
        "the split failed: {:?}",
        resp.resp
    );
    let stale_resp = stale_done.await;

    // 4. A newer write of the new region reaches store 5; then one of the old region, after
    // the stale put in its log, and store 5 gets the old region's appends again.
    c.must_put(b"z", b"new").await;
    c.must_get_equal(5, b"z", b"new").await;
    // The scenario held: store 5 has applied the split (its replica of the new region serves
    // z), but not the stale put after it, which store 1 applied.
    let applied = |store| {
        c.env
            .apply_state(store, region.id)
            .map_or(0, |s| s.applied_index)
    };
    assert!(
        applied(5) < applied(1),
        "store 5 applied the old region up to {}, store 1 up to {}: the stale put reached \
         store 5 with the split (the test's filters did not hold it back)",
        applied(5),
        applied(1)
    );
    c.must_put(b"a", b"1").await;
    c.clear_filters();
    c.must_get_equal(5, b"a", b"1").await;

    // Store 5 has applied the old region's log past the stale put.
    let on_5 = c.env.engine_get(5, CF_DEFAULT, b"z");
    assert_eq!(
        on_5.as_deref(),
        Some(&b"new"[..]),
        "store 5 holds z = {:?}: a put proposed before the split was applied after it, over \
         the new region's newer write",
        on_5.as_deref().map(String::from_utf8_lossy)
    );
    let right = c.get_region(b"z").await;
    assert_ne!(right.id, region.id, "z moved to the new region");
    let on_store_5 = find_peer(&right, 5).expect("the new region has a replica on store 5");
    c.must_transfer_leader(right.id, on_store_5).await;
    c.must_get(b"z", b"new").await;
    match stale_resp {
        Some(resp) => {
            let err = resp.region_error().unwrap_or_else(|| {
                panic!(
                    "a put proposed before the split and committed after it was answered OK: \
                     {:?}",
                    resp.resp
                )
            });
            assert!(
                err.epoch_not_match.is_some() || err.key_not_in_region.is_some(),
                "the stale put: {err:?}, want EpochNotMatch"
            );
        }
        None => panic!("the stale put was not answered"),
    }
}

/// TestDifferentDBPath: the stores of a cluster do not share an engine. The threaded env does
/// not expose its engines' directories, so this reads what each one holds: every store's kv
/// engine carries its own store ident (stores sharing a directory would share one ident, or
/// could not open it twice).
async fn different_db_path(c: Cluster) {
    let stores = c.env.store_ids();
    assert_eq!(stores.len(), 5);
    for s in stores {
        let raw = c
            .env
            .engine_get(s, CF_RAFT, STORE_IDENT_KEY)
            .unwrap_or_else(|| panic!("store {s} has no store ident"));
        let ident = StoreIdent::decode(raw.as_slice()).expect("a store ident");
        assert_eq!(ident.store_id, s, "store {s} reads another store's engine");
    }
}

/// The test configuration with TestOneSplit3B's region sizes.
fn one_split_config() -> Config {
    Config {
        region_max_size: ONE_SPLIT_MAX_SIZE,
        region_split_size: ONE_SPLIT_SPLIT_SIZE,
        ..Config::test_config()
    }
}

/// A generic scenario: its configuration and body.
macro_rules! generic {
    ($run:expr, $name:expr, $seeds:expr, $p:expr) => {{
        let p = $p;
        $run($name, $seeds, generic_config(&p), move |c| {
            generic_test(c, p)
        });
    }};
}

macro_rules! suite {
    ($driver:ident, $run:expr, { $($extra:item)* }) => {
        mod $driver {
            use super::*;

            #[test]
            fn test_transfer_leader_3b() {
                $run("test_transfer_leader_3b", SEEDS, Config::test_config(), transfer_leader);
            }

            #[test]
            fn test_basic_conf_change_3b() {
                $run(
                    "test_basic_conf_change_3b",
                    SEEDS,
                    Config::test_config(),
                    basic_conf_change,
                );
            }

            #[test]
            fn test_conf_change_remove_leader_3b() {
                $run(
                    "test_conf_change_remove_leader_3b",
                    SEEDS,
                    Config::test_config(),
                    conf_change_remove_leader,
                );
            }

            /// TestConfChangeRecover3B: 1 client appends under random peer adds and removes (first
            /// round), every store restarted each round; its appends are all there, in order.
            #[test]
            fn test_conf_change_recover_3b() {
                generic!($run, "test_conf_change_recover_3b", SEEDS,
                    params(1, false, true, false, None, true, false));
            }

            /// TestConfChangeRecoverManyClients3B: 20 clients append under random peer changes
            /// (first round), every store restarted each round; appends all there, in order.
            #[test]
            fn test_conf_change_recover_many_clients_3b() {
                generic!($run, "test_conf_change_recover_many_clients_3b", MANY_CLIENTS_SEEDS,
                    params(20, false, true, false, None, true, false));
            }

            /// TestConfChangeUnreliable3B: 5 clients append under random peer adds and removes over
            /// a lossy network; each client's appends are all there, once and in order.
            #[test]
            fn test_conf_change_unreliable_3b() {
                generic!($run, "test_conf_change_unreliable_3b", SEEDS,
                    params(5, true, false, false, None, true, false));
            }

            /// TestConfChangeUnreliableRecover3B: 5 clients, random peer adds and removes, a lossy
            /// network, restarts each round; appends all there, once and in order.
            #[test]
            fn test_conf_change_unreliable_recover_3b() {
                generic!($run, "test_conf_change_unreliable_recover_3b", SEEDS,
                    params(5, true, true, false, None, true, false));
            }

            /// TestConfChangeSnapshotUnreliableRecover3B: 5 clients, random peer changes, lossy
            /// network, restarts, log GC at 100; appends all there in order, logs trimmed.
            #[test]
            fn test_conf_change_snapshot_unreliable_recover_3b() {
                generic!($run, "test_conf_change_snapshot_unreliable_recover_3b", SEEDS,
                    params(5, true, true, false, Some(MAX_RAFT_LOG), true, false));
            }

            /// TestConfChangeSnapshotUnreliableRecoverConcurrentPartition3B: 5 clients, peer
            /// changes, partitions, drops, restarts, log GC at 100; appends in order, logs trimmed.
            #[test]
            fn test_conf_change_snapshot_unreliable_recover_concurrent_partition_3b() {
                generic!($run,
                    "test_conf_change_snapshot_unreliable_recover_concurrent_partition_3b", SEEDS,
                    params(5, true, true, true, Some(MAX_RAFT_LOG), true, false));
            }

            #[test]
            fn test_one_split_3b() {
                $run("test_one_split_3b", SEEDS, one_split_config(), one_split);
            }

            /// TestSplitRecover3B: 1 client appends into 300-byte regions, every store restarted
            /// each round; its appends all there in order, and the first region has split.
            #[test]
            fn test_split_recover_3b() {
                generic!($run, "test_split_recover_3b", SEEDS,
                    params(1, false, true, false, None, false, true));
            }

            /// TestSplitRecoverManyClients3B: 20 clients append into 300-byte regions, every store
            /// restarted each round; appends all there in order, the first region split.
            #[test]
            fn test_split_recover_many_clients_3b() {
                generic!($run, "test_split_recover_many_clients_3b", MANY_CLIENTS_SEEDS,
                    params(20, false, true, false, None, false, true));
            }

            /// TestSplitUnreliable3B: 5 clients append into 300-byte regions over a lossy network;
            /// appends all there in order, and the first region has split.
            #[test]
            fn test_split_unreliable_3b() {
                generic!($run, "test_split_unreliable_3b", SEEDS,
                    params(5, true, false, false, None, false, true));
            }

            /// TestSplitUnreliableRecover3B: 5 clients, 300-byte regions, a lossy network, every
            /// store restarted each round; appends all there in order, the first region split.
            #[test]
            fn test_split_unreliable_recover_3b() {
                generic!($run, "test_split_unreliable_recover_3b", SEEDS,
                    params(5, true, true, false, None, false, true));
            }

            /// TestSplitConfChangeSnapshotUnreliableRecover3B: 5 clients, 300-byte regions, peer
            /// changes, drops, restarts, log GC at 100; appends in order, logs trimmed, split.
            #[test]
            fn test_split_conf_change_snapshot_unreliable_recover_3b() {
                generic!($run, "test_split_conf_change_snapshot_unreliable_recover_3b", SEEDS,
                    params(5, true, true, false, Some(MAX_RAFT_LOG), true, true));
            }

            /// TestSplitConfChangeSnapshotUnreliableRecoverConcurrentPartition3B: GenericTest with
            /// every option on, 5 clients; appends in order, logs trimmed (GC 100), region split.
            #[test]
            fn test_split_conf_change_snapshot_unreliable_recover_concurrent_partition_3b() {
                generic!($run,
                    "test_split_conf_change_snapshot_unreliable_recover_concurrent_partition_3b",
                    SEEDS,
                    params(5, true, true, true, Some(MAX_RAFT_LOG), true, true));
            }

            /// Ours: a put proposed before a split that moves its key out is refused when
            /// applied after the split (see `stale_write_after_split`).
            #[test]
            fn test_a_write_proposed_before_a_split_is_refused_after_it() {
                $run(
                    "test_a_write_proposed_before_a_split_is_refused_after_it",
                    SEEDS,
                    Config::test_config(),
                    stale_write_after_split,
                );
            }

            $($extra)*
        }
    };
}

fn run_sim<F, Fut>(name: &str, seeds: u64, cfg: Config, test: F)
where
    F: Fn(Cluster) -> Fut + Sync,
    Fut: std::future::Future<Output = ()>,
{
    test_raftstore::sim::run_seeds(&format!("sim::{name}"), seeds, 5, cfg, test);
}

fn run_threaded<F, Fut>(_name: &str, _seeds: u64, cfg: Config, test: F)
where
    F: Fn(Cluster) -> Fut + Sync,
    Fut: std::future::Future<Output = ()>,
{
    test_raftstore::threaded::run(5, cfg, test);
}

suite!(sim, run_sim, {});
suite!(threaded, run_threaded, {
    #[test]
    fn test_different_db_path_3b() {
        test_raftstore::threaded::run(5, Config::test_config(), different_db_path);
    }
});
