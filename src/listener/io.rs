//! The client connection's socket, with the two timers hyper cannot express
//! the way operators expect: `request_header` (from the first byte of a
//! request to its complete header; on expiry limpet answers 408 itself and
//! closes, where hyper would just close) and `client_idle` (no request in
//! flight and nothing received: the keep-alive connection is closed quietly).
//! The handler tells the connection when requests begin and end through
//! [`ConnState`]; this wrapper only reads that state, so there is no lock.
//!
//! The timer is cheap on a busy connection: a phase change only moves the
//! deadline (a clock read); the timer itself is armed no further than the
//! shorter of the two timeouts and re-armed when it fires early, so a
//! keep-alive connection costs a timer operation per timeout period, not
//! per request.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::proxy::ConnState;

const RESPONSE_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 33\r\nconnection: close\r\n\r\nrequest header not received in time\n";

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
        // When the phase's time runs out.
        deadline: Instant,
        state: Arc<ConnState>,
        phase: Phase,
        seen_completed: u64,
        first_read: bool,
        header_timeout: Duration,
        idle_timeout: Duration,
        // Wake the reader when the last request ends (see
        // `ConnState::register_reader`).
        wake_when_idle: bool,
    }
}

impl<T> TimedIo<T> {
    /// A new connection must send its first request header within
    /// `header_timeout` of being accepted.
    pub fn new(
        inner: T,
        state: Arc<ConnState>,
        header_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        let now = Instant::now();
        let deadline = now + header_timeout;
        // Never armed further than the shorter timeout: any later deadline
        // is then at or after the timer, which re-arms itself when it fires.
        let first = now + header_timeout.min(idle_timeout);
        TimedIo {
            inner,
            timer: Box::pin(tokio::time::sleep_until(first)),
            deadline,
            state,
            phase: Phase::Header,
            seen_completed: 0,
            first_read: true,
            header_timeout,
            idle_timeout,
            wake_when_idle: true,
        }
    }

    /// Whether a request's end wakes the reader, so that the idle timer
    /// starts. hyper needs it: it may not read again by itself. limpet's
    /// own HTTP/1 path reads again as a request ends, and the wake would
    /// only poll its task once more for nothing.
    pub fn wake_when_idle(&mut self, wake: bool) {
        self.wake_when_idle = wake;
    }
}

/// Has the deadline passed? When the timer fired before it (it was armed for
/// an earlier deadline), re-arm it, no further than `horizon` from now.
fn expired(
    timer: &mut Pin<Box<Sleep>>,
    deadline: Instant,
    horizon: Duration,
    cx: &mut Context<'_>,
) -> bool {
    loop {
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        timer.as_mut().reset(deadline.min(now + horizon));
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
        if *this.phase != Phase::Stream && this.state.is_tunnel() {
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
            *this.deadline = Instant::now() + *this.idle_timeout;
        }
        match polled {
            Poll::Ready(Ok(())) => {
                let got = &buf.filled()[before..];
                if *this.first_read && !got.is_empty() {
                    *this.first_read = false;
                    if got.starts_with(b"PRI * HTTP/2") {
                        *this.phase = Phase::Stream;
                        *this.deadline = Instant::now() + *this.idle_timeout;
                    }
                }
                if !got.is_empty() && !busy {
                    match *this.phase {
                        Phase::Idle => {
                            *this.phase = Phase::Header;
                            *this.deadline = Instant::now() + *this.header_timeout;
                        }
                        Phase::Stream => *this.deadline = Instant::now() + *this.idle_timeout,
                        Phase::Header => {}
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if *this.wake_when_idle {
                    this.state.register_reader(cx.waker());
                }
                let horizon = (*this.header_timeout).min(*this.idle_timeout);
                if busy || !expired(this.timer, *this.deadline, horizon, cx) {
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

impl<T> TimedIo<T> {
    /// Bytes went to the client: on a stream (an upgraded tunnel, HTTP/2)
    /// that is activity too, so a WebSocket on which only the server talks
    /// is not idle.
    fn wrote(self: Pin<&mut Self>, polled: &Poll<io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            let this = self.project();
            if *this.phase == Phase::Stream {
                *this.deadline = Instant::now() + *this.idle_timeout;
            }
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for TimedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = self.as_mut().project().inner.poll_write(cx, buf);
        self.wrote(&polled);
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = self.as_mut().project().inner.poll_write_vectored(cx, bufs);
        self.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    //! The timers on paused time: every deadline is exact, nothing waits.

    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
    use tokio::time::Instant;

    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    fn timed(
        state: &Arc<ConnState>,
    ) -> (TimedIo<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (client, server) = duplex(4096);
        (
            TimedIo::new(server, Arc::clone(state), HEADER, IDLE),
            client,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_header_gets_408_at_request_header_from_its_first_byte() {
        let state = Arc::new(ConnState::default());
        let (mut io, mut client) = timed(&state);
        let started = Instant::now();
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let (mut rd, mut wr) = tokio::io::split(client);
        // One more header byte every 3 s: the deadline still holds.
        let trickle = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                if wr.write_all(b"x").await.is_err() {
                    break;
                }
            }
        });
        let mut buf = [0u8; 256];
        let err = loop {
            match io.read(&mut buf).await {
                Ok(0) => panic!("closed quietly instead of answering 408"),
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), HEADER);
        let mut answer = vec![0u8; RESPONSE_408.len()];
        rd.read_exact(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 408"));
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_is_closed_quietly_at_request_header() {
        let state = Arc::new(ConnState::default());
        let (mut io, _client) = timed(&state);
        let started = Instant::now();
        let mut buf = [0u8; 16];
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        assert_eq!(started.elapsed(), HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_keep_alive_connection_may_idle_until_client_idle_then_closes_quietly() {
        let state = Arc::new(ConnState::default());
        let (mut io, mut client) = timed(&state);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(io.read(&mut buf).await.unwrap() > 0);
        // The request runs for 30 s (longer than request_header): no timer.
        state.begin_request();
        let reading = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let n = io.read(&mut buf).await;
            (n.map_err(|e| e.kind()), Instant::now())
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        let ended = Instant::now();
        state.end_request();
        let (n, at) = reading.await.unwrap();
        assert_eq!(n, Ok(0), "an idle connection is closed without an answer");
        assert_eq!(at - ended, IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tunnel_on_which_only_the_server_talks_is_not_idle() {
        let state = Arc::new(ConnState::default());
        let (mut io, mut client) = timed(&state);
        // The upgrade request, answered 101: the connection is a tunnel.
        client
            .write_all(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(io.read(&mut buf).await.unwrap() > 0);
        state.begin_request();
        state.set_tunnel();
        state.end_request();
        let (mut rd, mut wr) = tokio::io::split(io);
        let reading = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let n = rd.read(&mut buf).await;
            (n.map_err(|e| e.kind()), Instant::now())
        });
        // The server pushes a message every 30 s for 150 s; the client
        // only reads them.
        let mut last = Instant::now();
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(30)).await;
            wr.write_all(b"m").await.unwrap();
            wr.flush().await.unwrap();
            last = Instant::now();
            let mut got = [0u8; 1];
            client.read_exact(&mut got).await.unwrap();
        }
        // Then silence both ways: closed at client_idle after the last push.
        let (n, at) = reading.await.unwrap();
        assert_eq!(n, Ok(0));
        assert_eq!(at - last, IDLE);
    }
}
