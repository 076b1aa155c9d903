//! limpet's one clock, in milliseconds: cheap enough to read several times
//! per request (the kernel's coarse clocks: a few nanoseconds, a resolution
//! of a few milliseconds, no lock) and small enough to keep in an atomic.
//! [`ms`] is monotonic, for deadlines and windows (passive health, pooled
//! connections); [`unix_ms`] is the wall clock, for what must survive a
//! restart (a learned session's idle time) or be shown to people. Neither is
//! for latencies.
//!
//! Unit tests stop both with `clock::pause()` and move them with
//! `Paused::advance`, so that idle expiry, `fail_timeout` and refresh
//! periods are tested without waiting. Only test builds have that switch:
//! a release build reads the kernel's clock and nothing else.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::time::{ClockId, clock_gettime};

fn coarse(id: ClockId) -> Duration {
    let t = clock_gettime(id);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// The moment the clock started, on the precise and the coarse clock.
fn start() -> (Instant, Duration) {
    static START: OnceLock<(Instant, Duration)> = OnceLock::new();
    *START.get_or_init(|| (Instant::now(), coarse(ClockId::MonotonicCoarse)))
}

/// Milliseconds since the first call in this process; never 0.
pub fn ms() -> u64 {
    #[cfg(test)]
    if let Some(paused) = paused::now() {
        return paused.ms;
    }
    let elapsed = coarse(ClockId::MonotonicCoarse).saturating_sub(start().1);
    to_ms(elapsed).saturating_add(1)
}

/// The instant a reading of [`ms`] stands for.
pub fn instant(ms: u64) -> Instant {
    start().0 + Duration::from_millis(ms.saturating_sub(1))
}

/// Wall-clock milliseconds since the Unix epoch (0 before it), coarse: for
/// times kept across a restart or shown to people.
pub fn unix_ms() -> u64 {
    #[cfg(test)]
    if let Some(paused) = paused::now() {
        return paused.unix_ms;
    }
    to_ms(coarse(ClockId::RealtimeCoarse))
}

/// Wall-clock seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}

/// A duration in whole milliseconds, saturating.
pub fn to_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
pub use paused::{Paused, pause};

#[cfg(test)]
mod paused {
    use std::cell::Cell;
    use std::marker::PhantomData;
    use std::time::Duration;

    /// Both readings while the clock is paused on this thread.
    #[derive(Debug, Clone, Copy)]
    pub(super) struct Reading {
        pub ms: u64,
        pub unix_ms: u64,
    }

    thread_local! {
        static PAUSED: Cell<Option<Reading>> = const { Cell::new(None) };
    }

    pub(super) fn now() -> Option<Reading> {
        PAUSED.with(Cell::get)
    }

    /// The clock of this thread, stopped: it moves only by
    /// [`advance`](Self::advance), and runs again when this is dropped.
    /// Per thread, so tests running side by side do not move each other's
    /// time; code the test runs on another thread sees the real clock.
    #[derive(Debug)]
    pub struct Paused {
        /// Not `Send`: the pause belongs to the thread that made it.
        _thread: PhantomData<*const ()>,
    }

    /// Stops this thread's clock at the present reading.
    pub fn pause() -> Paused {
        let reading = Reading {
            ms: super::ms(),
            unix_ms: super::unix_ms(),
        };
        PAUSED.with(|p| p.set(Some(reading)));
        Paused {
            _thread: PhantomData,
        }
    }

    impl Paused {
        /// Moves both readings on by `by`.
        pub fn advance(&self, by: Duration) {
            let by = super::to_ms(by);
            PAUSED.with(|p| {
                p.set(p.get().map(|r| Reading {
                    ms: r.ms.saturating_add(by),
                    unix_ms: r.unix_ms.saturating_add(by),
                }));
            });
        }
    }

    impl Drop for Paused {
        fn drop(&mut self) {
            PAUSED.with(|p| p.set(None));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn the_clock_moves_forward_and_maps_back_to_instants() {
        let a = super::ms();
        std::thread::sleep(Duration::from_millis(30));
        let b = super::ms();
        assert!(b >= a + 20, "{a} → {b}");
        let i = super::instant(b);
        let now = std::time::Instant::now();
        assert!(i <= now + Duration::from_millis(10));
    }

    #[test]
    fn the_wall_clock_agrees_with_the_system_time() {
        let system = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, super::to_ms);
        let coarse = super::unix_ms();
        assert!(coarse.abs_diff(system) < 100, "{coarse} vs {system}");
    }

    #[test]
    fn a_paused_clock_moves_only_when_advanced_and_runs_again_when_dropped() {
        let clock = super::pause();
        let (ms, unix_ms) = (super::ms(), super::unix_ms());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!((super::ms(), super::unix_ms()), (ms, unix_ms));
        clock.advance(Duration::from_secs(3600));
        assert_eq!(super::ms(), ms + 3_600_000);
        assert_eq!(super::unix_ms(), unix_ms + 3_600_000);
        // Another thread keeps the real time.
        let there = std::thread::spawn(super::ms).join().unwrap();
        assert!(there < ms + 60_000, "{there}");
        drop(clock);
        assert!(super::ms() < ms + 60_000);
    }
}
