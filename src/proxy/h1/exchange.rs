//! Sends a request to the server the pool decides on over the HTTP/1 path,
//! and moves it elsewhere when that is safe: the rules of `forward.rs`,
//! decided by the same pure function ([`classify`]). The request's head
//! (and a small body read whole) is in `c.out`, so a replay writes the
//! same bytes again; a streamed body is forwarded as it comes, and a
//! request whose body has begun to flow is never sent twice.
//!
//! While a body streams, the server is watched too: a `100 Continue` is
//! passed to the client, and a final answer before the body's end stops
//! the upload (the connection closes after that answer).

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Body, Client, Req};
use crate::config::Limits;
use crate::connect::ServerIo;
use crate::decision::Decision;
use crate::h1::chunked::Decoder;
use crate::h1::edit::Edited;
use crate::h1::fields::listed;
use crate::h1::{Framing, Name, Parsed, parse_response};
use crate::pool::Pool;
use crate::proxy::end::End;
use crate::proxy::error::ProxyError;
use crate::proxy::forward::{self, Tries, idempotent};
use crate::proxy::local::Local;
use crate::proxy::upload::ClientFault;
use crate::proxy::verdict::{Attempt, classify};
use crate::runtime::Snapshot;
use crate::sticky::Found;

/// A server answered: its response head is parsed in `c.res`, over the
/// start of `c.from_server`.
pub struct Sent {
    pub server: ServerIo,
    /// The server's slot, for its idle connections.
    pub slot: usize,
    pub decision: Decision,
    /// The request's body went to the server whole (else the server
    /// answered first, and neither connection can serve another request).
    pub complete: bool,
}

/// Pipelined bytes read from the client while a response is awaited, at
/// most (past this, the client is not watched until the response came).
const WATCH_LIMIT: usize = 64 * 1024;

/// How large a server's response head may be: hyper's client bounds.
pub const RESPONSE_LIMITS: Limits = Limits {
    max_connections: 0,
    max_header_bytes: 64 * 1024,
    max_headers: 100,
};

/// Forwards the request in `c.out` (and its streamed body) to the server
/// the pool decides for `found`.
pub async fn send<I>(
    c: &mut Client<I>,
    local: &Local,
    snap: &Snapshot,
    pool: &Pool,
    found: &Found,
    req: &Req,
    end: &mut End,
) -> Result<Sent, ProxyError>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let whole = req.body == Body::WithHead;
    let replayable = idempotent(&req.method) && whole;
    let mut tries = Tries::default();
    loop {
        let decision = tries.next(pool, found, end)?;
        let server = &pool.servers[decision.server];
        let attempt = std::time::Instant::now();
        let checkout = local
            .raw
            .checkout(
                server.slot,
                server.address,
                server.tls.as_ref(),
                snap.timeouts.connect,
            )
            .await;
        let (what, context, error) = match checkout {
            Ok(mut conn) => {
                c.from_server.clear();
                // A kept-alive connection takes the request at once.
                let began = conn.reused.then_some(attempt);
                let failure = match exchange(c, &mut conn.io, req, snap, began).await {
                    Ok(complete) => {
                        end.set_upstream(attempt.elapsed());
                        return Ok(Sent {
                            server: conn.io,
                            slot: server.slot,
                            decision,
                            complete,
                        });
                    }
                    Err(f) => f,
                };
                let what = match failure {
                    Failure::Unwritten => Attempt::ClosedBeforeWrite,
                    Failure::Client(fault) => Attempt::ClientFault(fault.into()),
                    Failure::GaveUpOnClient => Attempt::ServerGaveUpOnClient,
                    Failure::Server { answered } => Attempt::FailedAfterWrite {
                        incomplete: !answered,
                    },
                    Failure::Timeout => {
                        tracing::warn!(pool = %pool.name, server = %server.name, "server did not answer within backend_response");
                        return Err(forward::failed(classify(
                            Attempt::Timeout,
                            tries.context(pool, conn.reused, false),
                        )));
                    }
                };
                // Never written: the request goes again as it is.
                let again = replayable || failure == Failure::Unwritten;
                (
                    what,
                    tries.context(pool, conn.reused, again),
                    failure.to_string(),
                )
            }
            Err(e) => (
                forward::connect_failed(&e, end),
                tries.context(pool, false, true),
                e.to_string(),
            ),
        };
        tries.judge(pool, decision.server, what, context, &error)?;
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Failure {
    /// The request could not be written (a kept-alive connection the server
    /// had closed): nothing of it went.
    #[error("connection closed before the request was written")]
    Unwritten,
    #[error("the client's body failed")]
    Client(ClientFault),
    /// The server closed while limpet waited for the client's body.
    #[error("server closed the connection during a slow upload")]
    GaveUpOnClient,
    /// Closed, reset, or a malformed answer; `answered`: some bytes of an
    /// answer came first.
    #[error("connection closed or reset, or a malformed response")]
    Server { answered: bool },
    #[error("no response within backend_response")]
    Timeout,
}

/// One attempt: the head (and a small body) written, a streamed body
/// forwarded, the response head read within `backend_response` of the
/// request's end (of `began`, sparing a clock read, when it went with its
/// head on a kept-alive connection). `Ok(complete)`: the head is in
/// `c.res`; `complete` says the body went whole.
async fn exchange<I>(
    c: &mut Client<I>,
    server: &mut ServerIo,
    req: &Req,
    snap: &Snapshot,
    began: Option<std::time::Instant>,
) -> Result<bool, Failure>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    if server.write_all(&c.out).await.is_err() || server.flush().await.is_err() {
        return Err(Failure::Unwritten);
    }
    let complete = match req.body {
        Body::WithHead => true,
        Body::Stream(framing) => {
            match upload(
                c,
                server,
                framing,
                (req.http11, req.upgrade),
                snap.timeouts.client_body,
            )
            .await?
            {
                Uploaded::Whole => true,
                Uploaded::Answered => return Ok(false),
            }
        }
    };
    let sent = match (req.body, began) {
        (Body::WithHead, Some(t)) => tokio::time::Instant::from_std(t),
        _ => tokio::time::Instant::now(),
    };
    c.deadline.set(sent + snap.timeouts.backend_response);
    response_head(c, server, req.http11, req.upgrade).await?;
    Ok(complete)
}

enum Uploaded {
    Whole,
    /// The server gave its final answer before the body's end: the rest
    /// streams while the answer is relayed (`answer.rs`).
    Answered,
}

/// Where a streamed request body stands: how much is left, or the chunked
/// decoder's state. It outlives the attempt: a server may answer before the
/// body's end, and the rest is forwarded while the answer is relayed.
pub struct Upload {
    framing: Framing,
    remaining: u64,
    decoder: Decoder,
}

impl Upload {
    pub fn new(limits: &Limits) -> Upload {
        Upload {
            framing: Framing::None,
            remaining: 0,
            decoder: Decoder::new(limits, false),
        }
    }

    fn start(&mut self, framing: Framing) {
        self.framing = framing;
        self.remaining = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        self.decoder.reset();
    }

    /// How many of the bytes in `buf` belong to the body, and whether the
    /// body ends with them.
    fn take(&mut self, buf: &[u8]) -> Result<(usize, bool), ClientFault> {
        if self.framing != Framing::Chunked {
            let n = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
            self.remaining -= n as u64;
            return Ok((n, self.remaining == 0));
        }
        let mut at = 0;
        let mut done = self.decoder.is_done();
        while at < buf.len() && !done {
            let d = self
                .decoder
                .decode(&buf[at..])
                .map_err(|_| ClientFault::Malformed)?;
            at += d.consumed;
            done = d.done;
        }
        Ok((at, done))
    }
}

/// Forwards what of the body is in `buf` to `server`. Whether the body ended.
async fn forward_some<W: AsyncWrite + Unpin>(
    up: &mut Upload,
    buf: &mut BytesMut,
    server: &mut W,
) -> Result<bool, Failure> {
    let (n, done) = up.take(buf).map_err(Failure::Client)?;
    if n > 0 && server.write_all(&buf[..n]).await.is_err() {
        return Err(Failure::Server { answered: false });
    }
    buf.advance(n);
    Ok(done)
}

/// Reads more of the body from the client, within `client_body`.
async fn read_body<R: AsyncRead + Unpin>(
    client: &mut R,
    buf: &mut BytesMut,
    client_body: Duration,
) -> Result<(), ClientFault> {
    super::read::reserve(buf);
    match tokio::time::timeout(client_body, client.read_buf(buf)).await {
        Err(_) => Err(ClientFault::Slow),
        Ok(Ok(0) | Err(_)) => Err(ClientFault::Gone),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Forwards a streamed body as it came (a chunked one with its framing,
/// decoded only to find its end), each client read within `client_body`.
async fn upload<I>(
    c: &mut Client<I>,
    server: &mut ServerIo,
    framing: Framing,
    (http11, upgrade): (bool, bool),
    client_body: Duration,
) -> Result<Uploaded, Failure>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    c.up.start(framing);
    loop {
        if forward_some(&mut c.up, &mut c.buf, server).await? {
            c.body_unread = false;
            return Ok(Uploaded::Whole);
        }
        // More from the client; the server may answer meanwhile.
        super::read::reserve(&mut c.from_server);
        tokio::select! {
            r = read_body(&mut c.io, &mut c.buf, client_body) => r.map_err(Failure::Client)?,
            r = server.read_buf(&mut c.from_server) => match r {
                Ok(0) | Err(_) => return Err(Failure::GaveUpOnClient),
                Ok(_) => {
                    if interim(c, http11, upgrade).await? {
                        return Ok(Uploaded::Answered);
                    }
                }
            },
        }
    }
}

/// The rest of a body the server answered before its end, forwarded while
/// the answer is relayed (`answer.rs`).
pub async fn upload_rest<R, W>(
    up: &mut Upload,
    buf: &mut BytesMut,
    client: &mut R,
    server: &mut W,
    client_body: Duration,
) -> Result<(), ()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        match forward_some(up, buf, server).await {
            Ok(true) => return server.flush().await.map_err(|_| ()),
            Ok(false) => {}
            Err(_) => return Err(()),
        }
        read_body(client, buf, client_body).await.map_err(|_| ())?;
    }
}

/// Reads the server's response head into `c.res`, passing `1xx` answers
/// (but `101`) to an HTTP/1.1 client on the way. `upgrade`: the request
/// asked to switch protocols (a `101` to any other is the server's fault).
async fn response_head<I>(
    c: &mut Client<I>,
    server: &mut ServerIo,
    http11: bool,
    upgrade: bool,
) -> Result<(), Failure>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut answered = !c.from_server.is_empty();
    loop {
        if interim(c, http11, upgrade).await? {
            return Ok(());
        }
        super::read::reserve(&mut c.from_server);
        // A client that goes away meanwhile ends the request (its next
        // requests, if it pipelines, wait in the buffer, up to a bound).
        let watch = c.buf.len() < WATCH_LIMIT;
        if watch {
            super::read::reserve(&mut c.buf);
        }
        tokio::select! {
            // The server first: its answer is what is waited for.
            biased;
            r = server.read_buf(&mut c.from_server) => match r {
                Ok(0) | Err(_) => return Err(Failure::Server { answered }),
                Ok(_) => answered = true,
            },
            () = c.deadline.expired() => return Err(Failure::Timeout),
            r = c.io.read_buf(&mut c.buf), if watch => {
                if matches!(r, Ok(0) | Err(_)) {
                    return Err(Failure::Client(ClientFault::Gone));
                }
            }
        }
    }
}

/// Parses what came from the server so far. `Ok(true)`: a final response
/// head is in `c.res`; `Ok(false)`: more is needed (a `1xx` was passed on
/// and dropped from the buffer).
async fn interim<I>(c: &mut Client<I>, http11: bool, upgrade: bool) -> Result<bool, Failure>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    while !c.from_server.is_empty() {
        match parse_response(&c.from_server, &RESPONSE_LIMITS, &mut c.res) {
            Ok(Parsed::Partial) => return Ok(false),
            Err(_) => return Err(Failure::Server { answered: true }),
            Ok(Parsed::Complete) => {}
        }
        let status = c.res.status;
        if status == http::StatusCode::SWITCHING_PROTOCOLS && !upgrade {
            // RFC 9110 §15.2.2: a 101 answers an Upgrade request only; a
            // client that did not ask cannot read what follows. 502.
            return Err(Failure::Server { answered: true });
        }
        if !status.is_informational() || status == http::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(true);
        }
        // RFC 9110 §15.2: a proxy passes 1xx on, except to HTTP/1.0.
        // `c.out` may hold the request for a replay: the head goes out of
        // a buffer of its own (1xx answers are rare).
        let len = c.res.len;
        if http11 {
            let mut head = Vec::with_capacity(len);
            interim_head(c, &mut head);
            let _ = c.io.write_all(&head).await;
        }
        c.from_server.advance(len);
    }
    Ok(false)
}

/// The head of the `1xx` answer in `c.res` as the client gets it, into
/// `out`: the status line in HTTP/1.1 and the received fields but the
/// hop-by-hop ones (RFC 9110 §7.6.1 holds for interim answers too: a
/// server's `Connection: keep-alive` on a `100` is about its own hop).
fn interim_head<I>(c: &mut Client<I>, out: &mut Vec<u8>) {
    c.res_edits.clear();
    let buf = &c.from_server[..c.res.len];
    let connection_names = c.res.facts.connection.names;
    for (i, f) in c.res.fields.iter().enumerate() {
        let hop = f.known.is_hop_by_hop()
            || (f.known == Name::Other
                && connection_names
                && listed(buf, &c.res.fields, f.name.get(buf)));
        if hop {
            c.res_edits.remove(i);
        }
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(c.res.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(c.res.reason.get(buf));
    out.extend_from_slice(b"\r\n");
    Edited {
        buf,
        fields: &c.res.fields,
        edits: &mut c.res_edits,
    }
    .write_fields(out);
}
