//! `RegionTree`: non-overlapping key ranges ordered by start key, each naming a region (TinyKV's
//! `scheduler/server/core/region_tree.go`, a B-tree there, a `BTreeMap` here). Finding the range
//! that holds a key is O(log n); inserting a range first removes every range it overlaps.

use std::collections::BTreeMap;
use std::ops::Bound;

use rand::{Rng, RngCore};

/// One range of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    end_key: Vec<u8>,
    id: u64,
}

impl Item {
    fn contains(&self, start_key: &[u8], key: &[u8]) -> bool {
        key >= start_key && (self.end_key.is_empty() || key < self.end_key.as_slice())
    }
}

/// Ranges ordered by start key; an empty end key means "up to the end of the key space".
#[derive(Clone, Debug, Default)]
pub struct RegionTree {
    items: BTreeMap<Vec<u8>, Item>,
}

impl RegionTree {
    /// An empty tree.
    pub fn new() -> RegionTree {
        RegionTree::default()
    }

    /// The number of ranges.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the tree holds no range.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The range holding `key`: its start key and its region's id.
    fn find(&self, key: &[u8]) -> Option<(&Vec<u8>, &Item)> {
        let (start, item) = self
            .items
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        item.contains(start, key).then_some((start, item))
    }

    /// The id of the region whose range holds `key`.
    pub fn search(&self, key: &[u8]) -> Option<u64> {
        self.find(key).map(|(_, item)| item.id)
    }

    /// The id of the region just before the one holding `key`, if the two are adjacent.
    pub fn search_prev(&self, key: &[u8]) -> Option<u64> {
        let (start, _) = self.find(key)?;
        let (_, prev) = self
            .items
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(start.as_slice())))
            .next_back()?;
        (prev.end_key == *start).then_some(prev.id)
    }

    /// The ids of the regions whose ranges overlap `[start_key, end_key)`, in key order.
    pub fn overlaps(&self, start_key: &[u8], end_key: &[u8]) -> Vec<u64> {
        let from = self
            .find(start_key)
            .map_or(start_key, |(s, _)| s.as_slice());
        self.items
            .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
            .take_while(|(s, _)| end_key.is_empty() || s.as_slice() < end_key)
            .map(|(_, item)| item.id)
            .collect()
    }

    /// Inserts region `id` over `[start_key, end_key)`, removing and returning (in key order) the
    /// ids of the regions it overlaps.
    pub fn insert(&mut self, start_key: &[u8], end_key: &[u8], id: u64) -> Vec<u64> {
        let from = self
            .find(start_key)
            .map_or_else(|| start_key.to_vec(), |(s, _)| s.clone());
        let starts: Vec<Vec<u8>> = self
            .items
            .range::<[u8], _>((Bound::Included(from.as_slice()), Bound::Unbounded))
            .take_while(|(s, _)| end_key.is_empty() || s.as_slice() < end_key)
            .map(|(s, _)| s.clone())
            .collect();
        let removed = starts
            .iter()
            .filter_map(|s| self.items.remove(s))
            .map(|item| item.id)
            .collect();
        self.items.insert(
            start_key.to_vec(),
            Item {
                end_key: end_key.to_vec(),
                id,
            },
        );
        removed
    }

    /// Removes the range starting at `start_key` if it belongs to region `id`; whether it did.
    pub fn remove(&mut self, start_key: &[u8], id: u64) -> bool {
        match self.items.get(start_key) {
            Some(item) if item.id == id => {
                self.items.remove(start_key);
                true
            }
            _ => false,
        }
    }

    /// The ids of the regions from the one holding `start_key` on, in key order.
    pub fn scan_from<'a>(&'a self, start_key: &'a [u8]) -> impl Iterator<Item = u64> + 'a {
        let from = self
            .find(start_key)
            .map_or(start_key, |(s, _)| s.as_slice());
        self.items
            .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
            .map(|(_, item)| item.id)
    }

    /// Every region id, in key order.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.items.values().map(|item| item.id)
    }

    /// A region id chosen uniformly at random among those `keep` accepts.
    pub fn random(&self, rng: &mut dyn RngCore, mut keep: impl FnMut(u64) -> bool) -> Option<u64> {
        let candidates: Vec<u64> = self.ids().filter(|id| keep(*id)).collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[rng.random_range(0..candidates.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(ranges: &[(&str, &str, u64)]) -> RegionTree {
        let mut t = RegionTree::new();
        for (s, e, id) in ranges {
            assert!(t.insert(s.as_bytes(), e.as_bytes(), *id).is_empty());
        }
        t
    }

    #[test]
    fn search_finds_the_holding_range() {
        let t = tree(&[("", "b", 1), ("b", "d", 2), ("f", "", 3)]);
        assert_eq!(t.search(b""), Some(1));
        assert_eq!(t.search(b"a"), Some(1));
        assert_eq!(t.search(b"b"), Some(2));
        assert_eq!(t.search(b"c"), Some(2));
        assert_eq!(t.search(b"d"), None);
        assert_eq!(t.search(b"e"), None);
        assert_eq!(t.search(b"zzz"), Some(3));
        assert_eq!(t.search_prev(b"c"), Some(1));
        assert_eq!(t.search_prev(b"a"), None);
        assert_eq!(t.search_prev(b"g"), None, "d..f is a hole");
    }

    #[test]
    fn insert_removes_overlaps() {
        let mut t = tree(&[("", "b", 1), ("b", "d", 2), ("d", "f", 3), ("f", "", 4)]);
        assert_eq!(t.overlaps(b"c", b"e"), vec![2, 3]);
        assert_eq!(t.insert(b"c", b"e", 5), vec![2, 3]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.search(b"b"), None);
        assert_eq!(t.search(b"d"), Some(5));
        assert_eq!(t.insert(b"", b"", 6), vec![1, 5, 4]);
        assert_eq!(t.ids().collect::<Vec<_>>(), vec![6]);
        assert!(!t.remove(b"", 1));
        assert!(t.remove(b"", 6));
        assert!(t.is_empty());
    }

    #[test]
    fn scan_starts_at_the_holding_range() {
        let t = tree(&[("", "b", 1), ("b", "d", 2), ("d", "", 3)]);
        assert_eq!(t.scan_from(b"c").collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(t.scan_from(b"").collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}
