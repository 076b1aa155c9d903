//! The end of a request: the access log line and the counters. [`End`] is
//! begun when a request arrives and finished when its response has been
//! sent whole (or the client went away): the response body carries it
//! there, so "done" means the last byte was sent, not merely that the head
//! was written.
//!
//! Finishing is explicit ([`End::finish`]). The one exception is a request
//! whose future hyper drops — the client closed its connection or reset its
//! HTTP/2 stream while limpet waited for the server, or the response body
//! was dropped half-sent: then `Drop` finishes it as aborted (499 if no
//! status was set), so the in-flight counts always come down.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Method, Uri, header};

use super::conn::ConnState;
use super::local::Current;
use crate::decision::Outcome;

/// A request in flight, as the log and the counters will see it.
pub struct End {
    conn: Arc<ConnState>,
    current: Rc<Current>,
    start: Instant,
    client: IpAddr,
    /// Only kept when the access log is on.
    access: Option<Access>,
    status: u16,
    pool: Option<usize>,
    /// The server whose in-flight count this request holds.
    server: Option<usize>,
    outcome: Option<Outcome>,
    bytes: u64,
    /// Servers tried (a reconnect after a stale connection included).
    attempts: u32,
    /// From the last attempt's connect to the server's response head.
    upstream: Option<std::time::Duration>,
    /// Counted and logged already.
    done: bool,
}

/// What only the access log needs from the request.
pub enum Access {
    /// A request hyper parsed (shared, not copied: header values are
    /// reference-counted).
    Parts {
        method: Method,
        uri: Uri,
        host: Option<HeaderValue>,
        user_agent: Option<HeaderValue>,
    },
    /// A request limpet's own HTTP/1 path parsed: the path, the authority
    /// and the `User-Agent`, copied into one buffer (the received bytes are
    /// reused for the next request).
    Raw {
        method: Method,
        bytes: Box<[u8]>,
        /// Ends of the path, then of the authority, in `bytes`; the
        /// `User-Agent` is the rest.
        path_end: usize,
        host_end: Option<usize>,
        has_user_agent: bool,
    },
}

impl End {
    /// A request begins on `conn`.
    pub fn begin<B>(
        conn: &Arc<ConnState>,
        current: &Rc<Current>,
        client: IpAddr,
        req: &http::Request<B>,
    ) -> End {
        End::begin_with(conn, current, client, || Access::of(req))
    }

    /// A request begins on `conn`; `access` says what the access log
    /// needs of it, asked only when the log is on.
    pub fn begin_with(
        conn: &Arc<ConnState>,
        current: &Rc<Current>,
        client: IpAddr,
        access: impl FnOnce() -> Access,
    ) -> End {
        conn.begin_request();
        End {
            conn: Arc::clone(conn),
            access: current.snap.access_log.then(access),
            current: Rc::clone(current),
            start: Instant::now(),
            client,
            status: 0,
            pool: None,
            server: None,
            outcome: None,
            bytes: 0,
            attempts: 0,
            upstream: None,
            done: false,
        }
    }

    /// The request belongs to pool `i` of the snapshot.
    pub fn set_pool(&mut self, i: usize) {
        self.pool = Some(i);
    }

    /// Moves this request's in-flight count to `server` of its pool.
    pub fn set_server(&mut self, server: usize) {
        let Some(pool) = self.pool.and_then(|p| self.current.snap.pools.get(p)) else {
            return;
        };
        if let Some(old) = self.server.and_then(|i| pool.servers.get(i)) {
            old.live.end();
        }
        if let Some(new) = pool.servers.get(server) {
            new.live.begin();
            self.server = Some(server);
        }
        self.attempts = self.attempts.saturating_add(1);
    }

    /// No server after all (limpet could not even try one): the request
    /// is counted as answered by limpet (`server=""`), not on a server's
    /// account.
    pub fn unset_server(&mut self) {
        let Some(pool) = self.pool.and_then(|p| self.current.snap.pools.get(p)) else {
            return;
        };
        if let Some(old) = self.server.take().and_then(|i| pool.servers.get(i)) {
            old.live.end();
        }
    }

    pub fn set_outcome(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }

    /// The status the log and the metrics record (499: the client left).
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }

    /// The server's response head came `took` after the attempt began.
    pub fn set_upstream(&mut self, took: std::time::Duration) {
        self.upstream = Some(took);
    }

    pub fn add_bytes(&mut self, n: usize) {
        self.bytes += n as u64;
    }

    /// The response is done (`aborted`: the client went away first): the
    /// in-flight counts fall, the request is counted and logged.
    pub fn finish(mut self, aborted: bool) {
        self.record(aborted);
    }

    fn record(&mut self, aborted: bool) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let snap = &self.current.snap;
        let pool = self.pool.and_then(|p| snap.pools.get(p));
        let server = pool.zip(self.server).and_then(|(p, i)| p.servers.get(i));
        if let Some(s) = server {
            s.live.end();
        }
        self.conn.end_request();
        let took = self.start.elapsed();
        match (pool, server) {
            (Some(_), Some(s)) => s.live.stats.record(self.status, took),
            (Some(p), None) => p.stats.unplaced.record(self.status, took),
            (None, _) => snap.unrouted.record(self.status, took),
        }
        if let (Some(p), Some(o)) = (pool, self.outcome) {
            p.stats.decided(o);
        }
        let Some(a) = &self.access else {
            return;
        };
        let (method, path, host, user_agent) = a.parts();
        // Strings from the client are recorded as strings: quoted and
        // escaped in the text format, JSON strings in JSON.
        tracing::info!(
            target: "limpet::access",
            client = %self.client,
            method = %method,
            host = &*host,
            path = %path,
            status = self.status,
            pool = pool.map_or("-", |p| &*p.name),
            server = server.map_or("-", |s| &*s.name),
            sticky = self.outcome.map_or("-", Outcome::as_str),
            bytes = self.bytes,
            duration_ms = took.as_secs_f64() * 1000.0,
            upstream_ms = self.upstream.map_or(-1.0, |u| u.as_secs_f64() * 1000.0),
            retries = self.attempts.saturating_sub(1),
            user_agent = &*user_agent,
            aborted,
        );
    }
}

/// A header value for the log: as text (invalid UTF-8 replaced), `-` if absent.
fn text(v: Option<&[u8]>) -> std::borrow::Cow<'_, str> {
    v.map_or(std::borrow::Cow::Borrowed("-"), String::from_utf8_lossy)
}

type Cow<'a> = std::borrow::Cow<'a, str>;

impl Access {
    fn of<B>(req: &http::Request<B>) -> Access {
        let headers: &HeaderMap = req.headers();
        // Without `Host` (HTTP/2), the log reads `:authority` from the
        // kept URI: nothing is copied for it.
        Access::Parts {
            method: req.method().clone(),
            uri: req.uri().clone(),
            host: headers.get(header::HOST).cloned(),
            user_agent: headers.get(header::USER_AGENT).cloned(),
        }
    }

    /// What the log needs of an HTTP/1 request limpet parsed itself: its
    /// path (without the query), authority and `User-Agent`.
    pub fn raw(
        method: &Method,
        path: &[u8],
        host: Option<&[u8]>,
        user_agent: Option<&[u8]>,
    ) -> Access {
        let path = path.split(|&b| b == b'?').next().unwrap_or_default();
        let path = if path.is_empty() { b"/" } else { path };
        let mut bytes = Vec::with_capacity(
            path.len() + host.map_or(0, <[u8]>::len) + user_agent.map_or(0, <[u8]>::len),
        );
        bytes.extend_from_slice(path);
        let path_end = bytes.len();
        let host_end = host.map(|h| {
            bytes.extend_from_slice(h);
            bytes.len()
        });
        if let Some(ua) = user_agent {
            bytes.extend_from_slice(ua);
        }
        Access::Raw {
            method: method.clone(),
            bytes: bytes.into_boxed_slice(),
            path_end,
            host_end,
            has_user_agent: user_agent.is_some(),
        }
    }

    /// Method, path, host and user agent as the log writes them (`-` when
    /// absent).
    fn parts(&self) -> (&Method, Cow<'_>, Cow<'_>, Cow<'_>) {
        match self {
            Access::Parts {
                method,
                uri,
                host,
                user_agent,
            } => {
                let host = match (host, uri.authority()) {
                    (None, Some(authority)) => Cow::Borrowed(authority.as_str()),
                    (host, _) => text(host.as_ref().map(HeaderValue::as_bytes)),
                };
                (
                    method,
                    Cow::Borrowed(uri.path()),
                    host,
                    text(user_agent.as_ref().map(HeaderValue::as_bytes)),
                )
            }
            Access::Raw {
                method,
                bytes,
                path_end,
                host_end,
                has_user_agent,
            } => {
                let path = String::from_utf8_lossy(&bytes[..*path_end]);
                let ua_start = host_end.unwrap_or(*path_end);
                let host = text(host_end.map(|end| &bytes[*path_end..end]));
                let ua = text(has_user_agent.then(|| &bytes[ua_start..]));
                (method, path, host, ua)
            }
        }
    }
}

impl Drop for End {
    /// Not finished: the request was dropped on the way (see the module
    /// documentation).
    fn drop(&mut self) {
        if !self.done {
            if self.status == 0 {
                self.status = 499;
            }
            self.record(true);
        }
    }
}
