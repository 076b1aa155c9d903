//! Session affinity: the four sticky modes as one closed enum. For each
//! request, [`Sticky::find`] reads what ties it to a server into a small
//! `Copy` value ([`Found`]) that travels with the request; the pool decides;
//! then [`Sticky::respond`] lets the mode act on the response (insert our
//! cookie, learn an id, bind a failed-over session) without re-parsing.

pub mod cookie;
pub mod cookies;
pub mod ip_hash;
pub mod jvm_route;
pub mod learn;
pub mod memory;
pub mod table;

use std::net::IpAddr;
use std::time::Duration;

use crate::fields::Fields;

use crate::config::{StickyConfig, StickyMode};
use crate::decision::{Affinity, Decision};
use crate::rendezvous::key_hash;
use crate::server::Servers;

/// What a request carries that ties it to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub affinity: Affinity,
    /// Rendezvous key for a deterministic replacement: the session id (jvm_route,
    /// learn) or the client address (ip_hash, cookie).
    pub key: Option<u64>,
    /// Hash of the session id (jvm_route, learn).
    pub session: Option<u64>,
    /// cookie mode: the server the client's cookie already names.
    pub held: Option<usize>,
    /// ip_hash: the `server_hash` of the server that served this key
    /// recently (a draining server keeps such keys).
    pub recent: Option<u64>,
    /// How long finding it waited for the shared store (learn mode with
    /// `learn.store`): what is left of `store_timeout` for writing there.
    pub waited: Duration,
}

impl Default for Found {
    fn default() -> Found {
        Found {
            affinity: Affinity::None,
            key: None,
            session: None,
            held: None,
            recent: None,
            waited: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Sticky {
    None,
    IpHash(ip_hash::IpHash),
    Cookie(cookie::CookieMode),
    JvmRoute(jvm_route::JvmRoute),
    Learn(learn::Learn),
}

impl Sticky {
    /// Builds the pool's mode, keeping the tables of `previous` (the same
    /// pool in the running snapshot) when the mode is unchanged.
    pub fn new(
        pool: &str,
        config: &StickyConfig,
        servers: &Servers,
        previous: Option<&Sticky>,
    ) -> Sticky {
        let (cap, idle) = (config.learn.capacity, config.learn.idle_timeout);
        match config.mode {
            StickyMode::None => Sticky::None,
            StickyMode::IpHash => Sticky::IpHash(ip_hash::IpHash::new(
                config.ip_hash_key,
                cap,
                idle,
                match previous {
                    Some(Sticky::IpHash(p)) => Some(p),
                    _ => None,
                },
            )),
            StickyMode::Cookie => Sticky::Cookie(cookie::CookieMode::new(&config.cookie, servers)),
            StickyMode::JvmRoute => Sticky::JvmRoute(jvm_route::JvmRoute::new(
                &config.jvm_route,
                cap,
                idle,
                match previous {
                    Some(Sticky::JvmRoute(p)) => Some(p),
                    _ => None,
                },
            )),
            StickyMode::Learn => Sticky::Learn(learn::Learn::new(
                pool,
                &config.learn,
                servers,
                match previous {
                    Some(Sticky::Learn(p)) => Some(p),
                    _ => None,
                },
            )),
        }
    }

    /// Reads the request's affinity. `client` is the real client address.
    pub fn find(
        &self,
        servers: &Servers,
        headers: &impl Fields,
        path: &str,
        client: IpAddr,
    ) -> Found {
        match self {
            Sticky::None => Found::default(),
            Sticky::IpHash(m) => m.find(client),
            Sticky::Cookie(m) => m.find(servers, address_key(client), headers),
            Sticky::JvmRoute(m) => m.find(servers, headers, path),
            Sticky::Learn(m) => m.find(headers, path),
        }
    }

    /// [`find`](Self::find), then, in learn mode with a shared store, a
    /// session the local table does not know is looked up there (within
    /// `store_timeout`; boxed, so only such requests carry the lookup).
    pub async fn affinity(
        &self,
        servers: &Servers,
        headers: &impl Fields,
        path: &str,
        client: IpAddr,
    ) -> Found {
        let found = self.find(servers, headers, path, client);
        match self {
            Sticky::Learn(m) if m.wants_lookup(&found) => Box::pin(m.lookup(found)).await,
            _ => found,
        }
    }

    /// Rewrites the request before it goes to the server.
    pub fn prepare(&self, headers: &mut impl Fields) {
        if let Sticky::Cookie(m) = self {
            m.prepare(headers);
        }
    }

    /// [`respond`](Self::respond), then, in learn mode with a shared
    /// store, writes a session learned or moved there before the client
    /// can take it to another instance (boxed, as the lookup).
    pub async fn act_on(
        &self,
        servers: &Servers,
        found: &Found,
        decision: Decision,
        headers: &mut impl Fields,
    ) {
        if let Some(write) = self.respond(servers, found, decision, headers) {
            Box::pin(write.apply(found.waited)).await;
        }
    }

    /// Acts on the server's response. In learn mode with a shared store,
    /// returns the session to write there before the answer goes out.
    pub fn respond(
        &self,
        servers: &Servers,
        found: &Found,
        decision: Decision,
        headers: &mut impl Fields,
    ) -> Option<learn::store::SetNow> {
        match self {
            Sticky::None => {}
            Sticky::IpHash(m) => m.respond(servers, found, decision),
            Sticky::Cookie(m) => m.respond(found, decision, headers),
            Sticky::JvmRoute(m) => m.respond(servers, found, decision, headers),
            Sticky::Learn(m) => return m.respond(found, decision, headers),
        }
        None
    }

    /// The shared store, in learn mode with `learn.store`.
    pub fn store(&self) -> Option<&std::sync::Arc<learn::store::Store>> {
        match self {
            Sticky::Learn(m) => m.store.as_ref(),
            _ => None,
        }
    }

    /// The learned table, in learn mode.
    pub fn learned(&self) -> Option<&learn::Table> {
        match self {
            Sticky::Learn(m) => Some(&m.table),
            _ => None,
        }
    }
}

/// A bounded table from a key hash to a value whose entries are forgotten
/// after `idle` unused, least recently used evicted first; `previous` is
/// reused when its bounds are the same (a reload keeps the memory).
pub fn session_table(
    capacity: u64,
    idle: std::time::Duration,
    previous: Option<&std::sync::Arc<table::SessionTable>>,
) -> std::sync::Arc<table::SessionTable> {
    match previous {
        Some(p) if p.capacity == capacity && p.idle == idle => std::sync::Arc::clone(p),
        _ => std::sync::Arc::new(table::SessionTable::new(capacity, 1, idle)),
    }
}

fn address_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => key_hash(&v4.octets()),
        IpAddr::V6(v6) => key_hash(&v6.octets()),
    }
}
