//! The immutable runtime snapshot every request reads, behind one `ArcSwap`.
//! A reload builds a new snapshot from the new configuration and the running
//! one, carrying live state over by name: servers' in-flight counts,
//! operator state, health and counters by (pool, server); pools' learned
//! tables and counters by pool; listeners' counters by listener. A server,
//! pool or listener that left the file is gone, counters included.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use ipnet::IpNet;

use crate::config::{Config, Limits, Timeouts, Token};
use crate::metrics::{Global, ListenerStats, RequestStats};
use crate::pool::Pool;
use crate::proxy::http_client::{self, HttpClient};

/// Process-wide state that outlives any one configuration.
#[derive(Debug)]
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub global: Global,
}

#[derive(Debug)]
pub struct Snapshot {
    /// In the configuration's order.
    pub listeners: Vec<ListenerRt>,
    pub pools: Vec<Arc<Pool>>,
    pub trusted_proxies: Vec<IpNet>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub access_log: bool,
    pub client: HttpClient,
    /// hyper's settings for new client connections (limits may change on reload).
    pub server: Arc<auto::Builder<TokioExecutor>>,
    pub state_dir: PathBuf,
    /// Where the admin endpoint listens, if it does.
    pub admin: Option<SocketAddr>,
    /// What the admin endpoint's state-changing calls require.
    pub admin_token: Option<Token>,
    /// Requests answered before any pool was chosen (a malformed request,
    /// say): exported with empty `pool` and `server` labels.
    pub unrouted: Arc<RequestStats>,
}

#[derive(Debug)]
pub struct ListenerRt {
    /// Stable for as long as the socket stays bound (across reloads).
    pub id: u64,
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub routes: Vec<RouteRt>,
    pub default_pool: Option<Arc<Pool>>,
    pub stats: Arc<ListenerStats>,
}

#[derive(Debug)]
pub struct RouteRt {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub pool: Arc<Pool>,
}

/// The sockets a snapshot's listeners are bound to, by listener name.
pub type Bound = HashMap<String, (u64, SocketAddr)>;

impl Snapshot {
    /// Builds the snapshot for `config`, re-linking state from `previous`.
    /// `bound` gives each listener's socket id and address.
    pub fn build(
        config: &Config,
        previous: Option<&Snapshot>,
        bound: &Bound,
        admin: Option<SocketAddr>,
    ) -> Snapshot {
        let pools: Vec<Arc<Pool>> = config
            .pools
            .iter()
            .map(|pc| {
                let old = previous.and_then(|p| p.pool(&pc.name));
                Arc::new(Pool::new(pc, old.map(|p| &**p)))
            })
            .collect();
        let listeners = config
            .listeners
            .iter()
            .map(|lc| {
                let (id, addr) = bound.get(&lc.name).copied().unwrap_or((0, lc.bind));
                let stats = previous
                    .and_then(|p| p.listeners.iter().find(|l| *l.name == *lc.name))
                    .map_or_else(Default::default, |l| Arc::clone(&l.stats));
                ListenerRt {
                    id,
                    name: lc.name.as_str().into(),
                    addr,
                    routes: lc
                        .routes
                        .iter()
                        .map(|r| RouteRt {
                            host: r.host.clone(),
                            path_prefix: r.path_prefix.clone(),
                            pool: Arc::clone(&pools[r.pool]),
                        })
                        .collect(),
                    default_pool: lc.pool.map(|i| Arc::clone(&pools[i])),
                    stats,
                }
            })
            .collect();
        let client = match previous {
            Some(p) if p.timeouts.connect == config.timeouts.connect => p.client.clone(),
            _ => http_client::build(config.timeouts.connect),
        };
        Snapshot {
            listeners,
            pools,
            trusted_proxies: config.trusted_proxies.clone(),
            timeouts: config.timeouts,
            limits: config.limits,
            access_log: config.log.access,
            client,
            server: Arc::new(crate::listener::server_builder(&config.limits)),
            state_dir: config.state_dir.clone(),
            admin,
            admin_token: config.admin.as_ref().and_then(|a| a.token.clone()),
            unrouted: previous.map_or_else(Default::default, |p| Arc::clone(&p.unrouted)),
        }
    }

    /// A snapshot with no sockets, for benchmarks and unit tests.
    pub fn detached(config: &Config) -> Snapshot {
        Snapshot::build(config, None, &Bound::new(), None)
    }

    pub fn pool(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.iter().find(|p| &*p.name == name)
    }

    /// The listener bound to socket `id`.
    pub fn listener(&self, id: u64) -> Option<&ListenerRt> {
        self.listeners.iter().find(|l| l.id == id)
    }
}
