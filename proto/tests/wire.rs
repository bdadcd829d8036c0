//! Wire-format checks: prost round trips, and field numbers / enum values that must match TinyKV's.

use prost::Message as _;
use proto::{eraftpb, errorpb, kvrpcpb, metapb, raft_cmdpb, raft_serverpb};

fn round_trip<M: prost::Message + Default + PartialEq + std::fmt::Debug>(msg: &M) {
    let bytes = msg.encode_to_vec();
    let decoded = M::decode(bytes.as_slice()).expect("decode");
    assert_eq!(&decoded, msg);
}

fn raft_message() -> eraftpb::Message {
    eraftpb::Message {
        msg_type: eraftpb::MessageType::MsgAppend as i32,
        to: 2,
        from: 1,
        term: 5,
        log_term: 4,
        index: 10,
        entries: vec![
            eraftpb::Entry {
                entry_type: eraftpb::EntryType::EntryNormal as i32,
                term: 5,
                index: 11,
                data: b"put k v".to_vec(),
            },
            eraftpb::Entry {
                entry_type: eraftpb::EntryType::EntryConfChange as i32,
                term: 5,
                index: 12,
                data: vec![1, 2, 3],
            },
        ],
        commit: 9,
        ..Default::default()
    }
}

#[test]
fn eraftpb_message_round_trip() {
    round_trip(&raft_message());
}

#[test]
fn raft_serverpb_raft_message_round_trip() {
    let msg = raft_serverpb::RaftMessage {
        region_id: 7,
        from_peer: Some(metapb::Peer { id: 1, store_id: 1 }),
        to_peer: Some(metapb::Peer { id: 2, store_id: 2 }),
        message: Some(raft_message()),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 3,
            version: 4,
        }),
        is_tombstone: false,
        start_key: b"a".to_vec(),
        end_key: b"z".to_vec(),
    };
    round_trip(&msg);
}

#[test]
fn kvrpcpb_raw_put_round_trip() {
    let req = kvrpcpb::RawPutRequest {
        context: Some(kvrpcpb::Context {
            region_id: 1,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peer: Some(metapb::Peer { id: 1, store_id: 1 }),
            term: 6,
        }),
        key: b"key".to_vec(),
        value: b"value".to_vec(),
        cf: "default".to_string(),
    };
    round_trip(&req);
}

#[test]
fn raft_cmdpb_request_round_trip() {
    let req = raft_cmdpb::RaftCmdRequest {
        header: Some(raft_cmdpb::RaftRequestHeader {
            region_id: 1,
            peer: Some(metapb::Peer { id: 1, store_id: 1 }),
            region_epoch: None,
            term: 2,
        }),
        requests: vec![raft_cmdpb::Request {
            cmd_type: raft_cmdpb::CmdType::Put as i32,
            put: Some(raft_cmdpb::PutRequest {
                cf: "default".to_string(),
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            }),
            ..Default::default()
        }],
        admin_request: None,
    };
    round_trip(&req);
}

#[test]
fn eraftpb_commit_is_field_8() {
    let msg = eraftpb::Message {
        commit: 1,
        ..Default::default()
    };
    // Field 8, wire type 0 (varint): (8 << 3) | 0 = 0x40; value 1.
    assert_eq!(msg.encode_to_vec(), [0x40, 0x01]);
}

#[test]
fn sparse_field_numbers() {
    // errorpb.Error.stale_command = 7 (6 is reserved): tag (7 << 3) | 2 = 0x3a, empty message.
    let err = errorpb::Error {
        stale_command: Some(errorpb::StaleCommand {}),
        ..Default::default()
    };
    assert_eq!(err.encode_to_vec(), [0x3a, 0x00]);

    // raft_serverpb.RaftSnapshotData.meta = 5 (4 is unused).
    let data = raft_serverpb::RaftSnapshotData {
        meta: Some(raft_serverpb::SnapshotMeta::default()),
        ..Default::default()
    };
    assert_eq!(data.encode_to_vec(), [0x2a, 0x00]);

    // kvrpcpb.Context.term = 5 (4 is unused).
    let ctx = kvrpcpb::Context {
        term: 1,
        ..Default::default()
    };
    assert_eq!(ctx.encode_to_vec(), [0x28, 0x01]);

    // raft_cmdpb.AdminRequest.split = 10: tag (10 << 3) | 2 = 0x52.
    let admin = raft_cmdpb::AdminRequest {
        split: Some(raft_cmdpb::SplitRequest::default()),
        ..Default::default()
    };
    assert_eq!(admin.encode_to_vec(), [0x52, 0x00]);
}

#[test]
fn enum_values() {
    assert_eq!(eraftpb::MessageType::MsgTransferLeader as i32, 11);
    assert_eq!(raft_cmdpb::CmdType::Put as i32, 3);
    assert_eq!(raft_cmdpb::CmdType::Snap as i32, 5);
    assert_eq!(raft_cmdpb::AdminCmdType::CompactLog as i32, 3);
    assert_eq!(raft_cmdpb::AdminCmdType::Split as i32, 10);
    assert_eq!(raft_serverpb::PeerState::Tombstone as i32, 2);
    assert_eq!(raft_serverpb::PeerState::Applying as i32, 1);
    assert_eq!(metapb::StoreState::Tombstone as i32, 2);
    assert_eq!(kvrpcpb::Op::Lock as i32, 3);
    assert_eq!(kvrpcpb::Action::LockNotExistRollback as i32, 2);
}
