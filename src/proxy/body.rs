//! A response on its way to the client, streamed, never buffered. When
//! [`ResBody`] has been sent whole, the server connection goes back to the
//! worker's idle connections and the request's [`End`] is finished (access
//! log, counters).

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::end::End;
use super::local::Local;
use super::upload::{Progress, ReqBody};

/// The server connection a response came on, to give back to the worker's
/// idle connections once the response has been read whole.
pub struct Back {
    pub local: Rc<Local>,
    pub slot: usize,
    pub sender: SendRequest<ReqBody>,
    /// A streamed request body: the connection is not free before it was
    /// sent whole, though a server may answer first.
    pub request: Option<Rc<Progress>>,
}

/// A response body on its way to the client.
pub struct ResBody {
    inner: Inner,
    /// Dropped unfinished when the client goes away before the body was
    /// sent whole: logged as aborted, and the server connection (`back`) is
    /// not reused.
    end: Option<End>,
    back: Option<Back>,
}

enum Inner {
    Incoming(Incoming),
    Full(Option<Bytes>),
}

impl ResBody {
    /// A server's response body; `back` is its connection (None after an
    /// upgrade: the connection became a tunnel).
    pub fn streaming(body: Incoming, end: End, back: Option<Back>) -> ResBody {
        ResBody {
            inner: Inner::Incoming(body),
            end: Some(end),
            back,
        }
    }

    /// A response limpet made itself.
    pub fn full(bytes: Bytes, end: Option<End>) -> ResBody {
        ResBody {
            inner: Inner::Full((!bytes.is_empty()).then_some(bytes)),
            end,
            back: None,
        }
    }

    /// The response has been sent whole: the connection serves the next
    /// request, and the request is logged and counted.
    fn complete(&mut self) {
        if let Some(b) = self.back.take() {
            // An upload still going after its early answer: the next
            // request would wait for its end, so the connection is let go
            // (it closes once the upload is sent).
            if b.request.as_ref().is_none_or(|p| p.ended()) {
                b.local.clients.checkin(b.slot, b.sender);
            }
        }
        if let Some(end) = self.end.take() {
            end.finish(false);
        }
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
                if let (Some(data), Some(end)) = (frame.data_ref(), this.end.as_mut()) {
                    end.add_bytes(data.len());
                }
                if this.is_end_stream() {
                    this.complete();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.back = None;
                if let Some(end) = this.end.take() {
                    end.finish(true);
                }
            }
            Poll::Ready(None) => this.complete(),
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
