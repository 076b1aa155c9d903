//! The writer: batched pipelines from the queue, a bounded list of what
//! waits while Redis is down, and the last flush at shutdown.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::link::{Link, Op, SLOW};

/// Writes sent in one pipeline.
pub(super) const BATCH: usize = 512;

/// What the writer's queue carries.
#[derive(Debug)]
pub enum Msg {
    Op(Op),
    /// Send everything queued before this, and everything kept, until
    /// the deadline; then say whether it all went.
    Flush(Instant, oneshot::Sender<bool>),
}

impl Link {
    /// Sends the writes in batches, one pipeline each.
    pub(super) async fn write(self, mut rx: mpsc::Receiver<Msg>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut ops = Vec::with_capacity(BATCH);
        loop {
            batch.clear();
            if rx.recv_many(&mut batch, BATCH).await == 0 {
                return;
            }
            for msg in batch.drain(..) {
                match msg {
                    Msg::Op(op) => ops.push(op),
                    Msg::Flush(deadline, done) => {
                        // Queued before the flush: sent by it, each batch
                        // within `store_timeout`, not `SLOW`.
                        self.keep(ops.drain(..));
                        let _ = done.send(self.flush(deadline).await);
                    }
                }
            }
            if ops.is_empty() {
                continue;
            }
            if !self.is_up() || !self.send(&ops, SLOW).await {
                self.keep(ops.drain(..));
            }
            ops.clear();
        }
    }

    /// One pipeline for `ops`, within `limit`; a refreshed key Redis no
    /// longer had is written again (unless another instance wrote it
    /// meanwhile).
    pub(super) async fn send(&self, ops: &[Op], limit: Duration) -> bool {
        let mut pipe = redis::pipe();
        let mut replies = Vec::new();
        if self.add(&mut pipe, ops, &mut replies) == 0 {
            return true;
        }
        let Some(mut conn) = self.conn() else {
            return false;
        };
        let result =
            tokio::time::timeout(limit, pipe.query_async::<Vec<redis::Value>>(&mut conn)).await;
        let answers = match result {
            Ok(Ok(r)) => super::wire::texts(r),
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
        let lost = self.settle(replies, answers);
        if !lost.is_empty() {
            let mut pipe = redis::pipe();
            for (key, server) in &lost {
                self.add_set_nx(&mut pipe, *key, server, self.ttl_ms);
            }
            self.run(&pipe, limit).await;
        }
        true
    }

    /// Runs `pipe` within `limit`; a failure is counted.
    pub(super) async fn run(&self, pipe: &redis::Pipeline, limit: Duration) -> bool {
        let Some(mut conn) = self.conn() else {
            return false;
        };
        let ok = matches!(
            tokio::time::timeout(limit, pipe.query_async::<()>(&mut conn)).await,
            Ok(Ok(()))
        );
        if !ok {
            self.error();
        }
        ok
    }

    /// Sends every write kept for later, each batch within `store_timeout`
    /// (less if the deadline is nearer), trying again until `deadline`.
    /// Whether all went.
    async fn flush(&self, deadline: Instant) -> bool {
        loop {
            let ops = self.take_pending(BATCH);
            if ops.is_empty() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !left.is_zero() && self.send(&ops, self.timeout().min(left)).await {
                continue;
            }
            self.put_back(ops);
            let n = self.pending.lock().map_or(0, |p| p.len());
            if Instant::now() + Duration::from_millis(20) >= deadline {
                tracing::warn!(pool = %self.pool, store = %self.shown, writes = n, "shutting down with writes the shared session store did not take");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends the writes made while Redis was down.
    pub(super) async fn replay(&self) -> bool {
        loop {
            let ops = self.take_pending(BATCH);
            if ops.is_empty() {
                return true;
            }
            if !self.send(&ops, SLOW).await {
                self.put_back(ops);
                return false;
            }
        }
    }
}
