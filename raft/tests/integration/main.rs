//! The raft crate's scenario tests, TinyKV's raft suites in Rust: each test carries its stage in
//! its name (`_2aa`, `_2ab`, `_2ac`, `_2c`, `_3a`) so `make project2ab` and friends select them.

mod network;
mod test_raft;
mod test_raft_paper;
mod test_raw_node;
