//! Learned tables on disk, for pools with `persist: true`: restored from
//! `state_dir` when a pool appears (every pool at start), written every
//! [`PERSIST_EVERY`] and once more at shutdown.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::runtime::{Shared, Snapshot};
use crate::sticky;

/// Restores learned tables from `state_dir` for pools that are new in this
/// snapshot (all of them at start).
pub(super) fn restore_learned(snapshot: &Snapshot, previous: &Snapshot, first: bool) {
    for pool in snapshot.pools.iter().filter(|p| p.persist) {
        let known = !first && previous.pool(&pool.name).is_some_and(|p| p.persist);
        let Some(table) = pool.sticky.learned().filter(|_| !known) else {
            continue;
        };
        match sticky::learn::persist::load(&snapshot.state_dir, &pool.name, table) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(pool = %pool.name, sessions = n, "learned sessions restored");
                if let Some(store) = pool.sticky.store() {
                    store.check_restored();
                }
            }
            Err(e) => tracing::warn!(pool = %pool.name, "{e}"),
        }
    }
}

/// Writes the learned tables of pools with `persist: true` to `state_dir`.
pub fn persist_learned(snapshot: &Snapshot) {
    for pool in snapshot.pools.iter().filter(|p| p.persist) {
        let Some(table) = pool.sticky.learned() else {
            continue;
        };
        match sticky::learn::persist::save(&snapshot.state_dir, &pool.name, table) {
            Ok(n) => tracing::debug!(pool = %pool.name, sessions = n, "learned sessions saved"),
            Err(e) => tracing::error!(pool = %pool.name, "{e}"),
        }
    }
}

/// Sends the writes the shared stores still hold (shutdown), each batch
/// within `store_timeout`, until `deadline` (`shutdown_grace` after the
/// stop began; one try at least).
pub(super) async fn flush_stores(snapshot: &Snapshot, deadline: tokio::time::Instant) {
    for pool in &snapshot.pools {
        if let Some(store) = pool.sticky.store() {
            let at_least = tokio::time::Instant::now() + std::time::Duration::from_millis(100);
            if store.flush(deadline.max(at_least)).await {
                tracing::debug!(pool = %pool.name, "the shared session store has every write");
            }
        }
    }
}

/// How often learned tables are written to `state_dir`.
pub const PERSIST_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) async fn persist_periodically(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PERSIST_EVERY) => {}
            () = stop.cancelled() => return,
        }
        let snapshot = shared.snapshot.load_full();
        // File writes and fsync block: keep them off the runtime's workers.
        let _ = tokio::task::spawn_blocking(move || persist_learned(&snapshot)).await;
    }
}
