//! `GET /api/pools`: every pool and server as JSON, read from the running
//! snapshot; and `PUT …/state`, which answers the server's JSON.

use std::net::SocketAddr;

use http::{Response, StatusCode};
use serde::Serialize;

use super::{Body, json, text};
use crate::config::ServerState;

use crate::pool::Pool;
use crate::runtime::Snapshot;

#[derive(Debug, Serialize)]
pub struct Pools {
    pub pools: Vec<PoolView>,
}

#[derive(Debug, Serialize)]
pub struct PoolView {
    pub name: String,
    pub mode: &'static str,
    pub servers: Vec<ServerView>,
    /// Entries of the learned table (learn mode), else null.
    pub learned_sessions: Option<u64>,
    /// Of which request-learned ids on probation (learn mode), else null.
    pub learned_on_probation: Option<u64>,
    /// The shared store (learn mode with `learn.store`), else null.
    pub store: Option<StoreView>,
}

#[derive(Debug, Serialize)]
pub struct StoreView {
    /// The store's URL, password masked.
    pub url: String,
    pub up: bool,
}

#[derive(Debug, Serialize)]
pub struct ServerView {
    pub name: String,
    pub address: String,
    /// Where it comes from: `file`, `dns` (`discover`) or `api`.
    pub source: &'static str,
    /// The host name `address` was resolved from (`null` for an IP address).
    pub host: Option<String>,
    /// The host name resolved (always, for an IP address).
    pub resolved: bool,
    /// The host name's other addresses, not used (with several A records
    /// the first, sorted, is `address`).
    pub other_addresses: Vec<String>,
    pub route: String,
    pub weight: u32,
    /// Takes requests only while no other server of the pool can.
    pub backup: bool,
    /// The state in effect (set by the file, or at run time through the API).
    pub state: &'static str,
    /// The state the configuration file says.
    pub configured_state: &'static str,
    /// Up: healthy by active checks and not marked down by passive checks.
    pub up: bool,
    pub last_check: Option<CheckView>,
    pub active_requests: u32,
    /// Requests answered through this server since limpet started.
    pub requests: u64,
}

#[derive(Debug, Serialize)]
pub struct CheckView {
    pub ok: bool,
    /// RFC 3339, UTC.
    pub at: String,
}

pub fn pools(snap: &Snapshot) -> Pools {
    Pools {
        pools: snap
            .pools
            .iter()
            .map(|p| PoolView {
                name: p.name.to_string(),
                mode: p.mode.as_str(),
                servers: (0..p.servers.len()).map(|i| server(p, i)).collect(),
                learned_sessions: p.sticky.learned().map(|t| t.len()),
                learned_on_probation: p.sticky.learned().map(|t| t.on_probation()),
                store: p.sticky.store().map(|s| StoreView {
                    url: s.shown.clone(),
                    up: s.is_up(),
                }),
            })
            .collect(),
    }
}

pub fn server(pool: &Pool, i: usize) -> ServerView {
    let s = &pool.servers[i];
    ServerView {
        name: s.name.to_string(),
        address: if s.resolved {
            s.address.to_string()
        } else {
            String::new()
        },
        source: s.source.as_str(),
        host: s.host.as_deref().map(str::to_owned),
        resolved: s.resolved,
        other_addresses: s.others.iter().map(ToString::to_string).collect(),
        route: s.route.to_string(),
        weight: s.weight,
        backup: s.backup,
        state: s.live.state().as_str(),
        configured_state: s.live.file_state().as_str(),
        up: s.resolved && s.live.is_up(),
        last_check: s.live.last_check().map(|(at, ok)| CheckView {
            ok,
            at: rfc3339(at),
        }),
        active_requests: s.live.active(),
        requests: s.live.stats.total(),
    }
}

/// `PUT /api/pools/{pool}/servers/{server}/state`.
pub fn set_state(
    snap: &Snapshot,
    pool_name: &str,
    server_name: &str,
    body: &[u8],
    peer: SocketAddr,
) -> Response<Body> {
    let Some(pool) = snap.pool(pool_name) else {
        return text(StatusCode::NOT_FOUND, &format!("no pool {pool_name:?}\n"));
    };
    let Some(i) = pool.servers.by_name(server_name) else {
        return text(
            StatusCode::NOT_FOUND,
            &format!("no server {server_name:?} in pool {pool_name:?}\n"),
        );
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        state: String,
    }
    let state = match serde_json::from_slice::<Body>(body) {
        Ok(b) => match b.state.as_str() {
            "active" => ServerState::Active,
            "drain" => ServerState::Drain,
            "disabled" => ServerState::Disabled,
            other => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("`state` must be one of active, drain, disabled, not {other:?}\n"),
                );
            }
        },
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("the body must be {{\"state\":\"drain\"|\"active\"|\"disabled\"}}: {e}\n"),
            );
        }
    };
    let changed = &pool.servers[i];
    let before = changed.live.state();
    changed.live.set_state(state);
    tracing::info!(
        pool = %pool.name,
        server = %changed.name,
        from = before.as_str(),
        to = state.as_str(),
        by = %peer,
        "server state changed through the admin API"
    );
    json(StatusCode::OK, &server(pool, i))
}

/// Why a server could not be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum ServerChange {
    #[error("no pool {0:?}")]
    NoPool(String),
    #[error("no server {server:?} in pool {pool:?}")]
    NoServer { pool: String, server: String },
    /// The name or the route is taken.
    #[error("{0}")]
    Taken(String),
    /// Only the API's own servers can be removed through it.
    #[error("{0}")]
    NotOurs(String),
    /// A bad body.
    #[error("{0}")]
    Invalid(String),
}

impl ServerChange {
    pub fn status(&self) -> StatusCode {
        match self {
            ServerChange::NoPool(_) | ServerChange::NoServer { .. } => StatusCode::NOT_FOUND,
            ServerChange::Taken(_) | ServerChange::NotOurs(_) => StatusCode::CONFLICT,
            ServerChange::Invalid(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Unix milliseconds as `2026-11-30T03:51:22.123Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms);
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339(1_795_996_282_123),
            "2026-11-29T23:51:22.123Z"
        );
    }
}
