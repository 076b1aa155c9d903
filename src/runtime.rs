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

use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::config::{Config, Limits, Timeouts, Token};
use crate::metrics::{Global, ListenerStats, RequestStats};
use crate::pool::Pool;
use crate::server::Slots;

/// Process-wide state that outlives any one configuration.
#[derive(Debug)]
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    /// Bumped after every new snapshot, so workers re-read it only then.
    pub generation: AtomicU64,
    pub global: Global,
    pub slots: Slots,
    /// `limpet_dns_resolutions_total`.
    pub dns: Arc<crate::discovery::Counters>,
}

impl Shared {
    pub fn new(snapshot: Snapshot) -> Shared {
        Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            generation: AtomicU64::new(0),
            global: Global::default(),
            slots: Slots::default(),
            dns: Arc::default(),
        }
    }

    /// Makes `snapshot` the one every new request sees.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        self.snapshot.store(snapshot);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[derive(Debug)]
pub struct Snapshot {
    /// In the configuration's order.
    pub listeners: Vec<ListenerRt>,
    pub pools: Vec<Arc<Pool>>,
    pub trusted_proxies: Vec<IpNet>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// The HTTP/1 engine a new connection is served by; a reload changes it
    /// for connections accepted afterwards, never for open ones.
    pub http1: crate::config::Http1,
    pub access_log: bool,
    pub state_dir: PathBuf,
    /// Where the admin endpoint listens, if it does.
    pub admin: Option<SocketAddr>,
    /// What the admin endpoint's state-changing calls require.
    pub admin_token: Option<Token>,
    /// The host names the admin endpoint answers to besides IP literals and
    /// `localhost` (lower case).
    pub admin_hosts: Vec<String>,
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
    /// Index into the snapshot's pools.
    pub default_pool: Option<usize>,
    pub stats: Arc<ListenerStats>,
    /// TLS termination; certificates are re-read by every reload and new
    /// connections get the new ones.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Answer every request with 308 to `https://`.
    pub redirect_https: bool,
    /// A PROXY header from a trusted peer comes first.
    pub proxy_protocol: bool,
    /// Behind a PROXY header, a trusted client's `X-Forwarded-*` is believed.
    pub trust_forwarded_after_proxy: bool,
    /// The certificates of `tls` (for `strict_sni` and the metrics).
    pub certs: Option<Arc<crate::config::sni::Certs>>,
    /// A request's `Host` must be among the names of its certificate.
    pub strict_sni: bool,
}

#[derive(Debug)]
pub struct RouteRt {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    /// Index into the snapshot's pools.
    pub pool: usize,
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
        slots: &Slots,
    ) -> Snapshot {
        let pools: Vec<Arc<Pool>> = config
            .pools
            .iter()
            .map(|pc| {
                let old = previous.and_then(|p| p.pool(&pc.name));
                Arc::new(Pool::new(pc, old.map(|p| &**p), slots))
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
                            pool: r.pool,
                        })
                        .collect(),
                    default_pool: lc.pool,
                    stats,
                    tls: lc.tls.clone(),
                    redirect_https: lc.redirect_https,
                    proxy_protocol: lc.proxy_protocol,
                    trust_forwarded_after_proxy: lc.trust_forwarded_after_proxy,
                    certs: lc.certs.clone(),
                    strict_sni: lc.strict_sni,
                }
            })
            .collect();
        Snapshot {
            listeners,
            pools,
            trusted_proxies: config.trusted_proxies.clone(),
            timeouts: config.timeouts,
            limits: config.limits,
            http1: config.http1,
            access_log: config.log.access,
            state_dir: config.state_dir.clone(),
            admin,
            admin_token: config.admin.as_ref().and_then(|a| a.token.clone()),
            admin_hosts: config
                .admin
                .as_ref()
                .map_or_else(Vec::new, |a| a.hosts.clone()),
            unrouted: previous.map_or_else(Default::default, |p| Arc::clone(&p.unrouted)),
        }
    }

    /// A snapshot with no sockets, for benchmarks and unit tests.
    pub fn detached(config: &Config) -> Snapshot {
        Snapshot::build(config, None, &Bound::new(), None, &Slots::default())
    }

    pub fn pool(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.iter().find(|p| &*p.name == name)
    }

    /// The listener bound to socket `id`.
    pub fn listener(&self, id: u64) -> Option<&ListenerRt> {
        self.listeners.iter().find(|l| l.id == id)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::Snapshot;
    use crate::config::{Http1, parse_with_env};

    const YAML: &str = "\
listeners: [{ name: a, bind: 127.0.0.1:1, pool: p }]
pools:
  p:
    servers: [{ name: s, address: 127.0.0.1:2 }]
";

    #[test]
    fn the_snapshot_carries_the_http1_engine_and_a_reload_changes_it() {
        let limpet = parse_with_env(YAML, Path::new("t.yaml"), None).unwrap();
        let first = Snapshot::detached(&limpet);
        assert_eq!(first.http1, Http1::Limpet);

        let hyper =
            parse_with_env(&format!("{YAML}http1: hyper\n"), Path::new("t.yaml"), None).unwrap();
        let slots = crate::server::Slots::default();
        let next = Snapshot::build(&hyper, Some(&first), &super::Bound::new(), None, &slots);
        assert_eq!(next.http1, Http1::Hyper);
    }
}
