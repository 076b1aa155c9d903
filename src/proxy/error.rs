//! The responses limpet makes itself, mapped to status codes in one place.
//! Bodies are short and plain, and never name a server or its address.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::body::ResBody;
use super::end::End;
use super::upload::ClientFault;
use crate::decision::NoServer;

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
    /// The request header is larger than `limits.max_header_bytes` or has
    /// more than `limits.max_headers` fields.
    #[error("request header too large")]
    HeaderTooLarge,
    /// `CONNECT`: limpet is a reverse proxy and tunnels nothing on request.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A transfer coding other than `chunked`.
    #[error("transfer coding not implemented")]
    NotImplemented,
    /// The client paused longer than `timeouts.client_body` while sending
    /// its request body.
    #[error("request body not received in time")]
    BodyTimeout,
    /// The client went away while sending its request body; the answer is
    /// never read, and the access log says 499 as nginx does.
    #[error("client closed the request")]
    ClientGone,
    /// `strict_sni`: the request's `Host` is not among the names of the
    /// certificate its TLS connection negotiated (RFC 9110 §15.5.20).
    #[error("misdirected request")]
    Misdirected,
    /// limpet itself ran out of file descriptors, memory or ports to
    /// connect with: not the server's fault (503).
    #[error("limpet is out of resources")]
    Exhausted,
}

impl ProxyError {
    pub fn status(self) -> StatusCode {
        match self {
            ProxyError::NoServer => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Unreachable => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest => StatusCode::BAD_REQUEST,
            ProxyError::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ProxyError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::ClientGone => StatusCode::BAD_REQUEST,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::Exhausted => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The status the access log and the metrics record: 499 for a client
    /// that went away (nginx's convention), else the status sent.
    pub fn logged_status(self) -> u16 {
        match self {
            ProxyError::ClientGone => 499,
            e => e.status().as_u16(),
        }
    }

    /// Did the client cause it (4xx), as opposed to a server or limpet?
    pub fn is_client_error(self) -> bool {
        self.logged_status() < 500
    }

    pub fn body(self) -> &'static str {
        match self {
            ProxyError::NoServer => {
                "503 Service Unavailable: no server is available for this request\n"
            }
            ProxyError::Unreachable => "502 Bad Gateway: the server could not be reached\n",
            ProxyError::Timeout => "504 Gateway Timeout: the server did not answer in time\n",
            ProxyError::BadRequest => "400 Bad Request\n",
            ProxyError::HeaderTooLarge => "431 Request Header Fields Too Large\n",
            ProxyError::MethodNotAllowed => "405 Method Not Allowed\n",
            ProxyError::NotImplemented => "501 Not Implemented: unsupported transfer coding\n",
            ProxyError::BodyTimeout => "408 Request Timeout: request body not received in time\n",
            ProxyError::ClientGone => "400 Bad Request\n",
            ProxyError::Misdirected => {
                "421 Misdirected Request: this connection's certificate does not name the host\n"
            }
            ProxyError::Exhausted => "503 Service Unavailable: the balancer is overloaded\n",
        }
    }

    /// The response the client gets; `end` is finished when it is sent.
    pub fn into_response(self, mut end: End) -> Response<ResBody> {
        let status = self.status();
        end.set_status(self.logged_status());
        let mut res = Response::new(ResBody::full(
            Bytes::from_static(self.body().as_bytes()),
            Some(end),
        ));
        *res.status_mut() = status;
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.is_client_error() || self == ProxyError::NotImplemented {
            // The connection's framing may be off (a broken body): never reuse it.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self == ProxyError::MethodNotAllowed {
            h.insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE"),
            );
        }
        res
    }
}

impl From<NoServer> for ProxyError {
    /// 503 when no server could be tried, 502 when the ones tried failed.
    fn from(n: NoServer) -> ProxyError {
        match n {
            NoServer::NoneUsable | NoServer::AffineDown => ProxyError::NoServer,
            NoServer::AllFailed | NoServer::AffineFailed => ProxyError::Unreachable,
        }
    }
}

impl From<ClientFault> for ProxyError {
    fn from(fault: ClientFault) -> ProxyError {
        match fault {
            ClientFault::Malformed => ProxyError::BadRequest,
            ClientFault::Gone => ProxyError::ClientGone,
            ClientFault::Slow => ProxyError::BodyTimeout,
        }
    }
}
