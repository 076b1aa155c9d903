//! The first step of the data path: requests that are ambiguous or that
//! limpet cannot forward faithfully get their 4xx/5xx here, as HAProxy
//! answers them (RFC 9110, 9112, 9113), before anything is routed:
//!
//! * more than `limits.max_headers` fields, or more than
//!   `limits.max_header_bytes` → 431;
//! * `CONNECT` → 405 (limpet is a reverse proxy, not a forward one);
//! * a request target in neither origin form (`/path`) nor absolute form
//!   (`http://host/path`), except `OPTIONS *` → 400;
//! * `Transfer-Encoding` in HTTP/1.0 → 400; any coding but exactly
//!   `chunked` → 501 (the coding cannot be passed on once limpet has
//!   de-chunked the body);
//! * two `Host` fields, an HTTP/1.1 request without `Host`, a `Host` that is
//!   not a valid authority, or an HTTP/2 `:authority` that disagrees with
//!   `host` → 400.
//!
//! What it returns is the request's authority: the absolute-form target's
//! (which wins over `Host`), else `Host`, else HTTP/2's `:authority`. It is
//! what routes match and what the server receives as `Host`.

use http::header::{self, HeaderValue};
use http::{Method, Request, Version};

use super::error::ProxyError;
use crate::config::Limits;

/// Checks `req`; returns its authority (None for an HTTP/1.0 request
/// without `Host`).
pub fn request<B>(req: &Request<B>, limits: &Limits) -> Result<Option<HeaderValue>, ProxyError> {
    let headers = req.headers();
    if headers.len() > limits.max_headers || header_bytes(headers) > limits.max_header_bytes {
        return Err(ProxyError::HeaderTooLarge);
    }
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    transfer_encoding(req)?;
    let h2 = req.version() == Version::HTTP_2;
    let uri = req.uri();
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest);
    }
    if let Some(h) = host
        && !valid_authority(h.as_bytes())
    {
        return Err(ProxyError::BadRequest);
    }
    if h2 {
        // :authority is the target's authority; a `host` must agree with it.
        let authority = match uri.authority() {
            Some(a) if a.as_str().contains('@') => return Err(ProxyError::BadRequest),
            Some(a) => Some(HeaderValue::from_str(a.as_str()).map_err(|_| ProxyError::BadRequest)?),
            None => None,
        };
        return match (authority, host) {
            (Some(a), Some(h)) if !a.as_bytes().eq_ignore_ascii_case(h.as_bytes()) => {
                Err(ProxyError::BadRequest)
            }
            (Some(a), _) => Ok(Some(a)),
            (None, Some(h)) => Ok(Some(h.clone())),
            (None, None) => Err(ProxyError::BadRequest),
        };
    }
    let target_authority = match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(a)) if !a.as_str().contains('@') => {
            Some(HeaderValue::from_str(a.as_str()).map_err(|_| ProxyError::BadRequest)?)
        }
        (None, None) if uri.path().starts_with('/') => None,
        (None, None) if uri.path() == "*" && req.method() == Method::OPTIONS => None,
        _ => return Err(ProxyError::BadRequest),
    };
    match (target_authority, host) {
        // Absolute form: the target's authority wins over Host (RFC 9112 §3.2.2).
        (Some(a), _) => Ok(Some(a)),
        (None, Some(h)) => Ok(Some(h.clone())),
        (None, None) if req.version() == Version::HTTP_10 => Ok(None),
        (None, None) => Err(ProxyError::BadRequest),
    }
}

/// `host[:port]`: a registered name, IPv4 or bracketed IPv6 address; no
/// user information, nothing empty.
fn valid_authority(v: &[u8]) -> bool {
    if v.is_empty() || v.contains(&b'@') {
        return false;
    }
    let Ok(a) = http::uri::Authority::try_from(v) else {
        return false;
    };
    let host = a.host();
    let port = &a.as_str()[host.len()..];
    !host.is_empty()
        && (port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|p| p.len() <= 5 && p.parse::<u16>().is_ok()))
}

fn transfer_encoding<B>(req: &Request<B>) -> Result<(), ProxyError> {
    let mut codings = req.headers().get_all(header::TRANSFER_ENCODING).iter();
    let Some(first) = codings.next() else {
        return Ok(());
    };
    if req.version() == Version::HTTP_10 {
        return Err(ProxyError::BadRequest);
    }
    let exactly_chunked = codings.next().is_none()
        && first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked");
    if exactly_chunked {
        Ok(())
    } else {
        Err(ProxyError::NotImplemented)
    }
}

/// Size of a request header as it came on the wire (names, values, separators).
fn header_bytes(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(uri).version(version);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    fn check(r: &Request<()>) -> Result<Option<String>, ProxyError> {
        request(r, &Limits::default())
            .map(|h| h.map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()))
    }

    #[test]
    fn hosts_are_checked() {
        let h11 = Version::HTTP_11;
        assert_eq!(
            check(&req(h11, "/", &[("host", "a.example")])),
            Ok(Some("a.example".into()))
        );
        assert_eq!(check(&req(h11, "/", &[])), Err(ProxyError::BadRequest));
        assert_eq!(check(&req(Version::HTTP_10, "/", &[])), Ok(None));
        assert_eq!(
            check(&req(h11, "/", &[("host", "a"), ("host", "b")])),
            Err(ProxyError::BadRequest)
        );
        for bad in ["", "a b", "u@a", "a:x", "a/b"] {
            assert_eq!(
                check(&req(h11, "/", &[("host", bad)])),
                Err(ProxyError::BadRequest),
                "{bad:?}"
            );
        }
        assert_eq!(
            check(&req(h11, "http://b.example:81/x", &[("host", "a")])),
            Ok(Some("b.example:81".into()))
        );
    }

    #[test]
    fn http2_authority_and_host_must_agree() {
        let h2 = Version::HTTP_2;
        assert_eq!(
            check(&req(h2, "https://a.example/", &[])),
            Ok(Some("a.example".into()))
        );
        assert_eq!(
            check(&req(h2, "https://a.example/", &[("host", "A.example")])),
            Ok(Some("a.example".into()))
        );
        assert_eq!(
            check(&req(h2, "https://a.example/", &[("host", "b.example")])),
            Err(ProxyError::BadRequest)
        );
    }

    #[test]
    fn targets_and_codings_are_checked() {
        let h11 = Version::HTTP_11;
        assert_eq!(
            check(&req(h11, "foo", &[("host", "a")])),
            Err(ProxyError::BadRequest)
        );
        assert_eq!(
            check(&req(h11, "ftp://a/", &[("host", "a")])),
            Err(ProxyError::BadRequest)
        );
        let te = |v: &str| req(h11, "/", &[("host", "a"), ("transfer-encoding", v)]);
        assert!(check(&te("chunked")).is_ok());
        assert!(check(&te("Chunked")).is_ok());
        assert_eq!(check(&te("gzip, chunked")), Err(ProxyError::NotImplemented));
        assert_eq!(
            check(&te("identity, chunked")),
            Err(ProxyError::NotImplemented)
        );
        let mut r = te("chunked");
        *r.method_mut() = Method::CONNECT;
        assert_eq!(check(&r), Err(ProxyError::MethodNotAllowed));
    }
}
