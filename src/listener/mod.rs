//! Listeners: the accept loop of each bound socket, the connection limit,
//! and hyper's HTTP/1.1 + h2c server per connection, watched for graceful
//! shutdown.

mod io;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use io::{ConnState, TimedIo};

use crate::config::Limits;
use crate::proxy::{self, ConnCtx};
use crate::runtime::Shared;

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

/// hyper's server settings for client connections, from the limits.
pub fn server_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // limpet's own timers (io.rs) answer 408 and close idle connections.
        .header_read_timeout(None)
        .keep_alive(true)
        // hyper answers 431 itself past these; limpet's own check (proxy/check.rs)
        // applies the same limits to HTTP/2.
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// How long accepting pauses after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub struct Serve {
    pub listener: TcpListener,
    /// The socket's id in the snapshot's listeners.
    pub id: u64,
    pub shared: Arc<Shared>,
    pub permits: Arc<Semaphore>,
    pub stop: watch::Receiver<bool>,
}

/// Accepts connections until `stop` turns true, then lets in-flight requests
/// finish within the configuration's `shutdown_grace` and closes the rest.
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
        let snap = s.shared.snapshot.load();
        let Some(listener) = snap.listener(s.id) else {
            continue;
        };
        let stats = Arc::clone(&listener.stats);
        stats.opened();
        let state = Arc::new(ConnState::default());
        let io = TimedIo::new(
            stream,
            Arc::clone(&state),
            snap.timeouts.request_header,
            snap.timeouts.client_idle,
        );
        let ctx = Arc::new(ConnCtx {
            peer,
            listener: s.id,
            scheme: "http",
            state,
        });
        let shared = Arc::clone(&s.shared);
        let svc = service_fn(move |req| proxy::handle(Arc::clone(&shared), Arc::clone(&ctx), req));
        let conn = snap
            .server
            .serve_connection_with_upgrades(TokioIo::new(io), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "client connection ended with an error");
            }
            stats.closed();
            drop(permit);
        });
    }
    drop(s.listener);
    let grace = s.shared.snapshot.load().timeouts.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}
