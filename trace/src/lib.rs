//! Traces of simulated cluster runs: what happened, in order, in virtual time — messages sent,
//! delivered and dropped; roles, terms, commits and applies of every replica; commands and
//! client operations; crashes with what they lost; partitions; snapshots; and the failure that
//! ended a run. The simulator (`tests/src/trace.rs`) records them; this crate reads them,
//! checks raft's invariants over them and explains a failure (`check`), and draws them as a
//! self-contained HTML timeline (`html`). The `tinykv-trace` tool puts these on the command line
//! (docs/TRACES.md).

pub mod check;
pub mod file;
pub mod html;
pub mod record;

pub use file::{hash64, parse, read, Trace, TraceError, TraceWriter};
