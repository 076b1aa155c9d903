//! limpet's own connections to servers, one set per worker: for every
//! server a LIFO stack of idle keep-alive connections (the most recently
//! used first, so the others age out), bounded, each dropped when it has
//! been idle longer than [`IDLE_FOR`] — below Tomcat's 20 s keep-alive, so
//! limpet never sends on a connection the server is closing — or when hyper
//! saw it close. Nothing is shared between workers and nothing is locked.
//!
//! The data path connects first and builds the request after: a failed
//! connect needs no copy of the request. A connection that turns out to be
//! closed before the request was written gives the request back
//! (`try_send_request`).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::upload::ReqBody;
use crate::clock;

/// Idle connections to a server are closed after this long.
pub const IDLE_FOR: Duration = Duration::from_secs(15);

/// Idle connections kept per server and worker.
pub const MAX_IDLE: usize = 256;

/// One worker's idle connections of one kind, by server slot (see
/// `server::Server::slot`): a LIFO stack per server, each connection with
/// the time it went idle. Both HTTP/1 paths keep theirs here.
pub struct Stacks<T> {
    idle: RefCell<Vec<Vec<(T, u64)>>>,
}

impl<T> Default for Stacks<T> {
    fn default() -> Self {
        Stacks {
            idle: RefCell::new(Vec::new()),
        }
    }
}

impl<T> Stacks<T> {
    /// The most recently used idle connection to the server in `slot`;
    /// those idle longer than [`IDLE_FOR`] are dropped on the way.
    pub fn pop(&self, slot: usize) -> Option<T> {
        let now = clock::ms();
        let max_idle = clock::to_ms(IDLE_FOR);
        loop {
            let (conn, since) = self.idle.borrow_mut().get_mut(slot).and_then(Vec::pop)?;
            if now.saturating_sub(since) <= max_idle {
                return Some(conn);
            }
        }
    }

    /// Keeps a connection for the next request, up to [`MAX_IDLE`].
    pub fn push(&self, slot: usize, conn: T) {
        let mut all = self.idle.borrow_mut();
        if all.len() <= slot {
            all.resize_with(slot + 1, Vec::new);
        }
        let stack = &mut all[slot];
        if stack.len() < MAX_IDLE {
            stack.push((conn, clock::ms()));
        }
    }

    /// Idle connections to the server in `slot`.
    pub fn len(&self, slot: usize) -> usize {
        self.idle.borrow().get(slot).map_or(0, Vec::len)
    }

    /// Closes the idle connections of every slot no server uses any more
    /// (it left, or its host name now resolves elsewhere).
    pub fn keep_only(&self, used: &std::collections::HashSet<usize>) {
        for (slot, stack) in self.idle.borrow_mut().iter_mut().enumerate() {
            if !used.contains(&slot) {
                stack.clear();
            }
        }
    }
}

/// One worker's idle connections, by server slot (see `server::Server::slot`).
#[derive(Default)]
pub struct Clients {
    idle: Stacks<SendRequest<ReqBody>>,
}

/// A connection ready for a request.
pub struct Sender {
    pub inner: SendRequest<ReqBody>,
    /// It served requests before (a stale keep-alive connection may give
    /// its request back: that is not the server's failure).
    pub reused: bool,
}

/// Why no connection to a server could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect: no answer within the connect timeout")]
    Timeout,
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("connect: {0}")]
    Handshake(#[from] hyper::Error),
}

impl ConnectError {
    /// The OS error code, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ConnectError::Io(e) => e.raw_os_error(),
            _ => None,
        }
    }
}

impl Clients {
    /// See [`Stacks::keep_only`].
    pub fn keep_only(&self, used: &std::collections::HashSet<usize>) {
        self.idle.keep_only(used);
    }

    /// An idle connection to the server in `slot`, or a new one to `addr`
    /// (over TLS with `tls`; the handshake counts in the connect timeout).
    pub async fn checkout(
        &self,
        slot: usize,
        addr: SocketAddr,
        tls: Option<&crate::config::ServerTls>,
        connect_timeout: Duration,
    ) -> Result<Sender, ConnectError> {
        while let Some(mut sender) = self.idle.pop(slot) {
            if sender.is_closed() {
                continue;
            }
            if !sender.is_ready() && sender.ready().await.is_err() {
                continue;
            }
            return Ok(Sender {
                inner: sender,
                reused: true,
            });
        }
        let stream = tokio::time::timeout(connect_timeout, crate::connect::connect(addr, tls))
            .await
            .map_err(|_| ConnectError::Timeout)??;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::task::spawn_local(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%addr, error = %e, "server connection ended with an error");
            }
        });
        Ok(Sender {
            inner: sender,
            reused: false,
        })
    }

    /// Keeps a connection whose response is complete for the next request.
    pub fn checkin(&self, slot: usize, sender: SendRequest<ReqBody>) {
        if !sender.is_closed() {
            self.idle.push(slot, sender);
        }
    }

    /// Idle connections to the server in `slot` (for tests).
    pub fn idle(&self, slot: usize) -> usize {
        self.idle.len(slot)
    }
}

#[cfg(test)]
mod stack_tests {
    use super::Stacks;

    #[test]
    fn the_idle_connections_of_a_slot_no_server_uses_are_closed() {
        let stacks: Stacks<u32> = Stacks::default();
        stacks.push(0, 10);
        stacks.push(2, 20);
        stacks.push(2, 21);
        stacks.keep_only(&[0].into_iter().collect());
        assert_eq!((stacks.len(0), stacks.len(2)), (1, 0));
        assert_eq!(stacks.pop(0), Some(10));
    }
}
