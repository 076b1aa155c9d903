//! The request target's form (RFC 9112 §3.2) and the authority rules a
//! target and `Host` are held to. A target is accepted as hyper's
//! `http::Uri` and `proxy/check.rs` accept it together, with one
//! difference: a fragment (`#...`) is refused, not cut off, since no form
//! of request target has one.

use http::Method;

use super::{HeadError, Span};

/// The longest target `http::Uri` holds; hyper answers 414 past it.
const MAX_TARGET: usize = u16::MAX as usize - 1;

/// The form of a request target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `/path?query`.
    Origin,
    /// `http://authority/path?query`, scheme in any case; `path` may be
    /// empty or start with `?` (the server gets a `/` before it).
    Absolute {
        https: bool,
        authority: Span,
        path: Span,
    },
    /// `host:port`, only for `CONNECT`.
    Authority,
    /// `*`, only for `OPTIONS` ([`super::check::request`] says so).
    Asterisk,
}

/// The form of the target at `span` of `buf`.
pub(super) fn form(method: &Method, buf: &[u8], span: Span) -> Result<Form, HeadError> {
    let t = span.get(buf);
    if t.len() > MAX_TARGET {
        return Err(HeadError::TargetTooLong);
    }
    if method == Method::CONNECT {
        return if is_authority(t) {
            Ok(Form::Authority)
        } else {
            Err(HeadError::Target)
        };
    }
    if t == b"*" {
        return Ok(Form::Asterisk);
    }
    if t.first() == Some(&b'/') {
        return if is_path(t) {
            Ok(Form::Origin)
        } else {
            Err(HeadError::Target)
        };
    }
    let (https, scheme) = if starts_with_ignore_case(t, b"http://") {
        (false, 7)
    } else if starts_with_ignore_case(t, b"https://") {
        (true, 8)
    } else {
        return Err(HeadError::Target);
    };
    let rest = &t[scheme..];
    let end = rest
        .iter()
        .position(|b| b"/?#".contains(b))
        .unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    // http::Uri refuses a `%` in a target's host, though Host may have one.
    if !is_authority(authority) || authority.contains(&b'%') {
        return Err(HeadError::Target);
    }
    if !path.is_empty() && !is_path(path) {
        return Err(HeadError::Target);
    }
    let at = span.start as usize + scheme;
    Ok(Form::Absolute {
        https,
        authority: Span::of(at, at + end),
        path: Span::of(at + end, span.end as usize),
    })
}

fn starts_with_ignore_case(t: &[u8], prefix: &[u8]) -> bool {
    t.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// `/path?query` (or `?query` after an authority) with the bytes
/// `http::Uri` takes in each part (its tables: a few a browser sends
/// unencoded, such as `"{}|` in the path, pass), and no fragment. Bytes
/// past ASCII were checked to be UTF-8 by `httparse`.
fn is_path(t: &[u8]) -> bool {
    let (path, query) = match t.iter().position(|&b| b == b'?') {
        Some(q) => (&t[..q], &t[q + 1..]),
        None => (t, &t[t.len()..]),
    };
    path.iter().all(|&b| in_path(b)) && query.iter().all(|&b| in_query(b))
}

fn in_path(b: u8) -> bool {
    matches!(b, b'!' | b'"' | b'$'..=b';' | b'=' | b'@'..=b'_' | b'a'..=b'~' | 0x80..)
}

fn in_query(b: u8) -> bool {
    matches!(b, b'!' | b'$'..=b';' | b'=' | b'?'..=b'~' | 0x80..)
}

/// `host[:port]` (RFC 3986 §3.2) as `proxy/check.rs` takes it in `Host`: a
/// registered name or an IPv4 address of unreserved and sub-delimiter
/// characters (`%` included), or an IPv6 address in brackets; then an
/// optional port that is a number below 65536. No user information,
/// nothing empty. Read in place.
pub fn is_authority(v: &[u8]) -> bool {
    let (host, port) = match v.strip_prefix(b"[") {
        Some(bracketed) => {
            let Some(close) = bracketed.iter().position(|&b| b == b']') else {
                return false;
            };
            let (ip, after) = bracketed.split_at(close);
            if !is_ipv6(ip) {
                return false;
            }
            (ip, &after[1..])
        }
        None => {
            let colon = v.iter().rposition(|&b| b == b':').unwrap_or(v.len());
            let (name, after) = v.split_at(colon);
            if name.is_empty() || !name.iter().all(|&b| in_reg_name(b)) {
                return false;
            }
            (name, after)
        }
    };
    !host.is_empty() && (port.is_empty() || port.strip_prefix(b":").is_some_and(is_port))
}

fn is_ipv6(ip: &[u8]) -> bool {
    std::str::from_utf8(ip).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

fn in_reg_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b)
}

/// One to five digits, at most 65535.
fn is_port(p: &[u8]) -> bool {
    (1..=5).contains(&p.len())
        && p.iter()
            .try_fold(0u32, |n, &b| {
                b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
            })
            .is_some_and(|n| n <= u32::from(u16::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(method: Method, t: &str) -> Result<Form, HeadError> {
        let span = Span::of(0, t.len());
        form(&method, t.as_bytes(), span)
    }

    #[test]
    fn targets_in_each_form() {
        let get = || Method::GET;
        assert_eq!(of(get(), "/"), Ok(Form::Origin));
        assert_eq!(of(get(), "/a/b?x=1&y=%20"), Ok(Form::Origin));
        assert_eq!(of(get(), "/\"{}|\\^[]"), Ok(Form::Origin));
        assert_eq!(of(get(), "/a?`{}|^\\"), Ok(Form::Origin));
        assert_eq!(of(get(), "/é"), Ok(Form::Origin));
        // A path that looks like an authority is just a path.
        assert_eq!(of(get(), "//a@b:c:d"), Ok(Form::Origin));
        assert_eq!(of(get(), "*"), Ok(Form::Asterisk));
        assert_eq!(
            of(get(), "HTTP://a.example:81/x?y"),
            Ok(Form::Absolute {
                https: false,
                authority: Span::of(7, 19),
                path: Span::of(19, 23)
            })
        );
        assert_eq!(
            of(get(), "https://[::1]"),
            Ok(Form::Absolute {
                https: true,
                authority: Span::of(8, 13),
                path: Span::of(13, 13)
            })
        );
        assert_eq!(of(Method::CONNECT, "a.example:443"), Ok(Form::Authority));
    }

    #[test]
    fn targets_in_no_form_are_refused() {
        for t in [
            "a",
            "a.example:80",
            "ftp://a/",
            "http://",
            "http:///x",
            "http://a b/",
            "http://u@a/",
            "http://a%20b/",
            "http://a:99999/",
            "http://a:/",
            "http://[::1/",
            "http://a#f",
            "/a#f",
            "/a?b#f",
            "/<",
            "/>",
            "/`",
            "/a?\"",
            "/a?<",
            "**",
            "?x",
        ] {
            assert_eq!(of(Method::GET, t), Err(HeadError::Target), "{t}");
        }
        assert_eq!(of(Method::CONNECT, "/"), Err(HeadError::Target));
        let long = format!("/{}", "a".repeat(MAX_TARGET));
        assert_eq!(of(Method::GET, &long), Err(HeadError::TargetTooLong));
    }

    #[test]
    fn authorities_are_held_to_check_rs_rules() {
        for ok in [
            "a",
            "a.example",
            "a.example:80",
            "1.2.3.4:65535",
            "[::1]",
            "[::1]:8080",
            "a%20b",
            "a-b_c~d!$&'()*+,;=",
        ] {
            assert!(is_authority(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", ":80", "a b", "u@a", "a:x", "a/b", "a:", "a:123456", "a:65536", "a:1:2", "[::1",
            "[::g]", "[::1]x", "[::1]:", "[]", "a]",
        ] {
            assert!(!is_authority(bad.as_bytes()), "{bad}");
        }
    }
}
