//! learn: limpet learns which server owns a session id from the server's own
//! `Set-Cookie` (HAProxy `appsession JSESSIONID len 64 timeout 5h
//! request-learn`). The table is bounded (least recently used evicted
//! first, entries forgotten after `idle_timeout` unused; see
//! [`SessionTable`](super::table::SessionTable)); keys are fixed-seed hashes of the id's first
//! `max_len` characters, so several instances and restarts agree. Ids that only
//! clients sent are kept apart, on probation, so that strangers cannot
//! flush the sessions servers issued (see [`Table`]).

pub mod persist;
pub mod store;
pub mod table;

use std::sync::Arc;

use crate::fields::Fields;

use crate::config::LearnConfig;
use crate::decision::{Affinity, Decision, Outcome};
use crate::rendezvous::key_hash;
use crate::server::Servers;

use super::{Found, cookies};
use store::{Lookup, Op, SetNow, Store};
pub use table::{Learned, Table};

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

    pub fn find(&self, headers: &impl Fields, path: &str) -> Found {
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
                    if due {
                        store.touch(key);
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
            ..Found::default()
        }
    }

    /// Learns from the response; what the other instances must know before
    /// the client has the answer comes back (with `learn.store`).
    pub fn respond(
        &self,
        found: &Found,
        decision: Decision,
        headers: &impl Fields,
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
                        self.share(Op::Set(key), &mut now);
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
            // What it was on, for the store's compare-and-set.
            let from = self.table.peek(session);
            self.table.rewrite(session, server);
            self.share(
                match from {
                    Some(from) => Op::Move(session, from),
                    None => Op::Set(session),
                },
                &mut now,
            );
        } else if self.config.request_learn && found.affinity == Affinity::None && !learned {
            self.table.insert_probation(session, server);
        }
        now
    }

    /// Tells the other instances (through the store) where a session is
    /// now: the last such session of a response before the answer goes
    /// out (`now`), any other in the background.
    fn share(&self, op: Op, now: &mut Option<SetNow>) {
        if let Some(store) = &self.store
            && let Some(before) = now.replace(SetNow::new(store, op))
        {
            before.later();
        }
    }

    /// Does `found` call for a look in the shared store (a session id the
    /// local table does not know)?
    pub(super) fn wants_lookup(&self, found: &Found) -> bool {
        self.store.is_some() && found.affinity == Affinity::None && found.session.is_some()
    }

    /// Looks a session the local table does not know up in the shared
    /// store (within `store_timeout`); what is found is cached locally.
    pub async fn lookup(&self, mut found: Found) -> Found {
        let (Some(store), Some(key)) = (&self.store, found.session) else {
            return found;
        };
        let asked = std::time::Instant::now();
        let answer = store.lookup(key).await;
        found.waited = asked.elapsed();
        if let Lookup::Hit(n) = answer {
            found.affinity = match self.servers.get(n as usize) {
                Some(&i) if i != usize::MAX => Affinity::Server(i),
                _ => Affinity::Removed,
            };
        }
        found
    }
}
