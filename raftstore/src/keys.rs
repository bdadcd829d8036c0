//! Encodings of the store's local (meta) keys, exactly as TinyKV's `kv/raftstore/meta/keys.go`.
//!
//! Every local key starts with [`LOCAL_PREFIX`] (`0x01`), and every number in a key is a big-endian
//! `u64`, so the byte order of keys is the numeric order of region ids and log indexes: the raft log
//! of a region is one contiguous, index-ordered key range.
//!
//! | key | bytes | value | engine |
//! |---|---|---|---|
//! | [`PREPARE_BOOTSTRAP_KEY`] | `01 01` | `RegionLocalState` | kv |
//! | [`STORE_IDENT_KEY`] | `01 02` | `StoreIdent` | kv |
//! | [`raft_log_key`] | `01 02 region(8) 01 index(8)` (19 bytes) | `Entry` | raft |
//! | [`raft_state_key`] | `01 02 region(8) 02` (11 bytes) | `RaftLocalState` | raft |
//! | [`apply_state_key`] | `01 02 region(8) 03` (11 bytes) | `RaftApplyState` | kv |
//! | [`region_state_key`] | `01 03 region(8) 01` (11 bytes) | `RegionLocalState` | kv |
//!
//! In the kv engine these keys live in [`CF_RAFT`](crate::engine::CF_RAFT), apart from user data; in
//! the raft engine, in [`CF_DEFAULT`](crate::engine::CF_DEFAULT).

use crate::engine::{EngineError, Result};

/// First byte of every local key; local keys are in `[LOCAL_MIN_KEY, LOCAL_MAX_KEY)`.
pub const LOCAL_PREFIX: u8 = 0x01;
/// Second byte of the per-region raft keys (raft log, raft state, apply state).
pub const REGION_RAFT_PREFIX: u8 = 0x02;
/// Second byte of the per-region meta keys (region state). Kept apart from [`REGION_RAFT_PREFIX`] so a
/// store starting up can scan every region's state without walking raft logs.
pub const REGION_META_PREFIX: u8 = 0x03;
/// Length of a region raft key without index: prefix (2) + region id (8) + suffix (1).
pub const REGION_RAFT_PREFIX_LEN: usize = 11;
/// Length of a raft log key: [`REGION_RAFT_PREFIX_LEN`] + index (8).
pub const REGION_RAFT_LOG_LEN: usize = 19;

/// Suffix (byte 10) of raft log keys, after `01 02 region`.
pub const RAFT_LOG_SUFFIX: u8 = 0x01;
/// Suffix (byte 10) of the raft state key, after `01 02 region`.
pub const RAFT_STATE_SUFFIX: u8 = 0x02;
/// Suffix (byte 10) of the apply state key, after `01 02 region`.
pub const APPLY_STATE_SUFFIX: u8 = 0x03;
/// Suffix (byte 10) of the region state key, after `01 03 region`.
pub const REGION_STATE_SUFFIX: u8 = 0x01;

/// The smallest key.
pub const MIN_KEY: &[u8] = &[];
/// TinyKV's conventional largest key (`FF`). Not an upper bound of all keys (`FF 00` is larger).
pub const MAX_KEY: &[u8] = &[0xFF];
/// Lower bound (inclusive) of local keys.
pub const LOCAL_MIN_KEY: &[u8] = &[LOCAL_PREFIX];
/// Upper bound (exclusive) of local keys.
pub const LOCAL_MAX_KEY: &[u8] = &[LOCAL_PREFIX + 1];
/// Lower bound (inclusive) of the region meta keys of every region.
pub const REGION_META_MIN_KEY: &[u8] = &[LOCAL_PREFIX, REGION_META_PREFIX];
/// Upper bound (exclusive) of the region meta keys of every region.
pub const REGION_META_MAX_KEY: &[u8] = &[LOCAL_PREFIX, REGION_META_PREFIX + 1];

/// Key of the `RegionLocalState` of a region whose cluster bootstrap is prepared but not done.
pub const PREPARE_BOOTSTRAP_KEY: &[u8] = &[LOCAL_PREFIX, 0x01];
/// Key of the store's `StoreIdent` (cluster id and store id), written when the store bootstraps.
pub const STORE_IDENT_KEY: &[u8] = &[LOCAL_PREFIX, 0x02];

/// Term of the entry every region created at bootstrap (or by a split) starts after.
pub const RAFT_INIT_LOG_TERM: u64 = 5;
/// Index of the entry every region created at bootstrap (or by a split) starts after: its log is
/// truncated at `(RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM)`.
pub const RAFT_INIT_LOG_INDEX: u64 = 5;

/// `01 <prefix> region(8)`: the 10-byte prefix of a region's raft or meta keys.
fn region_prefix(prefix: u8, region_id: u64) -> [u8; 10] {
    let mut key = [0; 10];
    key[0] = LOCAL_PREFIX;
    key[1] = prefix;
    key[2..10].copy_from_slice(&region_id.to_be_bytes());
    key
}

/// `01 <prefix> region(8) <suffix>`: an 11-byte per-region key.
fn region_key(prefix: u8, region_id: u64, suffix: u8) -> [u8; 11] {
    let mut key = [0; 11];
    key[..10].copy_from_slice(&region_prefix(prefix, region_id));
    key[10] = suffix;
    key
}

/// [`STORE_IDENT_KEY`]: where the store keeps its `StoreIdent` (kv engine).
pub fn store_ident_key() -> &'static [u8] {
    STORE_IDENT_KEY
}

/// [`PREPARE_BOOTSTRAP_KEY`]: where a prepared, unfinished cluster bootstrap is recorded (kv engine).
pub fn prepare_bootstrap_key() -> &'static [u8] {
    PREPARE_BOOTSTRAP_KEY
}

/// `01 02 region(8)`: the prefix of every raft key of a region (its log, raft state, apply state).
pub fn region_raft_prefix(region_id: u64) -> [u8; 10] {
    region_prefix(REGION_RAFT_PREFIX, region_id)
}

/// `01 03 region(8)`: the prefix of every meta key of a region (its region state).
pub fn region_meta_prefix(region_id: u64) -> [u8; 10] {
    region_prefix(REGION_META_PREFIX, region_id)
}

/// `01 02 region(8) 01`: the prefix of a region's raft log keys; the log of a region is the key
/// range `[raft_log_key(region, lo), raft_log_key(region, hi))` in index order.
pub fn raft_log_prefix(region_id: u64) -> [u8; 11] {
    region_key(REGION_RAFT_PREFIX, region_id, RAFT_LOG_SUFFIX)
}

/// `01 02 region(8) 01 index(8)` (19 bytes): the key of log entry `index` of a region (raft engine).
pub fn raft_log_key(region_id: u64, index: u64) -> [u8; REGION_RAFT_LOG_LEN] {
    let mut key = [0; REGION_RAFT_LOG_LEN];
    key[..REGION_RAFT_PREFIX_LEN].copy_from_slice(&raft_log_prefix(region_id));
    key[REGION_RAFT_PREFIX_LEN..].copy_from_slice(&index.to_be_bytes());
    key
}

/// `01 02 region(8) 02` (11 bytes): the key of a region's `RaftLocalState` (raft engine).
pub fn raft_state_key(region_id: u64) -> [u8; REGION_RAFT_PREFIX_LEN] {
    region_key(REGION_RAFT_PREFIX, region_id, RAFT_STATE_SUFFIX)
}

/// `01 02 region(8) 03` (11 bytes): the key of a region's `RaftApplyState` (kv engine).
pub fn apply_state_key(region_id: u64) -> [u8; REGION_RAFT_PREFIX_LEN] {
    region_key(REGION_RAFT_PREFIX, region_id, APPLY_STATE_SUFFIX)
}

/// `01 03 region(8) 01` (11 bytes): the key of a region's `RegionLocalState` (kv engine).
pub fn region_state_key(region_id: u64) -> [u8; 11] {
    region_key(REGION_META_PREFIX, region_id, REGION_STATE_SUFFIX)
}

/// [`REGION_META_MIN_KEY`]: scanning `[region_meta_min_key(), region_meta_max_key())` visits the meta
/// keys of every region, in region id order.
pub fn region_meta_min_key() -> &'static [u8] {
    REGION_META_MIN_KEY
}

/// [`REGION_META_MAX_KEY`]: the exclusive end of the meta keys of every region.
pub fn region_meta_max_key() -> &'static [u8] {
    REGION_META_MAX_KEY
}

/// The index of raft log key `key`; an error unless `key` is a 19-byte raft log key
/// (`01 02 region(8) 01 index(8)`). TinyKV checks only the length; this checks the prefix too.
pub fn raft_log_index(key: &[u8]) -> Result<u64> {
    if key.len() != REGION_RAFT_LOG_LEN
        || key[0] != LOCAL_PREFIX
        || key[1] != REGION_RAFT_PREFIX
        || key[10] != RAFT_LOG_SUFFIX
    {
        return Err(EngineError::Other(format!(
            "{key:02x?} is not a valid raft log key"
        )));
    }
    Ok(u64::from_be_bytes(
        key[REGION_RAFT_PREFIX_LEN..].try_into().unwrap(),
    ))
}

/// The region id and suffix of region meta key `key` (`01 03 region(8) suffix`); an error on a
/// wrong length or prefix.
pub fn decode_region_meta_key(key: &[u8]) -> Result<(u64, u8)> {
    if key.len() != REGION_META_MIN_KEY.len() + 8 + 1 {
        return Err(EngineError::Other(format!(
            "invalid region meta key length for key {key:02x?}"
        )));
    }
    if !key.starts_with(REGION_META_MIN_KEY) {
        return Err(EngineError::Other(format!(
            "invalid region meta key prefix for key {key:02x?}"
        )));
    }
    let region_id = u64::from_be_bytes(key[2..10].try_into().unwrap());
    Ok((region_id, key[10]))
}

/// True when `key` is the raft state key of some region (`01 02 region(8) 02`). Unlike TinyKV's
/// `IsRaftStateKey`, which checks only length and prefix, an apply state key is not one.
pub fn is_raft_state_key(key: &[u8]) -> bool {
    key.len() == REGION_RAFT_PREFIX_LEN
        && key[0] == LOCAL_PREFIX
        && key[1] == REGION_RAFT_PREFIX
        && key[10] == RAFT_STATE_SUFFIX
}

/// The part of a data key that names its user key: a key that starts with a memcomparable-encoded
/// byte string (an MVCC key: the encoded user key, then an 8-byte timestamp) is cut after that
/// string, so every version of a user key falls on the same side of a split (TinyKV's
/// `kv/raftstore/runner/split_checker.go` decodes and re-encodes it); any other key is whole.
pub fn user_key_of(key: &[u8]) -> &[u8] {
    const GROUP: usize = 8;
    let mut at = 0;
    while key.len() > at + GROUP {
        let marker = key[at + GROUP];
        let pad = 0xFFusize.wrapping_sub(marker as usize);
        if pad > GROUP {
            return key;
        }
        if pad > 0 {
            if key[at + GROUP - pad..at + GROUP].iter().any(|&b| b != 0) {
                return key;
            }
            return &key[..at + GROUP + 1];
        }
        at += GROUP + 1;
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_log_key_layout() {
        let key = raft_log_key(1, 2);
        assert_eq!(key.len(), 19);
        assert_eq!(
            key,
            [1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
        );
        assert_eq!(
            raft_log_key(0x0102_0304_0506_0708, u64::MAX),
            [1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        assert!(raft_log_key(1, 2).starts_with(&raft_log_prefix(1)));
        assert!(raft_log_key(1, 2).starts_with(&region_raft_prefix(1)));
    }

    #[test]
    fn state_key_layouts() {
        let raft = raft_state_key(1);
        assert_eq!(raft.len(), 11);
        assert_eq!(raft, [1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(apply_state_key(1), [1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 3]);
        assert_eq!(region_state_key(1), [1, 3, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(
            region_state_key(0x0A0B),
            [1, 3, 0, 0, 0, 0, 0, 0, 0x0A, 0x0B, 1]
        );
        assert_eq!(raft_log_prefix(1), [1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(region_raft_prefix(1), [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(region_meta_prefix(1), [1, 3, 0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn fixed_keys_and_bounds() {
        assert_eq!(store_ident_key(), [1, 2]);
        assert_eq!(prepare_bootstrap_key(), [1, 1]);
        assert_eq!(region_meta_min_key(), [1, 3]);
        assert_eq!(region_meta_max_key(), [1, 4]);
        assert_eq!(LOCAL_MIN_KEY, [1]);
        assert_eq!(LOCAL_MAX_KEY, [2]);
        assert_eq!(MIN_KEY, [0u8; 0]);
        assert_eq!(MAX_KEY, [0xFF]);
        assert_eq!((RAFT_INIT_LOG_TERM, RAFT_INIT_LOG_INDEX), (5, 5));
        for region in [0, 1, 1000, u64::MAX] {
            let meta = region_state_key(region);
            assert!(region_meta_min_key() <= &meta[..] && &meta[..] < region_meta_max_key());
            for key in [
                &raft_log_key(region, 7)[..],
                &raft_state_key(region)[..],
                &apply_state_key(region)[..],
                &meta[..],
            ] {
                assert!(LOCAL_MIN_KEY <= key && key < LOCAL_MAX_KEY);
            }
        }
    }

    #[test]
    fn log_keys_sort_by_region_then_index() {
        assert!(raft_log_key(1, 9) < raft_log_key(1, 10));
        assert!(raft_log_key(1, 255) < raft_log_key(1, 256));
        assert!(raft_log_key(1, u64::MAX)[..] < raft_state_key(1)[..]);
        assert!(raft_state_key(1) < apply_state_key(1));
        assert!(apply_state_key(1)[..] < raft_log_key(2, 0)[..]);
    }

    #[test]
    fn raft_log_index_round_trips_and_rejects_bad_keys() {
        for (region, idx) in [(1, 2), (0, 0), (7, 5), (u64::MAX, u64::MAX), (3, 1 << 40)] {
            assert_eq!(raft_log_index(&raft_log_key(region, idx)).unwrap(), idx);
        }
        assert!(raft_log_index(&raft_state_key(1)).is_err());
        assert!(raft_log_index(&[]).is_err());
        let mut key = raft_log_key(1, 2);
        key[10] = RAFT_STATE_SUFFIX;
        assert!(raft_log_index(&key).is_err());
        let mut key = raft_log_key(1, 2);
        key[1] = REGION_META_PREFIX;
        assert!(raft_log_index(&key).is_err());
        let mut long = raft_log_key(1, 2).to_vec();
        long.push(0);
        assert!(matches!(raft_log_index(&long), Err(EngineError::Other(_))));
    }

    #[test]
    fn region_meta_key_round_trips_and_rejects_bad_keys() {
        for region in [0, 1, 42, u64::MAX] {
            assert_eq!(
                decode_region_meta_key(&region_state_key(region)).unwrap(),
                (region, REGION_STATE_SUFFIX)
            );
        }
        assert!(decode_region_meta_key(&raft_state_key(1)).is_err());
        assert!(decode_region_meta_key(&region_meta_prefix(1)).is_err());
        assert!(decode_region_meta_key(&raft_log_key(1, 1)).is_err());
    }

    #[test]
    fn raft_state_key_is_recognized() {
        assert!(is_raft_state_key(&raft_state_key(9)));
        assert!(!is_raft_state_key(&apply_state_key(9)));
        assert!(!is_raft_state_key(&region_state_key(9)));
        assert!(!is_raft_state_key(&raft_log_key(9, 1)));
    }

    #[test]
    fn test_user_key_of() {
        // "abc" encoded: a group of 8 bytes with 5 pad bytes, marker 0xFF - 5.
        let mut encoded = b"abc".to_vec();
        encoded.extend_from_slice(&[0; 5]);
        encoded.push(0xFF - 5);
        let mut mvcc = encoded.clone();
        mvcc.extend_from_slice(&42u64.to_be_bytes());
        assert_eq!(user_key_of(&mvcc), encoded.as_slice());
        // A user key of exactly 8 bytes takes a full group and an empty one.
        let mut long = b"abcdefgh".to_vec();
        long.push(0xFF);
        long.extend_from_slice(&[0; 8]);
        long.push(0xFF - 8);
        let mut mvcc = long.clone();
        mvcc.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(user_key_of(&mvcc), long.as_slice());
        // Raw keys stay whole.
        for raw in [&b"k100"[..], b"", b"a key longer than nine bytes"] {
            assert_eq!(user_key_of(raw), raw);
        }
    }
}
