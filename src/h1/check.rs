//! The rules of `proxy/check.rs` that remain for an HTTP/1 request once its
//! head has parsed, decided from the head alone. The parser already
//! refused what check.rs refuses for the head's size, its transfer codings
//! and a target in no valid form; what is left is the method and the
//! authority:
//!
//! * `CONNECT` → 405;
//! * `*` as the target of anything but `OPTIONS` → 400;
//! * two `Host` fields, an HTTP/1.1 request without `Host` (even with an
//!   absolute-form target, RFC 9112 §3.2), or a `Host` that is not a valid
//!   authority → 400.

use http::{Method, Version};

use super::target::{Form, is_authority};
use super::{HeadError, RequestHead, Span};

/// Checks a parsed request head (parsed from `buf`); returns where its
/// authority is: the absolute-form target's (which wins over `Host`), else
/// `Host`'s value, else None (an HTTP/1.0 request without `Host`).
pub fn request(head: &RequestHead, buf: &[u8]) -> Result<Option<Span>, HeadError> {
    if head.method == Method::CONNECT {
        return Err(HeadError::Connect);
    }
    let facts = &head.facts;
    if facts.hosts > 1 {
        return Err(HeadError::Host);
    }
    if let Some(host) = facts.host
        && !is_authority(host.get(buf))
    {
        return Err(HeadError::Host);
    }
    let http10 = head.version == Version::HTTP_10;
    match head.form {
        // The target's authority was held to Host's rules by the parser.
        Form::Absolute { authority, .. } if facts.host.is_some() || http10 => Ok(Some(authority)),
        Form::Asterisk if head.method != Method::OPTIONS => Err(HeadError::Target),
        Form::Origin | Form::Asterisk => match facts.host {
            Some(host) => Ok(Some(host)),
            None if http10 => Ok(None),
            None => Err(HeadError::Host),
        },
        Form::Absolute { .. } | Form::Authority => Err(HeadError::Host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::h1::{Parsed, parse_request};

    /// The authority of `req`, or the status it gets.
    fn check(req: &str) -> Result<Option<String>, u16> {
        let mut head = RequestHead::default();
        let buf = req.as_bytes();
        match parse_request(buf, &Limits::default(), &mut head) {
            Ok(Parsed::Complete) => {}
            Ok(Parsed::Partial) => panic!("partial: {req:?}"),
            Err(e) => return Err(e.status().as_u16()),
        }
        request(&head, buf)
            .map(|a| a.map(|a| String::from_utf8_lossy(a.get(buf)).into_owned()))
            .map_err(|e| e.status().as_u16())
    }

    #[test]
    fn the_rules_of_proxy_check_rs_for_http1() {
        let rows: &[(&str, Result<Option<&str>, u16>)] = &[
            (
                "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
                Ok(Some("a.example")),
            ),
            ("GET / HTTP/1.1\r\n\r\n", Err(400)),
            ("GET / HTTP/1.0\r\n\r\n", Ok(None)),
            ("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost:\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a:x\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nHost: a%20b\r\n\r\n", Ok(Some("a%20b"))),
            (
                "GET http://b.example:81/x HTTP/1.1\r\nHost: a\r\n\r\n",
                Ok(Some("b.example:81")),
            ),
            ("GET http://b.example/ HTTP/1.1\r\n\r\n", Err(400)),
            (
                "GET http://b.example/ HTTP/1.0\r\n\r\n",
                Ok(Some("b.example")),
            ),
            (
                "GET http://b.example/ HTTP/1.1\r\nHost: a b\r\n\r\n",
                Err(400),
            ),
            ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", Ok(Some("a"))),
            ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
            ("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", Err(405)),
            ("GET foo HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
            ("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        ];
        for (req, want) in rows {
            let want = want.map(|a| a.map(str::to_owned));
            assert_eq!(check(req), want, "{req:?}");
        }
    }
}
