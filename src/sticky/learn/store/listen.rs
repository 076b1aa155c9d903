//! The subscriber: applies the other instances' announcements to the
//! local table, subscribes again when the channel goes silent or the
//! master changes.

use std::time::Duration;

use futures_util::StreamExt;

use super::link::{BACKOFF_MAX, Link};
use super::wire::{self, Heard};

/// While up, each health check also publishes a heartbeat on the channel
/// (`<instance> @`), which every instance's subscriber hears, its own
/// included. A subscriber that hears nothing for this long is on a dead
/// connection (a Redis failover behind a VIP leaves it half open, and
/// nothing else would notice): it subscribes again.
const SILENT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(250);

impl Link {
    /// Applies the other instances' announcements to the local table;
    /// reconnects with capped backoff.
    pub(super) async fn subscribe(self) {
        let mut backoff = BACKOFF_MIN;
        let mut moved = self.moved.subscribe();
        loop {
            moved.mark_unchanged();
            let client = self.master.load().as_ref().map(|m| m.client.clone());
            if let Some(client) = client {
                let connected = tokio::time::timeout(SILENT, client.get_async_pubsub()).await;
                if let Ok(Ok(mut pubsub)) = connected
                    && pubsub.subscribe(&self.keys.channel).await.is_ok()
                {
                    backoff = BACKOFF_MIN;
                    let mut messages = pubsub.on_message();
                    let mut switched = false;
                    loop {
                        let heard = tokio::select! {
                            heard = tokio::time::timeout(SILENT, messages.next()) => heard,
                            _ = moved.changed() => {
                                switched = true;
                                break;
                            }
                        };
                        match heard {
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
                    if switched {
                        continue;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = moved.changed() => {}
            }
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
