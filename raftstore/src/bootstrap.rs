//! Bootstrapping: the store ident, and the first region with its initial raft, apply and region
//! states (term 5, index 5, as TinyKV's `kv/raftstore/bootstrap.go` and `kv/raftstore/meta/keys.go`).
//! A store bootstraps once; a second attempt fails.

use proto::eraftpb::HardState;
use proto::metapb::{Peer, Region, RegionEpoch};
use proto::raft_serverpb::{PeerState, RaftLocalState, StoreIdent};

use crate::engine::{Engine, Engines, WriteBatch, CF_DEFAULT, CF_RAFT};
use crate::errors::{Error, Result};
use crate::keys;
use crate::peer_storage::{initial_apply_state, put_region_state};

/// The first region's epoch version.
pub const INIT_EPOCH_VER: u64 = 1;
/// The first region's epoch conf version.
pub const INIT_EPOCH_CONF_VER: u64 = 1;

/// The store's identity, if it was bootstrapped.
pub fn load_store_ident<K: Engine>(kv: &K) -> Result<Option<StoreIdent>> {
    Ok(kv.get_msg_cf::<StoreIdent>(CF_RAFT, keys::store_ident_key())?)
}

/// Writes the store ident. Fails when the engine already holds one, or holds any region.
pub fn bootstrap_store<K: Engine, R: Engine>(
    engines: &Engines<K, R>,
    cluster_id: u64,
    store_id: u64,
) -> Result<()> {
    if let Some(ident) = load_store_ident(&engines.kv)? {
        return Err(Error::AlreadyBootstrapped(format!(
            "the kv engine holds the ident of cluster {}, store {}",
            ident.cluster_id, ident.store_id
        )));
    }
    let mut any_region = false;
    engines.kv.scan_cf(
        CF_RAFT,
        keys::region_meta_min_key(),
        keys::region_meta_max_key(),
        &mut |_, _| {
            any_region = true;
            Ok(false)
        },
    )?;
    if any_region {
        return Err(Error::AlreadyBootstrapped(
            "the kv engine already holds regions".into(),
        ));
    }
    let mut wb = WriteBatch::default();
    wb.put_msg_cf(
        CF_RAFT,
        keys::store_ident_key(),
        &StoreIdent {
            cluster_id,
            store_id,
        },
    );
    engines.kv.write(&wb, true)?;
    Ok(())
}

/// The first region of a cluster: the whole key space, one peer per store (peer id = store id).
pub fn first_region(region_id: u64, store_ids: &[u64]) -> Region {
    Region {
        id: region_id,
        start_key: Vec::new(),
        end_key: Vec::new(),
        region_epoch: Some(RegionEpoch {
            conf_ver: INIT_EPOCH_CONF_VER,
            version: INIT_EPOCH_VER,
        }),
        peers: store_ids
            .iter()
            .map(|&s| Peer { id: s, store_id: s })
            .collect(),
    }
}

/// Writes `region`'s initial states on a bootstrapped store: region state (Normal), apply state
/// (applied 5, truncated (5, 5)) and raft state (term 5, commit 5, last index 5), synced.
pub fn prepare_bootstrap_region<K: Engine, R: Engine>(
    engines: &Engines<K, R>,
    region: &Region,
) -> Result<()> {
    let mut kv_wb = WriteBatch::default();
    put_region_state(&mut kv_wb, region, PeerState::Normal);
    kv_wb.put_msg_cf(
        CF_RAFT,
        keys::apply_state_key(region.id),
        &initial_apply_state(),
    );
    let mut raft_wb = WriteBatch::default();
    raft_wb.put_msg_cf(
        CF_DEFAULT,
        keys::raft_state_key(region.id),
        &RaftLocalState {
            hard_state: Some(HardState {
                term: keys::RAFT_INIT_LOG_TERM,
                vote: 0,
                commit: keys::RAFT_INIT_LOG_INDEX,
            }),
            last_index: keys::RAFT_INIT_LOG_INDEX,
            last_term: keys::RAFT_INIT_LOG_TERM,
        },
    );
    engines.raft.write(&raft_wb, true)?;
    engines.kv.write(&kv_wb, true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::mem::MemEngine;
    use crate::engine::ALL_CFS;
    use proto::raft_serverpb::{RaftApplyState, RegionLocalState};

    fn engines() -> Engines<MemEngine, MemEngine> {
        Engines {
            kv: MemEngine::new(&ALL_CFS),
            raft: MemEngine::new(&[CF_DEFAULT]),
        }
    }

    #[test]
    fn test_bootstrap_store() {
        let e = engines();
        bootstrap_store(&e, 1, 1).unwrap();
        assert!(
            bootstrap_store(&e, 1, 1).is_err(),
            "a second bootstrap fails"
        );
        assert_eq!(load_store_ident(&e.kv).unwrap().unwrap().store_id, 1);

        let e = engines();
        prepare_bootstrap_region(&e, &first_region(1, &[1, 2, 3])).unwrap();
        assert!(
            bootstrap_store(&e, 1, 1).is_err(),
            "an engine holding regions cannot be bootstrapped"
        );
    }

    #[test]
    fn test_prepare_bootstrap_region_states() {
        let e = engines();
        bootstrap_store(&e, 1, 2).unwrap();
        let region = first_region(1, &[1, 2, 3]);
        prepare_bootstrap_region(&e, &region).unwrap();
        let apply: RaftApplyState =
            e.kv.get_msg_cf(CF_RAFT, &keys::apply_state_key(1))
                .unwrap()
                .unwrap();
        assert_eq!(apply.applied_index, 5);
        assert_eq!(apply.truncated_state.unwrap().term, 5);
        let raft: RaftLocalState = e
            .raft
            .get_msg_cf(CF_DEFAULT, &keys::raft_state_key(1))
            .unwrap()
            .unwrap();
        assert_eq!(raft.last_index, 5);
        assert_eq!(raft.hard_state.unwrap().commit, 5);
        let state: RegionLocalState =
            e.kv.get_msg_cf(CF_RAFT, &keys::region_state_key(1))
                .unwrap()
                .unwrap();
        assert_eq!(state.region.unwrap(), region);
        // Everything synced: a crash keeps it.
        e.kv.crash();
        e.raft.crash();
        assert!(load_store_ident(&e.kv).unwrap().is_some());
        assert!(e
            .raft
            .get_cf(CF_DEFAULT, &keys::raft_state_key(1))
            .unwrap()
            .is_some());
    }
}
