//! What the admin endpoint refuses before it routes a request, because a
//! web page the operator opens could make the browser send it:
//!
//! * a `Host` that is not an IP literal, `localhost` or a name in
//!   `admin.hosts` (DNS rebinding: a page whose name has come to resolve to
//!   127.0.0.1 is same-origin with the admin endpoint and could read it);
//! * a state-changing request whose `Origin` is not the endpoint's own
//!   (`http://` and the `Host` received) or whose `Sec-Fetch-Site` is
//!   `cross-site` (a form, or a `fetch` with `Content-Type: text/plain`,
//!   needs no preflight).
//!
//! curl and scripts send neither `Origin` nor `Sec-Fetch-Site`, and are
//! served. Both refusals are `403`.
//!
//! Before those, the request is held to the proxy listeners' rules
//! ([`crate::proxy::check`]: two `Host` fields, or none in HTTP/1.1, are
//! 400), and two `Authorization` fields are 400 too: which one would count?

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::proxy::error::ProxyError;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the Host is not an IP address, localhost or a name in `admin.hosts`")]
    Host,
    #[error("a state-changing request from another site (Origin or Sec-Fetch-Site)")]
    CrossSite,
    #[error("two Authorization fields")]
    TwoAuthorizations,
    /// What the proxy listeners refuse too.
    #[error("{0}")]
    Malformed(ProxyError),
}

impl Refused {
    pub fn status(self) -> StatusCode {
        match self {
            Refused::Host | Refused::CrossSite => StatusCode::FORBIDDEN,
            Refused::TwoAuthorizations => StatusCode::BAD_REQUEST,
            Refused::Malformed(e) => e.status(),
        }
    }
}

/// The token of `Authorization: Bearer <token>`, the scheme in any case
/// (RFC 9110 §11.1); `None` without the field or with another scheme.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&[u8]>, Refused> {
    let mut fields = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(field), None) = (fields.next(), fields.next()) else {
        return match headers.contains_key(header::AUTHORIZATION) {
            true => Err(Refused::TwoAuthorizations),
            false => Ok(None),
        };
    };
    let v = field.as_bytes();
    let token = v
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
        .and_then(|_| v.get(7..))
        .map(|rest| rest.trim_ascii_start());
    Ok(token)
}

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Is `authority` (the request's `Host`, or its absolute target's; none
/// for HTTP/1.0 without `Host`) one the endpoint answers to? `names` are
/// lower case.
pub fn host(authority: Option<&HeaderValue>, names: &[String]) -> Result<(), Refused> {
    let Some(authority) = authority else {
        return Ok(());
    };
    let host = authority
        .to_str()
        .map(crate::proxy::route::strip_port)
        .map_err(|_| Refused::Host)?;
    let known = host.parse::<std::net::IpAddr>().is_ok()
        || host.eq_ignore_ascii_case("localhost")
        || names.iter().any(|n| n.eq_ignore_ascii_case(host));
    if known { Ok(()) } else { Err(Refused::Host) }
}

/// Does a state-changing request come from the endpoint's own origin, or
/// from no browser page at all?
pub fn same_origin(headers: &HeaderMap, authority: Option<&HeaderValue>) -> Result<(), Refused> {
    let cross_site = headers
        .get_all(SEC_FETCH_SITE)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    let foreign = |origin: &HeaderValue| {
        let own = origin.as_bytes().strip_prefix(b"http://");
        !own.zip(authority)
            .is_some_and(|(o, a)| o.eq_ignore_ascii_case(a.as_bytes()))
    };
    if cross_site || headers.get_all(header::ORIGIN).iter().any(foreign) {
        return Err(Refused::CrossSite);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn ip_literals_localhost_and_listed_names_are_answered() {
        let names = ["ops.example.net".to_owned()];
        for ok in [
            "127.0.0.1:9090",
            "10.1.2.3",
            "[::1]:9090",
            "[fe80::1]",
            "LocalHost:9090",
            "OPS.example.net:9090",
        ] {
            assert_eq!(host(Some(&v(ok)), &names), Ok(()), "{ok}");
        }
        assert_eq!(host(None, &names), Ok(()));
        for refused in [
            "evil.example",
            "evil.example:9090",
            "localhost.evil.example",
            "ops.example.net.evil.example",
            "127.0.0.1.nip.io:9090",
            "::1",
        ] {
            assert_eq!(
                host(Some(&v(refused)), &names),
                Err(Refused::Host),
                "{refused}"
            );
        }
    }

    #[test]
    fn bearer_is_taken_in_any_case_and_only_once() {
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for val in values {
                h.append(header::AUTHORIZATION, v(val));
            }
            bearer(&h).map(|t| t.map(<[u8]>::to_vec))
        };
        assert_eq!(with(&[]), Ok(None));
        for ok in ["Bearer tok", "bearer tok", "BEARER tok", "bEaReR   tok"] {
            assert_eq!(with(&[ok]), Ok(Some(b"tok".to_vec())), "{ok}");
        }
        assert_eq!(with(&["Basic dG9rOg=="]), Ok(None));
        assert_eq!(with(&["Bearertok"]), Ok(None));
        assert_eq!(
            with(&["Bearer tok", "Bearer tok"]),
            Err(Refused::TwoAuthorizations)
        );
    }

    #[test]
    fn only_the_own_origin_or_none_may_change_state() {
        let own = v("127.0.0.1:9090");
        let with = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, val) in pairs {
                h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v(val));
            }
            same_origin(&h, Some(&own))
        };
        assert_eq!(with(&[]), Ok(()));
        assert_eq!(with(&[("origin", "http://127.0.0.1:9090")]), Ok(()));
        assert_eq!(
            with(&[
                ("origin", "http://127.0.0.1:9090"),
                ("sec-fetch-site", "same-origin")
            ]),
            Ok(())
        );
        for refused in [
            &[("origin", "https://evil.example")][..],
            &[("origin", "null")],
            &[("origin", "https://127.0.0.1:9090")],
            &[("origin", "http://127.0.0.1:9091")],
            &[
                ("origin", "http://127.0.0.1:9090"),
                ("origin", "http://evil.example"),
            ],
            &[("sec-fetch-site", "cross-site")],
            &[
                ("origin", "http://127.0.0.1:9090"),
                ("sec-fetch-site", "Cross-Site"),
            ],
        ] {
            assert_eq!(with(refused), Err(Refused::CrossSite), "{refused:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, v("http://127.0.0.1:9090"));
        assert_eq!(same_origin(&h, None), Err(Refused::CrossSite));
    }
}
