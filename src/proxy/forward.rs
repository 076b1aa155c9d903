//! Sends a request to the decided server and moves it to another server
//! when that is safe: a failed connect (the server never saw the request:
//! any method), or a connection reset or closed before the response began
//! for an idempotent request whose body can be sent again (a JVM being
//! killed accepts connections for a moment, then resets them). Up to the
//! pool's `retries`.
//!
//! Blame goes to the side that failed. Only what the server did — a refused
//! or reset connection, a malformed response — counts toward its passive
//! check. A client whose body is malformed, who hangs up or pauses past
//! `client_body` fails its own request (400, nothing, 408); limpet running
//! out of file descriptors or ports is limpet's problem (503, logged).
//! The `backend_response` clock runs while the server has the turn: from the
//! last progress of the upload, never while limpet waits for the client.

use std::sync::Arc;

use http::request::Parts;
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::body::Source;
use super::completion::Completion;
use super::error::ProxyError;
use crate::pool::{Affinity, Decision, NoServer, Outcome, Pool};
use crate::runtime::Snapshot;

/// What the sticky step found, handed to the pool's decision on every attempt.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub affinity: Affinity,
    /// Rendezvous key for a deterministic replacement of a dead affine server.
    pub key: Option<u64>,
}

/// Methods a client may repeat without changing the result (RFC 9110 §9.2.2).
pub fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

pub async fn send(
    snap: &Snapshot,
    pool: &Arc<Pool>,
    mut parts: Parts,
    source: &Source,
    placement: Placement,
    done: &mut Completion,
) -> Result<(Response<Incoming>, Decision), ProxyError> {
    let path: PathAndQuery = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut tried: Vec<usize> = Vec::new();
    loop {
        let decision = match pool.decide(placement.affinity, placement.key, &tried) {
            Ok(d) => d,
            Err(NoServer::AffineDown) => return Err(ProxyError::NoServer),
            Err(NoServer::AffineFailed) => return Err(ProxyError::Unreachable),
            Err(NoServer::NoneUsable) if tried.is_empty() => return Err(ProxyError::NoServer),
            Err(NoServer::NoneUsable) => return Err(ProxyError::Unreachable),
        };
        let server = &pool.servers[decision.server];
        if decision.outcome == Outcome::Redispatch {
            pool.failed_over(placement.affinity, decision.server);
        }
        done.set_server(decision.server);
        done.set_outcome(decision.outcome);

        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(server.authority.clone())
            .path_and_query(path.clone())
            .build()
            .map_err(|_| ProxyError::BadRequest)?;
        let body = source.body().ok_or(ProxyError::Unreachable)?;
        let mut req = Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        // The last allowed attempt takes the headers; earlier ones keep a
        // copy for the next server (a failed request is not given back).
        *req.headers_mut() = if tried.len() >= pool.retries as usize {
            std::mem::take(&mut parts.headers)
        } else {
            parts.headers.clone()
        };

        let failure = match respond(snap, source, snap.client.request(req)).await {
            Ok(Ok(res)) => return Ok((res, decision)),
            Ok(Err(e)) => e,
            Err(()) => {
                // Slow is not dead: a long report must not take its server
                // out, so a response timeout is no passive failure.
                tracing::warn!(pool = %pool.name, server = %server.name, "server did not answer within backend_response");
                return Err(ProxyError::Timeout);
            }
        };
        if let Some(fault) = source.progress.fault() {
            tracing::debug!(pool = %pool.name, server = %server.name, ?fault, "request body failed on the client's side");
            return Err(fault.error());
        }
        if let Some(errno) = exhausted(&failure) {
            crate::resources::exhausted("connecting to a server", errno);
            return Err(ProxyError::Exhausted);
        }
        if source.progress.waiting_for_client() {
            // The server gave up while the client was slow: not its fault.
            tracing::debug!(pool = %pool.name, server = %server.name, error = %failure, "server closed while waiting for a slow client body");
            return Err(ProxyError::Unreachable);
        }
        mark_failed(pool, decision.server);
        // A connect error: the server never saw the request. Otherwise it
        // may have: only idempotent requests with a replayable body move.
        let retry = failure.is_connect()
            || (idempotent(&parts.method) && (source.replayable() || source.body().is_some()));
        tracing::warn!(pool = %pool.name, server = %server.name, error = %failure, retry, "request to server failed");
        tried.push(decision.server);
        if !retry || tried.len() > pool.retries as usize {
            return Err(ProxyError::Unreachable);
        }
    }
}

/// Waits for the response head while the server has the turn: the
/// deadline moves with the upload's progress and stands still while limpet
/// waits for the client. `Err(())` when `backend_response` ran out.
async fn respond<F: std::future::Future>(
    snap: &Snapshot,
    source: &Source,
    response: F,
) -> Result<F::Output, ()> {
    let wait = snap.timeouts.backend_response;
    if !source.streams() {
        return tokio::time::timeout(wait, response).await.map_err(|_| ());
    }
    let mut response = std::pin::pin!(response);
    loop {
        let deadline = source.progress.deadline(wait);
        tokio::select! {
            r = &mut response => return Ok(r),
            _ = tokio::time::sleep_until(deadline) => {
                if source.progress.fault().is_none()
                    && !source.progress.waiting_for_client()
                    && source.progress.deadline(wait) <= tokio::time::Instant::now()
                {
                    return Err(());
                }
            }
        }
    }
}

/// The errno of a failure that is limpet's own shortage (descriptors,
/// memory, local ports), found anywhere in the error's chain.
fn exhausted(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(code) = io.raw_os_error()
            && crate::resources::is_exhaustion(code)
        {
            return Some(code);
        }
        cur = err.source();
    }
    None
}

/// Counts a failure toward the server's passive check. As in nginx, the
/// only server of a pool is never marked down by real traffic: there is
/// nobody to move its requests to.
fn mark_failed(pool: &Pool, server: usize) {
    if pool.servers.len() == 1 {
        return;
    }
    let s = &pool.servers[server];
    if s.live.record_failure(pool.passive) {
        tracing::warn!(
            pool = %pool.name,
            server = %s.name,
            for_ = ?pool.passive.fail_timeout,
            "server marked down by passive checks (max_fails reached)"
        );
    }
}
