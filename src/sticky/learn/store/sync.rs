//! The store's background work: the writer (batched pipelines, a bounded
//! queue kept while Redis is down), the health check (with capped backoff,
//! replay, re-publishing a table Redis lost, reconciling a restored one) and
//! the subscriber that applies the other instances' announcements.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use super::wire::{self, Heard, Keys};
use crate::sticky::learn::{Learned, Table};

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
    /// Not looked up: Redis did not know it a moment ago.
    pub lookup_miss_cached: AtomicU64,
    /// Writes dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// A write for the store.
#[derive(Debug, Clone)]
pub enum Op {
    /// A session and its server (learned, or moved by a failover).
    Set(u64, Arc<str>),
    /// Refresh the TTL of a session in use.
    Touch(u64, Arc<str>),
    /// The server ended the session.
    End(u64),
}

/// A connection to Redis that reconnects by itself when the connection
/// drops (not when it merely goes silent: see [`Link::check`]).
pub(super) fn manager(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
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
    /// Replaced when Redis stops answering on it (see [`Link::check`]).
    pub(super) conn: Arc<arc_swap::ArcSwap<ConnectionManager>>,
    pub(super) client: redis::Client,
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
}

impl Link {
    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub(super) fn error(&self) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The connection (a cheap handle).
    pub(super) fn conn(&self) -> ConnectionManager {
        (**self.conn.load()).clone()
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
    pub(super) async fn write(self, mut rx: mpsc::Receiver<Op>) {
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
                        .arg(self.keys.key(*key))
                        .arg(self.ttl_ms);
                    touched.push((*key, server));
                }
                Op::End(key) => {
                    pipe.cmd("DEL").arg(self.keys.key(*key)).ignore();
                    pipe.cmd("PUBLISH")
                        .arg(&self.keys.channel)
                        .arg(wire::announce_end(&self.instance, *key))
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
            .arg(self.keys.key(key))
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
    pub(super) async fn check(self) {
        let mut backoff = BACKOFF_MIN;
        let mut first = true;
        loop {
            let mut conn = self.conn();
            let probe = tokio::time::timeout(SLOW, conn.exists::<_, bool>(&self.keys.marker)).await;
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
                let heartbeat = wire::heartbeat(&self.instance);
                let _ = tokio::time::timeout(
                    SLOW,
                    conn.publish::<_, _, ()>(&self.keys.channel, heartbeat),
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
                pipe.cmd("GET").arg(self.keys.key(e.key));
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
    fn shared_entries(&self) -> Vec<Learned> {
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
                let ms = crate::clock::to_ms(e.remaining).max(1);
                self.add_set_nx(&mut pipe, e.key, &e.server, ms);
            }
            if !self.run(&pipe).await {
                return false;
            }
        }
        let mut conn = self.conn();
        let marked = tokio::time::timeout(SLOW, conn.set::<_, _, ()>(&self.keys.marker, 1)).await;
        if matches!(marked, Ok(Ok(()))) {
            true
        } else {
            self.error();
            false
        }
    }

    /// Applies the other instances' announcements to the local table;
    /// reconnects with capped backoff.
    pub(super) async fn subscribe(self, client: redis::Client) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let connected = tokio::time::timeout(SLOW, client.get_async_pubsub()).await;
            if let Ok(Ok(mut pubsub)) = connected
                && pubsub.subscribe(&self.keys.channel).await.is_ok()
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

    /// Another instance's announcement, applied to the local table.
    fn apply(&self, payload: &[u8]) {
        let Some(heard) = wire::hear(payload) else {
            return;
        };
        if heard.from() == self.instance {
            return;
        }
        match heard {
            Heard::Set { key, server, .. } => {
                self.misses.invalidate(&key);
                if self.table.insert(key, server).is_none() {
                    self.error();
                }
            }
            Heard::End { key, .. } => self.table.remove(key),
        }
    }
}
