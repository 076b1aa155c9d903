//! Sends a request to the server the pool decides on, and moves it to
//! another server when that is safe, up to the pool's `retries`:
//!
//! * the connect failed: the request was never built, let alone sent, so
//!   any method moves, body and all;
//! * the connection closed before the request was written (a stale
//!   keep-alive connection): hyper gives the request back and it moves
//!   without a copy;
//! * the connection was reset or closed after the request was written, and
//!   the method is idempotent with a body that can be sent again (a JVM
//!   being killed accepts connections for a moment, then resets them): a
//!   copy kept for this case is sent elsewhere. This is the only case that
//!   copies a request's header.
//!
//! Blame goes to the side that failed. Only what the server did — a refused
//! or reset connection, a malformed response — counts toward its passive
//! check ([`Pool::failed`]). A client whose body is malformed, who hangs up
//! or pauses past `client_body` fails its own request (400, nothing, 408);
//! limpet running out of file descriptors or ports is limpet's problem
//! (503, logged). The `backend_response` clock runs while the server has the
//! turn: from the last progress of the upload, never while limpet waits for
//! the client.
//!
//! These rules are one pure function, [`super::verdict::classify`], whose
//! table test has a row for each; [`send`] only says what happened to an
//! attempt and acts on the verdict.

use std::rc::Rc;

use http::request::Parts;
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::body::Back;
use super::end::End;
use super::error::ProxyError;
use super::local::Local;
use super::upload::{Progress, ReqBody};
use super::verdict::{Attempt, Context, Next, Verdict, classify};
use crate::decision::{Decision, Outcome};
use crate::pool::Pool;
use crate::runtime::Snapshot;
use crate::sticky::Found;

/// Methods a client may repeat without changing the result (RFC 9110 §9.2.2).
pub fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// A server answered.
pub struct Sent {
    pub response: Response<Incoming>,
    pub decision: Decision,
    /// The connection it answered on, to reuse when the response is done.
    pub back: Back,
}

/// Forwards `request` to the server the pool decides for `found`.
pub async fn send(
    local: &Rc<Local>,
    snap: &Snapshot,
    pool: &Pool,
    found: &Found,
    request: Request<ReqBody>,
    end: &mut End,
) -> Result<Sent, ProxyError> {
    // A body that does not stream is sent at once: the server has the turn
    // from the start.
    let streamed = request.body().progress();
    let fixed;
    let progress = match &streamed {
        Some(p) => &**p,
        None => {
            fixed = Progress::default();
            &fixed
        }
    };
    let replayable = idempotent(request.method()) && request.body().replay().is_some();
    let mut unsent: Option<Request<ReqBody>> = Some(request);
    let mut tries = Tries::default();
    loop {
        let decision = tries.next(pool, found, end)?;
        let server = &pool.servers[decision.server];

        // Connect first: a failed connect needs no copy of the request.
        let attempt = std::time::Instant::now();
        let checkout = local
            .clients
            .checkout(
                server.slot,
                server.address,
                server.tls.as_ref(),
                snap.timeouts.connect,
            )
            .await;
        let (what, context, error) = match checkout {
            Ok(mut sender) => {
                let Some(request) = unsent.take() else {
                    return Err(ProxyError::Unreachable);
                };
                // A copy for a replay after a mid-request reset, only when one may follow.
                let copy = (replayable && tries.may_retry(pool)).then(|| duplicate(&request));
                let mut failure = match respond(
                    snap,
                    progress,
                    sender.inner.try_send_request(request),
                )
                .await
                {
                    Ok(Ok(response)) => {
                        end.set_upstream(attempt.elapsed());
                        return Ok(Sent {
                            response,
                            decision,
                            back: Back {
                                local: Rc::clone(local),
                                slot: server.slot,
                                sender: sender.inner,
                                request: streamed,
                            },
                        });
                    }
                    Ok(Err(e)) => e,
                    Err(()) => {
                        // Slow is not dead: a long report must not take
                        // its server out (no blame, no retry).
                        tracing::warn!(pool = %pool.name, server = %server.name, "server did not answer within backend_response");
                        return Err(failed(classify(
                            Attempt::Timeout,
                            tries.context(pool, sender.reused, false),
                        )));
                    }
                };
                let what = if let Some(back) = failure.take_message() {
                    // Never written: the request comes back for the next try.
                    unsent = Some(back);
                    Attempt::ClosedBeforeWrite
                } else if let Some(fault) = progress.fault() {
                    Attempt::ClientFault(fault.into())
                } else if progress.waiting_for_client() {
                    Attempt::ServerGaveUpOnClient
                } else {
                    unsent = copy;
                    Attempt::FailedAfterWrite {
                        incomplete: failure.error().is_incomplete_message(),
                    }
                };
                let replay = unsent.is_some();
                (
                    what,
                    tries.context(pool, sender.reused, replay),
                    failure.error().to_string(),
                )
            }
            Err(e) => (
                connect_failed(&e, end),
                tries.context(pool, false, true),
                e.to_string(),
            ),
        };
        tries.judge(pool, decision.server, what, context, &error)?;
    }
}

/// The attempts at sending one request: the servers tried and blamed so
/// far, and the stale kept-alive connections met (both paths keep these
/// the same way).
#[derive(Debug, Default)]
pub struct Tries {
    tried: Vec<usize>,
    stale: u32,
}

impl Tries {
    /// The server for the next attempt; `end` counts it there.
    pub fn next(&self, pool: &Pool, found: &Found, end: &mut End) -> Result<Decision, ProxyError> {
        let decision = pool.decide(found, &self.tried).map_err(ProxyError::from)?;
        if decision.outcome == Outcome::Redispatch {
            pool.failed_over(&decision);
        }
        end.set_server(decision.server);
        end.set_outcome(decision.outcome);
        Ok(decision)
    }

    /// May another server be tried after this attempt?
    pub fn may_retry(&self, pool: &Pool) -> bool {
        self.tried.len() < pool.retries as usize
    }

    /// The context [`classify`] judges an attempt in.
    pub fn context(&self, pool: &Pool, reused: bool, replayable: bool) -> Context {
        Context {
            reused,
            stale: self.stale,
            replayable,
            tried: self.tried.len(),
            retries: pool.retries,
        }
    }

    /// Judges a failed attempt at `server`, logs it and blames whom it
    /// names. `Ok`: try again; `Err`: the client's answer.
    pub fn judge(
        &mut self,
        pool: &Pool,
        server: usize,
        what: Attempt,
        context: Context,
        error: &str,
    ) -> Result<(), ProxyError> {
        let verdict = classify(what, context);
        let name = pool.servers.get(server).map_or("-", |s| &*s.name);
        log(pool, name, what, &verdict, error);
        if verdict.stale {
            self.stale += 1;
        }
        if let Some(cause) = verdict.blame {
            pool.failed(server, cause);
            self.tried.push(server);
        }
        match verdict.next {
            Next::Retry => Ok(()),
            Next::Fail(e) => Err(e),
        }
    }
}

/// What a failed connect was: limpet running out of descriptors, memory or
/// ports is limpet's shortage (logged, and `end` is not put on the
/// server's account), anything else the server's.
pub fn connect_failed(e: &super::client::ConnectError, end: &mut End) -> Attempt {
    let exhausted = e.errno().filter(|&c| crate::resources::is_exhaustion(c));
    if let Some(errno) = exhausted {
        crate::resources::exhausted("connecting to a server", errno);
        end.unset_server();
    }
    Attempt::ConnectFailed {
        exhausted: exhausted.is_some(),
    }
}

/// The error of a verdict that ends the request.
pub fn failed(v: Verdict) -> ProxyError {
    match v.next {
        Next::Fail(e) => e,
        Next::Retry => ProxyError::Unreachable,
    }
}

/// One line for what went wrong with an attempt, at the level it deserves:
/// the server's failures at `warn`, the client's and stale connections at
/// `debug`.
fn log(pool: &Pool, server: &str, what: Attempt, verdict: &Verdict, error: &str) {
    let retry = verdict.next == Next::Retry;
    match (what, verdict.blame) {
        (Attempt::ConnectFailed { exhausted: true }, _) => {}
        (_, Some(cause)) => {
            tracing::warn!(pool = %pool.name, %server, error, retry, "request to server failed: {}", cause.as_str());
        }
        (_, None) => {
            tracing::debug!(pool = %pool.name, %server, error, retry, ?what, "attempt ended without blame");
        }
    }
}

/// The request as the server gets it: origin-form target, HTTP/1.1.
pub fn outgoing(mut parts: Parts, body: ReqBody) -> Request<ReqBody> {
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = parts
            .uri
            .path_and_query()
            .cloned()
            .map_or_else(|| Uri::from_static("/"), Uri::from);
    }
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, body)
}

/// A copy of a request whose body can be sent again.
fn duplicate(req: &Request<ReqBody>) -> Request<ReqBody> {
    let mut copy = Request::new(req.body().replay().unwrap_or(ReqBody::Empty));
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// Waits for the response head while the server has the turn: the
/// deadline moves with the upload's progress and stands still while limpet
/// waits for the client. `Err(())` when `backend_response` ran out.
async fn respond<F: std::future::Future>(
    snap: &Snapshot,
    progress: &Progress,
    response: F,
) -> Result<F::Output, ()> {
    let wait = snap.timeouts.backend_response;
    let mut response = std::pin::pin!(response);
    loop {
        let deadline = progress.deadline(wait);
        tokio::select! {
            biased;
            r = &mut response => return Ok(r),
            _ = tokio::time::sleep_until(deadline) => {
                if progress.fault().is_none()
                    && !progress.waiting_for_client()
                    && progress.deadline(wait) <= tokio::time::Instant::now()
                {
                    return Err(());
                }
            }
        }
    }
}
