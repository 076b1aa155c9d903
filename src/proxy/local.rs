//! What one worker keeps for the requests it serves: its view of the
//! running snapshot and its own connections to servers. A worker is one
//! thread with its own event loop; a request never leaves it, so none of
//! this is shared or locked. The snapshot is re-read only when a reload has
//! bumped the shared generation, so a request costs one relaxed atomic load
//! and a non-atomic reference count, not a contended one.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;

use super::client::Clients;
use crate::config::Limits;
use crate::runtime::{Shared, Snapshot};

/// A snapshot as one worker uses it, with the hyper server settings built
/// from its limits.
pub struct Current {
    pub snap: Arc<Snapshot>,
    pub server: auto::Builder<LocalExec>,
}

/// Runs hyper's background tasks (HTTP/2 streams) on the worker's own
/// thread: nothing a request touches needs to be `Send`.
#[derive(Debug, Clone, Copy)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: std::future::Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// One worker's state.
pub struct Local {
    /// This worker's number (0..workers), also its metrics shard.
    pub id: usize,
    pub shared: Arc<Shared>,
    generation: Cell<u64>,
    current: RefCell<Rc<Current>>,
    /// Idle keep-alive connections to servers, per server.
    pub clients: Clients,
    /// The same for limpet's own HTTP/1 path (`proxy/h1/`).
    pub raw: super::server_conns::ServerConns,
}

impl Local {
    pub fn new(id: usize, shared: Arc<Shared>) -> Local {
        let generation = shared.generation.load(Ordering::Acquire);
        let current = Rc::new(Current::of(shared.snapshot.load_full()));
        Local {
            id,
            shared,
            generation: Cell::new(generation),
            current: RefCell::new(current),
            clients: Clients::default(),
            raw: super::server_conns::ServerConns::default(),
        }
    }

    /// The running snapshot, as this worker sees it.
    pub fn current(&self) -> Rc<Current> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation != self.generation.get() {
            let snap = self.shared.snapshot.load_full();
            // A server gone, or at another address: its idle connections
            // are closed rather than left to age.
            let used = snap
                .pools
                .iter()
                .flat_map(|p| p.servers.iter().map(|s| s.slot))
                .collect();
            self.clients.keep_only(&used);
            self.raw.keep_only(&used);
            let fresh = Rc::new(Current::of(snap));
            *self.current.borrow_mut() = fresh;
            self.generation.set(generation);
        }
        Rc::clone(&self.current.borrow())
    }
}

impl Current {
    fn of(snap: Arc<Snapshot>) -> Current {
        Current {
            server: server_builder(&snap.limits),
            snap,
        }
    }
}

/// hyper's settings for client connections, from the limits.
pub fn server_builder(limits: &Limits) -> auto::Builder<LocalExec> {
    let mut builder = auto::Builder::new(LocalExec);
    builder
        .http1()
        .timer(TokioTimer::new())
        // limpet's own timers (listener/io.rs) answer 408 and close idle
        // connections.
        .header_read_timeout(None)
        .keep_alive(true)
        // hyper answers 431 itself past these; the request check
        // (proxy/check.rs) applies the same limits to HTTP/2.
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        // HTTP/2 counts 32 bytes more per field than the wire (RFC 9113
        // §6.5.2) and a browser sends one `cookie` field per cookie: room
        // for that, so the request check's limits are the ones that apply.
        .max_header_list_size(
            u32::try_from(
                limits
                    .max_header_bytes
                    .saturating_add(limits.max_headers.saturating_mul(2 * 32)),
            )
            .unwrap_or(u32::MAX),
        );
    builder
}
