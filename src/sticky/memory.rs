//! What a pool's sticky mode remembers, in a form that crosses a process
//! boundary: an in-place upgrade hands it to the new process so that no
//! session moves. learn: the learned table; jvm_route: the bindings made at
//! failover; ip_hash: the addresses a draining server served recently.
//! cookie mode remembers nothing (the client's cookie names its server).
//! Entries keep their remaining idle time; servers are named, never
//! numbered, since numbers are private to a process.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Sticky;
use super::table::{Kept, SessionTable};
use crate::clock::to_ms;

/// A pool's sticky memory.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// learn and jvm_route: session key → server.
    #[serde(default)]
    pub sessions: Vec<Session>,
    /// ip_hash: address key → the hash of the server that served it last.
    #[serde(default)]
    pub recent: Vec<Recent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub key: u64,
    pub server: String,
    pub remaining_ms: u64,
    /// learn: only a client ever sent this id (request-learned).
    #[serde(default)]
    pub probation: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recent {
    pub key: u64,
    /// `rendezvous::server_hash` of the server's route: the same in every
    /// process.
    pub server_hash: u64,
    pub remaining_ms: u64,
}

/// A table of key → server-name number, as named sessions.
fn named(table: &SessionTable) -> Vec<Session> {
    table
        .entries()
        .into_iter()
        .filter_map(|e| {
            Some(Session {
                key: e.key,
                server: table.names.name(e.value)?.to_string(),
                remaining_ms: to_ms(e.remaining),
                probation: e.probation,
            })
        })
        .collect()
}

impl Sticky {
    /// What this mode remembers now.
    pub fn memory(&self) -> Memory {
        match self {
            Sticky::None | Sticky::Cookie(_) => Memory::default(),
            Sticky::Learn(m) => Memory {
                sessions: m
                    .table
                    .entries()
                    .into_iter()
                    .map(|e| Session {
                        key: e.key,
                        server: e.server.to_string(),
                        remaining_ms: to_ms(e.remaining),
                        probation: e.probation,
                    })
                    .collect(),
                recent: Vec::new(),
            },
            Sticky::JvmRoute(m) => Memory {
                sessions: named(&m.bindings),
                recent: Vec::new(),
            },
            Sticky::IpHash(m) => Memory {
                sessions: Vec::new(),
                recent: m
                    .recent
                    .entries()
                    .into_iter()
                    .map(|e| Recent {
                        key: e.key,
                        server_hash: e.value,
                        remaining_ms: to_ms(e.remaining),
                    })
                    .collect(),
            },
        }
    }

    /// Takes over `memory` (from another process); what this mode does not
    /// keep is ignored. Returns the number of entries taken.
    pub fn recall(&self, memory: &Memory) -> usize {
        let remaining = |ms: u64, idle: Duration| Duration::from_millis(ms).min(idle);
        match self {
            Sticky::None | Sticky::Cookie(_) => 0,
            Sticky::Learn(m) => {
                for s in &memory.sessions {
                    m.table.restore(super::learn::Learned {
                        key: s.key,
                        server: Arc::from(s.server.as_str()),
                        remaining: remaining(s.remaining_ms, m.table.idle),
                        probation: s.probation,
                    });
                }
                memory.sessions.len()
            }
            Sticky::JvmRoute(m) => {
                for s in &memory.sessions {
                    m.bindings.restore(Kept {
                        key: s.key,
                        value: m.bindings.names.intern(&s.server),
                        remaining: remaining(s.remaining_ms, m.bindings.idle),
                        probation: false,
                    });
                }
                memory.sessions.len()
            }
            Sticky::IpHash(m) => {
                for r in &memory.recent {
                    m.recent.restore(Kept {
                        key: r.key,
                        value: r.server_hash,
                        remaining: remaining(r.remaining_ms, m.recent.idle),
                        probation: false,
                    });
                }
                memory.recent.len()
            }
        }
    }
}
