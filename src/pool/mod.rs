//! A pool of servers and THE decision of which server takes a request.
//! [`Pool::decide`] is the only place that answers "which server": the affine
//! server if it is usable, else a deterministic replacement (rendezvous) or a
//! fresh placement by the pool's balancer.

pub mod balance;
pub mod rendezvous;
pub mod server;

use std::collections::HashMap;
use std::sync::Arc;

use std::time::Duration;

use crate::config::{HealthCheckConfig, OnServerDown, PassiveConfig, PoolConfig, StickyMode};
use crate::metrics::PoolStats;
use crate::sticky::Sticky;

use balance::Balancer;
pub use server::{Live, Server};

/// What the sticky mode found in a request, before health is considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    /// Nothing ties the request to a server.
    None,
    /// The request belongs to this server (index into the pool's servers).
    Server(usize),
    /// The request names a route that no server of this pool has.
    UnknownRoute,
    /// The request belongs to a server a reload removed: its sessions move
    /// like a dead server's (deterministic replacement, route rewritten).
    Removed,
}

/// The sticky outcome of a decision, as logged and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    New,
    Redispatch,
    UnknownRoute,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::New => "new",
            Outcome::Redispatch => "redispatch",
            Outcome::UnknownRoute => "unknown_route",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub server: usize,
    pub outcome: Outcome,
}

/// Why no server could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoServer {
    /// No server is usable (503).
    NoneUsable,
    /// The affine server is down and the pool says `on_server_down: error` (503).
    AffineDown,
    /// The affine server failed this request and the pool says
    /// `on_server_down: error` (502: it was tried).
    AffineFailed,
}

#[derive(Debug)]
pub struct Pool {
    pub name: Arc<str>,
    pub servers: Box<[Server]>,
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
    /// `rendezvous::server_hash` of each server's route.
    server_hashes: Box<[u64]>,
    /// Names and routes of servers that reloads removed from this pool.
    gone: Box<[Arc<str>]>,
    /// Counters of this pool (kept across reloads while the mode is the same).
    pub stats: Arc<PoolStats>,
    /// The last few redispatches, for the status page.
    pub failovers: Arc<Failovers>,
}

/// One redispatch: a session's server was unusable and it went elsewhere.
#[derive(Debug, Clone)]
pub struct Failover {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub from: Arc<str>,
    pub to: Arc<str>,
}

/// The most recent failovers of a pool, newest last. Written only when a
/// request is redispatched, and never waited for: when another request is
/// writing, this one is not recorded.
#[derive(Debug, Default)]
pub struct Failovers {
    recent: std::sync::Mutex<std::collections::VecDeque<Failover>>,
}

impl Failovers {
    /// How many are kept.
    pub const KEEP: usize = 20;

    fn record(&self, from: &Arc<str>, to: &Arc<str>) {
        let Ok(mut recent) = self.recent.try_lock() else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, crate::clock::to_ms);
        // One line per (from, to) and second is enough to see what happened.
        if recent
            .back()
            .is_some_and(|l| l.from == *from && l.to == *to && now.saturating_sub(l.at_ms) < 1000)
        {
            return;
        }
        if recent.len() == Self::KEEP {
            recent.pop_front();
        }
        recent.push_back(Failover {
            at_ms: now,
            from: Arc::clone(from),
            to: Arc::clone(to),
        });
    }

    pub fn list(&self) -> Vec<Failover> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Pool {
    /// Builds a pool, re-linking the live state of servers that `previous`
    /// (the running snapshot's pool of the same name) already had.
    pub fn new(config: &PoolConfig, previous: Option<&Pool>) -> Pool {
        let old: HashMap<&str, &Arc<Live>> = previous
            .map(|p| p.servers.iter().map(|s| (&*s.name, &s.live)).collect())
            .unwrap_or_default();
        let servers: Box<[Server]> = config
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
                    None => Arc::new(Live::new(sc.state)),
                };
                if config.health_check.is_none() && !live.is_healthy() {
                    // Checks were removed: nothing will ever mark it up again.
                    live.set_healthy(true);
                }
                Server::new(sc, live)
            })
            .collect();
        let sticky = Sticky::new(&config.sticky, &servers, previous.map(|p| &p.sticky));
        let present = |n: &str| servers.iter().any(|s| &*s.name == n || &*s.route == n);
        let mut gone: Vec<Arc<str>> = Vec::new();
        if let Some(p) = previous {
            let removed = p
                .servers
                .iter()
                .flat_map(|s| [&s.name, &s.route])
                .chain(p.gone.iter());
            for n in removed {
                if !present(n) && !gone.contains(n) {
                    gone.push(Arc::clone(n));
                }
            }
        }
        let stats = match previous {
            Some(p) if p.mode == config.sticky.mode => Arc::clone(&p.stats),
            _ => Arc::new(PoolStats::default()),
        };
        Pool {
            gone: gone.into_boxed_slice(),
            stats,
            failovers: previous.map_or_else(Default::default, |p| Arc::clone(&p.failovers)),
            name: config.name.as_str().into(),
            balancer: Balancer::new(config.balance, &servers),
            server_hashes: servers
                .iter()
                .map(|s| rendezvous::server_hash(&s.route))
                .collect(),
            servers,
            retries: config.retries,
            mode: config.sticky.mode,
            on_server_down: config.sticky.on_server_down,
            persist: config.sticky.mode == StickyMode::Learn && config.sticky.learn.persist,
            sticky,
            health_check: config.health_check.clone(),
            passive: config.passive,
            slow_start: config.slow_start,
        }
    }

    /// Decides which server takes a request. `key` is the rendezvous key for
    /// a deterministic replacement when the affine server is unusable (None:
    /// use the balancer). `tried` lists servers this request already failed on.
    pub fn decide(
        &self,
        affinity: Affinity,
        key: Option<u64>,
        tried: &[usize],
    ) -> Result<Decision, NoServer> {
        let fresh = |i: usize| !tried.contains(&i);
        match affinity {
            Affinity::Server(i) if self.servers.get(i).is_some_and(|s| s.usable()) && fresh(i) => {
                Ok(Decision {
                    server: i,
                    outcome: Outcome::Hit,
                })
            }
            Affinity::Server(_) | Affinity::Removed => {
                let removed = affinity == Affinity::Removed;
                if self.on_server_down == OnServerDown::Error && !removed {
                    let Affinity::Server(i) = affinity else {
                        return Err(NoServer::NoneUsable);
                    };
                    // Affinity is kept: no other server may take this session.
                    return Err(if tried.contains(&i) {
                        NoServer::AffineFailed
                    } else {
                        NoServer::AffineDown
                    });
                }
                // A removed server never comes back: its sessions move even
                // with `on_server_down: error`.
                let server = match key {
                    Some(k) => self.rendezvous(k, |i| self.servers[i].placeable() && fresh(i)),
                    None => self.place(tried),
                };
                server
                    .map(|server| Decision {
                        server,
                        outcome: Outcome::Redispatch,
                    })
                    .ok_or(NoServer::NoneUsable)
            }
            Affinity::UnknownRoute => self
                .place(tried)
                .map(|server| Decision {
                    server,
                    outcome: Outcome::UnknownRoute,
                })
                .ok_or(NoServer::NoneUsable),
            Affinity::None => self
                .place(tried)
                .map(|server| Decision {
                    server,
                    outcome: Outcome::New,
                })
                .ok_or(NoServer::NoneUsable),
        }
    }

    /// A new placement by the pool's balancer among placeable, untried
    /// servers. A server ramping up after recovery (`slow_start`) is passed
    /// over with the probability of the weight it has not regained yet; if
    /// that leaves nobody, ramping servers are taken anyway.
    fn place(&self, tried: &[usize]) -> Option<usize> {
        let ok = |i: usize| self.servers[i].placeable() && !tried.contains(&i);
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

    /// The acceptable server ranked first for `key` by weighted rendezvous hashing.
    pub fn rendezvous(&self, key: u64, accept: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (i, s) in self.servers.iter().enumerate() {
            if !accept(i) {
                continue;
            }
            let score = rendezvous::score(key, self.server_hashes[i], s.weight);
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }

    /// The rendezvous identity of server `i`.
    pub fn server_hash(&self, i: usize) -> u64 {
        self.server_hashes.get(i).copied().unwrap_or(0)
    }

    /// The server named `name`.
    pub fn by_name(&self, name: &str) -> Option<usize> {
        self.servers.iter().position(|s| &*s.name == name)
    }

    /// Is `name` the name or route of a server a reload removed?
    pub fn was_removed(&self, name: &[u8]) -> bool {
        self.gone.iter().any(|g| g.as_bytes() == name)
    }

    /// Records a redispatch for the status page.
    pub fn failed_over(&self, affinity: Affinity, to: usize) {
        static REMOVED: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
        let from = match affinity {
            Affinity::Server(i) => match self.servers.get(i) {
                Some(s) => &s.name,
                None => return,
            },
            Affinity::Removed => REMOVED.get_or_init(|| Arc::from("(removed)")),
            _ => return,
        };
        if let Some(s) = self.servers.get(to) {
            self.failovers.record(from, &s.name);
        }
    }

    /// The server whose route is `route` (bytes, as a cookie carries it).
    pub fn by_route(&self, route: &[u8]) -> Option<usize> {
        self.servers
            .iter()
            .position(|s| s.route.as_bytes() == route)
    }
}
