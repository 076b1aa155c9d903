//! learn: limpet learns which server owns a session id from the server's own
//! `Set-Cookie` (HAProxy `appsession JSESSIONID len 64 timeout 5h
//! request-learn`). The table is a bounded concurrent cache (moka, least
//! recently used evicted first, entries forgotten after `idle_timeout`
//! unused); keys are fixed-seed hashes of the id's first `max_len`
//! characters, so several instances and restarts agree. Ids that only
//! clients sent are kept apart, on probation, so that strangers cannot
//! flush the sessions servers issued (see [`Table`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use moka::Expiry;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use crate::config::LearnConfig;
use crate::decision::{Affinity, Decision, Outcome};
use crate::rendezvous::key_hash;
use crate::server::Servers;

use super::{Found, cookies};

/// One learned session: its server, and when it was last used (kept in the
/// entry so a snapshot can save each entry's remaining idle time).
#[derive(Debug)]
pub struct Entry {
    pub server: Arc<str>,
    last_used: AtomicU64,
    /// Remaining idle time of an entry restored from a snapshot.
    restored_ttl: Option<Duration>,
    /// Where `server` is in the pool's servers, for the build of the pool
    /// it was last looked up in: `build << 32 | index` (index `u32::MAX`:
    /// no such server). Spares a lookup by name on every request.
    hint: AtomicU64,
}

impl Entry {
    fn new(server: Arc<str>, restored_ttl: Option<Duration>) -> Entry {
        Entry {
            server,
            last_used: AtomicU64::new(now_ms()),
            restored_ttl,
            hint: AtomicU64::new(u64::MAX),
        }
    }

    /// The index of this entry's server in `servers`, if it is there.
    pub fn index_in(&self, servers: &Servers) -> Option<usize> {
        let hint = self.hint.load(Ordering::Relaxed);
        let index = if hint >> 32 == u64::from(servers.build()) {
            (hint & 0xffff_ffff) as u32
        } else {
            let i = servers
                .by_name(&self.server)
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(u32::MAX);
            self.hint.store(
                u64::from(servers.build()) << 32 | u64::from(i),
                Ordering::Relaxed,
            );
            i
        };
        (index != u32::MAX).then_some(index as usize)
    }

    fn touch(&self) {
        self.last_used.store(now_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the entry was last used.
    pub fn idle_ms(&self) -> u64 {
        now_ms().saturating_sub(self.last_used.load(Ordering::Relaxed))
    }
}

/// Wall-clock milliseconds: an entry's idle time must survive a restart
/// (a monotonic reading starts over with the process).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct IdleExpiry {
    idle: Duration,
}

impl Expiry<u64, Arc<Entry>> for IdleExpiry {
    fn expire_after_create(&self, _: &u64, value: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(value.restored_ttl.unwrap_or(self.idle))
    }

    fn expire_after_read(
        &self,
        _: &u64,
        _: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        Some(self.idle)
    }

    fn expire_after_update(
        &self,
        _: &u64,
        _: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.idle)
    }
}

/// The learned table of one pool; shared by every snapshot with the same
/// pool, capacity and idle timeout.
///
/// Two areas, each least-recently-used first: `confirmed` holds sessions a
/// server issued (learned from its `Set-Cookie`), up to `capacity`;
/// `probation` holds ids that only a client sent (`request_learn`), up to a
/// quarter of `capacity`. A flood of invented ids churns probation only and
/// never evicts a server's session; a probation id the server later sets in
/// a `Set-Cookie` is promoted.
#[derive(Clone)]
pub struct Table {
    confirmed: Cache<u64, Arc<Entry>>,
    probation: Cache<u64, Arc<Entry>>,
    pub idle: Duration,
    pub capacity: u64,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("confirmed", &self.confirmed.entry_count())
            .field("probation", &self.probation.entry_count())
            .finish()
    }
}

/// The probation area's share of `capacity`.
pub fn probation_capacity(capacity: u64) -> u64 {
    (capacity / 4).max(1)
}

fn area(capacity: u64, idle: Duration) -> Cache<u64, Arc<Entry>> {
    Cache::builder()
        .max_capacity(capacity)
        .eviction_policy(EvictionPolicy::lru())
        .expire_after(IdleExpiry { idle })
        .build()
}

/// An entry of the table, as saved and restored.
#[derive(Debug, Clone)]
pub struct Saved {
    pub key: u64,
    pub server: Arc<str>,
    pub remaining: Duration,
    /// Only a client ever sent this id (request-learned).
    pub probation: bool,
}

impl Table {
    pub fn new(capacity: u64, idle: Duration) -> Table {
        Table {
            confirmed: area(capacity, idle),
            probation: area(probation_capacity(capacity), idle),
            idle,
            capacity,
        }
    }

    pub fn get(&self, key: u64) -> Option<Arc<Entry>> {
        let e = self
            .confirmed
            .get(&key)
            .or_else(|| self.probation.get(&key))?;
        e.touch();
        Some(e)
    }

    /// A session a server issued: confirmed.
    pub fn insert(&self, key: u64, server: Arc<str>) {
        if self.confirmed.get(&key).is_some_and(|e| e.server == server) {
            return;
        }
        self.probation.invalidate(&key);
        // Apply recorded reads first, so eviction sees true recency (moka
        // buffers them); this runs once per new session, not per request.
        self.confirmed.run_pending_tasks();
        self.confirmed
            .insert(key, Arc::new(Entry::new(server, None)));
    }

    /// An id only a client sent: on probation until a server confirms it.
    pub fn insert_probation(&self, key: u64, server: Arc<str>) {
        if self.confirmed.contains_key(&key) {
            return;
        }
        self.probation.run_pending_tasks();
        self.probation
            .insert(key, Arc::new(Entry::new(server, None)));
    }

    /// Moves a session to `server` (failover), in whichever area it is.
    pub fn rewrite(&self, key: u64, server: Arc<str>) {
        if self.probation.contains_key(&key) && !self.confirmed.contains_key(&key) {
            self.probation
                .insert(key, Arc::new(Entry::new(server, None)));
        } else {
            self.insert(key, server);
        }
    }

    /// Inserts an entry restored from a snapshot with its remaining idle time.
    pub fn restore(&self, saved: Saved) {
        let entry = Entry::new(saved.server, Some(saved.remaining));
        entry.last_used.store(
            now_ms().saturating_sub(
                u64::try_from((self.idle.saturating_sub(saved.remaining)).as_millis()).unwrap_or(0),
            ),
            Ordering::Relaxed,
        );
        let area = if saved.probation {
            &self.probation
        } else {
            &self.confirmed
        };
        area.insert(saved.key, Arc::new(entry));
    }

    pub fn remove(&self, key: u64) {
        self.confirmed.invalidate(&key);
        self.probation.invalidate(&key);
    }

    /// Entries now, both areas (approximate until pending work has run).
    pub fn len(&self) -> u64 {
        self.confirmed.run_pending_tasks();
        self.probation.run_pending_tasks();
        self.confirmed.entry_count() + self.probation.entry_count()
    }

    /// Entries on probation now (approximate).
    pub fn on_probation(&self) -> u64 {
        self.probation.run_pending_tasks();
        self.probation.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live entry with its remaining idle time.
    pub fn entries(&self) -> Vec<Saved> {
        let area = |cache: &Cache<u64, Arc<Entry>>, probation: bool| {
            cache
                .iter()
                .filter_map(|(k, e)| {
                    let idle = Duration::from_millis(e.idle_ms());
                    let remaining = self.idle.checked_sub(idle)?;
                    Some(Saved {
                        key: *k,
                        server: Arc::clone(&e.server),
                        remaining,
                        probation,
                    })
                })
                .collect::<Vec<_>>()
        };
        let mut all = area(&self.confirmed, false);
        all.extend(area(&self.probation, true));
        all
    }
}

#[derive(Debug, Clone)]
pub struct Learn {
    pub config: LearnConfig,
    pub table: Table,
}

impl Learn {
    pub fn new(config: &LearnConfig, previous: Option<&Learn>) -> Learn {
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
        Learn {
            config: config.clone(),
            table,
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

    pub fn find(&self, servers: &Servers, headers: &HeaderMap, path: &str) -> Found {
        let id = cookies::request_values(headers, &self.config.cookie)
            .next()
            .or_else(|| cookies::path_param(path, &self.config.path_param).map(str::as_bytes));
        let Some(id) = id else {
            return Found::default();
        };
        let key = self.key(id);
        let affinity = match self.table.get(key) {
            // An entry naming a server the pool no longer has (a reload
            // removed it) is affinity to a dead server: it moves once.
            Some(e) => e
                .index_in(servers)
                .map_or(Affinity::Removed, Affinity::Server),
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

    pub fn respond(
        &self,
        servers: &Servers,
        found: &Found,
        decision: Decision,
        headers: &HeaderMap,
    ) {
        let server = &servers[decision.server].name;
        let mut learned = false;
        for set in cookies::response_values(headers, &self.config.cookie) {
            match set {
                cookies::SetCookie::Set(id) => {
                    self.table.insert(self.key(id), Arc::clone(server));
                    learned = true;
                }
                cookies::SetCookie::Deleted(id) => {
                    self.table.remove(self.key(id));
                    if found.session == Some(self.key(id)) {
                        return;
                    }
                }
            }
        }
        let Some(session) = found.session else { return };
        if decision.outcome == Outcome::Redispatch {
            self.table.rewrite(session, Arc::clone(server));
        } else if self.config.request_learn && found.affinity == Affinity::None && !learned {
            self.table.insert_probation(session, Arc::clone(server));
        }
    }
}
