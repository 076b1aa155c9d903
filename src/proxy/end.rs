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

/// What only the access log needs from the request (shared, not copied:
/// header values are reference-counted).
struct Access {
    method: Method,
    uri: Uri,
    host: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
}

impl End {
    /// A request begins on `conn`.
    pub fn begin<B>(
        conn: &Arc<ConnState>,
        current: &Rc<Current>,
        client: IpAddr,
        req: &http::Request<B>,
    ) -> End {
        conn.begin_request();
        End {
            conn: Arc::clone(conn),
            access: current.snap.access_log.then(|| Access::of(req)),
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
        let host = match (&a.host, a.uri.authority()) {
            (None, Some(authority)) => std::borrow::Cow::Borrowed(authority.as_str()),
            (host, _) => text(host.as_ref()),
        };
        // Strings from the client are recorded as strings: quoted and
        // escaped in the text format, JSON strings in JSON.
        tracing::info!(
            target: "limpet::access",
            client = %self.client,
            method = %a.method,
            host = &*host,
            path = %a.uri.path(),
            status = self.status,
            pool = pool.map_or("-", |p| &*p.name),
            server = server.map_or("-", |s| &*s.name),
            sticky = self.outcome.map_or("-", Outcome::as_str),
            bytes = self.bytes,
            duration_ms = took.as_secs_f64() * 1000.0,
            upstream_ms = self.upstream.map_or(-1.0, |u| u.as_secs_f64() * 1000.0),
            retries = self.attempts.saturating_sub(1),
            user_agent = &*text(a.user_agent.as_ref()),
            aborted,
        );
    }
}

/// A header value for the log: as text (invalid UTF-8 replaced), `-` if absent.
fn text(v: Option<&HeaderValue>) -> std::borrow::Cow<'_, str> {
    v.map_or(std::borrow::Cow::Borrowed("-"), |v| {
        String::from_utf8_lossy(v.as_bytes())
    })
}

impl Access {
    fn of<B>(req: &http::Request<B>) -> Access {
        let headers: &HeaderMap = req.headers();
        // Without `Host` (HTTP/2), the log reads `:authority` from the
        // kept URI: nothing is copied for it.
        Access {
            method: req.method().clone(),
            uri: req.uri().clone(),
            host: headers.get(header::HOST).cloned(),
            user_agent: headers.get(header::USER_AGENT).cloned(),
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
