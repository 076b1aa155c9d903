//! Zero-copy reading of what carries a session: every `Cookie` header (HTTP/2
//! splits cookies over several fields), the `;jsessionid=` path parameter of
//! URL-rewriting clients, and the backend's `Set-Cookie` headers.

use http::HeaderMap;
use http::header::{COOKIE, SET_COOKIE};

/// Every value of cookie `name` in the request, in order. Values may be
/// quoted; the quotes are removed. Headers that are not valid text are skipped.
pub fn request_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (n, v) = pair.split_once('=')?;
            (n.trim() == name).then(|| unquote(v.trim()))
        })
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
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

/// Removes cookie `name` from the request's `Cookie` headers; a header left
/// empty is dropped. Returns whether anything was removed.
pub fn strip(headers: &mut HeaderMap, name: &str) -> bool {
    if request_values(headers, name).next().is_none() {
        return false;
    }
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .map(str::trim)
                .filter(|pair| {
                    pair.split_once('=').is_none_or(|(n, _)| n.trim() != name) && !pair.is_empty()
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|v| !v.is_empty())
        .collect();
    headers.remove(COOKIE);
    for v in kept {
        if let Ok(v) = http::HeaderValue::from_str(&v) {
            headers.append(COOKIE, v);
        }
    }
    true
}

/// What a backend's `Set-Cookie` says about cookie `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetCookie<'a> {
    /// The cookie is set to this value.
    Set(&'a str),
    /// The cookie is deleted (`Max-Age=0` or less, or `Expires` in the past).
    Deleted(&'a str),
}

/// The backend's `Set-Cookie` headers for cookie `name`, in order.
pub fn response_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = SetCookie<'a>> + 'a {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(move |line| parse_set_cookie(line, name))
}

fn parse_set_cookie<'a>(line: &'a str, name: &str) -> Option<SetCookie<'a>> {
    let mut parts = line.split(';');
    let (n, v) = parts.next()?.split_once('=')?;
    if n.trim() != name {
        return None;
    }
    let value = unquote(v.trim());
    let mut deleted = value.is_empty();
    for attr in parts {
        let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
        let k = k.trim();
        if k.eq_ignore_ascii_case("max-age") {
            if v.trim().parse::<i64>().is_ok_and(|age| age <= 0) {
                deleted = true;
            }
        } else if k.eq_ignore_ascii_case("expires") && expired(v.trim()) {
            deleted = true;
        }
    }
    Some(if deleted {
        SetCookie::Deleted(value)
    } else {
        SetCookie::Set(value)
    })
}

/// Is an `Expires` date in the past? Unparseable dates are not.
fn expired(date: &str) -> bool {
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
        let v: Vec<&str> = request_values(&h, "JSESSIONID").collect();
        assert_eq!(v, ["X.node1", "Y.node2"]);
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
            parse_set_cookie("JSESSIONID=A.n1; Path=/; HttpOnly", "JSESSIONID"),
            Some(SetCookie::Set("A.n1"))
        );
        assert_eq!(
            parse_set_cookie("JSESSIONID=A.n1; Max-Age=0", "JSESSIONID"),
            Some(SetCookie::Deleted("A.n1"))
        );
        assert_eq!(
            parse_set_cookie(
                "JSESSIONID=A; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                "JSESSIONID"
            ),
            Some(SetCookie::Deleted("A"))
        );
        assert_eq!(
            parse_set_cookie(
                "JSESSIONID=A; Expires=Fri, 01 Jan 2100 00:00:00 GMT",
                "JSESSIONID"
            ),
            Some(SetCookie::Set("A"))
        );
        assert_eq!(parse_set_cookie("other=A", "JSESSIONID"), None);
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
            let _ = path_param(&path, "jsessionid");
        }
    }
}
