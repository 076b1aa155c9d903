//! What comes before HTTP on a connection: the PROXY protocol header (v1
//! text or v2 binary, parsed by the `ppp` crate) from a trusted L4 balancer,
//! then the TLS handshake. Both run under one deadline,
//! `timeouts.request_header` from the accept, so a silent or slow peer costs
//! a timer, never a hang.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use ppp::{HeaderResult, PartialResult};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The longest PROXY header limpet reads: a v1 header is at most 107 bytes;
/// a v2 header with TLVs may be longer, but a balancer that sends more
/// than this is misconfigured (HAProxy's own limit is its buffer size).
pub const MAX_PROXY_HEADER: usize = 4096;

/// Why a connection was closed before its first request.
#[derive(Debug, thiserror::Error)]
pub enum PreludeError {
    #[error("the peer closed the connection before a complete PROXY header ({0} bytes received)")]
    Truncated(usize),
    #[error("not a PROXY protocol header: {0}")]
    Garbled(String),
    #[error("the PROXY header is longer than {MAX_PROXY_HEADER} bytes")]
    TooLong,
    #[error("reading the PROXY header failed: {0}")]
    Io(#[from] io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("no complete {0} within timeouts.request_header")]
    Timeout(&'static str),
}

/// Is `peer` one of `trusted_proxies` (the only peers whose PROXY header
/// is believed)?
pub fn peer_trusted(peer: SocketAddr, trusted: &[ipnet::IpNet]) -> bool {
    crate::proxy::client_addr::is_trusted(peer.ip().to_canonical(), trusted)
}

/// What a PROXY header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxied {
    /// The client's address.
    Client(SocketAddr),
    /// v1 `UNKNOWN`, v2 `LOCAL`, or an address family without an IP
    /// (a UNIX socket): the peer itself stays the client.
    Peer,
}

/// The longest PROXY v1 header, CRLF included (the protocol's own bound).
const MAX_V1_HEADER: usize = 107;

/// Parses one complete PROXY header at the start of `buf`: what it says and
/// its length, `Ok(None)` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(Proxied, usize)>, PreludeError> {
    if buf.starts_with(b"PROXY") {
        return parse_v1(buf);
    }
    parse_any(buf)
}

/// A v1 header is a line: nothing is parsed before its CRLF arrives, so a
/// line cut anywhere (one byte a segment) reads the same as a whole one.
/// Its ports are 1–65535 in plain digits (no sign, no leading zero), as
/// HAProxy reads them.
fn parse_v1(buf: &[u8]) -> Result<Option<(Proxied, usize)>, PreludeError> {
    let window = &buf[..buf.len().min(MAX_V1_HEADER)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= MAX_V1_HEADER {
            Err(PreludeError::Garbled(format!(
                "a PROXY v1 header without CRLF in its first {MAX_V1_HEADER} bytes"
            )))
        } else {
            Ok(None)
        };
    };
    let line = &buf[..cr];
    let parsed = parse_any(&buf[..cr + 2])?;
    if let Some((Proxied::Client(_), _)) = parsed {
        let mut tokens = line.rsplit(|&b| b == b' ');
        for which in ["destination", "source"] {
            let port = tokens.next().unwrap_or_default();
            let plain = port.first().is_some_and(|&b| (b'1'..=b'9').contains(&b))
                && port.iter().all(u8::is_ascii_digit);
            if !plain {
                return Err(PreludeError::Garbled(format!(
                    "the {which} port {:?} is not a number from 1 to 65535",
                    String::from_utf8_lossy(port)
                )));
            }
        }
    }
    Ok(parsed)
}

/// Parses a v2 header, or a v1 line already known to be complete.
fn parse_any(buf: &[u8]) -> Result<Option<(Proxied, usize)>, PreludeError> {
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return if buf.len() >= MAX_PROXY_HEADER {
            Err(PreludeError::TooLong)
        } else {
            Ok(None)
        };
    }
    match result {
        HeaderResult::V1(Ok(h)) => {
            use ppp::v1::Addresses;
            let said = match h.addresses {
                Addresses::Tcp4(a) => {
                    Proxied::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                Addresses::Tcp6(a) => {
                    Proxied::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                Addresses::Unknown => Proxied::Peer,
            };
            Ok(Some((said, h.header.len())))
        }
        HeaderResult::V2(Ok(h)) => {
            use ppp::v2::{Addresses, Command};
            let said = match (h.command, h.addresses) {
                (Command::Local, _) => Proxied::Peer,
                (Command::Proxy, Addresses::IPv4(a)) => {
                    Proxied::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                (Command::Proxy, Addresses::IPv6(a)) => {
                    Proxied::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                (Command::Proxy, _) => Proxied::Peer,
            };
            Ok(Some((said, h.header.len())))
        }
        HeaderResult::V1(Err(e)) => Err(PreludeError::Garbled(one_line(&e))),
        HeaderResult::V2(Err(e)) => Err(PreludeError::Garbled(one_line(&e))),
    }
}

/// The parser's message, with its control characters escaped (some of its
/// messages quote `\r\n`), so that it stays on one log line.
fn one_line(e: &dyn std::fmt::Display) -> String {
    let mut line = String::new();
    for c in e.to_string().chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

/// Reads a PROXY header from `io`. Whatever arrived after it (the start of
/// the TLS handshake or of the first request) is returned, to be read first.
pub async fn read_proxy_header<R: AsyncRead + Unpin>(
    io: &mut R,
) -> Result<(Proxied, Vec<u8>), PreludeError> {
    let mut buf = Vec::with_capacity(256);
    loop {
        let room = (MAX_PROXY_HEADER - buf.len()).min(1024);
        let start = buf.len();
        buf.resize(start + room, 0);
        let n = io.read(&mut buf[start..]).await?;
        buf.truncate(start + n);
        if n == 0 {
            return Err(match parse(&buf) {
                Err(e) => e,
                Ok(_) => PreludeError::Truncated(buf.len()),
            });
        }
        if let Some((said, len)) = parse(&buf)? {
            buf.drain(..len);
            return Ok((said, buf));
        }
    }
}

pin_project_lite::pin_project! {
    /// A stream with bytes already read from it put back in front.
    pub struct Prefixed<T> {
        prefix: Vec<u8>,
        at: usize,
        #[pin]
        inner: T,
    }
}

impl<T> Prefixed<T> {
    pub fn new(prefix: Vec<u8>, inner: T) -> Prefixed<T> {
        Prefixed {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<T: AsyncRead> AsyncRead for Prefixed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if *this.at < this.prefix.len() {
            let rest = &this.prefix[*this.at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            *this.at += n;
            if *this.at == this.prefix.len() {
                *this.prefix = Vec::new();
                *this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for Prefixed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&u16::try_from(addresses.len()).unwrap_or(0).to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let h = b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\nGET /";
        assert_eq!(
            parse(h).ok().flatten(),
            Some((Proxied::Client("192.0.2.7:5555".parse().unwrap()), 40))
        );
        let h = b"PROXY TCP6 2001:db8::1 ::1 5555 443\r\n";
        assert_eq!(
            parse(h).ok().flatten().map(|(p, _)| p),
            Some(Proxied::Client("[2001:db8::1]:5555".parse().unwrap()))
        );
        let h = b"PROXY UNKNOWN\r\n";
        assert_eq!(parse(h).ok().flatten(), Some((Proxied::Peer, 15)));
    }

    #[test]
    fn v2_proxy_and_local() {
        let mut addrs = vec![192, 0, 2, 9, 127, 0, 0, 1];
        addrs.extend_from_slice(&4000u16.to_be_bytes());
        addrs.extend_from_slice(&80u16.to_be_bytes());
        let h = v2(1, 0x11, &addrs);
        assert_eq!(
            parse(&h).ok().flatten(),
            Some((Proxied::Client("192.0.2.9:4000".parse().unwrap()), 28))
        );
        let h = v2(0, 0x00, &[]);
        assert_eq!(parse(&h).ok().flatten(), Some((Proxied::Peer, 16)));
    }

    #[test]
    fn partial_headers_ask_for_more_and_garbage_is_refused() {
        assert!(matches!(parse(b"PROXY TCP4 192.0"), Ok(None)));
        assert!(matches!(parse(b"\r\n\r\n\0"), Ok(None)));
        assert!(matches!(parse(b""), Ok(None)));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Err(PreludeError::Garbled(_))
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 300.0.0.1 127.0.0.1 1 2\r\n"),
            Err(PreludeError::Garbled(_))
        ));
    }

    #[test]
    fn a_v1_line_is_parsed_only_once_its_crlf_is_in() {
        let line = b"PROXY TCP4 192.0.2.7 127.0.0.1 1111 80\r\n";
        for cut in 0..line.len() {
            assert!(matches!(parse(&line[..cut]), Ok(None)), "cut at {cut}");
        }
        assert_eq!(
            parse(line).ok().flatten(),
            Some((
                Proxied::Client("192.0.2.7:1111".parse().unwrap()),
                line.len()
            ))
        );
        // No CRLF within the protocol's 107 bytes.
        let mut long = b"PROXY TCP4 192.0.2.7 127.0.0.1 1111 80".to_vec();
        long.resize(MAX_V1_HEADER, b' ');
        assert!(matches!(parse(&long), Err(PreludeError::Garbled(_))));
    }

    #[test]
    fn v1_ports_are_plain_numbers_from_1() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 127.0.0.1 +80 80\r\n"[..],
            b"PROXY TCP4 192.0.2.7 127.0.0.1 80 +80\r\n",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 0 80\r\n",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 80 0\r\n",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 080 80\r\n",
            b"PROXY TCP6 2001:db8::1 ::1 65536 443\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(PreludeError::Garbled(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let h = b"PROXY TCP6 2001:db8::1 ::1 65535 1\r\n";
        assert!(matches!(parse(h), Ok(Some(_))));
    }

    #[tokio::test]
    async fn a_v1_header_sent_one_byte_at_a_time_is_read() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            for byte in b"PROXY TCP4 192.0.2.7 127.0.0.1 1111 80\r\nGET" {
                let _ = tokio::io::AsyncWriteExt::write_all(&mut a, &[*byte]).await;
                tokio::task::yield_now().await;
            }
        });
        let (said, rest) = read_proxy_header(&mut b).await.unwrap();
        assert_eq!(said, Proxied::Client("192.0.2.7:1111".parse().unwrap()));
        assert!(b"GET".starts_with(&rest), "{rest:?}");
    }

    #[tokio::test]
    async fn leftover_bytes_are_read_first() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        tokio::io::AsyncWriteExt::write_all(&mut a, b"PROXY UNKNOWN\r\nGET / HTTP/1.1\r\n")
            .await
            .unwrap();
        let (said, rest) = read_proxy_header(&mut b).await.unwrap();
        assert_eq!(said, Proxied::Peer);
        let mut p = Prefixed::new(rest, b);
        let mut got = [0u8; 16];
        p.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"GET / HTTP/1.1\r\n");
    }

    proptest! {
        /// Arbitrary bytes, arriving in arbitrary pieces: the reader never
        /// panics or hangs, and agrees with parsing the whole input at once.
        #[test]
        fn arbitrary_input_in_arbitrary_pieces(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            cuts in proptest::collection::vec(1usize..40, 0..10),
            prefix in prop_oneof![Just(&b""[..]), Just(&b"PROXY "[..]), Just(&b"\r\n\r\n\0\r\nQUIT\n"[..])],
        ) {
            let mut input = prefix.to_vec();
            input.extend_from_slice(&data);
            let whole = parse(&input);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let got = rt.block_on(async {
                let (mut a, mut b) = tokio::io::duplex(8192);
                let mut pieces = Vec::new();
                let mut rest = &input[..];
                for c in cuts {
                    let n = c.min(rest.len());
                    pieces.push(rest[..n].to_vec());
                    rest = &rest[n..];
                }
                pieces.push(rest.to_vec());
                tokio::spawn(async move {
                    for p in pieces {
                        let _ = tokio::io::AsyncWriteExt::write_all(&mut a, &p).await;
                        tokio::task::yield_now().await;
                    }
                });
                read_proxy_header(&mut b).await
            });
            match (whole, got) {
                (Ok(Some((said, len))), Ok((got, rest))) => {
                    prop_assert_eq!(said, got);
                    prop_assert_eq!(&input[len..], &rest[..]);
                }
                // Whatever the pieces, the bytes consumed are exactly one header.
                (_, Ok((got, rest))) => {
                    let used = input.len() - rest.len();
                    prop_assert_eq!(parse(&input[..used]).ok().flatten(), Some((got, used)));
                }
                (_, Err(_)) => {}
            }
        }
    }
}
