//! Header rewriting in both directions: hop-by-hop headers removed (RFC 9110
//! §7.6.1, plus every header the `Connection` header names), the
//! `X-Forwarded-*` family set for the server, `Host` preserved. Each step
//! runs only when the request's [`Scan`] found something for it to do.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::conn::ConnCtx;

// Static names: a `&str` key would build (allocate) a HeaderName per request.
pub use super::client_addr::X_FORWARDED_FOR;
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection and never cross a proxy.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    KEEP_ALIVE,
    PROXY_CONNECTION,
];

/// Is `name` one of the fixed hop-by-hop headers?
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// What one pass over a request header found, for the steps after the check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scan {
    /// Size as it came on the wire (names, values, separators).
    pub bytes: usize,
    pub hosts: u8,
    pub transfer_encoding: bool,
    /// `Connection` or another hop-by-hop header is present.
    pub hop_by_hop: bool,
    pub upgrade: bool,
    /// `Cookie` fields (HTTP/2 sends one per cookie).
    pub cookies: u16,
    pub x_forwarded_for: bool,
    pub x_forwarded_proto: bool,
    pub x_forwarded_host: bool,
    /// `Forwarded` or `X-Real-IP`.
    pub forwarded: bool,
}

impl Scan {
    /// How many fields the header has, the cookies counted as the one
    /// `Cookie` field they are joined into (HTTP/2 sends a crumb per
    /// cookie; HAProxy counts them once too).
    pub fn fields(&self, headers: &http::HeaderMap) -> usize {
        headers.len() - usize::from(self.cookies.saturating_sub(1))
    }

    pub fn of(headers: &http::HeaderMap) -> Scan {
        let mut s = Scan::default();
        for (name, value) in headers {
            if name == header::COOKIE && s.cookies > 0 {
                // Another HTTP/2 crumb of the one `Cookie` field: it costs
                // its value and the `; ` that joins it.
                s.bytes += value.len() + 2;
            } else {
                s.bytes += name.as_str().len() + value.len() + 4;
            }
            if name == header::HOST {
                s.hosts = s.hosts.saturating_add(1);
            } else if name == header::COOKIE {
                s.cookies = s.cookies.saturating_add(1);
            } else if name == header::TRANSFER_ENCODING {
                s.transfer_encoding = true;
                s.hop_by_hop = true;
            } else if name == header::UPGRADE {
                s.upgrade = true;
                s.hop_by_hop = true;
            } else if name == X_FORWARDED_FOR {
                s.x_forwarded_for = true;
            } else if name == X_FORWARDED_PROTO {
                s.x_forwarded_proto = true;
            } else if name == X_FORWARDED_HOST {
                s.x_forwarded_host = true;
            } else if name == header::FORWARDED || name == X_REAL_IP {
                s.forwarded = true;
            } else if is_hop_by_hop(name) {
                s.hop_by_hop = true;
            }
        }
        s
    }
}

/// Prepares a request's header for the server: hop-by-hop headers out (the
/// `Upgrade` of a protocol switch stays), cookies split by HTTP/2 joined,
/// the `X-Forwarded-*` family set, `Forwarded` and `X-Real-IP` believed only
/// from a trusted peer, and `Host` set to the request's authority.
pub fn prepare(
    headers: &mut HeaderMap,
    scan: &Scan,
    conn: &ConnCtx,
    trusted: bool,
    authority: Option<&HeaderValue>,
    upgrade: bool,
) {
    if scan.hop_by_hop {
        strip_hop_by_hop(headers, upgrade);
    }
    if scan.cookies > 1 {
        fold_cookies(headers);
    }
    if scan.forwarded && !trusted {
        headers.remove(header::FORWARDED);
        headers.remove(X_REAL_IP);
    }
    if scan.x_forwarded_for {
        append_forwarded_for(headers, conn.peer_ip);
    } else {
        headers.insert(X_FORWARDED_FOR, conn.peer_value.clone());
    }
    if !(trusted && scan.x_forwarded_proto) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(conn.scheme));
    }
    if !(trusted && scan.x_forwarded_host) {
        match authority {
            Some(v) => {
                headers.insert(X_FORWARDED_HOST, v.clone());
            }
            None if scan.x_forwarded_host => {
                headers.remove(X_FORWARDED_HOST);
            }
            None => {}
        }
    }
    // The server sees the request's authority as Host: the absolute-form
    // target's, or HTTP/2's :authority, or the Host the client sent.
    if let Some(a) = authority
        && headers.get(header::HOST) != Some(a)
    {
        headers.insert(header::HOST, a.clone());
    }
}

/// Removes hop-by-hop headers from a server's response, when it has any.
pub fn clean_response(headers: &mut HeaderMap) {
    if headers.keys().any(is_hop_by_hop) {
        strip_hop_by_hop(headers, false);
    }
}

/// Is this a request to switch protocols (WebSocket and friends)?
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Removes hop-by-hop headers. With `keep_upgrade`, `Upgrade` and a
/// `Connection: upgrade` survive so the server can switch protocols.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Names listed in Connection are hop-by-hop too. Almost always one
    // field (a browser's `keep-alive`): its value is cloned (a reference
    // count, not a copy) and its names removed without building any.
    let mut fields = headers.get_all(header::CONNECTION).iter();
    let first = fields.next().cloned();
    let more: Vec<HeaderValue> = fields.cloned().collect();
    let upgrade = keep_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    for value in first.iter().chain(&more) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',') {
            headers.remove(token.trim());
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(up) = upgrade {
        headers.insert(header::UPGRADE, up);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Appends the peer to the `X-Forwarded-For` chain the request carried
/// (nginx's `$proxy_add_x_forwarded_for`, HAProxy's `option forwardfor`).
fn append_forwarded_for(headers: &mut HeaderMap, peer: IpAddr) {
    let mut chain = bytes::BytesMut::new();
    for v in headers.get_all(X_FORWARDED_FOR) {
        let v = v.as_bytes().trim_ascii();
        if !v.is_empty() {
            chain.extend_from_slice(v);
            chain.extend_from_slice(b", ");
        }
    }
    use std::fmt::Write;
    let _ = write!(chain, "{peer}");
    if let Ok(v) = HeaderValue::from_maybe_shared(chain.freeze()) {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

/// HTTP/2 clients send each cookie in its own `cookie` field; an HTTP/1.1
/// server expects one `Cookie` header (RFC 6265 §5.4), so they are joined.
/// The bytes are joined as they are: a cookie with non-ASCII bytes survives.
pub fn fold_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let mut joined = bytes::BytesMut::new();
    for v in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_maybe_shared(joined.freeze()) {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn cookies_split_by_http2_are_joined_for_the_server() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"n=\xc3\xa9t\xc3\xa9").unwrap(),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        fold_cookies(&mut h);
        let all: Vec<_> = h
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(all, [&b"a=1; n=\xc3\xa9t\xc3\xa9; b=2"[..]]);
    }

    /// `prepare` for a request from 127.0.0.2.
    fn run(h: &mut HeaderMap, trusted: bool, authority: Option<&HeaderValue>) {
        let scan = Scan::of(h);
        let conn = ConnCtx::new(([127, 0, 0, 2], 40000).into(), 0, "http");
        prepare(h, &scan, &conn, trusted, authority, false);
    }

    #[test]
    fn a_lone_peer_is_the_forwarded_for_value_and_host_follows_the_authority() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a.example"));
        run(&mut h, false, Some(&HeaderValue::from_static("b.example")));
        assert_eq!(h[X_FORWARDED_FOR], "127.0.0.2");
        assert_eq!(h[header::HOST], "b.example");
        assert_eq!(h[X_FORWARDED_HOST], "b.example");
    }

    #[test]
    fn forwarded_and_x_real_ip_are_believed_only_from_trusted_peers() {
        let mut h = HeaderMap::new();
        h.insert(header::FORWARDED, HeaderValue::from_static("for=1.2.3.4"));
        h.insert(X_REAL_IP, HeaderValue::from_static("1.2.3.4"));
        let mut trusted = h.clone();
        run(&mut h, false, None);
        assert!(!h.contains_key(header::FORWARDED));
        assert!(!h.contains_key(X_REAL_IP));
        run(&mut trusted, true, None);
        assert!(trusted.contains_key(header::FORWARDED));
        assert!(trusted.contains_key(X_REAL_IP));
    }

    #[test]
    fn upgrade_survives_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(
            h.get(header::UPGRADE).map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(
            h.get(header::CONNECTION).map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
    }

    #[test]
    fn forwarded_for_appends_the_peer_to_the_existing_chain() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        run(
            &mut h,
            false,
            Some(&HeaderValue::from_static("example.com")),
        );
        assert_eq!(
            h.get(X_FORWARDED_FOR).map(|v| v.as_bytes()),
            Some(&b"1.1.1.1, 2.2.2.2, 127.0.0.2"[..])
        );
        assert_eq!(
            h.get(X_FORWARDED_PROTO).map(|v| v.as_bytes()),
            Some(&b"http"[..])
        );
        assert_eq!(
            h.get(X_FORWARDED_HOST).map(|v| v.as_bytes()),
            Some(&b"example.com"[..])
        );
    }
}
