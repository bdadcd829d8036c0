//! Operator checks for scheduler and checker tests (TinyKV's
//! `scheduler/pkg/testutil/operator_check.go`).

use super::operator::{OpKind, OpStep, Operator};

/// `op` adds one peer on `store_id` and has kind `kind | Region`.
pub fn check_add_peer(op: Option<Operator>, kind: OpKind, store_id: u64) {
    let op = op.expect("an operator");
    assert_eq!(op.len(), 1, "{op}");
    assert!(
        matches!(op.step(0), Some(OpStep::AddPeer { to_store, .. }) if to_store == store_id),
        "{op}"
    );
    assert!(op.kind().contains(kind | OpKind::REGION), "{op}");
}

/// `op` removes the peer on `store_id`, after moving the leader away from it if needed.
pub fn check_remove_peer(op: Option<Operator>, store_id: u64) {
    let op = op.expect("an operator");
    if op.len() == 1 {
        assert_eq!(
            op.step(0),
            Some(OpStep::RemovePeer {
                from_store: store_id
            }),
            "{op}"
        );
    } else {
        assert_eq!(op.len(), 2, "{op}");
        assert!(
            matches!(op.step(0), Some(OpStep::TransferLeader { from_store, .. }) if from_store == store_id),
            "{op}"
        );
        assert_eq!(
            op.step(1),
            Some(OpStep::RemovePeer {
                from_store: store_id
            }),
            "{op}"
        );
    }
}

/// `op` moves the leader from `source` to `target` in one step and has kind `kind | Leader`.
pub fn check_transfer_leader(op: Option<Operator>, kind: OpKind, source: u64, target: u64) {
    let op = op.expect("an operator");
    assert_eq!(op.len(), 1, "{op}");
    assert_eq!(
        op.step(0),
        Some(OpStep::TransferLeader {
            from_store: source,
            to_store: target
        }),
        "{op}"
    );
    assert!(op.kind().contains(kind | OpKind::LEADER), "{op}");
}

/// `op` moves a peer from `source` to `target`: `[AddPeer(target), RemovePeer(source)]`, or with
/// a leader transfer away from `source` in between (then its kind includes Leader).
pub fn check_transfer_peer(op: Option<Operator>, kind: OpKind, source: u64, target: u64) {
    let op = op.expect("an operator");
    let mut kind = kind | OpKind::REGION;
    assert!(
        matches!(op.step(0), Some(OpStep::AddPeer { to_store, .. }) if to_store == target),
        "{op}"
    );
    if op.len() == 2 {
        assert_eq!(
            op.step(1),
            Some(OpStep::RemovePeer { from_store: source }),
            "{op}"
        );
    } else {
        assert_eq!(op.len(), 3, "{op}");
        assert!(
            matches!(op.step(1), Some(OpStep::TransferLeader { from_store, .. }) if from_store == source),
            "{op}"
        );
        assert_eq!(
            op.step(2),
            Some(OpStep::RemovePeer { from_store: source }),
            "{op}"
        );
        kind |= OpKind::LEADER;
    }
    assert!(op.kind().contains(kind), "{op}");
}

/// Like [`check_transfer_peer`], and the leader transfer must be there.
pub fn check_transfer_peer_with_leader_transfer(
    op: Option<Operator>,
    kind: OpKind,
    source: u64,
    target: u64,
) {
    let op = op.expect("an operator");
    assert_eq!(op.len(), 3, "{op}");
    check_transfer_peer(Some(op), kind, source, target);
}
