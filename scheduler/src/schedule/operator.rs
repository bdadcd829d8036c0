//! Operators: a short plan of steps (add a peer, remove a peer, transfer the leader) that moves a
//! region toward a better placement, and the builders schedulers and checkers use (TinyKV's
//! `scheduler/server/schedule/operator/operator.go` and `operator_kind.go`).

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};
use std::str::FromStr;
use std::time::{Duration, Instant};

use proto::metapb::RegionEpoch;

use super::Cluster;
use crate::core::RegionInfo;
use crate::errors::{Error, Result};

/// How long an operator that only moves the leader may run.
pub const LEADER_OPERATOR_WAIT_TIME: Duration = Duration::from_secs(10);
/// How long an operator that moves peers may run.
pub const REGION_OPERATOR_WAIT_TIME: Duration = Duration::from_secs(10 * 60);

/// What an operator does and who asked for it: a set of flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OpKind(u32);

const KIND_NAMES: [(OpKind, &str); 8] = [
    (OpKind::LEADER, "leader"),
    (OpKind::REGION, "region"),
    (OpKind::ADMIN, "admin"),
    (OpKind::ADJACENT, "adjacent"),
    (OpKind::REPLICA, "replica"),
    (OpKind::BALANCE, "balance"),
    (OpKind::MERGE, "merge"),
    (OpKind::RANGE, "range"),
];

impl OpKind {
    /// It transfers a leader.
    pub const LEADER: OpKind = OpKind(1);
    /// It moves peers.
    pub const REGION: OpKind = OpKind(1 << 1);
    /// An administrator asked for it.
    pub const ADMIN: OpKind = OpKind(1 << 2);
    /// The adjacent-region scheduler asked for it.
    pub const ADJACENT: OpKind = OpKind(1 << 3);
    /// The replica checker asked for it.
    pub const REPLICA: OpKind = OpKind(1 << 4);
    /// A balancer asked for it.
    pub const BALANCE: OpKind = OpKind(1 << 5);
    /// A merge checker asked for it.
    pub const MERGE: OpKind = OpKind(1 << 6);
    /// The range scheduler asked for it.
    pub const RANGE: OpKind = OpKind(1 << 7);

    /// The raw flags.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: OpKind) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set.
    pub fn intersects(self, other: OpKind) -> bool {
        self.0 & other.0 != 0
    }
}

impl BitOr for OpKind {
    type Output = OpKind;
    fn bitor(self, rhs: OpKind) -> OpKind {
        OpKind(self.0 | rhs.0)
    }
}

impl BitOrAssign for OpKind {
    fn bitor_assign(&mut self, rhs: OpKind) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for OpKind {
    type Output = OpKind;
    fn bitand(self, rhs: OpKind) -> OpKind {
        OpKind(self.0 & rhs.0)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = KIND_NAMES
            .iter()
            .filter(|(k, _)| self.intersects(*k))
            .map(|(_, name)| *name)
            .collect();
        if names.is_empty() {
            f.write_str("unknown")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

impl FromStr for OpKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<OpKind> {
        s.split(',').try_fold(OpKind::default(), |acc, name| {
            KIND_NAMES
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(k, _)| acc | *k)
                .ok_or_else(|| Error::UnknownOperatorKind(name.to_string()))
        })
    }
}

/// How urgent an operator is: a new operator replaces a running one only if it is more urgent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PriorityLevel {
    /// Low.
    Low,
    /// Normal (balancers, most checks).
    Normal,
    /// High (admin operators, replacing a peer on an offline or down store).
    High,
}

/// One step of an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpStep {
    /// Move the leadership from `from_store` to `to_store`.
    TransferLeader {
        /// The leader's store.
        from_store: u64,
        /// The store that should lead.
        to_store: u64,
    },
    /// Add peer `peer_id` on `to_store`; done once it is a voter there and no longer pending.
    AddPeer {
        /// The store.
        to_store: u64,
        /// The new peer's id.
        peer_id: u64,
    },
    /// Remove the peer on `from_store`.
    RemovePeer {
        /// The store.
        from_store: u64,
    },
}

impl OpStep {
    /// Whether `region` shows the conf change of this step (a leader transfer has none).
    pub fn conf_ver_changed(&self, region: &RegionInfo) -> bool {
        match *self {
            OpStep::TransferLeader { .. } => false,
            OpStep::AddPeer { to_store, peer_id } => region
                .get_store_voter(to_store)
                .is_some_and(|p| p.id == peer_id),
            OpStep::RemovePeer { from_store } => region.get_store_peer(from_store).is_none(),
        }
    }

    /// Whether `region` shows this step done.
    pub fn is_finish(&self, region: &RegionInfo) -> bool {
        match *self {
            OpStep::TransferLeader { to_store, .. } => region.leader_store_id() == Some(to_store),
            OpStep::AddPeer { to_store, peer_id } => region
                .get_store_voter(to_store)
                .is_some_and(|p| p.id == peer_id && region.get_pending_peer(p.id).is_none()),
            OpStep::RemovePeer { from_store } => region.get_store_peer(from_store).is_none(),
        }
    }
}

impl fmt::Display for OpStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpStep::TransferLeader {
                from_store,
                to_store,
            } => {
                write!(
                    f,
                    "transfer leader from store {from_store} to store {to_store}"
                )
            }
            OpStep::AddPeer { to_store, peer_id } => {
                write!(f, "add peer {peer_id} on store {to_store}")
            }
            OpStep::RemovePeer { from_store } => write!(f, "remove peer on store {from_store}"),
        }
    }
}

/// A plan for one region: steps run in order, each finished when a heartbeat shows it done.
#[derive(Clone, Debug, PartialEq)]
pub struct Operator {
    desc: String,
    brief: String,
    region_id: u64,
    region_epoch: RegionEpoch,
    kind: OpKind,
    steps: Vec<OpStep>,
    current_step: usize,
    start_time: Option<Instant>,
    level: PriorityLevel,
}

impl Operator {
    /// An operator for region `region_id` as of `region_epoch`; admin operators are High priority.
    pub fn new(
        desc: impl Into<String>,
        brief: impl Into<String>,
        region_id: u64,
        region_epoch: RegionEpoch,
        kind: OpKind,
        steps: Vec<OpStep>,
    ) -> Operator {
        let level = if kind.intersects(OpKind::ADMIN) {
            PriorityLevel::High
        } else {
            PriorityLevel::Normal
        };
        Operator {
            desc: desc.into(),
            brief: brief.into(),
            region_id,
            region_epoch,
            kind,
            steps,
            current_step: 0,
            start_time: None,
            level,
        }
    }

    /// Who made it and why ("balance-region", "replace-offline-replica", ...).
    pub fn desc(&self) -> &str {
        &self.desc
    }

    /// A short description of what it does.
    pub fn brief(&self) -> &str {
        &self.brief
    }

    /// The region.
    pub fn region_id(&self) -> u64 {
        self.region_id
    }

    /// The region's epoch when the operator was made.
    pub fn region_epoch(&self) -> &RegionEpoch {
        &self.region_epoch
    }

    /// Its kind.
    pub fn kind(&self) -> OpKind {
        self.kind
    }

    /// Adds flags to its kind.
    pub fn attach_kind(&mut self, kind: OpKind) {
        self.kind |= kind;
    }

    /// The number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether it has no step.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Step `i`.
    pub fn step(&self, i: usize) -> Option<OpStep> {
        self.steps.get(i).copied()
    }

    /// Every step.
    pub fn steps(&self) -> &[OpStep] {
        &self.steps
    }

    /// The index of the first unfinished step.
    pub fn current_step(&self) -> usize {
        self.current_step
    }

    /// Its priority.
    pub fn priority(&self) -> PriorityLevel {
        self.level
    }

    /// Sets its priority.
    pub fn set_priority(&mut self, level: PriorityLevel) {
        self.level = level;
    }

    /// When it was started (added to the controller).
    pub fn start_time(&self) -> Option<Instant> {
        self.start_time
    }

    /// Sets when it started.
    pub fn set_start_time(&mut self, at: Instant) {
        self.start_time = Some(at);
    }

    /// Advances past every step `region` shows done; returns the first unfinished step.
    pub fn check(&mut self, region: &RegionInfo) -> Option<OpStep> {
        while let Some(step) = self.steps.get(self.current_step) {
            if !step.is_finish(region) {
                return Some(*step);
            }
            self.current_step += 1;
        }
        None
    }

    /// How many of its steps up to the current one `region` shows as conf changes.
    pub fn conf_ver_changed(&self, region: &RegionInfo) -> u64 {
        let upto = (self.current_step + 1).min(self.steps.len());
        self.steps[..upto]
            .iter()
            .filter(|s| s.conf_ver_changed(region))
            .count() as u64
    }

    /// Whether every step is done.
    pub fn is_finish(&self) -> bool {
        self.current_step >= self.steps.len()
    }

    /// Whether it has run longer than its kind allows (never before it starts or once finished).
    pub fn is_timeout(&self, now: Instant) -> bool {
        let Some(start) = self.start_time else {
            return false;
        };
        if self.is_finish() {
            return false;
        }
        let limit = if self.kind.intersects(OpKind::REGION) {
            REGION_OPERATOR_WAIT_TIME
        } else {
            LEADER_OPERATOR_WAIT_TIME
        };
        now.saturating_duration_since(start) > limit
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<String> = self.steps.iter().map(ToString::to_string).collect();
        write!(
            f,
            "{} {{{}}} (kind:{}, region:{}({},{}), currentStep:{}, steps:[{}])",
            self.desc,
            self.brief,
            self.kind,
            self.region_id,
            self.region_epoch.version,
            self.region_epoch.conf_ver,
            self.current_step,
            steps.join(", ")
        )?;
        if self.is_finish() {
            f.write_str(" finished")?;
        }
        Ok(())
    }
}

/// An operator adding peer `peer_id` on `to_store`.
pub fn create_add_peer_operator(
    desc: &str,
    region: &RegionInfo,
    peer_id: u64,
    to_store: u64,
    kind: OpKind,
) -> Operator {
    Operator::new(
        desc,
        format!("add peer: store {to_store}"),
        region.id(),
        region.epoch(),
        kind | OpKind::REGION,
        vec![OpStep::AddPeer { to_store, peer_id }],
    )
}

/// An operator moving the leadership from `from_store` to `to_store`.
pub fn create_transfer_leader_operator(
    desc: &str,
    region: &RegionInfo,
    from_store: u64,
    to_store: u64,
    kind: OpKind,
) -> Operator {
    Operator::new(
        desc,
        format!("transfer leader: store {from_store} to {to_store}"),
        region.id(),
        region.epoch(),
        kind | OpKind::LEADER,
        vec![OpStep::TransferLeader {
            from_store,
            to_store,
        }],
    )
}

/// An operator removing the peer on `store_id`, first moving the leadership away if it is there.
pub fn create_remove_peer_operator(
    desc: &str,
    cluster: &dyn Cluster,
    kind: OpKind,
    region: &RegionInfo,
    store_id: u64,
) -> Result<Operator> {
    let followers: Vec<u64> = region.followers().into_keys().collect();
    let (extra, steps) = remove_peer_steps(cluster, region, store_id, &followers)?;
    Ok(Operator::new(
        desc,
        format!("rm peer: store {store_id}"),
        region.id(),
        region.epoch(),
        extra | kind,
        steps,
    ))
}

/// An operator moving the peer on `old_store` to `new_store` (new peer `peer_id`): add the new
/// peer, move the leadership away from `old_store` if it is there (to a follower, or the new
/// peer), then remove the old peer.
pub fn create_move_peer_operator(
    desc: &str,
    cluster: &dyn Cluster,
    region: &RegionInfo,
    kind: OpKind,
    old_store: u64,
    new_store: u64,
    peer_id: u64,
) -> Result<Operator> {
    let mut candidates: Vec<u64> = region.followers().into_keys().collect();
    candidates.push(new_store);
    let (extra, remove) = remove_peer_steps(cluster, region, old_store, &candidates)?;
    let mut steps = vec![OpStep::AddPeer {
        to_store: new_store,
        peer_id,
    }];
    steps.extend(remove);
    Ok(Operator::new(
        desc,
        format!("mv peer: store {old_store} to {new_store}"),
        region.id(),
        region.epoch(),
        extra | kind | OpKind::REGION,
        steps,
    ))
}

/// The steps removing the peer on `store_id`: a leader transfer first if it leads.
fn remove_peer_steps(
    cluster: &dyn Cluster,
    region: &RegionInfo,
    store_id: u64,
    leader_candidates: &[u64],
) -> Result<(OpKind, Vec<OpStep>)> {
    let mut kind = OpKind::REGION;
    let mut steps = Vec::with_capacity(2);
    if region.leader_store_id() == Some(store_id) {
        let to_store = pick_leader_store(cluster, leader_candidates)
            .ok_or(Error::NoLeaderTarget(region.id()))?;
        steps.push(OpStep::TransferLeader {
            from_store: store_id,
            to_store,
        });
        kind |= OpKind::LEADER;
    }
    steps.push(OpStep::RemovePeer {
        from_store: store_id,
    });
    Ok((kind, steps))
}

/// The first candidate store that is up and connected; failing that, the first known one.
fn pick_leader_store(cluster: &dyn Cluster, candidates: &[u64]) -> Option<u64> {
    let now = cluster.now();
    let known = || {
        candidates
            .iter()
            .copied()
            .filter(|id| cluster.get_store(*id).is_some())
    };
    known()
        .find(|id| {
            cluster
                .get_store(*id)
                .is_some_and(|s| s.is_up() && !s.is_disconnected(now))
        })
        .or_else(|| known().next())
}

#[cfg(test)]
mod tests {
    use proto::metapb::{Peer, Region, Store};

    use super::*;
    use crate::core::StoreInfo;
    use crate::schedule::mock::MockCluster;

    fn new_test_region(region_id: u64, leader_peer: u64, peers: &[(u64, u64)]) -> RegionInfo {
        let peers: Vec<Peer> = peers
            .iter()
            .map(|&(store_id, id)| Peer { id, store_id })
            .collect();
        let leader = peers.iter().find(|p| p.id == leader_peer).cloned();
        RegionInfo::new(
            Region {
                id: region_id,
                peers,
                ..Default::default()
            },
            leader,
        )
        .with_approximate_size(50)
    }

    fn new_test_operator(region_id: u64, kind: OpKind, steps: Vec<OpStep>) -> Operator {
        Operator::new(
            "test",
            "test",
            region_id,
            RegionEpoch::default(),
            OpKind::ADMIN | kind,
            steps,
        )
    }

    fn cluster() -> MockCluster {
        let mut tc = MockCluster::new();
        for id in 1..=8 {
            tc.put_store(StoreInfo::new(Store {
                id,
                ..Default::default()
            }));
        }
        tc
    }

    /// TinyKV's `TestOperatorStep`.
    #[test]
    fn test_operator_step() {
        let region = new_test_region(1, 1, &[(1, 1), (2, 2)]);
        assert!(!OpStep::TransferLeader {
            from_store: 1,
            to_store: 2
        }
        .is_finish(&region));
        assert!(OpStep::TransferLeader {
            from_store: 2,
            to_store: 1
        }
        .is_finish(&region));
        assert!(!OpStep::AddPeer {
            to_store: 3,
            peer_id: 3
        }
        .is_finish(&region));
        assert!(OpStep::AddPeer {
            to_store: 1,
            peer_id: 1
        }
        .is_finish(&region));
        assert!(!OpStep::RemovePeer { from_store: 1 }.is_finish(&region));
        assert!(OpStep::RemovePeer { from_store: 3 }.is_finish(&region));
        let pending = region
            .clone()
            .with_pending_peers(vec![Peer { id: 1, store_id: 1 }]);
        assert!(!OpStep::AddPeer {
            to_store: 1,
            peer_id: 1
        }
        .is_finish(&pending));
        assert!(
            !OpStep::AddPeer {
                to_store: 1,
                peer_id: 9
            }
            .is_finish(&region),
            "another peer id"
        );
    }

    /// TinyKV's `TestOperator`.
    #[test]
    fn test_operator() {
        let region = new_test_region(1, 1, &[(1, 1), (2, 2)]);
        let steps = vec![
            OpStep::AddPeer {
                to_store: 1,
                peer_id: 1,
            },
            OpStep::TransferLeader {
                from_store: 3,
                to_store: 1,
            },
            OpStep::RemovePeer { from_store: 3 },
        ];
        let mut op = new_test_operator(1, OpKind::LEADER | OpKind::REGION, steps.clone());
        assert_eq!(op.priority(), PriorityLevel::High);
        assert_eq!(op.steps(), steps.as_slice());
        assert_eq!(op.check(&region), None);
        assert!(op.is_finish());
        let now = Instant::now() + Duration::from_secs(3600);
        op.set_start_time(now - REGION_OPERATOR_WAIT_TIME - Duration::from_secs(1));
        assert!(!op.is_timeout(now), "a finished operator never times out");

        let steps = vec![
            OpStep::AddPeer {
                to_store: 1,
                peer_id: 1,
            },
            OpStep::TransferLeader {
                from_store: 2,
                to_store: 1,
            },
            OpStep::RemovePeer { from_store: 2 },
        ];
        let mut op = new_test_operator(1, OpKind::LEADER | OpKind::REGION, steps.clone());
        assert_eq!(
            op.check(&region),
            Some(OpStep::RemovePeer { from_store: 2 })
        );
        assert_eq!(op.current_step(), 2);
        op.set_start_time(now);
        assert!(!op.is_timeout(now));
        op.set_start_time(now - LEADER_OPERATOR_WAIT_TIME - Duration::from_secs(1));
        assert!(!op.is_timeout(now));
        op.set_start_time(now - REGION_OPERATOR_WAIT_TIME - Duration::from_secs(1));
        assert!(op.is_timeout(now));
        assert!(op.to_string().contains("remove peer on store 2"));

        let mut op = new_test_operator(
            1,
            OpKind::LEADER,
            vec![OpStep::TransferLeader {
                from_store: 2,
                to_store: 1,
            }],
        );
        op.set_start_time(now);
        assert!(!op.is_timeout(now));
        op.set_start_time(now - LEADER_OPERATOR_WAIT_TIME - Duration::from_secs(1));
        assert!(op.is_timeout(now));
    }

    /// TinyKV's `TestOperatorKind`.
    #[test]
    fn test_operator_kind() {
        assert_eq!(
            (OpKind::LEADER | OpKind::REPLICA).to_string(),
            "leader,replica"
        );
        assert_eq!(OpKind::default().to_string(), "unknown");
        let k: OpKind = "balance,region,leader".parse().unwrap();
        assert_eq!(k, OpKind::BALANCE | OpKind::REGION | OpKind::LEADER);
        assert!("leader,region".parse::<OpKind>().is_ok());
        assert!("foobar".parse::<OpKind>().is_err());
    }

    /// TinyKV's `TestFindAvailableStore`, for the leader-transfer target of a peer move.
    #[test]
    fn test_find_available_store() {
        let tc = cluster();
        assert_eq!(
            pick_leader_store(&tc, &[8, 7, 3, 4, 7, 3, 1, 5, 6]),
            Some(8)
        );
        assert_eq!(pick_leader_store(&tc, &[3, 4, 7, 3, 1, 5, 6]), Some(3));
        assert_eq!(pick_leader_store(&tc, &[9, 10]), None);
        assert_eq!(pick_leader_store(&tc, &[9, 2]), Some(2));
    }

    #[test]
    fn move_peer_transfers_the_leader_only_when_it_leaves() {
        let tc = cluster();
        let region = new_test_region(1, 1, &[(1, 1), (2, 2), (3, 3)]);
        let op = create_move_peer_operator("t", &tc, &region, OpKind::BALANCE, 1, 4, 9).unwrap();
        assert_eq!(
            op.steps(),
            &[
                OpStep::AddPeer {
                    to_store: 4,
                    peer_id: 9
                },
                OpStep::TransferLeader {
                    from_store: 1,
                    to_store: 2
                },
                OpStep::RemovePeer { from_store: 1 },
            ]
        );
        assert!(op
            .kind()
            .contains(OpKind::BALANCE | OpKind::REGION | OpKind::LEADER));
        let op = create_move_peer_operator("t", &tc, &region, OpKind::BALANCE, 3, 4, 9).unwrap();
        assert_eq!(op.len(), 2);
        assert!(!op.kind().intersects(OpKind::LEADER));

        let lonely = new_test_region(2, 1, &[(1, 1)]);
        let op = create_remove_peer_operator("t", &tc, OpKind::REPLICA, &lonely, 1);
        assert!(matches!(op, Err(Error::NoLeaderTarget(2))));
    }
}
