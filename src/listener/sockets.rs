//! A listener's sockets: one per worker, in an SO_REUSEPORT group (nginx's
//! `reuseport`, HAProxy's per-thread `bind`), and the rules that keep the
//! group from losing a connection while it changes hands.
//!
//! The kernel hashes each new connection to one socket of the group and
//! queues it there, whoever accepts on that socket or not. Two traps follow:
//! a socket nobody accepts on holds its share of connections until their
//! clients give up, and when the last descriptor of a socket is closed, the
//! connections queued in it are reset (Linux moves them to another socket
//! of the group only with `net.ipv4.tcp_migrate_req`, off by default). So:
//!
//! 1. **Bound once.** The first socket is bound without SO_REUSEPORT, so
//!    that a second limpet on the address is refused ([`bind`]); the flag is
//!    set once it listens and the others join it ([`group`]), only once
//!    nothing can fail any more, since a socket that joins takes its share
//!    of connections at once.
//! 2. **Every socket is accepted on.** Worker `i` accepts on socket `i`; a
//!    socket beyond the workers goes to a worker that has one already, and
//!    workers beyond the sockets share them (`Workers::listen`).
//! 3. **A group only grows while its listener lives.** A reload keeps it
//!    whole (a new `workers` applies at the next upgrade). An upgrade hands
//!    the new process a copy of every socket (HAProxy's `-x`: the same
//!    sockets, never a new bind, `upgrade/`), and the new process accepts on
//!    all of them before the old one stops: with fewer workers some accept
//!    on several, with more it adds sockets to the group.
//! 4. **Accepted means served, and a socket is let go empty.** An accept
//!    loop that stops takes what is queued in its socket without waiting
//!    ([`take_backlog`]) before it drops its copy, and serves every
//!    connection it took, also one still waiting for a slot of
//!    `max_connections` (`super::serve`). In the old process of an upgrade
//!    that drop closes nothing: the new process holds its own copies. A
//!    socket really closes only when its listener is removed (by a reload,
//!    or by the configuration of an upgrade's new process) or limpet stops;
//!    only a connection that arrives in the instant between the last take
//!    and the close is then reset, as with any socket that closes.
//!
//! A group has at most [`crate::upgrade::wire::MAX_SOCKETS`] sockets in all
//! listeners together (one `SCM_RIGHTS` message); past that, a listener's
//! workers share the sockets it has.

use std::net::SocketAddr;

/// Binds a listener socket the way a server should: SO_REUSEADDR, a deep
/// backlog, non-blocking. Without SO_REUSEPORT, so that an address another
/// process listens on (a second limpet started by mistake) is refused; the
/// listener's other sockets join it afterwards ([`group`]).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    bind_socket(addr, false)
}

/// How many connections the kernel queues in a socket for its accept loop;
/// also as many as a stopped loop takes from it ([`take_backlog`]), so that
/// taking ends even while clients keep connecting.
const BACKLOG: usize = 1024;

fn bind_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG as i32)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Makes the listener of `sockets` (bound and listening; more than one if
/// a process before this one made a group) a group of at least `n`
/// sockets on its address with SO_REUSEPORT: one per worker, so that the
/// kernel spreads new connections over the workers and wakes only the one
/// whose socket got a connection. Returns the sockets added. Sockets are
/// only ever added, never closed while the listener lives: connections
/// queued in a socket of a group that is closed are reset. Where the
/// kernel refuses (a socket that another user bound), fewer are added and
/// the workers share the sockets there are.
pub fn group(sockets: &[std::net::TcpListener], n: usize) -> Vec<std::net::TcpListener> {
    let Some(first) = sockets.first() else {
        return Vec::new();
    };
    let want = n.saturating_sub(sockets.len());
    if want == 0 {
        return Vec::new();
    }
    let addr = match first.local_addr() {
        Ok(addr) => addr,
        Err(_) => return Vec::new(),
    };
    // The first was bound without it (see `bind`), or by whoever handed it.
    if let Err(e) = socket2::SockRef::from(first).set_reuse_port(true) {
        tracing::debug!(%addr, error = %e, "SO_REUSEPORT refused: the workers share one socket");
        return Vec::new();
    }
    let mut added = Vec::with_capacity(want);
    for _ in 0..want {
        match bind_socket(addr, true) {
            Ok(socket) => added.push(socket),
            Err(e) => {
                tracing::debug!(%addr, error = %e, "cannot add a socket with SO_REUSEPORT: workers share the ones there are");
                break;
            }
        }
    }
    added
}

/// The connections queued in a listening socket that nobody accepts on
/// any more (its listener stopped), taken without waiting: whatever the
/// kernel has queued until the queue is empty.
pub(super) fn take_backlog(
    socket: &std::net::TcpListener,
) -> Vec<(tokio::net::TcpStream, SocketAddr)> {
    let mut taken = Vec::new();
    while taken.len() < BACKLOG {
        let (stream, peer) = match socket.accept() {
            Ok(pair) => pair,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // WouldBlock: empty. Anything else (out of descriptors): what is
            // left is lost with the socket, as it would be without this.
            Err(e) => {
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    tracing::warn!(error = %e, "cannot take the connections queued in a stopped listener");
                }
                break;
            }
        };
        match stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(stream))
        {
            Ok(stream) => taken.push((stream, peer)),
            Err(e) => tracing::debug!(%peer, error = %e, "cannot serve a queued connection"),
        }
    }
    taken
}
