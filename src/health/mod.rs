//! Active health checks: one probe loop per server of every pool with a
//! `health_check`, all concurrent and off the request path. A reload
//! restarts the loops of servers that are new or whose address or check
//! changed, and stops those of servers that left. Each loop starts
//! at a random point of its interval so a hundred servers are not probed in
//! one burst. Verdicts go to the server's live state; `rise` successes in a
//! row mark a server up, `fall` failures in a row mark it down, and the very
//! first check of a server decides at once (a server nobody has seen answer
//! yet is not trusted for `fall` intervals, nor distrusted for `rise`).

mod probe;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::HealthCheckConfig;
use crate::runtime::Snapshot;
use crate::server::Live;

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

/// What a probe loop checks; a loop is restarted when this changes.
#[derive(Debug, Clone)]
struct Target {
    address: std::net::SocketAddr,
    /// The TLS setting's identity (CA file, roots, name), empty for plain HTTP.
    tls_identity: String,
    tls: Option<crate::config::ServerTls>,
    check: HealthCheckConfig,
}

impl PartialEq for Target {
    fn eq(&self, other: &Target) -> bool {
        self.address == other.address
            && self.tls_identity == other.tls_identity
            && self.check == other.check
    }
}

impl Eq for Target {}

#[derive(Debug)]
struct Probe {
    target: Target,
    task: JoinHandle<()>,
}

/// The running probe loops, one per (pool, server) with checks.
#[derive(Debug, Default)]
pub struct Checks {
    probes: HashMap<Key, Probe>,
}

/// (pool, server) names.
type Key = (Arc<str>, Arc<str>);

impl Checks {
    /// Makes the probe loops match `snapshot`: a loop starts for every
    /// server that is new or whose address or check changed, and stops for
    /// every server that left (or whose pool has no checks any more). Loops
    /// of unchanged servers go on undisturbed.
    pub fn sync(&mut self, snapshot: &Snapshot) {
        let mut wanted: HashMap<Key, (Target, Arc<Live>)> = HashMap::new();
        for pool in &snapshot.pools {
            let Some(check) = &pool.health_check else {
                continue;
            };
            // A host name that never resolved has nothing to check yet.
            for server in pool.servers.iter().filter(|s| s.resolved) {
                let target = Target {
                    address: server.address,
                    tls_identity: server
                        .tls
                        .as_ref()
                        .map_or_else(String::new, |t| t.identity.clone()),
                    tls: server.tls.clone(),
                    check: check.clone(),
                };
                wanted.insert(
                    (Arc::clone(&pool.name), Arc::clone(&server.name)),
                    (target, Arc::clone(&server.live)),
                );
            }
        }
        self.probes.retain(|key, probe| {
            let keep = wanted.get(key).is_some_and(|(t, _)| *t == probe.target);
            if !keep {
                probe.task.abort();
            }
            keep
        });
        for (key, (target, live)) in wanted {
            if self.probes.contains_key(&key) {
                continue;
            }
            let task = tokio::spawn(run(
                Arc::clone(&key.0),
                Arc::clone(&key.1),
                live,
                target.clone(),
            ));
            self.probes.insert(key, Probe { target, task });
        }
    }

    /// How many probe loops run.
    pub fn len(&self) -> usize {
        self.probes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    pub fn stop(&mut self) {
        for (_, p) in self.probes.drain() {
            p.task.abort();
        }
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(pool: Arc<str>, server: Arc<str>, live: Arc<Live>, target: Target) {
    let cfg = &target.check;
    let jitter = Duration::from_millis(fastrand::u64(
        0..=u64::try_from(cfg.interval.as_millis()).unwrap_or(0),
    ));
    tokio::time::sleep(jitter).await;
    let mut streak = Streak::new(live.is_healthy(), !live.was_checked());
    let mut ticks = tokio::time::interval(cfg.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(ok) = probe::check(target.address, target.tls.as_ref(), cfg).await else {
            // limpet's own limit, not the server's: no verdict.
            continue;
        };
        live.checked(ok);
        if let Some(up) = streak.record(ok, cfg.rise, cfg.fall) {
            if up {
                tracing::info!(pool = %pool, server = %server, "server is up (health check)");
            } else {
                tracing::warn!(pool = %pool, server = %server, "server is down (health check)");
            }
        }
        live.set_healthy(streak.up);
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
