//! Which keys a staged segment may hold: a Bloom filter over its writes.
//!
//! Most state reads while executing a block are of keys no staged segment holds: a new
//! transaction's id (the replay check), the licence a grant names, the grant a use names, all
//! written more than a store write ago. Each such read used to search every segment's B-tree map
//! (hundreds of thousands of keys, some twenty key comparisons with a cache miss each) before
//! reading the file. The filter answers "not here" with two bit tests; a "maybe" (every key the
//! segment holds, and about 3% of the others) goes on to the map.

use std::hash::{Hash, Hasher};

use crate::state::Key;

/// Bits per key a filter is sized for when it is built; it is rebuilt at twice the size when
/// its keys reach half that.
const BITS_PER_KEY: usize = 16;
/// Smallest filter, in bits (512 bytes).
const MIN_BITS: usize = 4096;

/// A Bloom filter of [`Key`]s with two probes per key.
#[derive(Debug)]
pub(super) struct KeyFilter {
    words: Vec<u64>,
    /// `words.len() * 64 - 1`: the length is a power of two.
    mask: u64,
    keys: usize,
}

impl KeyFilter {
    /// A filter of `keys`.
    pub fn of<'k>(keys: impl ExactSizeIterator<Item = &'k Key>) -> Self {
        let bits = (keys.len() * BITS_PER_KEY).max(MIN_BITS).next_power_of_two();
        let mut f = Self { words: vec![0; bits / 64], mask: bits as u64 - 1, keys: 0 };
        for k in keys {
            f.insert(k);
        }
        f
    }

    /// Add `key`. The caller rebuilds the filter when [`KeyFilter::is_crowded`].
    pub fn insert(&mut self, key: &Key) {
        for bit in self.probes(key) {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        self.keys += 1;
    }

    /// False when `key` was certainly never inserted.
    pub fn may_contain(&self, key: &Key) -> bool {
        self.probes(key).iter().all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// Holds so many keys that a rebuild at their count would answer "maybe" far less often
    /// (past 8 bits per key, about 5% false "maybe" with two probes, rising fast).
    pub fn is_crowded(&self) -> bool {
        self.keys * BITS_PER_KEY / 2 > self.words.len() * 64
    }

    fn probes(&self, key: &Key) -> [u64; 2] {
        let mut h = rustc_hash::FxHasher::default();
        key.hash(&mut h);
        let h = h.finish();
        // Two halves of one hash, the second made odd-stepped from the first (Kirsch–Mitzenmacher).
        let (a, b) = (h, h.rotate_left(32) | 1);
        [a & self.mask, a.wrapping_add(b) & self.mask]
    }
}

#[cfg(test)]
mod tests {
    use elchain_types::ids::{GrantId, HolderId, TxId};

    use super::*;

    fn key(i: u32) -> Key {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&i.to_be_bytes());
        id[8..12].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
        Key::Tx(TxId(id))
    }

    #[test]
    fn every_inserted_key_may_be_there_and_few_others_are_taken_for_it() {
        let keys: Vec<Key> = (0..50_000).map(key).collect();
        let f = KeyFilter::of(keys.iter());
        assert!(keys.iter().all(|k| f.may_contain(k)), "a Bloom filter has no false negatives");
        let others = (1_000_000..1_100_000).map(key).filter(|k| f.may_contain(k)).count();
        // 16 bits per key, two probes: about 1.4% expected.
        assert!(others < 3_000, "{others} of 100,000 absent keys answered maybe");
    }

    #[test]
    fn keys_of_different_kinds_over_the_same_id_are_told_apart() {
        let id = [7u8; 32];
        let f = KeyFilter::of([Key::Grant(GrantId(id))].iter());
        assert!(f.may_contain(&Key::Grant(GrantId(id))));
        let others = [Key::GrantState(GrantId(id)), Key::Tx(TxId(id)), Key::HolderGrant(HolderId(id), GrantId(id))];
        assert!(others.iter().all(|k| !f.may_contain(k)));
    }

    #[test]
    fn a_filter_grown_past_its_size_says_so() {
        let mut f = KeyFilter::of([].iter());
        let mut n = 0;
        while !f.is_crowded() {
            f.insert(&key(n));
            n += 1;
        }
        assert_eq!(n as usize, MIN_BITS * 2 / BITS_PER_KEY + 1);
        assert!((0..n).all(|i| f.may_contain(&key(i))));
    }
}
