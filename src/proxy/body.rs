//! Bodies that stream through limpet without being buffered.
//!
//! [`ReqBody`] carries a client's request body to a server; its [`Source`]
//! stays with the handler so a failed attempt can be replaced. Until the
//! first frame is polled a streamed body sits in a shared slot, so a request
//! whose connect failed (the server never saw a byte) takes it back and goes
//! to another server. While it streams, the body keeps the request's
//! [`Progress`]: when data last moved, whether limpet is waiting for the
//! client, and whether the client broke the body, so that a broken, slow or
//! abandoned upload is blamed on the client and never on the server, and the
//! server's `backend_response` clock runs only while the server has the
//! turn. [`ResBody`] carries a response to the client and owns the request's
//! [`Completion`]: when the body ends or is dropped, the access log line is
//! written and the in-flight counts fall.

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::completion::Completion;
use super::error::ProxyError;
use crate::clock;

/// How the client side of a request body failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// Bad framing (a broken chunk size, a body shorter than announced
    /// on a connection that stayed open): 400.
    Malformed = 1,
    /// The client hung up or reset the connection mid-body: no answer.
    Gone = 2,
    /// The client paused longer than `timeouts.client_body`: 408.
    Slow = 3,
}

impl ClientFault {
    pub fn error(self) -> ProxyError {
        match self {
            ClientFault::Malformed => ProxyError::BadRequest,
            ClientFault::Gone => ProxyError::ClientGone,
            ClientFault::Slow => ProxyError::BodyTimeout,
        }
    }

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
/// connection) and the handler that waits for the response.
#[derive(Debug, Default)]
pub struct Progress {
    /// `clock::ms` when data last moved to the server (or the body ended).
    last: AtomicU64,
    /// The body was polled and waits for the client: the client's time.
    waiting: AtomicBool,
    /// A [`ClientFault`] as u8, 0 for none.
    fault: AtomicU8,
}

impl Progress {
    fn advance(&self) {
        self.last.store(clock::ms(), Ordering::Relaxed);
        self.waiting.store(false, Ordering::Relaxed);
    }

    fn set_fault(&self, fault: ClientFault) {
        self.fault.store(fault as u8, Ordering::Relaxed);
    }

    /// The client's failure, if the body failed on the client's side.
    pub fn fault(&self) -> Option<ClientFault> {
        match self.fault.load(Ordering::Relaxed) {
            1 => Some(ClientFault::Malformed),
            2 => Some(ClientFault::Gone),
            3 => Some(ClientFault::Slow),
            _ => None,
        }
    }

    /// Is limpet waiting for the client's next bytes?
    pub fn waiting_for_client(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    /// When the server's `backend_response` time runs out: `wait` after the
    /// last progress; while the client has the turn, not before `wait` from now.
    pub fn deadline(&self, wait: Duration) -> Instant {
        let from = if self.waiting_for_client() {
            clock::ms()
        } else {
            self.last.load(Ordering::Relaxed).max(1)
        };
        Instant::from_std(clock::instant(from)) + wait
    }
}

/// Where a request's body comes from, kept for as long as the request may
/// still move to another server.
#[derive(Debug)]
pub struct Source {
    kind: Kind,
    pub progress: Arc<Progress>,
    client_body: Duration,
}

#[derive(Debug)]
enum Kind {
    /// No body: replayable on any server.
    Empty,
    /// A small body read whole before the first attempt (idempotent
    /// requests, see [`REPLAY_LIMIT`]): replayable.
    Buffered(Bytes),
    /// A streamed body, in a slot until an attempt first polls it: a retry
    /// can take it back only if the failed attempt never touched it.
    Stream(Arc<Mutex<Option<Incoming>>>),
}

/// Idempotent requests with a body of at most this many bytes (by their
/// Content-Length) are read whole first, so that a server that resets the
/// connection before answering can be replaced. Larger and chunked bodies
/// stream and are replayed only when the failed attempt never sent them.
pub const REPLAY_LIMIT: u64 = 64 * 1024;

impl Source {
    /// A body that streams; `client_body` is the longest pause allowed
    /// between two reads of it.
    pub fn new(body: Incoming, client_body: Duration) -> Source {
        let progress = Arc::new(Progress::default());
        progress.advance();
        let kind = if body.is_end_stream() {
            Kind::Empty
        } else {
            Kind::Stream(Arc::new(Mutex::new(Some(body))))
        };
        Source {
            kind,
            progress,
            client_body,
        }
    }

    /// Reads a small body whole (for replay), within `client_body` per read.
    pub async fn buffer(mut body: Incoming, client_body: Duration) -> Result<Source, ProxyError> {
        use http_body_util::BodyExt;
        let mut all = bytes::BytesMut::new();
        loop {
            match tokio::time::timeout(client_body, body.frame()).await {
                Err(_) => return Err(ProxyError::BodyTimeout),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(ClientFault::of(&e).error()),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        all.extend_from_slice(&data);
                    }
                }
            }
        }
        let progress = Arc::new(Progress::default());
        progress.advance();
        Ok(Source {
            kind: Kind::Buffered(all.freeze()),
            progress,
            client_body,
        })
    }

    /// A body for the next attempt; `None` when the stream was consumed by a
    /// failed attempt and cannot be replayed.
    pub fn body(&self) -> Option<ReqBody> {
        match &self.kind {
            Kind::Empty => Some(ReqBody::Empty),
            Kind::Buffered(b) => Some(ReqBody::Full(Some(b.clone()))),
            Kind::Stream(slot) => {
                let hint = slot.lock().ok()?.as_ref()?.size_hint();
                Some(ReqBody::Waiting {
                    slot: Arc::clone(slot),
                    hint,
                    progress: Arc::clone(&self.progress),
                    timeout: self.client_body,
                })
            }
        }
    }

    /// Can the whole request be sent again after a server saw part of it?
    pub fn replayable(&self) -> bool {
        !matches!(self.kind, Kind::Stream(_))
    }

    /// Does the body still stream from the client (so the server's
    /// response clock must follow its progress)?
    pub fn streams(&self) -> bool {
        matches!(self.kind, Kind::Stream(_))
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
    Full(Option<Bytes>),
    /// Not polled yet: the body is still in the slot the handler can take back.
    Waiting {
        slot: Arc<Mutex<Option<Incoming>>>,
        hint: SizeHint,
        progress: Arc<Progress>,
        timeout: Duration,
    },
    Streaming(Box<Streaming>),
}

/// A client body being read, with its `client_body` timer.
#[derive(Debug)]
pub struct Streaming {
    body: Incoming,
    progress: Arc<Progress>,
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
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.progress.set_fault(ClientFault::of(&e));
                Poll::Ready(Some(Err(BodyError::Client(e))))
            }
            Poll::Ready(None) => {
                self.progress.advance();
                Poll::Ready(None)
            }
            Poll::Pending => {
                self.progress.waiting.store(true, Ordering::Relaxed);
                let timeout = self.timeout;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if !self.armed {
                    timer.as_mut().reset(Instant::now() + timeout);
                    self.armed = true;
                }
                if timer.as_mut().poll(cx).is_ready() {
                    self.progress.set_fault(ClientFault::Slow);
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
        let this = &mut *self;
        if let ReqBody::Waiting {
            slot,
            progress,
            timeout,
            ..
        } = this
        {
            let taken = slot.lock().ok().and_then(|mut g| g.take());
            *this = match taken {
                Some(body) => ReqBody::Streaming(Box::new(Streaming {
                    body,
                    progress: Arc::clone(progress),
                    timeout: *timeout,
                    timer: None,
                    armed: false,
                })),
                None => ReqBody::Empty,
            };
        }
        match this {
            ReqBody::Streaming(s) => s.poll(cx),
            ReqBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            _ => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full(b) => b.is_none(),
            ReqBody::Waiting { .. } => false,
            ReqBody::Streaming(s) => s.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::Waiting { hint, .. } => *hint,
            ReqBody::Streaming(s) => s.body.size_hint(),
        }
    }
}

/// A response body on its way to the client.
#[derive(Debug)]
pub struct ResBody {
    inner: Inner,
    done: Option<Completion>,
}

#[derive(Debug)]
enum Inner {
    Incoming(Incoming),
    Full(Option<Bytes>),
}

impl ResBody {
    pub fn streaming(body: Incoming, done: Completion) -> ResBody {
        ResBody {
            inner: Inner::Incoming(body),
            done: Some(done),
        }
    }

    pub fn full(bytes: Bytes, done: Option<Completion>) -> ResBody {
        ResBody {
            inner: Inner::Full((!bytes.is_empty()).then_some(bytes)),
            done,
        }
    }

    pub fn empty() -> ResBody {
        ResBody::full(Bytes::new(), None)
    }
}

impl Body for ResBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Incoming(body) => Pin::new(body).poll_frame(cx),
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(done)) = (frame.data_ref(), this.done.as_mut()) {
                    done.add_bytes(data.len());
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(done) = this.done.as_mut() {
                    done.mark_aborted();
                }
                this.done = None;
            }
            Poll::Ready(None) => this.done = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Incoming(b) => b.is_end_stream(),
            Inner::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Incoming(b) => b.size_hint(),
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
