//! The responses limpet makes itself on the HTTP/1 path, written as bytes:
//! the same statuses, headers and bodies as `proxy/error.rs` and
//! `proxy/redirect.rs` give hyper's path, plus the answers to heads that
//! do not parse ([`HeadError`]), which hyper's server gave on that path.

use http::{HeaderValue, StatusCode};

use crate::h1::HeadError;
use crate::proxy::error::ProxyError;

/// A response limpet writes itself.
#[derive(Clone, Copy)]
pub struct Reply<'a> {
    pub status: StatusCode,
    pub body: &'a [u8],
    /// The connection closes after it (`Connection: close`).
    pub close: bool,
    /// Extra field lines, each ending in CRLF.
    pub extra: &'a [u8],
}

impl Reply<'_> {
    /// Appends the response to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let reason = self.status.canonical_reason().unwrap_or("");
        let _ = write!(
            out,
            "HTTP/1.1 {} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncache-control: no-store\r\ncontent-length: {}\r\n",
            self.status.as_u16(),
            self.body.len()
        );
        if self.close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(self.extra);
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(self.body);
    }
}

thread_local! {
    /// The `Date` of this second, made once a second per worker.
    static DATE: std::cell::RefCell<(u64, HeaderValue)> =
        const { std::cell::RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
}

/// The current time as an HTTP date (RFC 9110 §5.6.7).
pub fn date() -> HeaderValue {
    let now = std::time::SystemTime::now();
    let second = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, value)| {
        if *at != second {
            *at = second;
            *value = HeaderValue::from_str(&httpdate::fmt_http_date(now))
                .unwrap_or(HeaderValue::from_static(""));
        }
        value.clone()
    })
}

/// limpet's answer instead of a server's.
pub fn error(e: ProxyError) -> Reply<'static> {
    Reply {
        status: e.status(),
        body: e.body().as_bytes(),
        // The connection's framing may be off (a broken body): never reuse it.
        close: e.is_client_error() || e == ProxyError::NotImplemented,
        extra: if e == ProxyError::MethodNotAllowed {
            b"allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE\r\n"
        } else {
            b""
        },
    }
}

/// The answer to a request head that cannot be taken; the connection
/// closes after it (its framing cannot be trusted).
pub fn bad_head(e: HeadError) -> Reply<'static> {
    let mapped = match e {
        HeadError::TooManyFields | HeadError::TooLarge => Some(ProxyError::HeaderTooLarge),
        HeadError::Coding => Some(ProxyError::NotImplemented),
        HeadError::Connect => Some(ProxyError::MethodNotAllowed),
        HeadError::TargetTooLong | HeadError::Version | HeadError::Status => None,
        HeadError::Syntax(_)
        | HeadError::Method
        | HeadError::Target
        | HeadError::ContentLength
        | HeadError::TransferEncodingHttp10
        | HeadError::BothLengths
        | HeadError::Host => Some(ProxyError::BadRequest),
    };
    let mut reply = match mapped {
        Some(p) => error(p),
        None => Reply {
            status: e.status(),
            body: match e {
                HeadError::TargetTooLong => b"414 URI Too Long\n",
                _ => b"505 HTTP Version Not Supported\n",
            },
            close: true,
            extra: b"",
        },
    };
    reply.close = true;
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_a_whole_response_with_its_length_and_date() {
        let mut out = Vec::new();
        error(ProxyError::NoServer).write(&mut out);
        let text = String::from_utf8(out).unwrap_or_default();
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\ndate: "), "{text}");
        assert!(!text.contains("connection: close"), "{text}");
        let body = "503 Service Unavailable: no server is available for this request\n";
        assert!(text.ends_with(&format!("\r\n\r\n{body}")), "{text}");
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
    }

    #[test]
    fn a_bad_head_closes_the_connection() {
        let mut out = Vec::new();
        bad_head(HeadError::Host).write(&mut out);
        let text = String::from_utf8(out).unwrap_or_default();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(text.contains("connection: close\r\n"));
        let mut out = Vec::new();
        bad_head(HeadError::Connect).write(&mut out);
        assert!(
            String::from_utf8(out)
                .unwrap_or_default()
                .contains("allow: GET")
        );
    }
}
