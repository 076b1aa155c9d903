//! The admin endpoint, on its own listener (`admin.bind`; no `admin`
//! section, no listener at all):
//!
//! ```text
//! GET  /metrics                                   Prometheus text (OpenMetrics on request)
//! GET  /status                                    HTML page: pools, servers, health, traffic, failovers
//! GET  /api/pools                                 the same as JSON
//! PUT  /api/pools/{pool}/servers/{server}/state   {"state":"drain"|"active"|"disabled"}
//! POST /api/pools/{pool}/servers                  {"name","address", optional "route","weight","state","backup","tls"}: 201
//! DELETE /api/pools/{pool}/servers/{server}       a server added through the API: 204
//! POST /api/reload                                same as SIGHUP
//! ```
//!
//! A request is first held to the proxy listeners' rules (two `Host`
//! fields, none in HTTP/1.1: 400); two `Authorization` fields are 400. A
//! `Host` the endpoint does not answer to, or a `PUT` or `POST` from
//! another site, gets 403 (`guard.rs`: DNS rebinding and cross-site
//! requests from the operator's browser). With `admin.token_file`, `PUT`,
//! `POST` and `DELETE` need `Authorization: Bearer <token>` (the scheme in any case;
//! compared in constant time), else 401. Unknown pool or server: 404; a bad
//! body: 400 with a message; a name or route taken, or removing a server
//! the file or DNS defines: 409; a wrong method: 405 with `Allow`. Every state
//! change is logged with the peer that made it. At most 64 connections are
//! open, 16 per address (`conns.rs`); past the cap, the next one waits
//! while the idlest is closed.

mod api;
mod conns;
mod guard;
mod history;
mod html;
mod metrics;
mod route;
mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::runtime::Shared;
pub use api::ServerChange;
use route::Route;

type Body = Full<Bytes>;

/// What `POST /api/reload` runs: read the file again and apply it.
pub type ReloadFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// What adding or removing a server at run time comes to.
pub type ChangeFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ServerChange>> + Send>>;

/// The running instance, as the admin API reloads it and adds and
/// removes servers.
pub trait Reload: Send + Sync {
    fn reload(self: Arc<Self>) -> ReloadFuture;
    fn add_server(self: Arc<Self>, pool: String, body: String, peer: SocketAddr) -> ChangeFuture;
    fn remove_server(
        self: Arc<Self>,
        pool: String,
        server: String,
        peer: SocketAddr,
    ) -> ChangeFuture;
}

/// The admin endpoint: its listening socket and what its requests act on.
pub struct Endpoint {
    pub listener: TcpListener,
    pub shared: Arc<Shared>,
    pub reload: Arc<dyn Reload>,
    pub stop: CancellationToken,
}

struct Ctx {
    shared: Arc<Shared>,
    reload: Arc<dyn Reload>,
    registry: Registry,
    /// Requests per server over the last minutes, for `/status`.
    history: Arc<history::History>,
}

/// How long a connection may take to send a request header, and how long
/// it may stay idle between requests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts admin connections until `stop` is cancelled. (Boxed: the admin
/// API reloads the configuration, which may start a new admin endpoint.)
pub fn serve(s: Endpoint) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(accept(s))
}

async fn accept(s: Endpoint) {
    let history = Arc::new(history::History::default());
    tokio::spawn(history::run(
        Arc::clone(&history),
        Arc::clone(&s.shared),
        s.stop.clone(),
    ));
    let ctx = Arc::new(Ctx {
        registry: metrics::registry(Arc::clone(&s.shared)),
        shared: s.shared,
        reload: s.reload,
        history,
    });
    // HTTP/1.1 only (what scrapers and browsers speak to it): a connection
    // that sends nothing is closed at the header timeout like a slow one.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let conns = Arc::new(conns::Conns::default());
    let slots = Arc::new(tokio::sync::Semaphore::new(conns::MAX));
    let open = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = s.listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = s.stop.cancelled() => break,
        };
        let Some(entry) = conns.enter(peer.ip()) else {
            tracing::debug!(%peer, "admin connection refused: {} already open from this address", conns::PER_PEER);
            continue;
        };
        // At the cap, this connection waits (and the next ones wait in the
        // backlog) while the one idle longest is closed to make room.
        let slot = loop {
            if let Ok(slot) = Arc::clone(&slots).try_acquire_owned() {
                break Some(slot);
            }
            let went_idle = conns.went_idle.notified();
            tokio::pin!(went_idle);
            went_idle.as_mut().enable();
            let closing = conns.close_idlest();
            tokio::select! {
                slot = Arc::clone(&slots).acquire_owned() => break slot.ok(),
                _ = went_idle, if !closing => {}
                () = s.stop.cancelled() => break None,
            }
        };
        let Some(slot) = slot else { break };
        entry.serve();
        let ctx = Arc::clone(&ctx);
        let on_conn = Arc::clone(&entry);
        let svc = service_fn(move |req| {
            let busy = on_conn.busy();
            let answer = handle(Arc::clone(&ctx), peer, req);
            async move {
                let answer = answer.await;
                drop(busy);
                answer
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let stop = s.stop.clone();
        open.spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = entry.close.notified() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(entry);
            drop(slot);
        });
    }
    drop(s.listener);
    // Open connections finish their request (graceful shutdown).
    open.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), open.wait()).await;
}

async fn handle(
    ctx: Arc<Ctx>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let snap = ctx.shared.snapshot.load_full();
    let authority = match crate::proxy::check::request(&req, &snap.limits) {
        Ok(checked) => checked.authority,
        Err(e) => return Ok(refused(guard::Refused::Malformed(e), peer, &path)),
    };
    if let Err(e) = guard::host(authority.as_ref(), &snap.admin_hosts) {
        return Ok(refused(e, peer, &path));
    }
    let offered = match guard::bearer(req.headers()) {
        Ok(offered) => offered,
        Err(e) => return Ok(refused(e, peer, &path)),
    };
    let Some(route) = Route::parse(&path) else {
        return Ok(text(StatusCode::NOT_FOUND, "not found\n"));
    };
    let allowed = route.allowed();
    let method_ok =
        *req.method() == allowed || (allowed == Method::GET && *req.method() == Method::HEAD);
    if !method_ok {
        let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        if let Ok(v) = HeaderValue::from_str(allowed.as_str()) {
            res.headers_mut().insert(header::ALLOW, v);
        }
        return Ok(res);
    }
    if allowed != Method::GET
        && let Err(e) = guard::same_origin(req.headers(), authority.as_ref())
    {
        return Ok(refused(e, peer, &path));
    }
    if allowed != Method::GET
        && let Some(token) = &snap.admin_token
        && !offered.is_some_and(|t| token.matches(t))
    {
        tracing::warn!(%peer, path = %path, "admin call refused: missing or wrong token");
        let mut res = text(
            StatusCode::UNAUTHORIZED,
            "a valid `Authorization: Bearer <token>` is required\n",
        );
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Ok(res);
    }
    Ok(match route {
        Route::Metrics => {
            let openmetrics = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/openmetrics-text"));
            match metrics::encode(&ctx.registry, openmetrics) {
                Ok(body) => {
                    let ct = if openmetrics {
                        "application/openmetrics-text; version=1.0.0; charset=utf-8"
                    } else {
                        "text/plain; version=0.0.4; charset=utf-8"
                    };
                    with_type(Response::new(Full::new(Bytes::from(body))), ct)
                }
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n"),
            }
        }
        Route::Status => with_type(
            Response::new(Full::new(Bytes::from(status::page(&snap, &ctx.history)))),
            "text/html; charset=utf-8",
        ),
        Route::Pools => json(StatusCode::OK, &api::pools(&snap)),
        Route::State { pool, server } => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(res) => return Ok(res),
            };
            api::set_state(&snap, pool, server, &body, peer)
        }
        Route::Servers { pool } => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(res) => return Ok(res),
            };
            let Ok(body) = String::from_utf8(body.to_vec()) else {
                return Ok(text(
                    StatusCode::BAD_REQUEST,
                    "the body must be UTF-8 JSON\n",
                ));
            };
            let name = server_name(&body);
            match Arc::clone(&ctx.reload)
                .add_server(pool.to_owned(), body, peer)
                .await
            {
                Ok(()) => {
                    let snap = ctx.shared.snapshot.load_full();
                    let added = snap
                        .pool(pool)
                        .and_then(|p| Some((p, p.servers.by_name(&name?)?)));
                    match added {
                        Some((p, i)) => json(StatusCode::CREATED, &api::server(p, i)),
                        None => text(StatusCode::CREATED, "added\n"),
                    }
                }
                Err(e) => text(e.status(), &format!("{e}\n")),
            }
        }
        Route::Server { pool, server } => {
            match Arc::clone(&ctx.reload)
                .remove_server(pool.to_owned(), server.to_owned(), peer)
                .await
            {
                Ok(()) => {
                    let mut res = Response::new(Full::new(Bytes::new()));
                    *res.status_mut() = StatusCode::NO_CONTENT;
                    res
                }
                Err(e) => text(e.status(), &format!("{e}\n")),
            }
        }
        Route::Reload => {
            tracing::info!(%peer, "reload requested through the admin API");
            match Arc::clone(&ctx.reload).reload().await {
                Ok(()) => json(StatusCode::OK, &serde_json::json!({"result": "success"})),
                Err(e) => json(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &serde_json::json!({"result": "failure", "error": e}),
                ),
            }
        }
    })
}

/// The `name` of a server's JSON body (once it was accepted).
fn server_name(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(v.get("name")?.as_str()?.to_owned())
}

/// The refusal's status, and one log line saying why and to whom (a
/// malformed request only at debug: it is no attempt at the endpoint).
fn refused(e: guard::Refused, peer: SocketAddr, path: &str) -> Response<Body> {
    let status = e.status();
    if status == StatusCode::FORBIDDEN {
        tracing::warn!(%peer, path, reason = %e, "admin request refused");
    } else {
        tracing::debug!(%peer, path, reason = %e, status = status.as_u16(), "admin request refused");
    }
    text(status, &format!("refused: {e}\n"))
}

/// A small JSON body, read within a deadline.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    let limited = Limited::new(req.into_body(), 4096);
    match tokio::time::timeout(Duration::from_secs(10), limited.collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(_)) => Err(text(
            StatusCode::BAD_REQUEST,
            "the body must be a small JSON object\n",
        )),
        Err(_) => Err(text(
            StatusCode::REQUEST_TIMEOUT,
            "body not received in time\n",
        )),
    }
}

fn with_type(mut res: Response<Body>, content_type: &'static str) -> Response<Body> {
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let headers = res.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Nothing the endpoint sends runs a script or loads anything: the
    // status page needs only its inline style.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut res = with_type(
        Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes()))),
        "text/plain; charset=utf-8",
    );
    *res.status_mut() = status;
    res
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            let mut res = with_type(
                Response::new(Full::new(Bytes::from(body))),
                "application/json",
            );
            *res.status_mut() = status;
            res
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode JSON\n"),
    }
}
