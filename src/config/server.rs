//! A pool's servers as configured: from the file, the admin API or DNS
//! (`resolvers`, `discover`, host names in `servers[].address`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{ServerState, ServerTls};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    pub address: SocketAddr,
    pub weight: u32,
    pub route: String,
    pub state: ServerState,
    /// HTTPS to this server.
    pub tls: Option<ServerTls>,
    /// Takes requests only while no other server of the pool can
    /// (HAProxy's `backup`, nginx's `backup`).
    pub backup: bool,
    /// Where the server comes from.
    pub source: Source,
    /// The host name `address` named (`host:port`), re-resolved through
    /// `resolvers`; `None` for an IP address.
    pub host: Option<Arc<str>>,
    /// `address` is known: always for an IP address; for a host name once
    /// it resolved (until then `address` is `0.0.0.0:<port>` and the
    /// server takes nothing).
    pub resolved: bool,
    /// The host name's other addresses (it has several A records; the
    /// first, sorted, is `address`): shown, not used.
    pub others: Vec<SocketAddr>,
}

/// `resolvers`: the DNS for server host names and `discover`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolvers {
    /// Tried in order; none: the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// Every name is resolved again this often (a shorter record TTL
    /// wins, never under a second).
    pub interval: Duration,
    /// One query's.
    pub timeout: Duration,
}

impl Default for Resolvers {
    fn default() -> Self {
        Resolvers {
            nameservers: Vec::new(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
        }
    }
}

/// `discover`: more servers from DNS.
#[derive(Debug, Clone)]
pub struct Discover {
    pub kind: DiscoverKind,
    pub weight: u32,
    /// As for a server; without a `server_name`, each server's SNI is its
    /// SRV target (or its address, with `a:`).
    pub tls: Option<ServerTls>,
    pub tls_name: bool,
    pub backup: bool,
    pub max_servers: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoverKind {
    /// One server per SRV target, named and routed by the target's first
    /// label.
    Srv(String),
    /// One server per A record, named and routed by the address.
    A { name: String, port: u16 },
}

impl DiscoverKind {
    /// The name asked.
    pub fn name(&self) -> &str {
        match self {
            DiscoverKind::Srv(n) | DiscoverKind::A { name: n, .. } => n,
        }
    }
}

/// Where a server comes from: `lb.yaml`, DNS (`discover`), or the admin
/// API (`POST /api/pools/{pool}/servers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File,
    Dns,
    /// The JSON body it was added with: what an upgrade hands over.
    Api(Arc<str>),
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Dns => "dns",
            Source::Api(_) => "api",
        }
    }
}
