//! Sends a request to the decided server, moving it to another server when
//! the connect fails (the server never saw it, so this is safe for any
//! method), up to the pool's `retries`.

use std::sync::{Arc, Mutex};

use http::request::Parts;
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::body::ReqBody;
use super::completion::Completion;
use super::error::ProxyError;
use crate::pool::{Affinity, Decision, NoServer, Pool};
use crate::runtime::Snapshot;

/// What the sticky step found, handed to the pool's decision on every attempt.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub affinity: Affinity,
    /// Rendezvous key for a deterministic replacement of a dead affine server.
    pub key: Option<u64>,
}

pub async fn send(
    snap: &Snapshot,
    pool: &Arc<Pool>,
    parts: &Parts,
    first_body: ReqBody,
    slot: Option<Arc<Mutex<Option<Incoming>>>>,
    placement: Placement,
    done: &mut Completion,
) -> Result<(Response<Incoming>, Decision), ProxyError> {
    let path: PathAndQuery = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut tried: Vec<usize> = Vec::new();
    let mut body = Some(first_body);
    loop {
        let decision = match pool.decide(placement.affinity, placement.key, &tried) {
            Ok(d) => d,
            Err(NoServer::AffineDown) => return Err(ProxyError::NoServer),
            Err(NoServer::NoneUsable) if tried.is_empty() => return Err(ProxyError::NoServer),
            Err(NoServer::NoneUsable) => return Err(ProxyError::Unreachable),
        };
        let server = &pool.servers[decision.server];
        done.set_server(decision.server);
        done.set_outcome(decision.outcome);

        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(server.authority.clone())
            .path_and_query(path.clone())
            .build()
            .map_err(|_| ProxyError::BadRequest)?;
        let this_body = match body.take() {
            Some(b) => b,
            None => ReqBody::reclaim(&slot).ok_or(ProxyError::Unreachable)?,
        };
        let mut req = Request::new(this_body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = parts.headers.clone();

        match tokio::time::timeout(snap.timeouts.backend_response, snap.client.request(req)).await {
            Ok(Ok(res)) => return Ok((res, decision)),
            Ok(Err(e)) if e.is_connect() => {
                tracing::warn!(pool = %pool.name, server = %server.name, error = %e, "connect to server failed");
                tried.push(decision.server);
                if tried.len() > pool.retries as usize {
                    return Err(ProxyError::Unreachable);
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(pool = %pool.name, server = %server.name, error = %e, "request to server failed");
                return Err(ProxyError::Unreachable);
            }
            Err(_) => {
                tracing::warn!(pool = %pool.name, server = %server.name, "server did not answer within backend_response");
                return Err(ProxyError::Timeout);
            }
        }
    }
}
