//! A process-wide monotonic clock in milliseconds, cheap enough to read on
//! every request and small enough to keep in an atomic.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Milliseconds since the first call in this process; never 0.
pub fn ms() -> u64 {
    u64::try_from(start().elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// The instant a reading of [`ms`] stands for.
pub fn instant(ms: u64) -> Instant {
    start() + Duration::from_millis(ms.saturating_sub(1))
}

/// A duration in whole milliseconds, saturating.
pub fn to_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
