//! Project 4C: the transactional commands KvBatchRollback, KvCheckTxnStatus, KvResolveLock and
//! KvScan, a port of every test of TinyKV's `kv/transaction/commands4c_test.go`,
//! with its exact data, run through the harness of `txn_harness` (TinyKV's
//! `kv/transaction/commands_test.go`).

mod txn_harness;

use proto::kvrpcpb::Action;
use raftstore::engine::{CF_DEFAULT, CF_LOCK, CF_WRITE};
use txn_harness::{kv, new_builder, resolve_request, unchanged, TestBuilder};

/// A rollback with no keys.
#[test]
fn test_empty_rollback_4c() {
    let mut builder = new_builder();
    let cmd = builder.rollback_request(&[]);
    let resp = builder.run_one_request(cmd);

    assert!(resp.error.is_none(), "{resp:?}");
    assert!(resp.region_error.is_none(), "{resp:?}");
    builder.assert_lens(0, 0, 0);
}

/// A successful rollback.
#[test]
fn test_rollback_4c() {
    let mut builder = new_builder();
    let cmd = builder.rollback_request(&[&[3]]);

    builder.init(&[
        // See test_single_prewrite_4b.
        kv(CF_DEFAULT, &[3], 0, &[42]),
        kv(
            CF_LOCK,
            &[3],
            0,
            &[
                1,
                1,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                builder.ts(),
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ],
        ),
    ]);
    let resp = builder.run_one_request(cmd);

    assert!(resp.error.is_none(), "{resp:?}");
    assert!(resp.region_error.is_none(), "{resp:?}");
    builder.assert_lens(0, 0, 1);
    builder.assert(&[kv(
        CF_WRITE,
        &[3],
        0,
        &[3, 0, 0, 0, 0, 0, 0, 0, builder.ts()],
    )]);
}

/// A rollback of multiple keys, including one duplicated key.
#[test]
fn test_rollback_duplicate_keys_4c() {
    let mut builder = new_builder();
    let cmd = builder.rollback_request(&[&[3], &[15], &[3]]);

    builder.init(&[
        kv(CF_DEFAULT, &[3], 0, &[42]),
        kv(
            CF_LOCK,
            &[3],
            0,
            &[
                1,
                1,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                builder.ts(),
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ],
        ),
        kv(CF_DEFAULT, &[15], 0, &[0]),
        kv(
            CF_LOCK,
            &[15],
            0,
            &[
                1,
                1,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                builder.ts(),
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ],
        ),
    ]);
    let resp = builder.run_one_request(cmd);

    assert!(resp.error.is_none(), "{resp:?}");
    assert!(resp.region_error.is_none(), "{resp:?}");
    builder.assert_lens(0, 0, 2);
    builder.assert(&[
        kv(CF_WRITE, &[3], 0, &[3, 0, 0, 0, 0, 0, 0, 0, builder.ts()]),
        kv(CF_WRITE, &[15], 0, &[3, 0, 0, 0, 0, 0, 0, 0, builder.ts()]),
    ]);
}

/// Rolling back a missing prewrite.
#[test]
fn test_rollback_missing_prewrite_4c() {
    let mut builder = new_builder();
    let cmd = builder.rollback_request(&[&[3]]);
    let resp = builder.run_one_request(cmd);

    assert!(resp.error.is_none(), "{resp:?}");
    assert!(resp.region_error.is_none(), "{resp:?}");
    builder.assert_lens(0, 0, 1);
    builder.assert(&[kv(
        CF_WRITE,
        &[3],
        0,
        &[3, 0, 0, 0, 0, 0, 0, 0, builder.ts()],
    )]);
}

/// Rolling back a transaction which is already committed.
#[test]
fn test_rollback_committed_4c() {
    let mut builder = new_builder();
    let cmd = builder.rollback_request(&[&[3]]);

    builder.init(&[
        kv(CF_DEFAULT, &[3], 0, &[42]),
        kv(CF_WRITE, &[3], 110, &[1, 0, 0, 0, 0, 0, 0, 0, builder.ts()]),
    ]);
    let resp = builder.run_one_request(cmd);

    // Go's `assert.NotNil(resp.Error.Abort)` only requires the error to be there (a Go string is
    // never nil); this port checks for a non-empty `abort` (docs/TRANSACTIONS.md,
    // KvBatchRollback).
    let error = resp
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("a key error: {resp:?}"));
    assert!(!error.abort.is_empty(), "{resp:?}");
    assert!(resp.region_error.is_none(), "{resp:?}");
    builder.assert_lens(1, 0, 1);
    builder.assert(&[
        unchanged(CF_DEFAULT, &[3], 0),
        unchanged(CF_WRITE, &[3], 110),
    ]);
}

/// Rolling back a transaction which has already been rolled back.
#[test]
fn test_rollback_duplicate_4c() {
    let mut builder = new_builder();
    let cmd = builder.rollback_request(&[&[3]]);

    builder.init(&[kv(
        CF_WRITE,
        &[3],
        100,
        &[3, 0, 0, 0, 0, 0, 0, 0, builder.ts()],
    )]);
    let resp = builder.run_one_request(cmd);

    assert!(resp.error.is_none(), "{resp:?}");
    assert!(resp.region_error.is_none(), "{resp:?}");
    builder.assert_lens(0, 0, 1);
    builder.assert(&[unchanged(CF_WRITE, &[3], 100)]);
}

/// Rolling back the wrong transaction.
#[test]
fn test_rollback_other_txn_4c() {
    let mut builder = new_builder();
    let cmd = builder.rollback_request(&[&[3]]);

    builder.init(&[
        kv(CF_DEFAULT, &[3], 80, &[42]),
        kv(
            CF_LOCK,
            &[3],
            0,
            &[1, 1, 0, 0, 0, 0, 0, 0, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
    ]);
    let resp = builder.run_one_request(cmd);

    assert!(resp.error.is_none(), "{resp:?}");
    assert!(resp.region_error.is_none(), "{resp:?}");
    builder.assert_lens(1, 1, 1);
    builder.assert(&[
        unchanged(CF_DEFAULT, &[3], 80),
        unchanged(CF_LOCK, &[3], 0),
        kv(CF_WRITE, &[3], 100, &[3, 0, 0, 0, 0, 0, 0, 0, builder.ts()]),
    ]);
}

/// A lock whose ttl has expired is rolled back.
#[test]
fn test_check_txn_status_ttl_expired_4c() {
    let mut builder = new_builder();
    let cmd = builder.check_txn_status_request(&[3]);
    let lock_ts = cmd.lock_ts;
    builder.init(&[
        kv(CF_DEFAULT, &[3], lock_ts, &[42]),
        kv(
            CF_LOCK,
            &[3],
            0,
            &[
                3,
                1,
                0,
                0,
                5,
                0,
                0,
                0,
                0,
                builder.ts(),
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                8,
            ],
        ),
    ]);
    let resp = builder.run_one_request(cmd);

    assert!(resp.region_error.is_none(), "{resp:?}");
    assert_eq!(resp.action, Action::TtlExpireRollback as i32, "{resp:?}");
    builder.assert_lens(0, 0, 1);
    builder.assert(&[kv(
        CF_WRITE,
        &[3],
        lock_ts,
        &[3, 0, 0, 5, 0, 0, 0, 0, builder.ts()],
    )]);
}

/// A lock whose ttl has not expired: nothing changes.
#[test]
fn test_check_txn_status_ttl_not_expired_4c() {
    let mut builder = new_builder();
    let cmd = builder.check_txn_status_request(&[3]);
    let lock_ts = cmd.lock_ts;
    builder.init(&[
        kv(CF_DEFAULT, &[3], lock_ts, &[42]),
        kv(
            CF_LOCK,
            &[3],
            0,
            &[
                3,
                1,
                0,
                0,
                5,
                0,
                0,
                0,
                0,
                builder.ts(),
                0,
                0,
                0,
                1,
                0,
                0,
                0,
                8,
            ],
        ),
    ]);
    let resp = builder.run_one_request(cmd);

    assert!(resp.region_error.is_none(), "{resp:?}");
    assert_eq!(resp.action, Action::NoAction as i32, "{resp:?}");
    builder.assert_lens(1, 1, 0);
    builder.assert(&[
        unchanged(CF_DEFAULT, &[3], lock_ts),
        unchanged(CF_LOCK, &[3], 0),
    ]);
}

/// Checking a key which has already been rolled back.
#[test]
fn test_check_txn_status_rolled_back_4c() {
    let mut builder = new_builder();
    let cmd = builder.check_txn_status_request(&[3]);
    let lock_ts = cmd.lock_ts;
    builder.init(&[
        kv(CF_DEFAULT, &[3], lock_ts, &[42]),
        kv(
            CF_WRITE,
            &[3],
            lock_ts,
            &[3, 0, 0, 5, 0, 0, 0, 0, builder.ts()],
        ),
        kv(
            CF_LOCK,
            &[3],
            0,
            &[
                3,
                1,
                0,
                0,
                8,
                0,
                0,
                0,
                0,
                builder.ts(),
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                8,
            ],
        ),
    ]);
    let resp = builder.run_one_request(cmd);

    assert!(resp.region_error.is_none(), "{resp:?}");
    assert_eq!(resp.action, Action::NoAction as i32, "{resp:?}");
    assert_eq!(resp.commit_version, 0, "{resp:?}");
    builder.assert_lens(1, 1, 1);
    builder.assert(&[
        unchanged(CF_DEFAULT, &[3], lock_ts),
        unchanged(CF_WRITE, &[3], lock_ts),
        unchanged(CF_LOCK, &[3], 0),
    ]);
}

/// Checking a key which has already been committed.
#[test]
fn test_check_txn_status_committed_4c() {
    let mut builder = new_builder();
    let cmd = builder.check_txn_status_request(&[3]);
    let lock_ts = cmd.lock_ts;
    builder.init(&[
        kv(CF_DEFAULT, &[3], lock_ts, &[42]),
        kv(
            CF_WRITE,
            &[3],
            lock_ts,
            &[1, 0, 0, 5, 0, 0, 0, 0, builder.ts()],
        ),
    ]);
    let resp = builder.run_one_request(cmd);

    assert!(resp.region_error.is_none(), "{resp:?}");
    assert_eq!(resp.action, Action::NoAction as i32, "{resp:?}");
    assert_eq!(
        resp.commit_version,
        u64::from_be_bytes([0, 0, 5, 0, 0, 0, 0, builder.ts()]),
        "{resp:?}"
    );
    builder.assert_lens(1, 0, 1);
    builder.assert(&[
        unchanged(CF_DEFAULT, &[3], lock_ts),
        unchanged(CF_WRITE, &[3], lock_ts),
    ]);
}

/// With no data for the key, a rollback record is written.
#[test]
fn test_check_txn_status_no_lock_no_write_4c() {
    let mut builder = new_builder();
    let cmd = builder.check_txn_status_request(&[3]);
    let lock_ts = cmd.lock_ts;
    let resp = builder.run_one_request(cmd);

    assert!(resp.region_error.is_none(), "{resp:?}");
    assert_eq!(resp.action, Action::LockNotExistRollback as i32, "{resp:?}");
    builder.assert_lens(0, 0, 1);
    builder.assert(&[kv(
        CF_WRITE,
        &[3],
        lock_ts,
        &[3, 0, 0, 5, 0, 0, 0, 0, builder.ts()],
    )]);
}

/// A completely empty resolve request.
#[test]
fn test_empty_resolve_4c() {
    let builder = new_builder();
    let cmd = resolve_request(0, 0);
    let resp = builder.run_one_request(cmd);

    assert!(resp.error.is_none(), "{resp:?}");
    assert!(resp.region_error.is_none(), "{resp:?}");
    builder.assert_lens(0, 0, 0);
}

/// A resolve that commits commits every key of the transaction.
#[test]
fn test_resolve_commit_4c() {
    let builder = new_builder();
    let cmd = resolve_request(100, 120);
    builder.init(&[
        kv(CF_DEFAULT, &[3], 100, &[42]),
        kv(
            CF_LOCK,
            &[3],
            0,
            &[1, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        kv(CF_DEFAULT, &[7], 100, &[43]),
        kv(
            CF_LOCK,
            &[7],
            0,
            &[1, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        kv(CF_DEFAULT, &[200], 110, &[44]),
        kv(
            CF_LOCK,
            &[200],
            0,
            &[1, 0, 0, 0, 0, 0, 0, 0, 110, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
    ]);
    let resp = builder.run_one_request(cmd);

    assert!(resp.error.is_none(), "{resp:?}");
    assert!(resp.region_error.is_none(), "{resp:?}");
    builder.assert_lens(3, 1, 2);
    builder.assert(&[
        unchanged(CF_DEFAULT, &[3], 100),
        kv(CF_WRITE, &[3], 120, &[1, 0, 0, 0, 0, 0, 0, 0, 100]),
        unchanged(CF_DEFAULT, &[7], 100),
        kv(CF_WRITE, &[7], 120, &[1, 0, 0, 0, 0, 0, 0, 0, 100]),
        unchanged(CF_DEFAULT, &[200], 110),
        unchanged(CF_LOCK, &[200], 0),
    ]);
}

/// A resolve that rolls back rolls back every key of the transaction.
#[test]
fn test_resolve_rollback_4c() {
    let builder = new_builder();
    let cmd = resolve_request(100, 0);
    builder.init(&[
        kv(CF_DEFAULT, &[3], 100, &[42]),
        kv(
            CF_LOCK,
            &[3],
            0,
            &[1, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        kv(CF_DEFAULT, &[7], 100, &[43]),
        kv(
            CF_LOCK,
            &[7],
            0,
            &[1, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        kv(CF_DEFAULT, &[200], 110, &[44]),
        kv(
            CF_LOCK,
            &[200],
            0,
            &[1, 0, 0, 0, 0, 0, 0, 0, 110, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
    ]);
    let resp = builder.run_one_request(cmd);

    assert!(resp.error.is_none(), "{resp:?}");
    assert!(resp.region_error.is_none(), "{resp:?}");
    builder.assert_lens(1, 1, 2);
    builder.assert(&[
        kv(CF_WRITE, &[3], 100, &[3, 0, 0, 0, 0, 0, 0, 0, 100]),
        kv(CF_WRITE, &[7], 100, &[3, 0, 0, 0, 0, 0, 0, 0, 100]),
        unchanged(CF_DEFAULT, &[200], 110),
        unchanged(CF_LOCK, &[200], 0),
    ]);
}

/// The fixture of the two "written" resolve tests: no lock of transaction 100, only its
/// records on key 201 and values of 3 and 7, plus transaction 110's lock on 200.
fn resolve_written_fixture() -> TestBuilder {
    let builder = new_builder();
    builder.init(&[
        kv(CF_DEFAULT, &[3], 100, &[42]),
        kv(CF_WRITE, &[201], 120, &[1, 0, 0, 0, 0, 0, 0, 0, 100]),
        kv(CF_DEFAULT, &[7], 100, &[43]),
        kv(CF_WRITE, &[201], 100, &[3, 0, 0, 0, 0, 0, 0, 0, 100]),
        kv(CF_DEFAULT, &[200], 110, &[44]),
        kv(
            CF_LOCK,
            &[200],
            0,
            &[1, 0, 0, 0, 0, 0, 0, 0, 110, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
    ]);
    builder
}

/// Checks that the fixture of [`resolve_written_fixture`] is unchanged.
fn assert_resolve_written_unchanged(builder: &TestBuilder) {
    builder.assert_lens(3, 1, 2);
    builder.assert(&[
        unchanged(CF_DEFAULT, &[3], 100),
        unchanged(CF_WRITE, &[201], 120),
        unchanged(CF_DEFAULT, &[7], 100),
        unchanged(CF_WRITE, &[201], 100),
        unchanged(CF_DEFAULT, &[200], 110),
        unchanged(CF_LOCK, &[200], 0),
    ]);
}

/// A commit resolve where the matched keys are already committed or rolled back.
#[test]
fn test_resolve_commit_written_4c() {
    // Go builds the builder first, then the request, then sets the data: the order does not
    // matter here (resolve_request uses no timestamp of the builder).
    let builder = resolve_written_fixture();
    let cmd = resolve_request(100, 120);
    let resp = builder.run_one_request(cmd);

    assert!(resp.error.is_none(), "{resp:?}");
    assert!(resp.region_error.is_none(), "{resp:?}");
    assert_resolve_written_unchanged(&builder);
}

/// A rollback resolve where data has already been committed or rolled back.
#[test]
fn test_resolve_rollback_written_4c() {
    let builder = resolve_written_fixture();
    let cmd = resolve_request(100, 0);
    let resp = builder.run_one_request(cmd);

    assert!(resp.error.is_none(), "{resp:?}");
    assert!(resp.region_error.is_none(), "{resp:?}");
    assert_resolve_written_unchanged(&builder);
}

/// A scan after the end of the DB.
#[test]
fn test_scan_empty_4c() {
    let mut builder = builder_for_scan();

    let cmd = builder.scan_request(&[200], 10000);
    let resp = builder.run_one_request(cmd);
    assert!(resp.region_error.is_none(), "{resp:?}");
    assert!(resp.pairs.is_empty(), "{resp:?}");
}

/// A scan of limit 0 gets nothing.
#[test]
fn test_scan_limit_zero_4c() {
    let mut builder = builder_for_scan();

    let cmd = builder.scan_request(&[3], 0);
    let resp = builder.run_one_request(cmd);
    assert!(resp.region_error.is_none(), "{resp:?}");
    assert!(resp.pairs.is_empty(), "{resp:?}");
}

/// A scan from the beginning of the DB reads all pairs, respecting the timestamp.
#[test]
fn test_scan_all_4c() {
    let mut builder = builder_for_scan();

    let cmd = builder.scan_request(&[0], 10000);
    let resp = builder.run_one_request(cmd);

    assert!(resp.region_error.is_none(), "{resp:?}");
    assert_eq!(resp.pairs.len(), 11, "{resp:?}");
    assert_eq!(resp.pairs[0].key, [1]);
    assert_eq!(resp.pairs[0].value, [50]);
    assert_eq!(resp.pairs[10].key, [199]);
    assert_eq!(resp.pairs[10].value, [54]);
}

/// A scan takes the limit into account.
#[test]
fn test_scan_limit_4c() {
    let mut builder = builder_for_scan();

    let cmd = builder.scan_request(&[2], 6);
    let resp = builder.run_one_request(cmd);

    assert!(resp.region_error.is_none(), "{resp:?}");
    assert_eq!(resp.pairs.len(), 6, "{resp:?}");
    assert_eq!(resp.pairs[0].key, [3]);
    assert_eq!(resp.pairs[0].value, [51]);
    assert_eq!(resp.pairs[5].key, [4]);
    assert_eq!(resp.pairs[5].value, [52]);
}

/// A scan over a value which is deleted then replaced.
#[test]
fn test_scan_deleted_4c() {
    let mut builder = builder_for_scan();

    let mut req1 = builder.scan_request(&[100], 10000);
    req1.version = 100;
    let mut req2 = builder.scan_request(&[100], 10000);
    req2.version = 105;
    let mut req3 = builder.scan_request(&[100], 10000);
    req3.version = 120;

    let resps = builder.run_requests(vec![req1, req2, req3]);

    let resp1 = &resps[0];
    assert!(resp1.region_error.is_none(), "{resp1:?}");
    assert_eq!(resp1.pairs.len(), 3, "{resp1:?}");
    assert_eq!(resp1.pairs[1].key, [150]);
    assert_eq!(resp1.pairs[1].value, [42]);

    let resp2 = &resps[1];
    assert!(resp2.region_error.is_none(), "{resp2:?}");
    assert_eq!(resp2.pairs.len(), 2, "{resp2:?}");
    assert_eq!(resp2.pairs[0].key, [120]);
    assert_eq!(resp2.pairs[1].key, [199]);

    let resp3 = &resps[2];
    assert!(resp3.region_error.is_none(), "{resp3:?}");
    assert_eq!(resp3.pairs.len(), 3, "{resp3:?}");
    assert_eq!(resp3.pairs[1].key, [150]);
    assert_eq!(resp3.pairs[1].value, [64]);
}

/// A builder whose storage holds the scan tests' data (Go's `builderForScan`).
fn builder_for_scan() -> TestBuilder {
    let values = [
        // Committed before 100.
        kv(CF_DEFAULT, &[1], 80, &[50]),
        kv(CF_WRITE, &[1], 99, &[1, 0, 0, 0, 0, 0, 0, 0, 80]),
        kv(CF_DEFAULT, &[1, 23], 80, &[55]),
        kv(CF_WRITE, &[1, 23], 99, &[1, 0, 0, 0, 0, 0, 0, 0, 80]),
        kv(CF_DEFAULT, &[3], 80, &[51]),
        kv(CF_WRITE, &[3], 99, &[1, 0, 0, 0, 0, 0, 0, 0, 80]),
        kv(CF_DEFAULT, &[3, 45], 80, &[56]),
        kv(CF_WRITE, &[3, 45], 99, &[1, 0, 0, 0, 0, 0, 0, 0, 80]),
        kv(CF_DEFAULT, &[3, 46], 80, &[57]),
        kv(CF_WRITE, &[3, 46], 99, &[1, 0, 0, 0, 0, 0, 0, 0, 80]),
        kv(CF_DEFAULT, &[3, 47], 80, &[58]),
        kv(CF_WRITE, &[3, 47], 99, &[1, 0, 0, 0, 0, 0, 0, 0, 80]),
        kv(CF_DEFAULT, &[3, 48], 80, &[59]),
        kv(CF_WRITE, &[3, 48], 99, &[1, 0, 0, 0, 0, 0, 0, 0, 80]),
        kv(CF_DEFAULT, &[4], 80, &[52]),
        kv(CF_WRITE, &[4], 99, &[1, 0, 0, 0, 0, 0, 0, 0, 80]),
        kv(CF_DEFAULT, &[120], 80, &[53]),
        kv(CF_WRITE, &[120], 99, &[1, 0, 0, 0, 0, 0, 0, 0, 80]),
        kv(CF_DEFAULT, &[199], 80, &[54]),
        kv(CF_WRITE, &[199], 99, &[1, 0, 0, 0, 0, 0, 0, 0, 80]),
        // Committed after 100.
        kv(CF_DEFAULT, &[4, 45], 110, &[58]),
        kv(CF_WRITE, &[4, 45], 116, &[1, 0, 0, 0, 0, 0, 0, 0, 110]),
        kv(CF_DEFAULT, &[4, 46], 110, &[57]),
        kv(CF_WRITE, &[4, 46], 116, &[1, 0, 0, 0, 0, 0, 0, 0, 110]),
        kv(CF_DEFAULT, &[4, 47], 110, &[58]),
        kv(CF_WRITE, &[4, 47], 116, &[1, 0, 0, 0, 0, 0, 0, 0, 110]),
        kv(CF_DEFAULT, &[4, 48], 110, &[59]),
        kv(CF_WRITE, &[4, 48], 116, &[1, 0, 0, 0, 0, 0, 0, 0, 110]),
        // Committed after 100, but started before.
        kv(CF_DEFAULT, &[5, 45], 97, &[60]),
        kv(CF_WRITE, &[5, 45], 101, &[1, 0, 0, 0, 0, 0, 0, 0, 97]),
        kv(CF_DEFAULT, &[5, 46], 97, &[61]),
        kv(CF_WRITE, &[5, 46], 101, &[1, 0, 0, 0, 0, 0, 0, 0, 97]),
        kv(CF_DEFAULT, &[5, 47], 97, &[62]),
        kv(CF_WRITE, &[5, 47], 101, &[1, 0, 0, 0, 0, 0, 0, 0, 97]),
        kv(CF_DEFAULT, &[5, 48], 97, &[63]),
        kv(CF_WRITE, &[5, 48], 101, &[1, 0, 0, 0, 0, 0, 0, 0, 97]),
        // A deleted value and replaced value.
        kv(CF_DEFAULT, &[150], 80, &[42]),
        kv(CF_WRITE, &[150], 99, &[1, 0, 0, 0, 0, 0, 0, 0, 80]),
        kv(CF_WRITE, &[150], 101, &[2, 0, 0, 0, 0, 0, 0, 0, 97]),
        kv(CF_DEFAULT, &[150], 110, &[64]),
        kv(CF_WRITE, &[150], 116, &[1, 0, 0, 0, 0, 0, 0, 0, 110]),
    ];
    let builder = new_builder();
    builder.init(&values);
    builder
}
