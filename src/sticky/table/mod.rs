//! A bounded table from a key (a fixed-seed hash of a session id or client
//! address) to a small value, with entries forgotten after `idle` unused and
//! the least recently used evicted first — compact enough that a million
//! sessions take tens of megabytes, cheap enough to read on every request.
//!
//! The table is split in shards by key (each a lock, held for a few
//! hundred nanoseconds at most, so workers do not wait on each other); a
//! shard keeps its entries in two rings, one for confirmed entries and one
//! for entries on probation, each with its own capacity, and evicts with
//! the CLOCK algorithm: an entry used since the hand last passed gets a
//! second chance, the first one that was not (or has expired) goes. An
//! index from key to ring slot finds entries; keys are already hashes, so
//! the index does not hash them again.
//!
//! What every request reads (ip_hash's recent addresses, jvm_route's
//! bindings) goes through [`get_fronted`](SessionTable::get_fronted): each
//! worker answers from its own [`Front`] while the shard is unchanged, so
//! the workers do not take the shard's lock or pass its cache line back
//! and forth on every request.

mod front;
mod shard;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::clock::{to_ms, unix_ms};
use crate::metrics::Sharded;
use front::{Front, Mark};
use shard::{Index, Locked, PROBATION, Ring, Shard, lock};

/// An entry as saved and restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub key: u64,
    pub value: u64,
    pub remaining: Duration,
    /// Only a client ever sent this id (request-learned).
    pub probation: bool,
}

/// See the module documentation.
pub struct SessionTable {
    shards: Box<[Mutex<Shard>]>,
    /// Per shard, what the fronts compare with.
    marks: Box<[Mark]>,
    /// Per worker, what it read lately.
    fronts: Sharded<Mutex<Front>>,
    /// How long a front answers before the table has the read again.
    refresh_ms: u64,
    pub idle: Duration,
    pub capacity: u64,
    /// Server names, by the number that values stand for (see [`ServerNames`]).
    pub names: ServerNames,
}

impl std::fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTable")
            .field("capacity", &self.capacity)
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl SessionTable {
    /// A table of `capacity` confirmed entries and `probation` more on
    /// probation, forgotten after `idle` unused.
    pub fn new(capacity: u64, probation: u64, idle: Duration) -> SessionTable {
        // Enough shards that workers rarely meet, few enough that a small
        // table keeps exact bounds (a shard needs room for 256 entries).
        let shards = (capacity / 256).clamp(1, 64).next_power_of_two().min(64) as usize;
        let share = |total: u64| {
            usize::try_from(total.div_ceil(shards as u64).max(1)).unwrap_or(usize::MAX)
        };
        let shards: Box<[Mutex<Shard>]> = (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    index: Index::default(),
                    confirmed: Ring {
                        capacity: share(capacity),
                        ..Ring::default()
                    },
                    probation: Ring {
                        capacity: share(probation),
                        ..Ring::default()
                    },
                    changes: 0,
                })
            })
            .collect();
        SessionTable {
            marks: (0..shards.len()).map(|_| Mark::default()).collect(),
            shards,
            fronts: Sharded::default(),
            refresh_ms: to_ms(idle / 16).clamp(1, 1000),
            idle,
            capacity,
            names: ServerNames::default(),
        }
    }

    fn shard_of(&self, key: u64) -> usize {
        // The high bits pick the shard; the index uses all of them.
        (key >> 58) as usize & (self.shards.len() - 1)
    }

    fn shard(&self, key: u64) -> Locked<'_> {
        let i = self.shard_of(key);
        Locked {
            shard: lock(&self.shards[i]),
            mark: &self.marks[i],
        }
    }

    fn idle_ms(&self) -> u64 {
        to_ms(self.idle)
    }

    /// The value for `key`, if it is there and not expired; marks it used.
    pub fn get(&self, key: u64) -> Option<u64> {
        self.lookup(key, None).map(|(v, _)| v)
    }

    /// [`get`](Self::get) for what every request reads: answered by this
    /// worker's front while the key's shard is unchanged, the use passed
    /// on to the table at most once per `refresh_ms` (see [`super::front`]).
    pub fn get_fronted(&self, key: u64) -> Option<u64> {
        let mark = &self.marks[self.shard_of(key)];
        if mark.is_empty() {
            return None;
        }
        let changes = mark.changes();
        let now = unix_ms();
        let mut front = self.fronts.mine().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(value) = front.get(key, changes, now, self.refresh_ms) {
            return value;
        }
        // The shard's count is read under its lock, after the lookup: the
        // front's copy is what the table held at that count.
        let (value, changes) = {
            let mut s = self.shard(key);
            let value = s.lookup(key, None, now, self.idle_ms()).map(|(v, _)| v);
            (value, s.changes)
        };
        front.put(key, value, changes, now);
        value
    }

    /// Like [`get`](Self::get), and whether a shared store's copy of this
    /// confirmed entry is due a refresh: it was last written or refreshed
    /// `every_s` seconds ago or more. A due refresh counts as done, so each
    /// entry is refreshed at most once per `every_s`, however busy.
    pub fn get_synced(&self, key: u64, every_s: u32) -> Option<(u64, bool)> {
        self.lookup(key, Some(every_s))
    }

    fn lookup(&self, key: u64, sync_every_s: Option<u32>) -> Option<(u64, bool)> {
        self.shard(key)
            .lookup(key, sync_every_s, unix_ms(), self.idle_ms())
    }

    /// The value of `key` if it is a confirmed entry, not expired; not
    /// marked used (what a shared store's writer sends).
    pub fn peek_confirmed(&self, key: u64) -> Option<u64> {
        let s = self.shard(key);
        let at = *s.index.get(&key)?;
        let slot = s.slot(at);
        let fresh = unix_ms().saturating_sub(slot.used) < self.idle_ms();
        (at & PROBATION == 0 && fresh).then_some(slot.value)
    }

    /// Is `key` there as a confirmed entry?
    pub fn is_confirmed(&self, key: u64) -> bool {
        self.shard(key)
            .index
            .get(&key)
            .is_some_and(|at| at & PROBATION == 0)
    }

    /// Sets a confirmed entry (moving it out of probation if it was there).
    pub fn insert(&self, key: u64, value: u64) {
        self.put(key, value, false, unix_ms());
    }

    /// Sets an entry on probation, unless `key` is confirmed already.
    pub fn insert_probation(&self, key: u64, value: u64) {
        let mut s = self.shard(key);
        if s.index.get(&key).is_some_and(|at| at & PROBATION == 0) {
            return;
        }
        s.put(key, value, true, unix_ms());
    }

    /// Changes the value of `key` where it is (confirmed or on probation),
    /// or adds it as confirmed.
    pub fn rewrite(&self, key: u64, value: u64) {
        let mut s = self.shard(key);
        let probation = s.index.get(&key).is_some_and(|at| at & PROBATION != 0);
        s.put(key, value, probation, unix_ms());
    }

    fn put(&self, key: u64, value: u64, probation: bool, used: u64) {
        self.shard(key).put(key, value, probation, used);
    }

    /// Puts back an entry saved with `remaining` idle time.
    pub fn restore(&self, saved: Kept) {
        let remaining = u64::try_from(saved.remaining.as_millis()).unwrap_or(0);
        let used = unix_ms().saturating_sub(self.idle_ms().saturating_sub(remaining));
        self.put(saved.key, saved.value, saved.probation, used);
    }

    pub fn remove(&self, key: u64) {
        let mut s = self.shard(key);
        if let Some(at) = s.index.get(&key).copied() {
            s.remove_at(at);
        }
    }

    /// Entries held (expired ones included until [`purge`](Self::purge)).
    pub fn len(&self) -> u64 {
        self.shards.iter().map(|s| lock(s).index.len() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries on probation.
    pub fn on_probation(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| lock(s).probation.slots.len() as u64)
            .sum()
    }

    /// Forgets every expired entry.
    pub fn purge(&self) {
        let now = unix_ms();
        let idle = self.idle_ms();
        for (shard, mark) in self.shards.iter().zip(self.marks.iter()) {
            let mut s = Locked {
                shard: lock(shard),
                mark,
            };
            for probation in [false, true] {
                let mut i = 0;
                while i < s.ring(probation).slots.len() {
                    let at = i as u32 | if probation { PROBATION } else { 0 };
                    if now.saturating_sub(s.slot(at).used) >= idle {
                        s.remove_at(at);
                    } else {
                        i += 1;
                    }
                }
            }
        }
    }

    /// Every live entry with its remaining idle time.
    pub fn entries(&self) -> Vec<Kept> {
        let now = unix_ms();
        let idle = self.idle_ms();
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let s = lock(shard);
            for (ring, probation) in [(&s.confirmed, false), (&s.probation, true)] {
                for slot in &ring.slots {
                    let age = now.saturating_sub(slot.used);
                    if age < idle {
                        all.push(Kept {
                            key: slot.key,
                            value: slot.value,
                            remaining: Duration::from_millis(idle - age),
                            probation,
                        });
                    }
                }
            }
        }
        all
    }
}

/// Server names, numbered: tables store the number (a value), and a name
/// keeps its number for the table's life, across reloads.
#[derive(Debug, Default)]
pub struct ServerNames {
    list: RwLock<Vec<Arc<str>>>,
}

impl ServerNames {
    /// The number of `name`, given one if it has none.
    pub fn intern(&self, name: &str) -> u64 {
        if let Some(i) = self.find(name) {
            return i;
        }
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = list.iter().position(|n| &**n == name) {
            return i as u64;
        }
        list.push(Arc::from(name));
        (list.len() - 1) as u64
    }

    /// The number of `name`, if it has one.
    pub fn find(&self, name: &str) -> Option<u64> {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        list.iter().position(|n| &**n == name).map(|i| i as u64)
    }

    /// The name numbered `i`.
    pub fn name(&self, i: u64) -> Option<Arc<str>> {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        usize::try_from(i).ok().and_then(|i| list.get(i).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    #[test]
    fn a_busy_entry_is_due_a_store_refresh_once_per_period_and_probation_never() {
        let clock = clock::pause();
        let t = SessionTable::new(1000, 100, Duration::from_secs(3600));
        t.insert(1, 7);
        t.insert_probation(2, 8);
        // Just written: the store has it.
        assert_eq!(t.get_synced(1, 30), Some((7, false)));
        clock.advance(Duration::from_secs(29));
        assert_eq!(t.get_synced(1, 30), Some((7, false)));
        clock.advance(Duration::from_secs(1));
        // Due once per period, however busy: a due refresh counts as done.
        assert_eq!(t.get_synced(1, 30), Some((7, true)));
        assert_eq!(t.get_synced(1, 30), Some((7, false)));
        clock.advance(Duration::from_secs(30));
        // A write (rewrite, failover) is a sync too.
        t.rewrite(1, 9);
        assert_eq!(t.get_synced(1, 30), Some((9, false)));
        clock.advance(Duration::from_secs(30));
        assert_eq!(t.get_synced(1, 30), Some((9, true)));
        // Probation is never in the store.
        assert_eq!(t.get_synced(2, 30), Some((8, false)));
        assert_eq!(t.get_synced(3, 0), None);
        assert_eq!(std::mem::size_of::<shard::Slot>(), 32);
    }

    #[test]
    fn an_entry_is_forgotten_idle_after_its_last_use_in_either_area() {
        let clock = clock::pause();
        let t = SessionTable::new(100, 10, Duration::from_secs(60));
        t.insert(1, 7);
        t.insert_probation(2, 8);
        t.insert(3, 9);
        t.insert_probation(4, 6);
        clock.advance(Duration::from_secs(30));
        // A use restarts the idle time, in either area.
        assert_eq!(t.get(3), Some(9));
        assert_eq!(t.get(4), Some(6));
        clock.advance(Duration::from_millis(29_999));
        assert_eq!(t.entries().len(), 4);
        clock.advance(Duration::from_millis(1));
        assert_eq!(t.get(1), None);
        assert_eq!(t.get(2), None);
        let mut left = t.entries();
        left.sort_by_key(|e| e.key);
        let remaining: Vec<_> = left.iter().map(|e| (e.key, e.remaining)).collect();
        assert_eq!(
            remaining,
            [(3, Duration::from_secs(30)), (4, Duration::from_secs(30))]
        );
        clock.advance(Duration::from_secs(30));
        assert_eq!(t.len(), 2, "expired entries are held until a purge");
        t.purge();
        assert!(t.is_empty());
        assert_eq!(t.on_probation(), 0);
    }

    #[test]
    fn the_least_recently_used_goes_first_and_a_used_entry_stays() {
        let t = SessionTable::new(5, 1, Duration::from_secs(3600));
        t.insert(1000, 1);
        for k in 0..12u64 {
            t.insert(k, 2);
            assert_eq!(t.get(1000), Some(1), "the entry in use was evicted");
        }
        assert!(t.len() <= 5 + 1);
        assert_eq!(
            t.get(0),
            None,
            "the least recently used entry is still there"
        );
        assert_eq!(t.get(11), Some(2));
    }

    #[test]
    fn probation_never_evicts_a_confirmed_entry() {
        let t = SessionTable::new(10, 3, Duration::from_secs(3600));
        for k in 0..10u64 {
            t.insert(k, 7);
        }
        for k in 100..1000u64 {
            t.insert_probation(k, 1);
        }
        for k in 0..10u64 {
            assert_eq!(t.get(k), Some(7));
        }
        assert_eq!(t.on_probation(), 3);
        // Confirming moves an entry out of probation.
        t.insert(999, 1);
        assert!(t.is_confirmed(999));
        assert_eq!(t.on_probation(), 2);
    }

    #[test]
    fn entries_expire_and_survive_a_save_with_their_remaining_time() {
        let clock = clock::pause();
        let t = SessionTable::new(100, 10, Duration::from_secs(3600));
        t.restore(Kept {
            key: 1,
            value: 3,
            remaining: Duration::from_secs(600),
            probation: false,
        });
        t.restore(Kept {
            key: 2,
            value: 4,
            remaining: Duration::ZERO,
            probation: true,
        });
        assert_eq!(t.get(2), None, "an entry with no time left expired");
        clock.advance(Duration::from_secs(100));
        let saved = t.entries();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].value, 3);
        assert_eq!(saved[0].remaining, Duration::from_secs(500));
        t.purge();
        assert_eq!(t.len(), 1);
        clock.advance(Duration::from_secs(500));
        assert_eq!(t.get(1), None);
    }

    #[test]
    fn a_big_table_stays_within_its_capacity_over_its_shards() {
        let t = SessionTable::new(100_000, 25_000, Duration::from_secs(3600));
        for k in 0..300_000u64 {
            t.insert(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), 1);
        }
        let n = t.len();
        assert!(n <= 100_000 + 64, "{n}");
        assert!(n >= 99_000, "{n}");
    }

    #[test]
    fn a_workers_front_sees_every_change_at_once_and_keeps_an_entry_in_use_alive() {
        let clock = clock::pause();
        // Idle 160 s: a front passes a use on every 10 s.
        let t = SessionTable::new(1000, 1, Duration::from_secs(160));
        assert_eq!(t.get_fronted(1), None, "an empty shard");
        t.insert(1, 7);
        // Two workers (one where the machine has a single CPU: the same front).
        crate::metrics::pin_shard(0);
        assert_eq!(t.get_fronted(1), Some(7));
        crate::metrics::pin_shard(1);
        assert_eq!(t.get_fronted(1), Some(7));
        // A write by anyone is seen by every front at once.
        t.insert(1, 8);
        assert_eq!(t.get_fronted(1), Some(8));
        crate::metrics::pin_shard(0);
        assert_eq!(t.get_fronted(1), Some(8));
        assert_eq!(t.get_fronted(2), None);
        t.insert(2, 9);
        assert_eq!(t.get_fronted(2), Some(9), "a key the front knew as absent");
        // Used through the front only, for longer than the idle time.
        for _ in 0..40 {
            clock.advance(Duration::from_secs(5));
            assert_eq!(t.get_fronted(1), Some(8));
        }
        assert_eq!(t.get(2), None, "the unused entry expired");
        t.remove(1);
        assert_eq!(t.get_fronted(1), None);
        // Unused, an entry expires within its idle time.
        t.insert(3, 1);
        assert_eq!(t.get_fronted(3), Some(1));
        clock.advance(Duration::from_secs(160));
        assert_eq!(t.get_fronted(3), None);
    }

    #[test]
    fn names_keep_their_numbers() {
        let n = ServerNames::default();
        assert_eq!(n.intern("node1"), 0);
        assert_eq!(n.intern("node2"), 1);
        assert_eq!(n.intern("node1"), 0);
        assert_eq!(n.name(1).as_deref(), Some("node2"));
        assert_eq!(n.name(9), None);
    }
}
