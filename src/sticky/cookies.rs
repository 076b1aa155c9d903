//! Zero-copy reading of what carries a session: every `Cookie` header (HTTP/2
//! splits cookies over several fields), the `;jsessionid=` path parameter of
//! URL-rewriting clients, and the backend's `Set-Cookie` headers. Cookies
//! are bytes, not text: a header with non-ASCII bytes is read and forwarded
//! like any other.

use http::header::{COOKIE, SET_COOKIE};

use crate::fields::Fields;

/// Every value of cookie `name` in the request, in order, as bytes: a
/// cookie header may carry any byte but controls, and limpet neither
/// decodes nor drops what it does not understand. Quotes are removed.
pub fn request_values<'a>(
    headers: &'a impl Fields,
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .all(&COOKIE)
        .flat_map(|v| v.split(|&b| b == b';'))
        .filter_map(move |pair| {
            let (n, v) = split_pair(pair)?;
            (n == name.as_bytes()).then(|| unquote(v))
        })
}

/// `name=value` with surrounding spaces trimmed from both.
fn split_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = pair.iter().position(|&b| b == b'=')?;
    Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()))
}

fn unquote(v: &[u8]) -> &[u8] {
    v.strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(v)
}

/// The value of the `;name=` path parameter (name matched ignoring case), as
/// in `/cart;jsessionid=8A3F.node2?x=1`. Ends at `;`, `/`, `?` or the end.
pub fn path_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = path;
    while let Some(i) = rest.find(';') {
        rest = &rest[i + 1..];
        if let Some((n, v)) = rest.split_once('=')
            && n.eq_ignore_ascii_case(name)
        {
            let end = v.find([';', '/', '?']).unwrap_or(v.len());
            let value = &v[..end];
            return (!value.is_empty()).then_some(value);
        }
    }
    None
}

/// Removes cookie `name` from the request's `Cookie` headers, keeping every
/// other cookie byte for byte; a header left empty is dropped. Returns
/// whether anything was removed.
pub fn strip(headers: &mut impl Fields, name: &str) -> bool {
    if request_values(headers, name).next().is_none() {
        return false;
    }
    let one = {
        let mut fields = headers.all(&COOKIE);
        match (fields.next(), fields.next()) {
            (Some(only), None) => Some(without(only, name)),
            _ => None,
        }
    };
    if let Some(kept) = one {
        // The usual case, one Cookie field: at most one exact-size copy.
        headers.replace(COOKIE, kept);
        return true;
    }
    let kept: Vec<http::HeaderValue> = headers
        .all(&COOKIE)
        .filter_map(|v| without(v, name))
        .collect();
    headers.replace(COOKIE, kept);
    true
}

/// A `Cookie` field without cookie `name`, every other pair kept byte for
/// byte; None when nothing is left.
fn without(field: &[u8], name: &str) -> Option<http::HeaderValue> {
    let kept = || {
        field
            .split(|&b| b == b';')
            .map(<[u8]>::trim_ascii)
            .filter(|pair| {
                !pair.is_empty() && split_pair(pair).is_none_or(|(n, _)| n != name.as_bytes())
            })
    };
    let len: usize = kept().map(|p| p.len() + 2).sum::<usize>().checked_sub(2)?;
    let mut out = Vec::with_capacity(len);
    for pair in kept() {
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(pair);
    }
    http::HeaderValue::from_maybe_shared(bytes::Bytes::from(out)).ok()
}

/// What a backend's `Set-Cookie` says about cookie `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetCookie<'a> {
    /// The cookie is set to this value.
    Set(&'a [u8]),
    /// The cookie is deleted (`Max-Age=0` or less, or `Expires` in the past).
    Deleted(&'a [u8]),
}

/// The backend's `Set-Cookie` headers for cookie `name`, in order.
pub fn response_values<'a>(
    headers: &'a impl Fields,
    name: &'a str,
) -> impl Iterator<Item = SetCookie<'a>> + 'a {
    headers
        .all(&SET_COOKIE)
        .filter_map(move |line| parse_set_cookie(line, name))
}

fn parse_set_cookie<'a>(line: &'a [u8], name: &str) -> Option<SetCookie<'a>> {
    let mut parts = line.split(|&b| b == b';');
    let (n, v) = split_pair(parts.next()?)?;
    if n != name.as_bytes() {
        return None;
    }
    let value = unquote(v);
    // RFC 6265 §5.3: a valid `Max-Age` wins over `Expires`, and of each
    // the last one counts.
    let mut max_age = None;
    let mut expires_past = false;
    for attr in parts {
        let (k, v) = split_pair(attr).unwrap_or((attr.trim_ascii(), b""));
        if k.eq_ignore_ascii_case(b"max-age") {
            if let Some(age) = std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
            {
                max_age = Some(age);
            }
        } else if k.eq_ignore_ascii_case(b"expires") {
            expires_past = expired(v);
        }
    }
    let deleted = value.is_empty() || max_age.map_or(expires_past, |age| age <= 0);
    Some(if deleted {
        SetCookie::Deleted(value)
    } else {
        SetCookie::Set(value)
    })
}

/// Is an `Expires` date in the past? Unparseable dates are not. Read by
/// the cookie crate, which takes the dashed dates servers still send
/// (`Thu, 01-Jan-1970 00:00:10 GMT`) as well as HTTP dates.
fn expired(date: &[u8]) -> bool {
    let Ok(date) = std::str::from_utf8(date) else {
        return false;
    };
    let probe = format!("x=y; Expires={date}");
    let Ok(c) = cookie::Cookie::parse(probe) else {
        return false;
    };
    c.expires_datetime()
        .is_some_and(|t| t < cookie::time::OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn cookies(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                COOKIE,
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
        }
        h
    }

    #[test]
    fn values_come_from_every_cookie_header_in_order() {
        let h = cookies(&["a=1; JSESSIONID=X.node1", "JSESSIONID=\"Y.node2\"; b=2"]);
        let v: Vec<&[u8]> = request_values(&h, "JSESSIONID").collect();
        assert_eq!(v, [&b"X.node1"[..], b"Y.node2"]);
        assert_eq!(request_values(&h, "jsessionid").count(), 0);
    }

    #[test]
    fn path_parameters_are_found_ignoring_case() {
        assert_eq!(
            path_param("/cart;jsessionid=ABC.node2", "jsessionid"),
            Some("ABC.node2")
        );
        assert_eq!(
            path_param("/a;JSESSIONID=ABC.n1;x=y/b", "jsessionid"),
            Some("ABC.n1")
        );
        assert_eq!(
            path_param("/a;other=1;jsessionid=Z", "jsessionid"),
            Some("Z")
        );
        assert_eq!(path_param("/a;jsessionid=", "jsessionid"), None);
        assert_eq!(path_param("/a/b", "jsessionid"), None);
    }

    #[test]
    fn strip_removes_only_the_named_cookie() {
        let mut h = cookies(&["SERVERID=node1; a=1", "SERVERID=x"]);
        assert!(strip(&mut h, "SERVERID"));
        let all: Vec<&str> = h
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(all, ["a=1"]);
        assert!(!strip(&mut h, "SERVERID"));
    }

    #[test]
    fn set_cookie_deletion_is_recognised() {
        assert_eq!(
            parse_set_cookie(b"JSESSIONID=A.n1; Path=/; HttpOnly", "JSESSIONID"),
            Some(SetCookie::Set(&b"A.n1"[..]))
        );
        assert_eq!(
            parse_set_cookie(b"JSESSIONID=A.n1; Max-Age=0", "JSESSIONID"),
            Some(SetCookie::Deleted(&b"A.n1"[..]))
        );
        assert_eq!(
            parse_set_cookie(
                b"JSESSIONID=A; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                "JSESSIONID"
            ),
            Some(SetCookie::Deleted(&b"A"[..]))
        );
        // Tomcat's and Jetty's form, dashes and a four-digit year: not an
        // HTTP date (httpdate refuses it), but a cookie date.
        assert_eq!(
            parse_set_cookie(
                b"JSESSIONID=A; Expires=Thu, 01-Jan-1970 00:00:10 GMT",
                "JSESSIONID"
            ),
            Some(SetCookie::Deleted(&b"A"[..]))
        );
        assert_eq!(
            parse_set_cookie(
                b"JSESSIONID=A; Expires=Fri, 01 Jan 2100 00:00:00 GMT",
                "JSESSIONID"
            ),
            Some(SetCookie::Set(&b"A"[..]))
        );
        assert_eq!(parse_set_cookie(b"other=A", "JSESSIONID"), None);
        // Max-Age wins over Expires (RFC 6265 §5.3): a server whose clock
        // is behind still sets a live session; the last Max-Age counts.
        assert_eq!(
            parse_set_cookie(
                b"JSESSIONID=A; Max-Age=3600; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                "JSESSIONID"
            ),
            Some(SetCookie::Set(&b"A"[..]))
        );
        assert_eq!(
            parse_set_cookie(
                b"JSESSIONID=A; Max-Age=3600; Expires=Fri, 01 Jan 2100 00:00:00 GMT; Max-Age=0",
                "JSESSIONID"
            ),
            Some(SetCookie::Deleted(&b"A"[..]))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_cookie_headers_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..200), name in "[A-Za-z]{1,10}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&raw) {
                h.append(COOKIE, v.clone());
                h.append(SET_COOKIE, v);
            }
            let _ = request_values(&h, &name).count();
            let _ = response_values(&h, &name).count();
            strip(&mut h, &name);
        }

        #[test]
        fn arbitrary_paths_never_panic(path in ".{0,200}") {
            if let Some(v) = path_param(&path, "jsessionid") {
                prop_assert!(!v.is_empty() && !v.contains([';', '/', '?']));
            }
        }

        /// Stripping our cookie keeps every other pair, byte for byte and
        /// in order, whatever bytes the values hold.
        #[test]
        fn strip_keeps_every_other_cookie_byte_for_byte(
            pairs in proptest::collection::vec(
                (prop_oneof![Just("SERVERID".to_owned()), "[a-z]{1,8}"],
                 proptest::collection::vec(0x21u8..=0xff, 0..12)
                    .prop_filter("no separators", |v| !v.contains(&b';') && !v.contains(&0x7f))),
                1..8,
            )
        ) {
            let mut line = Vec::new();
            for (i, (n, v)) in pairs.iter().enumerate() {
                if i > 0 { line.extend_from_slice(b"; "); }
                line.extend_from_slice(n.as_bytes());
                line.push(b'=');
                line.extend_from_slice(v);
            }
            let mut h = HeaderMap::new();
            h.append(COOKIE, HeaderValue::from_bytes(&line).unwrap());
            strip(&mut h, "SERVERID");
            let kept: Vec<Vec<u8>> = pairs
                .iter()
                .filter(|(n, _)| n != "SERVERID")
                .map(|(n, v)| [n.as_bytes(), b"=", v].concat())
                .collect();
            let got: Vec<Vec<u8>> = h
                .get_all(COOKIE)
                .iter()
                .flat_map(|v| v.as_bytes().split(|&b| b == b';').map(|p| p.trim_ascii().to_vec()).collect::<Vec<_>>())
                .collect();
            prop_assert_eq!(got, kept);
        }
    }
}
