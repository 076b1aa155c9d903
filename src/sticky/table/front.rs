//! A worker's front of a shared [`SessionTable`](super::SessionTable):
//! what ip_hash and jvm_route read on every request, without taking the
//! table's locks or writing to memory that other workers read.
//!
//! Every shard of the table publishes two numbers next to its lock: how
//! many entries it holds and a change count, bumped by every write that a
//! reader could see (an entry added, removed, expired, evicted, or given
//! another value; not a mere use). A worker remembers what it read last
//! for a key (the value, or that there was none) with the shard's change
//! count at that moment, and answers from that while the count is the
//! same, so what it answers is what the table holds. A read from an empty
//! shard needs no front at all.
//!
//! What the front gives up: a use of an entry reaches the table (its idle
//! time, its CLOCK bit) once per `refresh` per worker instead of on every
//! request. `refresh` is at most a second and a sixteenth of the idle
//! timeout, so an entry in use never expires; one left unused expires up to
//! `refresh` early, and under eviction pressure an entry in use only
//! through fronts may look unused to the CLOCK hand for that long.

use std::sync::atomic::{AtomicU64, Ordering};

/// Entries a worker's front keeps per table; when full it starts afresh
/// (its map keeps its memory: no allocation after the first fill).
const CAPACITY: usize = 1024;

/// What a shard publishes for its fronts (see the module documentation).
#[derive(Debug, Default)]
pub struct Mark {
    changes: AtomicU64,
    len: AtomicU64,
}

impl Mark {
    /// The shard's change count and size, as they are now; called with the
    /// shard's lock held after every write. Unchanged numbers are not
    /// written, so readers keep their copy of this cache line.
    pub fn publish(&self, changes: u64, len: u64) {
        if self.changes.load(Ordering::Relaxed) != changes {
            self.changes.store(changes, Ordering::Release);
        }
        if self.len.load(Ordering::Relaxed) != len {
            self.len.store(len, Ordering::Release);
        }
    }

    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    value: Option<u64>,
    /// The shard's change count when this was read.
    changes: u64,
    /// `unix_ms` when the table last had this read (and the use with it).
    at: u64,
}

/// One worker's front of one table.
#[derive(Debug, Default)]
pub struct Front {
    seen: nohash_hasher::IntMap<u64, Seen>,
}

impl Front {
    /// What the table held for `key` when its shard's change count was
    /// still `changes`, if the table had that read less than `refresh_ms`
    /// ago; `None` when the front must ask the table.
    pub fn get(&self, key: u64, changes: u64, now: u64, refresh_ms: u64) -> Option<Option<u64>> {
        let seen = self.seen.get(&key)?;
        (seen.changes == changes && now.saturating_sub(seen.at) < refresh_ms).then_some(seen.value)
    }

    /// Remembers what the table answered for `key`.
    pub fn put(&mut self, key: u64, value: Option<u64>, changes: u64, now: u64) {
        if self.seen.len() >= CAPACITY && !self.seen.contains_key(&key) {
            self.seen.clear();
        }
        self.seen.insert(
            key,
            Seen {
                value,
                changes,
                at: now,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_front_answers_while_the_shard_is_unchanged_and_the_read_is_recent() {
        let mut f = Front::default();
        f.put(7, Some(3), 10, 1_000);
        f.put(8, None, 10, 1_000);
        assert_eq!(f.get(7, 10, 1_500, 1_000), Some(Some(3)));
        assert_eq!(f.get(8, 10, 1_500, 1_000), Some(None));
        assert_eq!(f.get(7, 11, 1_500, 1_000), None, "the shard changed");
        assert_eq!(f.get(7, 10, 2_000, 1_000), None, "the use is due");
        assert_eq!(f.get(9, 10, 1_500, 1_000), None);
    }

    #[test]
    fn a_full_front_starts_afresh() {
        let mut f = Front::default();
        for k in 0..CAPACITY as u64 {
            f.put(k, Some(k), 0, 0);
        }
        f.put(0, Some(1), 0, 0);
        assert_eq!(f.seen.len(), CAPACITY);
        f.put(u64::MAX, Some(1), 0, 0);
        assert_eq!(f.seen.len(), 1);
    }
}
