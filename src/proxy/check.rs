//! The first step of the data path: requests that are ambiguous or that
//! limpet cannot forward faithfully get their 4xx/5xx here, as HAProxy
//! answers them (RFC 9110, 9112, 9113), before anything is routed:
//!
//! * more than `limits.max_headers` fields, or more than
//!   `limits.max_header_bytes` → 431 (HTTP/2's cookie crumbs counted as the
//!   one `Cookie` field they are joined into);
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
//! It reads the header once ([`Scan`]), and later steps consult what it
//! found instead of looking headers up again. What it returns also holds
//! the request's authority: the absolute-form target's (which wins over
//! `Host`), else `Host`, else HTTP/2's `:authority`. It is what routes match
//! and what the server receives as `Host`.

use http::header::{self, HeaderValue};
use http::{Method, Request, Version};

use super::error::ProxyError;
use super::headers::Scan;
use crate::config::Limits;

/// Checks `req`; returns its authority (None for an HTTP/1.0 request
/// without `Host`).
pub fn request<B>(req: &Request<B>, limits: &Limits) -> Result<Checked, ProxyError> {
    let headers = req.headers();
    let scan = Scan::of(headers);
    if scan.fields(headers) > limits.max_headers || scan.bytes > limits.max_header_bytes {
        return Err(ProxyError::HeaderTooLarge);
    }
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    if scan.transfer_encoding {
        transfer_encoding(req)?;
    }
    if scan.hosts > 1 {
        return Err(ProxyError::BadRequest);
    }
    let host = if scan.hosts == 1 {
        headers.get(header::HOST)
    } else {
        None
    };
    let authority = authority(req, host)?;
    Ok(Checked { authority, scan })
}

/// What the request check found.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The request's authority (None for an HTTP/1.0 request without `Host`).
    pub authority: Option<HeaderValue>,
    pub scan: Scan,
}

impl Checked {
    /// The authority without its port: what routes match.
    pub fn host(&self) -> Option<&str> {
        self.authority
            .as_ref()
            .and_then(|a| a.to_str().ok())
            .map(super::route::strip_port)
    }
}

/// The request's authority, from its target and its `Host`.
fn authority<B>(
    req: &Request<B>,
    host: Option<&HeaderValue>,
) -> Result<Option<HeaderValue>, ProxyError> {
    let h2 = req.version() == Version::HTTP_2;
    let uri = req.uri();
    if let Some(h) = host
        && !valid_authority(h.as_bytes())
    {
        return Err(ProxyError::BadRequest);
    }
    if h2 {
        // :authority is the target's authority; a `host` must agree with it.
        let authority = match uri.authority() {
            Some(a) if !valid_authority(a.as_str().as_bytes()) => {
                return Err(ProxyError::BadRequest);
            }
            Some(a) => Some(HeaderValue::from_str(a.as_str()).map_err(|_| ProxyError::BadRequest)?),
            None => None,
        };
        let default_port: &[u8] = match uri.scheme_str() {
            Some("http") => b":80",
            _ => b":443",
        };
        return match (authority, host) {
            (Some(a), Some(h)) if !same_authority(a.as_bytes(), h.as_bytes(), default_port) => {
                Err(ProxyError::BadRequest)
            }
            (Some(a), _) => Ok(Some(a)),
            (None, Some(h)) => Ok(Some(h.clone())),
            (None, None) => Err(ProxyError::BadRequest),
        };
    }
    let target_authority = match (uri.scheme_str(), uri.authority()) {
        // Held to Host's rules (no user information, a port that is one),
        // and HTTP/1.1 needs Host even with one (RFC 9112 §3.2).
        (Some("http" | "https"), Some(a))
            if valid_authority(a.as_str().as_bytes())
                && (host.is_some() || req.version() == Version::HTTP_10) =>
        {
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

/// Do two authorities name the same origin, in any case, with the
/// scheme's default port written or not (RFC 9113 §8.3.1, RFC 3986 §6.2.3)?
fn same_authority(a: &[u8], b: &[u8], default_port: &[u8]) -> bool {
    let trim = |v: &[u8]| -> usize {
        if v.len() > default_port.len() && v.ends_with(default_port) {
            v.len() - default_port.len()
        } else {
            v.len()
        }
    };
    a[..trim(a)].eq_ignore_ascii_case(&b[..trim(b)])
}

/// `host[:port]` (RFC 3986 §3.2): a registered name, an IPv4 or a bracketed
/// IPv6 address, an optional numeric port; no user information, nothing
/// empty. Checked in place, without copying the value.
fn valid_authority(v: &[u8]) -> bool {
    let (host, port) = if let Some(rest) = v.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let ip = std::str::from_utf8(&rest[..close])
            .ok()
            .and_then(|t| t.parse::<std::net::Ipv6Addr>().ok());
        if ip.is_none() {
            return false;
        }
        (&rest[..close], &rest[close + 1..])
    } else {
        match v.iter().rposition(|&b| b == b':') {
            Some(i) => (&v[..i], &v[i..]),
            None => (v, &v[v.len()..]),
        }
    };
    let reg_name = |b: &u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(b);
    let port_ok = port.is_empty()
        || port.strip_prefix(b":").is_some_and(|p| {
            !p.is_empty()
                && p.len() <= 5
                && p.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(p).is_ok_and(|t| t.parse::<u16>().is_ok())
        });
    !host.is_empty() && port_ok && (v.first() == Some(&b'[') || host.iter().all(reg_name))
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
        request(r, &Limits::default()).map(|c| {
            c.authority
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        })
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
        // The scheme's default port, written on one side only, is the same
        // origin (RFC 9113 §8.3.1); another port is not.
        for (uri, host) in [
            ("https://a.example/", "a.example:443"),
            ("https://a.example:443/", "a.example"),
            ("http://a.example/", "A.example:80"),
        ] {
            assert!(
                check(&req(h2, uri, &[("host", host)])).is_ok(),
                "{uri} {host}"
            );
        }
        for (uri, host) in [
            ("https://a.example/", "a.example:80"),
            ("http://a.example/", "a.example:443"),
            ("https://a.example:8443/", "a.example"),
            ("https://[::1]/", "[::1]:4430"),
        ] {
            assert_eq!(
                check(&req(h2, uri, &[("host", host)])),
                Err(ProxyError::BadRequest),
                "{uri} {host}"
            );
        }
    }

    #[test]
    fn http2_cookie_crumbs_count_as_one_field_of_their_joined_size() {
        let crumbs: Vec<String> = (0..150).map(|i| format!("c{i}=v")).collect();
        let mut b = Request::builder()
            .uri("https://a.example/")
            .version(Version::HTTP_2);
        for c in &crumbs {
            b = b.header("cookie", c.as_str());
        }
        let r = b.body(()).unwrap();
        let joined = crumbs.join("; ");
        let scan = Scan::of(r.headers());
        assert_eq!(scan.fields(r.headers()), 1);
        assert_eq!(scan.bytes, "cookie".len() + joined.len() + 4);
        assert!(check(&r).is_ok());
        // The joined field is held to max_header_bytes.
        let tight = Limits {
            max_header_bytes: joined.len(),
            ..Limits::default()
        };
        assert_eq!(
            request(&r, &tight).map(|_| ()),
            Err(ProxyError::HeaderTooLarge)
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
