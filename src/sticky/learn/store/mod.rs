//! The learned table shared by several limpet instances through Redis
//! (`learn.store`). The local table stays in front as the cache every
//! request reads; Redis is where the instances meet:
//!
//! * one key per session, `limpet:<pool>:<hash>`, where `<hash>` is the
//!   16-hex-digit table key (a fixed-seed hash of the id's first `max_len`
//!   characters, the same in every instance): live session ids never reach
//!   Redis. The value is the server's name; the TTL is `idle_timeout`.
//! * a session learned from a server's `Set-Cookie`, a failover rewrite and
//!   a session the server ended are written (`SET … PX`, `DEL`) and
//!   announced on the channel `limpet:<pool>`, so the other instances'
//!   caches follow at once. A learned or moved session is written before
//!   the answer goes out (within `store_timeout`, else from the queue), so
//!   the client's next request finds it through any instance;
//! * a session in use has its TTL refreshed at most once per refresh period
//!   (`GETEX … PX`, batched with every other write of the moment; re-written
//!   with `SET … NX` if Redis lost it), never a round trip per request. The
//!   refresh reads what Redis says: an entry naming another server than
//!   Redis (an announcement this instance missed) takes Redis's, so every
//!   instance routes a session where Redis says within one refresh period
//!   of its use;
//! * the write queue holds keys, not values: a write sends the table's
//!   value when it goes out, so a late retry never puts back an older
//!   server. A failover rewrite is a compare-and-set (a Lua script): of two
//!   instances moving one session, the first wins and the other follows;
//! * a local miss is looked up (one `GET`, within `store_timeout`) and the
//!   answer cached; so is "not there", for [`NEGATIVE_TTL`] (bounded to
//!   [`NEGATIVE_ENTRIES`] ids), so a client repeating an id nobody knows
//!   costs a `GET` a second, not one per request.
//!
//! Redis unreachable or slow never fails or delays a request by more than
//! `store_timeout`: lookups are skipped while it is down, writes wait in a
//! bounded queue, and a health check (with capped backoff) brings it back,
//! replays the queue, and re-publishes the local table (`SET … NX`) when
//! the marker's epoch is not the one this instance published under (Redis
//! restarted empty, or was flushed): every instance does, not only the
//! first to notice. At shutdown the queue is flushed within
//! `shutdown_grace`. With `redis+sentinel://` the health check asks the
//! sentinels for the master and follows it across a failover, and
//! re-publishes the local table to the new master (`SET … NX`): a master
//! demoted alive took writes after the promotion, and drops them when it
//! becomes a replica. Entries on probation (ids only a client sent) stay
//! local.

mod check;
mod link;
mod listen;
mod wire;
mod write;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::AsyncCommands;
use tokio::sync::{mpsc, oneshot};

use super::Table;
use crate::config::{StoreConfig, StoreTarget};
use check::Finder;
use link::{Link, Master};
pub use link::{Op, StoreStats};
use wire::Keys;
use write::Msg;

/// Writes waiting for the writer; past this, writes are dropped (and
/// counted): Redis is far behind, and the health check re-publishes the
/// table when it is back.
const QUEUE: usize = 65_536;

/// How long "Redis does not know this session" is believed without asking
/// again. An announcement of the session ends it sooner.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// Unknown ids remembered at most (a few MiB at worst).
pub const NEGATIVE_ENTRIES: u64 = 65_536;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The number of the server in the table (cached there).
    Hit(u64),
    Miss,
    /// Failed or too slow: the request goes on without.
    Error,
    /// The store is down: not asked.
    Skipped,
}

/// A session to write to the store before the answer that made it reaches
/// the client: see [`Store::set_now`].
#[derive(Debug)]
pub struct SetNow {
    store: Arc<Store>,
    op: Op,
}

impl SetNow {
    /// `op`: [`Op::Set`] or [`Op::Move`].
    pub fn new(store: &Arc<Store>, op: Op) -> SetNow {
        SetNow {
            store: Arc::clone(store),
            op,
        }
    }

    /// Written in the background instead.
    pub fn later(self) {
        self.store.send(self.op);
    }

    /// `spent`: how long the request already waited for the store.
    pub async fn apply(self, spent: Duration) {
        self.store.set_now(self.op, spent).await;
    }
}

/// One pool's connection to the shared table.
pub struct Store {
    /// The URL, password masked.
    pub shown: String,
    /// What the background tasks use too: the connection, the key names,
    /// the counters, the table.
    link: Link,
    ops: mpsc::Sender<Msg>,
    pub stats: Arc<StoreStats>,
    /// What the configuration said (URL and password), to keep the store
    /// across a reload that does not change it.
    pub identity: String,
    /// How often an entry in use has its TTL refreshed, in seconds.
    pub refresh_every_s: u32,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.link.keys.prefix)
            .field("up", &self.is_up())
            .finish()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Store {
    /// Connects (lazily) and starts the writer, the health check and the
    /// subscriber on the current Tokio runtime; `None` outside one.
    ///
    /// `stats`: the counters of the store this one replaces (a reload that
    /// changed the URL, the password or the table), which go on counting:
    /// counters reset only when the process restarts.
    pub fn start(
        pool: &str,
        config: &StoreConfig,
        table: Table,
        stats: Option<Arc<StoreStats>>,
    ) -> Option<Arc<Store>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let _guard = handle.enter();
        let found = match &config.target {
            StoreTarget::Redis(info) => redis::Client::open(info.clone())
                .and_then(Master::new)
                .map(|master| (Finder::Fixed, Some(master))),
            StoreTarget::Sentinel(target) => Finder::sentinel(target).map(|f| (f, None)),
        };
        let (finder, master) = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(pool, store = %config.shown, error = %e, "cannot use the store");
                return None;
            }
        };
        let keys = Keys::new(pool);
        let (ttl_ms, refresh_every_s) = ttl_and_refresh(table.idle);
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = stats.unwrap_or_default();
        let link = Link {
            pool: pool.into(),
            shown: config.shown.clone(),
            keys,
            master: Arc::new(arc_swap::ArcSwapOption::from(master.map(Arc::new))),
            moved: Arc::new(tokio::sync::watch::Sender::new(0)),
            up: Arc::new(AtomicBool::new(false)),
            stats: Arc::clone(&stats),
            table: table.clone(),
            ttl_ms,
            instance: format!("{:016x}", fastrand::u64(..)),
            pending: Arc::new(std::sync::Mutex::new(VecDeque::new())),
            restored: Arc::new(AtomicBool::new(false)),
            misses: moka::sync::Cache::builder()
                .max_capacity(NEGATIVE_ENTRIES)
                .time_to_live(NEGATIVE_TTL)
                .build(),
            timeout_us: Arc::new(AtomicU64::new(micros(config.timeout))),
        };
        let tasks = vec![
            handle.spawn(link.clone().write(rx)).abort_handle(),
            handle.spawn(link.clone().check(finder)).abort_handle(),
            handle.spawn(link.clone().subscribe()).abort_handle(),
        ];
        Some(Arc::new(Store {
            shown: config.shown.clone(),
            link,
            ops: tx,
            stats,
            identity: config.identity.clone(),
            refresh_every_s,
            tasks,
        }))
    }

    pub fn is_up(&self) -> bool {
        self.link.is_up()
    }

    fn timeout(&self) -> Duration {
        self.link.timeout()
    }

    /// A reload kept this store (same Redis, same password) and says how
    /// long a request may wait for it from now on.
    pub fn set_timeout(&self, timeout: Duration) {
        self.link
            .timeout_us
            .store(micros(timeout), Ordering::Relaxed);
    }

    /// The table was just restored from `state_dir`: Redis's word wins
    /// over it, as soon as Redis answers.
    pub fn check_restored(&self) {
        self.link.restored.store(true, Ordering::Relaxed);
    }

    /// Does this store serve `table` (a reload may have replaced it)?
    pub fn serves(&self, table: &Table) -> bool {
        self.link.table.same(table)
    }

    fn send(&self, op: Op) {
        if self.ops.try_send(Msg::Op(op)).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A server issued (or took over) this session: written in the
    /// background, with the table's value when it goes.
    pub fn set(&self, key: u64) {
        self.send(Op::Set(key));
    }

    /// A server issued (or took over) this session, and the answer that
    /// says so is about to reach the client: written and announced before
    /// it does, so that the client's next request finds the session through
    /// any instance (an L4 balancer may send it to another one at once).
    /// Waits at most `store_timeout` less `spent` (what the request already
    /// waited for the store); past that, or with the store down, the write
    /// goes to the background queue and the answer goes on.
    pub async fn set_now(&self, op: Op, spent: Duration) {
        let budget = self.timeout().saturating_sub(spent);
        if !self.is_up() || budget.is_zero() {
            return self.send(op);
        }
        // Too slow or failed: sent again from the queue (the same value
        // twice is harmless).
        if !self.link.send(std::slice::from_ref(&op), budget).await {
            self.send(op);
        }
    }

    /// The session is in use: refresh its TTL, and follow Redis if it
    /// names another server.
    pub fn touch(&self, key: u64) {
        self.send(Op::Touch(key));
    }

    /// The server ended the session.
    pub fn end(&self, key: u64) {
        self.send(Op::End(key));
    }

    /// Sends every write still queued, each batch within `store_timeout`,
    /// trying until `deadline` (shutdown). Whether all went.
    pub async fn flush(&self, deadline: tokio::time::Instant) -> bool {
        let (done, result) = oneshot::channel();
        let queued = tokio::time::timeout_at(deadline, self.ops.send(Msg::Flush(deadline, done)));
        if !matches!(queued.await, Ok(Ok(()))) {
            return false;
        }
        matches!(
            tokio::time::timeout_at(deadline, result).await,
            Ok(Ok(true))
        )
    }

    /// Asks the store which server holds session `key`, within
    /// `store_timeout`; a hit is cached in the local table.
    pub async fn lookup(&self, key: u64) -> Lookup {
        if !self.is_up() {
            self.stats.lookup_skipped.fetch_add(1, Ordering::Relaxed);
            return Lookup::Skipped;
        }
        if self.link.misses.contains_key(&key) {
            self.stats
                .lookup_miss_cached
                .fetch_add(1, Ordering::Relaxed);
            return Lookup::Miss;
        }
        let Some(mut conn) = self.link.conn() else {
            self.stats.lookup_skipped.fetch_add(1, Ordering::Relaxed);
            return Lookup::Skipped;
        };
        let name = self.link.keys.key(key);
        let got = tokio::time::timeout(self.timeout(), conn.get::<_, Option<String>>(name)).await;
        match got {
            Ok(Ok(Some(server))) => match self.link.table.insert(key, &server) {
                Some(n) => {
                    self.stats.lookup_hit.fetch_add(1, Ordering::Relaxed);
                    Lookup::Hit(n)
                }
                None => {
                    tracing::debug!(pool = %self.link.pool, server, "the store names a server this pool does not have");
                    self.link.error();
                    self.stats.lookup_miss.fetch_add(1, Ordering::Relaxed);
                    Lookup::Miss
                }
            },
            Ok(Ok(None)) => {
                self.link.misses.insert(key, ());
                self.stats.lookup_miss.fetch_add(1, Ordering::Relaxed);
                Lookup::Miss
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "store lookup failed");
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.stats.lookup_error.fetch_add(1, Ordering::Relaxed);
                Lookup::Error
            }
            Err(_) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.stats.lookup_error.fetch_add(1, Ordering::Relaxed);
                Lookup::Error
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The TTL of a session in Redis (ms) and how often a session in use has
/// it refreshed (s): a tenth of the idle timeout, at least every minute,
/// at most every second; the TTL is the idle timeout, but never shorter
/// than two refresh periods, or Redis would forget a session in use when
/// `idle_timeout` is under two seconds.
fn ttl_and_refresh(idle: Duration) -> (u64, u32) {
    let refresh_s = u32::try_from((idle / 10).as_secs().clamp(1, 60)).unwrap_or(60);
    let idle_ms = crate::clock::to_ms(idle);
    (idle_ms.max(2_000 * u64::from(refresh_s)), refresh_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_in_use_outlives_its_ttl_in_redis_whatever_idle_timeout() {
        assert_eq!(
            ttl_and_refresh(Duration::from_secs(5 * 3600)),
            (18_000_000, 60)
        );
        assert_eq!(ttl_and_refresh(Duration::from_secs(300)), (300_000, 30));
        // Refreshed every second at most: a TTL of 2 s, not 100 ms.
        assert_eq!(ttl_and_refresh(Duration::from_millis(100)), (2_000, 1));
        assert_eq!(ttl_and_refresh(Duration::from_secs(15)), (15_000, 1));
    }
}
