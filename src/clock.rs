//! A process-wide monotonic clock in milliseconds, cheap enough to read
//! several times per request (the kernel's coarse monotonic clock: a few
//! nanoseconds, a resolution of a few milliseconds) and small enough to keep
//! in an atomic. For deadlines and windows, not for latencies.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::time::{ClockId, clock_gettime};

fn coarse() -> Duration {
    let t = clock_gettime(ClockId::MonotonicCoarse);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// The moment the clock started, on the precise and the coarse clock.
fn start() -> (Instant, Duration) {
    static START: OnceLock<(Instant, Duration)> = OnceLock::new();
    *START.get_or_init(|| (Instant::now(), coarse()))
}

/// Milliseconds since the first call in this process; never 0.
pub fn ms() -> u64 {
    let elapsed = coarse().saturating_sub(start().1);
    u64::try_from(elapsed.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// The instant a reading of [`ms`] stands for.
pub fn instant(ms: u64) -> Instant {
    start().0 + Duration::from_millis(ms.saturating_sub(1))
}

/// Wall-clock milliseconds since the Unix epoch (0 before it), for times
/// shown to people or kept across a restart.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, to_ms)
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
mod tests {
    #[test]
    fn the_clock_moves_forward_and_maps_back_to_instants() {
        let a = super::ms();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = super::ms();
        assert!(b >= a + 20, "{a} → {b}");
        let i = super::instant(b);
        let now = std::time::Instant::now();
        assert!(i <= now + std::time::Duration::from_millis(10));
    }
}
