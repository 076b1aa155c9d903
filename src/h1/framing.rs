//! How a message's body is delimited (RFC 9112 §6.3), from its parsed head:
//! what the connection reads after a head before the next message starts.

use http::{Method, StatusCode};

use super::{Coding, RequestHead, ResponseHead};

/// Where a body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: the next message starts right after the head.
    None,
    /// Exactly this many bytes (`Content-Length`; may be 0).
    Length(u64),
    /// Chunked: [`super::chunked::Decoder`] finds the end.
    Chunked,
    /// Everything until the server closes the connection (responses only).
    UntilClose,
}

/// A request's body (§6.3 rules 4 to 7) once its head has parsed: the
/// parser refused every coding but `chunked` (§6.3 rule 4 asks for 400,
/// check.rs answers 501), both `Transfer-Encoding` and `Content-Length`,
/// and a bad `Content-Length`, so what remains is plain. A request is never
/// read until close.
pub fn request(head: &RequestHead) -> Framing {
    match (head.facts.coding, head.facts.content_length) {
        (Coding::None, Some(n)) => Framing::Length(n),
        (Coding::None, None) => Framing::None,
        // Only `Chunked` gets past the parser.
        (Coding::Chunked | Coding::ChunkedLast | Coding::Other, _) => Framing::Chunked,
    }
}

/// A response's body, given the method of the request it answers (§6.3
/// rules 1 to 3, 5 and 8): none after `HEAD`, for 1xx (after 101 the
/// connection is a tunnel), 204 and 304; chunked when `chunked` is the
/// final coding; until close for another final coding; else
/// `Content-Length`, else until close. The answer to a successful
/// `CONNECT` (rule 2) never comes: limpet refuses `CONNECT`.
pub fn response(method: &Method, head: &ResponseHead) -> Framing {
    let status = head.status;
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Framing::None;
    }
    match (head.facts.coding, head.facts.content_length) {
        (Coding::Chunked | Coding::ChunkedLast, _) => Framing::Chunked,
        (Coding::Other, _) | (Coding::None, None) => Framing::UntilClose,
        (Coding::None, Some(n)) => Framing::Length(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::h1::{parse_request, parse_response};

    fn req(head: &str) -> Framing {
        let mut h = RequestHead::default();
        parse_request(head.as_bytes(), &Limits::default(), &mut h).unwrap();
        request(&h)
    }

    fn res(method: Method, head: &str) -> Framing {
        let mut h = ResponseHead::default();
        parse_response(head.as_bytes(), &Limits::default(), &mut h).unwrap();
        response(&method, &h)
    }

    #[test]
    fn request_bodies() {
        let rows = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", Framing::None),
            (
                "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                Framing::Length(0),
            ),
            (
                "POST / HTTP/1.0\r\nContent-Length: 12\r\n\r\n",
                Framing::Length(12),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
                Framing::Length(5),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framing::Chunked,
            ),
            (
                "POST / HTTP/1.1\r\ntransfer-encoding:  Chunked \r\n\r\n",
                Framing::Chunked,
            ),
        ];
        for (head, want) in rows {
            assert_eq!(req(head), want, "{head:?}");
        }
    }

    #[test]
    fn response_bodies() {
        use Method as M;
        let rows = [
            (
                M::GET,
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
                Framing::Length(3),
            ),
            (
                M::HEAD,
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
                Framing::None,
            ),
            (
                M::HEAD,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framing::None,
            ),
            (M::GET, "HTTP/1.1 100 Continue\r\n\r\n", Framing::None),
            (
                M::GET,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\n\r\n",
                Framing::None,
            ),
            (
                M::GET,
                "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
                Framing::None,
            ),
            (
                M::GET,
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n",
                Framing::None,
            ),
            (
                M::GET,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framing::Chunked,
            ),
            (
                M::GET,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Framing::Chunked,
            ),
            (
                M::GET,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framing::Chunked,
            ),
            (
                M::GET,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                Framing::UntilClose,
            ),
            (M::GET, "HTTP/1.1 200 OK\r\n\r\n", Framing::UntilClose),
            (M::GET, "HTTP/1.0 200 OK\r\n\r\n", Framing::UntilClose),
            (
                M::POST,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                Framing::Length(0),
            ),
        ];
        for (method, head, want) in rows {
            assert_eq!(res(method.clone(), head), want, "{method} {head:?}");
        }
    }
}
