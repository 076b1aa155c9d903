//! The task that asks DNS: every name of the [`Targets`] once a round,
//! each round as soon as the shortest TTL (or `resolvers.interval`) runs
//! out, never more often than once a second. It sends what it found when
//! that changed; a failed lookup keeps what was known.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use tokio::sync::{mpsc, watch};

use super::{Counters, Discovered, Found, Outcome, Targets};
use crate::config::{Discover, DiscoverKind, Resolvers};

/// The shortest wait between two rounds.
const FLOOR: Duration = Duration::from_secs(1);

/// Resolves `targets` (the latest the control sent) until the sender is
/// gone, sending each change of what is found on `out`.
pub async fn run(
    mut targets: watch::Receiver<Arc<Targets>>,
    out: mpsc::Sender<Found>,
    counters: Arc<Counters>,
) {
    let mut found = Found::default();
    let mut health = Health::default();
    // The first round's outcome is sent whatever it is: the control waits
    // for it before it serves.
    let mut first = true;
    loop {
        let t = Arc::clone(&targets.borrow_and_update());
        let resolver = if t.is_empty() {
            None
        } else {
            match build(&t.resolvers) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(error = %e, "cannot set up the DNS resolver (resolvers, /etc/resolv.conf): host names and `discover` are not resolved");
                    None
                }
            }
        };
        // What the file no longer names is forgotten.
        found
            .hosts
            .retain(|(p, s), _| t.hosts.iter().any(|(tp, ts, _)| tp == p && ts == s));
        found
            .servers
            .retain(|p, _| t.discover.iter().any(|(tp, _)| tp == p));
        loop {
            let next = match &resolver {
                Some(r) => {
                    let (now, next) = round(r, &t, &found, &mut health, &counters).await;
                    if now != found || std::mem::take(&mut first) {
                        found = now;
                        if out.send(found.clone()).await.is_err() {
                            return;
                        }
                    }
                    next
                }
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                () = tokio::time::sleep(next) => {}
                changed = targets.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// A resolver for `r`: its name servers, or the system's; no cache (the
/// task keeps what it found, and asks again when the TTL runs out).
fn build(r: &Resolvers) -> Result<TokioResolver, String> {
    let (config, mut opts) = if r.nameservers.is_empty() {
        hickory_resolver::system_conf::read_system_conf().map_err(|e| e.to_string())?
    } else {
        let servers = r
            .nameservers
            .iter()
            .map(|a| {
                let mut udp = ConnectionConfig::udp();
                udp.port = a.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = a.port();
                NameServerConfig::new(a.ip(), true, vec![udp, tcp])
            })
            .collect();
        let mut opts = ResolverOpts::default();
        opts.use_hosts_file = ResolveHosts::Never;
        (ResolverConfig::from_name_servers(servers), opts)
    };
    opts.cache_size = 0;
    opts.timeout = r.timeout;
    opts.attempts = 1;
    hickory_resolver::Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(|e| e.to_string())
}

/// What was last said of each name, so that a change is logged once.
#[derive(Debug, Default)]
struct Health {
    failing: HashMap<String, bool>,
    capped: HashMap<String, usize>,
}

impl Health {
    /// Logs `name`'s outcome if it changed.
    fn note(
        &mut self,
        pool: &str,
        what: &str,
        name: &str,
        outcome: Result<(), &NetError>,
        known: bool,
    ) {
        let key = format!("{pool}/{what}");
        let was = self.failing.insert(key, outcome.is_err());
        match (outcome, was) {
            (Err(e), None | Some(false)) => {
                let then = if known {
                    "keeping the addresses last known"
                } else {
                    "down until it resolves"
                };
                tracing::warn!(pool, name, error = %e, "cannot resolve {what}: {then}");
            }
            (Ok(()), Some(true)) => tracing::info!(pool, name, "{what} resolves again"),
            _ => {}
        }
    }
}

/// One round over every name: what is known after it, and when the next
/// round is due.
async fn round(
    r: &TokioResolver,
    t: &Targets,
    before: &Found,
    health: &mut Health,
    counters: &Counters,
) -> (Found, Duration) {
    let mut next = t.resolvers.interval;
    let mut found = before.clone();
    for (pool, server, host) in &t.hosts {
        let key = (pool.clone(), server.clone());
        let what = format!("the host name of server {server}");
        match r.lookup_ip(host.as_str()).await {
            Ok(ips) => {
                counters.count(pool, Outcome::Success);
                health.note(pool, &what, host, Ok(()), true);
                next = next.min(left(ips.valid_until()));
                let mut addrs: Vec<SocketAddr> =
                    ips.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
                addrs.sort();
                addrs.dedup();
                found.hosts.insert(key, addrs);
            }
            Err(e) => {
                counters.count(pool, outcome(&e));
                health.note(pool, &what, host, Err(&e), before.hosts.contains_key(&key));
            }
        }
    }
    for (pool, d) in &t.discover {
        let name = d.kind.name();
        let what = format!("discover {name}");
        match discover(r, d).await {
            Ok((mut servers, valid_until)) => {
                counters.count(pool, Outcome::Success);
                health.note(pool, &what, name, Ok(()), true);
                next = next.min(left(valid_until));
                servers.sort_by(|a, b| a.name.cmp(&b.name));
                servers.dedup_by(|a, b| a.name == b.name);
                let was = health
                    .capped
                    .insert(pool.clone(), servers.len())
                    .unwrap_or(0);
                if servers.len() > d.max_servers {
                    if was != servers.len() {
                        tracing::warn!(
                            pool,
                            name,
                            found = servers.len(),
                            max_servers = d.max_servers,
                            "discover found more servers than max_servers: the first by name are used"
                        );
                    }
                    servers.truncate(d.max_servers);
                }
                found.servers.insert(pool.clone(), servers);
            }
            Err(e) => {
                counters.count(pool, outcome(&e));
                health.note(
                    pool,
                    &what,
                    name,
                    Err(&e),
                    before.servers.contains_key(pool),
                );
            }
        }
    }
    (found, next.max(FLOOR))
}

fn left(valid_until: Instant) -> Duration {
    valid_until.saturating_duration_since(Instant::now())
}

fn outcome(e: &NetError) -> Outcome {
    if e.is_nx_domain() {
        Outcome::NxDomain
    } else {
        Outcome::Failure
    }
}

/// The servers `d` names now, and until when the answer holds. A name
/// that exists without records of the type asked is no server at all.
async fn discover(r: &TokioResolver, d: &Discover) -> Result<(Vec<Discovered>, Instant), NetError> {
    match &d.kind {
        DiscoverKind::A { name, port } => match r.lookup_ip(name.as_str()).await {
            Ok(ips) => {
                let servers = ips
                    .iter()
                    .map(|ip| Discovered {
                        name: ip.to_string(),
                        address: SocketAddr::new(ip, *port),
                        host: ip.to_string(),
                    })
                    .collect();
                Ok((servers, ips.valid_until()))
            }
            Err(e) if e.is_no_records_found() && !e.is_nx_domain() => {
                Ok((Vec::new(), Instant::now() + FLOOR))
            }
            Err(e) => Err(e),
        },
        DiscoverKind::Srv(name) => {
            let lookup = match r.srv_lookup(name.as_str()).await {
                Ok(l) => l,
                Err(e) if e.is_no_records_found() && !e.is_nx_domain() => {
                    return Ok((Vec::new(), Instant::now() + FLOOR));
                }
                Err(e) => return Err(e),
            };
            // The targets' addresses, from the additional section when the
            // server sent them (CoreDNS does), else asked.
            let mut glue: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
            for rec in lookup.additionals() {
                let ip = match &rec.data {
                    RData::A(a) => IpAddr::V4(a.0),
                    RData::AAAA(a) => IpAddr::V6(a.0),
                    _ => continue,
                };
                glue.entry(rec.name.to_string().to_lowercase())
                    .or_default()
                    .push(ip);
            }
            let mut servers = Vec::new();
            for rec in lookup.answers() {
                let RData::SRV(srv) = &rec.data else {
                    continue;
                };
                let target = srv.target.to_string().to_lowercase();
                let Some(label) = super::server_name(&target) else {
                    tracing::debug!(
                        target,
                        "an SRV target whose first label cannot name a server: left out"
                    );
                    continue;
                };
                let mut ips = glue.get(&target).cloned().unwrap_or_default();
                if ips.is_empty()
                    && let Ok(found) = r.lookup_ip(target.as_str()).await
                {
                    ips = found.iter().collect();
                }
                ips.sort();
                let Some(ip) = ips.first() else {
                    tracing::debug!(target, "an SRV target without an address: left out");
                    continue;
                };
                servers.push(Discovered {
                    name: label.to_owned(),
                    address: SocketAddr::new(*ip, srv.port),
                    host: target.trim_end_matches('.').to_owned(),
                });
            }
            Ok((servers, lookup.valid_until()))
        }
    }
}
