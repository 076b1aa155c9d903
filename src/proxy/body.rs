//! Bodies that stream through limpet without being buffered.
//!
//! [`ReqBody`] carries a client's request body to a server; its [`Source`]
//! stays with the handler so a failed attempt can be replaced. Until the
//! first frame is polled a streamed body sits in a shared slot, so a request
//! whose connect failed (the server never saw a byte) takes it back and goes
//! to another server. [`ResBody`] carries a response to the client and owns the
//! request's [`Completion`]: when the body ends or is dropped, the access log
//! line is written and the in-flight counts fall.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::completion::Completion;

/// Where a request's body comes from, kept for as long as the request may
/// still move to another server.
#[derive(Debug)]
pub enum Source {
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
    pub fn new(body: Incoming) -> Source {
        if body.is_end_stream() {
            Source::Empty
        } else {
            Source::Stream(Arc::new(Mutex::new(Some(body))))
        }
    }

    /// A body for the next attempt; `None` when the stream was consumed by a
    /// failed attempt and cannot be replayed.
    pub fn body(&self) -> Option<ReqBody> {
        match self {
            Source::Empty => Some(ReqBody::Empty),
            Source::Buffered(b) => Some(ReqBody::Full(Some(b.clone()))),
            Source::Stream(slot) => {
                let hint = slot.lock().ok()?.as_ref()?.size_hint();
                Some(ReqBody::Waiting {
                    slot: Arc::clone(slot),
                    hint,
                })
            }
        }
    }

    /// Can the whole request be sent again after a server saw part of it?
    pub fn replayable(&self) -> bool {
        !matches!(self, Source::Stream(_))
    }
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
    },
    Streaming(Incoming),
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let ReqBody::Waiting { slot, .. } = this {
            let taken = slot.lock().ok().and_then(|mut g| g.take());
            *this = match taken {
                Some(body) => ReqBody::Streaming(body),
                None => ReqBody::Empty,
            };
        }
        match this {
            ReqBody::Streaming(body) => Pin::new(body).poll_frame(cx),
            ReqBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            _ => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full(b) => b.is_none(),
            ReqBody::Waiting { .. } => false,
            ReqBody::Streaming(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::Waiting { hint, .. } => *hint,
            ReqBody::Streaming(b) => b.size_hint(),
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
