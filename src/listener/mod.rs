//! Listeners: a listener's sockets (one per worker, with SO_REUSEPORT, see
//! [`sockets`] for how none of their connections is lost), and each
//! worker's accept loop on its socket — the connection limit, limpet's
//! HTTP/1 path or hyper's HTTP/1.1 + h2c server per connection on the
//! worker's thread, watched for graceful shutdown.

mod drain;
mod io;
pub mod prelude;
mod sockets;

use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

pub use io::TimedIo;
pub use sockets::{bind, group};

use crate::proxy::local::Current;
use crate::proxy::{self, ConnCtx, Local};
use drain::{Drain, Watcher};
use prelude::{Prefixed, PreludeError, Proxied};
use sockets::take_backlog;

/// How long accepting pauses after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One worker accepting on one listener: what its accept loop needs.
pub struct Acceptor {
    /// This worker's socket of the listener.
    pub listener: TcpListener,
    /// The socket's id in the snapshot's listeners.
    pub id: u64,
    pub local: Rc<Local>,
    pub permits: Arc<Semaphore>,
    pub stop: CancellationToken,
}

/// Accepts connections until `stop` is cancelled, then lets in-flight requests
/// finish within the configuration's `shutdown_grace` and closes the rest.
/// Every connection is served on this worker's thread. A connection once
/// accepted is always served (see [`sockets`] for why none may be dropped):
/// one that waits for a slot when the stop comes gets it as the in-flight
/// ones end, and the connections still queued in the socket when the loop
/// stops are accepted too ([`take_backlog`]).
pub async fn serve(s: Acceptor) {
    let graceful = Drain::new();
    let mut stopped = pin!(s.stop.cancelled());
    loop {
        // Accepted first, then given a slot of `max_connections`: a listener
        // has several sockets and the kernel picks the one a connection
        // waits in, so a loop that held a slot while waiting on its own
        // socket could keep it from a connection queued in another.
        let (stream, peer) = tokio::select! {
            biased;
            () = stopped.as_mut() => break,
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
        };
        // Beyond the limit the connection waits here, unserved (and one per
        // socket at most: the rest wait in the kernel's accept queues).
        let permit = tokio::select! {
            biased;
            p = Arc::clone(&s.permits).acquire_owned() => p,
            () = stopped.as_mut() => {
                // Accepted, so served: closing it would fail a client that
                // has done nothing wrong. It waits for its slot beside the
                // connections that drain.
                serve_later(&s.local, s.id, &s.permits, &graceful, stream, peer);
                break;
            }
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { break };
        let conn = connection(
            Rc::clone(&s.local),
            s.id,
            stream,
            peer,
            permit,
            graceful.watcher(),
        );
        graceful.spawn(conn);
    }
    // The connections the kernel queued in this socket before the stop are
    // served too. Only then is this copy of the socket let go: if it was
    // the last one, the socket closes, and the kernel resets what is queued.
    match s.listener.into_std() {
        Ok(socket) => {
            for (stream, peer) in take_backlog(&socket) {
                serve_later(&s.local, s.id, &s.permits, &graceful, stream, peer);
            }
            drop(socket);
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot take the connections queued in a stopped listener")
        }
    }
    // Connections still in their PROXY header or TLS handshake are waited
    // for too; they end within `request_header`.
    let grace = s.local.current().snap.timeouts.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}

/// Serves a connection accepted as the loop stopped, once a slot of
/// `max_connections` frees up (the in-flight connections are closing).
fn serve_later(
    local: &Rc<Local>,
    id: u64,
    permits: &Arc<Semaphore>,
    graceful: &Drain,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let (local, permits, watcher) = (Rc::clone(local), Arc::clone(permits), graceful.watcher());
    graceful.spawn(async move {
        if let Ok(permit) = permits.acquire_owned().await {
            connection(local, id, stream, peer, permit, watcher).await;
        }
    });
}

/// One accepted connection with its slot of `max_connections`, served
/// until it ends: plain HTTP at once, else its prelude first ([`Edge`]).
async fn connection(
    local: Rc<Local>,
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    watcher: Watcher,
) {
    let _ = stream.set_nodelay(true);
    let current = local.current();
    let Some(listener) = current.snap.listener(id) else {
        // Removed by a reload since the accept: its requests could be
        // routed nowhere.
        return;
    };
    let stats = Arc::clone(&listener.stats);
    stats.opened();
    if listener.tls.is_none() && !listener.proxy_protocol {
        // Plain HTTP: no prelude.
        let ctx = Rc::new(ConnCtx::new(peer, id, "http"));
        drop(current);
        if let Err(e) = http(local, ctx, stream, watcher, false).await {
            tracing::debug!(%peer, error = %e, "client connection ended with an error");
        }
    } else {
        let edge = Edge {
            tls: listener.tls.clone(),
            proxy_protocol: listener.proxy_protocol,
            trust_forwarded: listener.trust_forwarded_after_proxy,
            strict_sni: listener.certs.clone().filter(|_| listener.strict_sni),
            trusted: prelude::peer_trusted(peer, &current.snap.trusted_proxies),
            listener: Arc::clone(&listener.name),
        };
        let request_header = current.snap.timeouts.request_header;
        // The snapshot is taken again after the prelude: a long-lived
        // connection must not keep this one alive across reloads.
        drop(current);
        edge.serve(stream, peer, id, request_header, &local, watcher)
            .await;
    }
    stats.closed();
    drop(permit);
}

/// The error a client connection may end with.
type ConnError = Box<dyn std::error::Error + Send + Sync>;

/// HTTP/1.1 and HTTP/2 (by preface, or by ALPN under TLS: `h2`) on a
/// connection, with limpet's timers around its socket. HTTP/1 goes to
/// limpet's own path (`proxy/h1/`) unless `http1: hyper` says otherwise;
/// HTTP/2 always to hyper.
async fn http<I>(
    local: Rc<Local>,
    ctx: Rc<ConnCtx>,
    io: I,
    watcher: Watcher,
    h2: bool,
) -> Result<(), ConnError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let current = local.current();
    let state = Arc::clone(&ctx.state);
    let mut io = TimedIo::new(
        io,
        Arc::clone(&ctx.state),
        current.snap.timeouts.request_header,
        current.snap.timeouts.client_idle,
    );
    if h2 || !own_http1(&current) {
        let conn = hyper_conn(&current, &local, ctx, io);
        drop(current);
        return watcher.watch(conn, &state).await;
    }
    drop(current);
    io.wake_when_idle(false);
    let Some(mut h2) =
        proxy::h1::serve(Rc::clone(&local), Rc::clone(&ctx), io, watcher.stop()).await
    else {
        return Ok(());
    };
    // HTTP/2 with prior knowledge: hyper reads it from the preface on.
    h2.io.wake_when_idle(true);
    let current = local.current();
    let conn = hyper_conn(&current, &local, ctx, Prefixed::new(h2.received, h2.io));
    drop(current);
    watcher.watch(conn, &state).await
}

/// Does HTTP/1 take limpet's own path (`http1: limpet`)?
fn own_http1(current: &Current) -> bool {
    current.snap.http1 == crate::config::Http1::Limpet
}

/// hyper's HTTP/1.1 + HTTP/2 server on a connection.
fn hyper_conn<I>(
    current: &Current,
    local: &Rc<Local>,
    ctx: Rc<ConnCtx>,
    io: I,
) -> impl GracefulConnection<Error = ConnError> + 'static
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let local = Rc::clone(local);
    let svc = service_fn(move |req| proxy::handle(Rc::clone(&local), Rc::clone(&ctx), req));
    current
        .server
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .into_owned()
}

/// What a TLS or PROXY-protocol listener does before HTTP.
struct Edge {
    tls: Option<Arc<rustls::ServerConfig>>,
    proxy_protocol: bool,
    /// `trust_forwarded_after_proxy`.
    trust_forwarded: bool,
    /// `strict_sni`: the listener's certificates.
    strict_sni: Option<Arc<crate::config::sni::Certs>>,
    /// Is the peer one of `trusted_proxies`?
    trusted: bool,
    listener: Arc<str>,
}

impl Edge {
    /// The PROXY header (if expected), the TLS handshake (if any), then
    /// HTTP; the first two within `timeouts.request_header` of the accept.
    async fn serve(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        id: u64,
        request_header: std::time::Duration,
        local: &Rc<Local>,
        watcher: Watcher,
    ) {
        let listener = &*self.listener;
        if self.proxy_protocol && !self.trusted {
            tracing::warn!(%peer, listener, "closed a connection: PROXY protocol from a peer not in trusted_proxies");
            return;
        }
        let deadline = tokio::time::Instant::now() + request_header;
        let (io, client, said) = match self.prelude(stream, peer, deadline).await {
            Ok(pair) => pair,
            // Connected and closed without a byte: an L4 balancer's TCP
            // check, not worth a line (HAProxy's `dontlognull`).
            Err(PreludeError::Truncated(0)) => {
                tracing::debug!(%peer, listener, "connection closed before sending anything");
                return;
            }
            // Scanners and old clients fail handshakes all day; nginx logs
            // these at `info` too.
            Err(e @ (PreludeError::Tls(_) | PreludeError::Timeout("TLS handshake"))) => {
                tracing::info!(%peer, listener, error = %e, "closed a connection before its first request");
                return;
            }
            Err(e) => {
                tracing::warn!(%peer, listener, error = %e, "closed a connection before its first request");
                return;
            }
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut ctx = ConnCtx::new(client, id, scheme);
        // Behind a PROXY header its source is the client, and what that
        // client says in X-Forwarded-* is passed on, not believed (nginx's
        // `real_ip_header proxy_protocol`), unless the listener says the L4
        // balancer fronts trusted L7 proxies. A header that named no client
        // (UNKNOWN, LOCAL) leaves the L4 balancer as the peer: never believed.
        ctx.may_forward = !self.proxy_protocol || (said && self.trust_forwarded);
        if let (Some(certs), Either::Right(tls)) = (&self.strict_sni, &io) {
            ctx.strict_sni = Some(Arc::clone(certs.pick(tls.get_ref().1.server_name())));
        }
        let h2 =
            matches!(&io, Either::Right(tls) if tls.get_ref().1.alpn_protocol() == Some(b"h2"));
        let ctx = Rc::new(ctx);
        if let Err(e) = http(Rc::clone(local), ctx, io, watcher, h2).await {
            tracing::debug!(%peer, error = %e, "client connection ended with an error");
        }
    }

    /// The PROXY header and the TLS handshake, both done by `deadline`.
    async fn prelude(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        deadline: tokio::time::Instant,
    ) -> Result<(EdgeIo, SocketAddr, bool), PreludeError> {
        // `said`: the PROXY header named the client.
        let (client, rest, said) = if self.proxy_protocol {
            let header = prelude::read_proxy_header(&mut stream);
            match tokio::time::timeout_at(deadline, header)
                .await
                .map_err(|_| PreludeError::Timeout("PROXY header"))??
            {
                (Proxied::Client(addr), rest) => (addr, rest, true),
                (Proxied::Peer, rest) => (peer, rest, false),
            }
        } else {
            (peer, Vec::new(), true)
        };
        let io = Prefixed::new(rest, stream);
        match &self.tls {
            None => Ok((Either::Left(io), client, said)),
            Some(config) => {
                let handshake = tokio_rustls::TlsAcceptor::from(Arc::clone(config)).accept(io);
                let tls = tokio::time::timeout_at(deadline, handshake)
                    .await
                    .map_err(|_| PreludeError::Timeout("TLS handshake"))?
                    .map_err(PreludeError::Tls)?;
                Ok((Either::Right(Box::new(tls)), client, said))
            }
        }
    }
}

/// A connection ready for HTTP, after its prelude: plain (`Left`) or TLS
/// (`Right`).
type EdgeIo =
    Either<Prefixed<TcpStream>, Box<tokio_rustls::server::TlsStream<Prefixed<TcpStream>>>>;
