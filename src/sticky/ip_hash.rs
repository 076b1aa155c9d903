//! ip_hash: the client address (or its /24 or /64 subnet, as nginx groups
//! them) names its server by weighted rendezvous hashing, so removing a
//! server moves only its clients and they come home when it returns. A
//! `drain` server keeps the addresses it served recently (a bounded memory
//! with the learn idle timeout); every other address of it moves on.

use std::net::IpAddr;
use std::time::Duration;

use moka::sync::Cache;

use crate::config::{IpHashKey, ServerState};
use crate::pool::rendezvous;
use crate::pool::{Affinity, Decision, Pool};

use super::Found;

#[derive(Debug, Clone)]
pub struct IpHash {
    key: IpHashKey,
    /// Address key → `server_hash` of the server that served it last.
    recent: Cache<u64, u64>,
}

impl IpHash {
    pub fn new(key: IpHashKey, capacity: u64, idle: Duration, previous: Option<&IpHash>) -> IpHash {
        let recent = super::idle_cache(capacity, idle, previous.map(|p| &p.recent));
        IpHash { key, recent }
    }

    /// The hashing key of a client address.
    pub fn key_of(&self, ip: IpAddr) -> u64 {
        match (self.key, ip) {
            (IpHashKey::Address, IpAddr::V4(v4)) => rendezvous::key_hash(&v4.octets()),
            (IpHashKey::Address, IpAddr::V6(v6)) => rendezvous::key_hash(&v6.octets()),
            (IpHashKey::Subnet, IpAddr::V4(v4)) => rendezvous::key_hash(&v4.octets()[..3]),
            (IpHashKey::Subnet, IpAddr::V6(v6)) => rendezvous::key_hash(&v6.octets()[..8]),
        }
    }

    pub fn find(&self, pool: &Pool, client: IpAddr) -> Found {
        let key = self.key_of(client);
        // Home ignores health (a down home is redispatched by the pool, and
        // the client returns when it recovers) but not the operator's state.
        let home = pool.rendezvous(key, |i| match pool.servers[i].live.state() {
            ServerState::Active => true,
            ServerState::Drain => self.recent.get(&key) == Some(pool.server_hash(i)),
            ServerState::Disabled => false,
        });
        Found {
            affinity: home.map_or(Affinity::None, Affinity::Server),
            key: Some(key),
            session: None,
            held: None,
        }
    }

    pub fn respond(&self, pool: &Pool, found: &Found, decision: Decision) {
        let Some(key) = found.key else { return };
        let served = pool.server_hash(decision.server);
        if self.recent.get(&key) != Some(served) {
            self.recent.insert(key, served);
        }
    }
}
