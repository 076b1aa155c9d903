//! The data path. [`handle`] reads top-down, one step per file: resolve the
//! client address → check the request → pick the pool (routes) → affinity →
//! decide the server →
//! forward (retrying a failed connect elsewhere) → act on the response →
//! log. Everything a request needs comes from one runtime snapshot, loaded
//! once, so a reload never shows a request two worlds.

pub mod body;
pub mod check;
pub mod client_addr;
pub mod completion;
pub mod error;
pub mod forward;
pub mod headers;
pub mod http_client;
pub mod route;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::listener::ConnState;
use crate::runtime::Shared;
use body::{ResBody, Source};
use completion::Completion;
use error::ProxyError;
use forward::Placement;

/// What the data path knows about the client connection a request came on.
#[derive(Debug)]
pub struct ConnCtx {
    pub peer: SocketAddr,
    /// The socket id of the listener (see `runtime::ListenerRt::id`).
    pub listener: u64,
    pub scheme: &'static str,
    pub state: Arc<ConnState>,
}

pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnCtx>,
    mut req: Request<Incoming>,
) -> Result<Response<ResBody>, Infallible> {
    let snap = shared.snapshot.load_full();
    let peer = conn.peer.ip().to_canonical();
    let peer_trusted = client_addr::is_trusted(peer, &snap.trusted_proxies);
    let client = client_addr::resolve(peer, req.headers(), &snap.trusted_proxies);
    let mut done = Completion::new(
        Arc::clone(&conn.state),
        client,
        req.method().clone(),
        req.uri().clone(),
        snap.access_log,
    );

    let authority = match check::request(&req, &snap.limits) {
        Ok(a) => a,
        Err(e) => {
            done.set_unrouted(&snap.unrouted);
            return Ok(e.into_response(done));
        }
    };
    let host = authority
        .as_ref()
        .and_then(|a| a.to_str().ok())
        .map(route::strip_port);
    let pool = snap
        .listener(conn.listener)
        .and_then(|l| route::pick(l, host, req.uri().path()));
    let Some(pool) = pool else {
        done.set_unrouted(&snap.unrouted);
        return Ok(ProxyError::NoServer.into_response(done));
    };
    done.set_pool(pool);
    let found = pool
        .sticky
        .find(pool, req.headers(), req.uri().path(), client);
    let placement = Placement {
        affinity: found.affinity,
        key: found.key,
    };

    let upgrade = headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    pool.sticky.prepare(&mut parts.headers);
    headers::fold_cookies(&mut parts.headers);
    headers::set_forwarded(
        &mut parts.headers,
        peer,
        peer_trusted,
        conn.scheme,
        authority.as_ref(),
    );
    // The server sees the request's authority as Host: the absolute-form
    // target's, or HTTP/2's :authority, or the Host the client sent.
    if let Some(a) = authority {
        parts.headers.insert(header::HOST, a);
    }
    let source = match source(&parts, body, snap.timeouts.client_body).await {
        Ok(s) => s,
        Err(e) => return Ok(e.into_response(done)),
    };

    let (mut res, decision) =
        match forward::send(&snap, pool, parts, &source, placement, &mut done).await {
            Ok(r) => r,
            Err(e) => return Ok(e.into_response(done)),
        };

    if res.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            conn.state.set_tunnel();
            let server_upgrade = hyper::upgrade::on(&mut res);
            tokio::spawn(tunnel(client_upgrade, server_upgrade));
        }
    } else {
        headers::strip_hop_by_hop(res.headers_mut(), false);
    }
    pool.sticky
        .respond(pool, &found, decision, res.headers_mut());
    done.set_status(res.status().as_u16());
    let (parts, body) = res.into_parts();
    Ok(Response::from_parts(parts, ResBody::streaming(body, done)))
}

/// Copies bytes both ways between an upgraded client and server connection.
async fn tunnel(client: hyper::upgrade::OnUpgrade, server: hyper::upgrade::OnUpgrade) {
    let (client, server) = match tokio::try_join!(client, server) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut server = TokioIo::new(server);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
        tracing::debug!(error = %e, "tunnel closed");
    }
}

/// The request body for the attempts: a small body of an idempotent
/// request is read whole, so the request can be replayed on another server
/// (see [`body::REPLAY_LIMIT`]); anything else streams.
async fn source(
    parts: &http::request::Parts,
    body: Incoming,
    client_body: std::time::Duration,
) -> Result<Source, ProxyError> {
    use http_body::Body as _;
    let small = body
        .size_hint()
        .exact()
        .is_some_and(|n| n <= body::REPLAY_LIMIT);
    if body.is_end_stream() || !small || !forward::idempotent(&parts.method) {
        return Ok(Source::new(body, client_body));
    }
    Source::buffer(body, client_body).await
}
