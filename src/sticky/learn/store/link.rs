//! What the store's tasks and its request-side handle share: the
//! connection to the master (replaced when Sentinel names another), the
//! counters, the table, and the writes of one batch with what their
//! answers mean for the table.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;

use super::wire::{self, Keys};
use crate::sticky::learn::Table;

/// How long a write pipeline or a health check may take.
pub(super) const SLOW: Duration = Duration::from_secs(2);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Writes kept while Redis is down, replayed when it is back.
const PENDING: usize = 100_000;

/// Counters of one pool's store (exported by the admin endpoint).
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Failed commands and health checks, and writes dropped.
    pub errors: AtomicU64,
    pub lookup_hit: AtomicU64,
    pub lookup_miss: AtomicU64,
    /// A lookup that failed or took longer than `store_timeout`.
    pub lookup_error: AtomicU64,
    /// Not looked up: the store was down.
    pub lookup_skipped: AtomicU64,
    /// Not looked up: Redis did not know it a moment ago.
    pub lookup_miss_cached: AtomicU64,
    /// The local table named another server than Redis and took Redis's:
    /// found by a TTL refresh (an announcement this instance missed) or
    /// by a failover rewrite another instance made first.
    pub corrected: AtomicU64,
    /// Writes dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// A write for the store. The queue holds keys, not values: the value
/// sent is the table's when the write goes out, so a write retried late
/// never puts back an older server over a newer one.
#[derive(Debug, Clone)]
pub enum Op {
    /// A session a server issued: its server now.
    Set(u64),
    /// A failover moved the session away from this server (the one it had):
    /// written only if Redis still names that server (or none), so that of
    /// two instances moving one session, one wins and the other follows.
    Move(u64, Arc<str>),
    /// The session is in use: refresh its TTL and read what Redis says.
    Touch(u64),
    /// The server ended the session.
    End(u64),
}

/// The master as known now.
pub(super) struct Master {
    pub(super) client: redis::Client,
    pub(super) manager: ConnectionManager,
    /// `host:port`, for logs.
    pub(super) addr: String,
}

impl Master {
    pub(super) fn new(client: redis::Client) -> redis::RedisResult<Master> {
        let addr = client.get_connection_info().addr().to_string();
        let manager = manager(&client)?;
        Ok(Master {
            client,
            manager,
            addr,
        })
    }
}

/// A connection to Redis that reconnects by itself when the connection
/// drops (not when it merely goes silent: see the health check).
fn manager(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(SLOW))
        .set_response_timeout(Some(SLOW))
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(BACKOFF_MAX)
        .set_number_of_retries(3);
    ConnectionManager::new_lazy_with_config(client.clone(), config)
}

/// What the background tasks share (and the request-side handle, for
/// its writes and lookups).
#[derive(Clone)]
pub struct Link {
    pub(super) pool: Arc<str>,
    pub(super) shown: String,
    pub(super) keys: Keys,
    /// `None` until Sentinel names the master; replaced when it names
    /// another, or when Redis stops answering on it.
    pub(super) master: Arc<ArcSwapOption<Master>>,
    /// Bumped when the master changes: the subscriber follows.
    pub(super) moved: Arc<watch::Sender<u64>>,
    pub(super) up: Arc<AtomicBool>,
    pub(super) stats: Arc<StoreStats>,
    pub(super) table: Table,
    pub(super) ttl_ms: u64,
    /// This instance's announcements carry it, so it skips its own.
    pub(super) instance: String,
    /// Writes made while Redis was down.
    pub(super) pending: Arc<std::sync::Mutex<VecDeque<Op>>>,
    /// The table was restored from `state_dir`: what it says must be
    /// checked against Redis (another instance may have moved sessions
    /// while this one was down) at the next successful health check.
    pub(super) restored: Arc<AtomicBool>,
    /// Ids Redis did not know, for a moment ([`super::NEGATIVE_TTL`]).
    pub(super) misses: moka::sync::Cache<u64, ()>,
    /// `store_timeout` in microseconds (a reload may change it).
    pub(super) timeout_us: Arc<AtomicU64>,
}

/// What one command of a batch answers, and what to do with it.
pub(super) enum Reply {
    /// `GETEX` of a refreshed session that had this server locally.
    Touch(u64, Arc<str>),
    /// The compare-and-set of a failover that wrote this server.
    Move(u64, Arc<str>),
}

impl Link {
    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub(super) fn error(&self) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn timeout(&self) -> Duration {
        Duration::from_micros(self.timeout_us.load(Ordering::Relaxed))
    }

    /// The connection to the master (a cheap handle), if one is known.
    pub(super) fn conn(&self) -> Option<ConnectionManager> {
        self.master.load().as_ref().map(|m| m.manager.clone())
    }

    /// Adds the write and the announcement of session `key` on `server`.
    pub(super) fn add_set(&self, pipe: &mut redis::Pipeline, key: u64, server: &str) {
        pipe.cmd("SET")
            .arg(self.keys.key(key))
            .arg(server)
            .arg("PX")
            .arg(self.ttl_ms)
            .ignore();
        pipe.cmd("PUBLISH")
            .arg(&self.keys.channel)
            .arg(wire::announce_set(&self.instance, key, server))
            .ignore();
    }

    /// Adds a write of session `key` on `server` unless Redis has one
    /// (another instance's is as good, and may be newer).
    pub(super) fn add_set_nx(
        &self,
        pipe: &mut redis::Pipeline,
        key: u64,
        server: &str,
        ttl_ms: u64,
    ) {
        pipe.cmd("SET")
            .arg(self.keys.key(key))
            .arg(server)
            .arg("PX")
            .arg(ttl_ms)
            .arg("NX")
            .ignore();
    }

    /// Adds `ops` to `pipe`, each with the table's value now; what the
    /// answers mean goes to `replies`, in order. The number of commands.
    pub(super) fn add(
        &self,
        pipe: &mut redis::Pipeline,
        ops: &[Op],
        replies: &mut Vec<Reply>,
    ) -> usize {
        let mut n = 0;
        for op in ops {
            match op {
                Op::Set(key) => {
                    let Some(server) = self.table.peek(*key) else {
                        continue;
                    };
                    self.add_set(pipe, *key, &server);
                }
                Op::Touch(key) => {
                    let Some(server) = self.table.peek(*key) else {
                        continue;
                    };
                    pipe.cmd("GETEX")
                        .arg(self.keys.key(*key))
                        .arg("PX")
                        .arg(self.ttl_ms);
                    replies.push(Reply::Touch(*key, server));
                }
                Op::Move(key, from) => {
                    let Some(server) = self.table.peek(*key) else {
                        continue;
                    };
                    if server == *from {
                        continue;
                    }
                    pipe.cmd("EVAL")
                        .arg(wire::MOVE_SCRIPT)
                        .arg(1)
                        .arg(self.keys.key(*key))
                        .arg(&**from)
                        .arg(&*server)
                        .arg(self.ttl_ms)
                        .arg(&self.keys.channel)
                        .arg(wire::announce_set(&self.instance, *key, &server));
                    replies.push(Reply::Move(*key, server));
                }
                Op::End(key) => {
                    pipe.cmd("DEL").arg(self.keys.key(*key)).ignore();
                    pipe.cmd("PUBLISH")
                        .arg(&self.keys.channel)
                        .arg(wire::announce_end(&self.instance, *key))
                        .ignore();
                }
            }
            n += 1;
        }
        n
    }

    /// Applies what Redis answered: a session Redis places elsewhere
    /// follows Redis (unless the table changed meanwhile: what it heard
    /// since is newer); a refreshed session Redis no longer had is
    /// returned, to be written again.
    pub(super) fn settle(
        &self,
        replies: Vec<Reply>,
        answers: Vec<Option<String>>,
    ) -> Vec<(u64, Arc<str>)> {
        let mut lost = Vec::new();
        for (reply, answer) in replies.into_iter().zip(answers) {
            let (key, sent) = match &reply {
                Reply::Touch(key, sent) | Reply::Move(key, sent) => (*key, sent),
            };
            match answer {
                None if matches!(reply, Reply::Touch(..)) => lost.push((key, Arc::clone(sent))),
                Some(redis_says)
                    if redis_says.as_str() != &**sent
                        && self.table.peek(key).as_deref() == Some(&**sent)
                        && self.table.insert(key, &redis_says).is_some() =>
                {
                    self.stats.corrected.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(pool = %self.pool, server = %redis_says, "a session follows the store");
                }
                _ => {}
            }
        }
        lost
    }

    /// Keeps writes for later (not refreshes: re-publishing covers them).
    pub(super) fn keep(&self, ops: impl IntoIterator<Item = Op>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for op in ops {
            if matches!(op, Op::Touch(..)) {
                continue;
            }
            if pending.len() == PENDING {
                pending.pop_front();
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            pending.push_back(op);
        }
    }

    /// Up to `n` of the writes kept for later.
    pub(super) fn take_pending(&self, n: usize) -> Vec<Op> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let n = pending.len().min(n);
        pending.drain(..n).collect()
    }

    /// Puts writes taken by [`take_pending`](Self::take_pending) back in front.
    pub(super) fn put_back(&self, ops: Vec<Op>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for op in ops.into_iter().rev() {
            pending.push_front(op);
        }
    }

    /// The local table's entries that are shared (not on probation).
    pub(super) fn shared_entries(&self) -> Vec<crate::sticky::learn::Learned> {
        let mut entries = self.table.entries();
        entries.retain(|e| !e.probation);
        entries
    }
}
