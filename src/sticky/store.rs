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
//!   (a `PEXPIRE`, batched with every other write of the moment; re-written
//!   with `SET … NX` if Redis lost it), never a round trip per request;
//! * a local miss is looked up (one `GET`, within `store_timeout`) and the
//!   answer cached.
//!
//! Redis unreachable or slow never fails or delays a request by more than
//! `store_timeout`: lookups are skipped while it is down, writes wait in a
//! bounded queue, and a health check (with capped backoff) brings it back,
//! replays the queue, and re-publishes the local table (`SET … NX`) when
//! Redis came back empty (its marker key is gone). Entries on probation
//! (ids only a client sent) stay local.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use super::learn::Table;
use crate::config::StoreConfig;

/// Writes waiting for the writer; past this, writes are dropped (and
/// counted): Redis is far behind, and the health check re-publishes the
/// table when it is back.
const QUEUE: usize = 65_536;

/// Writes kept while Redis is down, replayed when it is back.
const PENDING: usize = 100_000;

/// Writes sent in one pipeline.
const BATCH: usize = 512;

/// How long a write pipeline or a health check may take.
const SLOW: Duration = Duration::from_secs(2);

/// Health checks: every second while up; while down, from 250 ms
/// doubling to at most 2 s.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// While up, each health check also publishes a heartbeat on the channel
/// (`<instance> @`), which every instance's subscriber hears, its own
/// included. A subscriber that hears nothing for this long is on a dead
/// connection (a Redis failover behind a VIP leaves it half open, and
/// nothing else would notice): it subscribes again.
const SILENT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

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
    /// Writes dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// A write for the store.
#[derive(Debug, Clone)]
enum Op {
    /// A session and its server (learned, or moved by a failover).
    Set(u64, Arc<str>),
    /// Refresh the TTL of a session in use.
    Touch(u64, Arc<str>),
    /// The server ended the session.
    End(u64),
}

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
    key: u64,
    server: Arc<str>,
}

impl SetNow {
    pub fn new(store: &Arc<Store>, key: u64, server: Arc<str>) -> SetNow {
        SetNow {
            store: Arc::clone(store),
            key,
            server,
        }
    }

    /// Written in the background instead.
    pub fn later(self) {
        self.store.set(self.key, self.server);
    }

    /// `spent`: how long the request already waited for the store.
    pub async fn apply(self, spent: Duration) {
        self.store.set_now(self.key, self.server, spent).await;
    }
}

/// One pool's connection to the shared table.
pub struct Store {
    /// The URL, password masked.
    pub shown: String,
    /// What the background tasks use too: the connection, the key names,
    /// the counters, the table.
    shared: Shared,
    /// `store_timeout` in microseconds (a reload may change it).
    timeout_us: AtomicU64,
    ops: mpsc::Sender<Op>,
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
            .field("prefix", &self.shared.names.prefix)
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

/// The names of a pool's keys.
#[derive(Debug, Clone)]
struct Names {
    /// `limpet:<pool>:`
    prefix: String,
    /// `limpet:<pool>`: the announcements.
    channel: String,
    /// Present while Redis holds this pool's sessions; gone after a restart
    /// without persistence or a flush.
    marker: String,
}

impl Names {
    fn new(pool: &str) -> Names {
        Names {
            prefix: format!("limpet:{pool}:"),
            channel: format!("limpet:{pool}"),
            marker: format!("limpet:{pool}:@present"),
        }
    }

    fn key(&self, key: u64) -> String {
        format!("{}{key:016x}", self.prefix)
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
        let client = match redis::Client::open(config.info.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(pool, store = %config.shown, error = %e, "cannot use the store");
                return None;
            }
        };
        let conn = match manager(&client) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(pool, store = %config.shown, error = %e, "cannot use the store");
                return None;
            }
        };
        let names = Names::new(pool);
        let (ttl_ms, refresh_every_s) = ttl_and_refresh(table.idle);
        let (tx, rx) = mpsc::channel(QUEUE);
        let up = Arc::new(AtomicBool::new(false));
        let stats = stats.unwrap_or_default();
        let pool: Arc<str> = pool.into();
        let instance = format!("{:016x}", fastrand::u64(..));
        let shared = Shared {
            pool: Arc::clone(&pool),
            shown: config.shown.clone(),
            names: names.clone(),
            conn: Arc::new(arc_swap::ArcSwap::from_pointee(conn)),
            client: client.clone(),
            up: Arc::clone(&up),
            stats: Arc::clone(&stats),
            table: table.clone(),
            ttl_ms,
            instance,
            pending: Arc::new(std::sync::Mutex::new(VecDeque::new())),
            restored: Arc::new(AtomicBool::new(false)),
        };
        let tasks = vec![
            handle.spawn(shared.clone().write(rx)).abort_handle(),
            handle.spawn(shared.clone().check()).abort_handle(),
            handle
                .spawn(shared.clone().subscribe(client))
                .abort_handle(),
        ];
        Some(Arc::new(Store {
            shown: config.shown.clone(),
            shared,
            timeout_us: AtomicU64::new(micros(config.timeout)),
            ops: tx,
            stats,
            identity: config.identity.clone(),
            refresh_every_s,
            tasks,
        }))
    }

    pub fn is_up(&self) -> bool {
        self.shared.is_up()
    }

    fn timeout(&self) -> Duration {
        Duration::from_micros(self.timeout_us.load(Ordering::Relaxed))
    }

    /// A reload kept this store (same Redis, same password) and says how
    /// long a request may wait for it from now on.
    pub fn set_timeout(&self, timeout: Duration) {
        self.timeout_us.store(micros(timeout), Ordering::Relaxed);
    }

    /// The table was just restored from `state_dir`: Redis's word wins
    /// over it, as soon as Redis answers.
    pub fn check_restored(&self) {
        self.shared.restored.store(true, Ordering::Relaxed);
    }

    /// Does this store serve `table` (a reload may have replaced it)?
    pub fn serves(&self, table: &Table) -> bool {
        self.shared.table.same(table)
    }

    fn send(&self, op: Op) {
        if self.ops.try_send(op).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A server issued (or took over) this session: written in the
    /// background.
    pub fn set(&self, key: u64, server: Arc<str>) {
        self.send(Op::Set(key, server));
    }

    /// A server issued (or took over) this session, and the answer that
    /// says so is about to reach the client: written and announced before
    /// it does, so that the client's next request finds the session through
    /// any instance (an L4 balancer may send it to another one at once).
    /// Waits at most `store_timeout` less `spent` (what the request already
    /// waited for the store); past that, or with the store down, the write
    /// goes to the background queue and the answer goes on.
    pub async fn set_now(&self, key: u64, server: Arc<str>, spent: Duration) {
        let budget = self.timeout().saturating_sub(spent);
        if !self.is_up() || budget.is_zero() {
            return self.set(key, server);
        }
        let mut pipe = redis::pipe();
        self.shared.add_set(&mut pipe, key, &server);
        let mut conn = self.shared.conn();
        match tokio::time::timeout(budget, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(pool = %self.shared.pool, error = %e, "store write failed");
                self.shared.error();
                self.set(key, server);
            }
            // Too slow: sent again from the queue (the same value twice is
            // harmless).
            Err(_) => {
                self.shared.error();
                self.set(key, server);
            }
        }
    }

    /// The session is in use: refresh its TTL.
    pub fn touch(&self, key: u64, server: Arc<str>) {
        self.send(Op::Touch(key, server));
    }

    /// The server ended the session.
    pub fn end(&self, key: u64) {
        self.send(Op::End(key));
    }

    /// Asks the store which server holds session `key`, within
    /// `store_timeout`; a hit is cached in the local table.
    pub async fn lookup(&self, key: u64) -> Lookup {
        if !self.is_up() {
            self.stats.lookup_skipped.fetch_add(1, Ordering::Relaxed);
            return Lookup::Skipped;
        }
        let mut conn = self.shared.conn();
        let name = self.shared.names.key(key);
        let got = tokio::time::timeout(self.timeout(), conn.get::<_, Option<String>>(name)).await;
        match got {
            Ok(Ok(Some(server))) => match self.shared.table.insert(key, &server) {
                Some(n) => {
                    self.stats.lookup_hit.fetch_add(1, Ordering::Relaxed);
                    Lookup::Hit(n)
                }
                None => {
                    tracing::debug!(pool = %self.shared.pool, server, "the store names a server this pool does not have");
                    self.shared.error();
                    self.stats.lookup_miss.fetch_add(1, Ordering::Relaxed);
                    Lookup::Miss
                }
            },
            Ok(Ok(None)) => {
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
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    (idle_ms.max(2_000 * u64::from(refresh_s)), refresh_s)
}

/// A connection to Redis that reconnects by itself when the connection
/// drops (not when it merely goes silent: see [`Shared::check`]).
fn manager(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(SLOW))
        .set_response_timeout(Some(SLOW))
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(BACKOFF_MAX)
        .set_number_of_retries(3);
    ConnectionManager::new_lazy_with_config(client.clone(), config)
}

/// What the background tasks share.
#[derive(Clone)]
struct Shared {
    pool: Arc<str>,
    shown: String,
    names: Names,
    /// Replaced when Redis stops answering on it (see [`Shared::check`]).
    conn: Arc<arc_swap::ArcSwap<ConnectionManager>>,
    client: redis::Client,
    up: Arc<AtomicBool>,
    stats: Arc<StoreStats>,
    table: Table,
    ttl_ms: u64,
    /// This instance's announcements carry it, so it skips its own.
    instance: String,
    /// Writes made while Redis was down.
    pending: Arc<std::sync::Mutex<VecDeque<Op>>>,
    /// The table was restored from `state_dir`: what it says must be
    /// checked against Redis (another instance may have moved sessions
    /// while this one was down) at the next successful health check.
    restored: Arc<AtomicBool>,
}

impl Shared {
    fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn error(&self) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The connection (a cheap handle).
    fn conn(&self) -> ConnectionManager {
        (**self.conn.load()).clone()
    }

    /// Adds the write and the announcement of session `key` on `server`.
    fn add_set(&self, pipe: &mut redis::Pipeline, key: u64, server: &str) {
        pipe.cmd("SET")
            .arg(self.names.key(key))
            .arg(server)
            .arg("PX")
            .arg(self.ttl_ms)
            .ignore();
        pipe.cmd("PUBLISH")
            .arg(&self.names.channel)
            .arg(format!("{} {key:016x} {server}", self.instance))
            .ignore();
    }

    /// Keeps writes for later (not refreshes: re-publishing covers them).
    fn keep(&self, ops: impl IntoIterator<Item = Op>) {
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

    /// Sends the writes in batches, one pipeline each.
    async fn write(self, mut rx: mpsc::Receiver<Op>) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            batch.clear();
            if rx.recv_many(&mut batch, BATCH).await == 0 {
                return;
            }
            if !self.is_up() {
                self.keep(batch.drain(..));
                continue;
            }
            if !self.send(&batch).await {
                self.keep(batch.drain(..));
            }
        }
    }

    /// One pipeline for `ops`; a refreshed key Redis no longer had is
    /// written again (unless another instance wrote it meanwhile).
    async fn send(&self, ops: &[Op]) -> bool {
        let mut pipe = redis::pipe();
        let mut touched = Vec::new();
        for op in ops {
            match op {
                Op::Set(key, server) => self.add_set(&mut pipe, *key, server),
                Op::Touch(key, server) => {
                    pipe.cmd("PEXPIRE")
                        .arg(self.names.key(*key))
                        .arg(self.ttl_ms);
                    touched.push((*key, server));
                }
                Op::End(key) => {
                    pipe.cmd("DEL").arg(self.names.key(*key)).ignore();
                    pipe.cmd("PUBLISH")
                        .arg(&self.names.channel)
                        .arg(format!("{} {key:016x}", self.instance))
                        .ignore();
                }
            }
        }
        let mut conn = self.conn();
        let result = tokio::time::timeout(SLOW, pipe.query_async::<Vec<i64>>(&mut conn)).await;
        let refreshed = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(pool = %self.pool, error = %e, "store write failed");
                self.error();
                return false;
            }
            Err(_) => {
                self.error();
                return false;
            }
        };
        let lost: Vec<_> = touched
            .iter()
            .zip(refreshed)
            .filter(|(_, r)| *r == 0)
            .map(|((k, s), _)| (*k, Arc::clone(s)))
            .collect();
        if !lost.is_empty() {
            let mut pipe = redis::pipe();
            for (key, server) in &lost {
                self.add_set_nx(&mut pipe, *key, server, self.ttl_ms);
            }
            self.run(&pipe).await;
        }
        true
    }

    /// Adds a write of session `key` on `server` unless Redis has one
    /// (another instance's is as good, and may be newer).
    fn add_set_nx(&self, pipe: &mut redis::Pipeline, key: u64, server: &str, ttl_ms: u64) {
        pipe.cmd("SET")
            .arg(self.names.key(key))
            .arg(server)
            .arg("PX")
            .arg(ttl_ms)
            .arg("NX")
            .ignore();
    }

    /// Runs `pipe` (within [`SLOW`]); a failure is counted.
    async fn run(&self, pipe: &redis::Pipeline) -> bool {
        let mut conn = self.conn();
        let ok = matches!(
            tokio::time::timeout(SLOW, pipe.query_async::<()>(&mut conn)).await,
            Ok(Ok(()))
        );
        if !ok {
            self.error();
        }
        ok
    }

    /// Watches Redis: marks the store up or down (one log line per
    /// change), replays what waited, re-publishes the table when Redis
    /// lost it.
    async fn check(self) {
        let mut backoff = BACKOFF_MIN;
        let mut first = true;
        loop {
            let mut conn = self.conn();
            let probe =
                tokio::time::timeout(SLOW, conn.exists::<_, bool>(&self.names.marker)).await;
            let (up, problem) = match probe {
                // Reachable: what waited goes first, then the table if
                // Redis lost it; up only when both went through.
                Ok(Ok(present)) => {
                    let ok = self.replay().await
                        && (present || self.republish().await)
                        && self.reconcile_restored().await;
                    (ok, "a write failed".to_owned())
                }
                Ok(Err(e)) if !e.is_timeout() => {
                    self.error();
                    (false, e.to_string())
                }
                _ => {
                    // Silent, not closed: a Redis that moved behind a VIP
                    // leaves the connection half open, and the manager
                    // reconnects only when it drops. A new one.
                    self.error();
                    if let Ok(fresh) = manager(&self.client) {
                        self.conn.store(Arc::new(fresh));
                    }
                    (false, "no answer in time".to_owned())
                }
            };
            let was = self.up.swap(up, Ordering::Relaxed) && !first;
            let was = if first { !up } else { was };
            first = false;
            if up && !was {
                tracing::info!(pool = %self.pool, store = %self.shown, "the shared session store is reachable: learned sessions are shared");
            } else if !up && was {
                tracing::warn!(pool = %self.pool, store = %self.shown, error = %problem, "the shared session store is unreachable: routing from the local table");
            }
            if up {
                backoff = BACKOFF_MIN;
                let heartbeat = format!("{} @", self.instance);
                let _ = tokio::time::timeout(
                    SLOW,
                    conn.publish::<_, _, ()>(&self.names.channel, heartbeat),
                )
                .await;
                tokio::time::sleep(CHECK_EVERY).await;
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// Sends the writes made while Redis was down.
    async fn replay(&self) -> bool {
        loop {
            let ops: Vec<Op> = {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                let n = pending.len().min(BATCH);
                pending.drain(..n).collect()
            };
            if ops.is_empty() {
                return true;
            }
            if !self.send(&ops).await {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for op in ops.into_iter().rev() {
                    pending.push_front(op);
                }
                return false;
            }
        }
    }

    /// Redis has none of this pool's sessions (restarted empty, flushed):
    /// writes every confirmed local entry with its remaining idle time,
    /// without overwriting what another instance wrote first, then the
    /// marker.
    /// After a restore from `state_dir`: every restored session that
    /// Redis places elsewhere (another instance moved it while this one
    /// was down) follows Redis. `false` when Redis did not answer (tried
    /// again at the next check).
    async fn reconcile_restored(&self) -> bool {
        if !self.restored.load(Ordering::Relaxed) {
            return true;
        }
        let entries = self.shared_entries();
        let mut moved = 0;
        for chunk in entries.chunks(1000) {
            let mut pipe = redis::pipe();
            for e in chunk {
                pipe.cmd("GET").arg(self.names.key(e.key));
            }
            let mut conn = self.conn();
            let found =
                tokio::time::timeout(SLOW, pipe.query_async::<Vec<Option<String>>>(&mut conn))
                    .await;
            let Ok(Ok(found)) = found else {
                self.error();
                return false;
            };
            for (e, server) in chunk.iter().zip(found) {
                if let Some(server) = server
                    && server.as_str() != &*e.server
                    && self.table.insert(e.key, &server).is_some()
                {
                    moved += 1;
                }
            }
        }
        if moved > 0 {
            tracing::info!(pool = %self.pool, sessions = moved, "restored sessions that another instance moved meanwhile follow it");
        }
        self.restored.store(false, Ordering::Relaxed);
        true
    }

    /// The local table's entries that are shared (not on probation).
    fn shared_entries(&self) -> Vec<super::learn::Saved> {
        let mut entries = self.table.entries();
        entries.retain(|e| !e.probation);
        entries
    }

    async fn republish(&self) -> bool {
        let entries = self.shared_entries();
        if !entries.is_empty() {
            tracing::info!(pool = %self.pool, sessions = entries.len(), "the shared session store lost this pool's sessions; publishing the local table");
        }
        for chunk in entries.chunks(1000) {
            let mut pipe = redis::pipe();
            for e in chunk {
                let ms = u64::try_from(e.remaining.as_millis()).unwrap_or(1).max(1);
                self.add_set_nx(&mut pipe, e.key, &e.server, ms);
            }
            if !self.run(&pipe).await {
                return false;
            }
        }
        let mut conn = self.conn();
        let marked = tokio::time::timeout(SLOW, conn.set::<_, _, ()>(&self.names.marker, 1)).await;
        if matches!(marked, Ok(Ok(()))) {
            true
        } else {
            self.error();
            false
        }
    }

    /// Applies the other instances' announcements to the local table;
    /// reconnects with capped backoff.
    async fn subscribe(self, client: redis::Client) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let connected = tokio::time::timeout(SLOW, client.get_async_pubsub()).await;
            if let Ok(Ok(mut pubsub)) = connected
                && pubsub.subscribe(&self.names.channel).await.is_ok()
            {
                backoff = BACKOFF_MIN;
                let mut messages = pubsub.on_message();
                loop {
                    match tokio::time::timeout(SILENT, messages.next()).await {
                        Ok(Some(msg)) => self.apply(msg.get_payload_bytes()),
                        Ok(None) => break,
                        // The store is down: no heartbeats to hear.
                        Err(_) if !self.is_up() => {}
                        Err(_) => {
                            tracing::warn!(pool = %self.pool, store = %self.shown, "no announcement, not even a heartbeat, for {SILENT:?}: subscribing again");
                            self.error();
                            break;
                        }
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// `<instance> <key>` (ended) or `<instance> <key> <server>` (set).
    fn apply(&self, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let mut parts = text.splitn(3, ' ');
        let (Some(from), Some(key)) = (parts.next(), parts.next()) else {
            return;
        };
        if from == self.instance {
            return;
        }
        let Ok(key) = u64::from_str_radix(key, 16) else {
            return;
        };
        match parts.next() {
            Some(server) if !server.is_empty() => {
                if self.table.insert(key, server).is_none() {
                    self.error();
                }
            }
            _ => self.table.remove(key),
        }
    }
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

    #[test]
    fn keys_are_the_table_key_in_hex_under_the_pool() {
        let n = Names::new("app");
        assert_eq!(n.key(0xab), "limpet:app:00000000000000ab");
        assert_eq!(n.channel, "limpet:app");
        assert!(!n.marker.ends_with(|c: char| c.is_ascii_hexdigit()));
    }
}
