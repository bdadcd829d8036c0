//! The cluster test harness (simulated and threaded drivers) behind the staged raftstore suites.
//!
//! This crate is filled in by the 2B work; for now it only fixes its place in the workspace.
