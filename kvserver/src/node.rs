//! A store's start-up with a scheduler (TinyKV's `kv/raftstore/node.go`: `Start`, `checkStore`,
//! `bootstrapStore`, `checkOrPrepareBootstrapCluster`, `BootstrapCluster`; and
//! `kv/raftstore/bootstrap.go`), on engines already open:
//!
//! 1. **The store's identity.** A data dir without a store ident gets one: the cluster id the
//!    scheduler runs and a store id it allocates, synced. A data dir with one must belong to the
//!    scheduler's cluster, else the start is refused (`data dir DIR belongs to cluster X, the
//!    scheduler at ADDR runs cluster Y`).
//! 2. **The cluster's first region.** If the scheduler says the cluster is not bootstrapped and
//!    this store holds no region, the store allocates a region id and a peer id and prepares the
//!    first region `["", "")` with one peer, on itself: the prepare-bootstrap marker (the region,
//!    `keys::PREPARE_BOOTSTRAP_KEY`) first, then the region's initial states, each synced. Then it
//!    asks the scheduler to bootstrap the cluster. If it wins, the marker is cleared and the region
//!    kept; if another store won (`ALREADY_BOOTSTRAPPED`), the prepared region is cleared too,
//!    unless the scheduler's first region is this very one (a crash after an earlier, successful
//!    bootstrap). A marker found at start (a crash before the answer) resumes at the bootstrap
//!    call with the region it names.
//! 3. **Registration.** `PutStore` with the store's id and address.
//!
//! Every step that calls the scheduler retries transient failures for the configured
//! scheduler-connect-timeout.

use proto::metapb::{Region, Store, StoreState};
use proto::raft_serverpb::{PeerState, RegionLocalState, StoreIdent};
use proto::schedulerpb::ErrorType;
use raftstore::bootstrap::{
    bootstrap_store, load_store_ident, prepare_bootstrap_region, INIT_EPOCH_CONF_VER,
    INIT_EPOCH_VER,
};
use raftstore::engine::rocks::RocksEngine;
use raftstore::engine::{Engine, Engines, WriteBatch, CF_DEFAULT, CF_RAFT};
use raftstore::keys;
use slog::{info, warn, Logger};

use crate::config::ServerConfig;
use crate::scheduler_client::{SchedulerConn, SchedulerError};
use crate::server::ServerError;

type RocksEngines = Engines<RocksEngine, RocksEngine>;

/// Runs the start-up steps of the module documentation on `engines` with the scheduler `conn`;
/// returns the store's id.
pub async fn prepare_store(
    cfg: &ServerConfig,
    engines: &RocksEngines,
    conn: &SchedulerConn,
    logger: &Logger,
) -> Result<u64, ServerError> {
    let dir = cfg.data_dir.display().to_string();
    let wait = cfg.scheduler_connect_timeout;
    let unreadable = |e: raftstore::Error| ServerError::DataDir(format!("data dir {dir}: {e}"));
    let store_id = match load_store_ident(&engines.kv).map_err(unreadable)? {
        Some(StoreIdent {
            cluster_id,
            store_id,
        }) => {
            if cluster_id != conn.cluster_id() {
                return Err(ServerError::DataDir(format!(
                    "data dir {dir} belongs to cluster {cluster_id}, the scheduler at {} runs \
                     cluster {}",
                    conn.addr(),
                    conn.cluster_id()
                )));
            }
            if store_id == 0 {
                return Err(ServerError::DataDir(format!(
                    "data dir {dir} holds an invalid store ident (store id 0)"
                )));
            }
            info!(logger, "resuming store"; "store_id" => store_id, "cluster_id" => cluster_id,
                "data_dir" => &dir);
            store_id
        }
        None => {
            let store_id = conn
                .retry(wait, logger, |c| async move { c.alloc_id().await })
                .await?;
            bootstrap_store(engines, conn.cluster_id(), store_id).map_err(unreadable)?;
            info!(logger, "bootstrapped a new store"; "store_id" => store_id,
                "cluster_id" => conn.cluster_id(), "data_dir" => &dir);
            store_id
        }
    };
    let store = Store {
        id: store_id,
        address: cfg.addr.clone(),
        state: StoreState::Up as i32,
    };
    if let Some(region) = check_or_prepare_first_region(engines, conn, store_id, wait, logger)
        .await
        .map_err(|e| match e {
            Step::Engine(e) => unreadable(e),
            Step::Scheduler(e) => ServerError::Scheduler(e),
        })?
    {
        bootstrap_cluster(engines, conn, &store, &region, wait, logger)
            .await
            .map_err(|e| match e {
                Step::Engine(e) => unreadable(e),
                Step::Scheduler(e) => ServerError::Scheduler(e),
            })?;
    }
    let put = store.clone();
    conn.retry(wait, logger, move |c| {
        let s = put.clone();
        async move { c.put_store(s).await }
    })
    .await?;
    info!(logger, "store registered with the scheduler"; "store_id" => store_id,
        "addr" => &cfg.addr, "scheduler" => conn.addr());
    Ok(store_id)
}

/// A failed start-up step: on the engines, or at the scheduler.
enum Step {
    Engine(raftstore::Error),
    Scheduler(SchedulerError),
}

impl From<raftstore::Error> for Step {
    fn from(e: raftstore::Error) -> Self {
        Step::Engine(e)
    }
}

impl From<raftstore::engine::EngineError> for Step {
    fn from(e: raftstore::engine::EngineError) -> Self {
        Step::Engine(e.into())
    }
}

impl From<SchedulerError> for Step {
    fn from(e: SchedulerError) -> Self {
        Step::Scheduler(e)
    }
}

/// Whether the kv engine holds the state of any region.
fn has_region(kv: &RocksEngine) -> Result<bool, raftstore::Error> {
    let mut any = false;
    kv.scan_cf(
        CF_RAFT,
        keys::REGION_META_MIN_KEY,
        keys::REGION_META_MAX_KEY,
        &mut |_, _| {
            any = true;
            Ok(false)
        },
    )?;
    Ok(any)
}

/// TinyKV's `checkOrPrepareBootstrapCluster`: the first region this store should bootstrap the
/// cluster with, prepared on its engines, or None.
async fn check_or_prepare_first_region(
    engines: &RocksEngines,
    conn: &SchedulerConn,
    store_id: u64,
    wait: std::time::Duration,
    logger: &Logger,
) -> Result<Option<Region>, Step> {
    if let Some(state) = engines
        .kv
        .get_msg_cf::<RegionLocalState>(CF_RAFT, keys::prepare_bootstrap_key())?
    {
        if let Some(region) = state.region {
            // The region never ran (the marker goes before the store starts): writing its
            // initial states again finishes a prepare a crash interrupted.
            prepare_bootstrap_region(engines, &region)?;
            info!(logger, "resuming an interrupted cluster bootstrap"; "store_id" => store_id,
                "region_id" => region.id);
            return Ok(Some(region));
        }
    }
    let bootstrapped = conn
        .retry(wait, logger, |c| async move { c.is_bootstrapped().await })
        .await?;
    if bootstrapped {
        return Ok(None);
    }
    if has_region(&engines.kv)? {
        warn!(logger, "the scheduler's cluster is not bootstrapped, but this store holds \
            regions already; not bootstrapping it"; "store_id" => store_id);
        return Ok(None);
    }
    let region_id = conn
        .retry(wait, logger, |c| async move { c.alloc_id().await })
        .await?;
    let peer_id = conn
        .retry(wait, logger, |c| async move { c.alloc_id().await })
        .await?;
    let region = Region {
        id: region_id,
        start_key: Vec::new(),
        end_key: Vec::new(),
        region_epoch: Some(proto::metapb::RegionEpoch {
            conf_ver: INIT_EPOCH_CONF_VER,
            version: INIT_EPOCH_VER,
        }),
        peers: vec![proto::metapb::Peer {
            id: peer_id,
            store_id,
        }],
    };
    let mut wb = WriteBatch::default();
    wb.put_msg_cf(
        CF_RAFT,
        keys::prepare_bootstrap_key(),
        &RegionLocalState {
            state: PeerState::Normal as i32,
            region: Some(region.clone()),
        },
    );
    engines.kv.write(&wb, true)?;
    prepare_bootstrap_region(engines, &region)?;
    info!(logger, "prepared the cluster's first region"; "store_id" => store_id,
        "region_id" => region_id, "peer_id" => peer_id);
    Ok(Some(region))
}

/// TinyKV's `BootstrapCluster`: asks the scheduler to bootstrap the cluster with this store;
/// keeps the prepared `region` if this store won, clears it if another did.
async fn bootstrap_cluster(
    engines: &RocksEngines,
    conn: &SchedulerConn,
    store: &Store,
    region: &Region,
    wait: std::time::Duration,
    logger: &Logger,
) -> Result<(), Step> {
    let s = store.clone();
    let answer = conn
        .retry(wait, logger, move |c| {
            let s = s.clone();
            async move { c.bootstrap(s).await }
        })
        .await;
    match answer {
        Ok(()) => {
            clear_prepare_marker(engines)?;
            info!(logger, "bootstrapped the cluster"; "store_id" => store.id,
                "cluster_id" => conn.cluster_id(), "region_id" => region.id);
            Ok(())
        }
        Err(e) if e.kind() == Some(ErrorType::AlreadyBootstrapped) => {
            let (first, _) = conn
                .retry(wait, logger, |c| async move { c.get_region(b"").await })
                .await?;
            if first.is_some_and(|r| r.id == region.id) {
                // This store bootstrapped it before a crash took the answer.
                clear_prepare_marker(engines)?;
                info!(logger, "the cluster was bootstrapped with this store's region";
                    "store_id" => store.id, "region_id" => region.id);
            } else {
                clear_prepared_region(engines, region.id)?;
                info!(logger, "another store bootstrapped the cluster; prepared region cleared";
                    "store_id" => store.id, "region_id" => region.id);
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// TinyKV's `ClearPrepareBootstrapState`: the marker only; the region stays.
fn clear_prepare_marker(engines: &RocksEngines) -> Result<(), Step> {
    let mut wb = WriteBatch::default();
    wb.delete_cf(CF_RAFT, keys::prepare_bootstrap_key());
    engines.kv.write(&wb, true)?;
    Ok(())
}

/// TinyKV's `ClearPrepareBootstrap`: the prepared region's states, then the marker.
fn clear_prepared_region(engines: &RocksEngines, region_id: u64) -> Result<(), Step> {
    let mut raft_wb = WriteBatch::default();
    raft_wb.delete_cf(CF_DEFAULT, keys::raft_state_key(region_id));
    engines.raft.write(&raft_wb, true)?;
    let mut kv_wb = WriteBatch::default();
    kv_wb.delete_cf(CF_RAFT, keys::region_state_key(region_id));
    kv_wb.delete_cf(CF_RAFT, keys::apply_state_key(region_id));
    kv_wb.delete_cf(CF_RAFT, keys::prepare_bootstrap_key());
    engines.kv.write(&kv_wb, true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftstore::engine::ALL_CFS;

    fn engines(dir: &std::path::Path) -> RocksEngines {
        Engines::new(
            RocksEngine::open(dir.join("kv"), &ALL_CFS).unwrap(),
            RocksEngine::open(dir.join("raft"), &[CF_DEFAULT]).unwrap(),
        )
    }

    #[test]
    fn a_cleared_prepared_region_leaves_no_state() {
        let dir = tempfile::tempdir().unwrap();
        let e = engines(dir.path());
        bootstrap_store(&e, 9, 4).unwrap();
        let region = raftstore::bootstrap::first_region(7, &[4]);
        let mut wb = WriteBatch::default();
        wb.put_msg_cf(
            CF_RAFT,
            keys::prepare_bootstrap_key(),
            &RegionLocalState {
                state: PeerState::Normal as i32,
                region: Some(region.clone()),
            },
        );
        e.kv.write(&wb, true).unwrap();
        prepare_bootstrap_region(&e, &region).unwrap();
        assert!(has_region(&e.kv).unwrap());
        if clear_prepare_marker(&e).is_err() {
            panic!("clear the marker");
        }
        assert!(e
            .kv
            .get_cf(CF_RAFT, keys::prepare_bootstrap_key())
            .unwrap()
            .is_none());
        assert!(has_region(&e.kv).unwrap(), "the marker alone goes");
        if clear_prepared_region(&e, 7).is_err() {
            panic!("clear the region");
        }
        assert!(!has_region(&e.kv).unwrap());
        assert!(e
            .raft
            .get_cf(CF_DEFAULT, &keys::raft_state_key(7))
            .unwrap()
            .is_none());
        assert!(
            load_store_ident(&e.kv).unwrap().is_some(),
            "the ident stays"
        );
    }
}
