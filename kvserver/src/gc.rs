//! MVCC garbage collection on a store (beyond TinyKV, which keeps every version forever).
//!
//! Every `gc-tick-interval` the store asks the scheduler for the cluster's GC safe point (the
//! scheduler raises it, see `docs/TRANSACTIONS.md`); when it moved, each region this store leads
//! is collected once for it: for every key, of the write records committed at or before the safe
//! point only the newest Put stays (the value a read at the safe point sees); older records go,
//! with the values of the Puts among them, and so do rollback records and a newest Delete (then
//! nothing at or before the safe point is visible anyway). Locks and the values of transactions
//! not yet committed are left alone (lock resolution deals with them). The deletions go through
//! raft like any write, in batches, named by the region's epoch: a region that changed meanwhile
//! refuses them and is collected again on the next round.
//!
//! From the moment a store knows a safe point it refuses reads below it and prewrites of
//! transactions that started at or before it (`Transactions::set_gc_safe_point`): the versions
//! they would need may be gone.

use std::collections::HashMap;
use std::time::Duration;

use proto::kvrpcpb::Context;
use proto::metapb::Region;
use raftstore::engine::{CF_DEFAULT, CF_WRITE};
use raftstore::util::find_peer;
use slog::{debug, info, warn, Logger};

use crate::scheduler_client::SchedulerConn;
use crate::service::TinyKvService;
use crate::storage::raft::RaftStorage;
use crate::storage::{Modify, Storage, StorageError, StorageReader};
use crate::transaction::codec::{decode_key, encode_key};
use crate::transaction::mvcc::{Write, WriteKind};

/// Deletions per raft command.
const BATCH: usize = 256;

/// The deletions that collect the write records `records` of one user key `key` (newest first,
/// each with its commit ts) at `safe_point`.
fn collect_key(key: &[u8], records: &[(u64, Write)], safe_point: u64, out: &mut Vec<Modify>) {
    let mut kept = false;
    for (commit_ts, w) in records {
        if *commit_ts > safe_point {
            continue;
        }
        let visible = !kept && w.kind != WriteKind::Rollback;
        if visible && w.kind == WriteKind::Put {
            // The version a read at the safe point sees.
            kept = true;
            continue;
        }
        if visible {
            // A newest Delete: nothing at or before the safe point is visible.
            kept = true;
        }
        out.push(Modify::Delete {
            cf: CF_WRITE.into(),
            key: encode_key(key, *commit_ts),
        });
        if w.kind == WriteKind::Put {
            out.push(Modify::Delete {
                cf: CF_DEFAULT.into(),
                key: encode_key(key, w.start_ts),
            });
        }
    }
}

/// The deletions that collect everything `reader` holds at `safe_point`. Keys that are not MVCC keys (raw data) are passed over.
pub fn collect(reader: &dyn StorageReader, safe_point: u64) -> Result<Vec<Modify>, StorageError> {
    let mut out = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut records: Vec<(u64, Write)> = Vec::new();
    reader.scan_cf(CF_WRITE, b"", &mut |k, v| {
        let (Ok((user, commit_ts)), Some(w)) = (decode_key(k), Write::parse(v)) else {
            return true;
        };
        if current.as_deref() != Some(user.as_slice()) {
            if let Some(prev) = current.take() {
                collect_key(&prev, &records, safe_point, &mut out);
            }
            records.clear();
            current = Some(user);
        }
        records.push((commit_ts, w));
        true
    })?;
    if let Some(prev) = current {
        collect_key(&prev, &records, safe_point, &mut out);
    }
    Ok(out)
}

/// Collects one region led here at `safe_point`; the deletions made.
async fn collect_region(
    storage: &RaftStorage,
    region: &Region,
    store_id: u64,
    safe_point: u64,
) -> Result<Vec<Modify>, StorageError> {
    let ctx = Context {
        region_id: region.id,
        region_epoch: region.region_epoch,
        peer: find_peer(region, store_id).copied(),
        term: 0,
    };
    let reader = storage.reader(&ctx, &region.start_key).await?;
    // The walk over the region's versions blocks: off the threads that serve requests.
    let deletions = tokio::task::spawn_blocking(move || collect(&*reader, safe_point))
        .await
        .map_err(|_| StorageError::ShuttingDown)??;
    for batch in deletions.chunks(BATCH) {
        storage.write(&ctx, batch.to_vec()).await?;
    }
    Ok(deletions)
}

/// Runs garbage collection for the store until the runtime stops: every `interval`, the safe
/// point from `conn`; when it moved past what a region was collected for, the regions this store
/// leads are collected.
pub async fn run(
    svc: TinyKvService<RaftStorage>,
    storage: RaftStorage,
    conn: SchedulerConn,
    interval: Duration,
    logger: Logger,
) {
    let store_id = storage.store_id();
    // Region id -> (epoch version, the safe point it was collected for).
    let mut done: HashMap<u64, (u64, u64)> = HashMap::new();
    loop {
        tokio::time::sleep(interval).await;
        let safe_point = match conn.gc_safe_point().await {
            Ok(sp) => sp,
            Err(e) => {
                debug!(logger, "no GC safe point from the scheduler"; "err" => %e);
                continue;
            }
        };
        if safe_point == 0 {
            continue;
        }
        svc.transactions().set_gc_safe_point(safe_point);
        let regions = match storage.hosted_regions() {
            Ok(r) => r,
            Err(e) => {
                warn!(logger, "cannot list the regions for GC"; "err" => %e);
                continue;
            }
        };
        done.retain(|id, _| regions.iter().any(|r| r.id == *id));
        for region in regions {
            let version = region.region_epoch.map_or(0, |e| e.version);
            if done.get(&region.id) == Some(&(version, safe_point)) {
                continue;
            }
            match collect_region(&storage, &region, store_id, safe_point).await {
                Ok(deleted) => {
                    done.insert(region.id, (version, safe_point));
                    let values = deleted.iter().filter(|m| m.cf() == CF_DEFAULT).count();
                    let writes = deleted.len() - values;
                    if !deleted.is_empty() {
                        info!(logger, "garbage collected"; "region_id" => region.id,
                            "safe_point" => safe_point, "write_records" => writes,
                            "values" => values);
                    }
                }
                // Not the leader, or the region changed: another round, or another store.
                Err(StorageError::Region(e)) => {
                    debug!(logger, "region not collected here"; "region_id" => region.id,
                        "err" => %e.message);
                }
                Err(e) => {
                    warn!(logger, "GC of a region failed"; "region_id" => region.id, "err" => %e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::mem::MemStorage;

    fn put_version(s: &MemStorage, key: &[u8], start: u64, commit: u64, kind: WriteKind) {
        s.set(
            CF_WRITE,
            encode_key(key, commit),
            Write {
                start_ts: start,
                kind,
            }
            .to_bytes(),
        );
        if kind == WriteKind::Put {
            s.set(
                CF_DEFAULT,
                encode_key(key, start),
                format!("v{start}").into_bytes(),
            );
        }
    }

    fn collected(s: &MemStorage, sp: u64) -> Vec<Modify> {
        let reader = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(s.reader(&Context::default(), b""))
            .unwrap();
        let out = collect(&*reader, sp).unwrap();
        s.write_batch(out.clone()).unwrap();
        out
    }

    #[test]
    fn only_the_version_visible_at_the_safe_point_stays() {
        let s = MemStorage::new();
        put_version(&s, b"a", 10, 11, WriteKind::Put);
        put_version(&s, b"a", 20, 21, WriteKind::Put);
        put_version(&s, b"a", 25, 25, WriteKind::Rollback);
        put_version(&s, b"a", 30, 31, WriteKind::Put);
        put_version(&s, b"a", 40, 41, WriteKind::Put); // after the safe point
        put_version(&s, b"b", 10, 11, WriteKind::Put);
        put_version(&s, b"b", 20, 21, WriteKind::Delete);
        put_version(&s, b"c", 50, 51, WriteKind::Put); // all after the safe point
        s.set(CF_DEFAULT, encode_key(b"d", 12), b"uncommitted".to_vec());
        let out = collected(&s, 35);
        // a: 31 stays (visible at 35), 41 stays (newer); 25 (rollback), 21, 11 go with values.
        let writes = |k: &[u8]| -> Vec<u64> {
            s.entries(CF_WRITE)
                .iter()
                .filter_map(|(ek, _)| decode_key(ek).ok())
                .filter(|(u, _)| u == k)
                .map(|(_, ts)| ts)
                .collect()
        };
        assert_eq!(writes(b"a"), [41, 31]);
        assert_eq!(
            writes(b"b"),
            Vec::<u64>::new(),
            "a newest delete goes, with all before it"
        );
        assert_eq!(writes(b"c"), [51]);
        let values: Vec<Vec<u8>> = s.entries(CF_DEFAULT).into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            values,
            [
                b"v40".to_vec(),
                b"v30".to_vec(),
                b"v50".to_vec(),
                b"uncommitted".to_vec()
            ]
        );
        assert_eq!(
            out.len(),
            3 + 2 + 2 + 1,
            "a: 3 records and 2 values; b: 2 and 1"
        );
        // Again at the same safe point: nothing more to do.
        assert!(collected(&s, 35).is_empty());
        // A later safe point: 31 goes too.
        collected(&s, 50);
        assert_eq!(writes(b"a"), [41]);
    }
}
