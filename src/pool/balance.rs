//! Placement of requests that carry no affinity: smooth weighted round robin
//! (nginx's algorithm), least connections, and power-of-two random choices.
//! The balancer only orders candidates; the pool says which are acceptable
//! (`accept`), so down, draining and already-tried servers are skipped here
//! without the balancer knowing why. Cursors are per worker, so workers do
//! not fight over one cache line; each walks the same smooth sequence.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::Balance;
use crate::metrics::Sharded;

use crate::server::Server;

#[derive(Debug)]
pub enum Balancer {
    /// nginx's smooth weighted round robin, precomputed: for fixed weights
    /// the sequence is periodic with period = sum of weights, so one atomic
    /// cursor walks it without a lock.
    RoundRobin {
        schedule: Box<[u16]>,
        /// One cursor per worker: each walks the schedule on its own.
        cursor: Sharded<AtomicUsize>,
    },
    LeastConn {
        cursor: Sharded<AtomicUsize>,
    },
    RandomTwo {
        total_weight: u64,
    },
}

impl Balancer {
    pub fn new(kind: Balance, servers: &[Server]) -> Balancer {
        match kind {
            Balance::RoundRobin => Balancer::RoundRobin {
                schedule: smooth_schedule(servers.iter().map(|s| s.weight)),
                cursor: Sharded::default(),
            },
            Balance::LeastConn => Balancer::LeastConn {
                cursor: Sharded::default(),
            },
            Balance::RandomTwo => Balancer::RandomTwo {
                total_weight: servers.iter().map(|s| u64::from(s.weight)).sum(),
            },
        }
    }

    /// Picks an acceptable server, or `None` when `accept` refuses them all.
    pub fn pick(&self, servers: &[Server], accept: impl Fn(usize) -> bool) -> Option<usize> {
        match self {
            Balancer::RoundRobin { schedule, cursor } => {
                let len = schedule.len();
                let start = cursor.mine().fetch_add(1, Ordering::Relaxed);
                (0..len)
                    .map(|i| usize::from(schedule[(start.wrapping_add(i)) % len]))
                    .find(|&i| accept(i))
            }
            Balancer::LeastConn { cursor } => {
                let n = servers.len();
                let start = cursor.mine().fetch_add(1, Ordering::Relaxed);
                let mut best: Option<(usize, u64, u64)> = None;
                for k in 0..n {
                    let i = start.wrapping_add(k) % n;
                    if !accept(i) {
                        continue;
                    }
                    let load = u64::from(servers[i].live.active());
                    let w = u64::from(servers[i].weight);
                    // load/w < best_load/best_w, without division
                    if best.is_none_or(|(_, bl, bw)| load * bw < bl * w) {
                        best = Some((i, load, w));
                    }
                }
                best.map(|(i, _, _)| i)
            }
            Balancer::RandomTwo { total_weight } => {
                let a = weighted_random(servers, *total_weight, &accept)?;
                let b = weighted_random(servers, *total_weight, &accept)?;
                // compare active/weight without division
                let la = u64::from(servers[a].live.active()) * u64::from(servers[b].weight);
                let lb = u64::from(servers[b].live.active()) * u64::from(servers[a].weight);
                Some(if lb < la { b } else { a })
            }
        }
    }
}

/// One weighted random draw; if the drawn server is not acceptable, the next
/// acceptable one after it.
fn weighted_random(
    servers: &[Server],
    total: u64,
    accept: &impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut r = fastrand::u64(0..total.max(1));
    let mut drawn = 0;
    for (i, s) in servers.iter().enumerate() {
        let w = u64::from(s.weight);
        if r < w {
            drawn = i;
            break;
        }
        r -= w;
    }
    let n = servers.len();
    (0..n).map(|k| (drawn + k) % n).find(|&i| accept(i))
}

/// The sequence nginx's smooth weighted round robin produces for fixed
/// weights: every step adds each weight to its current value, picks the
/// largest, and subtracts the total from it.
pub fn smooth_schedule(weights: impl Iterator<Item = u32>) -> Box<[u16]> {
    let weights: Vec<i64> = weights.map(i64::from).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for i in 0..weights.len() {
            current[i] += weights[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(u16::try_from(best).unwrap_or(u16::MAX));
    }
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_schedule_matches_nginx_for_5_1_1() {
        // nginx's documented example: weights a=5, b=1, c=1 give a a b a c a a
        let s = smooth_schedule([5, 1, 1].into_iter());
        assert_eq!(&*s, &[0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn smooth_schedule_gives_each_server_its_weight() {
        let s = smooth_schedule([1, 3, 2].into_iter());
        assert_eq!(s.len(), 6);
        for (i, w) in [1, 3, 2].iter().enumerate() {
            assert_eq!(s.iter().filter(|&&x| usize::from(x) == i).count(), *w);
        }
    }
}
