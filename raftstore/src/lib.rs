//! The multi-raft store: one raft group per region replica, on a raft engine and a kv engine.
//!
//! This crate is filled in by the 2B work (engines, peer storage, peers, the store, group commit and
//! the two drivers); for now it only fixes its place in the workspace.
