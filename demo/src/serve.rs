//! The demo node's listening side: one accept loop per listening period
//! (a [`Generation`], from start or restart until stop), each connection
//! served by hyper's auto builder (HTTP/1.1 with upgrades, h2c), and the
//! per-connection control that lets reset mode drop a connection with an
//! RST.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::handlers::handle;
use super::{Shared, lock};

pub(super) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

pub(super) fn spawn_server(shared: Arc<Shared>, listener: TcpListener) -> Arc<Generation> {
    let generation = Arc::new(Generation::default());
    generation.spawn(accept_loop(shared, listener, Arc::clone(&generation)));
    generation
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, generation: Arc<Generation>) {
    let builder = Arc::new(auto::Builder::new(GenerationExec(Arc::clone(&generation))));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                tracing::debug!(route = %shared.route, %err, "demo node accept failed");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        generation.spawn(serve_connection(
            Arc::clone(&shared),
            Arc::clone(&generation),
            Arc::clone(&builder),
            stream,
        ));
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    generation: Arc<Generation>,
    builder: Arc<auto::Builder<GenerationExec>>,
    stream: TcpStream,
) {
    let ctl = Arc::new(ConnCtl::default());
    let io = TokioIo::new(ConnIo {
        stream,
        ctl: Arc::clone(&ctl),
    });
    let service_ctl = Arc::clone(&ctl);
    let service = hyper::service::service_fn(move |req| {
        handle(
            Arc::clone(&shared),
            Arc::clone(&service_ctl),
            Arc::clone(&generation),
            req,
        )
    });
    {
        let conn = builder.serve_connection_with_upgrades(io, service);
        tokio::select! {
            () = ctl.reset.notified() => {}
            _ = conn => {}
        }
        // `conn` (and with it the socket) is dropped here.
    }
    ctl.closed.notify_waiters();
}

/// The tasks of one listening period (between start/restart and stop).
#[derive(Default)]
pub(super) struct Generation {
    tasks: Mutex<GenerationTasks>,
}

#[derive(Default)]
struct GenerationTasks {
    closed: bool,
    set: JoinSet<()>,
}

impl Generation {
    /// Spawn a task that `stop()` aborts; refused once closed.
    pub(super) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut tasks = lock(&self.tasks);
        if tasks.closed {
            return;
        }
        while tasks.set.try_join_next().is_some() {}
        tasks.set.spawn(fut);
    }

    /// Refuse further spawns and hand out the tasks (dropping aborts them).
    pub(super) fn close(&self) -> JoinSet<()> {
        let mut tasks = lock(&self.tasks);
        tasks.closed = true;
        std::mem::take(&mut tasks.set)
    }
}

/// Hyper executor (HTTP/2 stream tasks) spawning into a generation.
#[derive(Clone)]
struct GenerationExec(Arc<Generation>);

impl<F> hyper::rt::Executor<F> for GenerationExec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(async move {
            let _ = fut.await;
        });
    }
}

/// Per-connection control used to reset a connection from a request handler.
#[derive(Default)]
pub(super) struct ConnCtl {
    /// Set before the connection is dropped: close with `SO_LINGER` 0 (RST).
    reset_requested: AtomicBool,
    /// Handler → connection task: drop the connection now.
    reset: Notify,
    /// Connection task → handlers: the connection has been dropped.
    closed: Notify,
}

/// Make the connection task drop the connection with an RST, wait until it
/// has, and return the error to hand to hyper (for HTTP/2 stream tasks).
pub(super) async fn reset_connection(ctl: &ConnCtl) -> io::Error {
    let closed = ctl.closed.notified();
    tokio::pin!(closed);
    closed.as_mut().enable();
    ctl.reset_requested.store(true, Ordering::SeqCst);
    ctl.reset.notify_one();
    // HTTP/1 handlers are dropped with the connection; HTTP/2 stream tasks
    // wake up here. The timeout only bounds an unexpected race.
    let _ = tokio::time::timeout(Duration::from_secs(5), closed).await;
    io::Error::new(io::ErrorKind::ConnectionReset, "demo node in reset mode")
}

/// The accepted socket; closes with an RST if a reset was requested.
struct ConnIo {
    stream: TcpStream,
    ctl: Arc<ConnCtl>,
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.ctl.reset_requested.load(Ordering::SeqCst) {
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
