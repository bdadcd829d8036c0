//! The byte encodings of Percolator's data (TinyKV's `kv/util/codec/codec.go` and
//! `kv/transaction/mvcc/transaction.go`'s `EncodeKey`/`DecodeUserKey`/`decodeTimestamp`):
//!
//! - memcomparable bytes ([`encode_bytes`]): the key in groups of 8 bytes, the last padded with
//!   zeros, each followed by a marker `0xFF - pad count`, so that the encoding of a key sorts as
//!   the key does and no encoding is a prefix of another;
//! - an MVCC key ([`encode_key`]): the encoded user key, then the bitwise NOT of the timestamp
//!   big-endian, so the versions of one key sit together, newest first;
//! - timestamps: milliseconds `<< 18` plus a logical counter ([`compose_ts`], [`physical_time`]).

use thiserror::Error;

/// The largest timestamp: a read at `TS_MAX` sees every committed version.
pub const TS_MAX: u64 = u64::MAX;

/// Bits of a timestamp that count within one millisecond.
pub const LOGICAL_BITS: u32 = 18;

/// Bytes of one group of the memcomparable encoding.
const GROUP: usize = 8;
/// The marker of a full group.
const MARKER: u8 = 0xFF;

/// Why bytes do not decode.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// Fewer bytes than a whole group and its marker.
    #[error("insufficient bytes to decode (need a group of 9, have {0})")]
    Short(usize),
    /// A marker that says more than a whole group is padding.
    #[error("invalid marker byte {0:#04x}")]
    InvalidMarker(u8),
    /// Padding that is not all zeros.
    #[error("invalid padding")]
    InvalidPadding,
    /// An MVCC key without its 8 timestamp bytes.
    #[error("an MVCC key needs 8 timestamp bytes after the user key, has {0}")]
    NoTimestamp(usize),
}

/// `key` in the memcomparable encoding.
pub fn encode_bytes(key: &[u8]) -> Vec<u8> {
    let groups = key.len() / GROUP + 1;
    let mut out = Vec::with_capacity(groups * (GROUP + 1) + 8);
    for chunk in key.chunks(GROUP) {
        out.extend_from_slice(chunk);
        let pad = GROUP - chunk.len();
        out.resize(out.len() + pad, 0);
        out.push(MARKER - pad as u8);
    }
    if key.len() % GROUP == 0 {
        // A whole number of groups (or none) ends with a group that is all padding.
        out.resize(out.len() + GROUP, 0);
        out.push(MARKER - GROUP as u8);
    }
    out
}

/// Decodes a memcomparable key at the start of `b`: the key and the bytes after it.
pub fn decode_bytes(b: &[u8]) -> Result<(Vec<u8>, &[u8]), CodecError> {
    let mut out = Vec::with_capacity(b.len() / (GROUP + 1) * GROUP);
    let mut rest = b;
    loop {
        if rest.len() < GROUP + 1 {
            return Err(CodecError::Short(rest.len()));
        }
        let (group, after) = rest.split_at(GROUP + 1);
        rest = after;
        let marker = group[GROUP];
        let pad = (MARKER - marker) as usize;
        if pad > GROUP {
            return Err(CodecError::InvalidMarker(marker));
        }
        let real = GROUP - pad;
        out.extend_from_slice(&group[..real]);
        if pad > 0 {
            if group[real..GROUP].iter().any(|&x| x != 0) {
                return Err(CodecError::InvalidPadding);
            }
            return Ok((out, rest));
        }
    }
}

/// The MVCC key of `key` at timestamp `ts`: `encode_bytes(key)` then `!ts` big-endian.
pub fn encode_key(key: &[u8], ts: u64) -> Vec<u8> {
    let mut out = encode_bytes(key);
    out.extend_from_slice(&(!ts).to_be_bytes());
    out
}

/// The user key of an MVCC key (TinyKV's `DecodeUserKey`).
pub fn decode_user_key(key: &[u8]) -> Result<Vec<u8>, CodecError> {
    Ok(decode_bytes(key)?.0)
}

/// The timestamp of an MVCC key (TinyKV's `decodeTimestamp`).
pub fn decode_timestamp(key: &[u8]) -> Result<u64, CodecError> {
    let (_, rest) = decode_bytes(key)?;
    let ts: [u8; 8] = rest
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or(CodecError::NoTimestamp(rest.len()))?;
    Ok(!u64::from_be_bytes(ts))
}

/// The user key and timestamp of an MVCC key.
pub fn decode_key(key: &[u8]) -> Result<(Vec<u8>, u64), CodecError> {
    let (user, rest) = decode_bytes(key)?;
    let ts: [u8; 8] = rest
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or(CodecError::NoTimestamp(rest.len()))?;
    Ok((user, !u64::from_be_bytes(ts)))
}

/// The physical part of timestamp `ts`: milliseconds since the epoch.
pub fn physical_time(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
}

/// The timestamp of `physical` milliseconds and `logical` counts within it.
pub fn compose_ts(physical: u64, logical: u64) -> u64 {
    (physical << LOGICAL_BITS) + logical
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// TinyKV's `TestEncodeKey` (`kv/transaction/mvcc/transaction_test.go`) and the
    /// memcomparable vectors of `kv/util/codec`.
    #[test]
    fn test_encode_key() {
        assert_eq!(encode_bytes(&[]), cat(&[&[0; 8], &[0xF7]]));
        assert_eq!(
            encode_bytes(&[1, 2, 3]),
            cat(&[&[1, 2, 3], &[0; 5], &[0xFA]])
        );
        assert_eq!(
            encode_bytes(&[1, 2, 3, 0]),
            cat(&[&[1, 2, 3, 0], &[0; 4], &[0xFB]])
        );
        assert_eq!(
            encode_bytes(&[1, 2, 3, 4, 5, 6, 7, 8]),
            cat(&[&[1, 2, 3, 4, 5, 6, 7, 8, 0xFF], &[0; 8], &[0xF7]])
        );
        assert_eq!(encode_key(&[], 0), cat(&[&[0; 8], &[0xF7], &[0xFF; 8]]));
        assert_eq!(
            encode_key(&[42], 0),
            cat(&[&[42], &[0; 7], &[0xF8], &[0xFF; 8]])
        );
        assert_eq!(
            encode_key(&[42, 0, 5], 0),
            cat(&[&[42, 0, 5], &[0; 5], &[0xFA], &[0xFF; 8]])
        );
        assert_eq!(
            encode_key(&[42], !43543258743295),
            cat(&[
                &[42],
                &[0; 7],
                &[0xF8],
                &[0, 0, 0x27, 0x9A, 0x34, 0x78, 0x41, 0xFF]
            ])
        );
        assert_eq!(
            encode_key(&[42, 0, 5], !98753868),
            cat(&[
                &[42, 0, 5],
                &[0; 5],
                &[0xFA],
                &[0, 0, 0, 0, 0x05, 0xE2, 0xDD, 0x4C]
            ])
        );
        // Newer versions first; user keys in order whatever their timestamps.
        assert!(encode_key(&[42], 238) < encode_key(&[200], 0));
        assert!(encode_key(&[42], 238) < encode_key(&[42, 0], 0));
        assert!(encode_key(&[42], 239) < encode_key(&[42], 238));
    }

    /// TinyKV's `TestDecodeKey`: user keys and timestamps round-trip.
    #[test]
    fn test_decode_key() {
        assert_eq!(
            decode_user_key(&encode_key(&[], 0)).unwrap(),
            Vec::<u8>::new()
        );
        assert_eq!(decode_user_key(&encode_key(&[42], 0)).unwrap(), vec![42]);
        assert_eq!(
            decode_user_key(&encode_key(&[42, 0, 5], 0)).unwrap(),
            vec![42, 0, 5]
        );
        assert_eq!(
            decode_user_key(&encode_key(&[42, 0, 5], 5464)).unwrap(),
            vec![42, 0, 5]
        );
        assert_eq!(decode_timestamp(&encode_key(&[42], 0)).unwrap(), 0);
        assert_eq!(
            decode_timestamp(&encode_key(&[42, 0, 5], 5464)).unwrap(),
            5464
        );
        for len in 0..40 {
            let key: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            for ts in [0, 1, 99, 1 << 40, TS_MAX] {
                assert_eq!(
                    decode_key(&encode_key(&key, ts)).unwrap(),
                    (key.clone(), ts)
                );
            }
        }
    }

    #[test]
    fn bad_bytes_are_refused() {
        assert_eq!(decode_bytes(&[1, 2, 3]), Err(CodecError::Short(3)));
        assert_eq!(
            decode_bytes(&[1, 0, 0, 0, 0, 0, 0, 0, 0xF6]),
            Err(CodecError::InvalidMarker(0xF6))
        );
        assert_eq!(
            decode_bytes(&[1, 0, 0, 0, 0, 0, 0, 1, 0xFE]),
            Err(CodecError::InvalidPadding)
        );
        // A full group needs another group after it.
        assert_eq!(
            decode_bytes(&[1, 2, 3, 4, 5, 6, 7, 8, 0xFF]),
            Err(CodecError::Short(0))
        );
        assert_eq!(
            decode_timestamp(&encode_bytes(b"k")),
            Err(CodecError::NoTimestamp(0))
        );
        let joined = cat(&[&encode_bytes(b"abc"), b"tail"]);
        let (key, rest) = decode_bytes(&joined).unwrap();
        assert_eq!((key.as_slice(), rest), (&b"abc"[..], &b"tail"[..]));
    }

    #[test]
    fn the_encoding_keeps_the_order() {
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1],
            vec![1, 2, 3, 4, 5, 6, 7, 8],
            vec![1, 2, 3, 4, 5, 6, 7, 8, 0],
            vec![1, 2, 3, 4, 5, 6, 7, 9],
            vec![255],
            vec![255, 255, 255, 255, 255, 255, 255, 255, 255],
        ];
        for a in &keys {
            for b in &keys {
                assert_eq!(
                    a.cmp(b),
                    encode_bytes(a).cmp(&encode_bytes(b)),
                    "{a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(compose_ts(5, 3), (5 << 18) + 3);
        assert_eq!(
            physical_time(compose_ts(1_700_000_000_000, 77)),
            1_700_000_000_000
        );
    }
}
