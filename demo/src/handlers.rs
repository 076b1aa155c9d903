//! Request handling of the demo node: [`handle`] is the hyper service of
//! every connection; it counts the request, resolves its session and
//! answers by path (`/health`, `/stream`, `/echo`, upgrades, and the JSON
//! report for everything else, including `/slow`, `/status/NNN`,
//! `/set-cookies`, `/logout` and `/static/`).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use super::serve::{ConnCtl, Generation, reset_connection};
use super::session::{Session, expire_cookie, session_candidates, session_cookie, set_cookie};
use super::{NODE_HEADER, Shared};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Response body type of the demo node.
type DemoBody = UnsyncBoxBody<Bytes, BoxError>;

/// Largest chunk `/stream` will produce (bigger `size` values are clamped).
const MAX_STREAM_CHUNK: usize = 16 * 1024 * 1024;

/// Default `/slow` delay when `ms` is absent or invalid.
const DEFAULT_SLOW_MS: u64 = 100;

pub(super) async fn handle(
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

/// The path without any `;param` path parameters, for routing.
pub(super) fn strip_path_params(path: &str) -> String {
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
pub(super) fn push_json_str(out: &mut String, s: &str) {
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
        // How many Cookie fields arrived: an HTTP/1.1 server expects one.
        let cookie_headers = self.headers.get_all(header::COOKIE).iter().count();
        out.push_str(&format!(
            ",\"body_bytes\":{},\"body_sum\":{},\"cookie_headers\":{cookie_headers},\"headers\":{{",
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
