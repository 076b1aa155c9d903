//! Stopping without cutting a request: when a listener stops (SIGTERM, an
//! upgrade handing over, a reload that removes it), each client connection
//! is closed only between two requests, in a way that races no client.
//!
//! A connection with a request in flight is told to close after it: the
//! response goes out with `Connection: close` (HTTP/1.1) or after a
//! `GOAWAY` (HTTP/2), and the client opens its next connection elsewhere.
//! A connection with nothing in flight is left open for [`IDLE_GRACE`]: a
//! client that sends its next request meanwhile gets it answered, and that
//! response closes the connection. Closing an idle kept-alive connection at
//! once, as hyper's own graceful shutdown does, would race a client that
//! is sending on it just then: it would see its request fail with the
//! connection closed under it. Only a connection idle for the whole grace
//! is closed as it is.

use std::future::Future;
use std::pin::pin;

use hyper_util::server::graceful::GracefulConnection;
use tokio_util::task::TaskTracker;

use crate::proxy::ConnState;
use crate::proxy::stop::{StopSignal, StopWatch};

pub use crate::proxy::conn::IDLE_GRACE;

/// The stop signal of one listener's connections, and their tasks.
pub struct Drain {
    stop: StopSignal,
    conns: TaskTracker,
}

/// What a connection watches for its listener's stop.
pub struct Watcher {
    stop: StopWatch,
}

impl Drain {
    pub fn new() -> Drain {
        Drain {
            stop: StopSignal::new(),
            conns: TaskTracker::new(),
        }
    }

    pub fn watcher(&self) -> Watcher {
        Watcher {
            stop: self.stop.watch(),
        }
    }

    /// Runs a connection's task on this worker's thread; [`shutdown`]
    /// waits for it.
    ///
    /// [`shutdown`]: Self::shutdown
    pub fn spawn(&self, conn: impl Future<Output = ()> + 'static) {
        self.conns.spawn_local(conn);
    }

    /// Tells every connection to close between two requests, and waits
    /// until all have.
    pub async fn shutdown(self) {
        self.stop.stop();
        self.conns.close();
        self.conns.wait().await;
    }
}

impl Default for Drain {
    fn default() -> Drain {
        Drain::new()
    }
}

impl Watcher {
    /// The listener's stop signal, for a connection that watches it itself
    /// (limpet's HTTP/1 path, `proxy/h1/`).
    pub fn stop(&self) -> &StopWatch {
        &self.stop
    }

    /// Serves `conn` until it ends; once the listener stops, closes it as
    /// the module documentation says. `state` is the connection's.
    pub async fn watch<C>(self, conn: C, state: &ConnState) -> Result<(), C::Error>
    where
        C: GracefulConnection,
    {
        let mut conn = pin!(conn);
        tokio::select! {
            r = conn.as_mut() => return r,
            () = self.stop.stopped() => {}
        }
        state.start_draining();
        let mut idle = pin!(tokio::time::sleep(IDLE_GRACE));
        loop {
            if state.in_flight() > 0 || state.is_tunnel() {
                break;
            }
            tokio::select! {
                r = conn.as_mut() => return r,
                () = state.request_began() => {}
                () = idle.as_mut() => break,
            }
        }
        conn.as_mut().graceful_shutdown();
        conn.await
    }
}
