//! A pool of servers and THE decision of which server takes a request.
//! [`Pool::decide`] is the only place that answers "which server": the affine
//! server if it is usable, else a deterministic replacement (rendezvous) or a
//! fresh placement by the pool's balancer. The balancer orders candidates;
//! the pool says who is usable. What a failure means for a server (the
//! passive check) and what is left when no server can take a request are
//! decided here too.

pub mod balance;
pub mod failovers;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{
    HealthCheckConfig, OnServerDown, PassiveConfig, PoolConfig, ServerState, StickyMode,
};
use crate::decision::{Affinity, Decision, NoServer, Outcome};
use crate::metrics::PoolStats;
use crate::server::{Live, Server, Servers, Slots};
use crate::sticky::{Found, Sticky};

use balance::Balancer;
pub use failovers::{Failover, Failovers};

#[derive(Debug)]
pub struct Pool {
    pub name: Arc<str>,
    pub servers: Servers,
    pub retries: u32,
    pub mode: StickyMode,
    pub on_server_down: OnServerDown,
    /// Persist the learned table (learn mode).
    pub persist: bool,
    pub sticky: Sticky,
    pub health_check: Option<HealthCheckConfig>,
    pub passive: PassiveConfig,
    pub slow_start: Duration,
    balancer: Balancer,
    /// Some servers are `backup`.
    has_backup: bool,
    /// Counters of this pool (kept across reloads while the mode is the same).
    pub stats: Arc<PoolStats>,
    /// The last few redispatches, for the status page.
    pub failovers: Arc<Failovers>,
}

impl Pool {
    /// Builds a pool, re-linking the live state of servers that `previous`
    /// (the running snapshot's pool of the same name) already had.
    pub fn new(config: &PoolConfig, previous: Option<&Pool>, slots: &Slots) -> Pool {
        let old: HashMap<&str, &Arc<Live>> = previous
            .map(|p| p.servers.iter().map(|s| (&*s.name, &s.live)).collect())
            .unwrap_or_default();
        let list: Box<[Server]> = config
            .servers
            .iter()
            .map(|sc| {
                let live = match old.get(sc.name.as_str()) {
                    Some(live) => {
                        // A state set at run time stays unless the file
                        // changed this server's state.
                        live.apply_file_state(sc.state);
                        Arc::clone(live)
                    }
                    // Appeared at run time where checks run: down until
                    // they pass. At start, and from the file, up at once
                    // (as HAProxy and nginx start their servers).
                    None if previous.is_some()
                        && config.health_check.is_some()
                        && sc.source != crate::config::Source::File =>
                    {
                        Arc::new(Live::pending(sc.state))
                    }
                    None => Arc::new(Live::new(sc.state)),
                };
                if config.health_check.is_none() && !live.is_healthy() {
                    // Checks were removed: nothing will ever mark it up again.
                    live.set_healthy(true);
                }
                Server::new(sc, live, slots.of(sc))
            })
            .collect();
        let present = |n: &str| list.iter().any(|s| &*s.name == n || &*s.route == n);
        let mut gone: Vec<Arc<str>> = Vec::new();
        if let Some(p) = previous {
            let removed = p
                .servers
                .iter()
                .flat_map(|s| [&s.name, &s.route])
                .chain(p.servers.gone().iter());
            for n in removed {
                if !present(n) && !gone.contains(n) {
                    gone.push(Arc::clone(n));
                }
            }
        }
        let servers = Servers::new(list, gone.into_boxed_slice());
        let sticky = Sticky::new(
            &config.name,
            &config.sticky,
            &servers,
            previous.map(|p| &p.sticky),
        );
        let stats = match previous {
            Some(p) if p.mode == config.sticky.mode => Arc::clone(&p.stats),
            _ => Arc::new(PoolStats::default()),
        };
        Pool {
            name: config.name.as_str().into(),
            balancer: Balancer::new(config.balance, &servers),
            has_backup: servers.iter().any(|s| s.backup),
            servers,
            retries: config.retries,
            mode: config.sticky.mode,
            on_server_down: config.sticky.on_server_down,
            persist: config.sticky.mode == StickyMode::Learn && config.sticky.learn.persist,
            sticky,
            health_check: config.health_check.clone(),
            passive: config.passive,
            slow_start: config.slow_start,
            stats,
            failovers: previous.map_or_else(Default::default, |p| Arc::clone(&p.failovers)),
        }
    }

    /// Decides which server takes a request, given what its sticky mode
    /// `found` and the servers it already failed on (`tried`).
    pub fn decide(&self, found: &Found, tried: &[usize]) -> Result<Decision, NoServer> {
        match found.affinity {
            Affinity::Server(i) => self.affine(i, found, tried),
            Affinity::Home => {
                // ip_hash: the key's home ignores health (a down home is
                // redispatched, and the client returns when it recovers)
                // but not the operator's state.
                let key = found.key.unwrap_or(0);
                let home = self
                    .servers
                    .rendezvous(key, |i| match self.servers[i].live.state() {
                        // A backup server is nobody's home.
                        _ if self.servers[i].backup => false,
                        ServerState::Active => true,
                        ServerState::Drain => found.recent == Some(self.servers.hash(i)),
                        ServerState::Disabled => false,
                    });
                match home {
                    Some(i) => self.affine(i, found, tried),
                    None => self.placement(Outcome::New, tried),
                }
            }
            // A removed server never comes back: its sessions move even with
            // `on_server_down: error`.
            Affinity::Removed => self.replace(found, tried, None),
            Affinity::UnknownRoute => self.placement(Outcome::UnknownRoute, tried),
            Affinity::None => self.placement(Outcome::New, tried),
        }
    }

    fn affine(&self, i: usize, found: &Found, tried: &[usize]) -> Result<Decision, NoServer> {
        let usable = self.servers.get(i).is_some_and(|s| s.usable());
        if usable && !tried.contains(&i) {
            return Ok(Decision {
                server: i,
                outcome: Outcome::Hit,
                from: None,
            });
        }
        if self.on_server_down == OnServerDown::Error {
            // Affinity is kept: no other server may take this session.
            return Err(if tried.contains(&i) {
                NoServer::AffineFailed
            } else {
                NoServer::AffineDown
            });
        }
        self.replace(found, tried, Some(i))
    }

    /// The deterministic replacement for an unusable affine server: the
    /// rendezvous winner for the session's key, so every request of the
    /// session (and every limpet instance) picks the same one.
    fn replace(
        &self,
        found: &Found,
        tried: &[usize],
        from: Option<usize>,
    ) -> Result<Decision, NoServer> {
        let server = match found.key {
            Some(k) => {
                let backups = self.backups_allowed(tried);
                self.servers
                    .rendezvous(k, |i| self.eligible(i, tried, backups))
            }
            None => self.place(tried),
        };
        server
            .map(|server| Decision {
                server,
                outcome: Outcome::Redispatch,
                from,
            })
            .ok_or_else(|| Self::nobody(tried))
    }

    fn placement(&self, outcome: Outcome, tried: &[usize]) -> Result<Decision, NoServer> {
        self.place(tried)
            .map(|server| Decision {
                server,
                outcome,
                from: None,
            })
            .ok_or_else(|| Self::nobody(tried))
    }

    /// Nobody is left: 503 if nobody was tried, else 502.
    fn nobody(tried: &[usize]) -> NoServer {
        if tried.is_empty() {
            NoServer::NoneUsable
        } else {
            NoServer::AllFailed
        }
    }

    /// A new placement by the pool's balancer among placeable, untried
    /// servers. A server ramping up after recovery (`slow_start`) is passed
    /// over with the probability of the weight it has not regained yet; if
    /// that leaves nobody, ramping servers are taken anyway.
    fn place(&self, tried: &[usize]) -> Option<usize> {
        let backups = self.backups_allowed(tried);
        let ok = |i: usize| self.eligible(i, tried, backups);
        if !self.slow_start.is_zero() {
            let ramped = self.balancer.pick(&self.servers, |i| {
                ok(i) && {
                    let f = self.servers[i].live.ramp(self.slow_start);
                    f >= 1.0 || fastrand::f64() < f
                }
            });
            if ramped.is_some() {
                return ramped;
            }
        }
        self.balancer.pick(&self.servers, ok)
    }

    /// May `backup` servers take new placements: the pool has none, or no
    /// other server can take this request (up, `active`, not tried yet)?
    /// As HAProxy's and nginx's `backup`. A session already on a backup
    /// server stays there while it serves (its affinity is to it).
    fn backups_allowed(&self, tried: &[usize]) -> bool {
        !self.has_backup
            || !self
                .servers
                .iter()
                .enumerate()
                .any(|(i, s)| !s.backup && s.placeable() && !tried.contains(&i))
    }

    /// May server `i` take a new placement for this request?
    fn eligible(&self, i: usize, tried: &[usize], backups: bool) -> bool {
        let s = &self.servers[i];
        s.placeable() && !tried.contains(&i) && (backups || !s.backup)
    }

    /// Counts a failure of server `i` seen on real traffic (a refused or
    /// reset connection, a malformed response) toward its passive check.
    /// As in nginx, the only server of a pool is never marked down by real
    /// traffic: there is nobody to move its requests to.
    pub fn failed(&self, i: usize, cause: crate::decision::Cause) {
        if self.servers.len() == 1 {
            return;
        }
        let Some(s) = self.servers.get(i) else { return };
        if s.live.record_failure(self.passive) {
            tracing::warn!(
                pool = %self.name,
                server = %s.name,
                for_ = ?self.passive.fail_timeout,
                cause = cause.as_str(),
                "server marked down by passive checks (max_fails reached)"
            );
        }
    }

    /// Records a redispatch for the status page.
    pub fn failed_over(&self, decision: &Decision) {
        static REMOVED: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
        let from = match decision.from.and_then(|i| self.servers.get(i)) {
            Some(s) => &s.name,
            None => REMOVED.get_or_init(|| Arc::from("(removed)")),
        };
        if let Some(s) = self.servers.get(decision.server) {
            self.failovers.record(from, &s.name);
        }
    }
}

#[cfg(test)]
mod tests;
