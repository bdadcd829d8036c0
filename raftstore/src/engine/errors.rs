//! The error type of the storage engines.

use thiserror::Error;

/// What can go wrong when reading from or writing to an engine.
#[derive(Debug, Error)]
pub enum EngineError {
    /// RocksDB reported an error (the message is RocksDB's own, e.g. the `LOCK` file message when a
    /// second process or handle opens a directory that is already open).
    #[error("rocksdb: {0}")]
    Rocks(String),
    /// A stored value could not be decoded as the protobuf message the caller asked for.
    #[error("decode: {0}")]
    Codec(#[from] prost::DecodeError),
    /// A file-system operation around the engine failed (e.g. creating its directory).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Anything else: an unknown column family, a malformed key, ...
    #[error("{0}")]
    Other(String),
}

impl From<rocksdb::Error> for EngineError {
    fn from(e: rocksdb::Error) -> Self {
        EngineError::Rocks(e.into_string())
    }
}

/// The result type of every engine operation.
pub type Result<T> = std::result::Result<T, EngineError>;
