//! [`WriteBatch`]: an engine-independent, ordered list of writes that an [`Engine`](super::Engine)
//! applies atomically.
//!
//! A batch is plain data: building one touches no engine, so handlers can fill batches for several
//! regions and the driver decides when (and with which sync flag) to write them.

use std::borrow::Cow;

use super::cf::ALL_CFS;

/// One write of a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` to `value` in column family `cf`.
    Put {
        /// Column family name.
        cf: Cow<'static, str>,
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove `key` from column family `cf` (a no-op when it is absent).
    Delete {
        /// Column family name.
        cf: Cow<'static, str>,
        /// The key.
        key: Vec<u8>,
    },
    /// Remove every key `k` of column family `cf` with `start <= k < end`. An empty `end` means
    /// "no upper bound"; otherwise a range with `start >= end` is empty and deletes nothing.
    DeleteRange {
        /// Column family name.
        cf: Cow<'static, str>,
        /// First key removed (inclusive).
        start: Vec<u8>,
        /// End of the range (exclusive); empty = unbounded.
        end: Vec<u8>,
    },
}

impl WriteOp {
    /// The column family this write goes to.
    pub fn cf(&self) -> &str {
        match self {
            WriteOp::Put { cf, .. }
            | WriteOp::Delete { cf, .. }
            | WriteOp::DeleteRange { cf, .. } => cf,
        }
    }

    /// Bytes of keys and values this write carries.
    fn data_size(&self) -> usize {
        match self {
            WriteOp::Put { key, value, .. } => key.len() + value.len(),
            WriteOp::Delete { key, .. } => key.len(),
            WriteOp::DeleteRange { start, end, .. } => start.len() + end.len(),
        }
    }
}

/// Keeps the well-known column family names borrowed (no allocation per write); anything else is
/// copied, and the engine rejects it at write time if it has no such column family.
fn cf_name(cf: &str) -> Cow<'static, str> {
    match ALL_CFS.iter().find(|&&known| known == cf) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(cf.to_owned()),
    }
}

/// An ordered list of puts and deletes over column families, applied by
/// [`Engine::write`](super::Engine::write) atomically (all of them or none) and in order (a later
/// write of the same key wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
    data_size: usize,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `n` writes.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            ops: Vec::with_capacity(n),
            data_size: 0,
        }
    }

    fn push(&mut self, op: WriteOp) {
        self.data_size += op.data_size();
        self.ops.push(op);
    }

    /// Sets `key` to `value` in column family `cf`.
    pub fn put_cf(&mut self, cf: &str, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.push(WriteOp::Put {
            cf: cf_name(cf),
            key: key.into(),
            value: value.into(),
        });
    }

    /// Sets `key` to the protobuf encoding of `msg` in column family `cf`.
    pub fn put_msg_cf<M: prost::Message>(&mut self, cf: &str, key: impl Into<Vec<u8>>, msg: &M) {
        self.put_cf(cf, key, msg.encode_to_vec());
    }

    /// Removes `key` from column family `cf`.
    pub fn delete_cf(&mut self, cf: &str, key: impl Into<Vec<u8>>) {
        self.push(WriteOp::Delete {
            cf: cf_name(cf),
            key: key.into(),
        });
    }

    /// Removes every key in `[start, end)` from column family `cf`. An empty `end` means no upper
    /// bound (everything from `start` on); a non-empty `end <= start` deletes nothing.
    pub fn delete_range_cf(
        &mut self,
        cf: &str,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
    ) {
        self.push(WriteOp::DeleteRange {
            cf: cf_name(cf),
            start: start.into(),
            end: end.into(),
        });
    }

    /// True when the batch holds no write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of writes in the batch.
    pub fn count(&self) -> usize {
        self.ops.len()
    }

    /// Total bytes of the keys and values in the batch (range deletes count both bounds).
    pub fn data_size(&self) -> usize {
        self.data_size
    }

    /// Removes every write, keeping the allocation for reuse.
    pub fn clear(&mut self) {
        self.ops.clear();
        self.data_size = 0;
    }

    /// Appends the writes of `other` after those of `self` (so they win over earlier writes of the
    /// same keys), leaving `other` empty.
    pub fn extend(&mut self, other: &mut WriteBatch) {
        self.data_size += other.data_size;
        self.ops.append(&mut other.ops);
        other.data_size = 0;
    }

    /// The writes, in the order they are applied.
    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{CF_DEFAULT, CF_RAFT};

    #[test]
    fn counts_sizes_and_extends() {
        let mut wb = WriteBatch::new();
        assert!(wb.is_empty());
        wb.put_cf(CF_DEFAULT, b"k1".to_vec(), b"value".to_vec());
        wb.delete_cf(CF_DEFAULT, &b"k2"[..]);
        wb.delete_range_cf(CF_DEFAULT, &b"a"[..], &b"zz"[..]);
        assert_eq!(wb.count(), 3);
        assert_eq!(wb.data_size(), 2 + 5 + 2 + 1 + 2);

        let mut other = WriteBatch::new();
        other.put_msg_cf(CF_RAFT, &b"m"[..], &proto::eraftpb::HardState::default());
        other.put_cf(CF_DEFAULT, &b"x"[..], &b"y"[..]);
        wb.extend(&mut other);
        assert!(other.is_empty());
        assert_eq!(other.data_size(), 0);
        assert_eq!(wb.count(), 5);
        assert_eq!(wb.data_size(), 12 + 1 + 2);
        assert_eq!(wb.ops()[4].cf(), CF_DEFAULT);

        wb.clear();
        assert!(wb.is_empty());
        assert_eq!(wb.count(), 0);
        assert_eq!(wb.data_size(), 0);
    }

    #[test]
    fn known_cf_names_are_not_copied() {
        let mut wb = WriteBatch::new();
        wb.put_cf(&String::from("write"), &b"k"[..], &b"v"[..]);
        wb.put_cf("custom", &b"k"[..], &b"v"[..]);
        assert!(matches!(
            &wb.ops()[0],
            WriteOp::Put {
                cf: Cow::Borrowed("write"),
                ..
            }
        ));
        assert!(matches!(&wb.ops()[1], WriteOp::Put { cf: Cow::Owned(s), .. } if s == "custom"));
    }
}
