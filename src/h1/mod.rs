//! limpet's own HTTP/1.1 codec for the proxied traffic: pure code over the
//! bytes a connection received, no I/O. A request head is parsed once
//! ([`parse_request`], on `httparse`, the parser hyper uses) into offsets
//! over those bytes ([`Span`]s), with the facts of one pass over its fields
//! ([`Facts`]), so the connection can decide and then write the same bytes
//! on with a few edits spliced in; a response head likewise
//! ([`parse_response`]). [`check::request`] applies the rules of
//! `proxy/check.rs` to a parsed head, [`framing`] says how a body is
//! delimited (RFC 9112 §6.3) and [`chunked`] decodes a chunked body in
//! place and writes chunk framing.
//!
//! Strict on input: what the parser accepts is what hyper's server accepts
//! followed by `proxy::check::request`, except where it is stricter on
//! purpose; the differential test (`tests/it/h1_differential/`) holds the
//! two to that and lists every difference.

pub mod check;
pub mod chunked;
pub mod edit;
pub mod fields;
pub mod framing;
pub mod head;
pub mod target;

pub use fields::{Coding, Connection, Facts, Field, Name};
pub use framing::Framing;
pub use head::{Parsed, RequestHead, ResponseHead, parse_request, parse_response};
pub use target::Form;

use http::StatusCode;

/// A range of the received bytes: where a part of a head lies, so nothing
/// is copied out of the buffer it arrived in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The bytes this span covers in `buf` (empty if `buf` is not the
    /// buffer it was taken from and is too short).
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// `start..end` of a head, which is never longer than
    /// `limits.max_header_bytes` (at most 16 MiB): it fits.
    fn of(start: usize, end: usize) -> Span {
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        }
    }
}

/// Why a head cannot be taken as it is, and so the status limpet answers a
/// client's request with ([`HeadError::status`]). A server's response head
/// that fails to parse is a bad gateway (502) whatever the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The bytes are not an HTTP/1 head: a bad token, a control byte, a bare
    /// CR, obs-fold, a space before a colon, ... (`httparse`'s reason; never
    /// `TooManyHeaders`, which is [`HeadError::TooManyFields`]).
    #[error("malformed head: {0}")]
    Syntax(httparse::Error),
    /// The method is not a token `http::Method` takes.
    #[error("malformed method")]
    Method,
    /// A request target in no valid form, or with a fragment.
    #[error("bad request target")]
    Target,
    /// A request target longer than 65534 bytes (what `http::Uri` holds).
    #[error("request target too long")]
    TargetTooLong,
    /// A `Content-Length` that is not one decimal number, or two that differ.
    #[error("invalid Content-Length")]
    ContentLength,
    /// `Transfer-Encoding` in an HTTP/1.0 message (RFC 9112 §6.1).
    #[error("Transfer-Encoding in HTTP/1.0")]
    TransferEncodingHttp10,
    /// Both `Transfer-Encoding` and `Content-Length` (RFC 9112 §6.1 lets a
    /// server refuse it; nginx does, and it leaves nothing to smuggle).
    #[error("both Transfer-Encoding and Content-Length")]
    BothLengths,
    /// A request's transfer coding other than exactly `chunked`.
    #[error("transfer coding not implemented")]
    Coding,
    /// More fields than `limits.max_headers`.
    #[error("too many header fields")]
    TooManyFields,
    /// A head longer than `limits.max_header_bytes`.
    #[error("head too large")]
    TooLarge,
    /// A well-formed HTTP version other than 1.0 and 1.1.
    #[error("HTTP version not supported")]
    Version,
    /// A status code outside 100..=999 in a response.
    #[error("malformed status code")]
    Status,
    /// `CONNECT`: limpet is a reverse proxy and tunnels nothing on request.
    #[error("CONNECT not allowed")]
    Connect,
    /// Two `Host` fields, none in HTTP/1.1, or one that is not an authority.
    #[error("bad Host")]
    Host,
}

impl HeadError {
    /// The status a client's request gets for it (as `proxy/check.rs` and
    /// hyper answer them, but 501 for every coding but `chunked` and 505
    /// for an unsupported version).
    pub fn status(self) -> StatusCode {
        match self {
            HeadError::TooManyFields | HeadError::TooLarge => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            HeadError::TargetTooLong => StatusCode::URI_TOO_LONG,
            HeadError::Coding => StatusCode::NOT_IMPLEMENTED,
            HeadError::Version => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            HeadError::Connect => StatusCode::METHOD_NOT_ALLOWED,
            HeadError::Status => StatusCode::BAD_GATEWAY,
            HeadError::Syntax(_)
            | HeadError::Method
            | HeadError::Target
            | HeadError::ContentLength
            | HeadError::TransferEncodingHttp10
            | HeadError::BothLengths
            | HeadError::Host => StatusCode::BAD_REQUEST,
        }
    }
}
