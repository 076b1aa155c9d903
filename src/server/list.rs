//! A pool's servers as the data path looks them up ([`Servers`]: by name,
//! by route, by rendezvous hash), and the numbering of server addresses
//! for the workers' idle-connection tables ([`Slots`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Server;
use crate::config::ServerConfig;

/// A pool's servers, in file order, with what the sticky modes look up.
#[derive(Debug)]
pub struct Servers {
    list: Box<[Server]>,
    /// `rendezvous::server_hash` of each server's route.
    hashes: Box<[u64]>,
    /// Names and routes of servers that reloads removed from this pool.
    gone: Box<[Arc<str>]>,
    /// Unique to this list (see [`Servers::build`]).
    build: u32,
}

impl std::ops::Deref for Servers {
    type Target = [Server];

    fn deref(&self) -> &[Server] {
        &self.list
    }
}

impl Servers {
    pub fn new(list: Box<[Server]>, gone: Box<[Arc<str>]>) -> Servers {
        let hashes = list
            .iter()
            .map(|s| crate::rendezvous::server_hash(&s.route))
            .collect();
        static BUILDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let build = BUILDS.fetch_add(1, Ordering::Relaxed);
        Servers {
            list,
            hashes,
            gone,
            build,
        }
    }

    /// A number no other list of servers in this process has: an index
    /// into this list is valid as long as the build is the same.
    pub fn build(&self) -> u32 {
        self.build
    }

    /// The server named `name`.
    pub fn by_name(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|s| &*s.name == name)
    }

    /// The server whose route is `route` (bytes, as a cookie carries it).
    pub fn by_route(&self, route: &[u8]) -> Option<usize> {
        self.list.iter().position(|s| s.route.as_bytes() == route)
    }

    /// Is `name` the name or route of a server a reload removed?
    pub fn was_removed(&self, name: &[u8]) -> bool {
        self.gone.iter().any(|g| g.as_bytes() == name)
    }

    /// Names and routes of removed servers (carried to the next reload).
    pub fn gone(&self) -> &[Arc<str>] {
        &self.gone
    }

    /// The rendezvous identity of server `i`.
    pub fn hash(&self, i: usize) -> u64 {
        self.hashes.get(i).copied().unwrap_or(0)
    }

    /// The acceptable server ranked first for `key` by weighted rendezvous hashing.
    pub fn rendezvous(&self, key: u64, accept: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (i, s) in self.list.iter().enumerate() {
            if !accept(i) {
                continue;
            }
            let score = crate::rendezvous::score(key, self.hashes[i], s.weight);
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// Numbers server addresses for the workers' idle-connection tables: the
/// same address (spoken to the same way: plain, or TLS with the same CA and
/// name) keeps its number across reloads (and pools), so a reload keeps
/// every worker's idle connections. Used only when a snapshot is built.
#[derive(Debug, Default)]
pub struct Slots(std::sync::Mutex<std::collections::HashMap<(SocketAddr, String), usize>>);

impl Slots {
    pub fn of(&self, config: &ServerConfig) -> usize {
        let identity = config
            .tls
            .as_ref()
            .map_or_else(String::new, |t| t.identity.clone());
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let next = map.len();
        *map.entry((config.address, identity)).or_insert(next)
    }
}
