//! The server's answer on its way to the client over the HTTP/1 path: the
//! status line in HTTP/1.1, the received field lines with limpet's edits
//! spliced in (hop-by-hop fields out, the sticky mode's `Set-Cookie` and
//! `Cache-Control`, `Connection: close` when the connection ends), then
//! the body as it came. A `101` makes the connection a two-way tunnel.
//!
//! A chunked body goes on with its own framing to an HTTP/1.1 client (it
//! is decoded only to find its end), and as plain data to an HTTP/1.0 one,
//! which then sees the connection close; a body that runs until the
//! server closes does the same. The server's connection is kept for the
//! next request when the exchange ended cleanly on both sides.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::StatusCode;
use http::header::{self, HeaderValue};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::exchange::{self, Sent};
use super::{Client, Req};
use crate::connect::ServerIo;
use crate::h1::chunked::{Decoder, LAST_CHUNK, SizeLine};
use crate::h1::edit::Edited;
use crate::h1::fields::listed;
use crate::h1::{Framing, Name};
use crate::pool::Pool;
use crate::proxy::conn::ConnCtx;
use crate::proxy::end::End;
use crate::proxy::local::Local;
use crate::proxy::stop::StopWatch;
use crate::sticky::Found;

/// What the answer needs besides the connection.
pub struct To<'a> {
    pub local: &'a Local,
    pub conn: &'a ConnCtx,
    pub pool: &'a Pool,
    pub found: &'a Found,
    pub req: &'a Req,
    pub stop: &'a StopWatch,
    /// `timeouts.client_body`, for the rest of an upload the server
    /// answered early.
    pub client_body: Duration,
}

/// Acts on the response head in `c.res` and relays the response. Whether
/// the client connection serves another request.
pub async fn answer<I>(c: &mut Client<I>, to: &To<'_>, sent: Sent, mut end: End) -> bool
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let req = to.req;
    let status = c.res.status;
    let tunnel = status == StatusCode::SWITCHING_PROTOCOLS && req.upgrade;
    let framing = crate::h1::framing::response(&req.method, &c.res);
    // The client's connection goes on only if the answer's end can be told
    // without closing it, and the request was read whole.
    let chunks = framing == Framing::Chunked && req.http11;
    // A body that ends when the server closes goes on chunked to an
    // HTTP/1.1 client, whose connection can then go on.
    let encode = framing == Framing::UntilClose && req.http11;
    let close = !req.keep_alive
        || to.stop.is_stopped()
        || !sent.complete
        || (framing == Framing::UntilClose && !req.http11)
        || (framing == Framing::Chunked && !req.http11)
        || (status == StatusCode::SWITCHING_PROTOCOLS && !tunnel);

    // The head as the client gets it.
    c.res_edits.clear();
    let facts = c.res.facts;
    let buf = &c.from_server[..c.res.len];
    for (i, f) in c.res.fields.iter().enumerate() {
        let out = match f.known {
            _ if tunnel => false,
            Name::TransferEncoding | Name::Trailer => !chunks,
            // RFC 9112 §6.3: a coding wins over a length, which goes.
            Name::ContentLength => facts.coding != crate::h1::Coding::None,
            n if n.is_hop_by_hop() => true,
            Name::Other if facts.connection.names => listed(buf, &c.res.fields, f.name.get(buf)),
            _ => false,
        };
        if out {
            c.res_edits.remove(i);
        }
    }
    let mut edited = Edited {
        buf,
        fields: &c.res.fields,
        edits: &mut c.res_edits,
    };
    to.pool
        .sticky
        .act_on(&to.pool.servers, to.found, sent.decision, &mut edited)
        .await;
    if encode {
        edited.edits.add(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    if !facts.date {
        // RFC 9110 §6.6.1: an origin with a clock sends Date; limpet adds
        // it for one that did not (as hyper's path did).
        edited.edits.add(header::DATE, super::reply::date());
    }
    if close && !tunnel {
        edited
            .edits
            .add(header::CONNECTION, HeaderValue::from_static("close"));
    } else if !req.http11 {
        edited
            .edits
            .add(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    c.out.clear();
    c.out.extend_from_slice(b"HTTP/1.1 ");
    c.out.extend_from_slice(status.as_str().as_bytes());
    c.out.push(b' ');
    c.out.extend_from_slice(c.res.reason.get(buf));
    c.out.extend_from_slice(b"\r\n");
    edited.write_fields(&mut c.out);
    end.set_status(status.as_u16());
    let head_len = c.res.len;
    c.from_server.advance(head_len);
    let server_keep_alive = c.res.keep_alive();
    let mut server = sent.server;

    if tunnel {
        return upgrade(c, to.conn, server, end).await;
    }
    let Client {
        io,
        buf: received,
        out,
        from_server,
        decoder,
        up,
        ..
    } = c;
    let mut body = Relay {
        out,
        from_server,
        decoder,
        framing,
        chunks,
        encode,
        end: &mut end,
    };
    let relayed = if sent.complete {
        body.run(io, &mut server).await
    } else {
        // The server answered before the request's end: the rest of the
        // upload goes on beside the answer (an echo), until the answer is
        // done.
        let (mut client_rd, mut client_wr) = tokio::io::split(&mut *io);
        let (mut server_rd, mut server_wr) = tokio::io::split(&mut server);
        let down = body.run(&mut client_wr, &mut server_rd);
        let rest =
            exchange::upload_rest(up, received, &mut client_rd, &mut server_wr, to.client_body);
        let mut down = std::pin::pin!(down);
        let mut rest = std::pin::pin!(rest);
        let mut uploading = true;
        loop {
            tokio::select! {
                r = &mut down => break r,
                r = &mut rest, if uploading => {
                    uploading = false;
                    if r.is_err() {
                        break Err(Broken);
                    }
                }
            }
        }
    };
    if relayed.is_err() {
        end.finish(true);
        return false;
    }
    end.finish(false);
    let reusable = sent.complete
        && server_keep_alive
        && framing != Framing::UntilClose
        && c.from_server.is_empty();
    if reusable {
        to.local.raw.checkin(sent.slot, server);
    }
    !close
}

/// Why a relay stopped early: either side broke off.
#[derive(Debug)]
struct Broken;

/// A response body on its way: the head is in `out`, and goes with the
/// first bytes of the body in one write.
struct Relay<'a> {
    out: &'a mut Vec<u8>,
    from_server: &'a mut BytesMut,
    decoder: &'a mut Decoder,
    framing: Framing,
    /// A chunked body goes on with its framing (to an HTTP/1.1 client).
    chunks: bool,
    /// A body until close goes on chunked (to an HTTP/1.1 client).
    encode: bool,
    end: &'a mut End,
}

impl Relay<'_> {
    /// Sends the head and the body: what came with the head in the same
    /// write, the rest as it arrives.
    async fn run<W, R>(&mut self, client: &mut W, server: &mut R) -> Result<(), Broken>
    where
        W: AsyncWrite + Unpin,
        R: AsyncRead + Unpin,
    {
        let mut remaining = match self.framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        if self.framing == Framing::Chunked {
            self.decoder.reset();
        }
        loop {
            let (done, mut pass) = self.take(&mut remaining)?;
            // Body bytes that go on as they came: with the head while it
            // waits in `out` (one write), straight from the buffer they
            // were read into after it (no copy).
            if pass > 0 && !self.out.is_empty() {
                self.out.extend_from_slice(&self.from_server[..pass]);
                self.from_server.advance(pass);
                pass = 0;
            }
            if !self.out.is_empty() {
                client.write_all(self.out).await.map_err(|_| Broken)?;
                self.out.clear();
            }
            if pass > 0 {
                client
                    .write_all(&self.from_server[..pass])
                    .await
                    .map_err(|_| Broken)?;
                self.from_server.advance(pass);
            }
            client.flush().await.map_err(|_| Broken)?;
            if done {
                return Ok(());
            }
            super::read::reserve(self.from_server);
            match server.read_buf(self.from_server).await {
                Ok(0) if self.framing == Framing::UntilClose => {
                    if self.encode {
                        client.write_all(LAST_CHUNK).await.map_err(|_| Broken)?;
                        client.flush().await.map_err(|_| Broken)?;
                    }
                    return Ok(());
                }
                Ok(0) | Err(_) => return Err(Broken),
                Ok(_) => {}
            }
        }
    }

    /// Takes in what of the body has come: whether it ended, and how many
    /// bytes at the start of `from_server` go on as they are (the caller
    /// sends and drops them); bytes that need framing changed are moved
    /// into `out`.
    fn take(&mut self, remaining: &mut u64) -> Result<(bool, usize), Broken> {
        let from = &mut *self.from_server;
        Ok(match self.framing {
            Framing::None => (true, 0),
            Framing::Length(_) => {
                let n = usize::try_from(*remaining).map_or(from.len(), |r| r.min(from.len()));
                self.end.add_bytes(n);
                *remaining -= n as u64;
                (*remaining == 0, n)
            }
            Framing::UntilClose if !self.encode => {
                self.end.add_bytes(from.len());
                (false, from.len())
            }
            Framing::UntilClose => {
                if !from.is_empty() {
                    self.out
                        .extend_from_slice(SizeLine::new(from.len() as u64).as_bytes());
                    self.out.extend_from_slice(from);
                    self.out.extend_from_slice(b"\r\n");
                }
                self.end.add_bytes(from.len());
                from.clear();
                (false, 0)
            }
            Framing::Chunked => {
                let mut at = 0;
                let mut done = false;
                while at < from.len() && !done {
                    let d = self.decoder.decode(&from[at..]).map_err(|_| Broken)?;
                    let data = (at + d.data.start)..(at + d.data.end);
                    self.end.add_bytes(data.len());
                    if !self.chunks {
                        self.out.extend_from_slice(&from[data]);
                    }
                    at += d.consumed;
                    done = d.done;
                }
                if self.chunks {
                    // With its own framing: passed on as it came.
                    (done, at)
                } else {
                    from.advance(at);
                    (done, 0)
                }
            }
        })
    }
}

/// `101 Switching Protocols`: the head goes to the client, then bytes flow
/// both ways until either side closes. The request ends here (as hyper's
/// path counts it); the connection becomes the tunnel.
async fn upgrade<I>(c: &mut Client<I>, conn: &ConnCtx, mut server: ServerIo, end: End) -> bool
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    // Whatever came after either head belongs to the new protocol.
    c.out.extend_from_slice(&c.from_server);
    c.from_server.clear();
    let to_server = std::mem::take(&mut c.buf);
    if c.io.write_all(&c.out).await.is_err() || c.io.flush().await.is_err() {
        end.finish(true);
        return false;
    }
    conn.state.set_tunnel();
    end.finish(false);
    if !to_server.is_empty() && server.write_all(&to_server).await.is_err() {
        return false;
    }
    if let Err(e) = tokio::io::copy_bidirectional(&mut c.io, &mut server).await {
        tracing::debug!(error = %e, "tunnel closed");
    }
    false
}
