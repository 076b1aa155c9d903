//! Listeners: binding a socket, and each worker's accept loop on its copy
//! of it — the connection limit, hyper's HTTP/1.1 + h2c server per
//! connection on the worker's thread, watched for graceful shutdown.

mod io;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use io::TimedIo;

use crate::proxy::{self, ConnCtx, Local};

/// Binds a listener socket the way a server should: SO_REUSEADDR, a deep
/// backlog, non-blocking.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// How long accepting pauses after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One worker accepting on one listener.
pub struct Serve {
    /// This worker's copy of the listening socket.
    pub listener: TcpListener,
    /// The socket's id in the snapshot's listeners.
    pub id: u64,
    pub local: Rc<Local>,
    pub permits: Arc<Semaphore>,
    pub stop: watch::Receiver<bool>,
}

/// Accepts connections until `stop` turns true, then lets in-flight requests
/// finish within the configuration's `shutdown_grace` and closes the rest.
/// Every connection is served on this worker's thread.
pub async fn serve(mut s: Serve) {
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&s.permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = s.stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = s.listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors (EMFILE, ENFILE) or memory: limpet's
                    // own shortage. Back off instead of spinning; the
                    // connection waits in the backlog.
                    match e.raw_os_error().filter(|&c| crate::resources::is_exhaustion(c)) {
                        Some(code) => crate::resources::exhausted("accepting a connection", code),
                        None => tracing::debug!(error = %e, "accept failed"),
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = s.stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let current = s.local.current();
        let Some(listener) = current.snap.listener(s.id) else {
            continue;
        };
        let stats = Arc::clone(&listener.stats);
        stats.opened();
        let ctx = Rc::new(ConnCtx::new(peer, s.id, "http"));
        let io = TimedIo::new(
            stream,
            Arc::clone(&ctx.state),
            current.snap.timeouts.request_header,
            current.snap.timeouts.client_idle,
        );
        let local = Rc::clone(&s.local);
        let svc = service_fn(move |req| proxy::handle(Rc::clone(&local), Rc::clone(&ctx), req));
        let conn = current
            .server
            .serve_connection_with_upgrades(TokioIo::new(io), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::task::spawn_local(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "client connection ended with an error");
            }
            stats.closed();
            drop(permit);
        });
    }
    drop(s.listener);
    let grace = s.local.current().snap.timeouts.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}
