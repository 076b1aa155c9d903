//! The client connection's socket, with the two timers hyper cannot express
//! the way operators expect: `request_header` (from the first byte of a
//! request to its complete header; on expiry limpet answers 408 itself and
//! closes, where hyper would just close) and `client_idle` (no request in
//! flight and nothing received: the keep-alive connection is closed quietly).
//! The handler tells the connection when requests begin and end through
//! [`ConnState`]; this wrapper only reads that state, so there is no lock.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

const RESPONSE_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 33\r\nconnection: close\r\n\r\nrequest header not received in time\n";

/// Requests in flight on one client connection.
#[derive(Debug, Default)]
pub struct ConnState {
    in_flight: AtomicU32,
    completed: AtomicU64,
    tunnel: AtomicBool,
    /// The reader, woken when the last request ends so the idle timer starts
    /// even if hyper does not poll the socket again by itself.
    reader: AtomicWaker,
}

impl ConnState {
    pub fn begin_request(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
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

    fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request (keep-alive idle).
    Idle,
    /// Part of a request header has arrived.
    Header,
    /// HTTP/2 or an upgraded tunnel: only the idle timer applies, and no 408.
    Stream,
}

pin_project_lite::pin_project! {
    pub struct TimedIo<T> {
        #[pin]
        inner: T,
        timer: Pin<Box<Sleep>>,
        state: std::sync::Arc<ConnState>,
        phase: Phase,
        seen_completed: u64,
        first_read: bool,
        header_timeout: Duration,
        idle_timeout: Duration,
    }
}

impl<T> TimedIo<T> {
    /// A new connection must send its first request header within
    /// `header_timeout` of being accepted.
    pub fn new(
        inner: T,
        state: std::sync::Arc<ConnState>,
        header_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        TimedIo {
            inner,
            timer: Box::pin(tokio::time::sleep(header_timeout)),
            state,
            phase: Phase::Header,
            seen_completed: 0,
            first_read: true,
            header_timeout,
            idle_timeout,
        }
    }
}

impl<T: AsyncRead + AsyncWrite> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.as_mut().poll_read(cx, buf);
        if *this.phase != Phase::Stream && this.state.tunnel.load(Ordering::Acquire) {
            *this.phase = Phase::Stream;
        }
        let busy = this.state.in_flight() > 0;
        let completed = this.state.completed();
        if !busy && completed != *this.seen_completed {
            // A request finished since we last looked: the connection is idle now.
            *this.seen_completed = completed;
            if *this.phase != Phase::Stream {
                *this.phase = Phase::Idle;
            }
            this.timer
                .as_mut()
                .reset(Instant::now() + *this.idle_timeout);
        }
        match polled {
            Poll::Ready(Ok(())) => {
                let got = &buf.filled()[before..];
                if *this.first_read && !got.is_empty() {
                    *this.first_read = false;
                    if got.starts_with(b"PRI * HTTP/2") {
                        *this.phase = Phase::Stream;
                        this.timer
                            .as_mut()
                            .reset(Instant::now() + *this.idle_timeout);
                    }
                }
                if !got.is_empty() && !busy {
                    match *this.phase {
                        Phase::Idle => {
                            *this.phase = Phase::Header;
                            this.timer
                                .as_mut()
                                .reset(Instant::now() + *this.header_timeout);
                        }
                        Phase::Stream => this
                            .timer
                            .as_mut()
                            .reset(Instant::now() + *this.idle_timeout),
                        Phase::Header => {}
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.state.reader.register(cx.waker());
                if busy || this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                match *this.phase {
                    Phase::Header if !*this.first_read => {
                        // Best effort: a few bytes always fit in the socket buffer.
                        let _ = this.inner.as_mut().poll_write(cx, RESPONSE_408);
                        let _ = this.inner.as_mut().poll_flush(cx);
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request header timeout",
                        )))
                    }
                    // Nothing of a request was received: close quietly (EOF).
                    _ => Poll::Ready(Ok(())),
                }
            }
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for TimedIo<T> {
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
