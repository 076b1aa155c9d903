//! A shard of a [`SessionTable`](super::SessionTable): its two rings of
//! slots, the index into them, and the CLOCK eviction; locked, it
//! publishes what a reader could see to its [`Mark`].

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};

use super::front::Mark;

/// Keys are hashes already: the index uses them as they are.
pub(super) type Index = nohash_hasher::IntMap<u64, u32>;

#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) key: u64,
    pub(super) value: u64,
    /// Wall-clock ms ([`crate::clock::unix_ms`]) of the last use: an
    /// entry's idle time must survive a restart, which a monotonic reading
    /// would not.
    pub(super) used: u64,
    /// Used since the clock hand last passed.
    pub(super) referenced: bool,
    /// Seconds (`unix_ms / 1000`, wrapping) when a shared store last got
    /// this entry: written or its expiry refreshed. Fits beside
    /// `referenced`: a slot stays 32 bytes.
    pub(super) synced: u32,
}

/// One ring of a shard: its slots, the clock hand, its capacity.
#[derive(Debug, Default)]
pub(super) struct Ring {
    pub(super) slots: Vec<Slot>,
    pub(super) hand: usize,
    pub(super) capacity: usize,
}

/// Where an entry is: the probation bit and the slot.
pub(super) const PROBATION: u32 = 1 << 31;

#[derive(Default)]
pub(super) struct Shard {
    pub(super) index: Index,
    pub(super) confirmed: Ring,
    pub(super) probation: Ring,
    /// Writes a reader could see (see [`Mark`]).
    pub(super) changes: u64,
}

pub(super) fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A shard, locked; what it holds is published to its [`Mark`] as the lock
/// is let go.
pub(super) struct Locked<'a> {
    pub(super) shard: MutexGuard<'a, Shard>,
    pub(super) mark: &'a Mark,
}

impl Deref for Locked<'_> {
    type Target = Shard;
    fn deref(&self) -> &Shard {
        &self.shard
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Shard {
        &mut self.shard
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.mark
            .publish(self.shard.changes, self.shard.index.len() as u64);
    }
}

pub(super) fn seconds(ms: u64) -> u32 {
    (ms / 1000) as u32
}

pub(super) fn slot_touch(slot: &mut Slot, now: u64) {
    slot.used = now;
    slot.referenced = true;
}

impl Shard {
    /// The value of `key` at `now`, if it is there and not expired (else
    /// forgotten); marks it used, and says whether a shared store is due a
    /// refresh of it (see [`SessionTable::get_synced`]).
    pub(super) fn lookup(
        &mut self,
        key: u64,
        sync_every_s: Option<u32>,
        now: u64,
        idle: u64,
    ) -> Option<(u64, bool)> {
        let at = *self.index.get(&key)?;
        if now.saturating_sub(self.slot(at).used) >= idle {
            self.remove_at(at);
            return None;
        }
        let confirmed = at & PROBATION == 0;
        let slot = self.slot_mut(at);
        slot_touch(slot, now);
        let now_s = seconds(now);
        let due =
            confirmed && sync_every_s.is_some_and(|every| now_s.wrapping_sub(slot.synced) >= every);
        if due {
            slot.synced = now_s;
        }
        Some((slot.value, due))
    }

    pub(super) fn ring(&self, probation: bool) -> &Ring {
        if probation {
            &self.probation
        } else {
            &self.confirmed
        }
    }

    fn ring_mut(&mut self, probation: bool) -> &mut Ring {
        if probation {
            &mut self.probation
        } else {
            &mut self.confirmed
        }
    }

    pub(super) fn slot(&self, at: u32) -> &Slot {
        &self.ring(at & PROBATION != 0).slots[(at & !PROBATION) as usize]
    }

    fn slot_mut(&mut self, at: u32) -> &mut Slot {
        let i = (at & !PROBATION) as usize;
        &mut self.ring_mut(at & PROBATION != 0).slots[i]
    }

    /// The ring `probation` names and the index, borrowed apart.
    fn parts(&mut self, probation: bool) -> (&mut Ring, &mut Index) {
        if probation {
            (&mut self.probation, &mut self.index)
        } else {
            (&mut self.confirmed, &mut self.index)
        }
    }

    /// Removes the slot at `at`; the ring's last slot takes its place.
    pub(super) fn remove_at(&mut self, at: u32) {
        self.changes += 1;
        let probation = at & PROBATION != 0;
        let i = (at & !PROBATION) as usize;
        let (ring, index) = self.parts(probation);
        let gone = ring.slots.swap_remove(i);
        let moved = ring.slots.get(i).map(|s| s.key);
        if ring.hand >= ring.slots.len() {
            ring.hand = 0;
        }
        index.remove(&gone.key);
        if let Some(k) = moved {
            index.insert(k, at);
        }
    }

    pub(super) fn put(&mut self, key: u64, value: u64, probation: bool, used: u64) {
        if let Some(at) = self.index.get(&key).copied() {
            if (at & PROBATION != 0) == probation {
                let slot = self.slot_mut(at);
                let changed = slot.value != value;
                slot.value = value;
                slot.synced = seconds(used);
                slot_touch(slot, used);
                self.changes += u64::from(changed);
                return;
            }
            self.remove_at(at);
        }
        self.changes += 1;
        let flag = if probation { PROBATION } else { 0 };
        let fresh = Slot {
            key,
            value,
            used,
            referenced: false,
            synced: seconds(used),
        };
        let (ring, index) = self.parts(probation);
        if ring.slots.len() >= ring.capacity {
            let victim = ring.evict();
            let old = std::mem::replace(&mut ring.slots[victim], fresh).key;
            index.remove(&old);
            index.insert(key, victim as u32 | flag);
        } else {
            ring.slots.push(fresh);
            index.insert(key, (ring.slots.len() - 1) as u32 | flag);
        }
    }
}

impl Ring {
    /// The slot to reuse, by the CLOCK algorithm: the first slot the hand
    /// meets that was not used since it last passed (its bit is cleared as
    /// the hand goes by). Two turns at most.
    fn evict(&mut self) -> usize {
        let n = self.slots.len();
        for _ in 0..2 * n {
            let i = self.hand;
            self.hand = (self.hand + 1) % n;
            let slot = &mut self.slots[i];
            if slot.referenced {
                slot.referenced = false;
            } else {
                return i;
            }
        }
        self.hand
    }
}
