//! Active health checks: one probe loop per server of every pool with a
//! `health_check`, all concurrent and off the request path. Each loop starts
//! at a random point of its interval so a hundred servers are not probed in
//! one burst. Verdicts go to the server's live state; `rise` successes in a
//! row mark a server up, `fall` failures in a row mark it down, and the very
//! first check of a server decides at once (a server nobody has seen answer
//! yet is not trusted for `fall` intervals, nor distrusted for `rise`).

mod probe;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::HealthCheckConfig;
use crate::pool::{Pool, Server};
use crate::runtime::Snapshot;

/// The rise/fall state machine of one server's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streak {
    pub up: bool,
    pub first: bool,
    successes: u32,
    failures: u32,
}

impl Streak {
    pub fn new(up: bool, first: bool) -> Streak {
        Streak {
            up,
            first,
            successes: 0,
            failures: 0,
        }
    }

    /// Records one check; returns the new verdict if it changed.
    pub fn record(&mut self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        let before = self.up;
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        if self.first {
            self.first = false;
            self.up = ok;
        } else if ok && self.successes >= rise {
            self.up = true;
        } else if !ok && self.failures >= fall {
            self.up = false;
        }
        (self.up != before).then_some(self.up)
    }
}

/// The running probe loops of one snapshot.
#[derive(Debug, Default)]
pub struct Checks {
    tasks: Vec<JoinHandle<()>>,
}

impl Checks {
    /// Starts a probe loop for every server of every pool with checks.
    pub fn start(snapshot: &Snapshot) -> Checks {
        let mut tasks = Vec::new();
        for pool in &snapshot.pools {
            let Some(cfg) = &pool.health_check else {
                continue;
            };
            let cfg = Arc::new(cfg.clone());
            for i in 0..pool.servers.len() {
                tasks.push(tokio::spawn(run(Arc::clone(pool), i, Arc::clone(&cfg))));
            }
        }
        Checks { tasks }
    }

    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(pool: Arc<Pool>, index: usize, cfg: Arc<HealthCheckConfig>) {
    let server: &Server = &pool.servers[index];
    let jitter = Duration::from_millis(fastrand::u64(
        0..=u64::try_from(cfg.interval.as_millis()).unwrap_or(0),
    ));
    tokio::time::sleep(jitter).await;
    let mut streak = Streak::new(server.live.is_healthy(), !server.live.was_checked());
    let mut ticks = tokio::time::interval(cfg.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let ok = probe::check(server.address, &cfg).await;
        if let Some(up) = streak.record(ok, cfg.rise, cfg.fall) {
            if up {
                tracing::info!(pool = %pool.name, server = %server.name, "server is up (health check)");
            } else {
                tracing::warn!(pool = %pool.name, server = %server.name, "server is down (health check)");
            }
        }
        server.live.set_healthy(streak.up);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_failures_in_a_row_mark_down_and_rise_successes_mark_up() {
        let mut s = Streak::new(true, false);
        assert_eq!(s.record(false, 2, 3), None);
        assert_eq!(s.record(true, 2, 3), None);
        assert_eq!(s.record(false, 2, 3), None);
        assert_eq!(s.record(false, 2, 3), None);
        assert_eq!(s.record(false, 2, 3), Some(false));
        assert_eq!(s.record(true, 2, 3), None);
        assert_eq!(s.record(true, 2, 3), Some(true));
    }

    #[test]
    fn the_first_check_decides_at_once() {
        let mut s = Streak::new(true, true);
        assert_eq!(s.record(false, 2, 3), Some(false));
        let mut s = Streak::new(true, true);
        assert_eq!(s.record(true, 2, 3), None);
        assert!(s.up);
    }
}
