//! Servers from DNS: host names in `servers[].address` and a pool's
//! `discover` (SRV or A records), resolved by one task off the request
//! path, every `resolvers.interval` (a record's shorter TTL wins, never
//! under a second). A request never waits for DNS. What the task finds
//! ([`Found`]) is laid over the file's configuration ([`apply`]) when the
//! control builds a snapshot: a server keeps its identity (name, route,
//! sessions, counters, health) while its address changes, and a failed
//! resolution keeps the last addresses known.

mod resolve;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::config::{Config, Discover, DiscoverKind, Resolvers, ServerConfig, ServerState, Source};

pub use resolve::run;

/// What to resolve: the configuration's host names and `discover`s.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub resolvers: Resolvers,
    /// (pool, server, host name).
    pub hosts: Vec<(String, String, String)>,
    /// (pool, discover).
    pub discover: Vec<(String, Discover)>,
}

impl Targets {
    pub fn of(config: &Config) -> Targets {
        let mut t = Targets {
            resolvers: config.resolvers.clone(),
            ..Targets::default()
        };
        for p in &config.pools {
            for s in &p.servers {
                if let Some(host) = &s.host {
                    t.hosts
                        .push((p.name.clone(), s.name.clone(), host.to_string()));
                }
            }
            if let Some(d) = &p.discover {
                t.discover.push((p.name.clone(), d.clone()));
            }
        }
        t
    }

    /// The same names with the same settings (a reload that changed none
    /// of it leaves the task alone).
    pub fn same(&self, other: &Targets) -> bool {
        self.resolvers == other.resolvers
            && self.hosts == other.hosts
            && self.discover.len() == other.discover.len()
            && self
                .discover
                .iter()
                .zip(&other.discover)
                .all(|((p, a), (q, b))| {
                    p == q
                        && a.kind == b.kind
                        && a.weight == b.weight
                        && a.backup == b.backup
                        && a.max_servers == b.max_servers
                        && a.tls.as_ref().map(|t| &t.identity)
                            == b.tls.as_ref().map(|t| &t.identity)
                })
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.discover.is_empty()
    }
}

/// What DNS said, as last known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    /// The addresses of each (pool, server)'s host name, sorted.
    pub hosts: BTreeMap<(String, String), Vec<SocketAddr>>,
    /// Each pool's discovered servers, by name.
    pub servers: BTreeMap<String, Vec<Discovered>>,
}

/// A server `discover` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub name: String,
    pub address: SocketAddr,
    /// The SRV target (or the address, with `a:`).
    pub host: String,
}

/// `config` with what DNS said: host names resolved (or left unresolved),
/// discovered servers added to their pools (after the file's, which win a
/// name or a route).
pub fn apply(config: &mut Config, found: &Found) {
    for pool in &mut config.pools {
        for s in &mut pool.servers {
            if s.host.is_none() {
                continue;
            }
            match found.hosts.get(&(pool.name.clone(), s.name.clone())) {
                Some(addrs) if !addrs.is_empty() => {
                    let port = s.address.port();
                    s.address = SocketAddr::new(addrs[0].ip(), port);
                    s.others = addrs[1..]
                        .iter()
                        .map(|a| SocketAddr::new(a.ip(), port))
                        .collect();
                    s.resolved = true;
                }
                _ => s.resolved = false,
            }
        }
        let (Some(d), Some(list)) = (&pool.discover, found.servers.get(&pool.name)) else {
            continue;
        };
        let d = d.clone();
        for f in list {
            if pool
                .servers
                .iter()
                .any(|s| s.name == f.name || s.route == f.name)
            {
                continue;
            }
            pool.servers.push(server(&d, f));
        }
    }
}

/// The server name (and route) of an SRV target: its first label, if it
/// is one lb.yaml would take as a name. What DNS says can be anything,
/// and the route goes into cookies, logs and metric labels.
pub fn server_name(target: &str) -> Option<&str> {
    let label = target.split('.').next()?;
    let ok = !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(label)
}

/// The server a discovered target makes.
fn server(d: &Discover, f: &Discovered) -> ServerConfig {
    let tls = d.tls.clone().map(|mut t| {
        if !d.tls_name {
            let name = match &d.kind {
                DiscoverKind::Srv(_) => {
                    rustls::pki_types::ServerName::try_from(f.host.trim_end_matches('.').to_owned())
                        .ok()
                }
                DiscoverKind::A { .. } => None,
            };
            t.server_name = name
                .unwrap_or_else(|| rustls::pki_types::ServerName::IpAddress(f.address.ip().into()));
            t.identity = format!("{};sni={}", t.identity, f.host);
        }
        t
    });
    ServerConfig {
        name: f.name.clone(),
        address: f.address,
        weight: d.weight,
        route: f.name.clone(),
        state: ServerState::Active,
        tls,
        backup: d.backup,
        source: Source::Dns,
        host: Some(f.host.as_str().into()),
        resolved: true,
        others: Vec::new(),
    }
}

/// `limpet_dns_resolutions_total{pool,result}`: result is `success`,
/// `failure` (no answer, or an error) or `nxdomain`.
#[derive(Debug, Default)]
pub struct Counters(Mutex<HashMap<String, [u64; 3]>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success = 0,
    Failure = 1,
    NxDomain = 2,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::NxDomain];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::NxDomain => "nxdomain",
        }
    }
}

impl Counters {
    pub fn count(&self, pool: &str, outcome: Outcome) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(pool.to_owned()).or_default()[outcome as usize] += 1;
    }

    /// Every pool's counts, by pool name.
    pub fn all(&self) -> Vec<(String, [u64; 3])> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = m.iter().map(|(k, c)| (k.clone(), *c)).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::server_name;

    #[test]
    fn a_targets_first_label_names_a_server_only_if_the_file_would_take_it() {
        assert_eq!(
            server_name("tomcat-1.tomcat.prod.svc.cluster.local."),
            Some("tomcat-1")
        );
        assert_eq!(server_name("node_2"), Some("node_2"));
        // hickory writes other bytes escaped (`\059` for `;`), or as is.
        for bad in [
            "",
            ".x",
            "a;b.x",
            "a\\059b.x",
            "a=b.x",
            "a\"b.x",
            "a b.x",
            "\u{e9}.x",
        ] {
            assert_eq!(server_name(bad), None, "{bad:?}");
        }
        assert_eq!(server_name(&format!("{}.x", "a".repeat(64))), None);
    }
}
