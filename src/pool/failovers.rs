//! The most recent failovers of a pool, for the status page.

use std::sync::Arc;

/// One redispatch: a session's server was unusable and it went elsewhere.
#[derive(Debug, Clone)]
pub struct Failover {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub from: Arc<str>,
    pub to: Arc<str>,
}

/// The most recent failovers of a pool, newest last. Written only when a
/// request is redispatched, and never waited for: when another request is
/// writing, this one is not recorded.
#[derive(Debug, Default)]
pub struct Failovers {
    recent: std::sync::Mutex<std::collections::VecDeque<Failover>>,
}

impl Failovers {
    /// How many are kept.
    pub const KEEP: usize = 20;

    pub fn record(&self, from: &Arc<str>, to: &Arc<str>) {
        let Ok(mut recent) = self.recent.try_lock() else {
            return;
        };
        let now = crate::clock::unix_ms();
        // One line per (from, to) and second is enough to see what happened.
        if recent
            .back()
            .is_some_and(|l| l.from == *from && l.to == *to && now.saturating_sub(l.at_ms) < 1000)
        {
            return;
        }
        if recent.len() == Self::KEEP {
            recent.pop_front();
        }
        recent.push_back(Failover {
            at_ms: now,
            from: Arc::clone(from),
            to: Arc::clone(to),
        });
    }

    pub fn list(&self) -> Vec<Failover> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}
