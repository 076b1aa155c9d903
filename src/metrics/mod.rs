//! Counting what happens, cheaply enough to do on every request.
//!
//! Counters live with what they count and survive a reload the way that
//! thing does: a server's in its [`crate::server::Live`], a pool's in its
//! [`PoolStats`], a listener's in its [`ListenerStats`] — each carried over
//! by name, so counters reset only when the process restarts, and a server
//! removed by a reload is no longer exported. Nothing is looked up by name
//! or hashed per request: a request adds to the atomics of the server it
//! already holds. Each counter is split in shards, one per worker thread
//! (by a thread-local index), so that workers do not fight over one cache
//! line. [`export`] reads them all at scrape time.

pub mod process;

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::decision::Outcome;

/// Upper bounds of the latency histogram buckets, 0.5 ms to 30 s, in the
/// microseconds a request is counted in; exported in seconds ([`le`]).
const BUCKETS: [u64; 15] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// The upper bound of bucket `i` in seconds; `+Inf` past the last.
fn le(i: usize) -> f64 {
    BUCKETS
        .get(i)
        .map_or(f64::INFINITY, |&micros| micros as f64 / 1e6)
}

/// Status codes 100..=599 each have a counter.
const CODES: usize = 500;

/// The number of shards: one per CPU, at most 64.
fn shards() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 64)
    })
}

thread_local! {
    static MINE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's shard.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    MINE.with(|m| {
        let mut i = m.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed) % shards();
            m.set(i);
        }
        i
    })
}

/// A value per shard (per worker thread), each on its own cache lines:
/// a worker writes its own, readers add them up.
#[derive(Debug)]
pub struct Sharded<T>(Box<[CachePadded<T>]>);

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Sharded((0..shards()).map(|_| CachePadded::default()).collect())
    }
}

impl<T> Sharded<T> {
    /// This thread's value.
    pub fn mine(&self) -> &T {
        &self.0[shard()]
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|p| &**p)
    }
}

/// Gives the calling thread shard `i` (a worker takes its own number), so
/// that no two workers share a shard when there are enough.
pub fn pin_shard(i: usize) {
    MINE.with(|m| m.set(i % shards()));
}

#[derive(Debug)]
struct RequestShard {
    codes: [AtomicU64; CODES],
    /// Non-cumulative: bucket i counts durations in (BUCKETS[i-1], BUCKETS[i]];
    /// the last one is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Default for RequestShard {
    fn default() -> Self {
        RequestShard {
            codes: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

/// Requests answered through one server (or, for a pool, answered before a
/// server was chosen): counts by status code and a latency histogram.
#[derive(Debug, Default)]
pub struct RequestStats {
    shards: Sharded<RequestShard>,
}

/// A histogram read at scrape time: cumulative bucket counts, sum, count.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// Adds another histogram with the same buckets (a pool's servers).
    pub fn merge(&mut self, other: &Histogram) {
        if self.buckets.is_empty() {
            self.clone_from(other);
            return;
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.1 += theirs.1;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// The `q` quantile (0..=1), interpolated linearly inside its bucket as
    /// Prometheus's `histogram_quantile` does; `None` without requests. In
    /// the last, unbounded bucket it is that bucket's lower bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut below = (0.0, 0u64);
        for &(le, cumulative) in &self.buckets {
            if cumulative as f64 >= rank {
                if le.is_infinite() {
                    return Some(below.0);
                }
                let in_bucket = (cumulative - below.1) as f64;
                let fraction = if in_bucket == 0.0 {
                    1.0
                } else {
                    (rank - below.1 as f64) / in_bucket
                };
                return Some(below.0 + (le - below.0) * fraction);
            }
            below = (le, cumulative);
        }
        Some(below.0)
    }
}

impl RequestStats {
    /// Counts one answered request. `status` is what the access log says
    /// (499 for a client that went away).
    pub fn record(&self, status: u16, took: Duration) {
        let s = self.shards.mine();
        if let Some(c) = usize::from(status)
            .checked_sub(100)
            .and_then(|i| s.codes.get(i))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(BUCKETS.len());
        s.buckets[i].fetch_add(1, Ordering::Relaxed);
        s.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// (status, count) for every status seen, in order.
    pub fn by_code(&self) -> Vec<(u16, u64)> {
        let mut out = Vec::new();
        for i in 0..CODES {
            let n: u64 = self
                .shards
                .iter()
                .map(|s| s.codes[i].load(Ordering::Relaxed))
                .sum();
            if n > 0 {
                out.push((i as u16 + 100, n));
            }
        }
        out
    }

    /// Requests counted, over all codes.
    pub fn total(&self) -> u64 {
        self.shards
            .iter()
            .flat_map(|s| s.buckets.iter())
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }

    pub fn histogram(&self) -> Histogram {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(BUCKETS.len() + 1);
        for i in 0..=BUCKETS.len() {
            cumulative += self
                .shards
                .iter()
                .map(|s| s.buckets[i].load(Ordering::Relaxed))
                .sum::<u64>();
            buckets.push((le(i), cumulative));
        }
        let micros: u64 = self
            .shards
            .iter()
            .map(|s| s.sum_micros.load(Ordering::Relaxed))
            .sum();
        Histogram {
            buckets,
            sum: micros as f64 / 1e6,
            count: cumulative,
        }
    }
}

/// Active health checks of one server.
#[derive(Debug, Default)]
pub struct CheckStats {
    pub success: AtomicU64,
    pub failure: AtomicU64,
}

impl CheckStats {
    pub fn record(&self, ok: bool) {
        let c = if ok { &self.success } else { &self.failure };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct OutcomeShard {
    outcomes: [AtomicU64; 4],
}

/// What one pool counts beyond its servers: sticky decisions by outcome,
/// and requests it answered before a server was chosen.
#[derive(Debug, Default)]
pub struct PoolStats {
    outcomes: Sharded<OutcomeShard>,
    pub unplaced: RequestStats,
}

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Hit => 0,
        Outcome::New => 1,
        Outcome::Redispatch => 2,
        Outcome::UnknownRoute => 3,
    }
}

/// Every outcome, in the order the metrics list them.
pub const OUTCOMES: [Outcome; 4] = [
    Outcome::Hit,
    Outcome::New,
    Outcome::Redispatch,
    Outcome::UnknownRoute,
];

impl PoolStats {
    pub fn decided(&self, outcome: Outcome) {
        self.outcomes.mine().outcomes[outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn decisions(&self, outcome: Outcome) -> u64 {
        self.outcomes
            .iter()
            .map(|s| s.outcomes[outcome_index(outcome)].load(Ordering::Relaxed))
            .sum()
    }
}

/// Client connections open on one listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    active: AtomicU64,
}

impl ListenerStats {
    pub fn opened(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }
}

/// Process-wide counters that outlive every configuration.
#[derive(Debug, Default)]
pub struct Global {
    pub reload_success: AtomicU64,
    pub reload_failure: AtomicU64,
}

impl Global {
    pub fn reloaded(&self, ok: bool) {
        let c = if ok {
            &self.reload_success
        } else {
            &self.reload_failure
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod quantile_tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let stats = RequestStats::default();
        // 90 requests of 1 ms, 10 of 80 ms.
        for _ in 0..90 {
            stats.record(200, Duration::from_micros(900));
        }
        for _ in 0..10 {
            stats.record(200, Duration::from_millis(80));
        }
        let h = stats.histogram();
        let p50 = h.quantile(0.5).unwrap();
        assert!(p50 > 0.0005 && p50 <= 0.001, "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!(p99 > 0.05 && p99 <= 0.1, "{p99}");
        assert_eq!(
            Histogram {
                buckets: Vec::new(),
                sum: 0.0,
                count: 0
            }
            .quantile(0.5),
            None
        );
        let mut both = h.clone();
        both.merge(&h);
        assert_eq!(both.count, 200);
        assert_eq!(both.quantile(0.5), h.quantile(0.5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_code_and_bucketed_cumulatively() {
        let s = RequestStats::default();
        s.record(200, Duration::from_micros(400));
        s.record(200, Duration::from_millis(3));
        s.record(503, Duration::from_secs(40));
        s.record(499, Duration::from_millis(1));
        assert_eq!(s.by_code(), vec![(200, 2), (499, 1), (503, 1)]);
        let h = s.histogram();
        assert_eq!(h.count, 4);
        assert_eq!(h.buckets[0], (0.0005, 1));
        assert_eq!(h.buckets[1], (0.001, 2));
        assert_eq!(h.buckets[3], (0.005, 3));
        assert_eq!(h.buckets[14], (30.0, 3));
        assert_eq!(h.buckets[15].1, 4);
        assert!((h.sum - 40.0044).abs() < 1e-6, "{}", h.sum);
        assert_eq!(s.total(), 4);
    }

    #[test]
    fn bucket_bounds_are_exported_in_seconds() {
        let bounds: Vec<String> = (0..=BUCKETS.len()).map(|i| le(i).to_string()).collect();
        assert_eq!(
            bounds,
            [
                "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                "0.5", "1", "2.5", "5", "10", "30", "inf"
            ]
        );
    }

    #[test]
    fn outcomes_add_up_over_shards() {
        let p = PoolStats::default();
        p.decided(Outcome::Hit);
        p.decided(Outcome::Hit);
        std::thread::scope(|t| {
            t.spawn(|| p.decided(Outcome::Redispatch));
        });
        assert_eq!(p.decisions(Outcome::Hit), 2);
        assert_eq!(p.decisions(Outcome::Redispatch), 1);
        assert_eq!(p.decisions(Outcome::New), 0);
    }
}
