//! Picks the pool for a request: the listener's routes in order (host and/or
//! path prefix), else the listener's default pool. Prefixes match the
//! normalized path (dot segments, `//`, `%61`, `;params` undone), so a
//! request cannot slip past a route by spelling its path differently; the
//! path is forwarded as received.

use super::error::ProxyError;
use crate::config::sni::Cert;
use crate::runtime::ListenerRt;

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// This pool (an index into the snapshot's pools).
    Pool(usize),
    /// The listener redirects every request to HTTPS (`redirect_https`).
    ToHttps,
}

/// The route step: the listener's `redirect_https`, then `strict_sni` (a
/// `Host` the connection's certificate does not name is 421), then the
/// pool ([`pick`]; none is 503). `host` is the request's authority without
/// its port.
pub fn route(
    listener: Option<&ListenerRt>,
    strict_sni: Option<&Cert>,
    host: Option<&str>,
    path: &str,
) -> Result<Routed, ProxyError> {
    if listener.is_some_and(|l| l.redirect_https) {
        return Ok(Routed::ToHttps);
    }
    if let Some(cert) = strict_sni
        && !host.is_some_and(|h| cert.serves(h))
    {
        return Err(ProxyError::Misdirected);
    }
    listener
        .and_then(|l| pick(l, host, path))
        .map(Routed::Pool)
        .ok_or(ProxyError::NoServer)
}

/// A `Host` or authority without its port (`[v6]:port` → `v6`).
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// The first matching route's pool, else the listener's default pool (an
/// index into the snapshot's pools). `host` is the request's authority
/// without port; one trailing dot (`b.example.`, the same name fully
/// qualified) is not part of the name, as nginx has it. Path prefixes match the normalized path
/// ([`crate::path::normalize`]).
pub fn pick(listener: &ListenerRt, host: Option<&str>, path: &str) -> Option<usize> {
    if listener.routes.is_empty() {
        return listener.default_pool;
    }
    let path = crate::path::normalize(path);
    let host = host.map(|h| h.strip_suffix('.').unwrap_or(h));
    listener
        .routes
        .iter()
        .find(|r| {
            r.host
                .as_deref()
                .is_none_or(|p| host.is_some_and(|h| host_matches(p, h)))
                && r.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
        })
        .map(|r| r.pool)
        .or(listener.default_pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_exactly_or_by_wildcard_ignoring_case_and_port() {
        assert!(host_matches("static.example.com", "Static.Example.com"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "aexample.com"));
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "::1");
        assert_eq!(strip_port("example.com"), "example.com");
    }
}
