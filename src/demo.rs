//! A demo backend that behaves like a Tomcat node with a session counter.
//!
//! [`DemoNode`] is shared by the `examples/demo.rs` program, the integration
//! tests and the benches. It serves HTTP/1.1 and h2c (prior knowledge) on a
//! local port, hands out `JSESSIONID` cookies of the form
//! `<32 uppercase hex>.<jvmRoute>`, counts requests per session, re-suffixes
//! sessions that fail over from another node (like Tomcat's
//! `JvmRouteBinderValve`), and can be stopped, restarted, made unhealthy or
//! made to reset every connection, so that the balancer's failure handling
//! can be exercised without a JVM.
//!
//! Every response carries an `x-demo-node: <route>` header. Special paths
//! (path parameters such as `;jsessionid=` are ignored for routing):
//!
//! * `/health`: status set by [`DemoNode::set_health`], body `ok` or `fail`;
//! * `/logout`: ends the session and expires the cookie;
//! * `/slow?ms=N`: waits `N` ms before answering;
//! * `/stream?chunks=N&size=M`: streams `N` chunks of `M` bytes of `x`;
//! * `/echo`: streams the request body back;
//! * `/set-cookies`: adds `Set-Cookie: a=1` and `b=2`;
//! * `/status/NNN`: answers with status `NNN`;
//! * `/static/...`: like a static file, never creates or touches a session;
//! * any request with an `Upgrade` header: `101`, then echoes raw bytes;
//! * anything else: a JSON description of the request (session, counter,
//!   method, path, body size and checksum, headers).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Response body type of the demo node.
type DemoBody = UnsyncBoxBody<Bytes, BoxError>;

/// Session store keyed by the hex part of the id (the part before the first
/// `.`); each entry remembers the full id it currently has.
type SessionMap = Arc<Mutex<HashMap<String, SessionEntry>>>;

/// Name of the header every response carries with the node's route.
pub const NODE_HEADER: &str = "x-demo-node";

/// Largest chunk `/stream` will produce (bigger `size` values are clamped).
const MAX_STREAM_CHUNK: usize = 16 * 1024 * 1024;

/// Default `/slow` delay when `ms` is absent or invalid.
const DEFAULT_SLOW_MS: u64 = 100;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A test backend behaving like a Tomcat node with `jvmRoute` = `route`.
pub struct DemoNode {
    shared: Arc<Shared>,
    addr: SocketAddr,
    generation: Mutex<Option<Arc<Generation>>>,
}

impl fmt::Debug for DemoNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoNode")
            .field("route", &self.shared.route)
            .field("addr", &self.addr)
            .field("running", &self.is_running())
            .finish()
    }
}

impl DemoNode {
    /// Bind `127.0.0.1:0` and serve. `route` is the node's jvmRoute, e.g. "node1".
    pub async fn start(route: &str) -> io::Result<DemoNode> {
        Self::start_on(route, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Bind `addr` (port 0 picks a free port) and serve.
    pub async fn start_on(route: &str, addr: SocketAddr) -> io::Result<DemoNode> {
        Self::start_with(route, addr, SessionMap::default())
    }

    /// Start one node per route on `127.0.0.1:0`, all sharing ONE session
    /// store (like Tomcat's DeltaManager replication): a session created on
    /// one node is known to all, and a request for it on another node
    /// continues its counter and re-suffixes the id with that node's route.
    pub async fn start_cluster(routes: &[&str]) -> io::Result<Vec<DemoNode>> {
        let sessions = SessionMap::default();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        routes
            .iter()
            .map(|route| Self::start_with(route, addr, Arc::clone(&sessions)))
            .collect()
    }

    fn start_with(route: &str, addr: SocketAddr, sessions: SessionMap) -> io::Result<DemoNode> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            route: route.to_owned(),
            route_header: HeaderValue::from_str(route).ok(),
            sessions,
            health: AtomicU16::new(200),
            reset_mode: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        });
        let generation = spawn_server(Arc::clone(&shared), listener);
        Ok(DemoNode {
            shared,
            addr,
            generation: Mutex::new(Some(generation)),
        })
    }

    /// The address the node listens on (kept across stop/restart).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The node's jvmRoute.
    pub fn route(&self) -> &str {
        &self.shared.route
    }

    /// Whether the node is currently listening (not stopped).
    pub fn is_running(&self) -> bool {
        lock(&self.generation).is_some()
    }

    /// Close the listener AND every open connection (like a killed JVM):
    /// after it returns, connects to `addr` are refused.
    pub async fn stop(&self) {
        let generation = lock(&self.generation).take();
        if let Some(generation) = generation {
            let mut tasks = generation.close();
            tasks.shutdown().await;
        }
    }

    /// Start again on the same address after [`stop`](Self::stop). Sessions
    /// are kept unless [`forget_sessions`](Self::forget_sessions) was called.
    /// Does nothing if the node is running.
    pub async fn restart(&self) -> io::Result<()> {
        let mut generation = lock(&self.generation);
        if generation.is_none() {
            let listener = bind(self.addr)?;
            *generation = Some(spawn_server(Arc::clone(&self.shared), listener));
        }
        Ok(())
    }

    /// Drop every session in this node's store (for nodes started with
    /// [`start_cluster`](Self::start_cluster) the store is shared, so this
    /// clears the whole cluster's sessions).
    pub fn forget_sessions(&self) {
        lock(&self.shared.sessions).clear();
    }

    /// Number of sessions in this node's store.
    pub fn session_count(&self) -> usize {
        lock(&self.shared.sessions).len()
    }

    /// Status code `/health` returns (default 200; invalid codes give 500).
    pub fn set_health(&self, status: u16) {
        self.shared.health.store(status, Ordering::SeqCst);
    }

    /// When true: accept connections, read the request head, then reset the
    /// connection (`SO_LINGER` 0 then close) without any response, like a
    /// dying JVM. Applies to already open connections at their next request.
    pub fn set_reset_mode(&self, on: bool) {
        self.shared.reset_mode.store(on, Ordering::SeqCst);
    }

    /// Number of requests served (excluding `/health` and reset requests).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Number of `/health` probes answered.
    pub fn health_checks(&self) -> u64 {
        self.shared.health_checks.load(Ordering::SeqCst)
    }

    /// Number of requests currently being handled (until the response head
    /// is returned).
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for DemoNode {
    fn drop(&mut self) {
        let generation = self
            .generation
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(generation) = generation {
            // Dropping a JoinSet aborts every task in it.
            drop(generation.close());
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// State shared by all connections of a node.
struct Shared {
    route: String,
    route_header: Option<HeaderValue>,
    sessions: SessionMap,
    health: AtomicU16,
    reset_mode: AtomicBool,
    requests: AtomicU64,
    health_checks: AtomicU64,
    in_flight: AtomicU64,
}

struct SessionEntry {
    id: String,
    counter: u64,
}

/// The session a request ended up in.
struct Session {
    id: String,
    counter: u64,
    new: bool,
    set_cookie: bool,
}

fn hex_part(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

/// The first candidate this store knows: an exact id match first, then a
/// match on the hex part. Returns (hex, requested id).
fn find_known<'a>(
    map: &HashMap<String, SessionEntry>,
    candidates: &'a [String],
) -> Option<(String, &'a str)> {
    let exact = candidates
        .iter()
        .find(|c| map.get(hex_part(c)).is_some_and(|e| e.id == **c));
    let found = exact.or_else(|| candidates.iter().find(|c| map.contains_key(hex_part(c))))?;
    Some((hex_part(found).to_owned(), found.as_str()))
}

fn random_hex() -> String {
    format!("{:016X}{:016X}", fastrand::u64(..), fastrand::u64(..))
}

impl Shared {
    /// Find (re-suffixing if needed) or create the request's session and
    /// count the request in it.
    fn touch_session(&self, candidates: &[String]) -> Session {
        let mut map = lock(&self.sessions);
        if let Some((hex, requested)) = find_known(&map, candidates) {
            let want = format!("{hex}.{}", self.route);
            if let Some(entry) = map.get_mut(&hex) {
                entry.counter += 1;
                entry.id.clone_from(&want);
                return Session {
                    set_cookie: requested != want,
                    id: want,
                    counter: entry.counter,
                    new: false,
                };
            }
        }
        let mut hex = random_hex();
        while map.contains_key(&hex) {
            hex = random_hex();
        }
        let id = format!("{hex}.{}", self.route);
        map.insert(
            hex,
            SessionEntry {
                id: id.clone(),
                counter: 1,
            },
        );
        Session {
            id,
            counter: 1,
            new: true,
            set_cookie: true,
        }
    }

    /// Remove the request's session, if any (counting this request in it).
    fn end_session(&self, candidates: &[String]) -> Option<Session> {
        let mut map = lock(&self.sessions);
        let (hex, _) = find_known(&map, candidates)?;
        let entry = map.remove(&hex)?;
        Some(Session {
            id: format!("{hex}.{}", self.route),
            counter: entry.counter + 1,
            new: false,
            set_cookie: true,
        })
    }
}

/// Session ids a request names: every `JSESSIONID` cookie in order, then
/// every `;jsessionid=` path parameter.
fn session_candidates(headers: &HeaderMap, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        let value = String::from_utf8_lossy(value.as_bytes());
        for pair in value.split(';') {
            if let Some((name, id)) = pair.split_once('=')
                && name.trim() == "JSESSIONID"
            {
                let id = id.trim().trim_matches('"');
                if !id.is_empty() {
                    out.push(id.to_owned());
                }
            }
        }
    }
    const PARAM: &str = ";jsessionid=";
    let lower = path.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower.get(from..).and_then(|rest| rest.find(PARAM)) {
        let start = from + pos + PARAM.len();
        let rest = path.get(start..).unwrap_or("");
        let end = rest.find(['?', '/', ';']).unwrap_or(rest.len());
        let id = rest.get(..end).unwrap_or("");
        if !id.is_empty() {
            out.push(id.to_owned());
        }
        from = start + end;
    }
    out
}

/// The path without any `;param` path parameters, for routing.
fn strip_path_params(path: &str) -> String {
    path.split('/')
        .map(|segment| segment.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("/")
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Append `s` as a JSON string literal (with quotes).
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                out.push_str(&format!("\\u{:04X}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// What the JSON answer describes.
struct Report<'a> {
    route: &'a str,
    session: Option<&'a Session>,
    method: &'a str,
    path: &'a str,
    body_bytes: u64,
    body_sum: u64,
    headers: &'a HeaderMap,
    authority: Option<&'a str>,
}

impl Report<'_> {
    fn to_json(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"server\":");
        push_json_str(&mut out, self.route);
        out.push_str(",\"session\":");
        match self.session {
            Some(session) => push_json_str(&mut out, &session.id),
            None => out.push_str("null"),
        }
        let (counter, new) = self.session.map_or((0, false), |s| (s.counter, s.new));
        out.push_str(&format!(",\"counter\":{counter},\"new_session\":{new}"));
        out.push_str(",\"method\":");
        push_json_str(&mut out, self.method);
        out.push_str(",\"path\":");
        push_json_str(&mut out, self.path);
        out.push_str(&format!(
            ",\"body_bytes\":{},\"body_sum\":{},\"headers\":{{",
            self.body_bytes, self.body_sum
        ));
        let mut first = true;
        if !self.headers.contains_key(header::HOST)
            && let Some(authority) = self.authority
        {
            push_json_str(&mut out, "host");
            out.push(':');
            push_json_str(&mut out, authority);
            first = false;
        }
        for name in self.headers.keys() {
            let separator = if name == header::COOKIE { "; " } else { ", " };
            let joined = self
                .headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .collect::<Vec<_>>()
                .join(separator);
            if !first {
                out.push(',');
            }
            first = false;
            push_json_str(&mut out, name.as_str());
            out.push(':');
            push_json_str(&mut out, &joined);
        }
        out.push_str("}}");
        out
    }
}

fn full_body(data: impl Into<Bytes>) -> DemoBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty_body() -> DemoBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

fn set_cookie(headers: &mut HeaderMap, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.append(header::SET_COOKIE, value);
    }
}

fn session_cookie(headers: &mut HeaderMap, session: &Session) {
    if session.set_cookie {
        set_cookie(
            headers,
            &format!("JSESSIONID={}; Path=/; HttpOnly", session.id),
        );
    }
}

fn expire_cookie(headers: &mut HeaderMap, id: &str) {
    set_cookie(
        headers,
        &format!("JSESSIONID={id}; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
    );
}

/// Read the whole body frame by frame: (byte count, wrapping byte sum).
async fn drain_body(mut body: Incoming) -> Result<(u64, u64), hyper::Error> {
    let (mut bytes, mut sum) = (0u64, 0u64);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            bytes += data.len() as u64;
            sum = data
                .iter()
                .fold(sum, |acc, b| acc.wrapping_add(u64::from(*b)));
        }
    }
    Ok((bytes, sum))
}

/// Counts a request as in flight until dropped.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    shared: Arc<Shared>,
    ctl: Arc<ConnCtl>,
    generation: Arc<Generation>,
    mut req: Request<Incoming>,
) -> Result<Response<DemoBody>, io::Error> {
    if shared.reset_mode.load(Ordering::SeqCst) {
        return Err(reset_connection(&ctl).await);
    }
    let route_path = strip_path_params(req.uri().path());
    let mut resp = if route_path == "/health" {
        shared.health_checks.fetch_add(1, Ordering::SeqCst);
        let status = StatusCode::from_u16(shared.health.load(Ordering::SeqCst))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = if status.is_success() { "ok" } else { "fail" };
        let mut resp = Response::new(full_body(body));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        resp
    } else {
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight::enter(&shared.in_flight);
        let candidates = session_candidates(req.headers(), req.uri().path());
        if req.version() == Version::HTTP_11 && req.headers().contains_key(header::UPGRADE) {
            upgrade(&shared, &generation, &candidates, &mut req)
        } else {
            match route_path.as_str() {
                "/stream" => stream(&shared, &candidates, &req),
                "/echo" => echo(&shared, &candidates, req),
                _ => answer(&shared, &candidates, &route_path, req).await?,
            }
        }
    };
    if let Some(route) = &shared.route_header {
        resp.headers_mut()
            .insert(HeaderName::from_static(NODE_HEADER), route.clone());
    }
    Ok(resp)
}

/// Answer `101 Switching Protocols` and echo raw bytes once upgraded.
fn upgrade(
    shared: &Shared,
    generation: &Generation,
    candidates: &[String],
    req: &mut Request<Incoming>,
) -> Response<DemoBody> {
    let session = shared.touch_session(candidates);
    let on_upgrade = hyper::upgrade::on(&mut *req);
    generation.spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
            let _ = writer.shutdown().await;
        }
    });
    let mut resp = Response::new(empty_body());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    for value in req.headers().get_all(header::UPGRADE) {
        headers.append(header::UPGRADE, value.clone());
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    session_cookie(headers, &session);
    resp
}

/// `/stream?chunks=N&size=M`: a streamed body of N chunks of M `x` bytes.
fn stream(shared: &Shared, candidates: &[String], req: &Request<Incoming>) -> Response<DemoBody> {
    let session = shared.touch_session(candidates);
    let query = req.uri().query();
    let chunks: usize = query_param(query, "chunks")
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let size: usize = query_param(query, "size")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
        .min(MAX_STREAM_CHUNK);
    let chunk = Bytes::from(vec![b'x'; size]);
    let frames = futures_util::stream::unfold(0usize, move |i| {
        let chunk = chunk.clone();
        async move {
            if i >= chunks {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Some((Ok::<_, BoxError>(Frame::data(chunk)), i + 1))
        }
    });
    let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    session_cookie(headers, &session);
    resp
}

/// `/echo`: the request body streamed back unchanged.
fn echo(shared: &Shared, candidates: &[String], req: Request<Incoming>) -> Response<DemoBody> {
    let session = shared.touch_session(candidates);
    let (parts, body) = req.into_parts();
    let mut resp = Response::new(body.map_err(BoxError::from).boxed_unsync());
    let headers = resp.headers_mut();
    if let Some(content_type) = parts.headers.get(header::CONTENT_TYPE) {
        headers.insert(header::CONTENT_TYPE, content_type.clone());
    }
    session_cookie(headers, &session);
    resp
}

/// The JSON answer (also for `/slow`, `/status/NNN`, `/set-cookies`, `/logout`).
async fn answer(
    shared: &Shared,
    candidates: &[String],
    route_path: &str,
    req: Request<Incoming>,
) -> Result<Response<DemoBody>, io::Error> {
    let (parts, body) = req.into_parts();
    let logout = route_path == "/logout";
    // Like Tomcat's DefaultServlet, static resources never touch the session.
    let stateless = route_path.starts_with("/static/");
    let session = if stateless {
        None
    } else if logout {
        shared.end_session(candidates)
    } else {
        Some(shared.touch_session(candidates))
    };
    let (body_bytes, body_sum) = drain_body(body).await.map_err(io::Error::other)?;
    if route_path == "/slow" {
        let ms = query_param(parts.uri.query(), "ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_SLOW_MS);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = match route_path.strip_prefix("/status/") {
        Some(code) => code
            .parse::<u16>()
            .ok()
            .filter(|code| (200..=599).contains(code))
            .and_then(|code| StatusCode::from_u16(code).ok())
            .unwrap_or(StatusCode::BAD_REQUEST),
        None => StatusCode::OK,
    };
    let report = Report {
        route: &shared.route,
        session: session.as_ref(),
        method: parts.method.as_str(),
        path: parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), |pq| pq.as_str()),
        body_bytes,
        body_sum,
        headers: &parts.headers,
        authority: parts.uri.authority().map(|a| a.as_str()),
    };
    let body = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        empty_body()
    } else {
        full_body(report.to_json())
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if logout {
        let id = session
            .as_ref()
            .map(|s| s.id.as_str())
            .or_else(|| candidates.first().map(String::as_str));
        if let Some(id) = id {
            expire_cookie(headers, id);
        }
    } else if let Some(session) = &session {
        session_cookie(headers, session);
    }
    if route_path == "/set-cookies" {
        set_cookie(headers, "a=1; Path=/");
        set_cookie(headers, "b=2; Path=/");
    }
    Ok(resp)
}

/// Per-connection control used to reset a connection from a request handler.
#[derive(Default)]
struct ConnCtl {
    /// Set before the connection is dropped: close with `SO_LINGER` 0 (RST).
    reset_requested: AtomicBool,
    /// Handler → connection task: drop the connection now.
    reset: Notify,
    /// Connection task → handlers: the connection has been dropped.
    closed: Notify,
}

/// Make the connection task drop the connection with an RST, wait until it
/// has, and return the error to hand to hyper (for HTTP/2 stream tasks).
async fn reset_connection(ctl: &ConnCtl) -> io::Error {
    let closed = ctl.closed.notified();
    tokio::pin!(closed);
    closed.as_mut().enable();
    ctl.reset_requested.store(true, Ordering::SeqCst);
    ctl.reset.notify_one();
    // HTTP/1 handlers are dropped with the connection; HTTP/2 stream tasks
    // wake up here. The timeout only bounds an unexpected race.
    let _ = tokio::time::timeout(Duration::from_secs(5), closed).await;
    io::Error::new(io::ErrorKind::ConnectionReset, "demo node in reset mode")
}

/// The accepted socket; closes with an RST if a reset was requested.
struct ConnIo {
    stream: TcpStream,
    ctl: Arc<ConnCtl>,
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.ctl.reset_requested.load(Ordering::SeqCst) {
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The tasks of one listening period (between start/restart and stop).
#[derive(Default)]
struct Generation {
    tasks: Mutex<GenerationTasks>,
}

#[derive(Default)]
struct GenerationTasks {
    closed: bool,
    set: JoinSet<()>,
}

impl Generation {
    /// Spawn a task that `stop()` aborts; refused once closed.
    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut tasks = lock(&self.tasks);
        if tasks.closed {
            return;
        }
        while tasks.set.try_join_next().is_some() {}
        tasks.set.spawn(fut);
    }

    /// Refuse further spawns and hand out the tasks (dropping aborts them).
    fn close(&self) -> JoinSet<()> {
        let mut tasks = lock(&self.tasks);
        tasks.closed = true;
        std::mem::take(&mut tasks.set)
    }
}

/// Hyper executor (HTTP/2 stream tasks) spawning into a generation.
#[derive(Clone)]
struct GenerationExec(Arc<Generation>);

impl<F> hyper::rt::Executor<F> for GenerationExec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(async move {
            let _ = fut.await;
        });
    }
}

fn spawn_server(shared: Arc<Shared>, listener: TcpListener) -> Arc<Generation> {
    let generation = Arc::new(Generation::default());
    generation.spawn(accept_loop(shared, listener, Arc::clone(&generation)));
    generation
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, generation: Arc<Generation>) {
    let builder = Arc::new(auto::Builder::new(GenerationExec(Arc::clone(&generation))));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                tracing::debug!(route = %shared.route, %err, "demo node accept failed");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        generation.spawn(serve_connection(
            Arc::clone(&shared),
            Arc::clone(&generation),
            Arc::clone(&builder),
            stream,
        ));
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    generation: Arc<Generation>,
    builder: Arc<auto::Builder<GenerationExec>>,
    stream: TcpStream,
) {
    let ctl = Arc::new(ConnCtl::default());
    let io = TokioIo::new(ConnIo {
        stream,
        ctl: Arc::clone(&ctl),
    });
    let service_ctl = Arc::clone(&ctl);
    let service = hyper::service::service_fn(move |req| {
        handle(
            Arc::clone(&shared),
            Arc::clone(&service_ctl),
            Arc::clone(&generation),
            req,
        )
    });
    {
        let conn = builder.serve_connection_with_upgrades(io, service);
        tokio::select! {
            () = ctl.reset.notified() => {}
            _ = conn => {}
        }
        // `conn` (and with it the socket) is dropped here.
    }
    ctl.closed.notify_waiters();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::AsyncReadExt;

    const TIMEOUT: Duration = Duration::from_secs(2);

    #[derive(Debug)]
    struct Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Raw {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        fn all(&self, name: &str) -> Vec<&str> {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect()
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }

        /// The JSESSIONID value from the first Set-Cookie, if any.
        fn session_cookie(&self) -> Option<String> {
            self.all("set-cookie").iter().find_map(|c| {
                c.strip_prefix("JSESSIONID=")
                    .and_then(|rest| rest.split(';').next())
                    .map(str::to_owned)
            })
        }
    }

    fn parse(buf: &[u8]) -> Raw {
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("no end of head");
        let head = std::str::from_utf8(&buf[..split]).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let mut rest = &buf[split + 4..];
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
                let size =
                    usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
                rest = &rest[eol + 2..];
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&rest[..size]);
                rest = &rest[size + 2..];
            }
            body
        } else {
            rest.to_vec()
        };
        Raw {
            status,
            headers,
            body,
        }
    }

    /// Send a raw request (with `Connection: close`) and read the whole answer.
    async fn send(addr: SocketAddr, request: &str) -> io::Result<Raw> {
        tokio::time::timeout(TIMEOUT, async {
            let mut stream = TcpStream::connect(addr).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut buf = Vec::new();
            stream.read_to_end(&mut buf).await?;
            if buf.is_empty() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no answer"));
            }
            Ok(parse(&buf))
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timeout"))?
    }

    async fn get(addr: SocketAddr, path: &str, extra: &str) -> Raw {
        send(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: demo\r\n{extra}Connection: close\r\n\r\n"),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn new_session_then_same_cookie_counts() {
        let node = DemoNode::start("node1").await.unwrap();
        let first = get(node.addr(), "/", "").await;
        assert_eq!(first.status, 200);
        assert_eq!(first.header("content-type"), Some("application/json"));
        assert_eq!(first.header(NODE_HEADER), Some("node1"));
        let cookie = first.all("set-cookie");
        assert_eq!(cookie.len(), 1);
        assert!(
            cookie[0].ends_with(".node1; Path=/; HttpOnly"),
            "{cookie:?}"
        );
        let id = first.session_cookie().unwrap();
        let (hex, route) = id.split_once('.').unwrap();
        assert_eq!(route, "node1");
        assert_eq!(hex.len(), 32);
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        let text = first.text();
        assert!(
            text.contains("\"counter\":1,\"new_session\":true"),
            "{text}"
        );
        assert!(text.starts_with("{\"server\":\"node1\""), "{text}");

        let second = get(
            node.addr(),
            "/x?q=1",
            &format!("Cookie: JSESSIONID={id}\r\n"),
        )
        .await;
        assert!(second.all("set-cookie").is_empty());
        let text = second.text();
        assert!(text.contains(&format!("\"session\":\"{id}\"")), "{text}");
        assert!(
            text.contains("\"counter\":2,\"new_session\":false"),
            "{text}"
        );
        assert!(text.contains("\"path\":\"/x?q=1\""), "{text}");

        // Path parameter, and an unknown cookie before the known one.
        let third = get(
            node.addr(),
            &format!("/a;JSESSIONID={id}?q=2"),
            "Cookie: JSESSIONID=DEADBEEF.node1\r\n",
        )
        .await;
        assert!(third.text().contains("\"counter\":3"), "{}", third.text());
        assert_eq!(node.requests(), 3);
        assert_eq!(node.in_flight(), 0);
        assert_eq!(node.session_count(), 1);
    }

    #[tokio::test]
    async fn body_and_headers_in_json() {
        let node = DemoNode::start("node1").await.unwrap();
        let resp = send(
            node.addr(),
            "POST /p HTTP/1.1\r\nHost: demo\r\nX-Q: a\"b\\c\r\nX-M: 1\r\nX-M: 2\r\n\
             Cookie: a=1\r\nCookie: b=2\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        )
        .await
        .unwrap();
        let text = resp.text();
        assert!(text.contains("\"method\":\"POST\""), "{text}");
        assert!(text.contains("\"body_bytes\":3,\"body_sum\":294"), "{text}");
        assert!(text.contains("\"x-q\":\"a\\\"b\\\\c\""), "{text}");
        assert!(text.contains("\"x-m\":\"1, 2\""), "{text}");
        assert!(text.contains("\"cookie\":\"a=1; b=2\""), "{text}");
        assert!(text.contains("\"host\":\"demo\""), "{text}");
    }

    #[test]
    fn json_escaping() {
        let mut out = String::new();
        push_json_str(&mut out, "a\"\\\n\u{1}é");
        assert_eq!(out, "\"a\\\"\\\\\\u000A\\u0001é\"");
    }

    #[test]
    fn candidates_and_paths() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("x=1; JSESSIONID=A.n1"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("JSESSIONID=B.n2"));
        let c = session_candidates(&headers, "/a;jsessionid=C.n3/b;JsessionId=D;x=1");
        assert_eq!(c, ["A.n1", "B.n2", "C.n3", "D"]);
        assert_eq!(strip_path_params("/slow;jsessionid=X"), "/slow");
        assert_eq!(strip_path_params("/a;x=1/b"), "/a/b");
    }

    #[tokio::test]
    async fn stop_refuses_then_restart_serves_with_sessions() {
        let node = DemoNode::start("node1").await.unwrap();
        let id = get(node.addr(), "/", "").await.session_cookie().unwrap();
        let mut idle = TcpStream::connect(node.addr()).await.unwrap();
        node.stop().await;
        assert!(!node.is_running());
        let err = TcpStream::connect(node.addr()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        // The open connection was closed too.
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(TIMEOUT, idle.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

        node.restart().await.unwrap();
        let resp = get(node.addr(), "/", &format!("Cookie: JSESSIONID={id}\r\n")).await;
        assert!(resp.text().contains("\"counter\":2"), "{}", resp.text());

        node.stop().await;
        node.forget_sessions();
        node.restart().await.unwrap();
        let resp = get(node.addr(), "/", &format!("Cookie: JSESSIONID={id}\r\n")).await;
        assert!(
            resp.text().contains("\"new_session\":true"),
            "{}",
            resp.text()
        );
        assert_ne!(resp.session_cookie().unwrap(), id);
    }

    #[tokio::test]
    async fn reset_mode_resets() {
        let node = DemoNode::start("node1").await.unwrap();
        node.set_reset_mode(true);
        let err = send(node.addr(), "GET / HTTP/1.1\r\nHost: demo\r\n\r\n")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");
        assert_eq!(node.requests(), 0);
        node.set_reset_mode(false);
        assert_eq!(get(node.addr(), "/", "").await.status, 200);
        assert_eq!(node.requests(), 1);
    }

    #[tokio::test]
    async fn health_status_switch() {
        let node = DemoNode::start("node1").await.unwrap();
        let ok = get(node.addr(), "/health", "").await;
        assert_eq!((ok.status, ok.text().as_str()), (200, "ok"));
        node.set_health(503);
        let fail = get(node.addr(), "/health", "").await;
        assert_eq!((fail.status, fail.text().as_str()), (503, "fail"));
        assert_eq!(node.health_checks(), 2);
        assert_eq!(node.requests(), 0);
    }

    #[tokio::test]
    async fn cluster_re_suffixes_sessions() {
        let nodes = DemoNode::start_cluster(&["node1", "node2"]).await.unwrap();
        let id = get(nodes[0].addr(), "/", "")
            .await
            .session_cookie()
            .unwrap();
        let hex = id.split('.').next().unwrap().to_owned();

        let on2 = get(
            nodes[1].addr(),
            "/",
            &format!("Cookie: JSESSIONID={id}\r\n"),
        )
        .await;
        assert_eq!(on2.session_cookie().unwrap(), format!("{hex}.node2"));
        let text = on2.text();
        assert!(text.contains("\"server\":\"node2\""), "{text}");
        assert!(
            text.contains("\"counter\":2,\"new_session\":false"),
            "{text}"
        );

        let back = get(
            nodes[0].addr(),
            "/",
            &format!("Cookie: JSESSIONID={hex}.node2\r\n"),
        )
        .await;
        assert_eq!(back.session_cookie().unwrap(), format!("{hex}.node1"));
        assert!(back.text().contains("\"counter\":3"), "{}", back.text());

        // A standalone node does not know the cluster's sessions.
        let alone = DemoNode::start("node3").await.unwrap();
        let other = get(alone.addr(), "/", &format!("Cookie: JSESSIONID={id}\r\n")).await;
        assert!(other.text().contains("\"new_session\":true"));
    }

    #[tokio::test]
    async fn logout_expires_session() {
        let node = DemoNode::start("node1").await.unwrap();
        let id = get(node.addr(), "/", "").await.session_cookie().unwrap();
        let out = get(
            node.addr(),
            "/logout",
            &format!("Cookie: JSESSIONID={id}\r\n"),
        )
        .await;
        assert_eq!(
            out.all("set-cookie"),
            [format!(
                "JSESSIONID={id}; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
            )]
        );
        assert_eq!(node.session_count(), 0);
        let again = get(node.addr(), "/", &format!("Cookie: JSESSIONID={id}\r\n")).await;
        assert!(again.text().contains("\"new_session\":true"));
    }

    #[tokio::test]
    async fn special_paths() {
        let node = DemoNode::start("node1").await.unwrap();
        let addr = node.addr();

        let stream = get(addr, "/stream?chunks=3&size=5", "").await;
        assert_eq!(stream.status, 200);
        assert_eq!(stream.header("transfer-encoding"), Some("chunked"));
        assert_eq!(stream.body, b"x".repeat(15));

        let echo = send(
            addr,
            "POST /echo HTTP/1.1\r\nHost: demo\r\nContent-Type: text/odd\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(echo.header("content-type"), Some("text/odd"));
        assert_eq!(echo.body, b"hello");

        let cookies = get(addr, "/set-cookies", "").await;
        let all = cookies.all("set-cookie");
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(&all[1..], ["a=1; Path=/", "b=2; Path=/"]);

        let teapot = get(addr, "/status/418", "").await;
        assert_eq!(teapot.status, 418);
        assert!(teapot.text().contains("\"session\":"));
        assert_eq!(get(addr, "/status/abc", "").await.status, 400);
        assert_eq!(get(addr, "/status/204", "").await.status, 204);
    }

    #[tokio::test]
    async fn slow_counts_in_flight() {
        let node = DemoNode::start("node1").await.unwrap();
        let addr = node.addr();
        let slow = tokio::spawn(async move { get(addr, "/slow?ms=300", "").await });
        tokio::time::timeout(TIMEOUT, async {
            while node.in_flight() != 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        let resp = slow.await.unwrap();
        assert!(resp.text().contains("\"counter\":1"));
        assert_eq!(node.in_flight(), 0);
    }

    #[tokio::test]
    async fn upgrade_echoes_bytes() {
        let node = DemoNode::start("node1").await.unwrap();
        tokio::time::timeout(TIMEOUT, async {
            let mut stream = TcpStream::connect(node.addr()).await.unwrap();
            stream
                .write_all(
                    b"GET /ws HTTP/1.1\r\nHost: demo\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\n\r\n",
                )
                .await
                .unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let resp = parse(&head);
            assert_eq!(resp.status, 101);
            assert_eq!(resp.header("upgrade"), Some("websocket"));
            assert_eq!(resp.header("connection"), Some("upgrade"));
            stream.write_all(b"ping!").await.unwrap();
            let mut buf = [0u8; 5];
            stream.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping!");
            stream.shutdown().await.unwrap();
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn h2c_prior_knowledge() {
        let node = DemoNode::start("node1").await.unwrap();
        tokio::time::timeout(TIMEOUT, async {
            let stream = TcpStream::connect(node.addr()).await.unwrap();
            let (mut send, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                TokioIo::new(stream),
            )
            .await
            .unwrap();
            tokio::spawn(conn);
            let req = Request::get(format!("http://{}/h2?x=1", node.addr()))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.version(), Version::HTTP_2);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains("\"path\":\"/h2?x=1\""), "{text}");
            assert!(text.contains("\"host\":\"127.0.0.1:"), "{text}");
        })
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_closes_upgraded_and_busy_connections() {
        let node = DemoNode::start("node1").await.unwrap();
        let addr = node.addr();
        let mut upgraded = TcpStream::connect(addr).await.unwrap();
        upgraded
            .write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(TIMEOUT, upgraded.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 101"));
        let slow = tokio::spawn(async move {
            send(addr, "GET /slow?ms=5000 HTTP/1.1\r\nHost: d\r\n\r\n").await
        });
        tokio::time::timeout(TIMEOUT, async {
            while node.in_flight() != 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        node.stop().await;
        assert_eq!(node.in_flight(), 0);
        let read = tokio::time::timeout(TIMEOUT, upgraded.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // The slow request's connection was closed without an answer.
        assert!(slow.await.unwrap().is_err());
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reset_mode_resets_h2_connection() {
        let node = DemoNode::start("node1").await.unwrap();
        tokio::time::timeout(TIMEOUT, async {
            let stream = TcpStream::connect(node.addr()).await.unwrap();
            let (mut send, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                TokioIo::new(stream),
            )
            .await
            .unwrap();
            let conn = tokio::spawn(conn);
            let req = || {
                Request::get(format!("http://{}/", node.addr()))
                    .body(Empty::<Bytes>::new())
                    .unwrap()
            };
            assert_eq!(send.send_request(req()).await.unwrap().status(), 200);
            node.set_reset_mode(true);
            assert!(send.send_request(req()).await.is_err());
            assert!(conn.await.unwrap().is_err());
        })
        .await
        .unwrap();
        assert_eq!(node.requests(), 1);
    }
}
