//! Picks the pool for a request: the listener's routes in order (host and/or
//! path prefix), else the listener's default pool.

use std::sync::Arc;

use http::Request;

use crate::pool::Pool;
use crate::runtime::ListenerRt;

/// The request's host without port: the `Host` header, else the URI's
/// authority (HTTP/2 sends `:authority`).
pub fn host_of<B>(req: &Request<B>) -> Option<&str> {
    let raw = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    Some(strip_port(raw))
}

fn strip_port(host: &str) -> &str {
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

/// The first matching route's pool, else the listener's default pool.
pub fn pick<'a, B>(listener: &'a ListenerRt, req: &Request<B>) -> Option<&'a Arc<Pool>> {
    let path = req.uri().path();
    let host = host_of(req);
    listener
        .routes
        .iter()
        .find(|r| {
            r.host
                .as_deref()
                .is_none_or(|p| host.is_some_and(|h| host_matches(p, h)))
                && r.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
        })
        .map(|r| &r.pool)
        .or(listener.default_pool.as_ref())
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
