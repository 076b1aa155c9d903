//! One worker's idle connections to servers for the HTTP/1 path: for every
//! server a LIFO stack of raw connections (the most recently used first,
//! so the others age out), bounded, each dropped after
//! [`IDLE_FOR`](crate::proxy::client::IDLE_FOR) idle or when it is found
//! closed. The same rules as hyper's pool in `proxy/client.rs`, without a
//! task per connection: a connection is a socket and nothing else.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};

use crate::connect::ServerIo;
use crate::proxy::client::{ConnectError, Stacks};

/// One worker's idle server connections, by server slot.
#[derive(Default)]
pub struct ServerConns {
    idle: Stacks<ServerIo>,
}

/// A connection to a server, ready for a request.
pub struct Checked {
    pub io: ServerIo,
    /// It served requests before (it may turn out closed: not the
    /// server's failure).
    pub reused: bool,
}

impl ServerConns {
    /// See [`Stacks::keep_only`].
    pub fn keep_only(&self, used: &std::collections::HashSet<usize>) {
        self.idle.keep_only(used);
    }

    /// An idle connection to the server in `slot`, or a new one to `addr`.
    pub async fn checkout(
        &self,
        slot: usize,
        addr: SocketAddr,
        tls: Option<&crate::config::ServerTls>,
        connect_timeout: Duration,
    ) -> Result<Checked, ConnectError> {
        while let Some(mut io) = self.idle.pop(slot) {
            if open(&mut io) {
                return Ok(Checked { io, reused: true });
            }
        }
        let io = tokio::time::timeout(connect_timeout, crate::connect::connect(addr, tls))
            .await
            .map_err(|_| ConnectError::Timeout)??;
        Ok(Checked { io, reused: false })
    }

    /// Keeps a connection whose exchange is complete for the next request.
    pub fn checkin(&self, slot: usize, io: ServerIo) {
        self.idle.push(slot, io);
    }

    /// Idle connections to the server in `slot` (for tests).
    pub fn idle(&self, slot: usize) -> usize {
        self.idle.len(slot)
    }
}

/// Is an idle connection still open? It must have nothing to read: a
/// server that closed it (EOF), reset it, or sent bytes nobody asked for
/// makes it useless. One read attempt that does not wait.
fn open(io: &mut ServerIo) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    matches!(Pin::new(io).poll_read(&mut cx, &mut buf), Poll::Pending)
}
