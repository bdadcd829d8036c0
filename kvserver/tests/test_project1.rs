//! Project 1: the raw API over standalone storage, TinyKV's `kv/server/server_test.go` tests
//! with the `_1` suffix. Each test opens a fresh RocksDB in a temp dir and calls the service's
//! handlers directly (no network), reading and writing the storage underneath to check them.

use std::collections::HashMap;

use kvserver::service::TinyKvService;
use kvserver::storage::standalone::StandaloneStorage;
use kvserver::storage::{Modify, StorageReader};
use kvserver::tinykvpb::tiny_kv_server::TinyKv;
use proto::kvrpcpb::{RawDeleteRequest, RawGetRequest, RawPutRequest, RawScanRequest};
use raftstore::engine::{CF_DEFAULT, CF_WRITE};
use tonic::Request;

struct Fixture {
    _dir: tempfile::TempDir,
    storage: StandaloneStorage,
    server: TinyKvService<StandaloneStorage>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = StandaloneStorage::open(dir.path().join("db")).unwrap();
    let server = TinyKvService::new(
        storage.clone(),
        0,
        None,
        HashMap::new(),
        1 << 20,
        slog::Logger::root(slog::Discard, slog::o!()),
    );
    Fixture {
        _dir: dir,
        storage,
        server,
    }
}

impl Fixture {
    fn set(&self, cf: &str, key: &[u8], value: &[u8]) {
        self.storage
            .write_batch(vec![Modify::Put {
                cf: cf.into(),
                key: key.to_vec(),
                value: value.to_vec(),
            }])
            .unwrap();
    }

    fn get(&self, cf: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.storage.snapshot_reader().get_cf(cf, key).unwrap()
    }

    async fn raw_get(&self, cf: &str, key: &[u8]) -> (Vec<u8>, bool) {
        let r = self
            .server
            .raw_get(Request::new(RawGetRequest {
                context: None,
                key: key.to_vec(),
                cf: cf.into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(r.region_error.is_none() && r.error.is_empty());
        (r.value, r.not_found)
    }

    async fn raw_put(&self, cf: &str, key: &[u8], value: &[u8]) {
        let r = self
            .server
            .raw_put(Request::new(RawPutRequest {
                context: None,
                key: key.to_vec(),
                value: value.to_vec(),
                cf: cf.into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(r.region_error.is_none() && r.error.is_empty());
    }

    async fn raw_delete(&self, cf: &str, key: &[u8]) {
        let r = self
            .server
            .raw_delete(Request::new(RawDeleteRequest {
                context: None,
                key: key.to_vec(),
                cf: cf.into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(r.region_error.is_none() && r.error.is_empty());
    }

    async fn raw_scan(&self, cf: &str, start: &[u8], limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        let r = self
            .server
            .raw_scan(Request::new(RawScanRequest {
                context: None,
                start_key: start.to_vec(),
                limit,
                cf: cf.into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(r.region_error.is_none() && r.error.is_empty());
        r.kvs.into_iter().map(|p| (p.key, p.value)).collect()
    }

    /// Keys {1}..{5} with values {233, k}.
    fn five_keys(&self) {
        for k in 1..=5u8 {
            self.set(CF_DEFAULT, &[k], &[233, k]);
        }
    }
}

fn pairs(keys: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    keys.iter().map(|&k| (vec![k], vec![233, k])).collect()
}

/// TestRawGet1: a value written straight to the default CF is returned by RawGet, not_found false.
#[tokio::test]
async fn test_raw_get_1() {
    let f = fixture();
    f.set(CF_DEFAULT, &[99], &[42]);
    assert_eq!(f.raw_get(CF_DEFAULT, &[99]).await, (vec![42], false));
}

/// TestRawGetNotFound1: RawGet of a key never written answers not_found.
#[tokio::test]
async fn test_raw_get_not_found_1() {
    let f = fixture();
    let (_, not_found) = f.raw_get(CF_DEFAULT, &[99]).await;
    assert!(not_found);
}

/// TestRawPut1: after RawPut the storage holds the value under the key in the default CF.
#[tokio::test]
async fn test_raw_put_1() {
    let f = fixture();
    f.raw_put(CF_DEFAULT, &[99], &[42]).await;
    assert_eq!(f.get(CF_DEFAULT, &[99]), Some(vec![42]));
}

/// TestRawGetAfterRawPut1: values RawPut under one key in the default and the write CF are each
/// read back by RawGet from their own CF.
#[tokio::test]
async fn test_raw_get_after_raw_put_1() {
    let f = fixture();
    f.raw_put(CF_DEFAULT, &[99], &[42]).await;
    f.raw_put(CF_WRITE, &[99], &[43]).await;
    assert_eq!(f.raw_get(CF_DEFAULT, &[99]).await, (vec![42], false));
    assert_eq!(f.raw_get(CF_WRITE, &[99]).await, (vec![43], false));
}

/// TestRawGetAfterRawDelete1: after RawDelete of a stored key, RawGet of it answers not_found.
#[tokio::test]
async fn test_raw_get_after_raw_delete_1() {
    let f = fixture();
    f.set(CF_DEFAULT, &[99], &[42]);
    f.raw_delete(CF_DEFAULT, &[99]).await;
    assert!(f.raw_get(CF_DEFAULT, &[99]).await.1);
}

/// TestRawDelete1: RawDelete removes a stored key from the storage's default CF.
#[tokio::test]
async fn test_raw_delete_1() {
    let f = fixture();
    f.set(CF_DEFAULT, &[99], &[42]);
    f.raw_delete(CF_DEFAULT, &[99]).await;
    assert_eq!(f.get(CF_DEFAULT, &[99]), None);
}

/// TestRawScan1: over keys 1..5, RawScan from key 1 with limit 3 returns keys 1, 2, 3 with their
/// values, in order.
#[tokio::test]
async fn test_raw_scan_1() {
    let f = fixture();
    f.five_keys();
    assert_eq!(f.raw_scan(CF_DEFAULT, &[1], 3).await, pairs(&[1, 2, 3]));
}

/// TestRawScanAfterRawPut1: keys 1..4 stored and key 5 RawPut; RawScan from 1 (limit 10) returns
/// all five in order, and not a key RawPut to the write CF.
#[tokio::test]
async fn test_raw_scan_after_raw_put_1() {
    let f = fixture();
    for k in 1..=4u8 {
        f.set(CF_DEFAULT, &[k], &[233, k]);
    }
    f.raw_put(CF_DEFAULT, &[5], &[233, 5]).await;
    // Another CF's keys stay out of the scan.
    f.raw_put(CF_WRITE, &[0], &[0]).await;
    assert_eq!(
        f.raw_scan(CF_DEFAULT, &[1], 10).await,
        pairs(&[1, 2, 3, 4, 5])
    );
}

/// TestRawScanAfterRawDelete1: after RawDelete of key 3 of keys 1..5, RawScan from 1 with limit 3
/// returns keys 1, 2, 4.
#[tokio::test]
async fn test_raw_scan_after_raw_delete_1() {
    let f = fixture();
    f.five_keys();
    f.raw_delete(CF_DEFAULT, &[3]).await;
    assert_eq!(f.raw_scan(CF_DEFAULT, &[1], 3).await, pairs(&[1, 2, 4]));
}

/// TestIterWithRawDelete1: a storage reader taken before RawDelete of key 3 still scans keys 1, 2,
/// 3, 4: its snapshot predates the delete.
#[tokio::test]
async fn test_iter_with_raw_delete_1() {
    let f = fixture();
    f.five_keys();
    let reader = f.storage.snapshot_reader();
    f.raw_delete(CF_DEFAULT, &[3]).await;
    let mut seen = Vec::new();
    reader
        .scan_cf(CF_DEFAULT, &[1], &mut |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            seen.len() < 4
        })
        .unwrap();
    assert_eq!(
        seen,
        pairs(&[1, 2, 3, 4]),
        "the reader's snapshot predates the delete"
    );
}
