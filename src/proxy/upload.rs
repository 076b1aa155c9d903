//! A client's request body on its way to a server, streamed, never
//! buffered (except a small body kept for a replay, see [`REPLAY_LIMIT`]).
//!
//! While [`ReqBody`] streams it keeps the request's [`Progress`]: when data
//! last moved, whether limpet is waiting for the client, and whether the
//! client broke the body — so that a broken, slow or abandoned upload is
//! blamed on the client and never on the server, and the server's
//! `backend_response` clock runs only while the server has the turn.

use std::cell::Cell;
use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::clock;

/// How the client side of a request body failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// Bad framing (a broken chunk size, a body shorter than announced
    /// on a connection that stayed open): 400.
    Malformed,
    /// The client hung up or reset the connection mid-body: no answer.
    Gone,
    /// The client paused longer than `timeouts.client_body`: 408.
    Slow,
}

impl ClientFault {
    /// What a client-side body error was.
    pub fn of(e: &hyper::Error) -> ClientFault {
        if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
            return ClientFault::Gone;
        }
        let mut source = e.source();
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                return match io.kind() {
                    UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => {
                        ClientFault::Gone
                    }
                    TimedOut => ClientFault::Slow,
                    _ => ClientFault::Malformed,
                };
            }
            source = s.source();
        }
        // hyper reports a failed client connection without an I/O cause.
        ClientFault::Gone
    }
}

/// What a request body did, shared by the body (driven by the server
/// connection) and the handler that waits for the response; both run on
/// the worker's thread.
#[derive(Debug)]
pub struct Progress {
    /// `clock::ms` when data last moved to the server (or the body ended).
    last: Cell<u64>,
    /// The body was polled and waits for the client: the client's time.
    waiting: Cell<bool>,
    fault: Cell<Option<ClientFault>>,
    /// The client's body was read whole.
    ended: Cell<bool>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            last: Cell::new(clock::ms()),
            waiting: Cell::new(false),
            fault: Cell::new(None),
            ended: Cell::new(false),
        }
    }
}

impl Progress {
    fn advance(&self) {
        self.last.set(clock::ms());
        self.waiting.set(false);
    }

    /// The client's failure, if the body failed on the client's side.
    pub fn fault(&self) -> Option<ClientFault> {
        self.fault.get()
    }

    /// Was the client's body read whole (so its server connection is done
    /// with this request once the answer is read)?
    pub fn ended(&self) -> bool {
        self.ended.get()
    }

    /// Is limpet waiting for the client's next bytes?
    pub fn waiting_for_client(&self) -> bool {
        self.waiting.get()
    }

    /// When the server's `backend_response` time runs out: `wait` after the
    /// last progress; while the client has the turn, not before `wait` from now.
    pub fn deadline(&self, wait: Duration) -> Instant {
        let from = if self.waiting.get() {
            clock::ms()
        } else {
            self.last.get()
        };
        Instant::from_std(clock::instant(from)) + wait
    }
}

/// Idempotent requests with a body of at most this many bytes (by their
/// Content-Length) are read whole first, so that a server that resets the
/// connection before answering can be replaced. Larger and chunked bodies
/// stream and are replayed only when no byte of them was sent.
pub const REPLAY_LIMIT: u64 = 64 * 1024;

/// Reads a small body whole (for replay), within `client_body` per read.
pub async fn buffer(mut body: Incoming, client_body: Duration) -> Result<Bytes, ClientFault> {
    use http_body_util::BodyExt;
    let mut all = bytes::BytesMut::new();
    loop {
        match tokio::time::timeout(client_body, body.frame()).await {
            Err(_) => return Err(ClientFault::Slow),
            Ok(None) => return Ok(all.freeze()),
            Ok(Some(Err(e))) => return Err(ClientFault::of(&e)),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    all.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Why a request body stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("client body: {0}")]
    Client(#[source] hyper::Error),
    #[error("client body: no data within client_body")]
    Timeout,
}

/// A request body on its way to a server.
#[derive(Debug)]
pub enum ReqBody {
    Empty,
    /// A small body read whole: it can be sent again.
    Full(Option<Bytes>),
    Streaming(Box<Streaming>),
}

impl ReqBody {
    /// Streams `body` with `client_body` as the longest pause between reads.
    pub fn streaming(body: Incoming, timeout: Duration) -> ReqBody {
        ReqBody::Streaming(Box::new(Streaming {
            body,
            progress: Rc::new(Progress::default()),
            timeout,
            timer: None,
            armed: false,
        }))
    }

    /// What a streamed body did (None for a body sent at once: the server
    /// has the turn from the start).
    pub fn progress(&self) -> Option<Rc<Progress>> {
        match self {
            ReqBody::Streaming(s) => Some(Rc::clone(&s.progress)),
            ReqBody::Empty | ReqBody::Full(_) => None,
        }
    }

    /// A copy for another attempt, when the body can be sent again.
    pub fn replay(&self) -> Option<ReqBody> {
        match self {
            ReqBody::Empty => Some(ReqBody::Empty),
            ReqBody::Full(Some(b)) => Some(ReqBody::Full(Some(b.clone()))),
            ReqBody::Full(None) => Some(ReqBody::Full(None)),
            ReqBody::Streaming(_) => None,
        }
    }
}

/// A client body being read, with its `client_body` timer.
#[derive(Debug)]
pub struct Streaming {
    body: Incoming,
    progress: Rc<Progress>,
    timeout: Duration,
    /// Created at the first wait; re-armed at each wait after data came.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Streaming {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.armed = false;
                self.progress.advance();
                if self.body.is_end_stream() {
                    self.progress.ended.set(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.progress.fault.set(Some(ClientFault::of(&e)));
                Poll::Ready(Some(Err(BodyError::Client(e))))
            }
            Poll::Ready(None) => {
                self.progress.advance();
                self.progress.ended.set(true);
                Poll::Ready(None)
            }
            Poll::Pending => {
                self.progress.waiting.set(true);
                let timeout = self.timeout;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if !self.armed {
                    timer.as_mut().reset(Instant::now() + timeout);
                    self.armed = true;
                }
                if timer.as_mut().poll(cx).is_ready() {
                    self.progress.fault.set(Some(ClientFault::Slow));
                    return Poll::Ready(Some(Err(BodyError::Timeout)));
                }
                Poll::Pending
            }
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut *self {
            ReqBody::Streaming(s) => s.poll(cx),
            ReqBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full(b) => b.is_none(),
            ReqBody::Streaming(s) => s.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::Streaming(s) => s.body.size_hint(),
        }
    }
}
