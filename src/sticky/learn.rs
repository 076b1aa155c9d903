//! learn: limpet learns which server owns a session id from the server's own
//! `Set-Cookie` (HAProxy `appsession JSESSIONID len 64 timeout 5h
//! request-learn`). The table is bounded (least recently used evicted
//! first, entries forgotten after `idle_timeout` unused; see
//! [`table::SessionTable`]); keys are fixed-seed hashes of the id's first
//! `max_len` characters, so several instances and restarts agree. Ids that only
//! clients sent are kept apart, on probation, so that strangers cannot
//! flush the sessions servers issued (see [`Table`]).

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use crate::config::LearnConfig;
use crate::decision::{Affinity, Decision, Outcome};
use crate::rendezvous::key_hash;
use crate::server::Servers;

use super::store::{Lookup, SetNow, Store};
use super::table::{self, SessionTable};
use super::{Found, cookies};

/// An entry of the table, as saved and restored.
#[derive(Debug, Clone)]
pub struct Saved {
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
/// number of its server's name (see [`table::Names`]).
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
    pub fn restore(&self, saved: Saved) {
        let value = self.number(&saved.server);
        self.inner.restore(table::Saved {
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
    pub fn entries(&self) -> Vec<Saved> {
        self.inner
            .entries()
            .into_iter()
            .filter_map(|e| {
                Some(Saved {
                    key: e.key,
                    server: self.inner.names.name(e.value)?,
                    remaining: e.remaining,
                    probation: e.probation,
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Learn {
    pub config: LearnConfig,
    pub table: Table,
    /// The table shared with other instances (`learn.store`).
    pub store: Option<Arc<Store>>,
    /// The table's number of each server's name, by server index.
    numbers: Box<[u64]>,
    /// The server index of each name number (`usize::MAX`: not in this pool).
    servers: Box<[usize]>,
}

impl Learn {
    pub fn new(
        pool: &str,
        config: &LearnConfig,
        servers: &Servers,
        previous: Option<&Learn>,
    ) -> Learn {
        let table = match previous {
            Some(p)
                if p.table.capacity == config.capacity && p.table.idle == config.idle_timeout =>
            {
                p.table.clone()
            }
            Some(p) => {
                let t = Table::new(config.capacity, config.idle_timeout);
                for mut saved in p.table.entries() {
                    saved.remaining = saved.remaining.min(config.idle_timeout);
                    t.restore(saved);
                }
                t
            }
            None => Table::new(config.capacity, config.idle_timeout),
        };
        let numbers: Box<[u64]> = servers.iter().map(|s| table.number(&s.name)).collect();
        let mut by_number = vec![usize::MAX; numbers.iter().max().map_or(0, |m| *m as usize + 1)];
        for (i, n) in numbers.iter().enumerate() {
            by_number[*n as usize] = i;
        }
        let store = config.store.as_ref().and_then(|sc| {
            let before = previous.and_then(|p| p.store.as_ref());
            let kept = before.filter(|s| s.identity == sc.identity && s.serves(&table));
            match kept {
                Some(s) => {
                    s.set_timeout(sc.timeout);
                    Some(Arc::clone(s))
                }
                None => Store::start(
                    pool,
                    sc,
                    table.clone(),
                    before.map(|s| Arc::clone(&s.stats)),
                ),
            }
        });
        Learn {
            config: config.clone(),
            table,
            store,
            numbers,
            servers: by_number.into_boxed_slice(),
        }
    }

    /// The table key of a session id: a hash of its first `max_len`
    /// characters (bytes, for an id that is not UTF-8 text).
    pub fn key(&self, id: &[u8]) -> u64 {
        let end = match std::str::from_utf8(id) {
            Ok(text) => text
                .char_indices()
                .nth(self.config.max_len)
                .map_or(id.len(), |(i, _)| i),
            Err(_) => id.len().min(self.config.max_len),
        };
        key_hash(&id[..end])
    }

    pub fn find(&self, headers: &HeaderMap, path: &str) -> Found {
        let id = cookies::request_values(headers, &self.config.cookie)
            .next()
            .or_else(|| cookies::path_param(path, &self.config.path_param).map(str::as_bytes));
        let Some(id) = id else {
            return Found::default();
        };
        let key = self.key(id);
        let number = match &self.store {
            None => self.table.server_number(key),
            Some(store) => match self.table.server_number_synced(key, store.refresh_every_s) {
                Some((n, due)) => {
                    if due && let Some(name) = self.table.name(n) {
                        store.touch(key, name);
                    }
                    Some(n)
                }
                None => None,
            },
        };
        let affinity = match number {
            // An entry naming a server the pool no longer has (a reload
            // removed it) is affinity to a dead server: it moves once.
            Some(n) => match self.servers.get(n as usize) {
                Some(&i) if i != usize::MAX => Affinity::Server(i),
                _ => Affinity::Removed,
            },
            None => Affinity::None,
        };
        Found {
            affinity,
            key: Some(key),
            session: Some(key),
            held: None,
            recent: None,
        }
    }

    /// Learns from the response; what the other instances must know before
    /// the client has the answer comes back (with `learn.store`).
    pub fn respond(
        &self,
        found: &Found,
        decision: Decision,
        headers: &HeaderMap,
    ) -> Option<SetNow> {
        let &server = self.numbers.get(decision.server)?;
        let mut now = None;
        let mut learned = false;
        for set in cookies::response_values(headers, &self.config.cookie) {
            match set {
                cookies::SetCookie::Set(id) => {
                    let key = self.key(id);
                    self.table.insert_number(key, server);
                    // A server that re-sends the session's cookie on every
                    // answer (sliding expiry) tells nothing new: the store
                    // already has it, and its TTL is refreshed by use.
                    let known = found.session == Some(key)
                        && found.affinity == Affinity::Server(decision.server);
                    if !known {
                        self.share(key, server, &mut now);
                    }
                    learned = true;
                }
                cookies::SetCookie::Deleted(id) => {
                    self.table.remove(self.key(id));
                    if let Some(store) = &self.store {
                        store.end(self.key(id));
                    }
                    if found.session == Some(self.key(id)) {
                        return now;
                    }
                }
            }
        }
        let Some(session) = found.session else {
            return now;
        };
        if decision.outcome == Outcome::Redispatch {
            self.table.rewrite(session, server);
            self.share(session, server, &mut now);
        } else if self.config.request_learn && found.affinity == Affinity::None && !learned {
            self.table.insert_probation(session, server);
        }
        now
    }

    /// Tells the other instances (through the store) that `key` is on
    /// the server numbered `server`: the last such session of a response
    /// before the answer goes out (`now`), any other in the background.
    fn share(&self, key: u64, server: u64, now: &mut Option<SetNow>) {
        if let Some(store) = &self.store
            && let Some(name) = self.table.name(server)
            && let Some(before) = now.replace(SetNow::new(store, key, name))
        {
            before.later();
        }
    }

    /// Does `found` call for a look in the shared store (a session id the
    /// local table does not know)?
    pub fn wants_lookup(&self, found: &Found) -> bool {
        self.store.is_some() && found.affinity == Affinity::None && found.session.is_some()
    }

    /// Looks a session the local table does not know up in the shared
    /// store (within `store_timeout`); what is found is cached locally.
    pub async fn lookup(&self, mut found: Found) -> Found {
        let (Some(store), Some(key)) = (&self.store, found.session) else {
            return found;
        };
        if let Lookup::Hit(n) = store.lookup(key).await {
            found.affinity = match self.servers.get(n as usize) {
                Some(&i) if i != usize::MAX => Affinity::Server(i),
                _ => Affinity::Removed,
            };
        }
        found
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
