//! A server of a pool: its configuration plus the live state that must
//! survive a reload (in-flight count, operator state, health), kept behind an
//! `Arc` so a new runtime snapshot can re-link it by (pool, server) name.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

use http::uri::Authority;

use crate::config::{ServerConfig, ServerState};

/// Live state of one server, shared by every snapshot that has it.
#[derive(Debug)]
pub struct Live {
    active: AtomicU32,
    state: AtomicU8,
    up: AtomicBool,
}

impl Live {
    pub fn new(state: ServerState) -> Live {
        Live {
            active: AtomicU32::new(0),
            state: AtomicU8::new(state as u8),
            up: AtomicBool::new(true),
        }
    }

    /// Requests currently in flight on this server (used by `least_conn`).
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    pub fn begin(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    pub fn end(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn state(&self) -> ServerState {
        match self.state.load(Ordering::Relaxed) {
            s if s == ServerState::Drain as u8 => ServerState::Drain,
            s if s == ServerState::Disabled as u8 => ServerState::Disabled,
            _ => ServerState::Active,
        }
    }

    pub fn set_state(&self, state: ServerState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct Server {
    pub name: Arc<str>,
    pub route: Arc<str>,
    pub address: SocketAddr,
    /// `address` as a URI authority, built once for every forwarded request.
    pub authority: Authority,
    pub weight: u32,
    pub live: Arc<Live>,
}

impl Server {
    pub fn new(config: &ServerConfig, live: Arc<Live>) -> Server {
        let authority = Authority::try_from(config.address.to_string().as_str())
            .unwrap_or_else(|_| Authority::from_static("127.0.0.1"));
        Server {
            name: config.name.as_str().into(),
            route: config.route.as_str().into(),
            address: config.address,
            authority,
            weight: config.weight,
            live,
        }
    }

    /// May take requests that carry affinity to it (up, and not `disabled`).
    pub fn usable(&self) -> bool {
        self.live.is_up() && self.live.state() != ServerState::Disabled
    }

    /// May take new placements (up and `active`).
    pub fn placeable(&self) -> bool {
        self.live.is_up() && self.live.state() == ServerState::Active
    }
}
