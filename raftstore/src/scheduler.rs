//! The store's side of the scheduler (TinyKV's `scheduler_client` and the scheduler task of
//! `kv/raftstore/runner/scheduler_task.go`): what a store asks of it ([`SchedulerTask`]: region and
//! store heartbeats, split ids), the client trait a driver runs those tasks with
//! ([`SchedulerClient`]; the mock scheduler of the test harness and, later, a gRPC client to the
//! scheduler process implement it), and the admin commands the answers turn into.
//!
//! The scheduler answers a region heartbeat asynchronously (TinyKV streams them) with a
//! `RegionHeartbeatResponse`, which the client delivers to the leader's store; the store turns it
//! into an admin command for the region ([`command_from_response`], `Store::on_scheduler_response`).
//! An ask-split answer becomes the region's Split command ([`split_command`]).

use proto::metapb::{Peer, Region};
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, ChangePeerRequest, RaftCmdRequest, RaftRequestHeader, SplitRequest,
    TransferLeaderRequest,
};
use proto::schedulerpb::{
    AskSplitResponse, RegionHeartbeatRequest, RegionHeartbeatResponse, StoreStats,
};

use crate::errors::{Error, Result};

/// What a store's handlers ask of the scheduler; a driver runs it with its [`SchedulerClient`]
/// off the store's thread (a call may be a network round trip).
#[derive(Clone, Debug, PartialEq)]
pub enum SchedulerTask {
    /// A leader reports its region (periodically, and at once after a membership change or a
    /// split).
    RegionHeartbeat(RegionHeartbeatRequest),
    /// The store reports its statistics.
    StoreHeartbeat(StoreStats),
    /// A leader wants to split its region at `split_key`: ask for the new region's ids, then send
    /// the region the Split command ([`split_command`]).
    AskSplit {
        /// The region as the split checker measured it (its epoch guards the split).
        region: Region,
        /// Where to split.
        split_key: Vec<u8>,
        /// The leader asking.
        peer: Peer,
    },
}

impl SchedulerTask {
    /// What the task is, and the region (or, for a store heartbeat, the store) it is about: to
    /// name it in a log line without formatting the whole task.
    pub fn summary(&self) -> (&'static str, u64) {
        match self {
            SchedulerTask::RegionHeartbeat(r) => {
                ("region heartbeat", r.region.as_ref().map_or(0, |r| r.id))
            }
            SchedulerTask::StoreHeartbeat(s) => ("store heartbeat", s.store_id),
            SchedulerTask::AskSplit { region, .. } => ("ask split", region.id),
        }
    }
}

/// A scheduler as a store sees it. Calls may block (a network round trip): drivers make them off
/// the store's handler thread. Answers to region heartbeats are not returned here: the scheduler
/// sends them when it decides (TinyKV streams them), and the client delivers each to the store of
/// its `target_peer` (`Store::on_scheduler_response`).
pub trait SchedulerClient: Send + 'static {
    /// A leader reports its region.
    fn region_heartbeat(&mut self, req: RegionHeartbeatRequest) -> Result<()>;
    /// The store reports its statistics.
    fn store_heartbeat(&mut self, stats: StoreStats) -> Result<()>;
    /// New ids for a split of `region`: one region id, and one peer id per peer of the region.
    fn ask_split(&mut self, region: &Region) -> Result<AskSplitResponse>;
    /// A new unique id.
    fn alloc_id(&mut self) -> Result<u64>;
    /// The region holding `key`, and its leader if known.
    fn get_region(&mut self, key: &[u8]) -> Result<(Region, Option<Peer>)>;
}

/// A scheduler client for a cluster that has no scheduler: heartbeats go nowhere, and what needs
/// an answer (split ids, lookups) fails, so regions never split.
pub struct NoScheduler;

impl SchedulerClient for NoScheduler {
    fn region_heartbeat(&mut self, _req: RegionHeartbeatRequest) -> Result<()> {
        Ok(())
    }

    fn store_heartbeat(&mut self, _stats: StoreStats) -> Result<()> {
        Ok(())
    }

    fn ask_split(&mut self, region: &Region) -> Result<AskSplitResponse> {
        Err(Error::Scheduler(format!(
            "no scheduler to ask for the ids of a split of region {}",
            region.id
        )))
    }

    fn alloc_id(&mut self) -> Result<u64> {
        Err(Error::Scheduler("no scheduler to allocate ids".into()))
    }

    fn get_region(&mut self, key: &[u8]) -> Result<(Region, Option<Peer>)> {
        Err(Error::Scheduler(format!(
            "no scheduler to find the region of {key:?}"
        )))
    }
}

/// An admin command addressed to `region_id` through `peer`, with `epoch`.
fn admin_command(
    region_id: u64,
    peer: Option<Peer>,
    epoch: Option<proto::metapb::RegionEpoch>,
    admin: AdminRequest,
) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id,
            peer,
            region_epoch: epoch,
            term: 0,
        }),
        requests: Vec::new(),
        admin_request: Some(admin),
    }
}

/// The admin command a region heartbeat's answer asks for, if any: ChangePeer or TransferLeader,
/// addressed with the answer's region id, epoch and target peer.
pub fn command_from_response(resp: &RegionHeartbeatResponse) -> Option<RaftCmdRequest> {
    let admin = if let Some(cp) = &resp.change_peer {
        AdminRequest {
            cmd_type: AdminCmdType::ChangePeer as i32,
            change_peer: Some(ChangePeerRequest {
                // Checked where every ChangePeer is: when it is proposed.
                change_type: cp.change_type,
                peer: cp.peer,
            }),
            ..Default::default()
        }
    } else if let Some(tl) = &resp.transfer_leader {
        AdminRequest {
            cmd_type: AdminCmdType::TransferLeader as i32,
            transfer_leader: Some(TransferLeaderRequest { peer: tl.peer }),
            ..Default::default()
        }
    } else {
        return None;
    };
    Some(admin_command(
        resp.region_id,
        resp.target_peer,
        resp.region_epoch,
        admin,
    ))
}

/// The Split command for `region` at `split_key` with the ids the scheduler allocated, addressed
/// to `peer` with the epoch the split was measured at.
pub fn split_command(
    region: &Region,
    split_key: Vec<u8>,
    peer: Peer,
    ids: &AskSplitResponse,
) -> RaftCmdRequest {
    admin_command(
        region.id,
        Some(peer),
        region.region_epoch,
        AdminRequest {
            cmd_type: AdminCmdType::Split as i32,
            split: Some(SplitRequest {
                split_key,
                new_region_id: ids.new_region_id,
                new_peer_ids: ids.new_peer_ids.clone(),
            }),
            ..Default::default()
        },
    )
}

/// Runs a task with `client`; returns the command it leads to for the store (the Split command
/// of an ask-split), if any.
pub fn run_scheduler_task<S: SchedulerClient + ?Sized>(
    client: &mut S,
    task: SchedulerTask,
) -> Result<Option<RaftCmdRequest>> {
    match task {
        SchedulerTask::RegionHeartbeat(req) => client.region_heartbeat(req).map(|()| None),
        SchedulerTask::StoreHeartbeat(stats) => client.store_heartbeat(stats).map(|()| None),
        SchedulerTask::AskSplit {
            region,
            split_key,
            peer,
        } => {
            // The ids are checked against the region where every split is: when it is applied.
            let ids = client.ask_split(&region)?;
            Ok(Some(split_command(&region, split_key, peer, &ids)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::eraftpb::ConfChangeType;
    use proto::metapb::RegionEpoch;
    use proto::schedulerpb::{ChangePeer, TransferLeader};

    #[test]
    fn test_command_from_response() {
        let peer = Peer { id: 7, store_id: 3 };
        let target = Peer { id: 1, store_id: 1 };
        let epoch = RegionEpoch {
            conf_ver: 4,
            version: 2,
        };
        let mut resp = RegionHeartbeatResponse {
            region_id: 9,
            region_epoch: Some(epoch),
            target_peer: Some(target),
            ..Default::default()
        };
        assert_eq!(
            command_from_response(&resp),
            None,
            "no operator, no command"
        );
        resp.change_peer = Some(ChangePeer {
            peer: Some(peer),
            change_type: ConfChangeType::RemoveNode as i32,
        });
        let cmd = command_from_response(&resp).unwrap();
        let h = cmd.header.unwrap();
        assert_eq!(
            (h.region_id, h.peer, h.region_epoch),
            (9, Some(target), Some(epoch))
        );
        let admin = cmd.admin_request.unwrap();
        assert_eq!(admin.cmd_type(), AdminCmdType::ChangePeer);
        let cp = admin.change_peer.unwrap();
        assert_eq!(
            (cp.change_type(), cp.peer),
            (ConfChangeType::RemoveNode, Some(peer))
        );
        resp.change_peer = None;
        resp.transfer_leader = Some(TransferLeader { peer: Some(peer) });
        let admin = command_from_response(&resp).unwrap().admin_request.unwrap();
        assert_eq!(admin.cmd_type(), AdminCmdType::TransferLeader);
        assert_eq!(admin.transfer_leader.unwrap().peer, Some(peer));
    }

    #[test]
    fn test_ask_split_without_a_scheduler_fails() {
        let region = Region {
            id: 1,
            peers: vec![Peer { id: 1, store_id: 1 }],
            ..Default::default()
        };
        let task = SchedulerTask::AskSplit {
            region,
            split_key: b"k".to_vec(),
            peer: Peer { id: 1, store_id: 1 },
        };
        let e = run_scheduler_task(&mut NoScheduler, task).unwrap_err();
        assert!(e.to_string().contains("no scheduler"), "{e}");
    }
}
