//! Checks shared by the store and its peers: region epochs, key ranges, which raft messages may
//! create a peer, and peer lookups in a region.

use proto::eraftpb::{ConfState, MessageType};
use proto::metapb::{Peer, Region, RegionEpoch};
use proto::raft_cmdpb::{AdminCmdType, RaftCmdRequest};

use crate::errors::{Error, Result};

/// Whether a raft message may create a peer on a store that does not host the region yet: a vote
/// request, or a heartbeat that carries no commit index (a leader caps a heartbeat's commit at what
/// the follower matched, which is 0 for a peer that has nothing yet).
pub fn is_initial_msg(msg: &proto::eraftpb::Message) -> bool {
    let t = msg.msg_type();
    t == MessageType::MsgRequestVote
        || t == MessageType::MsgRequestPreVote
        || (t == MessageType::MsgHeartbeat && msg.commit == 0)
}

/// Whether `key` lies in `[region.start_key, region.end_key)` (an empty end key is unbounded).
pub fn region_contains(region: &Region, key: &[u8]) -> bool {
    key >= region.start_key.as_slice()
        && (region.end_key.is_empty() || key < region.end_key.as_slice())
}

/// [`region_contains`] as a `KeyNotInRegion` error.
pub fn check_key_in_region(key: &[u8], region: &Region) -> Result<()> {
    if region_contains(region, key) {
        Ok(())
    } else {
        Err(Error::KeyNotInRegion {
            key: key.to_vec(),
            region_id: region.id,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
        })
    }
}

/// Whether epoch `a` is older than `b` in either dimension.
pub fn is_epoch_stale(a: &RegionEpoch, b: &RegionEpoch) -> bool {
    a.version < b.version || a.conf_ver < b.conf_ver
}

/// Checks a command's region epoch against the region's: normal requests check `version`,
/// ChangePeer checks `conf_ver`, Split and TransferLeader check both, CompactLog checks nothing.
pub fn check_region_epoch(
    req: &RaftCmdRequest,
    region: &Region,
    include_region: bool,
) -> Result<()> {
    let (check_ver, check_conf_ver) = match &req.admin_request {
        None => (true, false),
        Some(admin) => match admin.cmd_type() {
            AdminCmdType::CompactLog | AdminCmdType::InvalidAdmin => (false, false),
            AdminCmdType::ChangePeer => (false, true),
            AdminCmdType::Split | AdminCmdType::TransferLeader => (true, true),
        },
    };
    if !check_ver && !check_conf_ver {
        return Ok(());
    }
    let from = req
        .header
        .as_ref()
        .and_then(|h| h.region_epoch.as_ref())
        .ok_or_else(|| Error::InvalidRequest("missing region epoch".into()))?;
    let current = region.region_epoch.unwrap_or_default();
    if (check_conf_ver && from.conf_ver != current.conf_ver)
        || (check_ver && from.version != current.version)
    {
        let regions = if include_region {
            vec![region.clone()]
        } else {
            Vec::new()
        };
        return Err(Error::EpochNotMatch {
            message: format!(
                "current epoch of region {} is {:?}, but you sent {:?}",
                region.id, current, from
            ),
            regions,
        });
    }
    Ok(())
}

/// The peer of `region` on `store_id`, if any.
pub fn find_peer(region: &Region, store_id: u64) -> Option<&Peer> {
    region.peers.iter().find(|p| p.store_id == store_id)
}

/// The raft membership of a region: its peers' ids.
pub fn conf_state_from_region(region: &Region) -> ConfState {
    ConfState {
        nodes: region.peers.iter().map(|p| p.id).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::eraftpb::Message;
    use proto::raft_cmdpb::{AdminRequest, RaftRequestHeader};

    #[test]
    fn test_check_key_in_region() {
        let region = |s: &[u8], e: &[u8]| Region {
            start_key: s.to_vec(),
            end_key: e.to_vec(),
            ..Default::default()
        };
        type Case<'a> = (&'a [u8], &'a [u8], &'a [u8], bool);
        let cases: Vec<Case> = vec![
            (b"", b"", b"", true),
            (b"", b"", b"a", true),
            (b"a", b"", b"a", true),
            (b"a", b"", b"", false),
            (b"a", b"c", b"b", true),
            (b"a", b"c", b"c", false),
            (b"a", b"c", b"\xff", false),
        ];
        for (s, e, k, ok) in cases {
            assert_eq!(
                check_key_in_region(k, &region(s, e)).is_ok(),
                ok,
                "{s:?} {e:?} {k:?}"
            );
        }
    }

    #[test]
    fn test_is_initial_msg() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgRequestVote);
        assert!(is_initial_msg(&m));
        m.set_msg_type(MessageType::MsgHeartbeat);
        assert!(is_initial_msg(&m));
        m.commit = 1;
        assert!(!is_initial_msg(&m));
        m.set_msg_type(MessageType::MsgAppend);
        assert!(!is_initial_msg(&m));
    }

    #[test]
    fn test_epoch_stale() {
        let e = |v, c| RegionEpoch {
            version: v,
            conf_ver: c,
        };
        assert!(is_epoch_stale(&e(1, 2), &e(2, 2)));
        assert!(is_epoch_stale(&e(2, 1), &e(2, 2)));
        assert!(!is_epoch_stale(&e(2, 2), &e(2, 2)));
        assert!(!is_epoch_stale(&e(3, 2), &e(2, 2)));
    }

    #[test]
    fn test_check_region_epoch() {
        let region = Region {
            id: 1,
            region_epoch: Some(RegionEpoch {
                version: 2,
                conf_ver: 2,
            }),
            ..Default::default()
        };
        let req = |v, c, admin: Option<AdminCmdType>| RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_epoch: Some(RegionEpoch {
                    version: v,
                    conf_ver: c,
                }),
                ..Default::default()
            }),
            admin_request: admin.map(|t| AdminRequest {
                cmd_type: t as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(check_region_epoch(&req(2, 2, None), &region, true).is_ok());
        assert!(check_region_epoch(&req(2, 1, None), &region, true).is_ok());
        assert!(check_region_epoch(&req(1, 2, None), &region, true).is_err());
        assert!(
            check_region_epoch(&req(1, 1, Some(AdminCmdType::CompactLog)), &region, true).is_ok()
        );
        assert!(
            check_region_epoch(&req(1, 2, Some(AdminCmdType::ChangePeer)), &region, true).is_ok()
        );
        assert!(
            check_region_epoch(&req(2, 1, Some(AdminCmdType::ChangePeer)), &region, true).is_err()
        );
        assert!(check_region_epoch(&req(2, 1, Some(AdminCmdType::Split)), &region, true).is_err());
        match check_region_epoch(&req(1, 2, None), &region, true) {
            Err(Error::EpochNotMatch { regions, .. }) => assert_eq!(regions, vec![region.clone()]),
            other => panic!("{other:?}"),
        }
        let no_epoch = RaftCmdRequest::default();
        assert!(check_region_epoch(&no_epoch, &region, true).is_err());
    }
}
