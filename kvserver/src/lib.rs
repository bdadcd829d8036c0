//! The TinyKV gRPC edge: `tinykv-server`, `tinykv-ctl` and `tinykv-bench`.
//!
//! This crate is filled in by the server work; for now it only fixes its place in the workspace.
