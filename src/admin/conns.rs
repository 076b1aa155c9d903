//! The admin endpoint's connections: at most [`MAX`] open and [`PER_PEER`]
//! from one address, and which of them are between requests.
//!
//! Past the cap, limpet stops accepting (HAProxy's `maxconn`): the next
//! connection waits in the kernel's backlog instead of being closed. The
//! one connection taken out of the backlog to wait for a slot makes room
//! by closing the connection that has been idle longest (kept alive after
//! its last answer, or never having sent a request), so a neighbour holding
//! idle connections cannot lock the operator out; a connection in the
//! middle of a request is never closed for it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// Admin connections open at once. The admin endpoint is for a scraper, a
/// dashboard and an operator: it must not take the descriptors the proxy
/// needs.
pub const MAX: usize = 64;

/// Admin connections open at once from one address; more are closed at
/// once (a quarter of [`MAX`]: a single neighbour cannot fill the endpoint).
pub const PER_PEER: usize = 16;

/// The open connections.
#[derive(Default)]
pub struct Conns {
    open: Mutex<Vec<Conn>>,
    next: std::sync::atomic::AtomicU64,
    /// Told whenever a connection finishes a request.
    pub went_idle: Notify,
}

struct Conn {
    id: u64,
    peer: IpAddr,
    /// Since when it waits for a request; `None` while it serves one.
    idle_since: Option<Instant>,
    close: Arc<Notify>,
}

/// A connection's place in [`Conns`], shared by its task and its service;
/// the last one dropped takes it out.
pub struct Entry {
    conns: Arc<Conns>,
    id: u64,
    /// Told when the connection is to close (between requests).
    pub close: Arc<Notify>,
}

/// A request being served on a connection; when it is done (or dropped),
/// the connection is idle again.
pub struct Busy {
    conns: Arc<Conns>,
    id: u64,
}

impl Conns {
    fn with<T>(&self, f: impl FnOnce(&mut Vec<Conn>) -> T) -> T {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut open)
    }

    /// Records a connection from `peer`, or `None` when that address has
    /// [`PER_PEER`] open already. It is not idle (so not closed for
    /// another) until [`Entry::serve`].
    pub fn enter(self: &Arc<Self>, peer: IpAddr) -> Option<Arc<Entry>> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        self.with(|open| {
            if open.iter().filter(|c| c.peer == peer).count() >= PER_PEER {
                return None;
            }
            open.push(Conn {
                id,
                peer,
                idle_since: None,
                close: Arc::clone(&close),
            });
            Some(Arc::new(Entry {
                conns: Arc::clone(self),
                id,
                close,
            }))
        })
    }

    /// Closes the connection idle longest, if one is; true if one was.
    pub fn close_idlest(&self) -> bool {
        self.with(|open| {
            let idlest = open
                .iter_mut()
                .filter(|c| c.idle_since.is_some())
                .min_by_key(|c| c.idle_since);
            match idlest {
                Some(c) => {
                    // Closing once is enough; a second call picks another.
                    c.idle_since = None;
                    c.close.notify_one();
                    true
                }
                None => false,
            }
        })
    }

    fn set_idle(&self, id: u64, idle: bool) {
        self.with(|open| {
            if let Some(c) = open.iter_mut().find(|c| c.id == id) {
                c.idle_since = idle.then(Instant::now);
            }
        });
        if idle {
            self.went_idle.notify_waiters();
        }
    }
}

impl Entry {
    /// The connection has a slot and waits for its first request.
    pub fn serve(&self) {
        self.conns.set_idle(self.id, true);
    }

    /// The connection starts serving a request.
    pub fn busy(&self) -> Busy {
        self.conns.set_idle(self.id, false);
        Busy {
            conns: Arc::clone(&self.conns),
            id: self.id,
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.conns.with(|open| open.retain(|c| c.id != self.id));
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conns.set_idle(self.id, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_gets_at_most_per_peer_and_the_idlest_is_closed_first() {
        let conns = Arc::new(Conns::default());
        let a = IpAddr::from([127, 0, 0, 2]);
        let all: Vec<_> = (0..PER_PEER).map(|_| conns.enter(a).unwrap()).collect();
        assert!(conns.enter(a).is_none());
        // Waiting for a slot, a connection is not closed for another.
        let other = conns.enter(IpAddr::from([127, 0, 0, 3])).unwrap();
        assert!(!conns.close_idlest());
        // Every connection of `a` serves a request but the second: it is
        // the only one idle, and is closed once.
        for e in &all {
            e.serve();
        }
        let busy: Vec<_> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, e)| e.busy())
            .collect();
        assert!(conns.close_idlest());
        assert!(!conns.close_idlest());
        drop(busy);
        assert!(conns.close_idlest());
        // Gone, it makes room for its address.
        drop(all);
        assert!(conns.enter(a).is_some());
        drop(other);
        assert!(conns.with(|open| open.is_empty()));
    }
}
