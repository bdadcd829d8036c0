//! The raftstore's typed errors, and their mapping onto `errorpb::Error` (the region errors a
//! client sees in `RaftResponseHeader.error`).

use proto::errorpb;
use proto::metapb;
use thiserror::Error;

use crate::engine::EngineError;
use crate::snap::SnapError;

/// An error of the store, a peer or a command.
#[derive(Debug, Error)]
pub enum Error {
    /// This peer is not the leader; `leader` is the known leader, if any.
    #[error("peer is not leader for region {region_id}, leader may be {leader:?}")]
    NotLeader {
        /// The region.
        region_id: u64,
        /// The leader this peer knows of.
        leader: Option<metapb::Peer>,
    },
    /// The store hosts no peer of the region.
    #[error("region {0} not found")]
    RegionNotFound(u64),
    /// The key lies outside the region's range.
    #[error("key {key:?} is not in region {region_id} [{start_key:?}, {end_key:?})")]
    KeyNotInRegion {
        /// The key.
        key: Vec<u8>,
        /// The region.
        region_id: u64,
        /// The region's start key.
        start_key: Vec<u8>,
        /// The region's end key (empty: unbounded).
        end_key: Vec<u8>,
    },
    /// The request's region epoch does not match the region's.
    #[error("epoch not match: {message}")]
    EpochNotMatch {
        /// What differs.
        message: String,
        /// The regions the client should retry with.
        regions: Vec<metapb::Region>,
    },
    /// The proposal was superseded by another term (or lost on a leader change); retry.
    #[error("stale command")]
    StaleCommand,
    /// The request was meant for another store.
    #[error("store not match: request store {request_store_id}, actual store {actual_store_id}")]
    StoreNotMatch {
        /// The store the request named.
        request_store_id: u64,
        /// This store.
        actual_store_id: u64,
    },
    /// The request is malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Raft refused or failed.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// An engine failed.
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    /// A snapshot file could not be made, moved or read.
    #[error("snapshot: {0}")]
    Snap(#[from] SnapError),
    /// A stored or received message does not decode.
    #[error("codec: {0}")]
    Codec(#[from] prost::DecodeError),
    /// The store is stopped: its mailbox is closed, or it stopped after an engine failure.
    #[error("store {0} is stopped")]
    StoreStopped(u64),
    /// The engines hold no store ident: the store must be bootstrapped before it is opened.
    #[error("the store is not bootstrapped")]
    NotBootstrapped,
    /// The engines already hold a store ident or regions: a store bootstraps once.
    #[error("already bootstrapped: {0}")]
    AlreadyBootstrapped(String),
    /// A thread of the store (its poller or a worker) could not be started.
    #[error("cannot spawn the {thread} thread: {source}")]
    Spawn {
        /// Which thread.
        thread: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The scheduler could not be asked, or refused.
    #[error("scheduler: {0}")]
    Scheduler(String),
    /// The configuration is not valid.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// Anything else: state on disk that is inconsistent, a snapshot that cannot be used, ...
    #[error("{0}")]
    Other(String),
}

/// The raftstore's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The region error a client sees.
    pub fn into_pb(self) -> errorpb::Error {
        let message = self.to_string();
        let mut e = errorpb::Error {
            message,
            ..Default::default()
        };
        match self {
            Error::NotLeader { region_id, leader } => {
                e.not_leader = Some(errorpb::NotLeader { region_id, leader });
            }
            Error::RegionNotFound(region_id) => {
                e.region_not_found = Some(errorpb::RegionNotFound { region_id });
            }
            Error::KeyNotInRegion {
                key,
                region_id,
                start_key,
                end_key,
            } => {
                e.key_not_in_region = Some(errorpb::KeyNotInRegion {
                    key,
                    region_id,
                    start_key,
                    end_key,
                });
            }
            Error::EpochNotMatch { regions, .. } => {
                e.epoch_not_match = Some(errorpb::EpochNotMatch {
                    current_regions: regions,
                });
            }
            Error::StaleCommand => e.stale_command = Some(errorpb::StaleCommand {}),
            Error::StoreNotMatch {
                request_store_id,
                actual_store_id,
            } => {
                e.store_not_match = Some(errorpb::StoreNotMatch {
                    request_store_id,
                    actual_store_id,
                });
            }
            _ => {}
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_raftstore_err_to_pb_error() {
        let leader = metapb::Peer { id: 2, store_id: 2 };
        let e = Error::NotLeader {
            region_id: 1,
            leader: Some(leader),
        }
        .into_pb();
        assert_eq!(e.not_leader.unwrap().leader, Some(leader));
        assert!(Error::RegionNotFound(3)
            .into_pb()
            .region_not_found
            .is_some());
        assert!(Error::StaleCommand.into_pb().stale_command.is_some());
        let e = Error::KeyNotInRegion {
            key: b"k".to_vec(),
            region_id: 1,
            start_key: b"a".to_vec(),
            end_key: b"b".to_vec(),
        }
        .into_pb();
        assert_eq!(e.key_not_in_region.unwrap().key, b"k".to_vec());
        let e = Error::EpochNotMatch {
            message: "x".into(),
            regions: vec![metapb::Region::default()],
        }
        .into_pb();
        assert_eq!(e.epoch_not_match.unwrap().current_regions.len(), 1);
        let e = Error::StoreNotMatch {
            request_store_id: 1,
            actual_store_id: 2,
        }
        .into_pb();
        assert_eq!(e.store_not_match.unwrap().actual_store_id, 2);
        assert!(!Error::Other("boom".into()).into_pb().message.is_empty());
    }
}
