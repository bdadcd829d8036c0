//! Sans-IO Raft consensus, with TinyKV's API in Rust form.
//!
//! - [`Raft`] (`raft.rs`): roles, terms, elections, replication, commit, membership, leader
//!   transfer, pre-vote, check-quorum and ReadIndex.
//! - [`RaftLog`] (`raft_log.rs`) over a [`Storage`] (`storage.rs`) and the unstable tail
//!   (`log_unstable.rs`).
//! - [`RawNode`] and [`Ready`] (`raw_node.rs`): how an application drives a node; the contract is
//!   written once, in that module's documentation.
//! - [`Progress`] (`progress.rs`): the leader's view of each follower and its flow control;
//!   `quorum.rs`: what a majority has matched or voted; `read_only.rs`: ReadIndex bookkeeping.
//!
//! Nothing here does I/O, sleeps, reads a clock or spawns a thread: time is `tick()`, input is
//! `step()`, output is `Ready`. Randomness (election timeouts) comes from an RNG seeded by
//! [`Config::seed`], so a whole cluster replays exactly from one seed.

#![deny(missing_docs)]

pub mod config;
pub mod errors;
pub mod log_unstable;
pub mod progress;
pub mod quorum;
pub mod raft;
pub mod raft_log;
pub mod raw_node;
pub mod read_only;
pub mod storage;
pub mod util;

pub use crate::config::Config;
pub use crate::errors::{Error, Result, StorageError};
pub use crate::progress::{Inflights, Progress, ProgressState};
pub use crate::raft::{Raft, SnapshotStatus, SoftState, StateRole, CAMPAIGN_TRANSFER};
pub use crate::raft_log::RaftLog;
pub use crate::raw_node::{RawNode, Ready};
pub use crate::read_only::{ReadOnlyOption, ReadState};
pub use crate::storage::{MemStorage, MemStorageCore, RaftState, Storage};
pub use crate::util::{default_logger, is_empty_hard_state, is_empty_snap, INVALID_ID, NO_LIMIT};
pub use proto::eraftpb;
