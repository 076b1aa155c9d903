//! The learned table of one pool: session key → the server that owns it,
//! in two areas (confirmed, probation) so that ids only clients sent never
//! evict a session a server issued. Built on the bounded
//! [`SessionTable`](crate::sticky::table::SessionTable) the other modes use.

use std::sync::Arc;
use std::time::Duration;

use crate::sticky::table::{self, SessionTable};

/// An entry of the table, as saved and restored.
#[derive(Debug, Clone)]
pub struct Learned {
    pub key: u64,
    pub server: Arc<str>,
    pub remaining: Duration,
    /// Only a client ever sent this id (request-learned).
    pub probation: bool,
}

/// The learned table of one pool; shared by every snapshot with the same
/// pool, capacity and idle timeout.
///
/// Two areas, each least-recently-used first: confirmed entries, sessions
/// a server issued (learned from its `Set-Cookie`), up to `capacity`; and
/// entries on probation, ids that only a client sent (`request_learn`), up
/// to a quarter of `capacity` more. A flood of invented ids churns
/// probation only and never evicts a server's session; a probation id the
/// server later sets in a `Set-Cookie` is promoted. An entry holds the
/// number of its server's name (see [`table::ServerNames`]).
#[derive(Clone)]
pub struct Table {
    inner: Arc<SessionTable>,
    pub idle: Duration,
    pub capacity: u64,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// The probation area's share of `capacity`.
pub fn probation_capacity(capacity: u64) -> u64 {
    (capacity / 4).max(1)
}

impl Table {
    pub fn new(capacity: u64, idle: Duration) -> Table {
        Table {
            inner: Arc::new(SessionTable::new(
                capacity,
                probation_capacity(capacity),
                idle,
            )),
            idle,
            capacity,
        }
    }

    /// The number of `server`'s name in this table.
    pub fn number(&self, server: &str) -> u64 {
        self.inner.names.intern(server)
    }

    /// The number of the server that owns session `key`.
    pub fn server_number(&self, key: u64) -> Option<u64> {
        self.inner.get(key)
    }

    /// Like [`server_number`](Self::server_number), and whether the shared
    /// store's copy is due a refresh (see [`SessionTable::get_synced`]).
    pub fn server_number_synced(&self, key: u64, every_s: u32) -> Option<(u64, bool)> {
        self.inner.get_synced(key, every_s)
    }

    /// The server name number `n` stands for.
    pub fn name(&self, n: u64) -> Option<Arc<str>> {
        self.inner.names.name(n)
    }

    /// Is `other` this very table?
    pub fn same(&self, other: &Table) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The server of confirmed session `key`, without marking it used.
    pub fn peek(&self, key: u64) -> Option<Arc<str>> {
        self.inner
            .peek_confirmed(key)
            .and_then(|n| self.inner.names.name(n))
    }

    /// The server that owns session `key`.
    pub fn get(&self, key: u64) -> Option<Arc<str>> {
        self.inner.get(key).and_then(|n| self.inner.names.name(n))
    }

    /// A session another instance learned (from the shared store): kept
    /// only if it names a server this table knows — one of the pool's,
    /// now or before a reload — since what comes from Redis can name
    /// anything, and names are never forgotten. Its number, if kept.
    pub fn insert(&self, key: u64, server: &str) -> Option<u64> {
        let n = self.inner.names.find(server)?;
        self.inner.insert(key, n);
        Some(n)
    }

    /// A session a server issued, by its server's number.
    pub fn insert_number(&self, key: u64, server: u64) {
        self.inner.insert(key, server);
    }

    /// An id only a client sent: on probation until a server confirms it.
    pub fn insert_probation(&self, key: u64, server: u64) {
        self.inner.insert_probation(key, server);
    }

    /// Moves a session to `server` (failover), in whichever area it is.
    pub fn rewrite(&self, key: u64, server: u64) {
        self.inner.rewrite(key, server);
    }

    /// Inserts an entry restored from a snapshot with its remaining idle time.
    pub fn restore(&self, saved: Learned) {
        let value = self.number(&saved.server);
        self.inner.restore(table::Kept {
            key: saved.key,
            value,
            remaining: saved.remaining,
            probation: saved.probation,
        });
    }

    pub fn remove(&self, key: u64) {
        self.inner.remove(key);
    }

    /// Entries now, both areas (expired ones are forgotten first).
    pub fn len(&self) -> u64 {
        self.inner.purge();
        self.inner.len()
    }

    /// Entries on probation now.
    pub fn on_probation(&self) -> u64 {
        self.inner.on_probation()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live entry with its remaining idle time.
    pub fn entries(&self) -> Vec<Learned> {
        self.inner
            .entries()
            .into_iter()
            .filter_map(|e| {
                Some(Learned {
                    key: e.key,
                    server: self.inner.names.name(e.value)?,
                    remaining: e.remaining,
                    probation: e.probation,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_from_the_store_naming_an_unknown_server_is_not_kept() {
        let t = Table::new(100, Duration::from_secs(60));
        let node1 = t.number("node1");
        assert_eq!(t.insert(1, "node1"), Some(node1));
        assert_eq!(t.get(1).as_deref(), Some("node1"));
        // Anything on the channel or in Redis: no entry, and no new name
        // (names are never forgotten, so each would stay for good).
        assert_eq!(t.insert(2, "not-a-server"), None);
        assert_eq!(t.get(2), None);
        assert_eq!(t.name(node1 + 1), None);
        assert_eq!(t.len(), 1);
    }
}
