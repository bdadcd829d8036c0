//! The binaries' logger: slog to stderr, one line per event with its key-value pairs, filtered
//! by level (`--log-level`, else `TINYKV_LOG`, else `info`). The scheduler's binary shares it, so
//! it lives in `raft::util`.

pub use raft::util::{binary_logger as logger, parse_level};
