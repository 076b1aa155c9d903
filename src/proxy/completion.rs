//! The end of a request: what the access log line says and the counters that
//! fall when the response is done. It travels inside the response body
//! ([`super::body::ResBody`]), so "done" means the last byte was sent or the
//! client went away, not merely that the head was written.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Uri};

use crate::listener::ConnState;
use crate::metrics::RequestStats;
use crate::pool::{Outcome, Pool};

#[derive(Debug)]
pub struct Completion {
    conn: Arc<ConnState>,
    start: Instant,
    client: IpAddr,
    method: Method,
    uri: Uri,
    status: u16,
    pool: Option<Arc<Pool>>,
    /// Index of the server whose in-flight count this request holds.
    server: Option<usize>,
    outcome: Option<Outcome>,
    bytes: u64,
    aborted: bool,
    /// Where a request answered before routing is counted.
    unrouted: Option<Arc<RequestStats>>,
    access_log: bool,
}

impl Completion {
    pub fn new(
        conn: Arc<ConnState>,
        client: IpAddr,
        method: Method,
        uri: Uri,
        access_log: bool,
    ) -> Completion {
        conn.begin_request();
        Completion {
            conn,
            start: Instant::now(),
            client,
            method,
            uri,
            status: 0,
            pool: None,
            server: None,
            outcome: None,
            bytes: 0,
            aborted: false,
            unrouted: None,
            access_log,
        }
    }

    /// The request is answered before any pool was chosen: count it here.
    pub fn set_unrouted(&mut self, stats: &Arc<RequestStats>) {
        self.unrouted = Some(Arc::clone(stats));
    }

    pub fn set_pool(&mut self, pool: &Arc<Pool>) {
        self.pool = Some(Arc::clone(pool));
    }

    /// Moves this request's in-flight count to `server` of the pool.
    pub fn set_server(&mut self, server: usize) {
        if let Some(pool) = &self.pool {
            if let Some(old) = self.server.and_then(|i| pool.servers.get(i)) {
                old.live.end();
            }
            if let Some(new) = pool.servers.get(server) {
                new.live.begin();
                self.server = Some(server);
            }
        }
    }

    pub fn set_outcome(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }

    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }

    pub fn add_bytes(&mut self, n: usize) {
        self.bytes += n as u64;
    }

    pub fn mark_aborted(&mut self) {
        self.aborted = true;
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let server = self
            .pool
            .as_ref()
            .zip(self.server)
            .and_then(|(p, i)| p.servers.get(i));
        if let Some(s) = server {
            s.live.end();
        }
        self.conn.end_request();
        let took = self.start.elapsed();
        match (&self.pool, server) {
            (Some(_), Some(s)) => s.live.stats.record(self.status, took),
            (Some(p), None) => p.stats.unplaced.record(self.status, took),
            (None, _) => {
                if let Some(u) = &self.unrouted {
                    u.record(self.status, took);
                }
            }
        }
        if let (Some(p), Some(o)) = (&self.pool, self.outcome) {
            p.stats.decided(o);
        }
        if !self.access_log {
            return;
        }
        tracing::info!(
            target: "limpet::access",
            client = %self.client,
            method = %self.method,
            path = %self.uri.path(),
            status = self.status,
            pool = self.pool.as_ref().map_or("-", |p| &*p.name),
            server = server.map_or("-", |s| &*s.name),
            sticky = self.outcome.map_or("-", Outcome::as_str),
            bytes = self.bytes,
            duration_ms = took.as_secs_f64() * 1000.0,
            aborted = self.aborted,
        );
    }
}
