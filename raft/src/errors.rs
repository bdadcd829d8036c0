//! The raft crate's typed errors: what `step`, `propose` and friends may refuse, and what a `Storage`
//! may answer instead of entries.

use thiserror::Error;

/// An error from the raft state machine.
#[derive(Debug, Error)]
pub enum Error {
    /// The configuration is invalid; the message says which field and why.
    #[error("invalid raft config: {0}")]
    ConfigInvalid(String),
    /// The proposal was not appended (no leader known, a leader transfer in progress, a conf change
    /// already pending, or this node is not in the configuration).
    #[error("raft: proposal dropped")]
    ProposalDropped,
    /// A local message (MsgHup, MsgBeat, ...) was given to `RawNode::step`, which only takes messages
    /// from the network.
    #[error("raft: cannot step a local message")]
    StepLocalMsg,
    /// A response came from a peer that is not in the configuration.
    #[error("raft: cannot step a response from an unknown peer")]
    StepPeerNotFound,
    /// The storage failed.
    #[error("raft storage: {0}")]
    Store(#[from] StorageError),
}

impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Error::ConfigInvalid(a), Error::ConfigInvalid(b)) => a == b,
            (Error::Store(a), Error::Store(b)) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// An error a `Storage` answers with.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The requested index is older than the first one kept: it was compacted into a snapshot.
    #[error("requested index is unavailable due to compaction")]
    Compacted,
    /// The snapshot being applied or created is older than the one the storage already has.
    #[error("requested index is older than the existing snapshot")]
    SnapshotOutOfDate,
    /// The requested entries are not (yet) in the storage.
    #[error("requested entry at index is unavailable")]
    Unavailable,
    /// A snapshot is being generated; raft should ask again later.
    #[error("snapshot is temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    /// Any other failure of the underlying engine.
    #[error("storage failure: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl PartialEq for StorageError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (StorageError::Other(a), StorageError::Other(b)) => a.to_string() == b.to_string(),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// The raft crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
