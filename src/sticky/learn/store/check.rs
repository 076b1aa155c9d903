//! The health check: finds the master (asking Sentinel, with
//! `redis+sentinel://`), marks the store up or down (one log line per
//! change), replays what waited, re-publishes the table when Redis lost
//! it (its epoch changed), and reconciles a table restored from disk.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::AsyncCommands;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use tokio::time::Instant;

use super::link::{BACKOFF_MAX, Link, Master, SLOW};
use super::wire;
use crate::config::SentinelTarget;

/// Health checks: every second while up; while down, from 250 ms
/// doubling to at most 2 s.
const CHECK_EVERY: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(250);

/// While up, the sentinels are asked again this often (and at once after
/// any failed check, or when the master says it is one no longer).
const ASK_SENTINELS_EVERY: Duration = Duration::from_secs(5);

/// Where the master comes from.
pub enum Finder {
    /// One fixed Redis.
    Fixed,
    /// The master Sentinel names.
    Sentinel {
        sentinel: Box<Sentinel>,
        master: String,
        node: SentinelNodeConnectionInfo,
        asked: Option<Instant>,
    },
}

impl Finder {
    pub fn sentinel(target: &SentinelTarget) -> redis::RedisResult<Finder> {
        let sentinel = Sentinel::build(target.sentinels.clone())?;
        let mut node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(target.settings.clone());
        if target.tls {
            node = node.set_tls_mode(redis::TlsMode::Secure);
        }
        Ok(Finder::Sentinel {
            sentinel: Box::new(sentinel),
            master: target.master.clone(),
            node,
            asked: None,
        })
    }
}

/// What the health check keeps from one round to the next.
struct Watch {
    /// The epoch of the marker this instance's table was published under.
    epoch: Option<String>,
    /// The last check passed.
    ok: bool,
}

impl Link {
    /// Watches Redis until the store is dropped.
    pub(super) async fn check(self, mut finder: Finder) {
        let mut backoff = BACKOFF_MIN;
        let mut first = true;
        let mut watch = Watch {
            epoch: None,
            ok: false,
        };
        loop {
            let (up, problem) = match self.find(&mut finder, watch.ok).await {
                Err(problem) => (false, problem),
                Ok(moved) => {
                    if moved {
                        // The new master has the marker it replicated,
                        // but not what the old one took after the
                        // promotion (dropped when Sentinel demotes it):
                        // publish the table to it again.
                        watch.epoch = None;
                    }
                    self.probe(&mut finder, &mut watch).await
                }
            };
            watch.ok = up;
            let was = self.up.swap(up, Ordering::Relaxed);
            let was = if first { !up } else { was };
            first = false;
            if up && !was {
                tracing::info!(pool = %self.pool, store = %self.shown, "the shared session store is reachable: learned sessions are shared");
            } else if !up && was {
                tracing::warn!(pool = %self.pool, store = %self.shown, error = %problem, "the shared session store is unreachable: routing from the local table");
            }
            if up {
                backoff = BACKOFF_MIN;
                if let Some(mut conn) = self.conn() {
                    let heartbeat = wire::heartbeat(&self.instance);
                    let _ = tokio::time::timeout(
                        SLOW,
                        conn.publish::<_, _, ()>(&self.keys.channel, heartbeat),
                    )
                    .await;
                }
                tokio::time::sleep(CHECK_EVERY).await;
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// Makes sure a master is known: with Sentinel, asks when none is
    /// known, after a failed check, and every [`ASK_SENTINELS_EVERY`].
    /// Whether Sentinel named another master than the one known.
    async fn find(&self, finder: &mut Finder, ok: bool) -> Result<bool, String> {
        let Finder::Sentinel {
            sentinel,
            master,
            node,
            asked,
        } = finder
        else {
            return Ok(false);
        };
        let known = self.master.load().is_some();
        if known && ok && asked.is_some_and(|t| t.elapsed() < ASK_SENTINELS_EVERY) {
            return Ok(false);
        }
        *asked = Some(Instant::now());
        let found = tokio::time::timeout(SLOW, sentinel.async_master_for(master, Some(node))).await;
        let client = match found {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                self.error();
                return Err(
                    if e.kind() == redis::ErrorKind::MasterNameNotFoundBySentinel {
                        format!("no sentinel knows a master named {master:?}")
                    } else {
                        format!("no sentinel names a master of {master:?} that answers: {e}")
                    },
                );
            }
            Err(_) => {
                self.error();
                return Err("the sentinels did not answer in time".into());
            }
        };
        let addr = client.get_connection_info().addr().to_string();
        let current = self.master.load();
        if current.as_ref().is_some_and(|m| m.addr == addr) {
            return Ok(false);
        }
        let next = Master::new(client).map_err(|e| e.to_string())?;
        match current.as_ref() {
            Some(before) => {
                tracing::warn!(pool = %self.pool, master = %master, from = %before.addr, to = %addr, "Sentinel names a new master: the shared session store follows it")
            }
            None => {
                tracing::info!(pool = %self.pool, master = %master, at = %addr, "Sentinel names the master of the shared session store")
            }
        }
        self.master.store(Some(Arc::new(next)));
        self.moved.send_modify(|n| *n += 1);
        Ok(current.is_some())
    }

    /// One check of the master: reachable (and still the master, with
    /// Sentinel), what waited sent, the table published under the
    /// marker's epoch. Up only when all of it went through.
    async fn probe(&self, finder: &mut Finder, watch: &mut Watch) -> (bool, String) {
        let Some(mut conn) = self.conn() else {
            return (false, "no master yet".into());
        };
        let sentinel = matches!(finder, Finder::Sentinel { .. });
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&self.keys.marker);
        if sentinel {
            pipe.cmd("ROLE");
        }
        let probe =
            tokio::time::timeout(SLOW, pipe.query_async::<Vec<redis::Value>>(&mut conn)).await;
        match probe {
            Ok(Ok(answers)) => {
                let mut answers = answers.into_iter();
                let epoch = match answers.next() {
                    Some(redis::Value::BulkString(b)) => {
                        Some(String::from_utf8_lossy(&b).into_owned())
                    }
                    _ => None,
                };
                if sentinel && !is_master(answers.next()) {
                    self.error();
                    if let Finder::Sentinel { asked, .. } = finder {
                        *asked = None;
                    }
                    return (false, "the master Sentinel named is a replica now".into());
                }
                let ok = self.replay().await
                    && self.publish_under(epoch, watch).await
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
                if let Some(m) = self.master.load().as_ref()
                    && let Ok(fresh) = Master::new(m.client.clone())
                {
                    self.master.store(Some(Arc::new(fresh)));
                }
                (false, "no answer in time".to_owned())
            }
        }
    }

    /// The marker holds a random epoch, set by the first instance to find
    /// Redis without one. Each instance re-publishes its confirmed entries
    /// (never over what Redis has) when the epoch is not the one it last
    /// published under, so after Redis restarts empty, or is flushed,
    /// every instance's sessions come back, not only the first's; and
    /// after Sentinel names a new master (`watch.epoch` cleared).
    async fn publish_under(&self, epoch: Option<String>, watch: &mut Watch) -> bool {
        if epoch.is_some() && epoch == watch.epoch {
            return true;
        }
        if !self.republish().await {
            return false;
        }
        let epoch = match epoch {
            Some(e) => e,
            None => {
                let mine = format!("{:016x}", fastrand::u64(..));
                let Some(mut conn) = self.conn() else {
                    return false;
                };
                // Set unless another instance set one first; either way
                // the table was published under what is there now.
                let mut pipe = redis::pipe();
                pipe.cmd("SET")
                    .arg(&self.keys.marker)
                    .arg(&mine)
                    .arg("NX")
                    .ignore();
                pipe.cmd("GET").arg(&self.keys.marker);
                match tokio::time::timeout(SLOW, pipe.query_async::<(Option<String>,)>(&mut conn))
                    .await
                {
                    Ok(Ok((Some(now),))) => now,
                    _ => {
                        self.error();
                        return false;
                    }
                }
            }
        };
        watch.epoch = Some(epoch);
        true
    }

    /// Writes every confirmed local entry with its remaining idle time,
    /// without overwriting what another instance wrote first.
    async fn republish(&self) -> bool {
        let entries = self.shared_entries();
        if !entries.is_empty() {
            tracing::info!(pool = %self.pool, sessions = entries.len(), "publishing the local table to the shared session store (new, emptied, or a new master)");
        }
        for chunk in entries.chunks(1000) {
            let mut pipe = redis::pipe();
            for e in chunk {
                let ms = crate::clock::to_ms(e.remaining).max(1);
                self.add_set_nx(&mut pipe, e.key, &e.server, ms);
            }
            if !self.run(&pipe, SLOW).await {
                return false;
            }
        }
        true
    }

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
            let Some(mut conn) = self.conn() else {
                return false;
            };
            let found =
                tokio::time::timeout(SLOW, pipe.query_async::<Vec<redis::Value>>(&mut conn)).await;
            let Ok(Ok(found)) = found else {
                self.error();
                return false;
            };
            for (e, server) in chunk.iter().zip(wire::texts(found)) {
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
}

/// `ROLE`'s answer says "master".
fn is_master(role: Option<redis::Value>) -> bool {
    match role {
        Some(redis::Value::Array(parts)) => {
            matches!(parts.first(), Some(redis::Value::BulkString(b)) if b == b"master")
        }
        _ => false,
    }
}
