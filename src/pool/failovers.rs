//! The most recent failovers of a pool, for the status page.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
///
/// While a server is down every request of its sessions is redispatched,
/// from every worker at once; the list keeps one line per (from, to) and
/// second, so nearly all of those requests have nothing to write. They
/// learn it from two atomics that only a written line changes (read-only
/// for everyone else, so the workers do not pass a cache line or a lock
/// between them); only the rest take the lock.
#[derive(Debug, Default)]
pub struct Failovers {
    recent: std::sync::Mutex<std::collections::VecDeque<Failover>>,
    /// The last line's (from, to), as [`pair`] names it, and its time. A
    /// hint: read apart from each other and from the list, so a line may
    /// be skipped or taken to the lock for nothing while another is
    /// written, never wrongly kept.
    last_pair: AtomicU64,
    last_ms: AtomicU64,
}

/// A (from, to) pair by the names' addresses: names live as long as the
/// snapshot that holds them (a reload makes new ones, which only costs one
/// more trip to the lock).
fn pair(from: &Arc<str>, to: &Arc<str>) -> u64 {
    let (f, t) = (
        Arc::as_ptr(from).cast::<u8>() as u64,
        Arc::as_ptr(to).cast::<u8>() as u64,
    );
    f.rotate_left(32) ^ t
}

impl Failovers {
    /// How many are kept.
    pub const KEEP: usize = 20;

    pub fn record(&self, from: &Arc<str>, to: &Arc<str>) {
        let now = crate::clock::unix_ms();
        let p = pair(from, to);
        // One line per (from, to) and second is enough to see what happened.
        if self.last_pair.load(Ordering::Relaxed) == p
            && now.saturating_sub(self.last_ms.load(Ordering::Relaxed)) < 1000
        {
            return;
        }
        let Ok(mut recent) = self.recent.try_lock() else {
            return;
        };
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
        self.last_ms.store(now, Ordering::Relaxed);
        self.last_pair.store(p, Ordering::Relaxed);
    }

    pub fn list(&self) -> Vec<Failover> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;
    use std::time::Duration;

    #[test]
    fn one_line_per_pair_and_second_then_the_next() {
        let clock = clock::pause();
        let f = Failovers::default();
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        for _ in 0..100 {
            f.record(&a, &b);
        }
        f.record(&a, &c);
        f.record(&a, &b);
        clock.advance(Duration::from_millis(999));
        f.record(&a, &b);
        clock.advance(Duration::from_millis(1));
        f.record(&a, &b);
        let lines: Vec<_> = f
            .list()
            .iter()
            .map(|l| format!("{}>{}", l.from, l.to))
            .collect();
        assert_eq!(lines, ["a>b", "a>c", "a>b", "a>b"]);
    }

    #[test]
    fn only_the_newest_are_kept() {
        let f = Failovers::default();
        let names: Vec<Arc<str>> = (0..=Failovers::KEEP)
            .map(|i| i.to_string().into())
            .collect();
        let to: Arc<str> = "x".into();
        for n in &names {
            f.record(n, &to);
        }
        let list = f.list();
        assert_eq!(list.len(), Failovers::KEEP);
        assert_eq!(&*list[0].from, "1");
    }
}
