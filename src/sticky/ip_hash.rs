//! ip_hash: the client address (or its /24 or /64 subnet, as nginx groups
//! them) names its server by weighted rendezvous hashing, so removing a
//! server moves only its clients and they come home when it returns. A
//! `drain` server keeps the addresses it served recently (a bounded memory
//! with the learn idle timeout); every other address of it moves on.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::IpHashKey;
use crate::decision::{Affinity, Decision};
use crate::rendezvous;
use crate::server::Servers;

use super::Found;
use super::table::SessionTable;

#[derive(Debug, Clone)]
pub struct IpHash {
    key: IpHashKey,
    /// Address key → `server_hash` of the server that served it last.
    pub(super) recent: Arc<SessionTable>,
}

impl IpHash {
    pub fn new(key: IpHashKey, capacity: u64, idle: Duration, previous: Option<&IpHash>) -> IpHash {
        let recent = super::session_table(capacity, idle, previous.map(|p| &p.recent));
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

    /// The client's key; the pool ranks its servers for it (its home is the
    /// first that is not disabled, see [`crate::pool::Pool::decide`]).
    pub fn find(&self, client: IpAddr) -> Found {
        let key = self.key_of(client);
        Found {
            affinity: Affinity::Home,
            key: Some(key),
            session: None,
            held: None,
            recent: self.recent.get_fronted(key),
            ..Found::default()
        }
    }

    pub fn respond(&self, servers: &Servers, found: &Found, decision: Decision) {
        let Some(key) = found.key else { return };
        let served = servers.hash(decision.server);
        if found.recent != Some(served) {
            self.recent.insert(key, served);
        }
    }
}
