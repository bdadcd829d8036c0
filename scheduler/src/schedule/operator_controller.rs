//! `OperatorController`: the running operators (at most one per region), their dispatch on each
//! region heartbeat, and the finished ones' statuses (TinyKV's
//! `scheduler/server/schedule/operator_controller.go`). Commands for stores are not sent but
//! queued in an outbox, each addressed to the store of the region's leader.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proto::eraftpb::ConfChangeType;
use proto::metapb::Peer;
use proto::schedulerpb::{
    ChangePeer, OperatorStatus, RegionHeartbeatResponse, ResponseHeader, TransferLeader,
};
use slog::{info, Logger};

use super::operator::{OpKind, OpStep, Operator};
use crate::core::RegionInfo;
use crate::metrics;

/// How long the status of a finished operator is kept.
pub const OPERATOR_STATUS_REMAIN_TIME: Duration = Duration::from_secs(10 * 60);

/// Why an operator is being dispatched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DispatchSource {
    /// The region heartbeated.
    Heartbeat,
    /// The operator was just added.
    Create,
    /// Anything else (a periodic push, a test).
    Other,
}

/// A finished (or cancelled, replaced, timed-out) operator and how it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorRecord {
    /// The operator.
    pub op: Operator,
    /// How it ended.
    pub status: OperatorStatus,
    /// When.
    pub at: Instant,
}

/// The running operators and the commands they produce.
pub struct OperatorController {
    cluster_id: u64,
    operators: HashMap<u64, Operator>,
    records: HashMap<u64, OperatorRecord>,
    outbox: Vec<(u64, RegionHeartbeatResponse)>,
    logger: Logger,
}

impl OperatorController {
    /// No operators; responses carry `cluster_id` in their header.
    pub fn new(cluster_id: u64, logger: Logger) -> OperatorController {
        OperatorController {
            cluster_id,
            operators: HashMap::new(),
            records: HashMap::new(),
            outbox: Vec::new(),
            logger,
        }
    }

    /// Dispatches the operator of `region` on news of it: finished steps are passed, the current
    /// step's command is (re)sent; the operator is dropped when done (Success), timed out
    /// (Timeout), or — on a heartbeat — when the region's conf version moved more than its own
    /// steps explain (Cancel).
    pub fn dispatch(&mut self, region: &RegionInfo, source: DispatchSource, now: Instant) {
        let Some(op) = self.operators.get_mut(&region.id()) else {
            return;
        };
        let timeout = op.is_timeout(now);
        if let Some(step) = op.check(region) {
            if !timeout {
                let changes = region.conf_ver().saturating_sub(op.region_epoch().conf_ver);
                if source == DispatchSource::Heartbeat && changes > op.conf_ver_changed(region) {
                    self.finish(region.id(), OperatorStatus::Cancel, now);
                    return;
                }
                self.send_command(region, step);
                return;
            }
        }
        if op.is_finish() {
            self.finish(region.id(), OperatorStatus::Success, now);
        } else if timeout {
            self.finish(region.id(), OperatorStatus::Timeout, now);
        }
    }

    /// Removes the operator of `region_id` and records it with `status`.
    fn finish(&mut self, region_id: u64, status: OperatorStatus, now: Instant) {
        if let Some(op) = self.operators.remove(&region_id) {
            metrics::operator_event(op.desc(), metrics::operator_end_event(status));
            let elapsed = op
                .start_time()
                .map(|t| now.saturating_duration_since(t))
                .unwrap_or_default();
            info!(self.logger, "operator ended";
                "region_id" => region_id, "status" => status.as_str_name(),
                "takes_ms" => elapsed.as_millis() as u64, "operator" => %op);
            self.record(op, status, now);
        }
    }

    fn record(&mut self, op: Operator, status: OperatorStatus, now: Instant) {
        self.records
            .retain(|_, r| now.saturating_duration_since(r.at) <= OPERATOR_STATUS_REMAIN_TIME);
        self.records.insert(
            op.region_id(),
            OperatorRecord {
                op,
                status,
                at: now,
            },
        );
    }

    /// Adds `op` for `region` (the region as currently known): refused (and recorded as
    /// cancelled) if the region is unknown, its epoch differs from the operator's, or it already
    /// has an operator at least as urgent. A replaced operator is recorded as such. The first
    /// step's command is queued at once.
    pub fn add_operator(
        &mut self,
        mut op: Operator,
        region: Option<&RegionInfo>,
        now: Instant,
    ) -> bool {
        let region_id = op.region_id();
        let refusal = match region {
            None => Some("region not found"),
            Some(r)
                if r.version() != op.region_epoch().version
                    || r.conf_ver() != op.region_epoch().conf_ver =>
            {
                Some("region epoch changed")
            }
            Some(_) => match self.operators.get(&region_id) {
                Some(old) if old.priority() >= op.priority() => {
                    Some("region has an operator already")
                }
                _ => None,
            },
        };
        if let Some(reason) = refusal {
            info!(self.logger, "operator refused"; "region_id" => region_id, "reason" => reason, "operator" => %op);
            metrics::operator_event(op.desc(), "refused");
            self.record(op, OperatorStatus::Cancel, now);
            return false;
        }
        if let Some(old) = self.operators.remove(&region_id) {
            info!(self.logger, "operator replaced"; "region_id" => region_id, "operator" => %old);
            metrics::operator_event(old.desc(), "replaced");
            self.record(old, OperatorStatus::Replace, now);
        }
        info!(self.logger, "operator created"; "region_id" => region_id, "operator" => %op);
        metrics::operator_event(op.desc(), "created");
        op.set_start_time(now);
        let step = region.and_then(|r| op.check(r));
        self.operators.insert(region_id, op);
        if let (Some(region), Some(step)) = (region, step) {
            self.send_command(region, step);
        }
        true
    }

    /// Puts `op` as the running operator of its region, as is (tests, tools).
    pub fn set_operator(&mut self, op: Operator) {
        self.operators.insert(op.region_id(), op);
    }

    /// Removes the operator of `region_id` without a record.
    pub fn remove_operator(&mut self, region_id: u64) -> Option<Operator> {
        self.operators.remove(&region_id)
    }

    /// The running operator of `region_id`.
    pub fn get_operator(&self, region_id: u64) -> Option<&Operator> {
        self.operators.get(&region_id)
    }

    /// Every running operator.
    pub fn operators(&self) -> impl Iterator<Item = &Operator> {
        self.operators.values()
    }

    /// The operator of `region_id` and its status: the running one, else the last that ended
    /// within [`OPERATOR_STATUS_REMAIN_TIME`].
    pub fn operator_status(
        &self,
        region_id: u64,
        now: Instant,
    ) -> Option<(&Operator, OperatorStatus)> {
        if let Some(op) = self.operators.get(&region_id) {
            return Some((op, OperatorStatus::Running));
        }
        self.records
            .get(&region_id)
            .filter(|r| now.saturating_duration_since(r.at) <= OPERATOR_STATUS_REMAIN_TIME)
            .map(|r| (&r.op, r.status))
    }

    /// The number of running operators whose kind has any flag of `mask`.
    pub fn operator_count(&self, mask: OpKind) -> u64 {
        self.operators
            .values()
            .filter(|op| op.kind().intersects(mask))
            .count() as u64
    }

    /// Drops the running operators that timed out (for regions that stopped heartbeating).
    pub fn remove_timed_out(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .operators
            .values()
            .filter(|op| op.is_timeout(now))
            .map(Operator::region_id)
            .collect();
        for id in expired {
            self.finish(id, OperatorStatus::Timeout, now);
        }
    }

    /// Takes the queued commands, each with the store it is for.
    pub fn take_messages(&mut self) -> Vec<(u64, RegionHeartbeatResponse)> {
        std::mem::take(&mut self.outbox)
    }

    /// Queues the command of `step` for `region`'s leader (nothing if the leader is unknown, or
    /// for an AddPeer whose store already has a peer, i.e. one still catching up).
    fn send_command(&mut self, region: &RegionInfo, step: OpStep) {
        let Some(leader) = region.leader().cloned() else {
            return;
        };
        let mut msg = RegionHeartbeatResponse {
            header: Some(ResponseHeader {
                cluster_id: self.cluster_id,
                error: None,
            }),
            region_id: region.id(),
            region_epoch: Some(region.epoch()),
            target_peer: Some(leader),
            ..Default::default()
        };
        match step {
            OpStep::TransferLeader { to_store, .. } => {
                msg.transfer_leader = Some(TransferLeader {
                    peer: region.get_store_peer(to_store).cloned(),
                });
            }
            OpStep::AddPeer { to_store, peer_id } => {
                if region.get_store_peer(to_store).is_some() {
                    return;
                }
                msg.change_peer = Some(change_peer(
                    ConfChangeType::AddNode,
                    Peer {
                        id: peer_id,
                        store_id: to_store,
                    },
                ));
            }
            OpStep::RemovePeer { from_store } => {
                let Some(peer) = region.get_store_peer(from_store).cloned() else {
                    return;
                };
                msg.change_peer = Some(change_peer(ConfChangeType::RemoveNode, peer));
            }
        }
        info!(self.logger, "send schedule command"; "region_id" => region.id(), "store_id" => leader.store_id, "step" => %step);
        self.outbox.push((leader.store_id, msg));
    }
}

fn change_peer(change_type: ConfChangeType, peer: Peer) -> ChangePeer {
    let mut cp = ChangePeer {
        peer: Some(peer),
        ..Default::default()
    };
    cp.set_change_type(change_type);
    cp
}

#[cfg(test)]
mod tests {
    use proto::metapb::RegionEpoch;

    use super::*;
    use crate::schedule::mock::MockCluster;
    use crate::schedule::Cluster;

    fn controller() -> OperatorController {
        OperatorController::new(1, Logger::root(slog::Discard, slog::o!()))
    }

    /// Applies the current step of `op` to `region`, as the stores would.
    fn apply_step(region: &RegionInfo, op: &Operator) -> RegionInfo {
        match op.step(op.current_step()) {
            Some(OpStep::TransferLeader { to_store, .. }) => {
                let leader = region.get_store_peer(to_store).cloned();
                region.clone().with_leader(leader)
            }
            Some(OpStep::AddPeer { to_store, peer_id }) => region
                .clone()
                .with_added_peer(Peer {
                    id: peer_id,
                    store_id: to_store,
                })
                .with_inc_conf_ver(),
            Some(OpStep::RemovePeer { from_store }) => region
                .clone()
                .with_removed_store_peer(from_store)
                .with_inc_conf_ver(),
            None => region.clone(),
        }
    }

    /// TinyKV's `TestOperatorStatus`.
    #[test]
    fn test_operator_status() {
        let mut tc = MockCluster::new();
        let mut oc = controller();
        let now = tc.now();
        tc.add_leader_store(1, 2, None);
        tc.add_leader_store(2, 0, None);
        tc.add_leader_region(1, 1, &[2]);
        tc.add_leader_region(2, 1, &[2]);
        let steps = vec![
            OpStep::RemovePeer { from_store: 2 },
            OpStep::AddPeer {
                to_store: 2,
                peer_id: 4,
            },
        ];
        let mut op1 = Operator::new(
            "test",
            "test",
            1,
            RegionEpoch::default(),
            OpKind::REGION,
            steps.clone(),
        );
        let mut op2 = Operator::new(
            "test",
            "test",
            2,
            RegionEpoch::default(),
            OpKind::REGION,
            steps,
        );
        let region1 = tc.get_region(1).unwrap().clone();
        let mut region2 = tc.get_region(2).unwrap().clone();
        op1.set_start_time(now);
        oc.set_operator(op1.clone());
        op2.set_start_time(now);
        oc.set_operator(op2.clone());
        assert_eq!(
            oc.operator_status(1, now).unwrap().1,
            OperatorStatus::Running
        );
        assert_eq!(
            oc.operator_status(2, now).unwrap().1,
            OperatorStatus::Running
        );

        // op1 started 10 min (and a bit) ago; region 2 did the first step of op2.
        op1.set_start_time(now - Duration::from_secs(601));
        oc.set_operator(op1);
        region2 = apply_step(&region2, &op2);
        tc.put_region(region2.clone());
        oc.dispatch(&region1, DispatchSource::Other, now);
        oc.dispatch(&region2, DispatchSource::Other, now);
        assert_eq!(
            oc.operator_status(1, now).unwrap().1,
            OperatorStatus::Timeout
        );
        assert_eq!(
            oc.operator_status(2, now).unwrap().1,
            OperatorStatus::Running
        );

        // Then the second.
        let op2 = oc.get_operator(2).unwrap().clone();
        region2 = apply_step(&region2, &op2);
        oc.dispatch(&region2, DispatchSource::Other, now);
        assert_eq!(
            oc.operator_status(2, now).unwrap().1,
            OperatorStatus::Success
        );
        assert!(oc
            .operator_status(
                2,
                now + OPERATOR_STATUS_REMAIN_TIME + Duration::from_secs(1)
            )
            .is_none());
    }

    /// TinyKV's `TestDispatchOutdatedRegion`.
    #[test]
    fn test_dispatch_outdated_region() {
        let mut tc = MockCluster::new();
        let mut oc = controller();
        let now = tc.now();
        tc.add_leader_store(1, 2, None);
        tc.add_leader_store(2, 0, None);
        tc.add_leader_region(1, 1, &[2]);
        let steps = vec![
            OpStep::TransferLeader {
                from_store: 1,
                to_store: 2,
            },
            OpStep::RemovePeer { from_store: 1 },
        ];
        let epoch = RegionEpoch {
            conf_ver: 0,
            version: 0,
        };
        let op = Operator::new("test", "test", 1, epoch, OpKind::REGION, steps.clone());
        assert!(oc.add_operator(op, tc.get_region(1), now));
        assert_eq!(oc.take_messages().len(), 1);

        // The leader moved: the remove step is sent.
        let region = tc.mock_region_info(1, 2, &[1], Some(epoch));
        oc.dispatch(&region, DispatchSource::Heartbeat, now);
        assert_eq!(oc.get_operator(1).unwrap().conf_ver_changed(&region), 0);
        assert_eq!(oc.take_messages().len(), 1);

        // The peer on 1 is gone (finished), without a conf version change.
        let region = tc.mock_region_info(1, 2, &[], Some(epoch));
        oc.dispatch(&region, DispatchSource::Heartbeat, now);
        assert!(oc.get_operator(1).is_none());
        assert_eq!(
            oc.operator_status(1, now).unwrap().1,
            OperatorStatus::Success
        );
        assert!(oc.take_messages().is_empty());

        // A new operator; then a heartbeat whose conf version moved with no step explaining it.
        let op = Operator::new("test", "test", 1, epoch, OpKind::REGION, steps);
        assert!(oc.add_operator(op, tc.get_region(1), now));
        assert_eq!(oc.take_messages().len(), 1);
        let region = tc.mock_region_info(
            1,
            1,
            &[2],
            Some(RegionEpoch {
                conf_ver: 1,
                version: 0,
            }),
        );
        oc.dispatch(&region, DispatchSource::Heartbeat, now);
        assert!(oc.take_messages().is_empty());
        assert_eq!(
            oc.operator_status(1, now).unwrap().1,
            OperatorStatus::Cancel
        );
    }

    #[test]
    fn commands_go_to_the_leader_store_and_add_peer_is_not_resent_while_pending() {
        let mut tc = MockCluster::new();
        let mut oc = controller();
        let now = tc.now();
        tc.add_leader_store(1, 1, None);
        tc.add_leader_store(2, 0, None);
        tc.add_leader_region(1, 1, &[]);
        let region = tc.get_region(1).unwrap().clone();
        let op = Operator::new(
            "t",
            "t",
            1,
            region.epoch(),
            OpKind::REGION,
            vec![OpStep::AddPeer {
                to_store: 2,
                peer_id: 9,
            }],
        );
        assert!(oc.add_operator(op.clone(), Some(&region), now));
        let msgs = oc.take_messages();
        assert_eq!(msgs.len(), 1);
        let (store, msg) = &msgs[0];
        assert_eq!(*store, 1);
        assert_eq!(msg.region_id, 1);
        assert_eq!(msg.target_peer.as_ref(), region.leader());
        let cp = msg.change_peer.as_ref().unwrap();
        assert_eq!(cp.change_type(), ConfChangeType::AddNode);
        assert_eq!(cp.peer, Some(Peer { id: 9, store_id: 2 }));

        // Resent on a heartbeat that does not show it.
        oc.dispatch(&region, DispatchSource::Heartbeat, now);
        assert_eq!(oc.take_messages().len(), 1);
        // Not resent while the peer is pending.
        let pending = region
            .clone()
            .with_added_peer(Peer { id: 9, store_id: 2 })
            .with_inc_conf_ver()
            .with_pending_peers(vec![Peer { id: 9, store_id: 2 }]);
        oc.dispatch(&pending, DispatchSource::Heartbeat, now);
        assert!(oc.take_messages().is_empty());
        assert!(oc.get_operator(1).is_some());
        // A second operator of the same priority is refused.
        assert!(!oc.add_operator(op, Some(&region), now));
        // Done once it caught up.
        oc.dispatch(
            &pending.with_pending_peers(vec![]),
            DispatchSource::Heartbeat,
            now,
        );
        assert_eq!(
            oc.operator_status(1, now).unwrap().1,
            OperatorStatus::Success
        );
        // An operator made for another epoch is refused.
        let op = Operator::new(
            "t",
            "t",
            1,
            RegionEpoch {
                conf_ver: 7,
                version: 0,
            },
            OpKind::REGION,
            vec![],
        );
        assert!(!oc.add_operator(op, Some(&region), now));
        assert_eq!(
            oc.operator_status(1, now).unwrap().1,
            OperatorStatus::Cancel
        );
    }

    #[test]
    fn timed_out_operators_are_swept() {
        let mut oc = controller();
        let now = Instant::now();
        let mut op = Operator::new(
            "t",
            "t",
            5,
            RegionEpoch::default(),
            OpKind::LEADER,
            vec![OpStep::RemovePeer { from_store: 1 }],
        );
        op.set_start_time(now);
        oc.set_operator(op);
        oc.remove_timed_out(now + Duration::from_secs(5));
        assert!(oc.get_operator(5).is_some());
        oc.remove_timed_out(now + Duration::from_secs(11));
        assert_eq!(
            oc.operator_status(5, now).unwrap().1,
            OperatorStatus::Timeout
        );
        assert_eq!(oc.operator_count(OpKind::LEADER), 0);
    }
}
