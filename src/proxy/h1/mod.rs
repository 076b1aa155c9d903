//! limpet's own HTTP/1.1 path for proxied traffic ("forward, don't
//! rebuild"): a client connection's bytes are read into one buffer, each
//! request head is parsed once into offsets over them (`crate::h1`), the
//! data path decides on those, and the head goes to the server as it came
//! with limpet's edits spliced in; the response comes back the same way.
//! Bodies stream as they came (a chunked body is forwarded with its own
//! framing, decoded only to find its end). HTTP/2 is handed to hyper by its
//! preface; TLS and PROXY are done before this.
//!
//! [`serve`] is the connection; [`request`] is one request and reads
//! top-down like `proxy::handle`, with the same steps and the same files
//! for the decisions (client address, route, sticky hooks, the pool's
//! decision, the verdict on an attempt, the end of a request):
//!
//! ```text
//! read a head                 read.rs
//! check, route, affinity      crate::h1::check, proxy::route, Sticky::affinity
//! the request for the server  outgoing.rs
//! send (and retry)            exchange.rs   (../server_conns.rs: idle connections)
//! act on the response         answer.rs     (Sticky::act_on), body relayed
//! limpet's own answers        reply.rs
//! ```

mod answer;
mod deadline;
mod exchange;
mod outgoing;
mod read;
mod reply;

use std::rc::Rc;

use bytes::{Buf, BytesMut};
use http::{Method, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::client_addr;
use super::end::{Access, End};
use super::error::ProxyError;
use super::local::Local;
use super::route::{self, Routed};
use super::upload::REPLAY_LIMIT;
use super::{ConnCtx, redirect};
use crate::h1::edit::{Edited, Edits};
use crate::h1::{Framing, RequestHead, ResponseHead, chunked::Decoder};
use crate::proxy::stop::StopWatch;
use read::Head;

/// A client connection on the HTTP/1 path: its socket and the buffers its
/// requests reuse, so a kept-alive connection allocates nothing per
/// request for them.
pub struct Client<I> {
    /// The client's socket (with its timers, `listener/io.rs`).
    io: I,
    /// Received and not yet used: a request head, maybe body bytes and the
    /// next pipelined requests.
    buf: BytesMut,
    head: RequestHead,
    edits: Edits,
    /// Bytes on their way out (the request for the server, then the
    /// response for the client).
    out: Vec<u8>,
    /// Received from the server.
    from_server: BytesMut,
    res: ResponseHead,
    res_edits: Edits,
    /// For a chunked response body.
    decoder: Decoder,
    /// `backend_response`, kept across the requests.
    deadline: deadline::Deadline,
    /// Where a streamed request body is.
    up: exchange::Upload,
    /// The current request's body is not read whole: an answer now must
    /// close the connection, or the rest of the body would be read as the
    /// next request.
    body_unread: bool,
}

/// What the rest of a request needs of its head once the head has been
/// written on (its bytes are then let go).
#[derive(Debug, Clone)]
struct Req {
    method: Method,
    http11: bool,
    keep_alive: bool,
    /// It asks to switch protocols (`Upgrade` + `Connection: upgrade`).
    upgrade: bool,
    /// Its body: sent with the head (`None`, or a small one read whole,
    /// which can be sent again), or streamed as it comes.
    body: Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// None, or read whole and sent with the head.
    WithHead,
    /// Streamed from the client as it comes.
    Stream(Framing),
}

/// A connection the HTTP/1 path hands over: the client spoke HTTP/2
/// (prior knowledge); `received` are the bytes read so far.
pub struct Handover<I> {
    pub io: I,
    pub received: Vec<u8>,
}

/// Size of a connection's buffers to begin with.
const BUF: usize = 8 * 1024;

/// Serves a client connection until it closes, or hands it back if it
/// speaks HTTP/2. `stop`: the listener stopped; the connection closes
/// between two requests (as `listener/drain.rs` says).
pub async fn serve<I>(
    local: Rc<Local>,
    ctx: Rc<ConnCtx>,
    io: I,
    stop: &StopWatch,
) -> Option<Handover<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let limits = local.current().snap.limits;
    let mut c = Client {
        io,
        buf: BytesMut::with_capacity(BUF),
        head: RequestHead::default(),
        edits: Edits::default(),
        out: Vec::with_capacity(BUF),
        from_server: BytesMut::with_capacity(BUF),
        res: ResponseHead::default(),
        res_edits: Edits::default(),
        decoder: Decoder::new(&limits, false),
        deadline: deadline::Deadline::default(),
        up: exchange::Upload::new(&limits),
        body_unread: false,
    };
    let mut first = true;
    loop {
        match read::head(&mut c, &limits, stop, first).await {
            Head::Ready => {}
            Head::Closed => break,
            Head::Http2 => {
                return Some(Handover {
                    io: c.io,
                    received: c.buf.to_vec(),
                });
            }
            Head::Bad(e) => {
                c.out.clear();
                reply::bad_head(e).write(&mut c.out);
                let _ = c.io.write_all(&c.out).await;
                break;
            }
        }
        first = false;
        if !request(&local, &ctx, &mut c, stop).await {
            break;
        }
    }
    // A client that reads nothing more must not hold the task (TLS writes
    // its close_notify here).
    let _ = tokio::time::timeout(super::conn::IDLE_GRACE, c.io.shutdown()).await;
    None
}

/// One request whose head is parsed in `c.head`: checked, routed, tied to
/// a server, forwarded, answered. Whether the connection serves another.
async fn request<I>(local: &Rc<Local>, conn: &ConnCtx, c: &mut Client<I>, stop: &StopWatch) -> bool
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    // The world this request sees.
    let current = local.current();
    let snap = &current.snap;
    c.edits.clear();
    c.body_unread = crate::h1::framing::request(&c.head) != Framing::None;
    let buf = &c.buf[..c.head.len];
    let head = &c.head;
    let mut edited = Edited {
        buf,
        fields: &head.fields,
        edits: &mut c.edits,
    };

    // Who the client is (a trusted proxy's X-Forwarded-For is believed).
    let (client, trusted) = client_addr::client(
        conn.peer_ip,
        conn.may_forward,
        &edited,
        &snap.trusted_proxies,
    );
    let authority = crate::h1::check::request(head, buf);
    let mut end = End::begin_with(&conn.state, &current, client, || {
        let host = authority.ok().flatten().map(|a| a.get(buf));
        let ua = head
            .fields
            .iter()
            .find(|f| f.name.get(buf).eq_ignore_ascii_case(b"user-agent"))
            .map(|f| f.value.get(buf));
        Access::raw(&head.method, head.path().get(buf), host, ua)
    });

    // Refuse what cannot be forwarded faithfully.
    let authority = match authority {
        Ok(a) => a,
        Err(e) => {
            let reply = reply::bad_head(e);
            end.set_status(reply.status.as_u16());
            skip_head(c);
            return send_reply(c, &reply, end, stop).await;
        }
    };

    // The pool.
    let host = authority
        .and_then(|a| std::str::from_utf8(a.get(buf)).ok())
        .map(route::strip_port);
    let target = std::str::from_utf8(head.path().get(buf)).unwrap_or("/");
    let path = target.split('?').next().unwrap_or_default();
    let path = if path.is_empty() { "/" } else { path };
    let listener = snap.listener(conn.listener);
    let pool = match route::route(listener, conn.strict_sni.as_deref(), host, path) {
        Ok(Routed::Pool(i)) => i,
        Ok(Routed::ToHttps) => {
            let location = host
                .zip(target.parse::<http::Uri>().ok())
                .and_then(|(h, uri)| redirect::location(h, &uri));
            skip_head(c);
            return to_https(c, location, end, stop).await;
        }
        // A reload removed the listener: its stop follows, and the
        // connection closes now.
        Err(e) if listener.is_none() => {
            skip_head(c);
            end.set_status(e.logged_status());
            let reply = reply::Reply {
                close: true,
                ..reply::error(e)
            };
            return send_reply(c, &reply, end, stop).await;
        }
        Err(e) => {
            skip_head(c);
            return fail(c, e, end, stop).await;
        }
    };
    end.set_pool(pool);
    let pool = &snap.pools[pool];

    // What ties the request to a server.
    let found = pool
        .sticky
        .affinity(&pool.servers, &edited, path, client)
        .await;

    // The request as the server will get it.
    let facts = head.facts;
    let upgrade = facts.upgrade && facts.connection.upgrade;
    outgoing::prepare(buf, head, edited.edits, conn, trusted, authority, upgrade);
    pool.sticky.prepare(&mut edited);
    c.out.clear();
    outgoing::write(buf, head, &edited, &mut c.out);
    let framing = crate::h1::framing::request(head);
    let small = matches!(framing, Framing::Length(n) if n <= REPLAY_LIMIT);
    let req = Req {
        method: head.method.clone(),
        http11: head.version == Version::HTTP_11,
        keep_alive: head.keep_alive(),
        upgrade,
        body: match framing {
            Framing::None => Body::WithHead,
            // A client that waits for 100 Continue sends nothing before.
            Framing::Length(_) if small && !facts.expect_continue => Body::WithHead,
            f => Body::Stream(f),
        },
    };
    let head_len = head.len;
    c.buf.advance(head_len);
    if let (Body::WithHead, Framing::Length(n)) = (req.body, framing) {
        // Bounded by REPLAY_LIMIT.
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if let Err(fault) = read::fill(c, n, snap.timeouts.client_body).await {
            return fail(c, fault.into(), end, stop).await;
        }
        c.out.extend_from_slice(&c.buf[..n]);
        c.buf.advance(n);
        c.body_unread = false;
    }

    // Which server, and send it there (elsewhere when that is safe).
    let sent = match exchange::send(c, local, snap, pool, &found, &req, &mut end).await {
        Ok(s) => s,
        Err(e) => return fail(c, e, end, stop).await,
    };

    // Act on the response; relay it, logged and counted at its end.
    let client_body = snap.timeouts.client_body;
    let to = answer::To {
        local,
        conn,
        pool,
        found: &found,
        req: &req,
        stop,
        client_body,
    };
    answer::answer(c, &to, sent, end).await
}

/// The request's head is answered before it was forwarded: it leaves the
/// buffer, so that the next request is read after it (its body, if any,
/// is unread, and the answer closes the connection).
fn skip_head<I>(c: &mut Client<I>) {
    let n = c.head.len;
    c.buf.advance(n);
}

/// Writes limpet's answer `e` and ends the request; whether the
/// connection serves another.
async fn fail<I>(c: &mut Client<I>, e: ProxyError, mut end: End, stop: &StopWatch) -> bool
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    end.set_status(e.logged_status());
    send_reply(c, &reply::error(e), end, stop).await
}

/// Writes `reply` (closing the connection after it when the client asked
/// to, or the listener stopped) and ends the request; whether the
/// connection serves another.
async fn send_reply<I>(
    c: &mut Client<I>,
    reply: &reply::Reply<'_>,
    end: End,
    stop: &StopWatch,
) -> bool
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let close = reply.close || !c.head.keep_alive() || c.body_unread || stop.is_stopped();
    c.out.clear();
    reply::Reply { close, ..*reply }.write(&mut c.out);
    let written = c.io.write_all(&c.out).await.is_ok() && c.io.flush().await.is_ok();
    end.finish(!written);
    written && !close
}

/// `redirect_https`: 308 to the same target over HTTPS.
async fn to_https<I>(
    c: &mut Client<I>,
    location: Option<http::HeaderValue>,
    mut end: End,
    stop: &StopWatch,
) -> bool
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let Some(location) = location else {
        return fail(c, ProxyError::BadRequest, end, stop).await;
    };
    let mut extra = b"location: ".to_vec();
    extra.extend_from_slice(location.as_bytes());
    extra.extend_from_slice(b"\r\n");
    let reply = reply::Reply {
        status: http::StatusCode::PERMANENT_REDIRECT,
        body: b"308 Permanent Redirect: use HTTPS\n",
        close: false,
        extra: &extra,
    };
    end.set_status(308);
    send_reply(c, &reply, end, stop).await
}
