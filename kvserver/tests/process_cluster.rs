//! Process-level tests: real `tinykv-server` processes on loopback ports with RocksDB in temp
//! directories, driven through gRPC. A leader is SIGKILLed while clients write; every write that
//! was acknowledged must afterwards be in the kv engine of every store, including the killed and
//! restarted one, and a store that was down while the others moved on catches up. Writers use
//! both unary calls and BatchRaw streams.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{engine_get_many, start_cluster, ServerProc};
use kvserver::client::Client;

const FAST: &[&str] = &["--raft-base-tick-ms", "50"];

fn client_of(procs: &[ServerProc]) -> Client {
    Client::new(
        procs.iter().map(|p| p.addr.clone()).collect(),
        Duration::from_secs(20),
    )
    .unwrap()
}

/// Stops every store cleanly and checks each holds every pair of `acked` in its kv engine. A
/// store still catching up gets more time: the cluster is restarted and checked again, up to
/// three times.
fn assert_everywhere(procs: &mut [ServerProc], acked: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let keys: Vec<Vec<u8>> = acked.keys().cloned().collect();
    for round in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        for p in procs.iter_mut() {
            p.terminate();
        }
        let mut missing = Vec::new();
        for p in procs.iter() {
            let got = engine_get_many(&p.dir, "default", &keys);
            let lost = keys
                .iter()
                .zip(&got)
                .filter(|(k, v)| v.as_deref() != Some(acked[*k].as_slice()))
                .count();
            if lost > 0 {
                missing.push((p.addr.clone(), lost));
            }
        }
        if missing.is_empty() {
            return;
        }
        assert!(
            round < 2,
            "acknowledged writes missing after 3 rounds (store, count): {missing:?}"
        );
        for p in procs.iter_mut() {
            p.start();
        }
    }
}

#[test]
fn test_leader_sigkill_loses_no_acknowledged_write() {
    let root = tempfile::tempdir().unwrap();
    let mut procs = start_cluster(root.path(), 3, FAST);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = client_of(&procs);
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    rt.block_on(async {
        client.put("", b"warmup", b"1").await.expect("first write");
    });
    acked
        .lock()
        .unwrap()
        .insert(b"warmup".to_vec(), b"1".to_vec());
    let leader = client.leader().expect("the client found a leader");
    // Eight writers, half of them on BatchRaw streams; the leader dies under them.
    let batched = client_of(&procs).batched();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let client = if w % 2 == 0 { &client } else { &batched };
            let (client, acked) = (client.clone(), acked.clone());
            rt.spawn(async move {
                for i in 0..60 {
                    let k = format!("w{w}-{i:03}").into_bytes();
                    let v = format!("value {w} {i}").into_bytes();
                    if client.put("", &k, &v).await.is_ok() {
                        acked.lock().unwrap().insert(k, v);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let idx = procs.iter().position(|p| p.addr == leader).unwrap();
    procs[idx].kill();
    rt.block_on(async {
        for w in writers {
            w.await.unwrap();
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 400,
        "writes kept succeeding after the kill: {}",
        acked.len()
    );
    procs[idx].start();
    // Reads through the new leader see everything.
    rt.block_on(async {
        for (k, v) in acked.iter().step_by(7) {
            assert_eq!(
                client.get("", k).await.unwrap().as_deref(),
                Some(v.as_slice())
            );
        }
    });
    assert_everywhere(&mut procs, &acked);
}

#[test]
fn test_restarted_store_catches_up() {
    let root = tempfile::tempdir().unwrap();
    let mut procs = start_cluster(root.path(), 3, FAST);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = client_of(&procs);
    let mut acked = BTreeMap::new();
    rt.block_on(async {
        client.put("", b"before", b"0").await.unwrap();
    });
    acked.insert(b"before".to_vec(), b"0".to_vec());
    procs[2].terminate();
    rt.block_on(async {
        for i in 0..300 {
            let k = format!("k{i:04}").into_bytes();
            client.put("", &k, b"while down").await.unwrap();
            acked.insert(k, b"while down".to_vec());
        }
        // Overwrites and deletes while the store is down must reach it too.
        client.put("", b"k0000", b"new").await.unwrap();
        client.delete("", b"k0001").await.unwrap();
    });
    acked.insert(b"k0000".to_vec(), b"new".to_vec());
    acked.remove(b"k0001".as_slice());
    procs[2].start();
    assert_everywhere(&mut procs, &acked);
    let got = engine_get_many(&procs[2].dir, "default", &[b"k0001".to_vec()]);
    assert_eq!(got[0], None, "the delete reached the restarted store");
}

#[test]
fn test_lagging_store_catches_up_by_snapshot() {
    let root = tempfile::tempdir().unwrap();
    // A short log: the writes made while store 3 is down are compacted away, so it can only
    // catch up through a snapshot streamed over the `Snapshot` RPC.
    let args = [
        "--raft-base-tick-ms",
        "50",
        "--raft-log-gc-count-limit",
        "20",
    ];
    let mut procs = start_cluster(root.path(), 3, &args);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = client_of(&procs);
    let mut acked = BTreeMap::new();
    procs[2].terminate();
    rt.block_on(async {
        for i in 0..400 {
            let k = format!("s{i:04}").into_bytes();
            let v = vec![b'v'; 1000];
            client.put("", &k, &v).await.unwrap();
            acked.insert(k, v);
        }
        client.put("lock", b"only-in-lock", b"L").await.unwrap();
    });
    procs[2].start();
    assert_everywhere(&mut procs, &acked);
    let got = engine_get_many(&procs[2].dir, "lock", &[b"only-in-lock".to_vec()]);
    assert_eq!(
        got[0].as_deref(),
        Some(&b"L"[..]),
        "every column family travels"
    );
    let log = procs[2].log_text();
    assert!(
        log.contains("snapshot received"),
        "store 3 caught up without a snapshot: the log was not compacted?\n{log}"
    );
}

#[test]
fn test_batched_client_reconnects_to_a_restarted_store() {
    let root = tempfile::tempdir().unwrap();
    let mut procs = start_cluster(root.path(), 1, FAST);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = client_of(&procs).batched();
    rt.block_on(async {
        client.put("", b"k", b"1").await.unwrap();
    });
    // The store goes away under the open stream and comes back on the same address: the next
    // requests open a new stream to it.
    procs[0].kill();
    procs[0].start();
    rt.block_on(async {
        assert_eq!(
            client.get("", b"k").await.unwrap().as_deref(),
            Some(&b"1"[..])
        );
        let puts: Vec<_> = (0..32u8)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move { client.put("", &[b'p', i], &[i]).await })
            })
            .collect();
        for p in puts {
            p.await.unwrap().unwrap();
        }
        let got = client.scan("", b"p", 100).await.unwrap();
        assert_eq!(got.len(), 32);
        assert!(got.iter().all(|(k, v)| k[1] == v[0]));
    });
}
