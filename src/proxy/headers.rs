//! Header rewriting in both directions: hop-by-hop headers removed (RFC 9110
//! §7.6.1, plus every header the `Connection` header names), the
//! `X-Forwarded-*` family set for the server, `Host` preserved.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::client_addr::X_FORWARDED_FOR;

// Static names: a `&str` key would build (allocate) a HeaderName per request.
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers that describe one connection and never cross a proxy.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];

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
    // Names listed in Connection are hop-by-hop too.
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let upgrade = keep_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    for name in listed {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if let Some(up) = upgrade {
        headers.insert(header::UPGRADE, up);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Sets what the server needs to know about the client: the `X-Forwarded-For`
/// chain with the peer appended, and the original scheme and host (taken from
/// the request unless a trusted proxy already said them). The other headers
/// that claim to know the client, `Forwarded` (RFC 7239) and `X-Real-IP`,
/// are passed on only from a trusted peer and removed otherwise, so a server
/// that reads them is never lied to by a client.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    peer_trusted: bool,
    scheme: &'static str,
    host: Option<&HeaderValue>,
) {
    let mut chain = String::new();
    for v in headers.get_all(X_FORWARDED_FOR) {
        if let Ok(v) = v.to_str() {
            let v = v.trim();
            if !v.is_empty() {
                chain.push_str(v);
                chain.push_str(", ");
            }
        }
    }
    use std::fmt::Write;
    let _ = write!(chain, "{peer}");
    // The String's buffer becomes the header value without a copy.
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(chain)) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !peer_trusted {
        headers.remove(header::FORWARDED);
        headers.remove(X_REAL_IP);
    }
    if !(peer_trusted && headers.contains_key(X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    }
    if !(peer_trusted && headers.contains_key(X_FORWARDED_HOST)) {
        match host {
            Some(v) => {
                headers.insert(X_FORWARDED_HOST, v.clone());
            }
            None => {
                headers.remove(X_FORWARDED_HOST);
            }
        }
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

    #[test]
    fn forwarded_and_x_real_ip_are_believed_only_from_trusted_peers() {
        let mut h = HeaderMap::new();
        h.insert(header::FORWARDED, HeaderValue::from_static("for=1.2.3.4"));
        h.insert(X_REAL_IP, HeaderValue::from_static("1.2.3.4"));
        let mut trusted = h.clone();
        set_forwarded(&mut h, [127, 0, 0, 2].into(), false, "http", None);
        assert!(!h.contains_key(header::FORWARDED));
        assert!(!h.contains_key(X_REAL_IP));
        set_forwarded(&mut trusted, [127, 0, 0, 2].into(), true, "http", None);
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
        set_forwarded(
            &mut h,
            [127, 0, 0, 2].into(),
            false,
            "http",
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
