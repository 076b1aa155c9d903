//! Reading from the client on the HTTP/1 path: a request head (parsed only
//! once its end has arrived, so a head trickled in byte by byte is not
//! parsed again for every byte), and a small body read whole. The
//! connection's timers (`request_header`, `client_idle`) are in its socket
//! (`listener/io.rs`); `client_body` bounds each read of a body here.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::Client;
use crate::config::Limits;
use crate::h1::{HeadError, Parsed, parse_request};
use crate::proxy::conn::IDLE_GRACE;
use crate::proxy::stop::StopWatch;
use crate::proxy::upload::ClientFault;

/// What reading a request head came to.
pub enum Head {
    /// `c.head` is parsed, at the start of `c.buf`.
    Ready,
    /// The client closed (or the idle timer did, or the listener stopped
    /// with the connection idle).
    Closed,
    /// The connection's first bytes are HTTP/2's preface.
    Http2,
    /// The head cannot be taken.
    Bad(HeadError),
}

/// HTTP/2's connection preface (RFC 9113 §3.4), as far as it is needed to
/// tell it from an HTTP/1 request.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// Reads until a whole request head is in `c.buf` and parses it into
/// `c.head`. `first`: the connection's first request (HTTP/2 may start).
pub async fn head<I>(c: &mut Client<I>, limits: &Limits, stop: &StopWatch, first: bool) -> Head
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    // Bytes already searched for the end of the head.
    let mut scanned = 0;
    loop {
        if first
            && !c.buf.is_empty()
            && PREFACE.starts_with(&c.buf[..c.buf.len().min(PREFACE.len())])
        {
            if c.buf.len() >= PREFACE.len() {
                return Head::Http2;
            }
        } else if ends(&c.buf, &mut scanned) || c.buf.len() >= limits.max_header_bytes {
            match parse_request(&c.buf, limits, &mut c.head) {
                Ok(Parsed::Complete) => return Head::Ready,
                Ok(Parsed::Partial) => {}
                Err(e) => return Head::Bad(e),
            }
        }
        match read(c, stop).await {
            Ok(0) | Err(_) => return Head::Closed,
            Ok(_) => {}
        }
    }
}

/// Reads more from the client. Once the listener stopped, a connection
/// with nothing of a request received gets `IDLE_GRACE` to send one.
async fn read<I>(c: &mut Client<I>, stop: &StopWatch) -> std::io::Result<usize>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    reserve(&mut c.buf);
    if stop.is_stopped() && c.buf.is_empty() {
        return tokio::time::timeout(IDLE_GRACE, c.io.read_buf(&mut c.buf))
            .await
            .unwrap_or(Ok(0));
    }
    tokio::select! {
        // The socket first: a request that is there is read without
        // waiting on the stop.
        biased;
        r = c.io.read_buf(&mut c.buf) => r,
        () = stop.stopped() => {
            if c.buf.is_empty() {
                tokio::time::timeout(IDLE_GRACE, c.io.read_buf(&mut c.buf))
                    .await
                    .unwrap_or(Ok(0))
            } else {
                c.io.read_buf(&mut c.buf).await
            }
        }
    }
}

/// Room for another read.
pub fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(super::BUF);
    }
}

/// Has the head ended (an empty line) in `buf`? Searches only the bytes
/// after `scanned`, so a trickled head costs linear time. A head that came
/// whole ends the buffer, and is found without a search.
fn ends(buf: &[u8], scanned: &mut usize) -> bool {
    let from = scanned.saturating_sub(3);
    *scanned = buf.len();
    if buf.ends_with(b"\r\n\r\n") {
        return true;
    }
    let tail = &buf[from..];
    memchr::memchr_iter(b'\n', tail).any(|i| match tail.get(i + 1) {
        Some(b'\n') => true,
        Some(b'\r') => tail.get(i + 2) == Some(&b'\n'),
        _ => false,
    })
}

/// Reads until `c.buf` holds `n` bytes (a small body), each read within
/// `client_body`.
pub async fn fill<I>(c: &mut Client<I>, n: usize, client_body: Duration) -> Result<(), ClientFault>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    if c.buf.len() < n {
        c.buf.reserve(n - c.buf.len());
    }
    while c.buf.len() < n {
        match tokio::time::timeout(client_body, c.io.read_buf(&mut c.buf)).await {
            Err(_) => return Err(ClientFault::Slow),
            Ok(Ok(0) | Err(_)) => return Err(ClientFault::Gone),
            Ok(Ok(_)) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_head_is_found_across_reads() {
        let mut scanned = 0;
        let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        assert!(!ends(&buf, &mut scanned));
        buf.extend_from_slice(b"\r");
        assert!(!ends(&buf, &mut scanned));
        buf.extend_from_slice(b"\n");
        assert!(ends(&buf, &mut scanned));
        let mut scanned = 0;
        assert!(ends(b"GET / HTTP/1.1\nHost: a\n\n", &mut scanned));
        // An end before pipelined bytes; none in a line ending split
        // across reads until its last byte came.
        let mut scanned = 0;
        assert!(ends(b"GET / HTTP/1.1\r\n\r\nGET / HT", &mut scanned));
        let mut scanned = 0;
        let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r".to_vec();
        assert!(!ends(&buf, &mut scanned));
        assert!(!ends(&buf, &mut scanned));
        buf.push(b'\n');
        assert!(ends(&buf, &mut scanned));
        let mut scanned = 0;
        assert!(!ends(b"GET / HTTP/1.1\r\nHost: a\r\n\rX", &mut scanned));
    }
}
