//! Snapshots: a leader generates one on a worker when raft asks for it to send
//! (`maybe_generate_snapshot`), from a view of the kv engine at the applied index; a follower
//! checks a received one before stepping it (`check_snapshot`), and while a worker installs it
//! the replica is frozen (`start_install`), with failed installs retried after a back-off.

use std::sync::Arc;

use proto::eraftpb::Snapshot;
use proto::metapb::Region;
use slog::{error, info, warn};

use super::{Install, KeyRanges, Peer};
use crate::context::StoreContext;
use crate::engine::Engine;
use crate::errors::{Error, Result};
use crate::snap::{snapshot_data, SnapKey};
use crate::task::Task;

impl<K: Engine, R: Engine> Peer<K, R> {
    /// Whether a received snapshot may be stepped: its files are here, and its region is this
    /// region and lists this peer.
    pub(super) fn check_snapshot(&self, key: SnapKey, snap: Option<&Snapshot>) -> Result<()> {
        if !self.snap_mgr.has_received(key) {
            return Err(Error::Other("its files were not received".into()));
        }
        let data = snapshot_data(snap.ok_or_else(|| Error::Other("no snapshot".into()))?)?;
        let region = data.region.unwrap_or_default();
        if region.id != self.region_id || !region.peers.iter().any(|p| p.id == self.meta.id) {
            return Err(Error::Other(format!(
                "its region {} does not hold peer {}",
                region.id, self.meta.id
            )));
        }
        Ok(())
    }

    /// When raft asked for a snapshot to send, hands its generation to a worker, with a view of
    /// the kv engine taken now. Called at the start of a round, when the engine is exactly at the
    /// applied index.
    pub fn maybe_generate_snapshot(&mut self, ctx: &mut StoreContext) {
        if !self.storage().snapshot_requested.replace(false) || self.generating {
            return;
        }
        let applied = self.storage().applied_index();
        let term = match self.raft_group.raft.raft_log.term(applied) {
            Ok(t) => t,
            Err(e) => {
                warn!(self.logger, "cannot generate a snapshot"; "applied" => applied, "err" => %e);
                return;
            }
        };
        let key = SnapKey {
            region_id: self.region_id,
            term,
            index: applied,
        };
        info!(self.logger, "generating a snapshot"; "snapshot" => %key);
        self.generating = true;
        ctx.tasks.push(Task::GenSnapshot {
            key,
            region: self.region().clone(),
            snap: Arc::new(self.engines().kv.snapshot()),
        });
    }

    /// A snapshot generation finished: raft gets it the next time it asks.
    pub fn on_snapshot_generated(
        &mut self,
        key: SnapKey,
        result: std::result::Result<Snapshot, String>,
    ) {
        self.generating = false;
        match result {
            Ok(snap) => {
                info!(self.logger, "snapshot generated"; "snapshot" => %key,
                    "size" => snapshot_data(&snap).map_or(0, |d| d.file_size));
                if let Some(old) = self.last_generated.replace(key) {
                    if old != key {
                        self.snap_mgr.delete_generated(old);
                    }
                }
                *self.storage().generated_snapshot.borrow_mut() = Some(snap);
            }
            Err(e) => {
                warn!(self.logger, "snapshot generation failed"; "snapshot" => %key, "err" => e)
            }
        }
    }

    /// A snapshot application finished: the replica thaws, with the snapshot's data and states.
    pub fn on_snapshot_applied(&mut self, key: SnapKey, result: std::result::Result<(), String>) {
        let Some(install) = self.applying.as_mut().filter(|i| i.key == key) else {
            warn!(self.logger, "result of a snapshot application not in progress"; "snapshot" => %key);
            return;
        };
        match result {
            Ok(()) => {
                info!(self.logger, "snapshot applied"; "snapshot" => %key);
                self.applying = None;
                self.snap_mgr.delete_received(key);
            }
            // The files were verified when received: only a failing disk gets here. The replica
            // stays frozen (serving nothing stale) and the install, which starts by clearing the
            // range again, is queued anew after a back-off (and redone on restart in any case).
            Err(e) => {
                install.failures += 1;
                let wait = install.backoff();
                install.retry_in = Some(wait);
                error!(self.logger, "snapshot application failed; retrying";
                    "snapshot" => %key, "err" => e, "retry_in_ticks" => wait);
            }
        }
    }

    /// Freezes the replica while snapshot `key` of `region` is installed, and queues the install.
    pub(super) fn start_install(&mut self, key: SnapKey, region: Region, clear: KeyRanges) {
        self.applying = Some(Install {
            key,
            region,
            clear,
            failures: 0,
            retry_in: None,
        });
        self.queue_install();
    }

    /// Hands an attempt at the current install to a worker (at the end of the round).
    pub(super) fn queue_install(&mut self) {
        if let Some(i) = &self.applying {
            self.pending_tasks.push(Task::ApplySnapshot {
                key: i.key,
                region: i.region.clone(),
                clear: i.clear.clone(),
            });
        }
    }
}
