//! The data path. [`handle`] reads top-down, one step per file:
//!
//! ```text
//! the snapshot this request sees        local.rs     (per worker, no lock)
//! the client address                    client_addr.rs
//! refuse what cannot be forwarded       check.rs     (one pass over the header)
//! the pool                              route.rs
//! what ties it to a server              sticky/      (Sticky::find)
//! the header for the server             headers.rs
//! which server, and send (and retry)    pool/ (Pool::decide), forward.rs, client.rs
//!   whom to blame, whether to retry       verdict.rs   (one pure function)
//! act on the response                   sticky/      (Sticky::respond), headers.rs
//! stream it back, then log and count    body.rs, end.rs (the upload: upload.rs)
//! ```
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
pub mod headers;
pub mod local;
pub mod redirect;
pub mod route;
pub mod upload;
pub mod verdict;

use std::convert::Infallible;
use std::rc::Rc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use body::{Back, ResBody};
pub use conn::{ConnCtx, ConnState};
use end::End;
use error::ProxyError;
pub use local::Local;
use upload::{Progress, ReqBody};

pub async fn handle(
    local: Rc<Local>,
    conn: Rc<ConnCtx>,
    mut req: Request<Incoming>,
) -> Result<Response<ResBody>, Infallible> {
    // The world this request sees.
    let current = local.current();
    let snap = &current.snap;

    // Who the client is (a trusted proxy's X-Forwarded-For is believed).
    let trusted = conn.may_forward && client_addr::is_trusted(conn.peer_ip, &snap.trusted_proxies);
    let client = if trusted {
        client_addr::resolve(conn.peer_ip, req.headers(), &snap.trusted_proxies)
    } else {
        conn.peer_ip
    };
    let mut end = End::begin(&conn.state, &current, client, &req);

    // Refuse what cannot be forwarded faithfully.
    let checked = match check::request(&req, &snap.limits) {
        Ok(c) => c,
        Err(e) => return Ok(e.into_response(end)),
    };

    // The pool.
    let host = checked
        .authority
        .as_ref()
        .and_then(|a| a.to_str().ok())
        .map(route::strip_port);
    let listener = snap.listener(conn.listener);
    if listener.is_some_and(|l| l.redirect_https) {
        return Ok(redirect::to_https(host, req.uri(), end));
    }
    if let Some(cert) = &conn.strict_sni
        && !host.is_some_and(|h| cert.serves(h))
    {
        return Ok(ProxyError::Misdirected.into_response(end));
    }
    let Some(pool_index) = listener.and_then(|l| route::pick(l, host, req.uri().path())) else {
        return Ok(ProxyError::NoServer.into_response(end));
    };
    let pool = &snap.pools[pool_index];
    end.set_pool(pool_index);

    // What ties the request to a server.
    let mut found = pool
        .sticky
        .find(&pool.servers, req.headers(), req.uri().path(), client);
    // What this request waited for the shared store (learn.store).
    let mut store_wait = Duration::ZERO;
    if pool.sticky.wants_lookup(&found) {
        // A session this instance does not know: another one may (learn
        // mode's shared store). Boxed: only such requests carry the lookup.
        let asked = Instant::now();
        found = Box::pin(pool.sticky.find_shared(found)).await;
        store_wait = asked.elapsed();
    }

    // The request as the server will get it.
    let upgrade = checked.scan.upgrade && headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    headers::prepare(
        &mut parts.headers,
        &checked.scan,
        &conn,
        trusted,
        checked.authority.as_ref(),
        upgrade,
    );
    pool.sticky.prepare(&mut parts.headers);
    let (body, progress) = match request_body(&parts, body, snap.timeouts.client_body).await {
        Ok(b) => b,
        Err(e) => return Ok(e.into_response(end)),
    };

    // Which server, and send it there (elsewhere when that is safe).
    let sent = match forward::send(
        &local,
        &current,
        pool,
        parts,
        body,
        progress.as_deref(),
        &found,
        &mut end,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return Ok(e.into_response(end)),
    };

    // Act on the response.
    let mut res = sent.response;
    let mut back = Some(Back {
        request: progress,
        ..sent.back
    });
    if res.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            conn.state.set_tunnel();
            let server_upgrade = hyper::upgrade::on(&mut res);
            tokio::task::spawn_local(tunnel(client_upgrade, server_upgrade));
            // The server connection became the tunnel.
            back = None;
        }
    } else {
        headers::clean_response(res.headers_mut());
    }
    if let Some(write) =
        pool.sticky
            .respond(&pool.servers, &found, sent.decision, res.headers_mut())
    {
        // A session learned or moved: in the shared store before the client
        // can take it to another instance. Boxed, as the lookup.
        Box::pin(write.apply(store_wait)).await;
    }

    // Stream it back; its end is logged and counted (End::finish).
    end.set_status(res.status().as_u16());
    let (parts, body) = res.into_parts();
    Ok(Response::from_parts(
        parts,
        ResBody::streaming(body, end, back),
    ))
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
/// A streamed body comes with the [`Progress`] it keeps.
async fn request_body(
    parts: &http::request::Parts,
    body: Incoming,
    client_body: std::time::Duration,
) -> Result<(ReqBody, Option<Rc<Progress>>), ProxyError> {
    use http_body::Body as _;
    if body.is_end_stream() {
        return Ok((ReqBody::Empty, None));
    }
    let small = body
        .size_hint()
        .exact()
        .is_some_and(|n| n <= upload::REPLAY_LIMIT);
    if !small || !forward::idempotent(&parts.method) {
        let progress = Rc::new(Progress::default());
        let body = ReqBody::streaming(body, Rc::clone(&progress), client_body);
        return Ok((body, Some(progress)));
    }
    let whole = upload::buffer(body, client_body).await?;
    Ok((ReqBody::Full(Some(whole)), None))
}
