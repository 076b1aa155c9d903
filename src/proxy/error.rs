//! The responses limpet makes itself, mapped to status codes in one place.
//! Bodies are short and plain, and never name a server or its address.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::body::ResBody;
use super::completion::Completion;

/// Why limpet answers a request itself instead of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// No usable server before any attempt.
    #[error("no server available")]
    NoServer,
    /// Every attempt at a server failed.
    #[error("bad gateway")]
    Unreachable,
    /// The server did not answer within `timeouts.backend_response`.
    #[error("gateway timeout")]
    Timeout,
    /// The request cannot be forwarded as it is.
    #[error("bad request")]
    BadRequest,
    /// The request header is larger than `limits.max_header_bytes`.
    #[error("request header too large")]
    HeaderTooLarge,
}

impl ProxyError {
    pub fn status(self) -> StatusCode {
        match self {
            ProxyError::NoServer => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Unreachable => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest => StatusCode::BAD_REQUEST,
            ProxyError::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    fn body(self) -> &'static str {
        match self {
            ProxyError::NoServer => {
                "503 Service Unavailable: no server is available for this request\n"
            }
            ProxyError::Unreachable => "502 Bad Gateway: the server could not be reached\n",
            ProxyError::Timeout => "504 Gateway Timeout: the server did not answer in time\n",
            ProxyError::BadRequest => "400 Bad Request\n",
            ProxyError::HeaderTooLarge => "431 Request Header Fields Too Large\n",
        }
    }

    /// The response the client gets; `done` is logged when it is sent.
    pub fn into_response(self, mut done: Completion) -> Response<ResBody> {
        let status = self.status();
        done.set_status(status.as_u16());
        let mut res = Response::new(ResBody::full(
            Bytes::from_static(self.body().as_bytes()),
            Some(done),
        ));
        *res.status_mut() = status;
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(self, ProxyError::BadRequest | ProxyError::HeaderTooLarge) {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}
