//! The data path. [`handle`] reads top-down, one step per file:
//!
//! ```text
//! the snapshot this request sees        local.rs     (per worker, no lock)
//! the client address                    client_addr.rs
//! refuse what cannot be forwarded       check.rs     (one pass over the header)
//! the pool                              route.rs     (redirect.rs: redirect_https)
//! what ties it to a server              sticky/      (Sticky::affinity)
//! the request for the server            headers.rs, upload.rs (its body)
//! which server, and send (and retry)    pool/ (Pool::decide), forward.rs, client.rs
//!   whom to blame, whether to retry       verdict.rs   (one pure function)
//! act on the response                   headers.rs, sticky/ (Sticky::act_on)
//! stream it back, then log and count    body.rs, end.rs
//! ```
//!
//! Nothing here is particular to one sticky mode: each mode's work, the
//! shared store's round trips included, is behind `Sticky`'s hooks.
//!
//! Everything a request needs comes from one runtime snapshot, read once, so
//! a reload never shows a request two worlds. A request never leaves the
//! worker thread that accepted its connection.

pub mod body;
pub mod check;
pub mod client;
pub mod client_addr;
pub mod conn;
pub mod end;
pub mod error;
pub mod forward;
pub mod h1;
pub mod headers;
pub mod local;
pub mod redirect;
pub mod route;
pub mod server_conns;
pub mod stop;
pub mod upload;
pub mod verdict;

use std::convert::Infallible;
use std::rc::Rc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use body::ResBody;
pub use conn::{ConnCtx, ConnState};
use end::End;
use error::ProxyError;
pub use local::Local;
use route::Routed;
use upload::ReqBody;

pub async fn handle(
    local: Rc<Local>,
    conn: Rc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<ResBody>, Infallible> {
    // The world this request sees.
    let current = local.current();
    let snap = &current.snap;

    // Who the client is (a trusted proxy's X-Forwarded-For is believed).
    let (client, trusted) = client_addr::client(
        conn.peer_ip,
        conn.may_forward,
        req.headers(),
        &snap.trusted_proxies,
    );
    let mut end = End::begin(&conn.state, &current, client, &req);

    // Refuse what cannot be forwarded faithfully.
    let checked = match check::request(&req, &snap.limits) {
        Ok(c) => c,
        Err(e) => return Ok(e.into_response(end)),
    };

    // The pool.
    let host = checked.host();
    let path = req.uri().path();
    let listener = snap.listener(conn.listener);
    let pool = match route::route(listener, conn.strict_sni.as_deref(), host, path) {
        Ok(Routed::Pool(i)) => i,
        Ok(Routed::ToHttps) => return Ok(redirect::to_https(host, req.uri(), end)),
        Err(e) => {
            let mut res = e.into_response(end);
            // A reload removed the listener: an HTTP/1 connection closes
            // now (its stop follows).
            if listener.is_none() && req.version() < http::Version::HTTP_2 {
                res.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            return Ok(res);
        }
    };
    end.set_pool(pool);
    let pool = &snap.pools[pool];

    // What ties the request to a server.
    let found = pool
        .sticky
        .affinity(&pool.servers, req.headers(), path, client)
        .await;

    // The request as the server will get it.
    let (request, upgrade) = match outgoing(req, &checked, &conn, trusted, pool, snap).await {
        Ok(r) => r,
        Err(e) => return Ok(e.into_response(end)),
    };

    // Which server, and send it there (elsewhere when that is safe).
    let sent = match forward::send(&local, snap, pool, &found, request, &mut end).await {
        Ok(s) => s,
        Err(e) => return Ok(e.into_response(end)),
    };

    // Act on the response; stream it back, logged and counted at its end.
    Ok(answer(sent, upgrade, &conn, pool, &found, end).await)
}

/// The server's answer as the client gets it: a protocol switch becomes a
/// tunnel, anything else loses its hop-by-hop headers; the sticky mode acts
/// (inserts its cookie, learns the session). The body streams; its end is
/// logged and counted ([`End::finish`]).
async fn answer(
    sent: forward::Sent,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
    conn: &ConnCtx,
    pool: &crate::pool::Pool,
    found: &crate::sticky::Found,
    mut end: End,
) -> Response<ResBody> {
    let mut res = sent.response;
    let mut back = Some(sent.back);
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        headers::clean_response(res.headers_mut());
    } else if let Some(client_upgrade) = upgrade {
        conn.state.set_tunnel();
        let server_upgrade = hyper::upgrade::on(&mut res);
        tokio::task::spawn_local(tunnel(client_upgrade, server_upgrade));
        // The server connection became the tunnel.
        back = None;
    }
    pool.sticky
        .act_on(&pool.servers, found, sent.decision, res.headers_mut())
        .await;
    end.set_status(res.status().as_u16());
    let (parts, body) = res.into_parts();
    Response::from_parts(parts, ResBody::streaming(body, end, back))
}

/// The request as the server gets it: its header prepared (hop-by-hop out,
/// `X-Forwarded-*` in, the sticky mode's edits), its body ready to stream
/// or read whole for a replay; and the client's side of a protocol switch
/// it asks for.
async fn outgoing(
    mut req: Request<Incoming>,
    checked: &check::Checked,
    conn: &ConnCtx,
    trusted: bool,
    pool: &crate::pool::Pool,
    snap: &crate::runtime::Snapshot,
) -> Result<(Request<ReqBody>, Option<hyper::upgrade::OnUpgrade>), ProxyError> {
    let upgrade = checked.scan.upgrade && headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    headers::prepare(
        &mut parts.headers,
        &checked.scan,
        conn,
        trusted,
        checked.authority.as_ref(),
        upgrade,
    );
    pool.sticky.prepare(&mut parts.headers);
    let body = request_body(&parts, body, snap.timeouts.client_body).await?;
    Ok((forward::outgoing(parts, body), client_upgrade))
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

/// The request body for the attempts: a small body of an idempotent request
/// is read whole, so the request can be replayed on another server (see
/// [`upload::REPLAY_LIMIT`]); anything else streams.
async fn request_body(
    parts: &http::request::Parts,
    body: Incoming,
    client_body: std::time::Duration,
) -> Result<ReqBody, ProxyError> {
    use http_body::Body as _;
    if body.is_end_stream() {
        return Ok(ReqBody::Empty);
    }
    let small = body
        .size_hint()
        .exact()
        .is_some_and(|n| n <= upload::REPLAY_LIMIT);
    if !small || !forward::idempotent(&parts.method) {
        return Ok(ReqBody::streaming(body, client_body));
    }
    let whole = upload::buffer(body, client_body).await?;
    Ok(ReqBody::Full(Some(whole)))
}
