//! The column families of a store's engines, by name.

/// Column family of user values (and, in the raft engine, of every key).
pub const CF_DEFAULT: &str = "default";
/// Column family of Percolator locks.
pub const CF_LOCK: &str = "lock";
/// Column family of Percolator write records.
pub const CF_WRITE: &str = "write";
/// Column family of the kv engine's meta keys (store ident, region and apply states).
pub const CF_RAFT: &str = "raft";

/// The column families that hold user data; a region's data lives in all three.
pub const DATA_CFS: [&str; 3] = [CF_DEFAULT, CF_LOCK, CF_WRITE];
/// Every column family of the kv engine: the data CFs and [`CF_RAFT`].
pub const ALL_CFS: [&str; 4] = [CF_DEFAULT, CF_LOCK, CF_WRITE, CF_RAFT];
