//! What the data path knows about the client connection a request came on,
//! and the state it shares with the connection's timers ([`ConnState`]):
//! requests begin and end here, `listener/io.rs` only reads it, so there is
//! no lock.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use futures_util::task::AtomicWaker;
use http::HeaderValue;

/// How long a connection with nothing in flight may stay open once its
/// listener stops (`listener/drain.rs`).
pub const IDLE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// One client connection, as the requests on it see it.
#[derive(Debug)]
pub struct ConnCtx {
    pub peer: SocketAddr,
    /// The peer's address, IPv4-mapped IPv6 unwrapped.
    pub peer_ip: IpAddr,
    /// The peer's address as an `X-Forwarded-For` value, written once per
    /// connection and shared by every request on it.
    pub peer_value: HeaderValue,
    /// The socket id of the listener (see `runtime::ListenerRt::id`).
    pub listener: u64,
    pub scheme: &'static str,
    pub state: Arc<ConnState>,
    /// May a trusted peer's requests speak for their client
    /// (`X-Forwarded-*`)? Not behind a PROXY header that named no client
    /// (v1 `UNKNOWN`, v2 `LOCAL`): the peer is an L4 balancer, which writes
    /// no such headers, so any there come from the end client.
    pub may_forward: bool,
    /// `strict_sni`: the certificate this TLS connection negotiated; a
    /// request whose `Host` it does not name is misdirected (421).
    pub strict_sni: Option<Arc<crate::config::sni::Cert>>,
}

impl ConnCtx {
    pub fn new(peer: SocketAddr, listener: u64, scheme: &'static str) -> ConnCtx {
        let peer_ip = peer.ip().to_canonical();
        let mut buf = [0u8; 48];
        let text = format_ip(peer_ip, &mut buf);
        ConnCtx {
            peer,
            peer_ip,
            peer_value: HeaderValue::from_bytes(text)
                .unwrap_or(HeaderValue::from_static("unknown")),
            listener,
            scheme,
            state: Arc::new(ConnState::default()),
            may_forward: true,
            strict_sni: None,
        }
    }
}

/// Writes an IP address into `buf` without allocating.
fn format_ip(ip: IpAddr, buf: &mut [u8; 48]) -> &[u8] {
    use std::io::Write;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cur, "{ip}");
    let n = usize::try_from(cur.position()).unwrap_or(0);
    &buf[..n]
}

/// Requests in flight on one client connection.
#[derive(Debug, Default)]
pub struct ConnState {
    in_flight: AtomicU32,
    completed: AtomicU64,
    tunnel: AtomicBool,
    /// The reader, woken when the last request ends so the idle timer starts
    /// even if hyper does not poll the socket again by itself.
    reader: AtomicWaker,
    /// The listener stopped: the connection closes between two requests
    /// (`listener/drain.rs`), which waits on `began` for the next request.
    draining: AtomicBool,
    began: AtomicWaker,
}

impl ConnState {
    pub fn begin_request(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.draining.load(Ordering::Relaxed) {
            self.began.wake();
        }
    }

    /// The listener stopped (see `listener/drain.rs`).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Ready once a request is in flight (after [`start_draining`]).
    ///
    /// [`start_draining`]: Self::start_draining
    pub async fn request_began(&self) {
        std::future::poll_fn(|cx| {
            self.began.register(cx.waker());
            if self.in_flight() > 0 {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
    }

    pub fn end_request(&self) {
        self.completed.fetch_add(1, Ordering::AcqRel);
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.reader.wake();
        }
    }

    /// The connection became a tunnel (101 Switching Protocols): from now
    /// on only the idle timeout applies.
    pub fn set_tunnel(&self) {
        self.tunnel.store(true, Ordering::Release);
    }

    pub fn is_tunnel(&self) -> bool {
        self.tunnel.load(Ordering::Acquire)
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// The reader to wake when the connection turns idle.
    pub fn register_reader(&self, waker: &std::task::Waker) {
        self.reader.register(waker);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_are_written_without_allocating() {
        let mut buf = [0u8; 48];
        assert_eq!(
            super::format_ip(
                "127.0.0.2"
                    .parse()
                    .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
                &mut buf
            ),
            b"127.0.0.2"
        );
        let v6: std::net::IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
            .parse()
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        assert_eq!(super::format_ip(v6, &mut buf).len(), 39);
    }
}
