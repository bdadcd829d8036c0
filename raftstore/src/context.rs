//! The contexts a store's handlers work in: the `StoreContext` that collects a round's effects
//! for the driver (messages to send, callbacks to answer, tasks to run, what to ask of the
//! scheduler, a sync to make), which each driver carries out its own way; and the `ApplyContext`
//! that collects the store's applies for one kv-engine write.

use std::time::Instant;

use proto::raft_serverpb::RaftMessage;

use crate::callback::{Callback, CmdResponse};
use crate::engine::{Engine, Engines, WriteBatch};
use crate::errors::Result;
use crate::metrics;
use crate::scheduler::SchedulerTask;
use crate::task::Task;

/// The effects of a round of handlers, for the driver to carry out.
#[derive(Default)]
pub struct StoreContext {
    /// Raft messages to send to other stores.
    pub messages: Vec<RaftMessage>,
    /// Callbacks to call with their responses.
    pub responses: Vec<(Callback, CmdResponse)>,
    /// Background tasks to run.
    pub tasks: Vec<Task>,
    /// What to ask of the scheduler: heartbeats, split ids.
    pub scheduler_tasks: Vec<SchedulerTask>,
    /// With `Config::async_raft_sync`: the raft engine must be synced, then
    /// `Store::on_synced` called with this number (or a later one).
    pub sync_request: Option<u64>,
}

impl StoreContext {
    /// Whether there is nothing to carry out.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.responses.is_empty()
            && self.tasks.is_empty()
            && self.scheduler_tasks.is_empty()
            && self.sync_request.is_none()
    }
}

/// The applies of committed entries waiting for their kv-engine write: the write batch, and
/// whether the write must be synced. The store keeps one and reuses it for every kv write of
/// applies (each write empties it).
#[derive(Default)]
pub struct ApplyContext {
    /// The data and apply states written by the applies so far.
    pub wb: WriteBatch,
    /// Whether the write must be synced: a log compaction's truncated state must be durable
    /// before the log GC deletes the entries.
    pub sync: bool,
    /// When the first entry of this batch was applied (for `metrics::APPLY_DURATION` only).
    started: Option<Instant>,
}

impl ApplyContext {
    /// Notes that an entry is being applied into this batch: the first one starts the batch's
    /// timer, which its kv write stops (a metric only; nothing reads it back).
    pub fn batch_started(&mut self) {
        if self.started.is_none() {
            self.started = Some(Instant::now());
        }
    }

    /// Makes the writes so far visible to reads of the kv engine (an unsynced write), for a read
    /// inside a command that also writes.
    pub fn flush<K: Engine>(&mut self, kv: &K) -> Result<()> {
        if !self.wb.is_empty() {
            kv.write(&self.wb, false)?;
            self.wb.clear();
        }
        Ok(())
    }

    /// Writes the applies to the kv engine and empties the context. A synced apply state must
    /// never get ahead of the durable commit index: a commit index alone is written to the raft
    /// engine without a sync, so the raft engine is synced first unless the round's raft write
    /// is (`raft_synced`).
    pub fn write<K: Engine, R: Engine>(
        &mut self,
        engines: &Engines<K, R>,
        raft_synced: bool,
    ) -> Result<()> {
        if self.sync && !raft_synced {
            engines.raft.sync()?;
        }
        if !self.wb.is_empty() || self.sync {
            engines.kv.write(&self.wb, self.sync)?;
        }
        self.wb.clear();
        self.sync = false;
        if let Some(started) = self.started.take() {
            metrics::APPLY_DURATION.observe(metrics::seconds_since(started));
        }
        Ok(())
    }
}
