//! A bounded, sharded map for the registry's caches, evicting by CLOCK (second chance).
//!
//! A hit takes one shard's read lock and sets the entry's "referenced" flag (a relaxed load,
//! and a store only when the flag was clear), so hot keys cost what a `RwLock<HashMap>` get
//! costs. An insert into a full shard walks the shard's ring: a referenced entry loses its flag
//! and goes round again, an unreferenced one is evicted. Entries removed by invalidation leave
//! stale ring slots (told apart by a generation number) that the walk skips and that are
//! compacted away when the ring grows past twice the shard's entries.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::RwLock;

/// Caches smaller than this are one shard (exact CLOCK order; small caches are tests).
const SHARDING_THRESHOLD: usize = 1024;
/// Shards of larger caches (a power of two).
const SHARDS: usize = 16;

/// Picks a key's shard from the last 8 bytes and the length of each part of the key (the
/// random end of a key id, the distinct end of an alias name): a multiply per part, several
/// times cheaper than SipHash over the whole key, so a hit costs about one hash. Only the
/// spread over shards depends on it; the maps inside the shards hash with SipHash as usual.
struct ShardHasher(u64);

impl ShardHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for ShardHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut tail = [0u8; 8];
        let take = bytes.len().min(8);
        tail[..take].copy_from_slice(&bytes[bytes.len() - take..]);
        self.mix(u64::from_le_bytes(tail) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u8(&mut self, b: u8) {
        self.mix(u64::from(b));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A cached value and its CLOCK state.
struct Slot<V> {
    value: V,
    referenced: AtomicBool,
    generation: u64,
}

/// One shard: the map and the CLOCK ring of its keys.
struct Shard<K, V> {
    map: HashMap<K, Slot<V>>,
    ring: VecDeque<(K, u64)>,
    next_generation: u64,
}

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    /// Evicts one entry (the first unreferenced one the hand reaches); false if none is left.
    fn evict_one(&mut self) -> bool {
        while let Some((key, generation)) = self.ring.pop_front() {
            let Some(slot) = self.map.get(&key) else {
                continue;
            };
            if slot.generation != generation {
                continue;
            }
            if slot.referenced.swap(false, Ordering::Relaxed) {
                self.ring.push_back((key, generation));
                continue;
            }
            self.map.remove(&key);
            return true;
        }
        false
    }

    /// Drops ring slots of entries that were removed or replaced.
    fn compact(&mut self) {
        let map = &self.map;
        self.ring
            .retain(|(k, g)| map.get(k).is_some_and(|s| s.generation == *g));
    }
}

/// A map holding at most `capacity` entries, shared by many threads.
///
/// The bound is the whole cache's, not a shard's: an insert into a full cache evicts from its
/// own shard, or from another when its own holds nothing else. Concurrent inserts may pass the
/// bound by one entry each until they return.
pub(crate) struct BoundedCache<K, V> {
    shards: Box<[RwLock<Shard<K, V>>]>,
    /// Seeds shard selection (the maps inside the shards hash with SipHash as usual).
    seed: u64,
    capacity: usize,
    /// Entries in all shards.
    len: AtomicUsize,
}

impl<K: Hash + Eq + Clone, V: Clone> BoundedCache<K, V> {
    /// A cache of at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let count = if capacity < SHARDING_THRESHOLD {
            1
        } else {
            SHARDS
        };
        let shards = (0..count)
            .map(|_| {
                RwLock::new(Shard {
                    map: HashMap::new(),
                    ring: VecDeque::new(),
                    next_generation: 0,
                })
            })
            .collect();
        BoundedCache {
            shards,
            seed: RandomState::new().hash_one(0u8),
            capacity,
            len: AtomicUsize::new(0),
        }
    }

    /// The most entries the cache holds.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    fn shard_index<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        if self.shards.len() == 1 {
            return 0;
        }
        let mut h = ShardHasher(self.seed);
        key.hash(&mut h);
        (h.finish() >> 32) as usize & (SHARDS - 1)
    }

    /// The value cached under `key`, marking it recently used.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = self.shards[self.shard_index(key)].read().ok()?;
        let slot = shard.map.get(key)?;
        if !slot.referenced.load(Ordering::Relaxed) {
            slot.referenced.store(true, Ordering::Relaxed);
        }
        Some(slot.value.clone())
    }

    /// Caches `value` under `key`, evicting another entry if the cache is full.
    #[cfg(test)]
    pub(crate) fn insert(&self, key: K, value: V) {
        self.insert_if(key, value, || true);
    }

    /// Caches `value` under `key` if `still_valid()` holds, asked under the shard's lock (so a
    /// [`BoundedCache::remove`] that follows whatever makes it false also follows the insert),
    /// evicting another entry if the cache is full.
    pub(crate) fn insert_if(&self, key: K, value: V, still_valid: impl FnOnce() -> bool) {
        let index = self.shard_index(&key);
        {
            let Ok(mut shard) = self.shards[index].write() else {
                return;
            };
            if !still_valid() {
                return;
            }
            if let Some(slot) = shard.map.get_mut(&key) {
                slot.value = value;
                return;
            }
            if shard.ring.len() >= 2 * shard.map.len() + 32 {
                shard.compact();
            }
            let generation = shard.next_generation;
            shard.next_generation += 1;
            shard.ring.push_back((key.clone(), generation));
            shard.map.insert(
                key,
                Slot {
                    value,
                    referenced: AtomicBool::new(false),
                    generation,
                },
            );
            self.len.fetch_add(1, Ordering::AcqRel);
            // Evict from this shard while it holds more than the new entry.
            while self.len.load(Ordering::Acquire) > self.capacity && shard.map.len() > 1 {
                if !shard.evict_one() {
                    break;
                }
                self.len.fetch_sub(1, Ordering::AcqRel);
            }
        }
        // This shard had nothing else to give: take from the others, one lock at a time.
        let mut next = index;
        for _ in 1..self.shards.len() {
            if self.len.load(Ordering::Acquire) <= self.capacity {
                return;
            }
            next = (next + 1) % self.shards.len();
            if let Ok(mut shard) = self.shards[next].write() {
                while self.len.load(Ordering::Acquire) > self.capacity && shard.evict_one() {
                    self.len.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }

    /// Drops the entry under `key`.
    pub(crate) fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Ok(mut shard) = self.shards[self.shard_index(key)].write() {
            if shard.map.remove(key).is_some() {
                self.len.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Drops every entry.
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            if let Ok(mut s) = shard.write() {
                self.len.fetch_sub(s.map.len(), Ordering::AcqRel);
                s.map.clear();
                s.ring.clear();
            }
        }
    }

    /// How many entries are cached now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_its_capacity() {
        for capacity in [1, 3, 100, 5000] {
            let c = BoundedCache::new(capacity);
            for i in 0..capacity * 3 {
                c.insert(i, i);
                assert!(c.len() <= capacity, "capacity {capacity}, after {i}");
            }
            assert_eq!(c.len(), capacity, "a full cache stays full");
        }
    }

    #[test]
    fn a_sharded_cache_holds_as_many_entries_as_its_capacity() {
        let c = BoundedCache::new(2000);
        for i in 0..2000 {
            c.insert(i, i);
        }
        assert!((0..2000).all(|i| c.get(&i) == Some(i)), "nothing evicted");
        for i in 2000..6000 {
            c.insert(i, i);
            assert!(c.len() <= 2000);
        }
        let counted: usize = c.shards.iter().map(|s| s.read().unwrap().map.len()).sum();
        assert_eq!((counted, c.len()), (2000, 2000));
    }

    #[test]
    fn second_chance_keeps_a_hot_entry() {
        let c = BoundedCache::new(4);
        for i in 0..4 {
            c.insert(i, i);
        }
        for i in 4..40 {
            // Key 0 is used between every insert: CLOCK never evicts it.
            assert_eq!(c.get(&0), Some(0));
            c.insert(i, i);
        }
        assert_eq!(c.get(&0), Some(0));
        assert_eq!(c.get(&1), None, "cold entries went");
    }

    #[test]
    fn removal_and_reinsertion_keep_the_ring_small_and_the_bound() {
        let c = BoundedCache::new(8);
        for round in 0..1000 {
            c.insert(round % 3, round);
            c.remove(&(round % 3));
            c.insert(round % 3, round);
        }
        let shard = c.shards[0].read().unwrap();
        assert!(shard.ring.len() <= 2 * 3 + 32, "ring {}", shard.ring.len());
        drop(shard);
        for i in 10..30 {
            c.insert(i, i);
        }
        assert_eq!(c.len(), 8);
        c.clear();
        assert_eq!(c.len(), 0);
        assert_eq!(c.get(&12), None);
    }

    #[test]
    fn insert_replaces_the_value_of_a_present_key() {
        let c = BoundedCache::new(2);
        c.insert("a", 1);
        c.insert("a", 2);
        c.insert("b", 3);
        assert_eq!((c.get("a"), c.get("b"), c.len()), (Some(2), Some(3), 2));
    }

    /// The cost of a hit against the `RwLock<HashMap>` the key cache was before, 10,000 keys,
    /// keyed as the registry keys them (allocation of the key included, as in both). Run:
    /// `cargo test --release -p kms-core --lib -- --ignored hit_cost --nocapture`.
    #[test]
    #[ignore = "a measurement, run by hand in release"]
    fn hit_cost_against_a_plain_map() {
        use std::time::Instant;
        let ids: Vec<String> = (0..10_000)
            .map(|i| format!("{i:08x}-1234-1234-1234-123456789abc"))
            .collect();
        let plain: RwLock<HashMap<(String, String), std::sync::Arc<u64>>> = Default::default();
        let bounded = BoundedCache::new(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let k = ("us-east-1".to_owned(), id.clone());
            plain
                .write()
                .unwrap()
                .insert(k.clone(), std::sync::Arc::new(i as u64));
            bounded.insert(k, std::sync::Arc::new(i as u64));
        }
        let gets = 2_000_000;
        for round in 0..5 {
            let t = Instant::now();
            let mut sum = 0;
            for i in 0..gets {
                let k = ("us-east-1".to_owned(), ids[(i * 7) % ids.len()].clone());
                sum += *plain.read().unwrap().get(&k).cloned().unwrap();
            }
            let p = t.elapsed().as_nanos() as f64 / gets as f64;
            let t = Instant::now();
            for i in 0..gets {
                let k = ("us-east-1".to_owned(), ids[(i * 7) % ids.len()].clone());
                sum += *bounded.get(&k).unwrap();
            }
            let b = t.elapsed().as_nanos() as f64 / gets as f64;
            println!(
                "round {round}: RwLock<HashMap> {p:.0} ns/hit, BoundedCache {b:.0} ns/hit ({sum})"
            );
        }
    }
}
